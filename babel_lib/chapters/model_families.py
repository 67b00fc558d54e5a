"""Chapter 6 as library steps: two model families compared on the same passages, at relative depth
(per-layer statistics resampled onto a common depth grid), by their language-distance matrices
(Mantel r with a bootstrap interval over passages shared by both models) and by the family and script
tests of chapter 5 run on each model (:mod:`babel_lib.chapters.families`)."""

from __future__ import annotations

import gc
import itertools
import warnings
from typing import Callable

import altair as alt
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from babel_lib.core.hooks import torch_threads
from babel_lib.data import corpus
from babel_lib.data.corpus import language_labels
from babel_lib.report import plots
from babel_lib.stats import analysis, inference as stats
from babel_lib.stats.inference import interval_text, p_text
from babel_lib.stats.distances import (bootstrap_profiles, centred_interval, check_same_passages, hellinger_distances,
                                       layer_distances, mean_distance, profile_distances, split_half_floor, upper,
                                       weighted_profile)
from babel_lib.stats.family_tests import (UNDEFINED_NOTES, design, family_tests, granularity_difference, mantel_many,
                                          residual_correlation, view_tests, weighted_residual_correlation)


def model_studies(models, **study_parameters) -> dict:
    """{model: :func:`babel_lib.experts.pipeline.study` (model=model, **study_parameters)}: every model
    profiled on the same languages and passages (cached like any study)."""
    from babel_lib.experts import pipeline

    return {m: pipeline.study(model=m, **study_parameters) for m in models}


def text_tables(studies: dict) -> pd.DataFrame:
    """Per language: name, family, script, passages, characters, and each model's tokens and
    tokens per character (its tokenisation granularity) on the same passages."""
    out = None
    for m, st in studies.items():
        t = st.text_table()
        if out is None:
            out = t[["language", "name", "family", "script", "passages", "characters"]].copy()
        out[f"tokens: {m}"] = t["tokens"].to_numpy()
        out[f"tokens per character: {m}"] = t["tokens_per_character"].to_numpy()
    return out


#: The per-layer statistics compared across models (:func:`depth_statistics`), in order.
DEPTH_STATISTICS = ("departure", "high-frequency share", "entropy", "distance between languages")


def depth_statistics(freq: np.ndarray, rate: float, hf_ratio: float = analysis.HF_RATIO) -> np.ndarray:
    """Per-layer statistics of one model, frequencies [..., n, L, E] -> [..., 4, L] in the order of
    :data:`DEPTH_STATISTICS`, each a mean over languages:

    - departure: mean |f - mean over languages of f| over a layer's experts (chapter 2);
    - high-frequency share: share of the layer's experts with f >= hf_ratio x ``rate`` (the base
      rate k/E; chapter 3's rule);
    - entropy: normalised entropy of the layer's frequencies over its experts (1 = all used equally);
    - distance between languages: mean Hellinger distance between two languages' layer profiles.
    """
    from babel_lib.chapters.heatmaps import departure

    freq = np.asarray(freq, dtype=float)
    return np.stack([
        departure(freq).mean(axis=-2),
        (freq >= hf_ratio * rate).mean(axis=(-3, -1)),
        analysis.layer_entropy(freq).mean(axis=-2),
        mean_distance(layer_distances(freq)),
    ], axis=-2)


def depth_trend(values: np.ndarray) -> np.ndarray:
    """Spearman correlation of per-layer values [..., L] with depth: [...] (+1: rising steadily);
    NaN for a constant profile."""
    values = np.asarray(values, dtype=float)
    L = values.shape[-1]
    rv = rankdata(values, axis=-1)
    rd = np.arange(L) - (L - 1) / 2.0
    rv = rv - rv.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rv @ rd) / np.sqrt((rv ** 2).sum(axis=-1) * (rd ** 2).sum())


