"""Chapter 1 as library steps (``01_moefication.ipynb``): how much of the activation mass a partition's
activated experts carry against a random grouping (paired intervals over passages), the prose for it, the
chapter's tables, chart and findings, and its verdict rows. The measures themselves are
:mod:`babel_lib.experts.quality`."""

from __future__ import annotations

import altair as alt
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


# ---------------------------------------------------------------------------- the notebook's tables, charts and prose
#: The chapter's tables: plots.table's options by table name.
TABLES: dict[str, dict] = {
    "mass_captured": {
        "columns": {"partition": "Grouping", "mass_captured": "Mass captured", "low": "95% low", "high": "95% high",
                    "difference": "Minus random", "diff_low": "95% low ", "diff_high": "95% high ",
                    "better_layers": "Layers above random"},
        "formats": {c: "{:.3f}" for c in ("mass_captured", "low", "high", "difference", "diff_low", "diff_high")},
        "caption": "Share of the activation mass carried by the activated experts",
    },
    "moe_view_agreement": {
        "columns": {"partition": "Grouping", "top_k_fraction": "Experts computed",
                    "max_abs_logit_diff": "Max |logit difference|", "mean_abs_logit_diff": "Mean |logit difference|",
                    "top1_agreement": "Same next-token prediction", "tokens": "Tokens"},
        "formats": {"top_k_fraction": "{:.0%}", "max_abs_logit_diff": "{:.2e}", "mean_abs_logit_diff": "{:.3f}",
                    "top1_agreement": "{:.1%}"},
        "caption": "The MoE view against the dense model",
    },
}

#: What each per-layer measure of :func:`babel_lib.experts.quality.partition_quality` is called in the chart.
MEASURE_NAMES = {"mass_captured": "Mass captured", "balance": "Balance",
                 "within_coactivation": "Within-expert co-activation"}


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


def text_description(lm, calibration, evaluation, n_calibration: int, n_evaluation: int, max_length: int) -> str:
    """The chapter's model and text in one Markdown paragraph (calibration and evaluation passages, the
    tokens each was measured on)."""
    return (f"**Model** {lm.description} (`{lm.name}`, {_dtype_name(lm.dtype)}, fingerprint "
            f"`{lm.fingerprint}`). **Text** {calibration.describe()} {evaluation.describe()} Co-activation on "
            f"{n_calibration:,} calibration tokens, quality on {n_evaluation:,} evaluation tokens, windows of at most "
            f"{max_length} tokens.")


def partition_quality_chart(per_layer: pd.DataFrame) -> alt.FacetChart:
    """One panel per measure (independent y scales), one line per grouping over the layers.

    per_layer: partition, layer, mass_captured, balance, within_coactivation (one row per partition and layer)."""
    long = per_layer.melt(id_vars=["partition", "layer"], var_name="measure", value_name="value")
    long["measure"] = long["measure"].map(MEASURE_NAMES)
    return alt.Chart(long).mark_line(point=alt.OverlayMarkDef(size=20)).encode(
        x=alt.X("layer:O", title="Layer", axis=alt.Axis(values=list(range(0, int(long.layer.max()) + 1, 3)))),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("partition:N", title="Grouping", legend=alt.Legend(orient="bottom", columns=2)),
        tooltip=["partition", "layer", "measure", alt.Tooltip("value:Q", format=".3f")],
    ).properties(width=185, height=170).facet(column=alt.Column("measure:N", title=None)).resolve_scale(y="independent")


def agreement_runs(partitions: dict, main: str, top_k_fraction: float) -> list[tuple]:
    """The MoE views :func:`babel_lib.experts.quality.moe_agreements` runs: the main partition with every
    expert on (the dense-equivalence check), then every partition with its top ``top_k_fraction`` experts."""
    return ([(main, partitions[main], 1.0)]
            + [(name, partition, top_k_fraction) for name, partition in partitions.items()])


def findings_text(mass: pd.DataFrame, per_layer: pd.DataFrame, checks: pd.DataFrame, main: str,
                  top_k_fraction: float, dtype) -> str:
    """The chapter's findings (Markdown) from :func:`mass_comparison`'s table, the per-layer quality table
    (partition, within_coactivation, balance) and the MoE-view agreement table (partition, top_k_fraction,
    max_abs_logit_diff, top1_agreement, tokens); ``dtype`` the model's."""
    better, layers = mass.set_index("partition").loc[main, ["better_layers", "layers"]]
    t = mass_texts(mass)
    q = per_layer.groupby("partition", sort=False)[["within_coactivation", "balance"]].mean()
    within, balance = q["within_coactivation"], q["balance"]
    topk = checks[checks.top_k_fraction == top_k_fraction].set_index("partition")["top1_agreement"]
    exact = checks[checks.top_k_fraction == 1.0].iloc[0]
    return f"""
- **Equivalence.** With all experts on, the MoE view reproduces the dense logits to a maximum absolute difference of
  {exact.max_abs_logit_diff:.2e} ({_dtype_name(dtype)}) and the same next-token prediction on
  {exact.top1_agreement:.1%} of {int(exact.tokens):,} positions.
- **Mass captured.** The top {top_k_fraction:.0%} of experts carry {t[main]['mass']} of the activation mass with k-means
  experts ({t[main]['difference']}; more than random in {int(better)} of {int(layers)}
  layers), {t['k-means (gate+up rows)']['mass']} with k-means on gate and up rows, {t['co-activation']['mass']} with
  co-activation experts ({t['co-activation']['difference']}) and {t['random']['mass']} with random experts.
- **Neurons that fire together.** Within-expert co-activation is {within[main]:.3f} for k-means,
  {within['co-activation']:.3f} for co-activation (built on other text) and
  {within['random']:.3f} for random; balance {balance[main]:.3f}, {balance['co-activation']:.3f}
  and {balance['random']:.3f}.
- **Top-k as an MoE.** Computing only the top {top_k_fraction:.0%} experts per token keeps the dense next-token
  prediction on {topk[main]:.1%} of positions with k-means experts,
  {topk['co-activation']:.1%} with co-activation experts and
  {topk['random']:.1%} with random ones: the converted model is exact, but as a sparse mixture of
  experts it is lossy. The later chapters use expert activation frequencies as a description of which parts of the
  FFN a language uses; they do not rely on top-k computation being lossless.
"""
