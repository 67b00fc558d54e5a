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

import numpy as np
import pandas as pd

from babel_lib.data import corpus
from babel_lib.data.corpus import language_labels
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
    (:mod:`babel_lib.verdicts`) from :func:`family_results` facts."""
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
