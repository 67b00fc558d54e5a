"""Load time and peak memory of the offline models: the first load (join the chunks, check the sha256,
convert the GGUF once into the cache) and a later load from the converted folder, in float32 and bfloat16.

Every measurement runs in a fresh process, one model at a time (peak RSS = ``ru_maxrss`` of that
process), so the numbers do not overlap. Usage::

    python benchmarks/bench_offline_models.py [MODEL ...] [--dtypes float32,bfloat16]

A model not yet converted in the cache is converted by its first row (``first_load=True``: join, check,
convert, then load); the cache is never cleared here (to time a cold start, point BABEL_CACHE at an empty
folder). Prints one RESULT line per model and dtype: load time, peak RSS (``ru_maxrss``: it counts the
pages of the memory-mapped float32 safetensors file the load reads, reclaimable by the system), and after
the load the resident anonymous memory (the weights themselves) and file-backed memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(2)
from babel_lib.core import models
name, dtype = sys.argv[1], sys.argv[2]
converted = models.converted_folder(name).is_dir()
t0 = time.perf_counter()
lm = models.load_model(name, dtype, "cpu")
load_s = time.perf_counter() - t0
n = sum(p.numel() for p in lm.model.parameters())
ids = lm.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
with torch.inference_mode():
    out = lm.model.generate(ids, max_new_tokens=3, do_sample=False)
text = lm.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
kb = lambda key: int(status.get(key, "0 kB").split()[0]) / 2**20
print(json.dumps({"model": name, "dtype": dtype, "was_converted": converted, "load_s": round(load_s, 1),
                  "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
                  "rss_anon_gb": round(kb("RssAnon"), 2), "rss_file_gb": round(kb("RssFile"), 2),
                  "parameters_m": round(n / 1e6, 1), "fingerprint": lm.fingerprint, "continuation": text}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"])
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    for name in args.models:
        for dtype in args.dtypes.split(","):
            got = subprocess.run([sys.executable, "-c", CHILD, name, dtype], capture_output=True, text=True)
            if got.returncode:
                print(got.stderr[-2000:], file=sys.stderr)
                raise SystemExit(got.returncode)
            row = json.loads(got.stdout.strip().splitlines()[-1])
            print(f"RESULT model={row['model']} dtype={row['dtype']} first_load={not row['was_converted']} "
                  f"load_s={row['load_s']} peak_rss_gb={row['peak_rss_gb']} rss_anon_gb={row['rss_anon_gb']} "
                  f"rss_file_gb={row['rss_file_gb']} parameters_m={row['parameters_m']} "
                  f"continuation={json.dumps(row['continuation'])}", flush=True)


if __name__ == "__main__":
    main()
