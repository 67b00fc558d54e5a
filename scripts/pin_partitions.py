"""Cluster and pin the expert partitions the book uses, so every machine uses the same experts.

Balanced k-means is deterministic on one machine, but the rounding of another machine's matrix
kernels can lead it to another local optimum (measured once: one Gemma layer in eighteen). The
partitions the book's chapters use are therefore kept in ``babel_lib/data/partitions/`` and loaded
by ``babel_lib.experts.moefy.build_partition`` when model fingerprint and settings match.

    python scripts/pin_partitions.py                      # the book's set (below)
    python scripts/pin_partitions.py --model M --seeds 0 1 2 --features gate --expert-size 32 [--force]

The book's set: Gemma 3 270M and SmolLM2-135M (float32 weights), experts of 32 neurons, k-means on
gate rows with seeds 0, 1, 2 and on gate+up rows with seed 0; Gemma's experts of 16 and 64 neurons
(seed 0, chapter 13's robustness map); the Qwen2.5-Coder 0.5B and 1.5B (seed 0, chapter 6's sizes; needs
`make setup-sizes`). A partition already in the cache is pinned as it is (k-means is not run again).
"""
from __future__ import annotations

import argparse
import time

from babel_lib.core.models import load_model
from babel_lib.experts import moefy

BOOK_SET = [("gemma-3-270m", "gate", (0, 1, 2), 32), ("gemma-3-270m", "both", (0,), 32),
            ("smollm2-135m-instruct", "gate", (0, 1, 2), 32),
            ("gemma-3-270m", "gate", (0,), 16), ("gemma-3-270m", "gate", (0,), 64),
            ("qwen2.5-coder-0.5b", "gate", (0,), 32), ("qwen2.5-coder-1.5b", "gate", (0,), 32)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--features", nargs="+", default=["gate"], choices=moefy.FEATURES)
    parser.add_argument("--expert-size", type=int, default=moefy.DEFAULT_EXPERT_SIZE)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--force", action="store_true", help="replace partitions already pinned")
    args = parser.parse_args()
    todo = ([(args.model, f, tuple(args.seeds), args.expert_size) for f in args.features] if args.model
            else BOOK_SET)
    for model, features, seeds, expert_size in todo:
        lm = load_model(model, dtype=args.dtype, device="cpu")
        for seed in seeds:
            if moefy.pinned_path(lm.fingerprint, expert_size, "kmeans", features, seed).exists() and not args.force:
                print(f"{model} {features} e{expert_size} seed {seed}: already pinned")
                continue
            start = time.perf_counter()
            part = moefy.build_partition(lm, expert_size, "kmeans", features, seed, pinned=False)
            path = moefy.pin_partition(part, force=args.force)
            print(f"{model} {features} e{expert_size} seed {seed}: {time.perf_counter() - start:.1f} s -> {path.name}")


if __name__ == "__main__":
    main()