def curve_correlation(a: np.ndarray, b: np.ndarray, grid_points: int | None = None) -> np.ndarray:
    """Pearson correlation of two per-layer profiles [..., L_a] and [..., L_b] after linear
    interpolation onto a common relative-depth grid (default: the smaller layer count;
    :func:`babel_lib.stats.analysis.resample_depth`): [...]; NaN where either is constant."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    grid = analysis.depth_grid(grid_points or min(a.shape[-1], b.shape[-1]))
    x = analysis.resample_depth(a, grid)
    y = analysis.resample_depth(b, grid)
    x = x - x.mean(axis=-1, keepdims=True)
    y = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((x ** 2).sum(axis=-1) * (y ** 2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-300, (x * y).sum(axis=-1) / np.where(den > 1e-300, den, 1.0), np.nan)


def _rate(profile) -> float:
    return float(np.mean(analysis.base_rate(profile)))


#: A depth curve has the *same shape* in two models when the interval of their curve correlation
#: lies above this value (our threshold: at least a moderate correlation); *weakly similar* when it
#: lies above 0 only.
SAME_SHAPE = 0.5


def _agreement_word(r, low, high) -> str:
    if not np.isfinite(r):
        return "not testable"
    if np.isfinite(low) and low > SAME_SHAPE:
        return "same shape"
    if np.isfinite(low) and low > 0:
        return "weakly similar"
    if np.isfinite(high) and high < 0:
        return "opposite shapes"
    return "unclear"


def crossed_agreement(a, b, script_difference: np.ndarray, n_resamples: int = stats.DEFAULT_RESAMPLES,
                      seed: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Intervals of two models' agreement on language distances (profiles a and b of the same
    languages and passages): the Mantel r between their distance matrices, and the partial r given
    script difference [n, n] and both models' granularity differences. The claim is over languages,
    so languages and passages are resampled together (:func:`babel_lib.stats.crossed_bootstrap`; a
    language drawn twice never pairs with its own copy). Returns (low [2], high [2])."""
    check_same_passages([a, b])
    n = len(a.languages)
    iu = np.triu_indices(n, 1)
    script = upper(script_difference)
    chunk = max(1, 2_000_000 // max(1, a.passage_counts[:, 0].size + b.passage_counts[:, 0].size))

    def statistics(LW, PW):  # [m, n], [m, P] -> [m, 2]
        rows = []
        for s in range(0, len(LW), chunk):
            (fa, ta), (fb, tb) = weighted_profile(a, PW[s:s + chunk]), weighted_profile(b, PW[s:s + chunk])
            Da, Db = profile_distances(fa), profile_distances(fb)
            Ga, Gb = granularity_difference(ta), granularity_difference(tb)
            for i in range(len(Da)):
                w = LW[s + i][iu[0]] * LW[s + i][iu[1]]
                da, db = upper(Da[i]), upper(Db[i])
                rows.append([weighted_residual_correlation(da, db, [], w),
                             weighted_residual_correlation(da, db, [script, upper(Ga[i]), upper(Gb[i])], w)])
        return np.asarray(rows)

    with warnings.catch_warnings(), torch_threads(1):
        warnings.filterwarnings("ignore", r"(Mean of empty slice|All-NaN slice|invalid value)", RuntimeWarning)
        r = stats.crossed_bootstrap(statistics, n, a.n_passages, n_resamples, seed, level=level, batched=True)
    return np.clip(np.asarray(r.low, dtype=float), -1, 1), np.clip(np.asarray(r.high, dtype=float), -1, 1)


def model_results(model_views: dict, n_resamples: int = stats.DEFAULT_RESAMPLES,
                  permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0, grid_points: int | None = None,
                  hf_ratio: float = analysis.HF_RATIO, n_splits: int = 100) -> dict:
    """Everything chapter 6 reports, from several models profiled on the same languages and passages:
    model_views = {model: {view: Profile}} (each model's :attr:`babel_lib.experts.pipeline.Study.views`,
    main view first; views are matched by position: seed 0 with seed 0, ..., neurons with neurons),
    or {model: Study} (:func:`model_studies`). The first model is the reference each other model is
    compared with.

    Returns a dict of tables and facts:
    - ``by_layer``: model, statistic, layer, relative_depth, value with its interval (and, for the
      distance between languages, the noise floor);
    - ``agreement``: per other model and statistic: the correlation of the two depth curves on a
      common grid with its interval, each model's depth trend with its interval, a word;
    - ``tests``: per model, chapter 5's family and script tests (:func:`family_tests`), and the
      Mantel tests of the models' language distances (plain, and given script and both models'
      granularity differences), with intervals, raw and Holm-adjusted p (Holm within each model's
      family tests, as chapter 5 adjusts them, and within the two models' tests: column ``family``);
    - ``both``: for each family/script finding, whether it holds in every model, in one, or none;
    - ``tokenisation``: per language, tokens per character under each model;
    - ``pairs``: every pair of languages with its distance under each model (Hellinger);
    - ``robustness``: per view position: the models' distance agreement and each model's family
      AUC and partial r of tree and script, with permutation p;
    - ``facts``: the scalars the findings and verdicts quote.
    Paired intervals: every resample draws the same passages for all models (:func:`bootstrap_profiles`).
    """
    model_views = {m: (v.views if hasattr(v, "views") else v) for m, v in model_views.items()}
    models = list(model_views)
    if len(models) < 2:
        raise ValueError("model_results compares at least two models")
    view_lists = [list(model_views[m].values()) for m in models]
    mains = [v[0] for v in view_lists]
    check_same_passages(mains)
    keys = list(mains[0].languages)
    labels = language_labels(keys)
    meta = corpus.language_table().loc[keys]
    rates = [_rate(p) for p in mains]
    layers = [p.n_layers for p in mains]
    ref = 0
    others = list(range(1, len(models)))
    grid = grid_points or min(layers)
    dsg = design(keys)
    S = dsg.script_difference
    K = len(DEPTH_STATISTICS)

    def statistic(fs, ts):
        out = []
        depth = [depth_statistics(f, r, hf_ratio) for f, r in zip(fs, rates)]  # [m, K, L_i]
        D = [profile_distances(f) for f in fs]
        G = [granularity_difference(t) for t in ts]
        for d in depth:
            out.append(d.reshape(len(d), -1))
            out.append(depth_trend(d))
        for o in others:
            out.append(curve_correlation(depth[ref], depth[o], grid))
            out.append(residual_correlation(D[ref], D[o])[:, None])
            out.append(residual_correlation(D[ref], D[o], [S, G[ref], G[o]])[:, None])
        return np.concatenate(out, axis=-1)

    def split(vec):
        parts, at = {}, 0
        for i, L in enumerate(layers):
            parts[("depth", i)] = vec[..., at:at + K * L].reshape(vec.shape[:-1] + (K, L))
            at += K * L
            parts[("trend", i)] = vec[..., at:at + K]
            at += K
        for o in others:
            parts[("curve", o)] = vec[..., at:at + K]
            parts[("mantel", o)] = vec[..., at + K]
            parts[("partial", o)] = vec[..., at + K + 1]
            at += K + 2
        return parts

    ones = np.ones((1, mains[0].n_passages))
    got = [weighted_profile(p, ones) for p in mains]
    point = statistic([g[0] for g in got], [g[1] for g in got])[0]
    est = split(point)
    lo = hi = split(np.full_like(point, np.nan))
    if n_resamples and mains[0].n_passages >= 2:
        boot = bootstrap_profiles(statistic, mains, n_resamples, seed)
        lo, hi = split(np.atleast_1d(boot.low)), split(np.atleast_1d(boot.high))
        c_lo, c_hi, _ = (split(np.atleast_1d(v)) for v in centred_interval(boot))
        for i in range(len(models)):  # per-layer statistics are distance-level: centred intervals
            lo[("depth", i)], hi[("depth", i)] = c_lo[("depth", i)], c_hi[("depth", i)]
        for o in others:  # the models' agreement is a claim over languages: languages and passages resampled
            (lo[("mantel", o)], lo[("partial", o)]), (hi[("mantel", o)], hi[("partial", o)]) = \
                crossed_agreement(mains[ref], mains[o], S, n_resamples, seed)

    # ---- per-layer statistics and their agreement
    rows = []
    for i, m in enumerate(models):
        floor = split_half_floor(mains[i], per_layer=True, n_splits=n_splits, seed=seed).mean(axis=0)
        for k, name in enumerate(DEPTH_STATISTICS):
            for layer in range(layers[i]):
                rows.append({"model": m, "statistic": name, "layer": layer,
                             "relative_depth": (layer + 0.5) / layers[i],
                             "value": est[("depth", i)][k, layer], "low": lo[("depth", i)][k, layer],
                             "high": hi[("depth", i)][k, layer],
                             "floor": floor[layer] if name == "distance between languages" else np.nan})
    by_layer = pd.DataFrame(rows)
    rows = []
    for o in others:
        for k, name in enumerate(DEPTH_STATISTICS):
            r, rl, rh = est[("curve", o)][k], lo[("curve", o)][k], hi[("curve", o)][k]
            rows.append({"statistic": name, "reference": models[ref], "other": models[o], "curve_r": r,
                         "low": rl, "high": rh,
                         "trend_reference": est[("trend", ref)][k], "trend_reference_low": lo[("trend", ref)][k],
                         "trend_reference_high": hi[("trend", ref)][k],
                         "trend_other": est[("trend", o)][k], "trend_other_low": lo[("trend", o)][k],
                         "trend_other_high": hi[("trend", o)][k], "agreement": _agreement_word(r, rl, rh)})
    agreement = pd.DataFrame(rows)

    # ---- tests: each model's family tests, and the models' distances compared
    frames = []
    for i, m in enumerate(models):
        t = family_tests(mains[i], permutations, seed, n_resamples)
        frames.append(t.assign(model=m, family=f"families: {m}"))  # chapter 5's family for this model
    Ds = [profile_distances(p.frequencies()) for p in mains]
    Gs = [granularity_difference(p.tokens / np.maximum(p.characters, 1)) for p in mains]
    for o in others:
        pair = f"{models[ref]} and {models[o]}"
        for test, words, measure, covs in (
                ("models_mantel", "language distances of the two models (Mantel r)", "r", []),
                ("models_partial", "language distances of the two models | script, both granularities", "partial r",
                 [S, Gs[ref], Gs[o]])):
            r, pv = mantel_many(Ds[ref][None], Ds[o], covs, permutations, seed)
            frames.append(pd.DataFrame([{
                "test": test, "name": words, "measure": measure, "statistic": r[0],
                "low": lo[(test.split("_")[1], o)], "high": hi[(test.split("_")[1], o)], "p_value": pv[0],
                "permutations": permutations, "n": len(keys), "note": "" if np.isfinite(r[0]) else UNDEFINED_NOTES["r"],
                "model": pair, "family": "two models"}]))
    # one Holm family per claim: each model's family tests as in chapter 5 (the same adjusted p-values
    # for the same model and languages), the two models' agreement apart
    tests = stats.correct(pd.concat(frames, ignore_index=True), "p_value", "holm", out="p_holm", by="family")
    tests = tests[["model"] + [c for c in tests.columns if c != "model"]]

    # ---- what holds in both
    findings = [("auc", "a same-family pair is closer than a cross-family pair, within script strata"),
                ("partial_tree", "tree distance beyond script and tokenisation"),
                ("partial_script", "script beyond tree distance and tokenisation"),
                ("partial_granularity", "tokenisation granularity beyond tree distance and script")]
    rows = []
    for test, words in findings:
        held = []
        for m in models:
            r = tests[(tests["model"] == m) & (tests["test"] == test)].iloc[0]
            held.append(bool(np.isfinite(r["statistic"]) and r["p_holm"] < 0.05))
        row = {"finding": words, "test": test}
        for m, h in zip(models, held):
            row[m] = h
        row["holds_in"] = ("every model" if all(held) else "no model" if not any(held) else
                           "only " + ", ".join(m for m, h in zip(models, held) if h))
        rows.append(row)
    both = pd.DataFrame(rows)

    # ---- tokenisation
    tok = pd.DataFrame({"language": keys, "name": [labels[k] for k in keys], "script": meta["script"].to_numpy(),
                        "family": meta["family"].to_numpy()})
    for m, p in zip(models, mains):
        tok[m] = p.tokens / np.maximum(p.characters, 1)

    # ---- every pair of languages under each model
    iu = np.triu_indices(len(keys), 1)
    pairs = pd.DataFrame({"a": np.asarray(keys)[iu[0]], "b": np.asarray(keys)[iu[1]],
                          "name_a": [labels[keys[i]] for i in iu[0]], "name_b": [labels[keys[j]] for j in iu[1]],
                          "same_family": dsg.same_family[iu], "same_script": dsg.same_script[iu],
                          "scripts": np.where(dsg.same_script[iu], "same script", "different scripts")})
    for m, Dm in zip(models, Ds):
        pairs[m] = Dm[iu]

    # ---- robustness: matched views
    n_views = min(len(v) for v in view_lists)
    robustness = pd.DataFrame({"view": [" / ".join(dict.fromkeys(list(model_views[m])[v] for m in models))
                                        for v in range(n_views)]})
    Dv = [np.stack([profile_distances(vl[v].frequencies()) for v in range(n_views)]) for vl in view_lists]
    for o in others:
        rp = [mantel_many(Dv[ref][v][None], Dv[o][v], [], permutations, seed) for v in range(n_views)]
        robustness["models_r"] = [float(r[0][0]) for r in rp]
        robustness["models_p"] = [float(r[1][0]) for r in rp]
    for m, vl in zip(models, view_lists):
        t = view_tests(dict(zip(range(n_views), vl[:n_views])), permutations, seed,
                       tests=("auc", "partial_tree", "partial_script"))
        for col, new in (("auc", "auc"), ("auc_p", "auc_p"), ("partial_tree", "tree_r"), ("partial_tree_p", "tree_p"),
                         ("partial_script", "script_r"), ("partial_script_p", "script_p")):
            robustness[f"{m}: {new}"] = t[col].to_numpy()
    facts = _model_facts(models, tests, agreement, both, robustness, tok, mains, permutations, n_resamples)
    return {"by_layer": by_layer, "agreement": agreement, "tests": tests, "both": both, "tokenisation": tok,
            "pairs": pairs, "robustness": robustness, "facts": facts}


def _model_facts(models, tests, agreement, both, robustness, tok, mains, permutations, n_resamples) -> dict:
    def trip(model, test):
        r = tests[(tests["model"] == model) & (tests["test"] == test)].iloc[0]
        return [float(r["statistic"]), float(r["low"]), float(r["high"])], float(r["p_value"]), float(r["p_holm"])

    pair = f"{models[0]} and {models[1]}"
    facts = {"models": models, "languages": len(mains[0].languages), "passages": mains[0].n_passages,
             "layers": {m: p.n_layers for m, p in zip(models, mains)},
             "experts": {m: p.n_experts for m, p in zip(models, mains)},
             "permutations": permutations, "resamples": n_resamples}
    facts["mantel"], facts["mantel_p"], facts["mantel_p_holm"] = trip(pair, "models_mantel")
    facts["partial"], facts["partial_p"], facts["partial_p_holm"] = trip(pair, "models_partial")
    facts["mantel_holds"] = bool(np.isfinite(facts["mantel"][0]) and facts["mantel_p_holm"] < 0.05)
    facts["partial_holds"] = bool(np.isfinite(facts["partial"][0]) and facts["partial_p_holm"] < 0.05)
    for m in models:
        for test in ("auc", "partial_tree", "partial_script", "partial_granularity"):
            facts[f"{m}: {test}"], facts[f"{m}: {test}_p"], facts[f"{m}: {test}_p_holm"] = trip(m, test)
    facts["testable"] = bool(all(np.isfinite(facts[f"{m}: auc"][0]) for m in models))
    ag = agreement[agreement["other"] == models[1]]
    facts["same_shape"] = [s for s, w in zip(ag["statistic"], ag["agreement"]) if w == "same shape"]
    facts["weakly_similar"] = [s for s, w in zip(ag["statistic"], ag["agreement"]) if w == "weakly similar"]
    facts["tests"] = int(tests["p_value"].notna().sum())
    facts["opposite"] = [s for s, w in zip(ag["statistic"], ag["agreement"]) if w == "opposite shapes"]
    facts["unclear"] = [s for s, w in zip(ag["statistic"], ag["agreement"]) if w in ("unclear", "not testable")]
    facts["curves"] = {s: [float(r), float(lo), float(hi)] for s, r, lo, hi in
                       zip(ag["statistic"], ag["curve_r"], ag["low"], ag["high"])}
    facts["holds_in"] = dict(zip(both["test"], both["holds_in"]))
    facts["findings"] = dict(zip(both["test"], both["finding"]))
    facts["tpc_median"] = {m: float(np.median(tok[m])) for m in models}
    varied = len(tok) > 2 and tok[models[0]].nunique() > 1 and tok[models[1]].nunique() > 1
    facts["tpc_rho"] = float(pd.Series(tok[models[0]]).corr(pd.Series(tok[models[1]]), method="spearman")) \
        if varied else float("nan")
    ratio = tok[models[1]] / tok[models[0]]
    facts["tpc_ratio_median"] = float(np.median(ratio))
    facts["tpc_ratio_max"] = [str(tok.loc[ratio.idxmax(), "name"]), float(ratio.max())]
    rb = robustness
    facts["robust_mantel"] = bool(((rb["models_r"] > 0) & (rb["models_p"] < 0.05)).all())
    facts["models_r_range"] = [float(rb["models_r"].min()), float(rb["models_r"].max())]
    facts["robust"] = {}
    for m in models:
        facts["robust"][m] = {
            "auc": bool(((rb[f"{m}: auc"] > 0.5) & (rb[f"{m}: auc_p"] < 0.05)).all()),
            "partial_tree": bool(((rb[f"{m}: tree_r"] > 0) & (rb[f"{m}: tree_p"] < 0.05)).all()),
            "partial_script": bool(((rb[f"{m}: script_r"] > 0) & (rb[f"{m}: script_p"] < 0.05)).all()),
        }
    facts["views"] = int(len(rb))
    return facts


def model_verdicts(facts: dict, sizes: dict | None = None) -> list[dict]:
    """The chapter's verdict rows for the claim 'model_families' (:mod:`babel_lib.report.verdicts`) from
    :func:`model_results` facts: one on model families (what two models of different families share)
    and one on sizes and variants: ``sizes``, the tested row of :func:`babel_lib.chapters.model_families.size_verdict`
    when a size series was profiled, else 'not testable here' (two small models of different families)."""
    from babel_lib.core.claims import row

    f = facts
    a, b = f["models"][:2]
    it = stats.interval_text
    sizes = row("model_sizes",
                "model sizes and variants: not compared (no size series and no base/instruct pair of one model "
                "is available offline)",
                "two small models of different families only; the paper profile of the book runner reruns this "
                "chapter on larger models where they are available", "not testable here") if sizes is None else sizes
    if not f["testable"]:
        return [row("model_families", "not testable on this language set",
                    f"{f['languages']} languages leave no same-family pair for the family tests, and too few pairs "
                    "to compare the models' language distances", "not testable here"), sizes]
    shapes = len(f["same_shape"])
    result = (f"the two models' language distances correlate at Mantel r = {it(*f['mantel'], digits=2)} "
              f"({stats.p_text(f['mantel_p'], f['mantel_p_holm'])}), {it(*f['partial'], digits=2)} beyond script and "
              f"tokenisation; {shapes} of {shapes + len(f['weakly_similar']) + len(f['opposite']) + len(f['unclear'])} "
              f"per-layer statistics have the same depth profile in both (curve correlation above {SAME_SHAPE}); "
              f"the family effect within script strata holds in "
              f"{f['holds_in'].get('auc', 'no model')}")
    agree = f["mantel_holds"] and f["partial_holds"]
    fam_both = f["holds_in"].get("auc") == "every model"
    if agree and fam_both and shapes >= 3:
        word = "reproduced"
    elif agree or fam_both or shapes:
        word = "partly reproduced"
    else:
        word = "not reproduced"
    evidence = (f"two models of different families ({a}, {f['layers'][a]} layers; {b}, {f['layers'][b]} layers), "
                f"{f['languages']} languages on the same {f['passages']} passages; intervals of the agreement and "
                f"of the family tests resample languages (families) and passages, of the depth curves passages "
                f"({f['resamples']:,} resamples); {f['permutations']:,} permutations; "
                + ("the agreement holds under every partition seed and the neuron view" if f["robust_mantel"]
                   else "the agreement does not hold in every view")
                + "; two models are a weak test of generality, and they differ in size, tokenizer, data and tuning "
                  "at once")
    return [row("model_families", result, evidence, word), sizes]


# ====================================================================================================
# Model sizes: one family in two sizes beside other families (formerly babel_lib.chapters.model_families)
#: Family of a model by its architecture (``config.model_type``); pass ``families=`` to name others.
FAMILY_OF_TYPE = {"gemma3_text": "Gemma", "gemma3": "Gemma", "gemma2": "Gemma", "gemma": "Gemma",
                  "llama": "Llama architecture", "qwen2": "Qwen2", "qwen3": "Qwen3", "mistral": "Mistral",
                  "olmo": "OLMo", "olmo2": "OLMo", "phi3": "Phi-3", "gpt2": "GPT-2", "bloom": "BLOOM", "opt": "OPT",
                  "gpt_neox": "GPT-NeoX"}

#: A language's text counts as evidently memorised by a model when its bits per character on that corpus,
#: relative to the same language on the UDHR, is below this share of the model's median ratio over
#: languages (our threshold; a memorised text is predicted far better than the model's other texts).
MEMORISED_SHARE = 0.5

#: Budget of float64 elements for one chunk of resampled frequencies.
_CHUNK_ELEMENTS = 6_000_000


# ---------------------------------------------------------------------------------------------- studies
def release(name: str) -> None:
    """Drop a model's weights from :func:`babel_lib.experts.pipeline.get_model`'s cache (profiles stay cached)."""
    from babel_lib.experts import pipeline

    pipeline.release_model(name)
    gc.collect()


def size_language_sets() -> dict:
    """The languages of the size comparison: {'udhr': the paper's nine plus the Bible's 22 (24 keys: European
    and Brazilian Portuguese both), 'bible': the Bible's 22}."""
    from babel_lib.data import corpus

    bible = corpus.corpus_languages("bible")
    return {"udhr": list(corpus.resolve_languages(list(corpus.resolve_languages("paper")) + bible)), "bible": bible}


def size_studies(models, release_weights: bool = True, **study_parameters) -> dict:
    """{model: :func:`babel_lib.experts.pipeline.study`} on the same languages and passages, one model at a time:
    with ``release_weights`` each model's weights are dropped after its profile (its description,
    fingerprint, parameter count and tokenizer stay), so a 1.5B model and its smaller sibling are never in
    memory together. The study's ``lm.model`` is then None; ``lm.parameters`` holds the parameter count."""
    from babel_lib.experts import pipeline

    out = {}
    for m in models:
        st = pipeline.study(model=m, **study_parameters)
        lm = st.lm
        info = model_info(lm)
        if release_weights:
            st.lm = type(lm)(None, lm.tokenizer, lm.name, lm.description, lm.fingerprint)
            release(m)
        st.lm.info = info
        out[m] = st
    return out


def corpus_studies(models, languages: dict, passages: dict, **study_parameters) -> dict:
    """{corpus: :func:`size_studies`} for each corpus of ``passages`` ({corpus: budget in passages}) whose
    budget is above 0, on that corpus's ``languages`` ({corpus: language keys}, e.g.
    :func:`size_language_sets`); a budget of 0 leaves the corpus out."""
    return {c: size_studies(models, languages=languages[c], corpus_name=c, max_passages=n, **study_parameters)
            for c, n in passages.items() if n}


def model_info(lm) -> dict:
    """Architecture, family, parameters (unique tensors), layers, FFN neurons per layer of a loaded model."""
    from babel_lib.core.adapters import ffn_layers

    if getattr(lm, "model", None) is None:
        return dict(getattr(lm, "info", {}))
    config = lm.model.config
    seen, n = set(), 0
    for p in lm.model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            n += p.numel()
    layers = ffn_layers(lm.model)
    return {"model_type": config.model_type, "family": FAMILY_OF_TYPE.get(config.model_type, config.model_type),
            "parameters": int(n), "layers": len(layers), "ffn_neurons": int(layers[0].n_neurons)}


# ------------------------------------------------------------------------------------- weighted statistics
def weighted_depth_statistics(freq: np.ndarray, lw: np.ndarray, rate: float,
                              hf_ratio: float = analysis.HF_RATIO) -> np.ndarray:
    """:func:`babel_lib.chapters.model_families.depth_statistics` with language weights: frequencies
    [m, n, L, E] and weights [m, n] (how often each language was drawn; ones: every language once) ->
    [m, 4, L]. Means over languages are weighted by lw; the distance between languages is the mean over
    pairs i != j weighted by lw_i lw_j (a language is never paired with its own copy)."""
    freq = np.asarray(freq, dtype=float)
    lw = np.asarray(lw, dtype=float)
    w = lw / lw.sum(axis=-1, keepdims=True)
    centre = np.einsum("mn,mnle->mle", w, freq)
    departure = np.einsum("mn,mnl->ml", w, np.abs(freq - centre[:, None]).mean(axis=-1))
    high = np.einsum("mn,mnl->ml", w, (freq >= hf_ratio * rate).mean(axis=-1))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        entropy = np.einsum("mn,mnl->ml", w, np.nan_to_num(analysis.layer_entropy(freq), nan=0.0))
    pair = w[:, :, None] * w[:, None, :]
    pair[:, np.arange(pair.shape[1]), np.arange(pair.shape[1])] = 0.0
    LD = layer_distances(freq)  # [m, L, n, n]
    distance = np.einsum("mij,mlij->ml", pair, LD) / pair.sum(axis=(-2, -1))[:, None]
    return np.stack([departure, high, entropy, distance], axis=-2)


def weighted_pair_correlation(x: np.ndarray, y: np.ndarray, lw: np.ndarray) -> np.ndarray:
    """Pearson correlation of two distance matrices [m, n, n] over the pairs i < j, pair (i, j) weighted by
    lw_i lw_j ([m, n]; ones: the Mantel r of the two matrices): [m]."""
    x, y, lw = (np.asarray(a, dtype=float) for a in (x, y, lw))
    n = x.shape[-1]
    iu = np.triu_indices(n, 1)
    W = (lw[:, :, None] * lw[:, None, :])[:, iu[0], iu[1]]
    a, b = x[:, iu[0], iu[1]], y[:, iu[0], iu[1]]
    s = W.sum(axis=-1, keepdims=True)
    a = a - (W * a).sum(-1, keepdims=True) / s
    b = b - (W * b).sum(-1, keepdims=True) / s
    den = np.sqrt((W * a * a).sum(-1) * (W * b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-300, (W * a * b).sum(-1) / np.where(den > 1e-300, den, 1.0), np.nan)


def crossed_many(values_of: Callable[[np.ndarray, np.ndarray], np.ndarray], n_languages: int, n_passages: int,
                 n_resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95,
                 min_units: int = stats.MIN_BOOTSTRAP_UNITS) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, np.ndarray]:
    """:func:`babel_lib.stats.crossed_bootstrap` for many statistics at once, with its draws (the same
    seed gives the same resamples and, statistic by statistic, the same interval): ``values_of(LW, PW)``
    takes language weights [m, n] and passage weights [m, P] and returns [m, S]. Returns (estimate [S],
    low [S], high [S], method, samples [B, S]): method 'crossed' (languages and passages resampled together,
    percentile) or, below ``min_units`` languages, 'jackknife+passages' (samples: the passage bootstrap)."""
    n, P = int(n_languages), int(n_passages)
    r = stats.crossed_bootstrap(values_of, n, P, n_resamples, seed, level=level, batched=True, min_units=min_units)
    samples = np.asarray(r.samples, dtype=float)
    flat = [np.asarray(v, dtype=float).reshape(-1) for v in (r.estimate, r.low, r.high)]  # one statistic: [1]
    return flat[0], flat[1], flat[2], r.method, samples.reshape(len(samples), -1)


# ---------------------------------------------------------------------------------------------- results
def _relation(fa: str, fb: str) -> str:
    return "same family, other size" if fa == fb else "different families"


def size_results(studies: dict, families: dict | None = None, n_resamples: int = stats.DEFAULT_RESAMPLES,
                 seed: int = 0, hf_ratio: float = analysis.HF_RATIO, grid_points: int | None = None) -> dict:
    """The size comparison of chapter 6 from several models profiled on the same languages and passages:
    ``studies`` = {model: Study} (:func:`size_studies`; main view) or {model: Profile}; ``families``
    {model: family} (default: by architecture, :data:`FAMILY_OF_TYPE`). At least one family must hold
    two models (the size pair) and at least two families must be present.

    Returns a dict of tables and facts:
    - ``summary``: per model: family, parameters, layers, experts a layer; share of high-frequency
      experts (mean over languages, interval over languages and passages); experts shared by every
      language and specific to one, as shares of all experts (interval over passages); each depth
      statistic's trend with depth;
    - ``by_layer``: model, statistic, layer, relative depth, value with its interval;
    - ``pairs``: every pair of models: same family or not, the agreement of their language distances
      (Mantel r, weighted over resampled languages) and of each depth curve (correlation at relative
      depth), with intervals, and the difference of their high-frequency shares;
    - ``contrast``: per measure, the same-family (size) pairs against the different-family pairs: the
      difference with its interval and what it says;
    - ``facts``: the scalars the findings and the verdict quote.
    """
    profiles = {m: (s.profile if hasattr(s, "profile") else s) for m, s in studies.items()}
    models = list(profiles)
    if len(models) < 3:
        raise ValueError("size_results compares a size pair with at least one model of another family")
    mains = [profiles[m] for m in models]
    check_same_passages(mains)
    info = {m: (model_info(s.lm) if hasattr(s, "lm") else {}) for m, s in studies.items()}
    fam = {m: (families or {}).get(m) or info[m].get("family") for m in models}
    if any(f is None for f in fam.values()):
        raise ValueError("name every model's family (families=) when passing profiles")
    pair_list = list(itertools.combinations(range(len(models)), 2))
    within = [(a, b) for a, b in pair_list if fam[models[a]] == fam[models[b]]]
    between = [(a, b) for a, b in pair_list if fam[models[a]] != fam[models[b]]]
    if not within or not between:
        raise ValueError(f"need a size pair (two models of one family) and another family; families: {fam}")
    keys = list(mains[0].languages)
    n, P = len(keys), mains[0].n_passages
    K = len(DEPTH_STATISTICS)
    layers = [p.n_layers for p in mains]
    rates = [float(np.mean(analysis.base_rate(p))) for p in mains]
    grid = grid_points or min(layers)
    per_row = sum(p.passage_counts[:, 0].size for p in mains)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, per_row))

    # layout of the statistic vector
    slots, at = {}, 0

    def slot(name, size):
        nonlocal at
        slots[name] = slice(at, at + size)
        at += size

    for i in range(len(models)):
        slot(("depth", i), K * layers[i])
        slot(("trend", i), K)
        slot(("hf", i), 1)
    for pr in pair_list:
        slot(("mantel", pr), 1)
        slot(("curve", pr), K)
    slot("contrast_mantel", 1)
    slot("contrast_curve", K)
    slot("contrast_hf", 1)

    def values_of(LW, PW):
        out = []
        for s in range(0, len(LW), chunk):
            lw, pw = LW[s:s + chunk], PW[s:s + chunk]
            m = len(lw)
            depth, dist, hf = [], [], []
            for p, r in zip(mains, rates):
                freq = weighted_profile(p, pw)[0]
                d = weighted_depth_statistics(freq, lw, r, hf_ratio)
                depth.append(d)
                dist.append(hellinger_distances(freq.reshape(m, n, -1)))
                hf.append(d[:, 1].mean(axis=-1))  # every layer has E experts: the mean of the layers' shares
            vec = np.full((m, at), np.nan)
            for i in range(len(models)):
                vec[:, slots[("depth", i)]] = depth[i].reshape(m, -1)
                vec[:, slots[("trend", i)]] = depth_trend(depth[i])
                vec[:, slots[("hf", i)]] = hf[i][:, None]
            for a, b in pair_list:
                vec[:, slots[("mantel", (a, b))]] = weighted_pair_correlation(dist[a], dist[b], lw)[:, None]
                vec[:, slots[("curve", (a, b))]] = curve_correlation(depth[a], depth[b], grid)
            def mean_of(name, prs):
                with warnings.catch_warnings():  # a resample where every pair is undefined gives NaN
                    warnings.filterwarnings("ignore", r"Mean of empty slice", RuntimeWarning)
                    return np.nanmean(np.stack([vec[:, slots[(name, pr)]] for pr in prs]), axis=0)

            vec[:, slots["contrast_mantel"]] = mean_of("mantel", within) - mean_of("mantel", between)
            vec[:, slots["contrast_curve"]] = mean_of("curve", within) - mean_of("curve", between)
            gap = lambda prs: np.mean([np.abs(hf[a] - hf[b]) for a, b in prs], axis=0)
            vec[:, slots["contrast_hf"]] = (gap(within) - gap(between))[:, None]
            out.append(vec)
        return np.concatenate(out)

    if n_resamples >= 2:
        est, low, high, method, samples = crossed_many(values_of, n, P, n_resamples, seed)
    else:
        est = values_of(np.ones((1, n)), np.ones((1, P)))[0]
        low, high, method, samples = np.full_like(est, np.nan), np.full_like(est, np.nan), "none", None
    if method == "crossed":  # per-layer statistics are distance-level: centred intervals (as chapter 6's)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", r"All-NaN slice", RuntimeWarning)
            for i in range(len(models)):
                sl = slots[("depth", i)]
                shift = np.nanmedian(samples[:, sl], axis=0) - est[sl]
                low[sl], high[sl] = low[sl] - shift, high[sl] - shift
    get = lambda name: (est[slots[name]], low[slots[name]], high[slots[name]])

    # shared and specific experts: set-level counts, passages resampled with the language set fixed
    from babel_lib.stats.distances import bootstrap_profiles

    def sharing(freqs, _tpcs):
        cols = []
        for f, r in zip(freqs, rates):
            hfm = f >= hf_ratio * r  # [m, n, L, E]
            c = hfm.sum(axis=1)
            cols += [(c == n).mean(axis=(-2, -1)), (c == 1).mean(axis=(-2, -1))]
        return np.stack(cols, axis=-1)

    share_boot = (bootstrap_profiles(sharing, mains, n_resamples, seed, method="percentile")
                  if n_resamples and P >= 2 else None)
    share_est = sharing([weighted_profile(p, np.ones((1, P)))[0] for p in mains], None)[0]

    rows = []
    for i, m in enumerate(models):
        h = get(("hf", i))
        tr = get(("trend", i))
        row = {"model": m, "family": fam[m], "parameters": info[m].get("parameters", np.nan),
               "layers": layers[i], "experts": mains[i].n_experts,
               "hf_share": float(h[0][0]), "hf_low": float(h[1][0]), "hf_high": float(h[2][0])}
        for j, what in enumerate(("shared", "specific")):
            row[f"{what}_share"] = float(share_est[2 * i + j])
            row[f"{what}_low"] = float(share_boot.low[2 * i + j]) if share_boot is not None else np.nan
            row[f"{what}_high"] = float(share_boot.high[2 * i + j]) if share_boot is not None else np.nan
            row[f"{what}_count"] = int(round(share_est[2 * i + j] * layers[i] * mains[i].n_experts))
        for k, s in enumerate(DEPTH_STATISTICS):
            row[f"trend: {s}"] = float(tr[0][k])
        row["tokens_per_character"] = float(np.median(mains[i].tokens / np.maximum(mains[i].characters, 1)))
        rows.append(row)
    summary = pd.DataFrame(rows)

    rows = []
    for i, m in enumerate(models):
        d = [v.reshape(K, layers[i]) for v in get(("depth", i))]
        for k, s in enumerate(DEPTH_STATISTICS):
            for layer in range(layers[i]):
                rows.append({"model": m, "family": fam[m], "statistic": s, "layer": layer,
                             "relative_depth": (layer + 0.5) / layers[i], "value": d[0][k, layer],
                             "low": d[1][k, layer], "high": d[2][k, layer]})
    by_layer = pd.DataFrame(rows)

    rows = []
    for a, b in pair_list:
        mr = get(("mantel", (a, b)))
        cr = get(("curve", (a, b)))
        row = {"a": models[a], "b": models[b], "relation": _relation(fam[models[a]], fam[models[b]]),
               "mantel_r": float(mr[0][0]), "mantel_low": float(mr[1][0]), "mantel_high": float(mr[2][0]),
               "hf_difference": float(summary.loc[b, "hf_share"] - summary.loc[a, "hf_share"])}
        for k, s in enumerate(DEPTH_STATISTICS):
            row[f"curve: {s}"] = float(cr[0][k])
            row[f"curve: {s} low"] = float(cr[1][k])
            row[f"curve: {s} high"] = float(cr[2][k])
            row[f"shape: {s}"] = _agreement_word(cr[0][k], cr[1][k], cr[2][k])
        rows.append(row)
    pairs = pd.DataFrame(rows)

    rows = []
    measures = [("language distances (Mantel r)", "contrast_mantel", 0, True)]
    measures += [(f"depth curve: {s}", "contrast_curve", k, True) for k, s in enumerate(DEPTH_STATISTICS)]
    measures += [("share of high-frequency experts (|difference|)", "contrast_hf", 0, False)]
    for words, name, k, higher_is_closer in measures:
        e, lo_, hi_ = (float(v[k]) for v in get(name))
        rows.append({"measure": words, "difference": e, "low": lo_, "high": hi_,
                     "reading": _contrast_word(e, lo_, hi_, higher_is_closer)})
    contrast = pd.DataFrame(rows)
    contrast.attrs["definition"] = ("same-family (size) pairs minus different-family pairs: for agreements, the "
                                    "mean over same-family pairs minus the mean over different-family pairs (> 0: "
                                    "the sizes agree more than the families); for the high-frequency share, the mean "
                                    "|difference| of same-family pairs minus that of different-family pairs (< 0: "
                                    "size changes it less than family)")
    facts = _size_facts(models, fam, summary, pairs, contrast, within, between, n, P, n_resamples, method, keys)
    return {"summary": summary, "by_layer": by_layer, "pairs": pairs, "contrast": contrast, "facts": facts}


