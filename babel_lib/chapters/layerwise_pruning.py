"""Chapter 9 as library steps (``09_layerwise_pruning.ipynb``): the facts its prose quotes and its verdict
rows, from the per-layer allocation comparison of :mod:`babel_lib.interventions.applications`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from babel_lib.core.claims import row
from babel_lib.interventions.applications import (METHOD_LABELS, RULE_LABELS, claim_word, ratio_interval_text,
                                                  strength_words)
from babel_lib.stats import inference as stats


def findings_layerwise(tests: pd.DataFrame, cells: pd.DataFrame, rates_table: pd.DataFrame | None = None,
                       alpha: float = 0.05) -> dict:
    """The facts chapter 09 quotes: per (method, rule) the rates at which the rule beats uniform
    over languages (Holm-adjusted p < alpha and ratio < 1) and at which it is worse; text per
    rule; cells decided each way; the largest |layer rate - rate| of each rule; a suggested
    verdict word (rule: 'reproduced' when some per-layer rule beats uniform at every rate for
    some method, 'partly reproduced' when at some rates, else 'not reproduced').

    Keys: tests, cells, cells_better, cells_worse; methods, rules, rates (lists); per (rule r,
    method m): r_m_better_rates / r_m_worse_rates / r_m_text (the tests, per rate) and
    r_m_cells_text (per rate: languages better and worse than uniform beyond noise, by the
    paired passage intervals); with ``rates_table`` (:func:`layer_rates`): r_max_deviation,
    r_range (text: the layers' lowest and highest rate at the highest overall rate, with their
    layers) and sparsity_gap (the largest difference in measured sparsity between rules)."""
    out: dict = {"tests": int(len(tests)), "cells": int(len(cells)),
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

    parts = [f"{RULE_LABELS.get(rule, rule)} against uniform, {METHOD_LABELS.get(m, m)} ranking: "
             f"{f[f'{rule}_{m}_text']}" for m in f["methods"] for rule in f["rules"] if f"{rule}_{m}_text" in f]
    better = sum(f.get(f"{rule}_{m}_better_rates", 0) for m in f["methods"] for rule in f["rules"])
    return [row(
        "layerwise", "; ".join(parts) + ".",
        f"{strength_words(better, f['tests'])}: geometric-mean ratio over languages with the interval that inverts the exact "
        f"sign-flip tests over languages, Holm over the chapter's {f['tests']} tests ({better} significant in favour "
        f"of a per-layer rule); {f['cells_better']} of {f['cells']} language cells better than uniform beyond noise, "
        f"{f['cells_worse']} worse. The rules are ours: the paper's formula is not published.",
        f["verdict_layerwise"])]
