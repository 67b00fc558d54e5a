"""bfloat16 vs float32 for the pruning chapters' evaluations: speed, and how far the compared ratios move.

Chapters 08-10 and 12 compare pruned or ablated models through paired perplexity ratios of a few
percent. This measures whether evaluating in bfloat16 (the model and its LM head) would leave those
ratios where float32 puts them. Gemma 3 270M, the rankings of chapter 08 calibrated in domain (their
cached profiles are read, or counted once in float32), the nine languages' held-out Bible text (Urdu:
UDHR) at ``--tokens`` tokens a language at least, windows of 128 tokens; every model physically
sliced at ``--rate``.

- Speed: the dense model's summed NLL over one language's windows in float32 and in bfloat16, timed
  interleaved (alternating order, ``--rounds`` rounds after one warm-up round); the median of the
  per-round ratios.
- Numerics: per language, log perplexity ratios of each ranking against magnitude pruning and of
  magnitude pruning against the dense model, in both dtypes; reports bfloat16 minus float32 (the
  shift a dtype change would put into a chapter's comparison) beside the float32 ratios themselves.
  Results go to a temporary store: nothing of the user's cache is read for them or written.

    python benchmarks/bench_eval_dtype.py [--tokens 500] [--rate 0.3] [--rounds 5]

Last line: RESULT eval_bf16_speedup=... max_abs_log_ratio_shift=... median_abs_log_ratio_shift=...
median_abs_log_ratio=...
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--tokens", type=int, default=500)
    ap.add_argument("--rate", type=float, default=0.3)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    from babel_lib.core.cache import Store
    from babel_lib.core.models import load_model
    from babel_lib.experts import pipeline
    from babel_lib.interventions import applications as app, evaluate, prune

    aliases = {"por_pt": "por"}
    study = pipeline.study(model=args.model, languages="paper", corpus_name="udhr", seeds=[0], dtype="float32",
                           device="cpu")
    calibration = app.in_domain_calibration(study.lm, study.partition, study.languages, budget=4000,
                                            aliases=aliases)
    evalset = evaluate.evaluation_set(study.lm.tokenizer, study.languages, min_tokens=args.tokens, aliases=aliases)
    exp = app.Experiment(study.lm, study.partition, calibration.profile, evalset, calibration.importance,
                         multilingual=calibration.multilingual, view="slice")
    windows = exp.windows()
    langs = list(exp.languages)
    lms = {"float32": (study.lm, "float32"), "bfloat16": (load_model(args.model, dtype="bfloat16", device="cpu"), None)}

    # speed: one language's windows through the dense model, interleaved
    lang = langs[0]
    ratios = []
    for r in range(args.rounds + 1):
        took = {}
        for name in (["float32", "bfloat16"] if r % 2 == 0 else ["bfloat16", "float32"]):
            lm, head = lms[name]
            start = time.perf_counter()
            evaluate.window_nll(lm, windows[lang], 8, head)
            took[name] = time.perf_counter() - start
        if r:  # the first round warms up
            ratios.append(took["float32"] / took["bfloat16"])
    speedup = statistics.median(ratios)
    print(f"dense evaluation of {windows[lang].n_windows} windows ({lang}): bfloat16 is {speedup:.2f}x as fast "
          f"(median of {len(ratios)} interleaved rounds: {', '.join(f'{x:.2f}' for x in ratios)})")

    # numerics: per-language log ratios in both dtypes, on a store of their own
    methods = ["language", "multilingual", "magnitude", "wanda"]
    logs = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(tmp)
        for name, (lm, head) in lms.items():
            lp = {}
            for cond in ["dense"] + methods:
                for l in langs:
                    if cond == "dense":
                        condition = evaluate.DENSE
                    else:
                        plan = exp.plan(cond, args.rate, language=l if cond == "language" else None)
                        condition = prune.sliced_condition(lm, study.partition, plan)
                    res = evaluate.window_results(lm, [l], condition, head_dtype=head, store=store, windows=windows,
                                                  evalset=evalset)[l]
                    nll, tok = evaluate.passage_losses(res)
                    lp[(cond, l)] = nll.sum() / tok.sum()
            logs[name] = lp
    shifts, sizes = [], []
    print(f"\nper language, log perplexity ratios at rate {args.rate} (float32; bfloat16 - float32 in brackets):")
    pairs = [(m, "magnitude") for m in methods if m != "magnitude"] + [("magnitude", "dense")]
    print("language  " + "  ".join(f"{a}/{b:>9s}" for a, b in pairs))
    for l in langs:
        cells = []
        for a, b in pairs:
            f32 = logs["float32"][(a, l)] - logs["float32"][(b, l)]
            b16 = logs["bfloat16"][(a, l)] - logs["bfloat16"][(b, l)]
            shifts.append(b16 - f32)
            if b != "dense":
                sizes.append(abs(f32))
            cells.append(f"{f32:+.4f} [{b16 - f32:+.4f}]")
        print(f"{l:9s} " + "  ".join(f"{c:>22s}" for c in cells))
    shifts = np.abs(np.asarray(shifts))
    print(f"\n|shift| median {np.median(shifts):.4f}, max {shifts.max():.4f}; the compared float32 log ratios between "
          f"rankings: median |value| {np.median(sizes):.4f}")
    print(f"RESULT eval_bf16_speedup={speedup:.2f} max_abs_log_ratio_shift={shifts.max():.4f} "
          f"median_abs_log_ratio_shift={np.median(shifts):.4f} median_abs_log_ratio={np.median(sizes):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