def _contrast_word(e, low, high, higher_is_closer: bool) -> str:
    if not (np.isfinite(low) and np.isfinite(high)):
        return "not testable"
    closer = low > 0 if higher_is_closer else high < 0
    farther = high < 0 if higher_is_closer else low > 0
    if closer:
        return "size changes it less than family"
    if farther:
        return "size changes it more than family"
    return "no difference shown"


def _size_facts(models, fam, summary, pairs, contrast, within, between, n, P, n_resamples, method, keys) -> dict:
    sizes = [(models[a], models[b]) for a, b in within]
    f = {"models": models, "families": fam, "n_families": len(set(fam.values())), "languages": n, "passages": P,
         "resamples": n_resamples, "interval_method": method, "size_pairs": sizes,
         "language_names": list(language_labels(keys).values())}
    same = pairs[pairs["relation"] != "different families"]
    other = pairs[pairs["relation"] == "different families"]
    f["size_mantel"] = [[float(r.mantel_r), float(r.mantel_low), float(r.mantel_high)] for r in same.itertuples()]
    f["family_mantel_range"] = [float(other["mantel_r"].min()), float(other["mantel_r"].max())]
    f["size_shapes"] = {s: same[f"shape: {s}"].tolist() for s in DEPTH_STATISTICS}
    f["size_same_shape"] = [s for s in DEPTH_STATISTICS if (same[f"shape: {s}"] == "same shape").all()]
    f["family_same_shape"] = {s: int((other[f"shape: {s}"] == "same shape").sum()) for s in DEPTH_STATISTICS}
    f["family_pairs"] = int(len(other))
    by = summary.set_index("model")
    f["hf_share"] = {m: [float(by.loc[m, "hf_share"]), float(by.loc[m, "hf_low"]), float(by.loc[m, "hf_high"])]
                     for m in models}
    for what in ("shared", "specific"):
        f[what] = {m: [float(by.loc[m, f"{what}_share"]), float(by.loc[m, f"{what}_low"]),
                       float(by.loc[m, f"{what}_high"])] for m in models}
        f[f"{what}_count"] = {m: int(by.loc[m, f"{what}_count"]) for m in models}
    f["contrast"] = {r.measure: [float(r.difference), float(r.low), float(r.high), r.reading]
                     for r in contrast.itertuples()}
    f["size_mantel_holds"] = bool(f["size_mantel"]) and all(lo > SAME_SHAPE for _, lo, _ in f["size_mantel"])
    return f


