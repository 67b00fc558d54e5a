"""Findings of chapters 08-10 as dicts of facts and their verdict rows, and readable names for their tables: every number the chapters' prose quotes comes from here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import evaluate, stats
from .applications import METHOD_LABELS, RULE_LABELS, SELECTOR_LABELS

# ------------------------------------------------------------------------------ readable tables
def labelled(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of a table of this module with readable names beside the keys, for charts and tables:
    ``name`` (from ``language``), ``pruned_for_name`` / ``evaluated_on_name`` (the matrix),
    ``ranking`` (from ``method``, :data:`METHOD_LABELS`), ``against_name`` (from
    ``against_method``) and ``against_label`` ('best agnostic (activation magnitude)', or the
    method's name), ``rule_name`` (from ``rule``, :data:`RULE_LABELS`), ``selector_name``
    (from ``selector``) and ``seed_name`` (from ``seed``: 'seed 0', '' for deterministic methods)."""
    out = table.copy()
    for key, name in (("language", "name"), ("pruned_for", "pruned_for_name"), ("evaluated_on", "evaluated_on_name")):
        if key in out.columns:
            out[name] = out[key].map(evaluate.language_labels(sorted(set(out[key]))))
    if "method" in out.columns:
        out["ranking"] = out["method"].map(lambda m: METHOD_LABELS.get(m, m))
    if "against_method" in out.columns:
        out["against_name"] = out["against_method"].map(lambda m: METHOD_LABELS.get(m, m))
        if "against" in out.columns:
            out["against_label"] = [f"{a} ({METHOD_LABELS.get(m, m)})" if a != m else METHOD_LABELS.get(a, a)
                                    for a, m in zip(out["against"], out["against_method"])]
    if "rule" in out.columns:
        out["rule_name"] = out["rule"].map(lambda r: RULE_LABELS.get(r, r))
    if "selector" in out.columns:
        out["selector_name"] = out["selector"].map(lambda s: SELECTOR_LABELS.get(s, s))
    if "seed" in out.columns:
        out["seed_name"] = [f"seed {int(x)}" if pd.notna(x) else "" for x in out["seed"]]
    return out


# ------------------------------------------------------------------------------ findings
def _num(v) -> str:
    """3 significant digits, without an exponent: '1.04', '0.00153', '4,030'."""
    v = float(v)
    if not np.isfinite(v):
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if v == 0:
        return "0"
    digits = max(0, 2 - int(math.floor(math.log10(abs(v)))))
    return f"{v:.{digits}f}"


def _x(v) -> str:
    """'x1.04': a ratio."""
    return f"x{_num(v)}"


def _fmt_ratio(ratio, low, high) -> str:
    """'x1.04 [1.01, 1.08]': a perplexity ratio and its interval, 3 significant digits."""
    return f"x{_num(ratio)} [{_num(low)}, {_num(high)}]"


def _cells_text(rows: pd.DataFrame, limit: int = 6) -> str:
    names = evaluate.language_labels(sorted(set(rows["language"])))
    items = [f"{names[r.language]} at {r.rate:g} ({_fmt_ratio(r.ratio, r.low, r.high)})" for r in rows.itertuples()]
    return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _tests_text(tests: pd.DataFrame) -> str:
    return "; ".join(f"rate {r.rate:g}: {_fmt_ratio(r.ratio, r.low, r.high)} vs {METHOD_LABELS.get(r.against_method, r.against_method)}, "
                     f"{stats.p_text(r.p_value, r.p_adjusted)}" for r in tests.itertuples())


def _claim_word(significant: list[bool]) -> str:
    if significant and all(significant):
        return "reproduced"
    if any(significant):
        return "partly reproduced"
    return "not reproduced"


def _slug(text: str) -> str:
    return str(text).replace(" ", "_").replace("-", "_")


def _names(keys) -> str:
    """Readable language names joined by commas ('none' for none)."""
    keys = list(keys)
    return ", ".join(evaluate.language_labels(keys).values()) if keys else "none"


