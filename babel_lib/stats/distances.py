"""Distances between activation profiles, and their resampling: the Hellinger distance (one matrix
product, so a 1,000-resample bootstrap of a 120 x 120 matrix takes seconds), Jensen-Shannon as an
alternative, a passage bootstrap shared by several profiles (the same passages for every language
and every model), the centred interval for distance-level statistics and the split-half noise floor.

Our choice (the paper is silent): the distance between two languages is the Hellinger distance between
their activation profiles, H(p, q) = sqrt(1 - sum_k sqrt(p_k q_k)) in [0, 1], each profile (all
layers x experts) normalised to sum 1 (under top-k every layer sums to k, so the layers weigh
equally); per layer the same over the layer's experts.
"""

from __future__ import annotations

import warnings

import numpy as np

from babel_lib.core.hooks import torch_threads
from babel_lib.stats import analysis, inference as stats

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


def check_same_passages(profiles) -> int:
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
    P = check_same_passages(profiles)
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
