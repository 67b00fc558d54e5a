"""The CUDA path gives the CPU path's results: profiler counts, the MoE view, pruning, tuning.

Skipped where no GPU is visible (CI). Tiny random models in float64, so CPU and GPU values
differ only by rounding far below any top-k tie: counts must be identical.
"""
import os

import numpy as np
import pytest
import torch

from babel_lib.core.cache import Store
from babel_lib.core.definitions import Definitions
from babel_lib.core.models import LoadedModel, model_fingerprint
from babel_lib.experts.moefy import Partition, build_partition, moe_view
from babel_lib.experts.profile import count_windows, passage_windows
from babel_lib.interventions import prune
from babel_lib.testing import tiny_model

#: the device under test; BABEL_TEST_DEVICE=cpu runs the same checks on the CPU (to test the tests)
DEVICE = os.environ.get("BABEL_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA GPU")

TEXT = ["The quick brown fox jumps over the lazy dog.", "Ein zweiter Text auf Deutsch, mit Umlauten: äöü.",
        "A third paragraph, somewhat longer than the first two, to fill a batch."]


def on(lm: LoadedModel, device: str) -> LoadedModel:
    model = lm.model.to(device)
    return LoadedModel(model, lm.tokenizer, lm.name, lm.description, model_fingerprint(model))


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2", "phi3"])
def test_counts_on_cuda_equal_cpu(model_type, tmp_path):
    cpu = tiny_model(model_type, dtype=torch.float64)
    part = build_partition(cpu, expert_size=16, method="random", seed=1, store=Store(tmp_path))
    windows = passage_windows(cpu.tokenizer, TEXT, max_length=32)
    defs = Definitions(top_k_fraction=0.25)
    views = [part, Partition.neurons(cpu)]
    want = count_windows(cpu, views, windows, defs, batch_size=2)
    gpu = on(tiny_model(model_type, dtype=torch.float64), DEVICE)
    got = count_windows(gpu, views, windows, defs, batch_size=2)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2"])
def test_moe_view_and_pruning_on_cuda(model_type, tmp_path):
    lm = on(tiny_model(model_type), DEVICE)
    part = build_partition(lm, expert_size=16, method="kmeans", seed=0, store=Store(tmp_path))
    ids = torch.randint(4, 260, (2, 17), device=DEVICE)
    ids[:, 0] = 1
    plan = prune.prune_plan(prune.random_ranking(part.n_layers, part.n_experts, seed=0), 0.5)
    with torch.no_grad():
        dense = lm.model(input_ids=ids).logits
        with moe_view(lm.model, part, top_k_fraction=1.0):
            everything = lm.model(input_ids=ids).logits
        with moe_view(lm.model, part, experts=plan.keep):
            masked = lm.model(input_ids=ids).logits
        small = prune.prune_model(lm, part, plan)
        sliced = small.model(input_ids=ids).logits
    assert small.device.type == torch.device(DEVICE).type
    torch.testing.assert_close(everything, dense, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(sliced, masked, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(dense, masked, atol=1e-3)


def test_tuning_on_cuda_lowers_loss(tmp_path, monkeypatch):
    pytest.importorskip("datasets")  # the instruction set is a datasets.Dataset
    from babel_lib.data import instructions
    from babel_lib.interventions import tune

    monkeypatch.setenv("BABEL_CACHE", str(tmp_path / "cache"))
    lm = on(tiny_model("gemma3_text"), DEVICE)
    full = instructions.instruction_set(["eng", "fra"], "calibration", seed=0)
    sizes = [len((p + r).encode()) for p, r in zip(full["prompt"], full["response"])]
    data = full.select(sorted(np.argsort(sizes, kind="stable")[:16].tolist()))  # the byte tokenizer: short ones
    cfg = tune.TuneConfig(steps=10, batch_size=4, max_length=512, learning_rate=3e-3, warmup_fraction=0.0)
    tuned = tune.instruction_tune(lm, data, cfg, progress=False)
    assert tuned.lm.device.type == torch.device(DEVICE).type
    assert tuned.log["loss"].tail(3).mean() < tuned.log["loss"].head(3).mean()