def findings_pruning(grid_table: pd.DataFrame, tests: pd.DataFrame | None = None, matrix: dict | None = None,
                     alpha: float = 0.05, allocation: str = "uniform", cells: pd.DataFrame | None = None) -> dict:
    """The facts chapter 08 quotes (plain numbers and short strings).

    Keys: languages, rates, methods, tokens_min / tokens_max, passages_min / passages_max, sparsity
    (text: the measured fraction of experts dropped per rate), udhr_languages (names of the
    languages evaluated on the UDHR, 'none' if none) and corpora (text: which corpus each language
    is evaluated on); per method m:
    beats_dense_<m> / worse_than_dense_<m> / cells_<m> (language-rate cells decided by the
    paired intervals), beats_random_<m> (cells beating the random baseline beyond noise);
    beats_dense_cells (text listing the target-language cells that beat dense); best_cell (text:
    the target-language cell closest to dense, with its interval); median_ratio (text: median
    ratio to dense per rate and method); random_seeds and random_range (text per rate: the
    geometric mean over languages of each seed's ratio to dense, lowest to highest seed);
    from ``tests`` (:func:`language_tests`): n_tests and, for every ``against`` a of the
    target-language rows, tests_<a> (text per rate), tests_<a>_significant (rates where the
    target-language ranking is better, Holm-adjusted p < alpha), tests_<a>_worse (rates where
    it is worse), tests_<a>_rates; best_agnostic (text: which agnostic ranking was the best per
    rate); from ``cells`` (:func:`comparison_cells`): for every ``against`` a, vs_<a>_better /
    vs_<a>_worse (language-rate cells decided by the paired intervals), vs_<a>_cells and
    vs_<a>_better_text / vs_<a>_worse_text (which languages, per rate); verdict_beats_random /
    verdict_beats_dense (suggested verdict words: rules below); from the cross-language summary
    (:func:`cross_language_matrix`): matrix_* numbers, own_best, own_best_beyond_noise,
    matrix_languages, own_best_names, own_best_beyond_noise_names, matrix_names.

    Only the rows of ``allocation`` count (chapter 08: one uniform rate). Keys with spaces in the
    ``against`` name use underscores ('best agnostic' -> tests_best_agnostic).

    Verdict rules (our choices): beats_random is 'reproduced' when the target-language ranking
    beats random over languages (Holm-adjusted sign-flip p < alpha with a ratio below 1) at every
    rate, 'partly reproduced' at some rates, else 'not reproduced'; beats_dense is 'reproduced'
    when some (language, rate) cell of the target-language ranking beats dense beyond noise (its
    95% passage interval wholly below 1; per-cell intervals, not corrected for the number of cells:
    the count of cells is given beside it), else 'not reproduced'.
    """
    g = grid_table[(grid_table["method"] != "dense") & (grid_table["allocation"] == allocation)]
    dense = grid_table[grid_table["method"] == "dense"]
    out: dict = {"languages": int(dense["language"].nunique()), "rates": sorted(set(g["rate"])),
                 "methods": list(dict.fromkeys(g["method"])),
                 "tokens_min": int(dense["tokens"].min()), "tokens_max": int(dense["tokens"].max()),
                 "passages_min": int(dense["passages"].min()), "passages_max": int(dense["passages"].max()),
                 "udhr_languages": _names(dense.loc[dense["corpus"] == "udhr", "language"])
                 if "corpus" in dense.columns else "none"}
    n_udhr = int((dense["corpus"] == "udhr").sum()) if "corpus" in dense.columns else 0
    out["corpora"] = ("all on the Bible" if n_udhr == 0 else "all on the UDHR" if n_udhr == len(dense) else
                      f"{out['udhr_languages']} on the UDHR, the other {len(dense) - n_udhr} on the Bible")
    for m, rows in g.groupby("method", sort=False):
        out[f"cells_{m}"] = int(len(rows))
        out[f"beats_dense_{m}"] = int((rows["decision"] == "beats dense").sum())
        out[f"worse_than_dense_{m}"] = int((rows["decision"] == "worse than dense").sum())
        if rows["baseline"].notna().any() and rows["baseline"].iloc[0] != m:
            out[f"beats_{rows['baseline'].iloc[0]}_{m}"] = int(rows["baseline_decision"].str.startswith("beats").sum())
    sp = g.groupby("rate")["sparsity"].first()
    out["sparsity"] = "; ".join(f"rate {r:g}: {v:.2%} of the experts" for r, v in sp.items())
    target = g[g["method"] == "language"]
    winners = target[target["decision"] == "beats dense"]
    out["beats_dense_cells"] = _cells_text(winners) if len(winners) else "none"
    if len(target):
        b = target.loc[target["ratio"].idxmin()]
        out["best_cell"] = (f"{_names([b['language']])} at rate {b['rate']:g}, "
                            f"{_fmt_ratio(b['ratio'], b['low'], b['high'])}")
    med = g.groupby(["rate", "method"], sort=False)["ratio"].median()
    out["median_ratio"] = "; ".join(
        f"rate {r:g}: " + ", ".join(f"{METHOD_LABELS.get(m, m)} {_x(med[(r, m)])}" for m in out["methods"]
                                   if (r, m) in med.index) for r in out["rates"])
    rnd = g[g["method"] == "random"]
    out["random_seeds"] = int(rnd["seed"].nunique()) if len(rnd) else 0
    if len(rnd):
        per_seed = rnd.assign(lr=np.log(rnd["ratio"])).groupby(["rate", "seed"])["lr"].mean()
        out["random_range"] = "; ".join(
            f"rate {r:g}: {_x(math.exp(v.min()))}-{_x(math.exp(v.max()))}"
            for r, v in per_seed.groupby(level="rate"))
    if tests is not None and not tests.empty:
        tests = tests[tests["allocation"] == allocation]
        out["n_tests"] = int(len(tests))
        own = tests[tests["method"] == "language"]
        for against in dict.fromkeys(["best agnostic", "random", *own["against"]]):
            key = f"tests_{_slug(against)}"
            t = own[own["against"] == against]
            out[key] = _tests_text(t) if len(t) else "not run"
            out[f"{key}_significant"] = int(((t["p_adjusted"] < alpha) & (t["ratio"] < 1)).sum())
            out[f"{key}_worse"] = int(((t["p_adjusted"] < alpha) & (t["ratio"] > 1)).sum())
            out[f"{key}_rates"] = int(len(t))
        t = own[own["against"] == "best agnostic"]
        out["best_agnostic"] = "; ".join(f"rate {r.rate:g}: {METHOD_LABELS.get(r.against_method, r.against_method)}"
                                         for r in t.itertuples()) or "not run"
        t = own[own["against"] == "random"]
        out["verdict_beats_random"] = _claim_word(list((t["p_adjusted"] < alpha) & (t["ratio"] < 1))) \
            if len(t) else "not testable here"
    else:
        out["verdict_beats_random"] = "not testable here"
    if cells is not None and not cells.empty:
        own = cells[(cells["method"] == "language") & (cells["allocation"] == allocation)]
        for against, c in own.groupby("against", sort=False):
            key = f"vs_{_slug(against)}"
            better = c[c["decision"].str.startswith("beats")]
            worse = c[c["decision"].str.startswith("worse")]
            out[f"{key}_cells"] = int(len(c))
            out[f"{key}_better"] = int(len(better))
            out[f"{key}_worse"] = int(len(worse))
            for word, rows in (("better", better), ("worse", worse)):
                out[f"{key}_{word}_text"] = "; ".join(
                    f"rate {r:g}: {_names(rows.loc[np.isclose(rows['rate'], r), 'language'])}"
                    for r in sorted(set(c["rate"])))
    out["verdict_beats_dense"] = "reproduced" if len(winners) else "not reproduced"
    if matrix:
        out.update({f"matrix_{k}": v for k, v in matrix.items() if not isinstance(v, list)})
        out["own_best"] = matrix["own_best"]
        out["own_best_beyond_noise"] = matrix["own_best_beyond_noise"]
        out["matrix_languages"] = matrix["languages"]
        out["own_best_names"] = _names(matrix.get("own_best_languages", []))
        out["own_best_beyond_noise_names"] = _names(matrix.get("own_best_beyond_noise_languages", []))
        out["matrix_names"] = _names(matrix.get("language_keys", []))
    return out


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
            f"rate {r.rate:g}: {_fmt_ratio(r.ratio, r.low, r.high)}, {stats.p_text(r.p_value, r.p_adjusted)}"
            for r in t.itertuples())
        c = cells[(cells["method"] == m) & (cells["rule"] == rule)] if len(cells) else cells
        out[f"{rule}_{m}_cells_text"] = "; ".join(
            f"rate {r:g}: better in {int((g['decision'] == 'beats uniform').sum())}, worse in "
            f"{int((g['decision'] == 'worse than uniform').sum())} of {len(g)} languages"
            for r, g in c.groupby("rate")) if len(c) else "none"
        words.append(_claim_word(list(good)))
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


