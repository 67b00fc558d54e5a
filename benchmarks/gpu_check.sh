#!/usr/bin/env bash
# The CUDA path in one go: the CPU-vs-CUDA tests, then profiling and pruning benchmarks on the GPU,
# then profiling a 7B-size model through the command line. Logs go to $LOGS (default benchmarks/out).
#
#   MODEL=gemma-3-270m BIG_MODEL=meta-llama/Llama-2-7b-hf bash benchmarks/gpu_check.sh
#
# MODEL / BIG_MODEL take any model spec, including random:<folder with config.json + tokenizer>
# (the architecture with random weights: enough for speed and memory, never for findings).
set -uo pipefail
export MODEL=${MODEL:-gemma-3-270m}
BIG_MODEL=${BIG_MODEL:-meta-llama/Llama-2-7b-hf}
LOGS=${LOGS:-benchmarks/out}
PY=${PY:-python}
mkdir -p "$LOGS"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
step() { echo "=== $1 ($(date +%T))"; }

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"

step "CUDA equals CPU (tests/test_cuda.py)"
$PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$LOGS/cuda_tests.log"

step "profiling vs bare forward, $MODEL bf16, batch 8 x 128"
$PY benchmarks/bench_profile.py --model "$MODEL" --device cuda --rounds 20 --steps 5 2>&1 | tee "$LOGS/bench_profile.log"

step "pruned vs dense at p = 0.5, batch 8 x 128 and 32 x 512"
$PY benchmarks/bench_prune.py --model "$MODEL" --device cuda --rounds 20 --warmup 3 2>&1 | tee "$LOGS/bench_prune.log"
$PY benchmarks/bench_prune.py --model "$MODEL" --device cuda --rounds 10 --warmup 3 --batch 32 --length 512 2>&1 \
  | tee "$LOGS/bench_prune_32x512.log"

step "instruction tuning on the GPU: the chapter's recipe (100 steps of 4, bf16 with fp32 master weights)"
$PY - <<'PYEOF' 2>&1 | tee "$LOGS/tune.log"
import os
from babel_lib import corpus, tune
from babel_lib.core.models import load_model
lm = load_model(os.environ["MODEL"], dtype="bfloat16", device="cuda")
data = tune.instruction_set(corpus.PAPER_LANGUAGES, "calibration", seed=0)
run = tune.instruction_tune(lm, data, tune.TuneConfig(steps=100, batch_size=4, max_length=128), progress=False)
print(run.describe())
print(f"loss first 10 steps {run.log.loss.head(10).mean():.3f}, last 10 {run.log.loss.tail(10).mean():.3f}")
PYEOF

step "7B-size model: babel profile on the paper's nine languages"
time $PY -m babel_lib profile --model "$BIG_MODEL" --languages paper --device cuda --batch-size 16 \
  --output "$LOGS/profile_7b.csv" 2>&1 | tee "$LOGS/profile_7b.log"

step "7B-size model: pruned vs dense at p = 0.5"
$PY benchmarks/bench_prune.py --model "$BIG_MODEL" --device cuda --rounds 8 --warmup 2 2>&1 | tee "$LOGS/bench_prune_7b.log"
step "done"
