"""Chapter 9 as library steps (``09_layerwise_pruning.ipynb``): its tables and charts, the facts its prose
quotes, the prose and its verdict rows, from the per-layer allocation comparison of
:mod:`babel_lib.interventions.applications`."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from babel_lib.core.claims import row
from babel_lib.interventions import applications as app
from babel_lib.interventions.applications import (METHOD_LABELS, RULE_LABELS, claim_word, ratio_interval_text,
                                                  strength_words)
from babel_lib.stats import inference as stats

#: The chapter's tables: ``plots.table`` arguments by table name.
TABLES: dict[str, dict] = {
    "evaluation_text": app.EVALUATION_TEXT_TABLE,
    "tests_over_languages": {
        "columns": {"rate": "Rate", "method_name": "Ranking", "rule_name": "Rule", "languages": "Languages",
                    "ratio": "Geometric-mean ratio", "low": "Low", "high": "High",
                    "wins_beyond_noise": "Languages better", "losses_beyond_noise": "Languages worse",
                    "p_value": "p", "p_adjusted": "p (Holm)"},
        "formats": {"rate": "{:g}", "ratio": "{:.3g}", "low": "{:.3g}", "high": "{:.3g}", "p_value": "{:.4f}",
                    "p_adjusted": "{:.4f}"},
        "caption": "Per-layer rule / uniform over languages (exact sign-flip; Holm within each family of rules: "
                   "ours, the field's)"},
}
#: The findings' sentence over every comparison, by the verdict word of ``layerwise``.
#: The per-layer rules the paper's claim stands for (ours: its formula is not published); the others are the
#: field's rules, baselines at the same budget (OWL; cross-lingual correlation in the spirit of M-Wanda).
OUR_RULES = ("layerwise", "entropy")
VERDICT_WORDS = {
    "reproduced": "A per-layer rule beats the uniform rate at every rate tested for at least one ranking, after "
                  "correction.",
    "partly reproduced": "A per-layer rule beats the uniform rate at some rates only, after correction: the answer "
                         "depends on the rate.",
    "not reproduced": "No per-layer rule beats the uniform rate over languages at any rate after correction: the "
                      "paper’s claim is not reproduced here."}


def findings_layerwise(tests: pd.DataFrame, cells: pd.DataFrame, rates_table: pd.DataFrame | None = None,
                       alpha: float = 0.05) -> dict:
    """The facts chapter 09 quotes: per (method, rule) the rates at which the rule beats uniform
    over languages (Holm-adjusted p < alpha and ratio < 1) and at which it is worse; text per
    rule; cells decided each way; the largest |layer rate - rate| of each rule; a suggested
    verdict word (rule: 'reproduced' when one of :data:`OUR_RULES` beats uniform at every rate for
    some method, 'partly reproduced' when at some rates, else 'not reproduced'; the field's rules,
    OWL and cross-lingual, are baselines and do not enter the word).

    Keys: tests, cells, cells_better, cells_worse; methods, rules, rates (lists); per (rule r,
    method m): r_m_better_rates / r_m_worse_rates / r_m_text (the tests, per rate) and
    r_m_cells_text (per rate: languages better and worse than uniform beyond noise, by the
    paired passage intervals); with ``rates_table`` (:func:`layer_rates`): r_max_deviation,
    r_range (text: the layers' lowest and highest rate at the highest overall rate, with their
    layers) and sparsity_gap (the largest difference in measured sparsity between rules)."""
    out: dict = {"tests": int(len(tests)), "cells": int(len(cells)),
                 "tests_ours": int(tests["rule"].isin(OUR_RULES).sum()) if len(tests) else 0,
                 "cells_better": int((cells["decision"] == "beats uniform").sum()) if len(cells) else 0,
                 "cells_worse": int((cells["decision"] == "worse than uniform").sum()) if len(cells) else 0,
                 "methods": list(dict.fromkeys(tests["method"])) if len(tests) else [],
                 "rules": list(dict.fromkeys(tests["rule"])) if len(tests) else [],
                 "rates": sorted(set(float(r) for r in tests["rate"])) if len(tests) else []}
    words = []
    for (m, rule), t in tests.groupby(["method", "rule"], sort=False):
        good = (t["p_adjusted"] < alpha) & (t["ratio"] < 1)
        bad = (t["p_adjusted"] < alpha) & (t["ratio"] > 1)
        out[f"{rule}_{m}_better_rates"] = int(good.sum())
        out[f"{rule}_{m}_worse_rates"] = int(bad.sum())
        out[f"{rule}_{m}_text"] = "; ".join(
            f"rate {r.rate:g}: {ratio_interval_text(r.ratio, r.low, r.high)}, {stats.p_text(r.p_value, r.p_adjusted)}"
            for r in t.itertuples())
        c = cells[(cells["method"] == m) & (cells["rule"] == rule)] if len(cells) else cells
        out[f"{rule}_{m}_cells_text"] = "; ".join(
            f"rate {r:g}: better in {int((g['decision'] == 'beats uniform').sum())}, worse in "
            f"{int((g['decision'] == 'worse than uniform').sum())} of {len(g)} languages"
            for r, g in c.groupby("rate")) if len(c) else "none"
        if rule in OUR_RULES:
            words.append(claim_word(list(good)))
    out["verdict_layerwise"] = ("reproduced" if "reproduced" in words else
                                "partly reproduced" if "partly reproduced" in words else "not reproduced")
    if rates_table is not None and len(rates_table):
        for rule, r in rates_table.groupby("rule"):
            out[f"{rule}_max_deviation"] = float((r["layer_rate"] - r["rate"]).abs().max())
            top = r[np.isclose(r["rate"], r["rate"].max())]
            lo, hi = top.loc[top["layer_rate"].idxmin()], top.loc[top["layer_rate"].idxmax()]
            out[f"{rule}_range"] = (f"at rate {lo['rate']:g} from {lo['layer_rate']:.2f} (layer {int(lo['layer'])}) "
                                    f"to {hi['layer_rate']:.2f} (layer {int(hi['layer'])})")
        sp = rates_table.groupby(["rule", "rate"])["measured_sparsity"].first().unstack("rule")
        out["sparsity_gap"] = float(sp.sub(sp.iloc[:, 0], axis=0).abs().to_numpy().max())
    return out


def verdicts_layerwise(f: dict) -> list[dict]:
    """Chapter 09's verdict row ('layerwise') from :func:`findings_layerwise`'s facts."""

    ours = [r for r in f["rules"] if r in OUR_RULES]
    field = [r for r in f["rules"] if r not in OUR_RULES]
    parts = [f"{RULE_LABELS.get(rule, rule)} against uniform, {METHOD_LABELS.get(m, m)} ranking: "
             f"{f[f'{rule}_{m}_text']}" for m in f["methods"] for rule in ours if f"{rule}_{m}_text" in f]
    better = sum(f.get(f"{rule}_{m}_better_rates", 0) for m in f["methods"] for rule in f["rules"])
    baselines = "".join(
        f" The field's rule {RULE_LABELS.get(rule, rule)} (a baseline at the same budget, {METHOD_LABELS.get(m, m)} "
        f"ranking): {f[f'{rule}_{m}_text']}." for m in f["methods"] for rule in field if f"{rule}_{m}_text" in f)
    return [row(
        "layerwise", "; ".join(parts) + ".",
        f"{strength_words(better, f['tests'])}: geometric-mean ratio over languages with the interval that inverts "
        f"the exact sign-flip tests over languages, Holm over the {f.get('tests_ours', f['tests'])} tests of our rules "
        f"(the field's rules form a family of their own; {better} significant in favour of a per-layer rule); {f['cells_better']} of {f['cells']} language cells better than uniform "
        f"beyond noise, {f['cells_worse']} worse. The two rules the verdict rests on are ours (the paper's formula is "
        f"not published).{baselines}",
        f["verdict_layerwise"])]


# ------------------------------------------------------------------------------ tables, charts and prose
def _with_method_name(table: pd.DataFrame, suffix: str = "") -> pd.DataFrame:
    return table.assign(method_name=table["method"].map(METHOD_LABELS) + suffix)


def tests_table(tests: pd.DataFrame) -> pd.DataFrame:
    """The tests over languages (:func:`babel_lib.interventions.applications.allocation_comparison`) with
    readable names: ``rule_name`` and ``method_name`` (the ranking) beside the keys."""
    return _with_method_name(app.labelled(tests))


def layer_rates_chart(layer_table: pd.DataFrame) -> alt.FacetChart:
    """The share of each layer's experts each rule drops, a panel per overall rate. layer_table:
    :func:`babel_lib.interventions.applications.layer_rates`'s rows (rule, rate, layer, layer_rate, entropy,
    bottom_half_share, measured_sparsity)."""
    return alt.Chart(app.facet_named(layer_table, "rate")).mark_line(point=True).encode(
        x=alt.X("layer:O", title="Layer", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("layer_rate:Q", title="Share of the layer's experts dropped"),
        color=alt.Color("rule_name:N", title="Rule", legend=alt.Legend(orient="bottom")),
        tooltip=["rule_name:N", "rate:Q", "layer:O", alt.Tooltip("layer_rate:Q", format=".3f"),
                 alt.Tooltip("entropy:Q", format=".3f"), alt.Tooltip("bottom_half_share:Q", format=".3f"),
                 alt.Tooltip("measured_sparsity:Q", format=".4f")]
    ).properties(width=300, height=200).facet(column=alt.Column("rate_name:N", title=None)).properties(
        title="Per-layer rates (multilingual levels)")


def layer_concentration_chart(layer_table: pd.DataFrame) -> alt.Chart:
    """How evenly each layer uses its experts: its normalised entropy and the share of its least-used half, per
    layer (the uniform rows at the lowest rate). layer_table: as for :func:`layer_rates_chart`."""
    rows = app.facet_named(layer_table, "rate")
    levels = rows[(rows.rule == "uniform") & (rows.rate == rows.rate.min())]
    return alt.Chart(levels).transform_fold(["entropy", "bottom_half_share"], as_=["measure", "value"]
                                            ).transform_calculate(
        measure_name="datum.measure == 'entropy' ? 'normalised entropy' : 'share of the least-used half'").mark_line(
        point=True).encode(
        x=alt.X("layer:O", title="Layer", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("value:Q", title="Value", scale=alt.Scale(zero=False)),
        color=alt.Color("measure_name:N", title=None, legend=alt.Legend(orient="bottom")),
        tooltip=["layer:O", "measure_name:N", alt.Tooltip("value:Q", format=".3f")]).properties(
        width=560, height=200, title="How evenly each layer uses its experts (multilingual levels)")


def rule_vs_uniform_chart(cells: pd.DataFrame, grid: pd.DataFrame) -> alt.FacetChart:
    """Each per-layer rule's perplexity ratio to the uniform plan per language, a panel per rate and ranking.
    cells: :func:`babel_lib.interventions.applications.allocation_comparison`'s cells (method, rule, rate,
    language, ratio, low, high, decision, corpus); grid: the grid's rows, whose dense rows give the languages'
    order."""
    return app.ratio_chart(
        _with_method_name(app.facet_named(cells, "rate"), " ranking"), color="rule_name", color_title="Rule",
        column="rate_name", row="method_name", step=8, size=36, x_title="Perplexity: per-layer rule / uniform",
        title="Per-layer rules against one uniform rate", order=list(app.labelled(grid[grid.method == "dense"]).name),
        tooltip=["name:N", "method_name:N", "rule_name:N", "rate:Q", alt.Tooltip("ratio:Q", format=".3f"),
                 alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("high:Q", format=".3f"), "decision:N", "corpus:N"])


def findings_text(f: dict, max_deviation: float) -> str:
    """Chapter 09's findings in Markdown, from :func:`findings_layerwise`'s facts and the rules' bound
    ``max_deviation``."""
    lines = [f"- **{RULE_LABELS[r]}, {METHOD_LABELS[m]} ranking.** Over languages: {f[f'{r}_{m}_text']}. "
             f"Language by language: {f[f'{r}_{m}_cells_text']}." for m in f["methods"] for r in f["rules"]]
    rates = " and ".join(f"{r:g}" for r in f["rates"])
    return "\n".join(lines) + f"""
