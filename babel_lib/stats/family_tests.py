"""The family tests (chapters 5 and 6): which pairs share a family or a script, the batched statistics
(same-family AUC within script strata, residual correlations with covariates, mean distances by pair
class and by shared clades), permutation tests of many distance matrices against one set of
permutations (:func:`mantel_many`, :func:`stratified_many`), flat clusters against families, and the
contrast of languages written in two scripts. See :mod:`babel_lib.chapters.families` for the choices."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from babel_lib.core.hooks import torch_threads
from babel_lib.data import corpus, genealogy
from babel_lib.stats import analysis, inference as stats
from babel_lib.stats.distances import (bootstrap_profiles, centred_interval, layer_distances,  # noqa: F401
                                       mean_distance, profile_distances, split_half_floor, upper, weighted_profile)

#: Family values that relate no languages: each such language is a family of its own.
NO_FAMILY = ("Unclassified", "Artificial Language")
#: The two classes of pairs in the stratified family test, and the weighted overall value.
AUC_CLASSES = ("same script", "different scripts", "overall")
#: Pair classes of :func:`class_means`, in order.
PAIR_CLASSES = ("same family, same script", "same family, different scripts",
                "different families, same script", "different families, different scripts")
#: Bins of shared Glottolog clades (lower bounds; the last is open): 0 = different families.
CLADE_BINS = (0, 1, 2, 3, 4, 5)


# ---------------------------------------------------------------------------- the languages
def family_labels(keys) -> np.ndarray:
    """Top-level Glottolog family of each language (object [n]); an unclassified or artificial
    language gets its own key, so it shares a family with no other language."""
    table = corpus.language_table().loc[list(keys)]
    fam = table["family"].to_numpy(dtype=object)
    return np.where(np.isin(fam, NO_FAMILY), np.asarray(list(keys), dtype=object), fam)


def twin_pairs(keys, corpus_name: str = "udhr") -> list[tuple[str, str]]:
    """Languages present in ``keys`` in two scripts: (first text, other text) pairs from
    :func:`babel_lib.data.corpus.script_pairs` (one ISO code in two scripts, and Hindi/Urdu), in that
    order; a code with three scripts gives two pairs with its first text."""
    keys = list(keys)
    out = []
    for group in corpus.script_pairs(corpus_name):
        members = [k for k in group if k in keys]
        out.extend((members[0], m) for m in members[1:])
    return out


def one_text_per_language(keys, corpus_name: str = "udhr") -> list[str]:
    """``keys`` without the second texts of one language: the other members of
    :func:`twin_pairs`, and any later text of an ISO code already present (order kept)."""
    keys = list(keys)
    drop = {b for _, b in twin_pairs(keys, corpus_name)}
    iso = corpus.language_table().loc[keys, "iso639_3"]
    seen, out = set(), []
    for k in keys:
        if k in drop or iso[k] in seen:
            continue
        seen.add(iso[k])
        out.append(k)
    return out


@dataclass
class Design:
    """What is known about each pair of languages, before any activation is counted.

    languages [n]; family, script: labels [n]; same_family, same_script: bool [n, n]; shared: int
    [n, n] Glottolog clades shared (0 = different families); tree: depth-measure tree distance;
    tree_edges: edge-count tree distance; script_difference: 1.0 where the scripts differ."""

    languages: list
    family: np.ndarray
    script: np.ndarray
    same_family: np.ndarray
    same_script: np.ndarray
    shared: np.ndarray
    tree: np.ndarray
    tree_edges: np.ndarray

    @property
    def script_difference(self) -> np.ndarray:
        return (~self.same_script).astype(float)


def design(keys) -> Design:
    """The :class:`Design` of languages ``keys`` (family labels by :func:`family_labels`; tree
    distances from Glottolog, see :func:`babel_lib.data.genealogy.tree_distance`)."""
    keys = list(keys)
    fam = family_labels(keys)
    script = corpus.language_table().loc[keys, "script"].to_numpy(dtype=object)
    own = genealogy.shared_clades(keys)
    same_family = stats.same_label(fam)
    shared = np.where(same_family, own, 0)  # an unclassified or artificial language shares nothing
    np.fill_diagonal(shared, own.diagonal())
    return Design(keys, fam, script, same_family, stats.same_label(script), shared,
                  genealogy.tree_distance(keys, measure="depth").astype(float),
                  genealogy.tree_distance(keys, measure="edges").astype(float))


def granularity_difference(tokens_per_character: np.ndarray) -> np.ndarray:
    """|tokens per character of i - of j|: [..., n] -> [..., n, n] (the tokenisation covariate)."""
    t = np.asarray(tokens_per_character, dtype=float)
    return np.abs(t[..., :, None] - t[..., None, :])


# ---------------------------------------------------------------------------- batched statistics
def family_auc(D: np.ndarray, same_family: np.ndarray, same_script: np.ndarray) -> np.ndarray:
    """Probability that a same-family pair is closer than a different-family pair (ties half),
    among pairs written in the same script, among pairs in different scripts, and overall (the
    two weighted by their numbers of compared couples): D [..., n, n] -> [..., 3] in the order of
    :data:`AUC_CLASSES`; NaN where a class lacks same- or different-family pairs. The same values
    as :func:`babel_lib.stats.stratified_permutation_test` with families as labels and scripts as
    strata, for a batch of distance matrices at once (average ranks by a batched sort)."""
    return _family_auc(upper(np.asarray(D, dtype=float)), upper(np.asarray(same_family, dtype=bool)),
                       upper(np.asarray(same_script, dtype=bool)))


def _family_auc(d: np.ndarray, sf: np.ndarray, ss: np.ndarray) -> np.ndarray:
    """:func:`family_auc` on pair vectors: distances [..., m], same family and same script [m]."""
    out, weights = [], []
    for mask in (ss, ~ss):
        s = sf[mask]
        ns, nd = int(s.sum()), int((~s).sum())
        if ns == 0 or nd == 0:
            out.append(np.full(d.shape[:-1], np.nan))
            weights.append(0.0)
            continue
        dc = d[..., mask].reshape(-1, int(mask.sum()))
        order = np.argsort(dc, axis=-1)
        rank_sum = (np.arange(1, dc.shape[1] + 1, dtype=np.float64)[None, :] * s[order]).sum(axis=-1)
        srt = np.take_along_axis(dc, order, axis=-1)
        ties = (np.diff(srt, axis=-1) == 0).any(axis=-1)
        if ties.any():  # average ranks where distances tie
            rank_sum[ties] = rankdata(dc[ties], axis=-1)[:, s].sum(axis=-1)
        rank_sum = rank_sum.reshape(d.shape[:-1])
        out.append(1.0 - (rank_sum - ns * (ns + 1) / 2.0) / (ns * nd))
        weights.append(float(ns * nd))
    w = np.asarray(weights)
    overall = (np.nan_to_num(out[0]) * w[0] + np.nan_to_num(out[1]) * w[1]) / w.sum() if w.sum() else \
        np.full(d.shape[:-1], np.nan)
    return np.stack(out + [overall], axis=-1)


def residual_correlation(x: np.ndarray, y: np.ndarray, covariates=()) -> np.ndarray:
    """Pearson correlation of the pair vectors of x and y after least squares on the covariates'
    pair vectors (with an intercept): the statistic of
    :func:`babel_lib.stats.partial_mantel_covariates`, for batches. x [..., n, n] (e.g. resampled
    distances, per layer); y and each covariate [n, n], or with leading axes equal to the first
    leading axes of x (a covariate that changes with the resample, e.g. granularity [B, n, n]
    against per-layer distances [B, L, n, n]). Returns x's leading shape; NaN where x or y is fully
    explained by the covariates or fewer than (covariates + 3) pairs exist; a covariate that adds
    nothing (constant, or a combination of the others) is ignored.

    Computed without forming residual matrices: with U an orthonormal basis of [1, covariates]
    (per covariate batch), e_y = y - U U'y, and r = x.e_y / sqrt((x.x - |U'x|^2) e_y.e_y)."""
    return _residual_correlation(upper(np.asarray(x, dtype=float)), upper(np.asarray(y, dtype=float)),
                                 [upper(np.asarray(c, dtype=float)) for c in covariates])


def _residual_correlation(xv: np.ndarray, yv: np.ndarray, cols) -> np.ndarray:
    """:func:`residual_correlation` on pair vectors [..., m] (upper triangles)."""
    import torch

    xv = np.asarray(xv, dtype=float)
    xb, m = xv.shape[:-1], xv.shape[-1]
    if m < len(cols) + 3:
        return np.full(xb, np.nan)
    cb = np.broadcast_shapes(np.shape(yv)[:-1], *[np.shape(c)[:-1] for c in cols])
    cb = np.broadcast_shapes(cb, xb[:len(cb)]) if len(cb) <= len(xb) else cb
    if cb != xb[:len(cb)]:
        raise ValueError(f"the leading axes of y and the covariates {cb} must be the first leading axes of x {xb}")
    rest = int(np.prod(xb[len(cb):], dtype=np.int64))
    Z = np.stack(np.broadcast_arrays(*([np.ones(m)] + list(cols)), np.zeros(cb + (m,)))[:-1], axis=-1)
    Z = torch.from_numpy(np.ascontiguousarray(Z))  # [*cb, m, k]
    lam, vec = torch.linalg.eigh(Z.transpose(-1, -2) @ Z)  # orthonormal basis U = Z V / sqrt(lambda)
    keep = lam > 1e-10 * lam[..., -1:].clamp_min(1e-300)
    U = Z @ (vec * torch.where(keep, lam.clamp_min(1e-300).rsqrt(), torch.zeros_like(lam)).unsqueeze(-2))
    yt = torch.from_numpy(np.broadcast_to(yv, cb + (m,)).copy())
    ey = yt - (U @ (U.transpose(-1, -2) @ yt.unsqueeze(-1))).squeeze(-1)
    X = torch.from_numpy(np.ascontiguousarray(xv)).reshape(cb + (rest, m))
    xe = (X @ ey.unsqueeze(-1))[..., 0]  # [*cb, rest]
    xu = X @ U  # [*cb, rest, r]
    xx = (X * X).sum(-1)
    ssx = xx - (xu * xu).sum(-1)
    ssy = (ey * ey).sum(-1).unsqueeze(-1)
    yy = (yt * yt).sum(-1).unsqueeze(-1)
    ok = (ssx > 1e-10 * xx.clamp_min(1e-300)) & (ssy > 1e-10 * yy.clamp_min(1e-300))
    r = xe / (ssx.clamp_min(1e-300) * ssy.clamp_min(1e-300)).sqrt()
    return torch.where(ok, r.clamp(-1, 1), torch.full_like(r, float("nan"))).reshape(xb).numpy()


def class_means(D: np.ndarray, same_family: np.ndarray, same_script: np.ndarray) -> np.ndarray:
    """Mean distance of the pairs in each class of :data:`PAIR_CLASSES`: [..., n, n] -> [..., 4]
    (NaN for an empty class)."""
    d = upper(D)
    sf = upper(np.asarray(same_family, dtype=bool))
    ss = upper(np.asarray(same_script, dtype=bool))
    out = []
    for f in (True, False):
        for s in (True, False):
            m = (sf == f) & (ss == s)
            out.append(d[..., m].mean(axis=-1) if m.any() else np.full(d.shape[:-1], np.nan))
    return np.stack(out, axis=-1)


def clade_bin(shared: np.ndarray, bins=CLADE_BINS) -> np.ndarray:
    """Index of the bin of :data:`CLADE_BINS` holding each number of shared clades."""
    return np.searchsorted(np.asarray(bins), np.asarray(shared), side="right") - 1


def clade_means(D: np.ndarray, shared: np.ndarray, same_script: np.ndarray, bins=CLADE_BINS) -> np.ndarray:
    """Mean distance by shared-clade bin and script relation: [..., n, n] -> [..., len(bins), 2]
    (column 0: same script, 1: different scripts); NaN for an empty cell."""
    d = upper(D)
    b = clade_bin(upper(shared), bins)
    ss = upper(np.asarray(same_script, dtype=bool))
    out = np.full(d.shape[:-1] + (len(bins), 2), np.nan)
    for i in range(len(bins)):
        for j, s in enumerate((True, False)):
            m = (b == i) & (ss == s)
            if m.any():
                out[..., i, j] = d[..., m].mean(axis=-1)
    return out


def clade_counts(shared: np.ndarray, same_script: np.ndarray, bins=CLADE_BINS) -> np.ndarray:
    """Number of pairs in each cell of :func:`clade_means`: int [len(bins), 2]."""
    b = clade_bin(upper(shared), bins)
    ss = upper(np.asarray(same_script, dtype=bool))
    return np.array([[int(((b == i) & (ss == s)).sum()) for s in (True, False)] for i in range(len(bins))])


# ---------------------------------------------------------------------------- permutation tests, many matrices at once
def mantel_many(X: np.ndarray, y: np.ndarray, covariates=(), permutations: int = stats.HEADLINE_PERMUTATIONS,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Partial Mantel tests of several distance matrices X [V, n, n] (views, layers, distances)
    against one design matrix y [n, n] (e.g. tree distance), holding the covariates [n, n] fixed:
    (r [V], one-sided p [V]). r is :func:`residual_correlation`; the null permutes the languages of
    y's residual matrix on the covariates (Smouse, Long and Sokal 1986), the same permutations for
    every matrix, so the whole batch costs one pass. Each result equals
    ``stats.partial_mantel_covariates(y, X[v], covariates, permutations, seed, permute='residuals')``
    (and, without covariates, ``stats.mantel(y, X[v], permutations, seed)``). NaN where undefined."""
    r, p = _mantel_designs(X, [(y, covariates)], permutations, seed)
    return r[0], p[0]


