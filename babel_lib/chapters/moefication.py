"""Chapter 1 as library steps (``01_moefication.ipynb``): how much of the activation mass a partition's
activated experts carry against a random grouping (paired intervals over passages), the prose for it,
and the chapter's verdict rows. The measures themselves are :mod:`babel_lib.experts.quality`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from babel_lib.core.claims import decide, descriptive, row
from babel_lib.stats.inference import bootstrap_units, interval_text


def mass_comparison(by_unit: dict, baseline: str = "random", n_resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mass captured by each partition's activated experts, with 95% bootstrap intervals over units
    (resampling the same units for every partition: a paired comparison).

    by_unit: {name: (mass [U, L], tokens [U])} from :func:`partition_quality` with ``units``.
    Returns one row per partition: partition, mass_captured (mean over layers and tokens), low, high,
    difference (minus the baseline partition's), diff_low, diff_high, better_layers (layers where
    the partition captures more than the baseline on the full data)."""
    names = list(by_unit)
    tokens = next(iter(by_unit.values()))[1]
    stack = np.stack([by_unit[n][0] for n in names])  # [N, U, L]

    def per_partition(W):  # W [m, U] -> [m, N]
        return np.einsum("mu,nul->mnl", W, stack).mean(-1) / (W @ tokens)[:, None]

    result = bootstrap_units(per_partition, len(tokens), n_resamples, seed, batched=True)
    b = names.index(baseline) if baseline in names else None
    diff = (bootstrap_units(lambda W: per_partition(W) - per_partition(W)[:, [b]], len(tokens), n_resamples, seed,
                            batched=True) if b is not None else None)
    per_layer = stack.sum(1) / tokens.sum()
    rows = []
    for i, name in enumerate(names):
        rows.append({"partition": name, "mass_captured": float(result.estimate[i]), "low": float(result.low[i]),
                     "high": float(result.high[i]),
                     "difference": float(diff.estimate[i]) if diff is not None else np.nan,
                     "diff_low": float(diff.low[i]) if diff is not None else np.nan,
                     "diff_high": float(diff.high[i]) if diff is not None else np.nan,
                     "better_layers": int((per_layer[i] > per_layer[b]).sum()) if b is not None else 0,
                     "layers": per_layer.shape[1]})
    return pd.DataFrame(rows)


def mass_texts(mass: pd.DataFrame) -> dict:
    """Prose for :func:`mass_comparison`'s table: {partition: {'mass': "0.43 [0.42, 0.44]",
    'difference': "0.10 [0.09, 0.11]: more than random beyond noise"}} (the difference's words say
    whether its interval excludes 0)."""
    out = {}
    for _, r in mass.iterrows():
        verdict = ("more than random beyond noise" if r["diff_low"] > 0 else
                   "less than random beyond noise" if r["diff_high"] < 0 else "not distinguishable from random")
        out[r["partition"]] = {"mass": interval_text(r["mass_captured"], r["low"], r["high"]),
                               "difference": f"{interval_text(r['difference'], r['diff_low'], r['diff_high'])}: {verdict}"}
    return out


def moefication_verdicts(mass: pd.DataFrame, agreement: pd.DataFrame, main: str, top_k_fraction: float) -> list[dict]:
    """Chapter 1's verdict rows: the conversion is exact with every expert on (agreement row with
    top_k_fraction 1.0), and the main partition's activated experts carry more of the activation
    mass than a random grouping beyond noise."""
    m = mass.set_index("partition").loc[main]
    exact = agreement[agreement.top_k_fraction == 1.0].iloc[0]
    topk = agreement[(agreement.partition == main) & (agreement.top_k_fraction == top_k_fraction)].iloc[0]
    beats = m["diff_low"] > 0
    result = (f"with every expert on, the converted model gives the dense logits (max difference "
              f"{exact['max_abs_logit_diff']:.1e}); the top {top_k_fraction:.0%} of {main} experts carry "
              f"{interval_text(m['mass_captured'], m['low'], m['high'])} of the activation mass, "
              f"{interval_text(m['difference'], m['diff_low'], m['diff_high'])} more than random experts; computing "
              f"only them keeps the dense next-token prediction on {topk['top1_agreement']:.1%} of tokens")
    exact_ok = exact["max_abs_logit_diff"] < 1e-2
    word = decide([exact_ok, beats])  # a random grouping of the same sizes is a null that could win
    evidence = (f"paired bootstrap over held-out passages ({int(topk['tokens']):,} tokens); the conversion is exact, "
                f"but as a sparse mixture of experts the top-{top_k_fraction:.0%} model is lossy")
    design = descriptive("moefication_design", f"every feed-forward layer grouped into equal-size experts ({main}); "
                         "the experts of every chapter come from this conversion")
    return [design, row("moefication", result, evidence, word)]