def recall_summary(recall: pd.DataFrame) -> pd.DataFrame:
    """Per selector and k (from :func:`router_recall`): mean recall of each token's oracle top-k
    experts over layers and languages (languages weighted equally), its lowest and highest layer,
    and chance (k / E for the router, set size / E for a static set)."""
    per_layer = recall.groupby(["selector", "top_k_fraction", "layer"], sort=False).agg(
        k=("k", "first"), recall=("recall", "mean"), chance=("chance", "mean")).reset_index()
    return per_layer.groupby(["selector", "top_k_fraction"], sort=False).agg(
        k=("k", "first"), recall=("recall", "mean"), lowest_layer=("recall", "min"), highest_layer=("recall", "max"),
        chance=("chance", "mean")).reset_index()


def findings_sparse(quality: pd.DataFrame, sparse: pd.DataFrame | None = None, speed: pd.DataFrame | None = None,
                    comparable: float = 1.05, tests: pd.DataFrame | None = None, recall: pd.DataFrame | None = None,
                    alpha: float = 0.05) -> dict:
    """The facts chapter 10 quotes, from :func:`quality_vs_speed` (``quality``), the per-language
    rows of :func:`sparse_activation` (``sparse``), :func:`speed_table` (``speed``), the tests of
    :func:`sparse_tests` (``tests``) and :func:`recall_summary` (``recall``).

    Keys, per selector s and keep fraction f: ``<s>_<f>`` (text: geometric-mean ratio to dense
    with its interval over languages) and ``<s>_<f>_ratio``; ``<s>_<f>_worse`` (languages worse
    than dense beyond noise); ``speed_<f>`` (text: measured FFN, backbone and whole-model
    speed-ups of the static set, median and range over rounds) and ``model_speedup_<f>``;
    ``keeps`` (list); ``faster_keeps`` (static sets measurably faster: the slowest round above 1);
    ``faster_parts_<f>`` (list of 'FFN', 'backbone', 'whole model': the parts whose slowest round was
    above 1); with an oracle among the tests, ``oracle_better_keeps`` / ``oracle_worse_keeps``;
    ``experts_<f>`` (experts per layer kept) and ``experts_per_layer``; with
    ``sparse``: ``router_beats_static_<f>`` / ``router_worse_than_static_<f>`` (languages
    decided by the paired passage intervals) and ``languages``; with ``tests``: ``test_<s>_<a>_<f>``
    (text: the test of selector s against a, 'dense' or 'static', with raw and Holm-adjusted p),
    ``test_<s>_<a>_<f>_significant`` (bool: adjusted p < alpha), ``n_tests`` and
    ``router_better_keeps`` / ``router_worse_keeps`` (keep fractions at which the router is better /
    worse than the static set over languages, adjusted p < alpha); with ``recall``:
    ``recall_router_<k>`` (text: mean recall of the oracle top-k and chance) for each k, and
    ``recall_static_<f>_<k>`` for the static sets; ``noisy_timings``; ``comparable`` (our
    threshold); ``verdict_sparse_activation``: a suggested word for "accelerate inference while
    maintaining comparable performance" (our threshold: ``comparable`` = a geometric-mean
    perplexity ratio of at most 1.05): 'reproduced' when some static set is measurably faster
    (slowest round of the whole model, or of the backbone where the whole model was not timed,
    above 1) and its interval's upper end is at most ``comparable``; 'partly reproduced' when such a
    faster static set's ratio is within ``comparable`` but its interval is not; else 'not reproduced'.
    """
    out: dict = {"comparable": comparable, "keeps": sorted({float(k) for k in quality["keep"]}, reverse=True),
                 "faster_keeps": 0}
    word = "not reproduced"
    for r in quality.itertuples():
        key = f"{r.selector}_{r.keep:g}"
        out[key] = _fmt_ratio(r.ratio, r.low, r.high) if np.isfinite(r.low) else _x(r.ratio)
        out[f"{key}_ratio"] = float(r.ratio)
        out[f"{key}_worse"] = int(r.worse_than_dense)
        out[f"experts_{r.keep:g}"] = int(r.experts)
        speedup = getattr(r, "backbone_speedup", np.nan)
        if r.selector == "static" and speedup is not None and np.isfinite(speedup):
            whole = getattr(r, "model_speedup", np.nan)
            timed = whole is not None and np.isfinite(whole)
            out[f"speed_{r.keep:g}"] = (
                f"FFN x{r.ffn_speedup:.2f} ({r.ffn_speedup_low:.2f}-{r.ffn_speedup_high:.2f}), backbone x{r.backbone_speedup:.2f} "
                f"({r.backbone_speedup_low:.2f}-{r.backbone_speedup_high:.2f})"
                + (f", whole model x{r.model_speedup:.2f} ({r.model_speedup_low:.2f}-{r.model_speedup_high:.2f})" if timed else ""))
            out[f"model_speedup_{r.keep:g}"] = float(whole) if timed else float("nan")
            faster = (r.model_speedup_low if timed else r.backbone_speedup_low) > 1
            out["faster_keeps"] = out.get("faster_keeps", 0) + int(faster)
            out[f"faster_parts_{r.keep:g}"] = [part for part, low in (
                ("FFN", r.ffn_speedup_low), ("backbone", r.backbone_speedup_low),
                ("whole model", r.model_speedup_low if timed else np.nan)) if np.isfinite(low) and low > 1]
            if faster and r.high <= comparable:
                word = "reproduced"
            elif faster and r.ratio <= comparable and word != "reproduced":
                word = "partly reproduced"
    out["verdict_sparse_activation"] = word
    if sparse is not None and len(sparse):
        out["languages"] = int(sparse["language"].nunique())
        out["experts_per_layer"] = int(sparse["experts_per_layer"].iloc[0])
        for keep, g in sparse[sparse["selector"] == "router"].groupby("keep"):
            out[f"router_beats_static_{keep:g}"] = int((g["vs_static_decision"] == "beats static").sum())
            out[f"router_worse_than_static_{keep:g}"] = int((g["vs_static_decision"] == "worse than static").sum())
    if tests is not None and len(tests):
        out["n_tests"] = int(len(tests))
        for r in tests.itertuples():
            key = f"test_{r.selector}_{r.against}_{r.keep:g}"
            out[key] = f"{_fmt_ratio(r.ratio, r.low, r.high)}, {stats.p_text(r.p_value, r.p_adjusted)}"
            out[f"{key}_significant"] = bool(r.p_adjusted < alpha)
        router = tests[(tests["selector"] == "router") & (tests["against"] == "static")]
        out["router_better_keeps"] = int(((router["p_adjusted"] < alpha) & (router["ratio"] < 1)).sum())
        out["router_worse_keeps"] = int(((router["p_adjusted"] < alpha) & (router["ratio"] > 1)).sum())
        oracle = tests[(tests["selector"] == "oracle") & (tests["against"] == "static")]
        if len(oracle):
            out["oracle_better_keeps"] = int(((oracle["p_adjusted"] < alpha) & (oracle["ratio"] < 1)).sum())
            out["oracle_worse_keeps"] = int(((oracle["p_adjusted"] < alpha) & (oracle["ratio"] > 1)).sum())
    if recall is not None and len(recall):
        for r in recall.itertuples():
            who = "router" if r.selector == "centroid router" else _slug(r.selector)
            out[f"recall_{who}_{r.top_k_fraction:g}"] = (f"{r.recall:.2f} (layers {r.lowest_layer:.2f}-"
                                                         f"{r.highest_layer:.2f}; chance {r.chance:.2f})")
    if speed is not None and len(speed):
        out["noisy_timings"] = int(speed["speed_noisy"].sum())
        out["dense_tokens_per_second"] = float(speed["dense_tokens_per_second"].iloc[0]) \
            if "dense_tokens_per_second" in speed.columns else float("nan")
    return out