def _size_tests(facts: dict) -> list[bool]:
    """The size claim's two tests on one corpus: the sizes' language distances agree (Mantel interval above
    :data:`SAME_SHAPE`), and at least three of the four depth statistics keep their shape."""
    return [bool(facts["size_mantel_holds"]), len(facts["size_same_shape"]) >= 3]


def _size_clause(f: dict) -> str:
    it = stats.interval_text
    (a, b) = f["size_pairs"][0]
    cm = f["contrast"]["language distances (Mantel r)"]
    return (f"{a} and {b}: the language distances agree at r = {it(*f['size_mantel'][0], digits=2)} (different "
            f"families: r from {f['family_mantel_range'][0]:.2f} to {f['family_mantel_range'][1]:.2f}; same-family "
            f"minus different-family {it(*cm[:3], digits=2)}, {cm[3]}); {len(f['size_same_shape'])} of "
            f"{len(DEPTH_STATISTICS)} depth statistics keep their shape across the sizes; high-frequency share "
            f"{it(*f['hf_share'][a])} vs {it(*f['hf_share'][b])}; shared experts {f['shared_count'][a]} vs "
            f"{f['shared_count'][b]} ({100 * f['shared'][a][0]:.1f}% vs {100 * f['shared'][b][0]:.1f}% of the "
            "experts)")


