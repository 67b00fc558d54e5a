"""Chapter 6 as library steps: two model families compared on the same passages, at relative depth
(per-layer statistics resampled onto a common depth grid), by their language-distance matrices
(Mantel r with a bootstrap interval over passages shared by both models) and by the family and script
tests of chapter 5 run on each model (:mod:`babel_lib.families`)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from . import analysis, corpus, stats
from .corpus import language_labels
from .distances import (check_same_passages, bootstrap_profiles, centred_interval, layer_distances, mean_distance,
                        profile_distances, split_half_floor, upper, weighted_profile)
from .family_tests import (UNDEFINED_NOTES, design, family_tests, granularity_difference, mantel_many,
                           residual_correlation, view_tests, weighted_residual_correlation)
from .hooks import torch_threads


def model_studies(models, **study_parameters) -> dict:
    """{model: :func:`babel_lib.pipeline.study` (model=model, **study_parameters)}: every model
    profiled on the same languages and passages (cached like any study)."""
    from . import pipeline

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
    from .heatmaps import departure

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
    :func:`babel_lib.analysis.resample_depth`): [...]; NaN where either is constant."""
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
    model_views = {model: {view: Profile}} (each model's :attr:`babel_lib.pipeline.Study.views`,
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
    """The chapter's verdict rows for the claim 'model_families' (:mod:`babel_lib.verdicts`) from
    :func:`model_results` facts: one on model families (what two models of different families share)
    and one on sizes and variants: ``sizes``, the tested row of :func:`babel_lib.model_sizes.size_verdict`
    when a size series was profiled, else 'not testable here' (two small models of different families)."""
    from .verdicts import row

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