# ------------------------------------------------------------------------------ verdicts


def _strength(significant: int, total: int) -> str:
    if total and significant == total:
        return "Strong for this comparison"
    if significant:
        return "Mixed"
    return "Weak"


def verdicts_pruning(f: dict) -> list[dict]:
    """Chapter 08's verdict rows (:func:`babel_lib.verdicts.row`) from :func:`findings_pruning`'s facts:
    'beats_random' and 'beats_dense', each with our result, its interval and the evidence in words."""
    from . import verdicts

    n = f["languages"]
    text = f"{n} languages, {f['tokens_min']:,}-{f['tokens_max']:,} held-out tokens each ({f['corpora']})"
    rows = []
    sig, total = f.get("tests_random_significant", 0), f.get("tests_random_rates", 0)
    rows.append(verdicts.row(
        "beats_random",
        f"Target-language frequency ranking against random pruning ({f.get('random_seeds', 0)} seeds, geometric "
        f"mean), over {n} languages: {f.get('tests_random', 'not run')}.",
        f"{_strength(sig, total)}: {text}; {f.get('beats_random_language', 0)} of {f.get('cells_language', 0)} "
        f"language-rate cells better than random beyond noise; exact sign-flip tests over languages, Holm over the "
        f"chapter's {f.get('n_tests', 0)} tests. Random pruning is a weak baseline: against the best language-agnostic "
        f"ranking ({f.get('best_agnostic', 'not run')}) the target-language ranking gives "
        f"{f.get('tests_best_agnostic', 'not run')}.",
        f["verdict_beats_random"]))
    won = f.get("beats_dense_language", 0)
    rows.append(verdicts.row(
        "beats_dense",
        f"{won} of {f.get('cells_language', 0)} target-language cells (language x rate) beat the unpruned model "
        f"beyond noise{': ' + f['beats_dense_cells'] if won else ''}; the closest to it: {f.get('best_cell', 'none')}.",
        f"{'Weak' if won <= 1 else 'Moderate'}: per-cell 95% paired passage intervals, not corrected for the "
        f"{f.get('cells_language', 0)} cells; {text}; rates {', '.join(f'{r:g}' for r in f['rates'])}.",
        f["verdict_beats_dense"]))
    return rows