def size_verdict(facts: dict, memorised: list[str] | None = None, corpus_name: str = "the UDHR",
                 check: dict | None = None, check_name: str = "the Bible") -> dict:
    """The verdict row for the paper's 'different model sizes' claim (``model_sizes``) from
    :func:`size_results` facts on the main corpus (``corpus_name``), and optionally on a second corpus
    (``check``, ``check_name``) as the robustness view. Two tests (:func:`_size_tests`): the sizes' language
    distances agree (Mantel interval above 0.5) and at least three of the four depth statistics keep their
    shape; the word comes from :func:`babel_lib.report.verdicts.decide`, robust when every test that passes on the
    main corpus passes on the check corpus too. ``memorised``: languages the memorisation table flags on the
    check corpus (named in the evidence). Variants stay untested (no base/instruct pair of one model
    offline)."""
    from babel_lib.core.claims import decide, row

    f = facts
    (a, b) = f["size_pairs"][0]
    passed = _size_tests(f)
    robust = True
    result = f"on {corpus_name}, {_size_clause(f)}"
    if check is not None:
        again = _size_tests(check)
        robust = all(c for p, c in zip(passed, again) if p)
        result += f"; on {check_name}, {_size_clause(check)}"
    result += ". Variants (base vs instruct of one model): not testable here, no such pair ships offline"
    word = decide(passed, robust=robust)
    note = (f"; the memorisation table flags {', '.join(memorised)} on {check_name}: a size difference there mixes "
            "size with memorised text" if memorised else "")
    corpora = corpus_name + (f" ({check_name} as the robustness view)" if check is not None else "")
    evidence = (f"one family in two sizes ({a}, {b}) beside {f['n_families'] - 1} other "
                f"famil{'y' if f['n_families'] == 2 else 'ies'}, {f['languages']} languages on the same "
                f"{f['passages']} passages of {corpora}; intervals over languages and passages "
                f"({f['resamples']:,} resamples, {f['interval_method']}); two sizes only, both 4-bit quantised "
                f"(the smaller through AWQ, then Q4_K_M), instruction-tuned code models" + note)
    return row("model_sizes", result, evidence, word)