def _mantel_designs(X: np.ndarray, designs, permutations: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`mantel_many` for several (y, covariates) designs in one pass over the permutations
    (the permuted pair indices are computed once for all): (r [len(designs), V], p [same])."""
    X = np.asarray(X, dtype=float)
    n, V = X.shape[-1], X.shape[0]
    iu = np.triu_indices(n, 1)
    m = len(iu[0])
    r_all = np.full((len(designs), V), np.nan)
    p_all = np.full((len(designs), V), np.nan)
    if n < 3:
        return r_all, p_all
    xv = upper(X)
    scale_x = np.sqrt((xv ** 2).sum(axis=1))
    live = []  # (design index, flat residual matrix of y, standardised x residuals, |e_y|, r, ok)
    for d, (y, covariates) in enumerate(designs):
        covs = [upper(np.asarray(c, dtype=float)) for c in covariates]
        if m < len(covs) + 3:
            continue
        U = stats.orthonormal_basis(np.column_stack([np.ones(m)] + covs))
        yv = np.asarray(y, dtype=float)[iu]
        ey = yv - (yv @ U) @ U.T
        ex = xv - (xv @ U) @ U.T
        ny, nx = np.sqrt(ey @ ey), np.sqrt((ex ** 2).sum(axis=1))
        if not ny > 1e-10 * max(np.sqrt(yv @ yv), 1e-300):
            continue
        ok = nx > 1e-10 * np.maximum(scale_x, 1e-300)
        xs = ex / np.where(ok, nx, 1.0)[:, None]
        Ey = np.zeros((n, n))
        Ey[iu] = ey
        live.append((d, (Ey + Ey.T).ravel(), xs, ny, xs @ ey / ny, ok))
    if not live:
        return r_all, p_all
    perms = stats.permutation_rows(n, permutations, seed)
    hits = [np.zeros(V) for _ in live]
    chunk = max(1, 2_000_000 // m)
    for s in range(0, len(perms), chunk):
        P = perms[s:s + chunk]
        idx = P[:, iu[0]] * n + P[:, iu[1]]  # [c, m]: the permuted pairs, shared by every design
        for h, (_, flat, xs, ny, r, _) in zip(hits, live):
            h += ((np.take(flat, idx) @ xs.T) / ny >= r[None, :] - 1e-12).sum(axis=0)
    for h, (d, _, _, _, r, ok) in zip(hits, live):
        r_all[d] = np.where(ok, r, np.nan)
        p_all[d] = np.where(ok, (1 + h) / (1 + permutations), np.nan)
    return r_all, p_all


def stratified_many(X: np.ndarray, labels, strata, permutations: int = stats.HEADLINE_PERMUTATIONS,
                    seed: int = 0, null_mean: bool = False):
    """:func:`babel_lib.stats.stratified_permutation_test` for several distance matrices X [V, n, n]
    at once (the same within-strata permutations of the labels for every matrix): (auc [V, 3],
    p [V, 3]) in the order of :data:`AUC_CLASSES` (same stratum, different strata, overall). Each
    row equals the library test of X[v] with the same seed. With ``null_mean``, also the mean AUC
    under the permutations [V, 3]: what the AUC is when families mean nothing but the labels keep
    their sizes within each script (not 0.5 in general: the effect is the AUC minus this)."""
    X = np.asarray(X, dtype=float)
    V, n = X.shape[0], X.shape[-1]
    labels = np.asarray(labels)
    strata = np.asarray(strata)
    nan = np.full((V, 3), np.nan)
    if n < 3:
        return nan, nan.copy()
    iu = np.triu_indices(n, 1)
    d = upper(X)  # [V, m]
    _, lab = np.unique(labels, return_inverse=True)
    same_stratum = stats.same_label(strata)[iu]
    masks = np.stack([same_stratum, ~same_stratum]).astype(np.float64)  # [2, m]
    ranks = np.zeros((V, 2, d.shape[1]))
    for c in range(2):
        if masks[c].any():
            ranks[:, c, masks[c].astype(bool)] = rankdata(d[:, masks[c].astype(bool)], axis=1)
    n_all = masks.sum(axis=1)
    flat_ranks = ranks.reshape(V * 2, -1).T  # [m, V * 2]

    def stats_of(rows):  # label rows [k, n] -> auc [k, V, 3]
        same = (rows[:, iu[0]] == rows[:, iu[1]]).astype(np.float64)  # [k, m]
        n_same = same @ masks.T  # [k, 2]
        n_diff = n_all[None] - n_same
        rank_sum = (same @ flat_ranks).reshape(len(rows), V, 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            u = rank_sum - (n_same * (n_same + 1) / 2.0)[:, None, :]
            w = n_same * n_diff
            auc = np.where(w[:, None, :] > 0, 1.0 - u / np.where(w > 0, w, 1.0)[:, None, :], np.nan)
            wv = np.where(np.isfinite(auc), w[:, None, :], 0.0)
            overall = np.where(wv.sum(-1) > 0, (np.nan_to_num(auc) * wv).sum(-1) / wv.sum(-1), np.nan)
        return np.concatenate([auc, overall[..., None]], axis=-1)

    auc = stats_of(lab[None, :])[0]
    hits = np.zeros((V, 3))
    total, count = np.zeros((V, 3)), np.zeros((V, 3))
    if permutations:
        perms = stats.within_strata_permutations(strata, permutations, seed)
        chunk = max(1, 4_000_000 // max(1, len(iu[0])))
        for s in range(0, permutations, chunk):
            null = stats_of(lab[perms[s:s + chunk]])
            hits += (null >= auc[None] - 1e-12).sum(axis=0)
            total += np.nansum(null, axis=0)
            count += np.isfinite(null).sum(axis=0)
    p = np.where(np.isfinite(auc), (1 + hits) / (1 + permutations), np.nan)
    if null_mean:
        with np.errstate(invalid="ignore", divide="ignore"):
            return auc, p, np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return auc, p


# ---------------------------------------------------------------------------- the family tests
#: The tests of :func:`family_tests`: (id, words, measure).
FAMILY_TESTS = (
    ("auc", "family effect within script strata (AUC, all pairs)", "AUC"),
    ("auc_same_script", "family effect among pairs in the same script (AUC)", "AUC"),
    ("auc_different_scripts", "family effect among pairs in different scripts (AUC)", "AUC"),
    ("mantel_tree", "profile distance vs tree distance (Mantel r)", "r"),
    ("partial_tree", "profile distance vs tree distance | script, granularity", "partial r"),
    ("partial_script", "profile distance vs script | tree distance, granularity", "partial r"),
    ("partial_granularity", "profile distance vs granularity | tree distance, script", "partial r"),
    ("partial_tree_edges", "profile distance vs tree distance in edges | script, granularity (secondary)",
     "partial r"),
)


def _family_statistics(D, dsg: Design, G) -> np.ndarray:
    """The point statistics of FAMILY_TESTS for distance batches D [..., n, n] and granularity
    differences G [n, n] or [..., n, n]: [..., 8]."""
    d = upper(D)
    g = upper(np.asarray(G, dtype=float))
    tree, edges, script = upper(dsg.tree), upper(dsg.tree_edges), upper(dsg.script_difference)
    rc = _residual_correlation
    return np.concatenate([
        _family_auc(d, upper(dsg.same_family), upper(dsg.same_script))[..., [2, 0, 1]],  # FAMILY_TESTS order
        rc(d, tree, [])[..., None],
        rc(d, tree, [script, g])[..., None],
        rc(d, script, [tree, g])[..., None],
        rc(d, g, [tree, script])[..., None],
        rc(d, edges, [script, g])[..., None],
    ], axis=-1)


UNDEFINED_NOTES = {"auc": "no same-family or no cross-family pair to compare here",
              "r": "too few languages, or nothing left once the covariates are held fixed"}


def tests_of(Ds: np.ndarray, dsg: Design, G: np.ndarray, permutations: int = stats.HEADLINE_PERMUTATIONS,
             seed: int = 0, tests=None, null_means: bool = False):
    """The tests of :data:`FAMILY_TESTS` (or the ids in ``tests``) for several distance matrices
    Ds [V, n, n] of the languages of ``dsg`` (views, layers, distances), with granularity
    differences G [n, n]: (statistic [V, 8], p [V, 8], notes [8]); NaN for tests not asked for or
    undefined. AUC tests: :func:`stratified_many` (family labels permuted within script groups);
    Mantel tests: :func:`mantel_many` (the design matrix's residuals permuted over languages). The
    same permutations serve every matrix of the batch. With ``null_means``, a fourth output [V, 8]:
    each test's mean under its permutations (AUC tests: measured, not 0.5; correlations: 0, where
    the permutation null of a correlation is centred)."""
    ids = [t[0] for t in FAMILY_TESTS]
    wanted = ids if tests is None else list(tests)
    V = len(Ds)
    est = np.full((V, len(ids)), np.nan)
    p = np.full((V, len(ids)), np.nan)
    S = dsg.script_difference
    null = np.zeros((V, len(ids)))
    if any(t.startswith("auc") for t in wanted):
        auc, pa, na = stratified_many(Ds, dsg.family, dsg.script, permutations, seed, null_mean=True)
        order = [2, 0, 1]  # FAMILY_TESTS: overall, same script, different scripts
        est[:, :3], p[:, :3], null[:, :3] = auc[:, order], pa[:, order], na[:, order]
    design_tests = {"mantel_tree": (dsg.tree, []), "partial_tree": (dsg.tree, [S, G]),
                    "partial_script": (S, [dsg.tree, G]), "partial_granularity": (G, [dsg.tree, S]),
                    "partial_tree_edges": (dsg.tree_edges, [S, G])}
    asked = [t for t in design_tests if t in wanted]
    if asked:
        r, pv = _mantel_designs(Ds, [design_tests[t] for t in asked], permutations, seed)
        for row, t in enumerate(asked):
            est[:, ids.index(t)], p[:, ids.index(t)] = r[row], pv[row]
    keep = np.isin(ids, wanted)
    est[:, ~keep] = np.nan
    p[:, ~keep] = np.nan
    notes = [("" if np.isfinite(est[:, k]).all() or not keep[k] else UNDEFINED_NOTES["auc" if t.startswith("auc") else "r"])
             for k, t in enumerate(ids)]
    if null_means:
        null[:, ~keep] = np.nan
        return est, p, notes, null
    return est, p, notes


# ---------------------------------------------------------------------------- claims over languages
def _weighted_auc(d: np.ndarray, w: np.ndarray, sf: np.ndarray, ss: np.ndarray) -> np.ndarray:
    """:func:`_family_auc` for one pair vector d [m] with pair weights w [m] (a resample's
    multiplicities): [3] in the order of :data:`AUC_CLASSES`. Ties count half."""
    out, weights = [], []
    for mask in (ss, ~ss):
        dm, wm, s = d[mask], w[mask], sf[mask]
        ws, wd = float(wm[s].sum()), float(wm[~s].sum())
        if ws == 0 or wd == 0:
            out.append(np.nan)
            weights.append(0.0)
            continue
        order = np.argsort(dm, kind="stable")
        ds, wo, so = dm[order], wm[order], s[order]
        diff_w = np.where(so, 0.0, wo)
        # diff-family weight strictly above each position, and tied with it (a group of equal distances)
        _, start, counts = np.unique(ds, return_index=True, return_counts=True)
        group_diff = np.add.reduceat(diff_w, start)
        above = diff_w.sum() - np.cumsum(group_diff)  # diff weight above each group
        per = np.repeat(above + 0.5 * group_diff, counts)
        out.append(float((wo * so * per).sum() / (ws * wd)))
        weights.append(ws * wd)
    w_ = np.asarray(weights)
    overall = float((np.nan_to_num(out[0]) * w_[0] + np.nan_to_num(out[1]) * w_[1]) / w_.sum()) if w_.sum() else np.nan
    return np.array(out + [overall])


def weighted_residual_correlation(x: np.ndarray, y: np.ndarray, cols, w: np.ndarray) -> float:
    """Weighted Pearson correlation of x and y [m] after weighted least squares on the covariates
    (with an intercept), pair weights w [m]: :func:`residual_correlation` for a resample."""
    keep = w > 0
    if keep.sum() < len(cols) + 3:
        return float("nan")
    x, y, w = x[keep], y[keep], w[keep]
    Z = np.column_stack([np.ones(len(x))] + [np.asarray(c, dtype=float)[keep] for c in cols])
    sw = np.sqrt(w)
    Zw = Z * sw[:, None]
    coef_x = np.linalg.lstsq(Zw, x * sw, rcond=None)[0]
    coef_y = np.linalg.lstsq(Zw, y * sw, rcond=None)[0]
    ex, ey = x - Z @ coef_x, y - Z @ coef_y
    den = np.sqrt((w * ex * ex).sum() * (w * ey * ey).sum())
    return float((w * ex * ey).sum() / den) if den > 1e-300 else float("nan")


def weighted_family_statistics(D: np.ndarray, lw: np.ndarray, dsg: Design, G: np.ndarray) -> np.ndarray:
    """The statistics of :data:`FAMILY_TESTS` for one distance matrix D [n, n] with language weights
    lw [n] (how often each language was drawn): pair (i, j), i < j, weighs lw[i] * lw[j], so a
    language's pairs with its own copies never count. All ones gives :func:`_family_statistics`. [8]"""
    iu = np.triu_indices(len(lw), 1)
    w = (lw[iu[0]] * lw[iu[1]]).astype(float)
    d, g = upper(D), upper(np.asarray(G, dtype=float))
    tree, edges, script = upper(dsg.tree), upper(dsg.tree_edges), upper(dsg.script_difference)
    auc = _weighted_auc(d, w, upper(dsg.same_family), upper(dsg.same_script))[[2, 0, 1]]
    rc = weighted_residual_correlation
    return np.concatenate([auc, [rc(d, tree, [], w), rc(d, tree, [script, g], w), rc(d, script, [tree, g], w),
                                 rc(d, g, [tree, script], w), rc(d, edges, [script, g], w)]])


def crossed_family_intervals(profile, n_resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0,
                             level: float = 0.95) -> tuple[np.ndarray, np.ndarray, str]:
    """Intervals for the statistics of :data:`FAMILY_TESTS` as claims over languages (one text per
    language, :func:`one_text_per_language`): whole families and passages resampled together
    (:func:`babel_lib.stats.crossed_bootstrap` with families as groups; below
    :data:`babel_lib.stats.MIN_BOOTSTRAP_UNITS` families, its jackknife over families plus the passage
    variance). Percentile intervals, not centred: the statistics are ranks and correlations, not
    distances. Returns (low [8], high [8], method)."""
    prof, dsg, _ = _subset(profile)
    chunk = max(1, 2_000_000 // max(1, prof.passage_counts[:, 0].size))

    def statistics(LW, PW):  # [m, n], [m, P] -> [m, 8]
        rows = []
        for s in range(0, len(LW), chunk):
            freq, tpc = weighted_profile(prof, PW[s:s + chunk])
            Dm, Gm = profile_distances(freq), granularity_difference(tpc)
            rows += [weighted_family_statistics(Dm[i], LW[s + i], dsg, Gm[i]) for i in range(len(Dm))]
        return np.asarray(rows)

    with warnings.catch_warnings(), torch_threads(1):
        warnings.filterwarnings("ignore", r"(Mean of empty slice|All-NaN slice|invalid value)", RuntimeWarning)
        r = stats.crossed_bootstrap(statistics, len(dsg.languages), prof.n_passages, n_resamples, seed,
                                    groups=dsg.family, level=level, batched=True)
    # a jackknife interval is symmetric and can leave the statistic's range: AUCs lie in [0, 1], correlations in [-1, 1]
    floor = np.array([0.0 if t[2] == "AUC" else -1.0 for t in FAMILY_TESTS])
    return np.clip(np.asarray(r.low, dtype=float), floor, 1.0), np.clip(np.asarray(r.high, dtype=float), floor, 1.0), \
        r.method


def _subset(profile):
    keys = one_text_per_language(profile.languages)
    prof = profile.select(keys)
    return prof, design(keys), granularity_difference(prof.tokens / np.maximum(prof.characters, 1))


def family_tests(profile, permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0, n_resamples: int = 0,
                 metric: str = "hellinger", tests=None, interval: str = "crossed") -> pd.DataFrame:
    """The family and script tests of chapter 5 on one profile, over one text per language
    (:func:`one_text_per_language`): one row per test of :data:`FAMILY_TESTS` (or the ids in
    ``tests``) with test (id), name (words), measure, statistic, null_mean (the statistic's mean under
    its permutations: the AUC's is not 0.5), effect (statistic - null_mean), low/high (95% interval
    with ``n_resamples`` > 0, else NaN), interval (how it was drawn), p_value (one-sided: same-family
    pairs closer, r greater), permutations, n (languages), note (why a test is undefined here).

    The claims are about languages, so by default (``interval='crossed'``) the interval resamples
    whole families and passages together (:func:`crossed_family_intervals`); ``interval='passages'``
    keeps the languages fixed (a BCa passage bootstrap: how firmly the text fixes the statistic for
    these languages only). See :func:`tests_of`. ``metric='js'``: Jensen-Shannon distance, no intervals."""
    if interval not in ("crossed", "passages"):
        raise ValueError(f"interval must be 'crossed' or 'passages', got {interval!r}")
    prof, dsg, G = _subset(profile)
    D = profile_distances(prof.frequencies(), metric)
    est, p, notes, null = tests_of(D[None], dsg, G, permutations, seed, tests, null_means=True)
    est, p, null = est[0], p[0], null[0]
    low = high = np.full(len(est), np.nan)
    how = "none"
    if n_resamples and metric == "hellinger" and prof.n_passages >= 2:
        if interval == "crossed" and len(set(dsg.family)) >= 2:
            low, high, method = crossed_family_intervals(profile, n_resamples, seed)
            how = ("families and passages resampled together" if method == "crossed" else
                   "jackknife over families plus the passage bootstrap (too few families to resample)")
        else:
            boot = bootstrap_profiles(
                lambda f, g: _family_statistics(profile_distances(f[0]), dsg, granularity_difference(g[0])),
                prof, n_resamples, seed)
            low, high = np.atleast_1d(boot.low), np.atleast_1d(boot.high)
            how = "passages resampled, languages fixed"
    wanted = [t[0] for t in FAMILY_TESTS] if tests is None else list(tests)
    rows = []
    for i, (t, words, measure) in enumerate(FAMILY_TESTS):
        if t in wanted:
            rows.append({"test": t, "name": words, "measure": measure, "statistic": float(est[i]),
                         "null_mean": float(null[i]), "effect": float(est[i] - null[i]),
                         "low": float(low[i]), "high": float(high[i]), "interval": how, "p_value": float(p[i]),
                         "permutations": int(permutations), "n": len(dsg.languages), "note": notes[i]})
    return pd.DataFrame(rows)


def view_tests(profiles: dict, permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0,
               tests=("auc", "partial_tree", "partial_script", "partial_granularity"),
               js: bool = False) -> pd.DataFrame:
    """The family tests under several views of the same languages and tokens ({name: Profile}; and,
    with ``js``, the first view under the Jensen-Shannon distance), in one batch: one row per view
    with each test's statistic (column = test id) and p-value (``<id>_p``)."""
    names = list(profiles)
    subs = [_subset(p) for p in profiles.values()]
    prof, dsg, G = subs[0]
    Ds = [profile_distances(s[0].frequencies()) for s in subs]
    if js:
        Ds.append(profile_distances(prof.frequencies(), "js"))
        names.append(f"{names[0]}, Jensen-Shannon distance")
    est, p, _ = tests_of(np.stack(Ds), dsg, G, permutations, seed, tests)
    ids = [t[0] for t in FAMILY_TESTS]
    out = pd.DataFrame({"view": names})
    for t in tests:
        out[t] = est[:, ids.index(t)]
        out[f"{t}_p"] = p[:, ids.index(t)]
    return out


def layer_family_tests(profile, permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0,
                       n_resamples: int = 0) -> pd.DataFrame:
    """Chapter 5's two main tests layer by layer (one text per language; Hellinger distance over
    the layer's experts): the family AUC within script strata and the partial r of profile vs tree
    distance given script and granularity, each with its permutation p (the same permutations for
    every layer), Benjamini-Hochberg q-values over all the layers' tests together, and
    (``n_resamples`` > 0) 95% BCa intervals. Returns layer, relative_depth, third, auc, auc_low,
    auc_high, auc_p, auc_q, tree_r, tree_low, tree_high, tree_p, tree_q."""
    prof, dsg, G = _subset(profile)
    L = prof.n_layers
    Dl = layer_distances(prof.frequencies())
    S = dsg.script_difference

    sf_v, ss_v, tree_v, script_v = upper(dsg.same_family), upper(dsg.same_script), upper(dsg.tree), upper(S)

    def statistic(Dlayers, Gm):  # [..., L, n, n] -> [..., L, 2]
        d = upper(Dlayers)
        auc = _family_auc(d, sf_v, ss_v)[..., 2]
        r = _residual_correlation(d, tree_v, [script_v, upper(Gm)])
        return np.stack([auc, r], axis=-1)

    est, p, _ = tests_of(Dl, dsg, G, permutations, seed, ["auc", "partial_tree"])
    ids = [t[0] for t in FAMILY_TESTS]
    auc, tree = est[:, ids.index("auc")], est[:, ids.index("partial_tree")]
    auc_p, tree_p = p[:, ids.index("auc")], p[:, ids.index("partial_tree")]
    q = stats.benjamini_hochberg(np.concatenate([auc_p, tree_p]))
    low = high = np.full((L, 2), np.nan)
    if n_resamples and prof.n_passages >= 2:
        boot = bootstrap_profiles(lambda f, g: statistic(layer_distances(f[0]), granularity_difference(g[0])),
                                  prof, n_resamples, seed)
        low, high = boot.low.reshape(L, 2), boot.high.reshape(L, 2)
    return pd.DataFrame({
        "layer": np.arange(L), "relative_depth": analysis.relative_depth(L), "third": analysis.depth_third(L),
        "auc": auc, "auc_low": low[:, 0], "auc_high": high[:, 0], "auc_p": auc_p, "auc_q": q[:L],
        "tree_r": tree, "tree_low": low[:, 1], "tree_high": high[:, 1], "tree_p": tree_p, "tree_q": q[L:],
    })


# ---------------------------------------------------------------------------- flat clusters vs families
def cluster_agreement(D: np.ndarray, families, scripts, permutations: int = stats.HEADLINE_PERMUTATIONS,
                      seed: int = 0, linkage: str = "average") -> dict:
    """Do the dendrogram's flat clusters recover the families? D [n, n] is clustered (``linkage``)
    and cut into as many clusters as there are families; agreement = scikit-learn's
    ``adjusted_rand_score`` (0 = chance, 1 = the families exactly); one-sided permutation p with
    family labels permuted within script groups (a cluster of one script does not count as a
    family effect). Returns ari, p_value, clusters (int [n]), k."""
    from sklearn.metrics import adjusted_rand_score

    families = np.asarray(families, dtype=object)
    k = len(set(families))
    if len(D) < 3 or k < 2 or k >= len(D):
        return {"ari": float("nan"), "p_value": float("nan"), "clusters": np.ones(len(D), int), "k": k}
    clusters = analysis.flat_clusters(analysis.cluster(D, linkage), k)
    _, lab = np.unique(families, return_inverse=True)
    ari = float(adjusted_rand_score(lab, clusters))
    perms = stats.within_strata_permutations(np.asarray(scripts, dtype=object), permutations, seed)
    null = permuted_ari(clusters, lab, perms)
    p = (1 + int((null >= ari - 1e-12).sum())) / (1 + permutations)
    return {"ari": ari, "p_value": p, "clusters": clusters, "k": k}


def permuted_ari(clusters, labels, perms: np.ndarray) -> np.ndarray:
    """Adjusted Rand index of ``clusters`` [n] with ``labels`` [n] relabelled by each row of perms
    [B, n] (item i takes the label of item perms[b, i]): float [B], vectorised. A permutation keeps
    both marginals, so only the sum over the contingency table of C(n_ij, 2) changes
    (Hubert and Arabie 1985; equal to scikit-learn's ``adjusted_rand_score``)."""
    _, a = np.unique(np.asarray(clusters), return_inverse=True)
    _, b = np.unique(np.asarray(labels), return_inverse=True)
    n, ka, kb = len(a), a.max() + 1, b.max() + 1

    def comb2(x):
        return x * (x - 1) / 2.0

    sa = comb2(np.bincount(a, minlength=ka).astype(float)).sum()
    sb = comb2(np.bincount(b, minlength=kb).astype(float)).sum()
    expected = sa * sb / comb2(float(n))
    top = (sa + sb) / 2.0
    perms = np.atleast_2d(perms)
    cells = a[None, :] * kb + b[perms]  # [B, n]
    flat = (cells + (np.arange(len(perms)) * ka * kb)[:, None]).ravel()
    table = np.bincount(flat, minlength=len(perms) * ka * kb).reshape(len(perms), -1).astype(float)
    index = comb2(table).sum(axis=1)
    if top == expected:
        return np.ones(len(perms))
    return (index - expected) / (top - expected)


def ari_batch(D: np.ndarray, families, linkage: str = "average") -> np.ndarray:
    """ARI of the flat clusters of each matrix of D [m, n, n] with the families: [m]."""
    from sklearn.metrics import adjusted_rand_score

    _, lab = np.unique(np.asarray(families, dtype=object), return_inverse=True)
    k = lab.max() + 1
    if D.shape[-1] < 3 or k < 2 or k >= D.shape[-1]:
        return np.full(D.shape[0], np.nan)
    return np.array([adjusted_rand_score(lab, analysis.flat_clusters(analysis.cluster(d, linkage), k)) for d in D])


# ---------------------------------------------------------------------------- one language, two scripts
def twin_table(D: np.ndarray, keys, pairs=None) -> pd.DataFrame:
    """For each language written in two scripts (:func:`twin_pairs`) and each of its two texts x
    (twin y): how far x is from y (same language, other script) and from the other languages
    written in x's script. Columns: language, twin, script, twin_script, twin_distance,
    nearest_same_script (the closest other language in x's script; texts of x's own language
    excluded), nearest_distance, mean_same_script (mean distance to those languages), others
    (how many), twin_rank (1 = y is x's nearest text of another script or language),
    nearest_same_group (the nearest is in x's own deepest Glottolog clade, e.g. Bosnian for Serbian:
    no contrast of script and language), and the indices used by :func:`twin_statistics` (columns
    idx_*). NaN where x's script has no other language."""
    keys = list(keys)
    pairs = twin_pairs(keys) if pairs is None else pairs
    table = corpus.language_table().loc[keys]
    iso = table["iso639_3"].to_numpy(dtype=object)
    script = table["script"].to_numpy(dtype=object)
    paths = [corpus.clade_path(k) for k in keys]
    D = np.asarray(D, dtype=float)
    rows = []
    for a, b in pairs:
        for x, y in ((a, b), (b, a)):
            i, j = keys.index(x), keys.index(y)
            same_lang = (iso == iso[i]) | (iso == iso[j])
            others = np.flatnonzero((script == script[i]) & ~same_lang)
            d = D[i].copy()
            d[i] = np.inf
            near = int(others[np.argmin(D[i, others])]) if len(others) else -1
            rows.append({"language": x, "twin": y, "script": script[i], "twin_script": script[j],
                         "twin_distance": float(D[i, j]),
                         "nearest_same_script": keys[near] if near >= 0 else "",
                         "nearest_distance": float(D[i, near]) if near >= 0 else np.nan,
                         "mean_same_script": float(D[i, others].mean()) if len(others) else np.nan,
                         "others": int(len(others)), "twin_rank": int((d < D[i, j]).sum()) + 1,
                         "nearest_same_group": bool(near >= 0 and paths[i] and paths[near] == paths[i]),
                         "idx_i": i, "idx_j": j, "idx_near": near, "idx_others": others})
    return pd.DataFrame(rows, columns=["language", "twin", "script", "twin_script", "twin_distance",
                                       "nearest_same_script", "nearest_distance", "mean_same_script", "others",
                                       "twin_rank", "nearest_same_group", "idx_i", "idx_j", "idx_near", "idx_others"])


#: The columns of :func:`twin_statistics`.
TWIN_STATISTICS = ("twin", "nearest", "mean", "minus_nearest", "minus_mean")


def twin_statistics(D: np.ndarray, twins: pd.DataFrame) -> np.ndarray:
    """For a batch of distance matrices D [..., n, n] and the rows of :func:`twin_table`:
    [..., rows, 5] in the order of :data:`TWIN_STATISTICS`: the twin distance, the distance to the
    nearest other language of the same script (chosen on the full data), the mean distance to the
    other languages of the same script, and the twin distance minus each of the two (negative:
    the language outweighs the script)."""
    D = np.asarray(D, dtype=float)
    out = np.full(D.shape[:-2] + (len(twins), len(TWIN_STATISTICS)), np.nan)
    for r, row in enumerate(twins.itertuples()):
        t = D[..., row.idx_i, row.idx_j]
        out[..., r, 0] = t
        if row.idx_near >= 0:
            near = D[..., row.idx_i, row.idx_near]
            mean = D[..., row.idx_i, row.idx_others].mean(axis=-1)
            out[..., r, 1], out[..., r, 2] = near, mean
            out[..., r, 3], out[..., r, 4] = t - near, t - mean
    return out


# ---------------------------------------------------------------------------- sister languages
def sister_scores(D: np.ndarray, trios: np.ndarray) -> np.ndarray:
    """For each trio (a, b, c) of row indices [T, 3] (a, b sisters, c their cousin): the share of the
    two cousin pairs (a, c), (b, c) that are farther apart than the sisters (a, b), ties half.
    D [..., n, n] -> [..., T]; 0.5 when the distances ignore which two are sisters."""
    a, b, c = trios[:, 0], trios[:, 1], trios[:, 2]
    s = D[..., a, b]
    win = lambda x: (x > s).astype(float) + 0.5 * (x == s)  # noqa: E731
    return 0.5 * (win(D[..., a, c]) + win(D[..., b, c]))


def sister_ratios(D: np.ndarray, trios: np.ndarray) -> np.ndarray:
    """Sister distance over the mean cousin distance, per trio: D [..., n, n] -> [..., T]."""
    a, b, c = trios[:, 0], trios[:, 1], trios[:, 2]
    return D[..., a, b] / (0.5 * (D[..., a, c] + D[..., b, c]))


def sister_test(profile, trios, permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0,
                n_resamples: int = stats.DEFAULT_RESAMPLES, level: float = 0.95) -> dict:
    """Are sister languages closer than their nearest cousin? ``trios``: (a, b, c) keys of ``profile``
    (:func:`babel_lib.data.corpus.sister_trios`). Returns {'score', 'low', 'high'}: the mean over trios
    of :func:`sister_scores` (the share of cousin pairs farther apart than the sisters; 0.5 when
    sisterhood does not matter); {'ratio', 'ratio_low', 'ratio_high'}: the geometric mean over trios of
    :func:`sister_ratios`; 'p_value': one-sided, against relabelling in each trio which pair are the
    sisters (each of its three pairs equally likely; ``permutations`` random relabellings, the same
    null mean 0.5 in every trio without ties), 'null_mean' (the mean score under them), 'per_trio'
    (scores [T]), 'ratios' [T], 'granularity_score' (the same score on |tokens per character|
    differences: how often tokenisation alone picks the sisters), 'interval' (how drawn), 'trios', 'families'.

    The claim is about languages, so the interval resamples whole families and passages together
    (:func:`babel_lib.stats.crossed_bootstrap`; below its minimum number of families, a jackknife
    over families plus the passage bootstrap). Hellinger distance, as every family test."""
    trios = [tuple(t) for t in trios]
    if len(trios) < 2:
        raise ValueError(f"the sister test needs at least 2 trios, got {len(trios)}")
    keys = [k for t in trios for k in t]
    if len(set(keys)) != len(keys):
        raise ValueError("a language appears in two trios: each trio needs its own three languages")
    prof = profile.select(keys)
    idx = np.arange(len(keys)).reshape(-1, 3)
    D = profile_distances(prof.frequencies())
    per = sister_scores(D, idx)
    ratios = sister_ratios(D, idx)
    score = float(per.mean())
    # the null: in each trio, which of its three pairs are the sisters is random
    rng = np.random.default_rng(seed)
    pair_d = np.stack([D[idx[:, 0], idx[:, 1]], D[idx[:, 0], idx[:, 2]], D[idx[:, 1], idx[:, 2]]], axis=1)  # [T, 3]
    one = lambda s, o1, o2: 0.5 * ((o1 > s) + 0.5 * (o1 == s) + (o2 > s) + 0.5 * (o2 == s))  # noqa: E731
    alt = np.stack([one(pair_d[:, 0], pair_d[:, 1], pair_d[:, 2]), one(pair_d[:, 1], pair_d[:, 0], pair_d[:, 2]),
                    one(pair_d[:, 2], pair_d[:, 0], pair_d[:, 1])], axis=1)  # [T, 3]: the score if pair j were sisters
    pick = rng.integers(0, 3, size=(int(permutations), len(trios)))
    null = np.take_along_axis(alt[None].repeat(len(pick), 0), pick[..., None], axis=2)[..., 0].mean(axis=1)
    p = float((1 + np.sum(null >= score - 1e-12)) / (1 + len(null)))
    tpc = prof.tokens / np.maximum(prof.characters, 1)
    gran = float(sister_scores(granularity_difference(tpc), idx).mean())
    family = np.asarray([corpus.language_table().loc[t[0], "family"] for t in trios])
    owner = np.repeat(family, 3)
    chunk = max(1, 2_000_000 // max(1, prof.passage_counts[:, 0].size))

    def statistics(LW, PW):  # [m, 3T], [m, P] -> [m, 2]: the score and the log of the ratio
        out = []
        for s in range(0, len(LW), chunk):
            freq, _ = weighted_profile(prof, PW[s:s + chunk])
            Dm = profile_distances(freq)
            w = LW[s:s + chunk, idx[:, 0]]  # a trio's weight: its family's count
            with np.errstate(invalid="ignore", divide="ignore"):
                sc = (sister_scores(Dm, idx) * w).sum(1) / w.sum(1)
                lr = (np.log(sister_ratios(Dm, idx)) * w).sum(1) / w.sum(1)
            out.append(np.stack([sc, lr], axis=1))
        return np.concatenate(out)

    low = high = np.full(2, np.nan)
    how = "none"
    if n_resamples and prof.n_passages >= 2:
        with warnings.catch_warnings(), torch_threads(1):
            warnings.filterwarnings("ignore", r"(Mean of empty slice|All-NaN slice|invalid value)", RuntimeWarning)
            r = stats.crossed_bootstrap(statistics, len(keys), prof.n_passages, n_resamples, seed, groups=owner,
                                        level=level, batched=True)
        low, high = np.asarray(r.low, dtype=float), np.asarray(r.high, dtype=float)
        how = ("families and passages resampled together" if r.method == "crossed" else
               "jackknife over families plus the passage bootstrap (too few families to resample)")
    ratio = float(np.exp(np.log(ratios).mean()))
    return {"score": score, "low": float(np.clip(low[0], 0, 1)), "high": float(np.clip(high[0], 0, 1)),
            "ratio": ratio, "ratio_low": float(np.exp(low[1])), "ratio_high": float(np.exp(high[1])), "p_value": p,
            "null_mean": float(null.mean()), "permutations": int(permutations), "per_trio": per, "ratios": ratios,
            "granularity_score": gran, "interval": how, "resamples": int(n_resamples), "trios": len(trios),
            "families": len(set(family)), "passages": int(prof.n_passages)}