def verdicts_layerwise(f: dict) -> list[dict]:
    """Chapter 09's verdict row ('layerwise') from :func:`findings_layerwise`'s facts."""
    from . import verdicts

    parts = [f"{RULE_LABELS.get(rule, rule)} against uniform, {METHOD_LABELS.get(m, m)} ranking: "
             f"{f[f'{rule}_{m}_text']}" for m in f["methods"] for rule in f["rules"] if f"{rule}_{m}_text" in f]
    better = sum(f.get(f"{rule}_{m}_better_rates", 0) for m in f["methods"] for rule in f["rules"])
    return [verdicts.row(
        "layerwise", "; ".join(parts) + ".",
        f"{_strength(better, f['tests'])}: geometric-mean ratio over languages with the interval that inverts the exact "
        f"sign-flip tests over languages, Holm over the chapter's {f['tests']} tests ({better} significant in favour "
        f"of a per-layer rule); {f['cells_better']} of {f['cells']} language cells better than uniform beyond noise, "
        f"{f['cells_worse']} worse. The rules are ours: the paper's formula is not published.",
        f["verdict_layerwise"])]


def verdicts_sparse(f: dict) -> list[dict]:
    """Chapter 10's verdict row ('sparse_activation') from :func:`findings_sparse`'s facts."""
    from . import verdicts

    parts = []
    for keep in f["keeps"]:
        if f"static_{keep:g}" not in f:
            continue
        speed = f.get(f"speed_{keep:g}", "speed not measured")
        parts.append(f"keeping {f.get(f'experts_{keep:g}', '?')} of {f.get('experts_per_layer', '?')} experts a "
                     f"layer (keep {keep:g}): perplexity {f[f'static_{keep:g}']} of dense, {speed}")
    router = "; ".join(f"router at keep {k:g}: {f[f'test_router_static_{k:g}']} against the static set"
                       for k in f["keeps"] if f"test_router_static_{k:g}" in f)
    return [verdicts.row(
        "sparse_activation",
        "The static high-frequency set (target-language pruning at inference): " + "; ".join(parts) + "."
        + (f" Per-token centroid routing at equal compute: {router}." if router else ""),
        f"{f.get('languages', '?')} languages; our threshold for comparable: a geometric-mean perplexity ratio of at "
        f"most {f['comparable']:g} with its interval; intervals over languages from paired passage ratios; timings "
        f"interleaved on a shared CPU ({f.get('noisy_timings', 0)} of {len(f['keeps'])} noisy). "
        + speed_sentence(f) + " " + per_token_sentence(f),
        f["verdict_sparse_activation"])]


