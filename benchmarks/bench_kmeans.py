"""Benchmark: babel_lib.experts.clustering.balanced_kmeans against k_means_constrained.

MoEfication groups neurons with ``k_means_constrained.KMeansConstrained(n_clusters,
size_min=s, size_max=s)`` (default ``n_init=10``). This script times both on

  (a) a Gemma-3-270M-like layer: 2048 rows x 640, 64 clusters of 32. The rows are read
      from ``$BABEL_BENCH_FEATURES`` (a .npy of a real layer's L2-normalised gate rows)
      if that file exists, otherwise random Gaussian rows, L2-normalised (said so below);
  (b) a LLaMA-2-7B-sized layer: 11008 random L2-normalised rows x 4096, 344 clusters of 32.

Both in one process, after a warm-up; on (a) the two methods alternate (A B A B ...) so
that this machine's speed drift hits both alike. Inertia (sum of squared distances to
the cluster means) is computed by the same function for both. The reference on (b) runs
in a subprocess with a time limit (``--ref-timeout``, default 600 s); if it does not
finish, (b) is compared against the reference with ``n_init=1`` (same limit) and, failing
that, on a 2752-row subsample (86 clusters), and the output says which.

Usage:  python benchmarks/bench_kmeans.py [--quick] [--ref-timeout 600] [--pairs 2]
Ends with one line:
  RESULT kmeans_speedup_gemma=... kmeans_inertia_ratio_gemma=... kmeans_speedup_7b=... kmeans_inertia_ratio_7b=...
(speedup = reference time / our time; ratio = our inertia / reference inertia).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from babel_lib.experts.clustering import balanced_kmeans, inertia, random_partition  # noqa: E402

REF_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np
warnings.filterwarnings("ignore")
from k_means_constrained import KMeansConstrained
x = np.load(sys.argv[1]); k = int(sys.argv[2]); n_init = int(sys.argv[3]); seed = int(sys.argv[4])
s = x.shape[0] // k
t = time.perf_counter()
km = KMeansConstrained(k, size_min=s, size_max=s, random_state=seed, n_init=n_init).fit(x)
dt = time.perf_counter() - t
np.save(sys.argv[5], np.asarray(km.labels_, dtype=np.int64))
print(json.dumps({"seconds": dt}))
"""


def unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def reference_inprocess(x: np.ndarray, k: int, seed: int, n_init: int = 10) -> tuple[float, np.ndarray]:
    import warnings

    from k_means_constrained import KMeansConstrained

    s = x.shape[0] // k
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        km = KMeansConstrained(k, size_min=s, size_max=s, random_state=seed, n_init=n_init).fit(x)
    return time.perf_counter() - t, np.asarray(km.labels_, dtype=np.int64)


