"""Language families and model families, as chapter steps (chapters 5 and 6).

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
  over rows (:func:`babel_lib.analysis.js_distances`); Jensen-Shannon is kept as a robustness row.
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

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from . import analysis, corpus, genealogy, stats
from .hooks import torch_threads
from .corpus import language_labels

#: Family values that relate no languages: each such language is a family of its own.
NO_FAMILY = ("Unclassified", "Artificial Language")
#: The two classes of pairs in the stratified family test, and the weighted overall value.
AUC_CLASSES = ("same script", "different scripts", "overall")
#: Pair classes of :func:`class_means`, in order.
PAIR_CLASSES = ("same family, same script", "same family, different scripts",
                "different families, same script", "different families, different scripts")
#: Bins of shared Glottolog clades (lower bounds; the last is open): 0 = different families.
CLADE_BINS = (0, 1, 2, 3, 4, 5)
#: Budget of float64 elements for one chunk of weighted frequencies in :func:`bootstrap_profiles`.
_CHUNK_ELEMENTS = 8_000_000


# ---------------------------------------------------------------------------- distances
def hellinger_distances(X: np.ndarray) -> np.ndarray:
    """Hellinger distance between the rows of X [..., n, d] (each normalised to sum 1):
    float [..., n, n], symmetric, zero diagonal, in [0, 1]. H = sqrt(1 - sum sqrt(p q)); 0 for
    identical profiles, 1 for profiles with no common support. Leading axes (resamples, layers)
    are kept, so one call serves the estimate and a batch of resamples (one batched product through
    torch: numpy's stacked matmul is an order of magnitude slower on many small matrices)."""
    import torch

    X = np.asarray(X, dtype=float)
    if X.ndim < 2:
        raise ValueError(f"profiles must be [..., n, d], got shape {X.shape}")
    if (X < 0).any():
        raise ValueError("the Hellinger distance needs non-negative profiles")
    t = torch.from_numpy(np.ascontiguousarray(X))
    s = t.sum(-1, keepdim=True)
    if bool((s <= 0).any()):
        raise ValueError("the Hellinger distance is undefined for an all-zero profile")
    R = (t / s).sqrt()
    D = (1.0 - R @ R.transpose(-1, -2)).clamp(0.0, 1.0).sqrt()
    D.diagonal(dim1=-2, dim2=-1).zero_()
    return D.numpy()


def profile_distances(freq: np.ndarray, metric: str = "hellinger") -> np.ndarray:
    """Distances between languages from frequencies [..., n, L, E] over all layers and experts:
    [..., n, n]. metric: 'hellinger' (the chapters' distance) or 'js' (Jensen-Shannon, no leading
    axes; a robustness check)."""
    freq = np.asarray(freq, dtype=float)
    if metric == "hellinger":
        return hellinger_distances(freq.reshape(freq.shape[:-2] + (-1,)))
    if metric == "js":
        if freq.ndim != 3:
            raise ValueError("the Jensen-Shannon distance takes one profile [n, L, E] at a time")
        return analysis.js_distances(freq)
    raise ValueError(f"metric must be 'hellinger' or 'js', got {metric!r}")


def layer_distances(freq: np.ndarray) -> np.ndarray:
    """Per-layer Hellinger distances: frequencies [..., n, L, E] -> [..., L, n, n]."""
    return hellinger_distances(np.swapaxes(np.asarray(freq, dtype=float), -3, -2))


def upper(M: np.ndarray) -> np.ndarray:
    """The pairs i < j of square matrices [..., n, n]: [..., n(n-1)/2] (row-major order)."""
    M = np.asarray(M)
    iu = np.triu_indices(M.shape[-1], 1)
    return M[..., iu[0], iu[1]]


def mean_distance(D: np.ndarray) -> np.ndarray:
    """Mean over the pairs i < j of [..., n, n]: [...]."""
    return upper(D).mean(axis=-1)


# ---------------------------------------------------------------------------- the languages
def family_labels(keys) -> np.ndarray:
    """Top-level Glottolog family of each language (object [n]); an unclassified or artificial
    language gets its own key, so it shares a family with no other language."""
    table = corpus.language_table().loc[list(keys)]
    fam = table["family"].to_numpy(dtype=object)
    return np.where(np.isin(fam, NO_FAMILY), np.asarray(list(keys), dtype=object), fam)


def twin_pairs(keys, corpus_name: str = "udhr") -> list[tuple[str, str]]:
    """Languages present in ``keys`` in two scripts: (first text, other text) pairs from
    :func:`babel_lib.corpus.script_pairs` (one ISO code in two scripts, and Hindi/Urdu), in that
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
    distances from Glottolog, see :func:`babel_lib.genealogy.tree_distance`)."""
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


# ---------------------------------------------------------------------------- resampling
def weighted_profile(profile, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and granularity of a profile with passages weighted by W [m, P] (bootstrap
    multiplicities; all ones for the full data): (freq float [m, n, L, E], tokens per character
    float [m, n])."""
    W = np.atleast_2d(np.asarray(W, dtype=float))
    freq = stats.weighted_frequencies(profile.passage_counts, profile.passage_tokens, W)
    tok = W @ profile.passage_tokens.T.astype(float)  # [m, n]
    chars = W @ profile.passage_characters.T.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpc = tok / chars
    return freq, tpc


def _check_same_passages(profiles) -> int:
    first = profiles[0]
    for p in profiles[1:]:
        if list(p.passage_ids) != list(first.passage_ids) or list(p.languages) != list(first.languages):
            raise ValueError("profiles compared under one resample must cover the same languages and passages")
    return first.n_passages


def bootstrap_profiles(statistic, profiles, n_resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0,
                       method: str = "bca", level: float = 0.95) -> stats.BootstrapResult:
    """Passage bootstrap of a statistic of one or more profiles of the same languages on the same
    passages (e.g. two models): every resample draws one set of passages for all languages and all
    profiles (row b of ``stats.passage_resamples(P, n_resamples, seed)``, as
    :func:`babel_lib.stats.bootstrap`).

    ``statistic(freqs, tpcs)`` receives lists aligned with ``profiles``: frequencies float
    [m, n, L, E] and tokens per character float [m, n] of m resamples at once, and returns
    [m, ...]. Work is chunked so that no chunk holds more than about 8M floats of frequencies.
    Returns :class:`babel_lib.stats.BootstrapResult` (BCa by default; the jackknife leaves one
    passage out)."""
    profiles = [profiles] if not isinstance(profiles, (list, tuple)) else list(profiles)
    P = _check_same_passages(profiles)
    per_row = sum(p.passage_counts[:, 0].size for p in profiles)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, per_row))

    def values(W):
        parts = []
        for s in range(0, len(W), chunk):
            got = [weighted_profile(p, W[s:s + chunk]) for p in profiles]
            parts.append(np.asarray(statistic([g[0] for g in got], [g[1] for g in got]), dtype=float))
        return np.concatenate(parts)

    with warnings.catch_warnings(), torch_threads(1):  # undefined statistics are NaN, left out of the interval
        warnings.filterwarnings("ignore", r"(Mean of empty slice|All-NaN slice)", RuntimeWarning)
        return stats.bootstrap_units(values, P, n_resamples, seed, method=method, level=level, batched=True)


def centred_interval(result: stats.BootstrapResult, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A percentile interval of the bootstrap samples shifted so that their median sits on the
    estimate: (low, high, shift), shift = median of the samples - estimate.

    For distance-level statistics (distances, their means, departures): resampling passages with
    replacement repeats some passages, so every resampled profile is noisier and every distance
    larger (a shift of the whole bootstrap distribution, not a property of the languages). The BCa
    correction then fails (the estimate lies below almost every sample) and the plain percentile
    interval misses the estimate. The centred interval keeps the spread the resamples show and
    drops the shift, which is reported instead (and the noise floor bounds it from above)."""
    samples = np.asarray(result.samples, dtype=float)
    est = np.asarray(result.estimate, dtype=float)
    alpha = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"All-NaN slice", RuntimeWarning)
        shift = np.nanmedian(samples, axis=0) - est
        low = np.nanquantile(samples, alpha, axis=0) - shift
        high = np.nanquantile(samples, 1.0 - alpha, axis=0) - shift
    return low, high, shift


def split_half_floor(profile, per_layer: bool = False, n_splits: int = 100, seed: int = 0) -> np.ndarray:
    """The noise floor of the Hellinger distance: how far a language is from itself, between its
    profiles on two random halves of the passages (the same halves for every language; the split
    rule of :func:`babel_lib.stats.split_half_distance`), averaged over ``n_splits`` splits:
    float [n] (or [n, L] per layer). NaN with fewer than 2 passages. Each half holds half the
    text, so the floor is conservative (about sqrt(2) times the noise of a full-data distance)."""
    n, P, L, E = profile.passage_counts.shape
    if P < 2:
        return np.full((n, L) if per_layer else (n,), np.nan)
    rng = np.random.default_rng(seed)
    out = np.zeros((n, L) if per_layer else (n,))
    for _ in range(n_splits):
        half = np.zeros(P, dtype=bool)
        half[rng.permutation(P)[: P // 2]] = True
        fa = profile.passage_counts[:, half].sum(axis=1, dtype=np.int64)
        fb = profile.passage_counts[:, ~half].sum(axis=1, dtype=np.int64)
        if per_layer:
            pa = fa / np.maximum(fa.sum(axis=-1, keepdims=True), 1)
            pb = fb / np.maximum(fb.sum(axis=-1, keepdims=True), 1)
        else:
            pa = (fa / np.maximum(fa.sum(axis=(1, 2), keepdims=True), 1)).reshape(n, -1)
            pb = (fb / np.maximum(fb.sum(axis=(1, 2), keepdims=True), 1)).reshape(n, -1)
        out += np.sqrt(np.clip(1.0 - np.sqrt(pa * pb).sum(axis=-1), 0.0, 1.0))
    return out / n_splits


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
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """:func:`babel_lib.stats.stratified_permutation_test` for several distance matrices X [V, n, n]
    at once (the same within-strata permutations of the labels for every matrix): (auc [V, 3],
    p [V, 3]) in the order of :data:`AUC_CLASSES` (same stratum, different strata, overall). Each
    row equals the library test of X[v] with the same seed."""
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
    if permutations:
        perms = stats.within_strata_permutations(strata, permutations, seed)
        chunk = max(1, 4_000_000 // max(1, len(iu[0])))
        for s in range(0, permutations, chunk):
            null = stats_of(lab[perms[s:s + chunk]])
            hits += (null >= auc[None] - 1e-12).sum(axis=0)
    p = np.where(np.isfinite(auc), (1 + hits) / (1 + permutations), np.nan)
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


_UNDEFINED = {"auc": "no same-family or no cross-family pair to compare here",
              "r": "too few languages, or nothing left once the covariates are held fixed"}


def tests_of(Ds: np.ndarray, dsg: Design, G: np.ndarray, permutations: int = stats.HEADLINE_PERMUTATIONS,
             seed: int = 0, tests=None) -> tuple[np.ndarray, np.ndarray, list]:
    """The tests of :data:`FAMILY_TESTS` (or the ids in ``tests``) for several distance matrices
    Ds [V, n, n] of the languages of ``dsg`` (views, layers, distances), with granularity
    differences G [n, n]: (statistic [V, 8], p [V, 8], notes [8]); NaN for tests not asked for or
    undefined. AUC tests: :func:`stratified_many` (family labels permuted within script groups);
    Mantel tests: :func:`mantel_many` (the design matrix's residuals permuted over languages). The
    same permutations serve every matrix of the batch."""
    ids = [t[0] for t in FAMILY_TESTS]
    wanted = ids if tests is None else list(tests)
    V = len(Ds)
    est = np.full((V, len(ids)), np.nan)
    p = np.full((V, len(ids)), np.nan)
    S = dsg.script_difference
    if any(t.startswith("auc") for t in wanted):
        auc, pa = stratified_many(Ds, dsg.family, dsg.script, permutations, seed)  # same, different, overall
        order = [2, 0, 1]  # FAMILY_TESTS: overall, same script, different scripts
        est[:, :3], p[:, :3] = auc[:, order], pa[:, order]
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
    notes = [("" if np.isfinite(est[:, k]).all() or not keep[k] else _UNDEFINED["auc" if t.startswith("auc") else "r"])
             for k, t in enumerate(ids)]
    return est, p, notes


def _subset(profile):
    keys = one_text_per_language(profile.languages)
    prof = profile.select(keys)
    return prof, design(keys), granularity_difference(prof.tokens / np.maximum(prof.characters, 1))


def family_tests(profile, permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0, n_resamples: int = 0,
                 metric: str = "hellinger", tests=None) -> pd.DataFrame:
    """The family and script tests of chapter 5 on one profile, over one text per language
    (:func:`one_text_per_language`): one row per test of :data:`FAMILY_TESTS` (or the ids in
    ``tests``) with test (id), name (words), measure, statistic, low/high (95% BCa passage
    bootstrap with ``n_resamples`` > 0, else NaN), p_value (one-sided: same-family pairs closer,
    r greater), permutations, n (languages), note (why a test is undefined on these data).
    See :func:`tests_of`. ``metric='js'`` uses the Jensen-Shannon distance (no intervals)."""
    prof, dsg, G = _subset(profile)
    D = profile_distances(prof.frequencies(), metric)
    est, p, notes = tests_of(D[None], dsg, G, permutations, seed, tests)
    est, p = est[0], p[0]
    low = high = np.full(len(est), np.nan)
    if n_resamples and metric == "hellinger" and prof.n_passages >= 2:
        boot = bootstrap_profiles(
            lambda f, g: _family_statistics(profile_distances(f[0]), dsg, granularity_difference(g[0])),
            prof, n_resamples, seed)
        low, high = np.atleast_1d(boot.low), np.atleast_1d(boot.high)
    wanted = [t[0] for t in FAMILY_TESTS] if tests is None else list(tests)
    rows = []
    for i, (t, words, measure) in enumerate(FAMILY_TESTS):
        if t in wanted:
            rows.append({"test": t, "name": words, "measure": measure, "statistic": float(est[i]),
                         "low": float(low[i]), "high": float(high[i]), "p_value": float(p[i]),
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


def _ari_batch(D: np.ndarray, families, linkage: str = "average") -> np.ndarray:
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


# ---------------------------------------------------------------------------- chapter 5 in one call
def family_results(views: dict, n_resamples: int = stats.DEFAULT_RESAMPLES,
                   permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0, layer_tests: bool = True,
                   n_splits: int = 100, linkage: str = "average", top_families: int = 10) -> dict:
    """Everything chapter 5 reports, from profiles of the same languages under several views
    ({name: Profile}, the main view first; :attr:`babel_lib.pipeline.Study.views`).

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
                twin_statistics(Dm, twins).reshape(len(Dm), -1), _ari_batch(Ds, dsg.family, linkage)[:, None]],
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
        "measure": "ARI", "statistic": agree["ari"], "low": ari_low, "high": ari_high, "p_value": agree["p_value"],
        "permutations": permutations, "n": len(fam_keys),
        "note": "" if np.isfinite(agree["ari"]) else "too few languages or families"}])], ignore_index=True)
    tests = stats.correct(tests, "p_value", "holm", out="p_holm")

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
    facts["auc_interval_above_half"] = bool(np.isfinite(facts["auc"][1]) and facts["auc"][1] > 0.5)
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
    from .verdicts import row

    f = facts
    if not f["testable"]:
        why = (f"{f['family_languages']} languages (one text each) leave no same-family pair to compare with a "
               "cross-family pair")
        return [row("families", "not testable on this language set", why, "not testable here"),
                row("families_v1", "not testable on this language set", why, "not testable here")]
    it = stats.interval_text
    auc, tree, script = f["auc"], f["partial_tree"], f["partial_script"]
    result = (f"a same-family pair is closer than a cross-family pair with probability {it(*auc)} within script "
              f"strata ({stats.p_text(f['auc_p'], f['auc_p_holm'])}); beyond script and tokenisation, tree distance "
              f"gives partial r = {it(*tree, digits=2)} "
              f"({stats.p_text(f['partial_tree_p'], f['partial_tree_p_holm'])}) "
              f"and script gives {it(*script, digits=2)}")
    family = f["auc_holds"] and f["auc_interval_above_half"]
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
                f"{f['passages']} passages ({f['resamples']:,} resamples), {f['permutations']:,} permutations; "
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


# ---------------------------------------------------------------------------- chapter 6: models compared
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
      granularity differences), with intervals, raw and Holm-adjusted p;
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
    _check_same_passages(mains)
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
        frames.append(t.assign(model=m))
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
                "permutations": permutations, "n": len(keys), "note": "" if np.isfinite(r[0]) else _UNDEFINED["r"],
                "model": pair}]))
    tests = stats.correct(pd.concat(frames, ignore_index=True), "p_value", "holm", out="p_holm")
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


def model_verdicts(facts: dict) -> list[dict]:
    """The chapter's verdict rows for the claim 'model_families' (:mod:`babel_lib.verdicts`) from
    :func:`model_results` facts: one on model families (what two models of different families share)
    and one on sizes and variants (not testable with two small models of different families)."""
    from .verdicts import row

    f = facts
    a, b = f["models"][:2]
    it = stats.interval_text
    sizes = row("model_families",
                "model sizes and variants: not compared (no size series and no base/instruct pair of one model "
                "is available offline)",
                "two small models of different families only; the paper profile of the book runner reruns this "
                "chapter on larger models where they are available", "not testable here")
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
                f"{f['languages']} languages on the same {f['passages']} passages, paired passage bootstrap "
                f"({f['resamples']:,} resamples), {f['permutations']:,} permutations; "
                + ("the agreement holds under every partition seed and the neuron view" if f["robust_mantel"]
                   else "the agreement does not hold in every view")
                + "; two models are a weak test of generality, and they differ in size, tokenizer, data and tuning "
                  "at once")
    return [row("model_families", result, evidence, word), sizes]
