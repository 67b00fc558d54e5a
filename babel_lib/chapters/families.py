"""Language families as chapter steps (chapter 5; chapter 6 reuses the tests, see model_families.py).

Chapter 5 asks whether languages of one family have closer activation profiles than languages of
different families once script and tokenisation are accounted for; chapter 6 whether what one
model shows holds in a model of another family. Every step is a function here, tested on
constructed data with known answers (``tests/test_families.py``); :func:`family_results` and
:func:`model_results` are the chapters' one call each, returning tables and a dict of facts.

Our choices (the paper is silent; each is named in the chapters):

- **Distance** between two languages: the Hellinger distance between their activation profiles,
  H(p, q) = sqrt(1 - sum_k sqrt(p_k q_k)) in [0, 1], each profile (all layers x experts) normalised
  to sum 1 (under top-k every layer sums to k, so the layers weigh equally); per layer the same over
  the layer's experts. It is one matrix product, so a 120 x 120 matrix takes milliseconds and a
  1,000-resample bootstrap seconds, where the Jensen-Shannon distance of the earlier chapters loops
  over rows (:func:`babel_lib.stats.analysis.js_distances`); Jensen-Shannon is kept as a robustness row.
- **Family**: Glottolog's top-level family (``corpus.language_table()['family']``); an
  unclassified or artificial language is a family of its own (:data:`NO_FAMILY`).
- **Tree distance**, primary: the depth measure ``genealogy.tree_distance(measure='depth')``
  = D_max - clades shared (how deep the last common clade lies, whatever the depth of the rest of
  each branch); secondary: edges between the two leaves (depends on how finely each branch is
  classified).
- **One text per language** in the family tests (:func:`one_text_per_language`): a language the
  corpus has in two scripts (Serbian in Cyrillic and Latin, Hindi/Urdu, ...) keeps its first text,
  so that two texts of one language never count as two related languages; the second texts enter
  the script-vs-language contrast (:func:`twin_table`) and the distance matrix.
- **Tokenisation granularity**: tokens per character of a language's text under the model's
  tokenizer; the covariate is |difference| between two languages, recomputed in every resample.
- **Intervals**: 95% passage bootstrap (:func:`bootstrap_profiles`: the same resample of passages
  for every language and, in chapter 6, for both models); BCa for effect sizes (AUC, r, adjusted
  Rand index, curve correlations), the centred percentile interval (:func:`centred_interval`) for
  distance-level statistics, which resampling shifts as a whole. They measure how much the text
  sample moves a statistic; the permutation p-values (languages relabelled) measure whether the
  language labels matter. **Noise floor**: the split-half distance of a language with itself
  (:func:`split_half_floor`).
- **Permutation tests** run many distance matrices (views, layers) against one set of
  permutations (:func:`mantel_many`, :func:`stratified_many`): Mantel tests permute the languages
  of the design matrix's residuals on the covariates (Smouse, Long and Sokal 1986), family labels
  are permuted within script groups; 9,999 permutations by default.
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from babel_lib.data import corpus
from babel_lib.data.corpus import language_labels
from babel_lib.experts import pipeline
from babel_lib.report import plots
from babel_lib.stats import analysis, inference as stats
from babel_lib.stats.distances import (bootstrap_profiles, centred_interval, layer_distances,  # noqa: F401
                                       mean_distance, profile_distances, split_half_floor, upper, weighted_profile)
from babel_lib.stats.family_tests import (CLADE_BINS, PAIR_CLASSES,  # noqa: F401 (the chapter's names in one place)
                                          TWIN_STATISTICS, ari_batch, clade_counts, clade_means, class_means,
                                          cluster_agreement, design, family_tests, granularity_difference,
                                          layer_family_tests, one_text_per_language, twin_statistics, twin_table,
                                          view_tests)


# ---------------------------------------------------------------------------- chapter 5 in one call
def family_results(views: dict, n_resamples: int = stats.DEFAULT_RESAMPLES,
                   permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0, layer_tests: bool = True,
                   n_splits: int = 100, linkage: str = "average", top_families: int = 10) -> dict:
    """Everything chapter 5 reports, from profiles of the same languages under several views
    ({name: Profile}, the main view first; :attr:`babel_lib.experts.pipeline.Study.views`).

    Returns a dict of tables and facts:
    - ``tests``: the headline tests (:func:`family_tests` on the main view, plus the agreement of
      the dendrogram's flat clusters with the families) with intervals, raw and Holm-adjusted p;
    - ``languages``: per language: name, family, relatives group, script, tokens per character,
      in the family tests (one text per language), noise floor, nearest language;
    - ``pairs``: every pair: distance with its interval, same family / script, shared clades, tree
      distances, granularity difference;
    - ``matrix``: the distance matrix as a long table in dendrogram order (the diagonal holds each
      language's noise floor); ``dendrogram``: (segments, leaves) to draw; ``order``: leaf order;
    - ``classes``: mean distance per :data:`PAIR_CLASSES` with intervals; ``clades``: mean
      distance by shared clades and script relation with intervals; ``floor``: the mean noise floor;
    - ``twins``: :func:`twin_table` with intervals of the distances and contrasts; ``twins_long``: the
      twin distance and the nearest same-script distance of each text, one row each, to draw;
    - ``family_colours``: the families drawn in their own colour (the largest, at most ``top_families``);
    - ``layers``: :func:`layer_family_tests` (with ``layer_tests``);
    - ``robustness``: per view (and Jensen-Shannon on the main view): the family AUC, the partial
      r of tree, script and granularity with their p-values, twins closer than the nearest
      same-script language, mean distance / noise floor;
    - ``facts``: the scalars the findings and verdicts quote.
    """
    names = list(views)
    main = views[names[0]]
    keys = list(main.languages)
    labels = language_labels(keys)
    meta = corpus.language_table().loc[keys]
    fam_keys = one_text_per_language(keys)
    sub = [keys.index(k) for k in fam_keys]
    dsg_all = design(keys)
    dsg = design(fam_keys)
    freq = main.frequencies()
    tpc = main.tokens / np.maximum(main.characters, 1)
    D = profile_distances(freq)
    floor = split_half_floor(main, n_splits=n_splits, seed=seed)
    floor_mean = float(np.nanmean(floor))

    # ---- headline tests (one text per language) and the dendrogram's clusters
    tests = family_tests(main, permutations, seed, n_resamples)
    Dsub = D[np.ix_(sub, sub)]
    agree = cluster_agreement(Dsub, dsg.family, dsg.script, permutations, seed, linkage)
    twins = twin_table(D, keys)
    ari_low = ari_high = inflation = np.nan
    pair_low = pair_high = np.full(len(upper(D)), np.nan)
    cls_low = cls_high = np.full(4, np.nan)
    cl_low = cl_high = np.full((len(CLADE_BINS), 2), np.nan)
    n_ts = len(TWIN_STATISTICS)
    tw_low = tw_high = np.full((len(twins), n_ts), np.nan)
    if n_resamples and main.n_passages >= 2:
        n_pairs, n_tw = len(upper(D)), len(twins)

        def statistic(f, g):
            Dm = profile_distances(f[0])
            Ds = Dm[..., sub, :][..., :, sub]
            return np.concatenate([
                upper(Dm), class_means(Ds, dsg.same_family, dsg.same_script),
                clade_means(Ds, dsg.shared, dsg.same_script).reshape(len(Dm), -1),
                twin_statistics(Dm, twins).reshape(len(Dm), -1), ari_batch(Ds, dsg.family, linkage)[:, None]],
                axis=-1)

        boot = bootstrap_profiles(statistic, main, n_resamples, seed)
        c_lo, c_hi, c_shift = centred_interval(boot)  # distance-level statistics (all but the ARI)
        lo = np.concatenate([np.atleast_1d(c_lo)[:-1], np.atleast_1d(boot.low)[-1:]])
        hi = np.concatenate([np.atleast_1d(c_hi)[:-1], np.atleast_1d(boot.high)[-1:]])
        inflation = float(np.nanmedian(np.atleast_1d(c_shift)[:n_pairs]))
        cuts = np.cumsum([n_pairs, 4, 2 * len(CLADE_BINS), n_ts * n_tw])
        pair_low, cls_low, cl_low, tw_low, ari_lo = np.split(lo, cuts)
        pair_high, cls_high, cl_high, tw_high, ari_hi = np.split(hi, cuts)
        cl_low, cl_high = cl_low.reshape(-1, 2), cl_high.reshape(-1, 2)
        tw_low, tw_high = tw_low.reshape(-1, n_ts), tw_high.reshape(-1, n_ts)
        ari_low, ari_high = float(ari_lo[0]), float(ari_hi[0])
    tests = pd.concat([tests, pd.DataFrame([{
        "test": "clusters", "name": f"dendrogram cut into {agree['k']} clusters vs families (adjusted Rand index)",
        "measure": "ARI", "statistic": agree["ari"], "null_mean": 0.0, "effect": agree["ari"], "low": ari_low,
        "high": ari_high, "interval": "passages resampled, languages fixed (the ARI of duplicated languages means "
        "nothing)" if np.isfinite(ari_low) else "none", "p_value": agree["p_value"],
        "permutations": permutations, "n": len(fam_keys),
        "note": "" if np.isfinite(agree["ari"]) else "too few languages or families"}])], ignore_index=True)
    tests = stats.correct(tests.assign(family=np.where(tests["test"] == "clusters", "clusters", "families")),
                          "p_value", "holm", out="p_holm", by="family")

    # ---- tables
    iu = np.triu_indices(len(keys), 1)
    G = granularity_difference(tpc)
    pairs = pd.DataFrame({
        "a": np.asarray(keys)[iu[0]], "b": np.asarray(keys)[iu[1]],
        "name_a": [labels[keys[i]] for i in iu[0]], "name_b": [labels[keys[j]] for j in iu[1]],
        "distance": D[iu], "low": pair_low, "high": pair_high,
        "same_family": dsg_all.same_family[iu], "same_script": dsg_all.same_script[iu],
        "shared_clades": dsg_all.shared[iu], "tree_depth": dsg_all.tree[iu], "tree_edges": dsg_all.tree_edges[iu],
        "granularity_difference": G[iu],
        "in_family_tests": np.isin(np.asarray(keys)[iu[0]], fam_keys) & np.isin(np.asarray(keys)[iu[1]], fam_keys),
    })
    Z = analysis.cluster(D, linkage)
    segments, leaves = analysis.dendrogram_segments(Z, keys)
    leaves = leaves.rename(columns={"label": "language"})
    fam_size = pd.Series(dsg_all.family).value_counts()
    coloured = [f for f in fam_size.index if fam_size[f] > 1][:top_families]
    leaves["name"] = leaves["language"].map(labels)
    leaves["family"] = leaves["language"].map(meta["family"])
    leaves["script"] = leaves["language"].map(meta["script"])
    leaves["colour"] = leaves["family"].where(leaves["family"].isin(coloured), "other families")
    order = list(leaves["language"])
    pos = {k: i for i, k in enumerate(order)}
    Dshow = D.copy()
    np.fill_diagonal(Dshow, floor)
    idx = np.array([keys.index(k) for k in order])
    matrix = pd.DataFrame({
        "a": np.repeat(order, len(order)), "b": np.tile(order, len(order)),
        "name_a": np.repeat([labels[k] for k in order], len(order)),
        "name_b": np.tile([labels[k] for k in order], len(order)),
        "distance": Dshow[np.ix_(idx, idx)].reshape(-1),
        "diagonal": np.repeat(np.arange(len(order)), len(order)) == np.tile(np.arange(len(order)), len(order)),
    })
    nearest = analysis.nearest_neighbours(D, keys, k=1).set_index("language")
    languages = pd.DataFrame({
        "language": keys, "name": [labels[k] for k in keys], "family": meta["family"].to_numpy(),
        "group": [corpus.language_group(k) or meta.loc[k, "family"] for k in keys],
        "script": meta["script"].to_numpy(), "tokens_per_character": tpc,
        "in_family_tests": np.isin(keys, fam_keys), "floor": floor,
        "nearest": [labels[nearest.loc[k, "neighbour"]] for k in keys],
        "nearest_distance": [float(nearest.loc[k, "distance"]) for k in keys],
        "dendrogram_position": [pos[k] for k in keys],
    })
    Dsub_est = class_means(Dsub, dsg.same_family, dsg.same_script)
    counts_cls = [int(((upper(dsg.same_family) == f) & (upper(dsg.same_script) == s)).sum())
                  for f in (True, False) for s in (True, False)]
    classes = pd.DataFrame({"pairs_class": PAIR_CLASSES, "pairs": counts_cls, "mean_distance": Dsub_est,
                            "low": cls_low, "high": cls_high, "floor": floor_mean})
    cm = clade_means(Dsub, dsg.shared, dsg.same_script)
    cc = clade_counts(dsg.shared, dsg.same_script)
    bin_names = ["different families"] + [f"{b}" if i < len(CLADE_BINS) - 1 else f"{b} or more"
                                          for i, b in enumerate(CLADE_BINS) if b > 0]
    clades = pd.DataFrame([{"shared_clades": bin_names[i], "bin": i, "script": s, "pairs": int(cc[i, j]),
                            "mean_distance": cm[i, j], "low": cl_low[i, j], "high": cl_high[i, j],
                            "floor": floor_mean}
                           for i in range(len(CLADE_BINS)) for j, s in enumerate(("same script", "different scripts"))])
    clades = clades[clades["pairs"] > 0].reset_index(drop=True)
    if len(twins):
        twins = twins.assign(
            name=twins["language"].map(labels), twin_name=twins["twin"].map(labels),
            nearest_name=twins["nearest_same_script"].map(lambda k: labels.get(k, "")),
            twin_low=tw_low[:, 0], twin_high=tw_high[:, 0],
            nearest_low=tw_low[:, 1], nearest_high=tw_high[:, 1],
            mean_low=tw_low[:, 2], mean_high=tw_high[:, 2],
            minus_nearest=twins["twin_distance"] - twins["nearest_distance"],
            minus_nearest_low=tw_low[:, 3], minus_nearest_high=tw_high[:, 3],
            minus_mean=twins["twin_distance"] - twins["mean_same_script"],
            minus_mean_low=tw_low[:, 4], minus_mean_high=tw_high[:, 4],
            floor=twins["language"].map(dict(zip(keys, floor))))
    twins = twins.drop(columns=[c for c in twins.columns if c.startswith("idx_")])
    twins_long = pd.DataFrame(columns=["name", "comparison", "distance", "low", "high", "partner", "floor"])
    if len(twins):
        twins_long = pd.concat([pd.DataFrame({
            "name": twins["name"], "comparison": what, "distance": twins[f"{col}_distance"],
            "low": twins[f"{col}_low"], "high": twins[f"{col}_high"], "partner": twins[partner],
            "floor": twins["floor"]})
            for what, col, partner in (("own language, other script", "twin", "twin_name"),
                                       ("nearest other language, same script", "nearest", "nearest_name"))],
            ignore_index=True)

    # ---- per layer
    layers = layer_family_tests(main, permutations, seed, n_resamples) if layer_tests else None

    # ---- robustness: every view, and Jensen-Shannon on the main view, tested in one batch
    robustness = view_tests(views, permutations, seed, js=True).rename(columns={
        "partial_tree": "tree_r", "partial_tree_p": "tree_p", "partial_script": "script_r",
        "partial_script_p": "script_p", "partial_granularity": "granularity_r",
        "partial_granularity_p": "granularity_p"})
    rows = []
    for name in names + [None]:
        prof = views[name] if name is not None else main
        Dv = profile_distances(prof.frequencies(), "hellinger" if name is not None else "js")
        tw = twin_table(Dv, keys)
        fl = split_half_floor(prof, n_splits=max(10, n_splits // 5), seed=seed) if name is not None else None
        rows.append({
            "twins_closer": int((tw["twin_distance"] < tw["nearest_distance"]).sum()) if len(tw) else 0,
            "twins": int(tw["nearest_distance"].notna().sum()) if len(tw) else 0,
            "distance_over_floor": float(mean_distance(Dv) / np.nanmean(fl)) if fl is not None and np.isfinite(fl).any()
            else np.nan,
        })
    robustness = pd.concat([robustness, pd.DataFrame(rows)], axis=1)
    facts = _family_facts(tests, classes, clades, twins, layers, robustness, dsg, main, floor_mean, D, Z,
                          permutations, n_resamples, len(views))
    facts["inflation"] = inflation
    return {"tests": tests, "languages": languages, "pairs": pairs, "matrix": matrix,
            "dendrogram": (segments, leaves), "order": order, "family_colours": coloured, "classes": classes,
            "clades": clades, "floor": floor_mean, "twins": twins, "twins_long": twins_long, "layers": layers,
            "robustness": robustness, "facts": facts}


def _family_facts(tests, classes, clades, twins, layers, robustness, dsg, main, floor_mean, D, Z,
                  permutations, n_resamples, n_views) -> dict:
    t = tests.set_index("test")

    def trip(test):
        r = t.loc[test]
        return [float(r["statistic"]), float(r["low"]), float(r["high"])]

    sf = upper(dsg.same_family)
    ss = upper(dsg.same_script)
    rb = robustness
    facts = {
        "languages": len(main.languages), "family_languages": len(dsg.languages),
        "families": int(len(set(dsg.family))),
        "families_3plus": int((pd.Series(dsg.family).value_counts() >= 3).sum()),
        "scripts": int(len(set(dsg.script))), "passages": main.n_passages,
        "pairs": int(len(sf)), "same_family_pairs": int(sf.sum()), "same_family_share": float(sf.mean()),
        "same_family_same_script": int((sf & ss).sum()), "same_family_different_scripts": int((sf & ~ss).sum()),
        "permutations": permutations, "resamples": n_resamples, "views": n_views,
        "floor": floor_mean, "mean_distance": float(mean_distance(D)),
        "cophenetic": float(analysis.cophenetic_correlation(Z, D)) if len(D) > 2 else float("nan"),
        "testable": bool(np.isfinite(t.loc["auc", "statistic"])),
    }
    for test in t.index:
        facts[test] = trip(test)
        facts[f"{test}_p"] = float(t.loc[test, "p_value"])
        facts[f"{test}_p_holm"] = float(t.loc[test, "p_holm"])
        facts[f"{test}_holds"] = bool(np.isfinite(t.loc[test, "statistic"]) and t.loc[test, "p_holm"] < 0.05)
        facts[f"{test}_null"] = float(t.loc[test, "null_mean"])
    facts["interval_method"] = str(t.loc["auc", "interval"])
    # the effect must clear what the AUC is when families mean nothing (its permutation mean), not 0.5
    facts["auc_interval_above_null"] = bool(np.isfinite(facts["auc"][1]) and facts["auc"][1] > facts["auc_null"])
    facts["tree_vs_script"] = ("script" if t.loc["partial_script", "statistic"] > t.loc["partial_tree", "statistic"]
                               else "tree") if facts["testable"] else ""
    c = classes.set_index("pairs_class")
    facts["classes"] = {k: [float(c.loc[k, "mean_distance"]), float(c.loc[k, "low"]), float(c.loc[k, "high"])]
                        for k in PAIR_CLASSES}
    facts["class_pairs"] = {k: int(c.loc[k, "pairs"]) for k in PAIR_CLASSES}
    # the clade gradient within one script: from different families to the deepest shared bin
    same = clades[clades["script"] == "same script"].sort_values("bin")
    facts["clade_gradient"] = [[str(r.shared_clades), float(r.mean_distance), float(r.low), float(r.high), int(r.pairs)]
                               for r in same.itertuples()]
    if len(twins) and "minus_nearest_high" in twins:
        ok = twins["nearest_distance"].notna()
        facts["twins"] = int(ok.sum())
        facts["twins_closer"] = int((twins.loc[ok, "minus_nearest"] < 0).sum())
        facts["twins_closer_beyond_noise"] = int((twins.loc[ok, "minus_nearest_high"] < 0).sum())
        facts["twins_farther_beyond_noise"] = int((twins.loc[ok, "minus_nearest_low"] > 0).sum())
        facts["twins_closer_than_mean"] = int((twins.loc[ok, "minus_mean_high"] < 0).sum())
        facts["twin_languages"] = sorted(set(twins["name"]))
        facts["twin_pairs"] = int(len(twins) // 2)
        facts["twins_below_floor"] = int((twins["twin_distance"] <= twins["floor"]).sum())
        farther = twins[ok & (twins["minus_nearest_low"] > 0)]
        facts["twins_farther_names"] = [f"{r.name} (nearer {r.nearest_name})" for r in farther.itertuples()]
        facts["twins_farther_same_group"] = int(farther["nearest_same_group"].sum())
        facts["twins_same_group_names"] = sorted(set(farther.loc[farther["nearest_same_group"], "name"]))
    else:
        for k in ("twins", "twins_closer", "twins_closer_beyond_noise", "twins_farther_beyond_noise",
                  "twins_closer_than_mean", "twin_pairs", "twins_below_floor"):
            facts[k] = 0
        facts["twin_languages"], facts["twins_farther_names"] = [], []
        facts["twins_farther_same_group"], facts["twins_same_group_names"] = 0, []
    if layers is not None and len(layers):
        facts["layers"] = int(len(layers))
        facts["layers_auc_significant"] = int((layers["auc_q"] < 0.05).sum())
        facts["layers_tree_significant"] = int((layers["tree_q"] < 0.05).sum())
        best = layers.loc[layers["auc"].idxmax()] if layers["auc"].notna().any() else None
        facts["best_auc_layer"] = [int(best["layer"]), float(best["auc"]), float(best["auc_low"]),
                                   float(best["auc_high"])] if best is not None else [-1, np.nan, np.nan, np.nan]
        by_third = layers.groupby("third", sort=False)["auc"].mean()
        facts["auc_by_third"] = {k: float(v) for k, v in by_third.items()}
    else:
        facts["layers"] = 0
    base = rb.iloc[:-1]  # the partition views (seeds and neurons); the last row is Jensen-Shannon

    def every(col, pcol, frame=rb):
        return bool(((frame[col] > (0.5 if col == "auc" else 0)) & (frame[pcol] < 0.05)).all())

    facts["robust_auc"] = every("auc", "auc_p")
    facts["robust_tree"] = every("tree_r", "tree_p")
    facts["robust_script"] = every("script_r", "script_p")
    facts["robust_granularity"] = every("granularity_r", "granularity_p")
    facts["robust_auc_partitions"] = every("auc", "auc_p", base)
    facts["auc_range"] = [float(rb["auc"].min()), float(rb["auc"].max())]
    facts["tree_range"] = [float(rb["tree_r"].min()), float(rb["tree_r"].max())]
    facts["script_range"] = [float(rb["script_r"].min()), float(rb["script_r"].max())]
    facts["robust_twins"] = bool(len(rb) and (rb["twins_closer"] == rb["twins_closer"].iloc[0]).all())
    facts["twins_closer_range"] = [int(rb["twins_closer"].min()), int(rb["twins_closer"].max())]
    return facts


def family_verdicts(facts: dict) -> list[dict]:
    """The chapter's verdict rows for the claims 'families' and 'families_v1'
    (:mod:`babel_lib.report.verdicts`) from :func:`family_results` facts."""
    from babel_lib.core.claims import row

    f = facts
    if not f["testable"]:
        why = (f"{f['family_languages']} languages (one text each) leave no same-family pair to compare with a "
               "cross-family pair")
        return [row("families", "not testable on this language set", why, "not testable here"),
                row("families_v1", "not testable on this language set", why, "not testable here")]
    it = stats.interval_text
    auc, tree, script = f["auc"], f["partial_tree"], f["partial_script"]
    result = (f"a same-family pair is closer than a cross-family pair with probability {it(*auc)} within script "
              f"strata, against {f['auc_null']:.3f} when families mean nothing "
              f"({stats.p_text(f['auc_p'], f['auc_p_holm'])}); beyond script and tokenisation, tree distance "
              f"gives partial r = {it(*tree, digits=2)} "
              f"({stats.p_text(f['partial_tree_p'], f['partial_tree_p_holm'])}) "
              f"and script gives {it(*script, digits=2)}")
    family = f["auc_holds"] and f["auc_interval_above_null"]
    beyond = f["partial_tree_holds"]
    robust = f["robust_auc"] and (f["robust_tree"] or not beyond)
    if family and beyond and robust:
        word = "reproduced"
    elif family or beyond:
        word = "partly reproduced"
    else:
        word = "not reproduced"
    small = auc[0] < 0.65 or abs(tree[0]) < 0.1
    size = ("a small effect: " if small else "") + (
        f"script weighs more than genealogy (partial r {script[0]:.2f} vs {tree[0]:.2f})" if script[0] > tree[0]
        else f"genealogy weighs more than script (partial r {tree[0]:.2f} vs {script[0]:.2f})")
    strength = "strong" if family and beyond and robust and not small else "moderate" if family and robust else "weak"
    evidence = (f"{strength} evidence, {size}; {f['family_languages']} languages of {f['families']} families "
                f"({f['families_3plus']} with 3 or more), {f['same_family_pairs']} same-family pairs; "
                f"{f['passages']} passages; intervals: {f['interval_method']} ({f['resamples']:,} resamples); "
                f"{f['permutations']:,} permutations; "
                + ("holds under every partition seed, the neuron view and the Jensen-Shannon distance"
                   if f["robust_auc"] else "does not hold in every view")
                + ("" if f["partial_tree_holds"] else
                   "; the tree adds nothing measurable beyond script and tokenisation")
                + ("" if f["auc_same_script_holds"] else "; among pairs written in one script alone the family effect "
                   "is not significant"))
    rows = [row("families", result, evidence, word)]
    ari = f["clusters"]
    v1_result = (f"the dendrogram's flat clusters match the families with adjusted Rand index {it(*ari)} "
                 f"({stats.p_text(f['clusters_p'], f['clusters_p_holm'])}); the same-family AUC within script strata "
                 f"is {it(*auc)}")
    v1_word = ("reproduced" if f["clusters_holds"] and ari[0] >= 0.3 and family and robust else
               "partly reproduced" if f["clusters_holds"] or family else "not reproduced")
    v1_evidence = (f"{f['family_languages']} languages; family labels permuted within script groups; "
                   + ("a family-level connection exists but the clusters recover families only in part (low ARI): "
                      "weak evidence for family-level structure in the tree"
                      if family and np.isfinite(ari[0]) and ari[0] < 0.3 else "see the family test above"))
    rows.append(row("families_v1", v1_result, v1_evidence, v1_word))
    return rows



# ---------------------------------------------------------------------------- sister languages
def sister_results(views: dict, trios, permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0,
                   n_resamples: int = stats.DEFAULT_RESAMPLES) -> dict:
    """The sister test (:func:`babel_lib.stats.family_tests.sister_test`) on the main view of ``views``
    ({name: Profile} of the trios' languages, the main view first), and its p-value in every view.
    Returns ``trios`` (one row a trio: family, script, sisters, cousin, the three distances, ratio,
    score), ``test`` (one row: statistic, null mean, interval, p), ``views`` (score and p per view) and
    ``facts`` for :func:`sister_verdicts` and :func:`sister_text`."""
    from babel_lib.stats.family_tests import sister_test

    names = list(views)
    main = views[names[0]]
    res = sister_test(main, trios, permutations, seed, n_resamples)
    prof = main.select([k for t in trios for k in t])
    D = profile_distances(prof.frequencies())
    table = corpus.language_table()
    rows = []
    for i, (a, b, c) in enumerate(trios):
        ia, ib, ic = 3 * i, 3 * i + 1, 3 * i + 2
        rows.append({"family": table.loc[a, "family"], "script": table.loc[a, "script"],
                     "sisters": f"{corpus.language_name(a)} + {corpus.language_name(b)}",
                     "cousin": corpus.language_name(c), "sister_distance": float(D[ia, ib]),
                     "cousin_distance": float(0.5 * (D[ia, ic] + D[ib, ic])), "ratio": float(res["ratios"][i]),
                     "score": float(res["per_trio"][i])})
    per_view = [{"view": n, "score": r["score"], "p_value": r["p_value"]}
                for n, r in [(names[0], res)] + [(n, sister_test(views[n], trios, permutations, seed, 0))
                                                 for n in names[1:]]]
    test = pd.DataFrame([{"name": "sisters closer than their nearest cousin", "measure": "share of cousin pairs farther",
                          "statistic": res["score"], "null_mean": res["null_mean"], "low": res["low"],
                          "high": res["high"], "ratio": res["ratio"], "ratio_low": res["ratio_low"],
                          "ratio_high": res["ratio_high"], "p_value": res["p_value"], "trios": res["trios"]}])
    facts = {k: res[k] for k in ("score", "low", "high", "ratio", "ratio_low", "ratio_high", "p_value", "null_mean",
                                 "permutations", "granularity_score", "interval", "resamples", "trios", "families",
                                 "passages")}
    facts.update(
        closer=int((res["per_trio"] == 1.0).sum()), farther=int((res["per_trio"] == 0.0).sum()),
        views=len(names), robust=all(v["p_value"] < 0.05 for v in per_view),
        holds=res["p_value"] < 0.05 and res["low"] > res["null_mean"])
    return {"trios": pd.DataFrame(rows), "test": test, "views": pd.DataFrame(per_view), "facts": facts}


def sister_verdicts(facts: dict) -> list[dict]:
    """The verdict row of the claim 'sisters' (ours) from :func:`sister_results` facts."""
    from babel_lib.core.claims import decide, row

    f = facts
    it = stats.interval_text
    result = (f"sister languages are closer than their nearest cousin in {it(f['score'], f['low'], f['high'])} of the "
              f"comparisons (0.5 when sisterhood does not matter; p = {f['p_value']:.4f}); the sisters' distance is "
              f"{it(f['ratio'], f['ratio_low'], f['ratio_high'])} times the cousins'")
    evidence = (f"{f['trios']} trios of {f['families']} families, {f['passages']} passages; interval: {f['interval']} "
                f"({f['resamples']:,} resamples); {f['permutations']:,} relabellings of the sisters within each trio; "
                + ("holds in every view (partition seeds, neurons)" if f["robust"] else "does not hold in every view")
                + f"; tokenisation alone (|tokens per character| differences) picks the sisters in "
                  f"{f['granularity_score']:.2f} of the comparisons")
    return [row("sisters", result, evidence, decide([f["holds"]], robust=f["robust"]))]


def sister_text(f: dict) -> str:
    """The sister section's findings (Markdown) from :func:`sister_results` facts."""
    it = stats.interval_text
    if f["holds"]:
        reading = "Sisters are closer than cousins beyond the relabelling null"
    elif f["ratio_high"] < 1:
        reading = ("Not significant, though pointing the tree's way: weak evidence that the profiles follow the last "
                   "split of the tree")
    else:
        reading = "The test cannot tell sisters from cousins: no evidence here that the profiles follow the last split"
    gran = f["granularity_score"]
    token = ("at least the profiles' score: tokenisation alone would pick the sisters as often" if gran >= f["score"]
             else "below the profiles' score" + (", though inside its interval" if gran >= f["low"] else ""))
    below = (", an interval below 1: the sisters are closer on average, though the share of comparisons is not "
             "significant" if f["ratio_high"] < 1 and not f["holds"] else "")
    return "\n".join([
        "",
        f"- **{reading}.** In {f['trios']} trios of {f['families']} families, a cousin pair is farther apart than the "
        f"sister pair in {it(f['score'], f['low'], f['high'])} of the comparisons, against {f['null_mean']:.3f} when "
        f"which two are sisters is random (p = {f['p_value']:.4f}, {f['permutations']:,} relabellings); the sisters "
        f"are closer than both cousin pairs in {f['closer']} trios and farther than both in {f['farther']}.",
        f"- **How much closer.** The sisters' distance is {it(f['ratio'], f['ratio_low'], f['ratio_high'])} times the "
        f"cousins' mean distance (geometric mean over trios; {f['interval']}){below}.",
        f"- **Tokenisation.** The same score on differences of tokens per character is {gran:.2f}, {token}.",
        ""])

# ---------------------------------------------------------------------------- chapter 5's charts, tables and prose
#: The chapter's tables: ``plots.table(df, name, **TABLES[name])``.
TABLES: dict[str, dict] = {
    "selection": {"columns": {"group": "Group of relatives", "family": "Family", "languages": "Languages",
                              "texts": "Texts", "names": "Names", "scripts": "Scripts"},
                  "caption": "The languages by group of relatives (a family, or a branch of a large family)"},
    "text": pipeline.TEXT_TABLE,
    "pair_classes": {"columns": {"pairs_class": "Pairs", "pairs": "Number", "mean_distance": "Mean distance",
                                 "low": "Low", "high": "High", "floor": "Noise floor"},
                     "formats": {"mean_distance": "{:.4f}", "low": "{:.4f}", "high": "{:.4f}", "floor": "{:.4f}"},
                     "caption": "Mean profile distance by family and script relation (95% interval)"},
    "family_tests": {"columns": {"name": "Test", "measure": "Measure", "statistic": "Value",
                                 "null_mean": "Under the null", "low": "Low", "high": "High", "p_value": "p",
                                 "p_holm": "p (Holm)", "n": "Languages"},
                     "formats": {"statistic": "{:+.3f}", "null_mean": "{:+.3f}", "low": "{:+.3f}", "high": "{:+.3f}",
                                 "p_value": "{:.4f}", "p_holm": "{:.4f}"},
                     "caption": "Family, tree and script tests (9,999 permutations each)"},
    "sister_trios": {"columns": {"family": "Family", "script": "Script", "sisters": "Sisters", "cousin": "Nearest cousin",
                                 "sister_distance": "Sister distance", "cousin_distance": "Cousin distance (mean)",
                                 "ratio": "Ratio", "score": "Cousin pairs farther"},
                     "formats": {"sister_distance": "{:.4f}", "cousin_distance": "{:.4f}", "ratio": "{:.2f}",
                                 "score": "{:.1f}"},
                     "caption": "Sister trios: two languages under one Glottolog parent clade and their nearest cousin"},
    "sister_test": {"columns": {"name": "Test", "measure": "Measure", "statistic": "Value", "null_mean": "Under the null",
                                "low": "Low", "high": "High", "ratio": "Distance ratio", "ratio_low": "Ratio low",
                                "ratio_high": "Ratio high", "p_value": "p", "trios": "Trios"},
                    "formats": {"statistic": "{:.3f}", "null_mean": "{:.3f}", "low": "{:.3f}", "high": "{:.3f}",
                                "ratio": "{:.3f}", "ratio_low": "{:.3f}", "ratio_high": "{:.3f}", "p_value": "{:.4f}"},
                    "caption": "Sisters against their nearest cousin (families and passages resampled)"},
    "robustness": {"columns": {"view": "View", "auc": "Family AUC", "auc_p": "p (family)", "tree_r": "Tree partial r",
                               "tree_p": "p (tree)", "script_r": "Script partial r", "script_p": "p (script)",
                               "granularity_r": "Granularity partial r", "granularity_p": "p (granularity)",
                               "twins_closer": "Texts nearer their own language", "twins": "Texts compared",
                               "distance_over_floor": "Mean distance / floor"},
                   "formats": {"auc": "{:.3f}", "auc_p": "{:.4f}", "tree_r": "{:+.3f}", "tree_p": "{:.4f}",
                               "script_r": "{:+.3f}", "script_p": "{:.4f}", "granularity_r": "{:+.3f}",
                               "granularity_p": "{:.4f}", "distance_over_floor": "{:.1f}"},
                   "caption": "The headline tests in every view"},
}

#: The dendrogram's family colours, in the order of ``family_colours``; the other families are grey.
FAMILY_PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#b279a2", "#ff9da6", "#9d755d", "#eeca3b",
                  "#17becf", "#bcbd22", "#1f1f1f"]
OTHER_FAMILIES = "other families"


def distance_matrix_chart(matrix: pd.DataFrame, leaves: pd.DataFrame) -> alt.Chart:
    """The distance between every two languages as coloured cells, in the dendrogram's leaf order.
    ``matrix``: name_a, name_b, distance (the diagonal: noise floors); ``leaves``: name, in leaf order."""
    names = list(leaves["name"])
    side = int(min(580, max(160, 4.8 * len(names))))
    return alt.Chart(matrix).mark_rect().encode(
        x=alt.X("name_b:N", sort=names, axis=None, title="the same languages, same order"),
        y=alt.Y("name_a:N", sort=names, title=None,
                axis=alt.Axis(labelFontSize=max(4, min(11, side // len(names))), labelLimit=110)),
        color=alt.Color("distance:Q", scale=alt.Scale(scheme="viridis", reverse=True), title="Hellinger distance",
                        legend=alt.Legend(orient="bottom", gradientLength=300)),
    ).properties(width=side, height=side, title="Profile distance between languages (diagonal: noise floor)")


def dendrogram_chart(segments: pd.DataFrame, leaves: pd.DataFrame, family_colours: list,
                     floor: float) -> alt.LayerChart:
    """The dendrogram drawn from its segments, leaves named and coloured by family, the noise floor as a red dashed
    rule. ``segments``: x, x2, y, y2; ``leaves``: name, family, script, colour (a family of ``family_colours``
    or :data:`OTHER_FAMILIES`), y."""
    n = len(leaves)
    domain = list(family_colours) + [OTHER_FAMILIES]
    palette = FAMILY_PALETTE[:len(domain) - 1] + ["#9e9e9e"]
    colour = alt.Color("colour:N", scale=alt.Scale(domain=domain, range=palette), title="Family",
                       legend=alt.Legend(orient="bottom", columns=4))
    y = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[-0.5, n - 0.5], reverse=True))
    rules = alt.Chart(segments).mark_rule(color="#666").encode(
        x=alt.X("x:Q", title="Hellinger distance at which clusters join"), x2="x2:Q", y=y, y2="y2:Q")
    text = alt.Chart(leaves).mark_text(align="right", dx=-4, fontSize=8).encode(
        x=alt.datum(0), y=y, text="name:N", color=colour, tooltip=["name:N", "family:N", "script:N"])
    floor_rule = alt.Chart(pd.DataFrame({"floor": [floor]})).mark_rule(color="#d62728", strokeDash=[4, 3]).encode(
        x="floor:Q")
    return (rules + text + floor_rule).properties(width=470, height=max(160, 9 * n),
                                                  title="Languages clustered by their activation profiles")


def distance_by_clades_chart(clades: pd.DataFrame, floor: float) -> alt.LayerChart:
    """Mean distance (95% interval) by shared clades, same and different script side by side, the noise floor
    dashed. ``clades``: shared_clades, script, pairs, mean_distance, low, high."""
    tips = ["shared_clades:N", "pairs:Q"] + [alt.Tooltip(f"{c}:Q", format=".4f")
                                             for c in ("mean_distance", "low", "high")]
    return plots.interval_chart(clades, "mean_distance", "shared_clades:N", horizontal=False, color="script",
                                offset=True, color_title="The two languages are written in", reference=floor,
                                category_title="Glottolog clades shared", value_title="Mean Hellinger distance",
                                width=540, height=280, size=70, tooltip=tips,
                                title="Mean distance by shared clades (red dashed: noise floor)")


def two_scripts_chart(twins_long: pd.DataFrame) -> alt.LayerChart:
    """Per text of a language written in two scripts: its distance to the same language's other text and to the
    nearest other language of its script (95% intervals), its noise floor as a red tick.
    ``twins_long``: name, comparison, partner, distance, low, high, floor."""
    tips = ["name:N", "partner:N"] + [alt.Tooltip(f"{c}:Q", format=".4f") for c in ("distance", "low", "high")]
    return plots.interval_chart(twins_long, "distance", "name", color="comparison", color_title="Distance to",
                                reference="floor", value_title="Hellinger distance", zero=True,
                                sort=alt.EncodingSortField("distance", op="min"), tooltip=tips, width=480,
                                height=max(80, 16 * twins_long["name"].nunique()),
                                title="Same language in another script vs nearest language in the same script")


def family_by_layer_chart(layers: pd.DataFrame) -> alt.VConcatChart:
    """The family AUC within script strata (blue) over the tree's partial r (green) per layer, 95% bands, points
    filled where significant after Benjamini-Hochberg. ``layers``: layer, auc, auc_low, auc_high, auc_q, tree_r,
    tree_low, tree_high, tree_q (:func:`layer_family_tests`)."""
    auc = plots.layer_bands(layers, "auc", low="auc_low", high="auc_high", significant="auc_q", colour="#4c78a8",
                            y_title="Same-family pair closer (AUC)", reference=0.5, zero=False, width=560,
                            height=170, digits=3, title="Family effect within script strata")
    tree = plots.layer_bands(layers, "tree_r", low="tree_low", high="tree_high", significant="tree_q",
                             colour="#54a24b", y_title="Partial r, tree distance", reference=0.0, zero=True,
                             width=560, height=170, digits=3, title="Tree distance beyond script and tokenisation")
    return alt.vconcat(auc, tree)


def show_family_by_layer(layers: pd.DataFrame | None, name: str) -> None:
    """Show :func:`family_by_layer_chart` as ``name`` with its table, where the layers were tested (else nothing)."""
    if layers is not None:
        plots.show(family_by_layer_chart(layers), name, table=layers)


def findings_text(f: dict) -> str:
    """The chapter's findings (Markdown) from :func:`family_results` facts; a short note where the language set
    holds no same-family pair to test."""
    if not f["testable"]:
        return "\n".join([
            "",
            f"- **Not testable on this language set.** {f['family_languages']} languages (one text each) leave no "
            "same-family pair",
            "  to compare with a cross-family pair in the same kind of script. Run the chapter on `families:120` "
            "(the default).",
            f"- The mean distance between two languages is {f['mean_distance']:.4f}, against a noise floor of "
            f"{f['floor']:.4f}.",
            ""])
    it, pt = stats.interval_text, stats.p_text
    cls, grad = f["classes"], f["clade_gradient"]
    survive = [name for name, ok in (("the family effect within script strata", f["robust_auc"]),
                                     ("the tree beyond script and tokenisation", f["robust_tree"]),
                                     ("the script beyond the tree and tokenisation", f["robust_script"]),
                                     ("tokenisation granularity beyond tree and script", f["robust_granularity"]))
               if ok]
    if not f["auc_holds"]:
        size = "This is not significant after correction: weak evidence for a family effect."
    else:
        size = ("The effect is small: many cross-family pairs are closer than a same-family pair." if f["auc"][0] < 0.65
                else "The effect is moderate." if f["auc"][0] < 0.75 else "The effect is large.")
    same_script = ("" if f["auc_same_script_holds"] else
                   "Among pairs written in one script alone the effect is not significant after correction (weak "
                   "evidence): the family signal comes mostly from pairs across scripts, where a same-family pair "
                   "written in two scripts is compared with every cross-family pair written in two different scripts.")
    farther = ": " + "; ".join(f["twins_farther_names"]) if f["twins_farther_names"] else ""
    if f["twins_farther_same_group"]:
        twins_reading = (f"For {', '.join(f['twins_same_group_names'])} the nearer text belongs to the same deepest "
                         "Glottolog clade (another name for the same language), so these do not separate script from "
                         "language; for the others the script outweighs the language.")
    else:
        twins_reading = "For these, the script outweighs the language." if f["twins_farther_beyond_noise"] else ""
    return "\n".join([
        "",
        f"- **The languages.** {f['languages']} texts; the family tests use one text per language: "
        f"{f['family_languages']}",
        f"  languages of {f['families']} families ({f['families_3plus']} with three or more languages) in "
        f"{f['scripts']} scripts.",
        f"  {f['same_family_pairs']} of {f['pairs']:,} pairs ({f['same_family_share']:.1%}) share a family:",
        f"  {f['same_family_same_script']} in the same script, {f['same_family_different_scripts']} across scripts.",
        f"- **Distances are far above noise.** The mean distance between two languages is {f['mean_distance']:.4f}, "
        "about",
        f"  {f['mean_distance'] / f['floor']:.0f} times the noise floor ({f['floor']:.4f}); resampling passages "
        "shifts a distance",
        f"  by {f['inflation']:+.4f} (median over pairs), the shift the centred intervals remove.",
        "- **Family within script.** A same-family pair is closer than a cross-family pair with probability",
        f"  {it(*f['auc'])} (families and passages resampled), against {f['auc_null']:.3f} when families mean "
        "nothing",
        f"  ({pt(f['auc_p'], f['auc_p_holm'])}): {it(*f['auc_same_script'])} among pairs",
        f"  in the same script ({pt(f['auc_same_script_p'], f['auc_same_script_p_holm'])}) and",
        f"  {it(*f['auc_different_scripts'])} among pairs in different scripts",
        f"  ({pt(f['auc_different_scripts_p'], f['auc_different_scripts_p_holm'])}).",
        f"  {size}",
        f"  {same_script}",
        f"  Mean distances: same family and script {it(*cls['same family, same script'], digits=4)}, same script "
        "only",
        f"  {it(*cls['different families, same script'], digits=4)}, same family only",
        f"  {it(*cls['same family, different scripts'], digits=4)}, neither",
        f"  {it(*cls['different families, different scripts'], digits=4)}.",
        "- **The tree, beyond script and tokenisation.** Tree distance (depth of the deepest shared clade) against "
        "profile",
        f"  distance: Mantel r = {it(*f['mantel_tree'], digits=2)} "
        f"({pt(f['mantel_tree_p'], f['mantel_tree_p_holm'])}); holding",
        f"  script and granularity fixed, partial r = {it(*f['partial_tree'], digits=2)}",
        f"  ({pt(f['partial_tree_p'], f['partial_tree_p_holm'])}); with the edge count instead (secondary),",
        f"  {it(*f['partial_tree_edges'], digits=2)}. Script, holding tree and granularity fixed: partial r =",
        f"  {it(*f['partial_script'], digits=2)} ({pt(f['partial_script_p'], f['partial_script_p_holm'])}); "
        "granularity,",
        f"  holding tree and script fixed: {it(*f['partial_granularity'], digits=2)}",
        f"  ({pt(f['partial_granularity_p'], f['partial_granularity_p_holm'])}). The larger of the two partial effects "
        f"is {'the script' if f['tree_vs_script'] == 'script' else 'the tree'}'s.",
        f"  Within one script, the mean distance goes from {grad[0][1]:.4f} for different families to "
        f"{grad[-1][1]:.4f}",
        f"  [{grad[-1][2]:.4f}, {grad[-1][3]:.4f}] for pairs sharing {grad[-1][0]} clades ({grad[-1][4]} pairs).",
        "- **The dendrogram.** Cut into as many clusters as there are families, it matches the families with "
        "adjusted Rand",
        f"  index {it(*f['clusters'])} ({pt(f['clusters_p'], f['clusters_p_holm'])}); its cophenetic correlation "
        "with the",
        f"  distances is {f['cophenetic']:.2f}.",
        f"- **One language, two scripts.** Of {f['twins']} texts of {f['twin_pairs']} languages written in two "
        f"scripts, {f['twins_closer']}",
        "  are closer to their own language in the other script than to the nearest other language of their own "
        "script",
        f"  ({f['twins_closer_beyond_noise']} beyond sampling noise); {f['twins_farther_beyond_noise']} are farther "
        f"beyond noise{farther}.",
        f"  {twins_reading}",
        "  The two texts of a language may be separate translations rather than transliterations, so part of a twin "
        "distance can be the translation.",
        f"- **Layer by layer.** The family effect is significant (Benjamini-Hochberg) in "
        f"{f.get('layers_auc_significant', 0)} of {f['layers']}",
        f"  layers, the tree beyond script and tokenisation in {f.get('layers_tree_significant', 0)}.",
        f"- **Robustness.** Across the {f['views']} views and the Jensen-Shannon distance the family AUC ranges over",
        f"  {f['auc_range'][0]:.3f}-{f['auc_range'][1]:.3f}, the tree's partial r over {f['tree_range'][0]:+.3f} to "
        f"{f['tree_range'][1]:+.3f},",
        f"  the script's over {f['script_range'][0]:+.3f} to {f['script_range'][1]:+.3f}. Significant in every view:",
        f"  {', '.join(survive) if survive else 'none of the findings'}.",
        f"- **Strength of evidence.** {f['passages']} passages of one formal text and one small model; the intervals "
        "of the",
        f"  tests resample families and passages ({f['interval_method']}), so they show how far another sample of "
        "languages",
        "  could move each statistic. The languages are not independent samples of their families: most",
        "  families are represented by one to three languages, and Indo-European and Atlantic-Congo supply most",
        "  same-family pairs.",
        ""])
