"""Profiling throughput and memory against a bare backbone forward and a store-then-count baseline.

Gemma 3 270M (float32 on a CPU, bfloat16 on a GPU by default), batch 8 x 128 of real UDHR text,
experts of 32 neurons, top-20% rule. Variants: ``bare`` (the backbone forward through the book's
batch loop), ``profile`` (one partition counted per passage), ``views`` (three partitions and the
neuron view counted in the same forwards, as the chapters do), ``store`` (keep every layer's neuron
values and count after the forward). Throughput is timed interleaved (bare, profiled, stored, bare, ...) in one
process after a warm-up, so machine drift cancels in the ratios; the median of the
per-round ratios is reported. Peak memory is each variant's peak in a fresh subprocess (model
included; GPU memory allocated on CUDA, the process's RSS on CPU), so the ratio says what a
user's process really needs.

    python benchmarks/bench_profile.py [--rounds 12] [--model gemma-3-270m] [--dtype bfloat16] [--device auto]

``--model random:<folder>`` times the architecture of a config.json with random weights (no
weight file needed; throughput does not depend on the weights' values).

Last line: RESULT profile_vs_forward=... views_vs_forward=... store_vs_forward=... profile_vs_store=...
mem_profile_vs_forward=... mem_store_vs_forward=...
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from _common import sync

from babel_lib.interventions.timing import make_batch


class StoreThenCount:
    """Baseline: hooks keep every layer's neuron values (as activation-caching tools do), counted after the forward."""

    def __init__(self, lm, partition, definitions):
        from babel_lib.core.hooks import ffn_pre_hooks

        self.lm, self.partition, self.defs = lm, partition, definitions
        self.stored = {}
        self.counts = torch.zeros(partition.n_layers, partition.n_experts, dtype=torch.int64)
        self._ctx = ffn_pre_hooks(lm.model, lambda i, a: self.stored.__setitem__(i, a.detach().clone()))

    def __enter__(self):
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)

    def count(self):
        k = self.defs.k(self.partition.n_experts)
        for layer, a in self.stored.items():
            flat = a[:, 1:].reshape(-1, a.shape[-1]).float().abs()
            onehot = torch.nn.functional.one_hot(torch.from_numpy(self.partition.labels[layer]).to(flat.device),
                                                 self.partition.n_experts).float()
            idx = (flat @ onehot).topk(k, dim=1).indices.reshape(-1)
            self.counts[layer] += torch.bincount(idx, minlength=self.partition.n_experts).cpu()
        self.stored.clear()


def setup(args):
    from babel_lib.core.models import load_model
    from babel_lib.experts.moefy import Partition, build_partition

    dtype = args.dtype or ("bfloat16" if torch.cuda.is_available() and args.device != "cpu" else "float32")
    lm = load_model(args.model, dtype=dtype, device=args.device)
    parts = [build_partition(lm, expert_size=32, method="random", seed=s) for s in range(3)] + [Partition.neurons(lm)]
    ids = make_batch(lm, args.batch, args.length)
    return lm, parts, ids


def run_variant(variant: str, lm, parts, ids, steps: int) -> float:
    """Seconds for ``steps`` passes over the batch with ``variant`` ('bare', 'profile', 'views', 'store'),
    each through the book's one batch loop (babel_lib.core.hooks.BatchRunner)."""
    from babel_lib.core.definitions import Definitions
    from babel_lib.core.hooks import BatchRunner, run_all
    from babel_lib.experts.profile import ExpertCounter

    seqs = ids.cpu().tolist()
    defs = Definitions()
    dev = ids.device
    batch = len(seqs)
    sync(dev)
    t = time.perf_counter()
    for _ in range(steps):
        runner = BatchRunner(lm, seqs, batch)
        if variant == "bare":
            run_all(runner)
        elif variant in ("profile", "views"):
            views = parts[:1] if variant == "profile" else parts
            run_all(runner, [ExpertCounter(lm, views, defs, runner, list(range(batch)), batch)])
        else:
            with StoreThenCount(lm, parts[0], defs) as store:
                for _b, _out in runner:
                    store.count()
    sync(dev)
    return time.perf_counter() - t


def peak_memory_child(args) -> None:
    """Peak memory of one variant in a fresh process: GPU memory allocated on CUDA (model
    included), else the process's peak RSS. Printed as JSON {before_mib, peak_mib}."""
    import resource

    lm, parts, ids = setup(args)
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run_variant(args.child, lm, parts, ids, 3)
        peak = torch.cuda.max_memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        run_variant(args.child, lm, parts, ids, 3)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before_mib": base / 2**20, "peak_mib": peak / 2**20}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--dtype", default=None, help="default: float32 on a CPU, bfloat16 on a GPU")
    ap.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--steps", type=int, default=2, help="forwards per variant per round")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return peak_memory_child(args)

    lm, parts, ids = setup(args)
    tokens = ids.numel() * args.steps
    variants = ("bare", "profile", "views", "store")
    for v in variants:  # warm-up
        run_variant(v, lm, parts, ids, 2)
    times = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            times[v].append(run_variant(v, lm, parts, ids, args.steps))
    ratio = lambda a, b: statistics.median(tb / ta for ta, tb in zip(times[a], times[b]))  # noqa: E731
    for v, ts in times.items():
        print(f"{v:8s} median {statistics.median(ts) / args.steps * 1e3:8.1f} ms/batch  "
              f"{tokens / statistics.median(ts):8.0f} tokens/s")
    prof_vs_fwd = ratio("profile", "bare")   # throughput(profile) / throughput(bare)
    views_vs_fwd = ratio("views", "bare")
    store_vs_fwd = ratio("store", "bare")
    prof_vs_store = ratio("profile", "store")

    mem = {}
    for v in ("bare", "profile", "store"):
        out = subprocess.run([sys.executable, __file__, "--child", v, "--model", args.model,
                              "--device", args.device, "--batch", str(args.batch), "--length", str(args.length)]
                             + (["--dtype", args.dtype] if args.dtype else []),
                             capture_output=True, text=True, check=True)
        mem[v] = json.loads(out.stdout.strip().splitlines()[-1])
        what = "GPU memory" if lm.device.type == "cuda" else "RSS"
        print(f"{v:8s} peak {what} {mem[v]['peak_mib']:8.0f} MiB (after load {mem[v]['before_mib']:.0f} MiB)")
    mem_prof = mem["profile"]["peak_mib"] / mem["bare"]["peak_mib"]
    mem_store = mem["store"]["peak_mib"] / mem["bare"]["peak_mib"]
    print(f"model {lm.name} ({lm.description}) {lm.dtype} on {lm.device}, batch {args.batch} x {args.length}, "
          f"{args.rounds} interleaved rounds, torch threads {torch.get_num_threads()}")
    print(f"RESULT profile_vs_forward={prof_vs_fwd:.3f} views_vs_forward={views_vs_fwd:.3f} "
          f"store_vs_forward={store_vs_fwd:.3f} "
          f"profile_vs_store={prof_vs_store:.3f} mem_profile_vs_forward={mem_prof:.3f} mem_store_vs_forward={mem_store:.3f}")


if __name__ == "__main__":
    main()