- **In all.** {f['cells_better']} of {f['cells']} (ranking, rule, rate, language) cells are better than the uniform plan
  beyond noise and {f['cells_worse']} worse. {VERDICT_WORDS[f['verdict_layerwise']]}
- **The same budget.** The largest difference in measured sparsity between a rule's plan and the uniform plan is
  {f['sparsity_gap']:.4f}. Layer rates at the highest overall rate: {_ranges(f)}.
- **Strength of evidence.** {_rules_words(f)}, each at `max_deviation` = {max_deviation:g}, rates {rates},
  {f['tests']} tests over languages, Holm-corrected within each family of rules (ours, the field's); one small model and one partition. Other rules or bounds may
  rank differently: the paper's formula is not published.
"""


def _ranges(f: dict) -> str:
    return "; ".join(f"{RULE_LABELS.get(r, r)} {f[f'{r}_range']} (largest departure from the overall rate "
                     f"{f[f'{r}_max_deviation']:.2f})" for r in f["rules"] if f"{r}_range" in f)


def _rules_words(f: dict) -> str:
    ours = [r for r in f["rules"] if r in OUR_RULES]
    field = [r for r in f["rules"] if r not in OUR_RULES]
    words = f"{len(ours)} rule{'s' if len(ours) != 1 else ''} of ours (the verdict's)"
    if field:
        words += (f" and {len(field)} of the field's as baselines ("
                  + ", ".join(RULE_LABELS.get(r, r) for r in field) + ")")
    return words
