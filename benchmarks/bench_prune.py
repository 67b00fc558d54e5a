"""Physically pruned vs dense forward: FFN-only and whole-backbone speed-ups.

Gemma 3 270M (bf16 by default), a batch of 8 x 128 tokens of real UDHR text, experts of 32
neurons, a uniform plan dropping p = 0.5 of every layer's experts (which experts does not
matter for speed: a seeded random ranking). The pruned model is a physically sliced copy
(babel_lib.interventions.prune.prune_model: gate/up rows and down columns removed).

- FFN only: every layer's MLP module run on the same recorded inputs (each layer's FFN input
  from one dense forward), dense vs pruned.
- Backbone: the whole transformer without the LM head, dense vs pruned.

The four variants are timed interleaved (dense FFN, pruned FFN, dense backbone, pruned
backbone, repeat) in one process after warm-up rounds, so machine drift cancels in the
per-round ratios; the median ratio is reported. Before timing, the pruned model's backbone
output is checked against the dense model with the same experts masked.

    python benchmarks/bench_prune.py [--rounds 8] [--rate 0.5] [--dtype bfloat16] [--batch 8] [--length 128]

Last line: RESULT prune_ffn_speedup=... prune_backbone_speedup=...
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from babel_lib.interventions import timing
from babel_lib.interventions.timing import make_batch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--rate", type=float, default=0.5)
    ap.add_argument("--expert-size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--length", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args(argv)

    from babel_lib.core.adapters import backbone
    from babel_lib.core.models import load_model
    from babel_lib.experts.moefy import Partition, moe_view
    from babel_lib.interventions import prune

    t0 = time.perf_counter()
    lm = load_model(args.model, dtype=args.dtype, device=args.device)
    layers = prune.ffn_layers(lm.model)
    n_layers, width = len(layers), layers[0].n_neurons
    n_experts = width // args.expert_size
    # contiguous experts: speed does not depend on which neurons form an expert
    labels = torch.arange(width).div(args.expert_size, rounding_mode="floor").repeat(n_layers, 1).numpy()
    part = Partition(labels, args.expert_size, "contiguous", "", 0, lm.name, lm.fingerprint)
    plan = prune.prune_plan(prune.random_ranking(n_layers, n_experts, seed=0), args.rate)
    small = prune.prune_model(lm, part, plan, share=True)
    ids = make_batch(lm, args.batch, args.length)
    print(f"{lm.name} ({args.dtype}, {lm.device}, {torch.get_num_threads()} threads); batch {args.batch} x "
          f"{args.length}; {plan.describe()}; setup {time.perf_counter() - t0:.1f}s", flush=True)
    print({k: (f"{v:.3f}" if isinstance(v, float) else v) for k, v in prune.size_report(lm, small).items()})

    with torch.inference_mode():
        with moe_view(lm.model, part, experts=plan.keep):
            ref = backbone(lm.model)(input_ids=ids, use_cache=False).last_hidden_state.float()
        got = backbone(small.model)(input_ids=ids, use_cache=False).last_hidden_state.float()
    rel = float((got - ref).norm() / ref.norm())
    print(f"pruned vs masked dense backbone output: relative difference {rel:.2e}", flush=True)
    if rel > 0.05:
        print("pruned model does not match the masked dense model", file=sys.stderr)
        return 1

    inputs = timing.ffn_inputs(lm, ids)
    body_dense, body_small = backbone(lm.model), backbone(small.model)

    def fwd(body):
        @torch.inference_mode()
        def run():
            body(input_ids=ids, use_cache=False)
        return run

    times = timing.time_interleaved({
        "dense_ffn": timing.mlp_callable(lm, inputs), "pruned_ffn": timing.mlp_callable(small, inputs),
        "dense_backbone": fwd(body_dense), "pruned_backbone": fwd(body_small),
    }, rounds=args.rounds, warmup=args.warmup)
    table = times.pivot(index="round", columns="name", values="seconds")
    table["ffn_ratio"] = table["dense_ffn"] / table["pruned_ffn"]
    table["backbone_ratio"] = table["dense_backbone"] / table["pruned_backbone"]
    print(table.round(4).to_string())
    ffn = timing.speedup(times, "dense_ffn", "pruned_ffn")
    body = timing.speedup(times, "dense_backbone", "pruned_backbone")
    tokens = args.batch * args.length
    print(f"median seconds: dense FFN {table.dense_ffn.median():.3f}, pruned FFN {table.pruned_ffn.median():.3f}, "
          f"dense backbone {table.dense_backbone.median():.3f} ({tokens / table.dense_backbone.median():.0f} tok/s), "
          f"pruned backbone {table.pruned_backbone.median():.3f} ({tokens / table.pruned_backbone.median():.0f} tok/s)")
    print(f"RESULT prune_ffn_speedup={ffn:.3f} prune_backbone_speedup={body:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