def speed_sentence(f: dict) -> str:
    """What the timing table shows, part by part and keep fraction by keep fraction, from
    :func:`findings_sparse`'s ``faster_parts_<f>``: which parts of the sliced model were faster than
    the unpruned one in every timing round (the slowest round above 1), and that the verdict asks it
    of the whole model (the backbone where the whole model was not timed)."""
    keeps = [k for k in f["keeps"] if f"faster_parts_{k:g}" in f]
    if not keeps:
        return "Speed not measured."
    def listed(parts):
        named = [f"the {p}" for p in parts]
        return named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]

    faster = [f"{listed(f[f'faster_parts_{k:g}'])} at keep {k:g}" for k in keeps if f[f"faster_parts_{k:g}"]]
    whole = [k for k in keeps if "whole model" in f[f"faster_parts_{k:g}"]]
    if not faster:
        return "No part of the sliced model (FFN, backbone, whole model) was faster in every timing round."
    text = "Faster than the unpruned model in every timing round: " + "; ".join(faster) + "."
    if not whole and any(np.isfinite(f.get(f"model_speedup_{k:g}", np.nan)) for k in keeps):
        text += (" The whole model (with its output layer, what a user runs) was faster in every round at no keep "
                 "fraction; the verdict asks it of the whole model.")
    return text


def per_token_sentence(f: dict) -> str:
    """What the tests say of choosing experts per token at equal compute, from :func:`findings_sparse`'s
    facts: the centroid router (untrained: MoEfication's similarity rule) and the oracle (each token's
    true top experts: an upper bound), each against the static set. Nothing about per-token selection
    in general follows from the untrained router alone."""
    n = len(f["keeps"])
    if "router_better_keeps" not in f:
        return ""
    text = (f"Against the static set at equal compute (Holm-adjusted p < 0.05): the untrained centroid router is better "
            f"at {f['router_better_keeps']} and worse at {f['router_worse_keeps']} of {n} keep fractions")
    if "oracle_better_keeps" in f:
        text += (f"; the per-token oracle is better at {f['oracle_better_keeps']} and worse at "
                 f"{f['oracle_worse_keeps']} of {n}")
        if f["oracle_better_keeps"] and f["router_worse_keeps"]:
            text += (": choosing experts per token can beat the static set, and this router does not; a trained "
                     "router might")
    return text + "."