def size_tables(results: dict) -> dict:
    """Display tables of the size comparison from {corpus: :func:`size_results`}, intervals as text:
    ``summary`` (per corpus and model: family, parameters in millions, layers, experts a layer, the share
    of high-frequency experts, the experts shared by every language and specific to one: count and share),
    ``pairs`` (per corpus and pair of models: relation, Mantel r of their language distances, the shape
    word of each depth statistic) and ``contrast`` (per corpus and measure: same-family minus
    different-family pairs, and its reading)."""
    it = stats.interval_text
    summary, pairs, contrast = [], [], []
    for corpus_key, res in results.items():
        for r in res["summary"].itertuples():
            summary.append({"corpus": corpus_key, "model": r.model, "family": r.family,
                            "parameters_m": r.parameters / 1e6, "layers": r.layers, "experts": r.experts,
                            "high_frequency": it(r.hf_share, r.hf_low, r.hf_high),
                            "shared": f"{r.shared_count:,} ({it(100 * r.shared_share, 100 * r.shared_low, 100 * r.shared_high, digits=1)}%)",
                            "specific": f"{r.specific_count:,} ({it(100 * r.specific_share, 100 * r.specific_low, 100 * r.specific_high, digits=1)}%)",
                            "tokens_per_character": r.tokens_per_character})
        for _, r in res["pairs"].iterrows():
            pairs.append({"corpus": corpus_key, "a": r["a"], "b": r["b"], "relation": r["relation"],
                          "mantel": it(r["mantel_r"], r["mantel_low"], r["mantel_high"], digits=2),
                          **{s: r[f"shape: {s}"] for s in DEPTH_STATISTICS}})
        for r in res["contrast"].itertuples():
            contrast.append({"corpus": corpus_key, "measure": r.measure,
                             "difference": it(r.difference, r.low, r.high), "reading": r.reading})
    return {"summary": pd.DataFrame(summary), "pairs": pd.DataFrame(pairs), "contrast": pd.DataFrame(contrast)}


# ------------------------------------------------------------------------------------------ memorisation
def evaluation_texts(tokenizer, languages, corpora=("udhr", "bible"), min_tokens: int = 1000,
                     max_length: int = 128, seed: int = 0) -> dict:
    """{corpus: :class:`babel_lib.interventions.evaluate.EvalSet`} of held-out text, made once (with ``tokenizer``, e.g.
    the first model's) and read by every model, so that all models are scored on the same characters.
    Each corpus covers the ``languages`` it has."""
    from babel_lib.data import corpus as corpus_mod
    from babel_lib.interventions.evaluate import evaluation_set

    keys = list(corpus_mod.resolve_languages(languages)) if isinstance(languages, str) else list(languages)
    out = {}
    for c in corpora:
        have = [k for k in keys if corpus_mod.has_language(k, c)]
        if have:
            out[c] = evaluation_set(tokenizer, have, min_tokens=min_tokens, prefer=(c,), max_length=max_length,
                                    seed=seed)
    return out


def bits_per_character(models, texts: dict, dtype: str = "float32", device: str = "cpu", batch_size: int = 8,
                       release_weights: bool = True, store=None) -> pd.DataFrame:
    """Each model's bits per character (and perplexity, tokens per character) on each corpus and language of
    ``texts`` ({corpus: EvalSet}, :func:`evaluation_texts`), one model at a time (released after with
    ``release_weights``); cached per model and text like every evaluation. Columns: model, corpus,
    language, name, bits_per_char, perplexity, tokens, characters, tokens_per_char."""
    from babel_lib.experts import pipeline
    from babel_lib.interventions import evaluate

    frames = []
    for m in models:
        lm = pipeline.get_model(m, dtype, device)
        for c, es in texts.items():
            df = evaluate.perplexity(lm, evalset=es, batch_size=batch_size, store=store)
            frames.append(df.assign(model=m, corpus=c))
        del lm
        if release_weights:
            release(m)
    out = pd.concat(frames, ignore_index=True)
    out["name"] = out["language"].map(language_labels(list(dict.fromkeys(out["language"]))))
    out["tokens_per_char"] = out["tokens"] / out["characters"]
    return out[["model", "corpus", "language", "name", "bits_per_char", "perplexity", "tokens", "characters",
                "tokens_per_char"]]