def reference_subprocess(x: np.ndarray, k: int, seed: int, n_init: int, timeout: float):
    """(seconds, labels) or (None, reason)."""
    with tempfile.TemporaryDirectory() as tmp:
        xf, lf = os.path.join(tmp, "x.npy"), os.path.join(tmp, "labels.npy")
        np.save(xf, x)
        try:
            out = subprocess.run([sys.executable, "-c", REF_SCRIPT, xf, str(k), str(n_init), str(seed), lf],
                                 capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"did not finish within {timeout:.0f} s"
        if out.returncode != 0:
            return None, f"failed: {out.stderr.strip()[-500:]}"
        seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
        return seconds, np.load(lf)


def ours(x: np.ndarray, k: int, seed: int) -> tuple[float, np.ndarray]:
    t = time.perf_counter()
    labels = balanced_kmeans(x, k, seed=seed)
    return time.perf_counter() - t, labels


def check(labels: np.ndarray, k: int) -> None:
    sizes = np.bincount(labels, minlength=k)
    assert sizes.min() == sizes.max() == len(labels) // k, f"unequal sizes {sizes.min()}..{sizes.max()}"


def gemma_problem(args) -> tuple[float, float]:
    path = os.environ.get("BABEL_BENCH_FEATURES", "")
    if path and Path(path).is_file():
        x = np.load(path).astype(np.float32)
        print(f"(a) Gemma-like layer: real features from {path}, shape {x.shape}")
    else:
        x = unit_rows(2048, 640, seed=0)
        why = "unset" if not path else f"{path} does not exist"
        print(f"(a) Gemma-like layer: BABEL_BENCH_FEATURES {why}; using random Gaussian rows, "
              f"L2-normalised, shape {x.shape}")
    k = x.shape[0] // 32
    rand = inertia(x, random_partition(x.shape[0], k, args.seed))
    t_ref, t_our = [], []
    for pair in range(args.pairs):
        tr, lr = reference_inprocess(x, k, args.seed)
        to, lo = ours(x, k, args.seed)
        check(lr, k)
        check(lo, k)
        t_ref.append(tr)
        t_our.append(to)
        print(f"    pair {pair}: reference (n_init=10) {tr:7.2f} s   ours {to:6.3f} s   ratio {tr / to:6.1f}x")
    i_ref, i_our = inertia(x, lr), inertia(x, lo)
    speed = float(np.median(t_ref) / np.median(t_our))
    ratio = i_our / i_ref
    print(f"    median time: reference {np.median(t_ref):.2f} s, ours {np.median(t_our):.3f} s -> speedup {speed:.1f}x")
    print(f"    inertia: reference {i_ref:.4f}, ours {i_our:.4f} (ratio {ratio:.5f}); "
          f"random split {rand:.4f} (ratio {rand / i_ref:.5f})")
    return speed, ratio


def big_problem(args) -> tuple[float, float]:
    if args.quick:
        n, d, k = 2752, 1024, 86
        print(f"(b) --quick: random L2-normalised rows {n} x {d}, {k} clusters (not the 7B size)")
    else:
        n, d, k = 11008, 4096, 344
        print(f"(b) LLaMA-2-7B-sized layer: random L2-normalised rows {n} x {d}, {k} clusters of 32")
    x = unit_rows(n, d, seed=1)
    t1, lo = ours(x, k, args.seed)
    check(lo, k)
    print(f"    ours: {t1:.2f} s")
    tr, lr = reference_subprocess(x, k, args.seed, 10, args.ref_timeout)
    t2, lo2 = ours(x, k, args.seed)
    assert np.array_equal(lo, lo2), "balanced_kmeans is not deterministic"
    t_our = float(np.median([t1, t2]))
    print(f"    ours again: {t2:.2f} s (median {t_our:.2f} s; same labels)")
    i_our = inertia(x, lo)
    if tr is not None:
        check(lr, k)
        i_ref = inertia(x, lr)
        print(f"    reference (n_init=10): {tr:.1f} s; inertia reference {i_ref:.4f}, ours {i_our:.4f}")
        speed, ratio = tr / t_our, i_our / i_ref
        print(f"    compared: full problem, default n_init=10: speedup {speed:.1f}x, inertia ratio {ratio:.5f}")
        return speed, ratio
    print(f"    reference (n_init=10) {lr}: speedup over it > {args.ref_timeout / t_our:.1f}x (lower bound)")
    tr, lr = reference_subprocess(x, k, args.seed, 1, args.ref_timeout)
    if tr is not None:
        check(lr, k)
        i_ref = inertia(x, lr)
        speed, ratio = tr / t_our, i_our / i_ref
        print(f"    reference with n_init=1: {tr:.1f} s; inertia reference {i_ref:.4f}, ours {i_our:.4f}")
        print(f"    compared: full problem against the reference with n_init=1 (one tenth of its default work): "
              f"speedup {speed:.1f}x, inertia ratio {ratio:.5f}")
        return speed, ratio
    print(f"    reference with n_init=1 {lr}")
    m, km = 2752, 86
    xs = x[np.random.default_rng(2).choice(n, m, replace=False)]
    to, los = ours(xs, km, args.seed)
    tr, lr = reference_subprocess(xs, km, args.seed, 10, args.ref_timeout)
    if tr is None:
        print(f"    reference on a {m}-row subsample {lr}; no comparison possible")
        return float("nan"), float("nan")
    speed, ratio = tr / to, inertia(xs, los) / inertia(xs, lr)
    print(f"    compared: {m}-row subsample x {d}, {km} clusters, default n_init=10: "
          f"reference {tr:.1f} s, ours {to:.2f} s, speedup {speed:.1f}x, inertia ratio {ratio:.5f}")
    return speed, ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one pair on (a), a smaller (b)")
    ap.add_argument("--ref-timeout", type=float, default=None, help="seconds for the reference on (b) (600; quick 120)")
    ap.add_argument("--pairs", type=int, default=None, help="alternating reference/ours pairs on (a) (2; quick 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.pairs = args.pairs or (1 if args.quick else 2)
    args.ref_timeout = args.ref_timeout or (120.0 if args.quick else 600.0)

    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    w = unit_rows(256, 32, seed=9)  # warm-up: imports, allocators, first calls
    ours(w, 8, 0)
    reference_inprocess(w, 8, 0, n_init=1)

    speed_a, ratio_a = gemma_problem(args)
    speed_b, ratio_b = big_problem(args)
    print(f"RESULT kmeans_speedup_gemma={speed_a:.2f} kmeans_inertia_ratio_gemma={ratio_a:.5f} "
          f"kmeans_speedup_7b={speed_b:.2f} kmeans_inertia_ratio_7b={ratio_b:.5f}")


if __name__ == "__main__":
    main()