def memorisation_table(bpc: pd.DataFrame, reference_corpus: str = "udhr",
                       share: float = MEMORISED_SHARE) -> pd.DataFrame:
    """From :func:`bits_per_character`: per model, corpus (other than ``reference_corpus``) and language,
    the ratio of its bits per character there to the same language on the reference corpus, the ratio
    relative to the model's median ratio over languages, and ``memorised``: that relative ratio is below
    ``share`` (:data:`MEMORISED_SHARE`): the text is predicted far better than the model's other texts,
    evidently memorised. Columns: model, corpus, language, name, bits_per_char, reference_bits, ratio,
    relative, memorised."""
    ref = bpc[bpc["corpus"] == reference_corpus].set_index(["model", "language"])["bits_per_char"]
    rows = bpc[bpc["corpus"] != reference_corpus].copy()
    rows["reference_bits"] = [ref.get((m, l), np.nan) for m, l in zip(rows["model"], rows["language"])]
    rows["ratio"] = rows["bits_per_char"] / rows["reference_bits"]
    median = rows.groupby(["model", "corpus"])["ratio"].transform("median")
    rows["relative"] = rows["ratio"] / median
    rows["memorised"] = rows["relative"] < share
    return rows[["model", "corpus", "language", "name", "bits_per_char", "reference_bits", "ratio", "relative",
                 "memorised"]].reset_index(drop=True)


def memorised_languages(table: pd.DataFrame) -> dict:
    """{model: [language names flagged as memorised]} from :func:`memorisation_table` (flagged models only)."""
    hit = table[table["memorised"]]
    return {m: g["name"].tolist() for m, g in hit.groupby("model", sort=False)}


def bits_table(bpc: pd.DataFrame, memorisation: pd.DataFrame | None = None) -> pd.DataFrame:
    """Bits per character as one row per language and one column per corpus and model ('<corpus>: <model>')
    from :func:`bits_per_character`, and with :func:`memorisation_table` the models that evidently
    memorised the language's text (``memorised_by``)."""
    wide = bpc.pivot_table(index=["language", "name"], columns=["corpus", "model"], values="bits_per_char",
                           sort=False)
    wide.columns = [f"{c}: {m}" for c, m in wide.columns]
    wide = wide.reset_index()
    if memorisation is not None:
        hit = memorisation[memorisation["memorised"]].groupby("language")["model"].agg(", ".join)
        wide["memorised_by"] = wide["language"].map(hit).fillna("")
    return wide


# ====================================================================================================
# The notebook's display: model checks, charts, table options and prose
def check_models(names) -> None:
    """Raise now, before any forward, the error that loading any of ``names`` would raise (a missing package,
    an unknown model): :func:`babel_lib.core.models.check_available` on each; returns None."""
    from babel_lib.core.models import check_available

    for name in names:
        check_available(name)


def studies_text(studies: dict) -> str:
    """A Markdown list, one line describing each study: ``studies`` is {model: Study}, or {corpus: {model:
    Study}} (:func:`corpus_studies`; each line then led by its corpus)."""
    lines = []
    for key, value in studies.items():
        if isinstance(value, dict):
            lines += [f"- {key}: {s.describe()}" for s in value.values()]
        else:
            lines.append(f"- {value.describe()}")
    return "\n".join(lines)


def depth_chart(by_layer: pd.DataFrame, title: str) -> alt.FacetChart:
    """The per-layer statistics of several models at relative depth, one panel a statistic in the order of
    :data:`DEPTH_STATISTICS` (:func:`babel_lib.report.plots.depth_curves`). ``by_layer``: model, statistic,
    layer, relative_depth, value, low, high and optionally floor (:func:`model_results`' ``by_layer``)."""
    return plots.depth_curves(by_layer, title, order=DEPTH_STATISTICS)


def distances_chart(pairs: pd.DataFrame, models) -> alt.Chart:
    """Every pair of languages: its Hellinger distance under the first of ``models`` (x) against the second
    (y), coloured by ``scripts`` (same or different). ``pairs``: :func:`model_results`' ``pairs`` (a column
    of distances per model, and scripts)."""
    return alt.Chart(pairs).mark_circle(size=6, opacity=0.35).encode(
        x=alt.X(f"{models[0]}:Q", title=f"Hellinger distance, {models[0]}", scale=alt.Scale(zero=False)),
        y=alt.Y(f"{models[1]}:Q", title=f"Hellinger distance, {models[1]}", scale=alt.Scale(zero=False)),
        color=alt.Color("scripts:N", title="The two languages are written in", legend=alt.Legend(orient="bottom")),
    ).properties(width=420, height=360, title="Distances between languages in the two models")


def tokenisation_table(tokenisation: pd.DataFrame) -> pd.DataFrame:
    """:func:`model_results`' ``tokenisation`` (language, name, script, family and tokens per character under
    each model) with ``writing``: "Latin" for the Latin script, else "other scripts"."""
    writing = tokenisation["script"].map(lambda s: "Latin" if s == "Latn" else "other scripts")
    return tokenisation.assign(writing=writing)


def tokenisation_chart(tokenisation: pd.DataFrame, models) -> alt.LayerChart:
    """Tokens per character of each language under the first of ``models`` (x) against the second (y), with
    the diagonal (the same granularity) dashed. ``tokenisation``: :func:`tokenisation_table` (name, script,
    family, writing and a column per model)."""
    top = float(tokenisation[list(models)].max().max())
    diag = alt.Chart(pd.DataFrame({"x": [0.0, top]})).mark_line(color="#999", strokeDash=[4, 4]).encode(
        x="x:Q", y="x:Q")
    points = alt.Chart(tokenisation).mark_circle(size=45, opacity=0.75).encode(
        x=alt.X(f"{models[0]}:Q", title=f"Tokens per character, {models[0]}"),
        y=alt.Y(f"{models[1]}:Q", title=f"Tokens per character, {models[1]}"),
        color=alt.Color("writing:N", title="Script", legend=alt.Legend(orient="bottom")),
        tooltip=["name:N", "script:N", "family:N", alt.Tooltip(f"{models[0]}:Q", format=".2f"),
                 alt.Tooltip(f"{models[1]}:Q", format=".2f")])
    return (diag + points).properties(width=420, height=340, title="Tokenisation granularity in the two models")


#: Display options of the chapter's tables whose headers do not depend on the run (:func:`model_tables` for the
#: others), keyed by the table's name: ``plots.table(df, name, **TABLES[name])``.
TABLES: dict[str, dict] = {
    "tests": {
        "columns": {"model": "Model", "name": "Test", "statistic": "Value", "low": "Low", "high": "High",
                    "p_value": "p", "p_holm": "p (Holm)", "n": "Languages"},
        "formats": {"statistic": "{:+.3f}", "low": "{:+.3f}", "high": "{:+.3f}", "p_value": "{:.4f}",
                    "p_holm": "{:.4f}"},
        "caption": "Family, script and model-agreement tests (9,999 permutations each)"},
    "size_summary": {
        "columns": {"corpus": "Corpus", "model": "Model", "family": "Family", "parameters_m": "Parameters (M)",
                    "layers": "Layers", "experts": "Experts a layer", "high_frequency": "High-frequency share",
                    "shared": "Shared by every language (%)", "specific": "Specific to one (%)",
                    "tokens_per_character": "Tokens per character"},
        "formats": {"parameters_m": "{:,.0f}", "tokens_per_character": "{:.2f}"}, "transpose": False,
        "caption": "The four models on each corpus"},
    "size_pairs": {
        "columns": {"corpus": "Corpus", "a": "Model", "b": "Other model", "relation": "Relation",
                    "mantel": "Language distances, Mantel r", **{s: s.capitalize() for s in DEPTH_STATISTICS}},
        "transpose": False,
        "caption": "Every pair of models: do they find the same languages similar, and do their depth curves keep "
                   "their shape?"},
    "size_contrast": {
        "columns": {"corpus": "Corpus", "measure": "Measure", "difference": "Same family minus different families",
                    "reading": "Reading"},
        "transpose": False, "caption": "Does size change the patterns less than family does?"},
}


def model_tables(models) -> dict[str, dict]:
    """Display options of the tables whose headers name the models, keyed by table name (as :data:`TABLES`):
    ``text`` (:func:`text_tables`), ``depth_agreement``, ``holds_in`` and ``robustness`` (:func:`model_results`'
    agreement, both and robustness)."""
    per_model = [c for m in models for c in (f"tokens: {m}", f"tokens per character: {m}")]
    measures = (("auc", "family AUC"), ("tree_r", "tree partial r"), ("script_r", "script partial r"))
    return {
        "text": {
            "columns": {"name": "Language", "family": "Family", "script": "Script", "passages": "Passages",
                        "characters": "Characters", **{c: c.capitalize() for c in per_model}},
            "formats": {c: "{:.2f}" for c in per_model if c.startswith("tokens per character")},
            "caption": "Text profiled per language and model"},
        "depth_agreement": {
            "columns": {"statistic": "Statistic", "curve_r": "Curve correlation", "low": "Low", "high": "High",
                        "trend_reference": f"Trend with depth, {models[0]}",
                        "trend_other": f"Trend with depth, {models[1]}", "agreement": "Shape"},
            "formats": {"curve_r": "{:+.2f}", "low": "{:+.2f}", "high": "{:+.2f}", "trend_reference": "{:+.2f}",
                        "trend_other": "{:+.2f}"},
            "caption": "Do the two models' depth profiles agree?"},
        "holds_in": {
            "columns": {"finding": "Finding", **{m: m for m in models}, "holds_in": "Holds in"},
            "caption": "Which family and script findings hold in which model (Holm-adjusted p < 0.05)"},
        "robustness": {
            "columns": {"view": "View", "models_r": "Models' distances, r", "models_p": "p",
                        **{f"{m}: {k}": f"{m}: {w}" for m in models for k, w in measures}},
            "formats": {"models_r": "{:+.3f}", "models_p": "{:.4f}",
                        **{f"{m}: {k}": ("{:.3f}" if k == "auc" else "{:+.3f}") for m in models for k, _ in measures}},
            "caption": "The headline comparisons in every view"},
    }


def bits_table_options(bits: pd.DataFrame) -> dict:
    """Display options of the bits-per-character table (:func:`bits_table`: language, name, a column per corpus
    and model, memorised_by)."""
    runs = list(bits.columns[2:-1])
    return {"columns": {"name": "Language", **{c: c for c in runs}, "memorised_by": "Memorised by"},
            "formats": {c: "{:.2f}" for c in runs}, "transpose": False, "max_rows": 30,
            "caption": "Bits per character on held-out text, by corpus and model"}


#: What the chapter says when no size series is profiled.
NO_SIZE_SERIES = ("No size series (`size_models` is empty): the size comparison is skipped, and its verdict is "
                  "not testable here.")


def size_results_by_corpus(runs: dict, **parameters) -> dict:
    """{corpus: :func:`size_results` (studies, **parameters)} from {corpus: {model: Study}} (:func:`corpus_studies`)."""
    return {c: size_results(studies, **parameters) for c, studies in runs.items()}


def size_by_layer(results: dict) -> pd.DataFrame:
    """Every corpus' per-layer statistics (:func:`size_results`' ``by_layer``) in one table with a ``corpus``
    column, from {corpus: :func:`size_results`}."""
    return pd.concat([r["by_layer"].assign(corpus=c) for c, r in results.items()])


def flagged_languages(memorised: dict, size_models) -> list[str]:
    """'<language> (<model>)' for each language the memorisation table flags for one of ``size_models``
    (``memorised``: :func:`memorised_languages`)."""
    return [f"{name} ({m})" for m in size_models for name in memorised.get(m, [])]


def corpus_size_verdict(results: dict, flagged: list[str]) -> dict:
    """:func:`size_verdict` on the UDHR, with the Bible as the check corpus where it was profiled, from
    {corpus: :func:`size_results`}; ``flagged``: :func:`flagged_languages`."""
    return size_verdict(results["udhr"]["facts"], flagged, "the UDHR",
                        check=results["bible"]["facts"] if "bible" in results else None, check_name="the Bible")


def findings_text(f: dict) -> str:
    """The chapter's findings on the two model families (Markdown) from :func:`model_results`' facts."""
    it = interval_text
    a, b = f["models"][:2]
    holds = f["holds_in"]
    names = {k: ", ".join(f[k]) or "none" for k in ("weakly_similar", "opposite", "unclear")}
    same = ", ".join(f["same_shape"]) or "none of the statistics"
    if not f["testable"]:
        return f"""
- **Not testable on this language set.** {f['languages']} languages leave no same-family pair to compare; run the
  chapter on `families:120` (the default).
- The two models' language distances: Mantel r = {it(*f['mantel'], digits=2)}. Same depth shape:
  {same}.
"""
    views = "The agreement holds in every view" if f["robust_mantel"] else "The agreement does not hold in every view"
    curves = "; ".join(f"{s} {it(*v, digits=2)}" for s, v in f["curves"].items())
    weak = ("The family effect within script strata does not hold in every model: weak evidence that it is general."
            if holds["auc"] != "every model" else "")
    medians = ", ".join(f"{m} {v:.2f}" for m, v in f["tpc_median"].items())
    top = f["tpc_ratio_max"]
    p = {k: p_text(f[k + "_p"], f[k + "_p_holm"]) for k in ("mantel", "partial", a + ": auc", b + ": auc")}
    return f"""
- **The same languages are close in both models.** The two models' distance matrices correlate at Mantel
  r = {it(*f['mantel'], digits=2)} ({p['mantel']}); holding script and both
  models' tokenisation differences fixed, r = {it(*f['partial'], digits=2)}
  ({p['partial']}). {views}
  (r from {f['models_r_range'][0]:+.2f} to {f['models_r_range'][1]:+.2f}).
- **Depth profiles.** Same shape in both models (curve correlation above 0.5): {same};
  weakly similar (above 0 only): {names['weakly_similar']}; opposite: {names['opposite']};
  unclear (interval includes 0): {names['unclear']}.
  Curve correlations: {curves}.
- **Family and script.** {a}: family AUC within script strata {it(*f[a + ': auc'])}
  ({p[a + ': auc']}), tree beyond script and tokenisation
  {it(*f[a + ': partial_tree'], digits=2)}, script beyond tree and tokenisation
  {it(*f[a + ': partial_script'], digits=2)}. {b}: family AUC {it(*f[b + ': auc'])}
  ({p[b + ': auc']}), tree {it(*f[b + ': partial_tree'], digits=2)}, script
  {it(*f[b + ': partial_script'], digits=2)}. With each model's tests corrected as one family (chapter 5's
  correction: the same adjusted p-values for the same model), the family effect within script strata holds in
  {holds['auc']}; the tree beyond script and tokenisation in
  {holds['partial_tree']}; the script beyond the tree in {holds['partial_script']}; tokenisation granularity beyond
  tree and script in {holds['partial_granularity']}. {weak}
- **Tokenisation differs.** Median tokens per character: {medians};
  {b} needs a median {f['tpc_ratio_median']:.2f} times as many tokens as {a} for the same text (most for
  {top[0]}: {top[1]:.1f} times); the two granularities have Spearman rho = {f['tpc_rho']:.2f}
  over languages.
- **Strength of evidence.** Two models, one of each family, {f['passages']} passages of one text ({f['resamples']:,}
  paired resamples). What holds in both is a finding about two models, not about model families in general; what
  holds in one only cannot be assigned to family, size, tokenizer, data or tuning.
"""


def size_findings_text(results: dict, flagged: list[str]) -> str:
    """The findings on model sizes (Markdown) from {corpus: :func:`size_results`} (the UDHR, and the Bible where
    profiled) and the languages the memorisation table flags (:func:`flagged_languages`)."""
    it = interval_text
    lines = []
    for c, words in (("udhr", "the UDHR"), ("bible", "the Bible")):
        if c not in results:
            continue
        u = results[c]["facts"]
        sa, sb = u["size_pairs"][0]
        mantel = u["contrast"]["language distances (Mantel r)"]
        hf_word = u["contrast"]["share of high-frequency experts (|difference|)"][3]
        lines.append(
            f"- **Sizes on {words}** ({u['languages']} languages, {u['passages']} passages, {u['interval_method']} "
            f"intervals). The two sizes' language distances agree at r = {it(*u['size_mantel'][0], digits=2)}; "
            f"pairs of different families agree at r = {u['family_mantel_range'][0]:.2f} to "
            f"{u['family_mantel_range'][1]:.2f}, and the same-family minus different-family difference is "
            f"{it(*mantel[:3], digits=2)} ({mantel[3]}). Depth statistics that keep their shape across the sizes: "
            f"{', '.join(u['size_same_shape']) or 'none'} (shape words per statistic in the pairs table). Share of "
            f"high-frequency experts: {sa} {it(*u['hf_share'][sa])}, {sb} {it(*u['hf_share'][sb])} ({hf_word}). "
            f"Experts shared by every language: {u['shared_count'][sa]:,} and {u['shared_count'][sb]:,}; specific "
            f"to one: {u['specific_count'][sa]:,} and {u['specific_count'][sb]:,}.")
    memorisation = (f"The memorisation table flags {', '.join(flagged)} on the Bible: there the size comparison mixes "
                    "size with memorised text, and the UDHR comparison is the main one." if flagged else
                    "No size model's Bible text is flagged as memorised by our rule. The rule compares each model's "
                    "Bible with its UDHR: a model that has memorised both famous texts passes it, so low bits per "
                    "character on both corpora (the bits-per-character table) cannot be told apart from competence "
                    "here.")
    lines.append("- **Memorisation.** " + memorisation + " The size pair is one family in two sizes, both quantised "
                 "instruction-tuned code models: a finding about these two sizes, not about scaling.")
    return "\n".join(lines)
