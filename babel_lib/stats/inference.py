"""Statistics every chapter shares: passage bootstrap, permutation tests, multiple-testing
corrections, noise floors, and the words and tables that report them.

The unit of evidence is the *passage*: an aligned text unit (an article, a paragraph, a verse)
that exists in every language. A profile keeps per-passage counts

- ``counts[lang, passage, ...]``: integer activation counts (typically ``[n, P, L, E]``),
- ``tokens[lang, passage]``: integer token counts,

and a frequency is ``counts.sum(passages) / tokens.sum(passages)`` (activations per token).
Shapes below: ``n`` languages, ``P`` passages, ``B`` resamples, ``...`` any trailing shape
(e.g. ``L, E``).

Conventions (see the design notes, "Statistics a referee accepts"):

- **Bootstrap**: resample passages with replacement, with the *same* resample for every
  language (the languages' profiles stay paired), at least 1,000 resamples; 95% percentile or
  BCa intervals. A resample is represented by its multiplicity vector ``w[P]`` (how often each
  passage was drawn), so a resampled frequency is ``(w @ counts) / (w @ tokens)``.
- **Permutation tests** over languages (distance matrices: rows and columns together; within
  strata when controlling for script), :data:`HEADLINE_PERMUTATIONS` = 9,999 for a headline
  p-value, ``p = (1 + #{T_perm >= T}) / (1 + permutations)``, so never below
  ``1 / (permutations + 1)``. Every random draw comes from a seeded ``numpy.random.Generator``.
- **Multiple testing** within a chapter: :func:`holm` (family-wise) or
  :func:`benjamini_hochberg` (false discovery rate, for many per-layer tests); report raw and
  adjusted p (:func:`p_text`).
- **Effect sizes with intervals**: :func:`interval_text`, :func:`report`; a chapter ends with a
  verdict table built from :func:`verdict` rows.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from babel_lib.stats import analysis
# the permutation tests are re-exported: `stats.<name>` serves a chapter's every statistic
from babel_lib.stats.permutation import (HEADLINE_PERMUTATIONS,  # noqa: F401
                                         STRATUM_CLASSES, MantelResult, PermutationResult, StratifiedResult, mantel,
                                         mantel_table, orthonormal_basis, pair_auc, partial_correlation, partial_mantel,
                                         partial_mantel_covariates, permutation_p, permutation_rows,
                                         permutation_test_over_languages, same_label, sign_flip, sign_flip_interval,
                                         sign_flip_test, stratified_permutation_test, within_strata_permutations)

#: The public API (``babel_lib.stats.<name>``), the permutation tests included.
__all__ = [
    "BootstrapResult", "CORRECTIONS", "DEFAULT_RESAMPLES", "EFFECT_WORDS", "HEADLINE_PERMUTATIONS",
    "MIN_BOOTSTRAP_UNITS", "MantelResult", "PermutationResult", "STRATUM_CLASSES", "SplitHalfResult",
    "StratifiedResult", "benjamini_hochberg", "bootstrap", "bootstrap_many", "bootstrap_units", "correct",
    "crossed_bootstrap", "effect_size", "evidence", "exceeds", "finite", "holm", "interval_result", "interval_text",
    "label_permutation_null", "mantel", "mantel_table", "multiplicities", "orthonormal_basis", "p_text", "pair_auc",
    "paired_ratio_interval", "partial_correlation", "partial_mantel", "partial_mantel_covariates",
    "passage_resamples", "permutation_p", "permutation_rows", "permutation_test_over_languages", "pool_passages",
    "pooled_frequencies", "pooled_null", "ratio_decision", "report", "resampled_frequencies", "same_label",
    "sign_flip", "sign_flip_interval", "sign_flip_test", "spearman", "spearman_rows", "split_half_distance",
    "stratified_permutation_test", "versus_null", "weighted_frequencies", "within_strata_permutations",
]

#: Default number of bootstrap resamples (the design's minimum for an interval).
DEFAULT_RESAMPLES = 1000
#: Budget for the intermediate arrays of one chunk of resamples (float64 elements, 64 MiB).
_CHUNK_ELEMENTS = 8_000_000


# ---------------------------------------------------------------------------- passage resampling
def _draw_rows(rng: np.random.Generator, n_units: int, rows: int) -> np.ndarray:
    """``rows`` resamples of ``n_units`` indices, one generator call per row (so drawing in chunks
    gives exactly the rows of one big draw): int64 [rows, n_units]."""
    if rows == 0:
        return np.zeros((0, n_units), dtype=np.int64)
    return np.stack([rng.integers(0, n_units, n_units) for _ in range(rows)])


def passage_resamples(n_passages: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Bootstrap resamples of passages: int64 [B, P], row b the indices of resample b, drawn
    uniformly with replacement (``B = n_resamples``, ``P = n_passages``), seeded.

    :func:`bootstrap` and :func:`bootstrap_units` draw exactly these rows for the same
    ``(n_passages, n_resamples, seed)``, so a chapter can rebuild any resample they used.
    """
    if n_passages < 1:
        raise ValueError(f"at least one passage is needed, got {n_passages}")
    if n_resamples < 0:
        raise ValueError(f"n_resamples must be >= 0, got {n_resamples}")
    return _draw_rows(np.random.default_rng(seed), int(n_passages), int(n_resamples))


def multiplicities(idx: np.ndarray, n_passages: int | None = None) -> np.ndarray:
    """How often each passage occurs in each resample: idx int [B, P'] -> float64 [B, P]
    (``P = n_passages``, default ``P'``); each row sums to ``P'``."""
    idx = np.atleast_2d(np.asarray(idx, dtype=np.int64))
    B = idx.shape[0]
    P = idx.shape[1] if n_passages is None else int(n_passages)
    if idx.size and (idx.min() < 0 or idx.max() >= P):
        raise ValueError(f"resample indices must lie in [0, {P})")
    flat = (idx + (np.arange(B, dtype=np.int64) * P)[:, None]).ravel()
    return np.bincount(flat, minlength=B * P).reshape(B, P).astype(np.float64)


def _check_profile(counts, tokens) -> tuple[np.ndarray, np.ndarray, tuple]:
    """counts [n, P, ...], tokens [n, P] -> C float64 [P, n * F] (passage-major), T float64 [P, n],
    and the trailing shape ``...``."""
    counts = np.asarray(counts)
    tokens = np.asarray(tokens)
    if counts.ndim < 2 or tokens.shape != counts.shape[:2]:
        raise ValueError(f"counts must be [n, P, ...] and tokens [n, P]; got {counts.shape} and {tokens.shape}")
    n, P = tokens.shape
    rest = counts.shape[2:]
    C = np.ascontiguousarray(np.moveaxis(counts, 1, 0).reshape(P, -1), dtype=np.float64)
    T = np.ascontiguousarray(tokens.T, dtype=np.float64)
    return C, T, rest


def _frequencies_from_weights(C: np.ndarray, T: np.ndarray, rest: tuple, W: np.ndarray) -> np.ndarray:
    """Weighted frequencies: W [m, P] -> (W @ counts) / (W @ tokens), float64 [m, n, ...].
    A language with zero weighted tokens gets NaN."""
    m = W.shape[0]
    n = T.shape[1]
    num = (W @ C).reshape((m, n) + rest)
    den = (W @ T).reshape((m, n) + (1,) * len(rest))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def weighted_frequencies(counts: np.ndarray, tokens: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Frequencies under passage weights: counts [n, P, ...], tokens [n, P], weights [m, P] or [P] (a
    resample's multiplicities; all ones for the full data) -> float [m, n, ...] =
    (w @ counts) / (w @ tokens); NaN for a language without weighted tokens. The one implementation
    every resampled statistic uses."""
    C, T, rest = _check_profile(counts, tokens)
    return _frequencies_from_weights(C, T, rest, np.atleast_2d(np.asarray(weights, dtype=np.float64)))


def resampled_frequencies(counts: np.ndarray, tokens: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Frequencies of each resample: float64 [B, n, ...].

    counts int [n, P, ...] (activations per passage), tokens int [n, P] (tokens per passage),
    idx int [B, P] (:func:`passage_resamples`). Resample b gives language i
    ``sum_p w_bp counts[i, p] / sum_p w_bp tokens[i, p]`` (activations per token), with
    ``w_b`` the multiplicities of row b: the same passages for every language. A language with
    no token in a resample gets NaN. The result holds ``B * n * prod(...)`` floats: pass a slice
    of ``idx`` (or use :func:`bootstrap`, which works in chunks) for large profiles.
    """
    C, T, rest = _check_profile(counts, tokens)
    return _frequencies_from_weights(C, T, rest, multiplicities(idx, T.shape[0]))


def pool_passages(counts: np.ndarray, tokens: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum runs of ``size`` consecutive passages into one unit (the last run may be shorter):
    counts [n, P, ...] -> [n, ceil(P / size), ...], tokens [n, P] -> [n, ceil(P / size)].

    Use it for very many short passages (verses): fewer units make the bootstrap cheaper and,
    since neighbouring verses are not independent, pooled runs make a block bootstrap.
    Frequencies of the full data are unchanged.
    """
    counts = np.asarray(counts)
    tokens = np.asarray(tokens)
    if tokens.shape != counts.shape[:2]:
        raise ValueError(f"counts must be [n, P, ...] and tokens [n, P]; got {counts.shape} and {tokens.shape}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    starts = np.arange(0, tokens.shape[1], int(size))
    return np.add.reduceat(counts, starts, axis=1), np.add.reduceat(tokens, starts, axis=1)


# ---------------------------------------------------------------------------- nulls that keep busyness
def pooled_frequencies(counts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """Each expert's language-independent busyness: all languages' activations over all their tokens.
    counts [n, P, ...], tokens [n, P] -> float [...]."""
    counts, tokens = np.asarray(counts, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    if tokens.shape != counts.shape[:2]:
        raise ValueError(f"counts must be [n, P, ...] and tokens [n, P]; got {counts.shape} and {tokens.shape}")
    return counts.sum(axis=(0, 1)) / max(tokens.sum(), 1.0)


def pooled_null(statistic: Callable, counts: np.ndarray, tokens: np.ndarray, n_draws: int = DEFAULT_RESAMPLES,
                seed: int = 0) -> np.ndarray:
    """The statistic under the pooled null: no language differs from the pool. Each language's
    counts are redrawn as Binomial(its tokens, the pooled frequency of each expert), so every expert
    keeps its language-independent busyness and every language its token count (its sampling noise).

    statistic(F) takes frequencies F float [n, ...] (one map per language) and returns a float or a
    fixed-shape array; returns float [n_draws, ...]. A statistic that this null cannot reproduce says
    that languages differ, not merely that experts differ in busyness (which any uniform null rejects).
    """
    counts, tokens = np.asarray(counts), np.asarray(tokens)
    pooled = np.clip(pooled_frequencies(counts, tokens), 0.0, 1.0)
    per_language = tokens.sum(axis=1).astype(np.int64)  # [n]
    rng = np.random.default_rng(seed)
    shape = (len(per_language),) + pooled.shape
    out = []
    for _ in range(int(n_draws)):
        drawn = rng.binomial(np.broadcast_to(per_language.reshape((-1,) + (1,) * pooled.ndim), shape), pooled)
        out.append(np.asarray(statistic(drawn / np.maximum(per_language, 1).reshape((-1,) + (1,) * pooled.ndim)),
                              dtype=float))
    return np.stack(out)


def label_permutation_null(statistic: Callable, counts: np.ndarray, tokens: np.ndarray,
                           permutations: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """The statistic with languages permuted across passages: in each permutation every passage's n
    language profiles are shuffled among the n languages, independently per passage (the null that a
    passage's profile does not depend on its language). Busyness and the text's content are kept.

    counts [n, P, ...], tokens [n, P]; statistic(F) as in :func:`pooled_null`; returns
    float [permutations, ...]."""
    counts, tokens = np.asarray(counts, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    if tokens.shape != counts.shape[:2]:
        raise ValueError(f"counts must be [n, P, ...] and tokens [n, P]; got {counts.shape} and {tokens.shape}")
    n, P = tokens.shape
    rng = np.random.default_rng(seed)
    out = []
    cols = np.arange(P)[None, :]
    for _ in range(int(permutations)):
        order = np.argsort(rng.random((n, P)), axis=0)  # a permutation of the languages per passage
        c, t = counts[order, cols], tokens[order, cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            F = c.sum(axis=1) / t.sum(axis=1).reshape((n,) + (1,) * (counts.ndim - 2))
        out.append(np.asarray(statistic(F), dtype=float))
    return np.stack(out)


def versus_null(observed, null: np.ndarray, level: float = 0.95) -> dict:
    """An effect read against its null: {'observed', 'null_mean', 'null_low', 'null_high' (the null's
    central ``level`` range), 'effect' (observed minus null mean), 'p' (one-sided, share of null draws
    at least as large as observed, (1 + k) / (1 + m))}; arrays elementwise."""
    null = np.asarray(null, dtype=float)
    observed = np.asarray(observed, dtype=float)
    m = np.isfinite(null).sum(axis=0)
    k = (null >= observed).sum(axis=0)
    low, high = np.nanquantile(null, [(1 - level) / 2, (1 + level) / 2], axis=0)
    mean = np.nanmean(null, axis=0)
    return {"observed": _squeeze(observed), "null_mean": _squeeze(mean), "null_low": _squeeze(low),
            "null_high": _squeeze(high), "effect": _squeeze(observed - mean), "p": _squeeze((1 + k) / (1 + m))}


# ---------------------------------------------------------------------------- bootstrap
@dataclass
class BootstrapResult:
    """A bootstrap interval.

    estimate: the statistic on the full data (float or array [...]); low, high: the interval's
    ends (same shape); samples: the statistic on each resample, [B, ...]; method: 'percentile' or
    'bca'; n_resamples: B; level: the two-sided coverage (0.95); n_units: passages resampled.
    """

    estimate: float | np.ndarray
    low: float | np.ndarray
    high: float | np.ndarray
    samples: np.ndarray = field(repr=False)
    method: str
    n_resamples: int
    level: float
    n_units: int

    @property
    def se(self) -> float | np.ndarray:
        """Bootstrap standard error: the standard deviation of the samples over resamples."""
        return _squeeze(np.nanstd(self.samples, axis=0, ddof=1))

    def excludes(self, value: float = 0.0) -> bool | np.ndarray:
        """True where the interval lies wholly above or wholly below ``value``."""
        return _squeeze((np.asarray(self.low) > value) | (np.asarray(self.high) < value))

    def text(self, digits: int = 3) -> str:
        """'0.412 [0.350, 0.470]' for a scalar statistic (see :func:`interval_text`)."""
        return interval_text(self.estimate, self.low, self.high, digits)

    def as_dict(self) -> dict:
        """The summary without the samples (for a table row)."""
        d = asdict(self)
        d.pop("samples")
        return d


def _squeeze(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def _chunk_rows(per_row: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, per_row))


def _evaluate(values_of: Callable[[np.ndarray], np.ndarray], weights_of: Callable[[int, int], np.ndarray],
              m_total: int, chunk: int) -> np.ndarray:
    """Stack ``values_of(W)`` [m, ...] over chunks of weight rows ``weights_of(start, stop)`` [m, P]."""
    parts = []
    for s in range(0, m_total, chunk):
        parts.append(np.asarray(values_of(weights_of(s, min(m_total, s + chunk))), dtype=np.float64))
    return np.concatenate(parts) if parts else np.zeros((0,))


def _jackknife_weights(n_units: int, max_groups: int) -> tuple[Callable[[int, int], np.ndarray], int]:
    """Leave-one-out weights (1 everywhere, 0 for the left-out unit); with more than ``max_groups``
    units, leave-one-block-out over ``max_groups`` contiguous blocks (a grouped jackknife)."""
    groups = min(n_units, int(max_groups))
    blocks = np.array_split(np.arange(n_units), groups)
    owner = np.empty(n_units, dtype=np.int64)
    for g, b in enumerate(blocks):
        owner[b] = g

    def weights(start, stop):
        return (owner[None, :] != np.arange(start, stop)[:, None]).astype(np.float64)

    return weights, groups


def _quantiles(samples: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-element quantiles of samples [B, ...] at probabilities q [...] (linear interpolation,
    as numpy's default), NaN samples ignored; NaN where an element has no finite sample."""
    S = np.sort(samples, axis=0)  # NaN last
    finite = np.isfinite(samples).sum(axis=0)
    q = np.broadcast_to(np.asarray(q, dtype=float), S.shape[1:])
    pos = np.clip(np.where(np.isfinite(q), q, 0.0), 0.0, 1.0) * np.maximum(finite - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(finite - 1, 0))
    frac = pos - lo
    a = np.take_along_axis(S, lo[None], axis=0)[0]
    b = np.take_along_axis(S, hi[None], axis=0)[0]
    out = a + (b - a) * frac
    return np.where((finite > 0) & np.isfinite(q), out, np.nan)


def _interval(estimate, samples, jack, method: str, level: float):
    """(low, high) for samples [B, ...]: percentile, or BCa with jackknife values jack [G, ...]."""
    alpha = (1.0 - level) / 2.0
    if method == "percentile":
        q_low = np.full(samples.shape[1:], alpha)
        q_high = np.full(samples.shape[1:], 1.0 - alpha)
    else:
        est = np.asarray(estimate, dtype=float)
        finite = np.isfinite(samples)
        nb = finite.sum(axis=0)
        below = ((samples < est) & finite).sum(axis=0) + 0.5 * ((samples == est) & finite).sum(axis=0)
        prop = np.clip(below / np.maximum(nb, 1), 0.5 / np.maximum(nb, 1), 1 - 0.5 / np.maximum(nb, 1))
        z0 = ndtri(prop)
        d = np.nanmean(jack, axis=0) - jack
        num = np.nansum(d ** 3, axis=0)
        den = 6.0 * np.nansum(d ** 2, axis=0) ** 1.5
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)

        def adjusted(z):
            t = z0 + z
            return ndtr(z0 + t / (1.0 - a * t))

        q_low = adjusted(ndtri(alpha))
        q_high = adjusted(ndtri(1.0 - alpha))
    return _quantiles(samples, q_low), _quantiles(samples, q_high)


def interval_result(estimate, samples: np.ndarray, jackknife: np.ndarray | None, method: str = "percentile",
                    level: float = 0.95, n_units: int = 0) -> BootstrapResult:
    """A :class:`BootstrapResult` from samples [B, ...] drawn by a caller's own resampling scheme (e.g.
    passages resampled within each of two corpora); ``jackknife`` [G, ...] leave-one-out values for BCa."""
    _check_method(method, level)
    estimate = np.asarray(estimate, dtype=float)
    low, high = _interval(estimate, samples, jackknife, method, level)
    return BootstrapResult(_squeeze(estimate), _squeeze(low), _squeeze(high), samples, method, int(len(samples)),
                           float(level), int(n_units))


def _check_method(method: str, level: float) -> None:
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _resample_weights(n_units: int, n_resamples: int, seed: int):
    rng = np.random.default_rng(seed)

    def weights(start, stop):  # called with consecutive ranges, so rows follow passage_resamples
        return multiplicities(_draw_rows(rng, n_units, stop - start), n_units)

    return weights


def _bootstrap_core(values_of, n_units: int, estimate, per_row: int, n_resamples: int, seed: int,
                    method: str, level: float, jackknife_max: int) -> BootstrapResult:
    _check_method(method, level)
    if n_resamples < 2:
        raise ValueError("a bootstrap interval needs at least 2 resamples")
    chunk = _chunk_rows(per_row)
    samples = _evaluate(values_of, _resample_weights(n_units, n_resamples, seed), n_resamples, chunk)
    estimate = np.asarray(estimate, dtype=float)
    samples = samples.reshape((n_resamples,) + estimate.shape)
    jack = None
    if method == "bca":
        if n_units < 2:
            raise ValueError("BCa needs at least 2 units for the jackknife")
        weights, groups = _jackknife_weights(n_units, jackknife_max)
        jack = _evaluate(values_of, weights, groups, chunk).reshape((groups,) + estimate.shape)
    low, high = _interval(estimate, samples, jack, method, level)
    return BootstrapResult(_squeeze(estimate), _squeeze(low), _squeeze(high), samples, method,
                           int(n_resamples), float(level), int(n_units))


def bootstrap(statistic: Callable, counts: np.ndarray, tokens: np.ndarray, n_resamples: int = DEFAULT_RESAMPLES,
              seed: int = 0, method: str = "percentile", level: float = 0.95, batched: bool = False,
              jackknife_max: int = 2000) -> BootstrapResult:
    """Passage bootstrap of a statistic of the languages' frequencies.

    counts int [n, P, ...] (activations per passage; e.g. [n, P, L, E]), tokens int [n, P].
    ``statistic(freq)`` receives frequencies float [n, ...] (activations per token) computed
    from one resample of passages (the same passages for every language) and returns a float
    or an array of any fixed shape (a distance matrix [n, n], per-layer values [L], ...).
    With ``batched=True`` it receives [m, n, ...] (m resamples at once) and returns [m, ...].

    Returns :class:`BootstrapResult`: ``estimate`` on the full data, the ``level`` interval
    (``method='percentile'``, or ``'bca'``: bias-corrected and accelerated, the acceleration from
    a leave-one-passage-out jackknife; above ``jackknife_max`` passages, leave-one-block-out over
    that many contiguous blocks), and ``samples`` [B, ...]. Resample b uses row b of
    ``passage_resamples(P, n_resamples, seed)``. A language with no token in a resample gets NaN
    frequencies; NaN samples are left out of the quantiles.
    """
    C, T, rest = _check_profile(counts, tokens)
    P, n = T.shape
    if (T.sum(axis=0) <= 0).any():
        raise ValueError("every language needs at least one token")

    def values_of(W):
        F = _frequencies_from_weights(C, T, rest, W)
        return statistic(F) if batched else np.stack([np.asarray(statistic(f), dtype=float) for f in F])

    full = _frequencies_from_weights(C, T, rest, np.ones((1, P)))
    estimate = np.asarray(statistic(full) if batched else statistic(full[0]), dtype=float)
    if batched:
        estimate = estimate[0]
    return _bootstrap_core(values_of, P, estimate, C.shape[1] + n, n_resamples, seed, method, level,
                           jackknife_max)


def bootstrap_units(statistic: Callable, n_units: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                    method: str = "percentile", level: float = 0.95, batched: bool = False,
                    jackknife_max: int = 2000) -> BootstrapResult:
    """Bootstrap of a statistic of weighted units, for what is not a frequency (e.g. perplexity
    from per-passage NLL sums and token counts).

    ``statistic(w)`` receives the multiplicities w float [n_units] of one resample (how often each
    unit was drawn; all ones for the full data; the jackknife sets one unit's weight to 0) and
    returns a float or a fixed-shape array; e.g. ``lambda w: (w @ nll) / (w @ tokens)``. With
    ``batched=True`` it receives W [m, n_units] and returns [m, ...]. Intervals, resamples and
    the result are as in :func:`bootstrap` (row b of ``passage_resamples(n_units, B, seed)``).
    """
    n_units = int(n_units)
    if n_units < 1:
        raise ValueError("at least one unit is needed")

    def values_of(W):
        return statistic(W) if batched else np.stack([np.asarray(statistic(w), dtype=float) for w in W])

    ones = np.ones((1, n_units))
    estimate = np.asarray(statistic(ones)[0] if batched else statistic(ones[0]), dtype=float)
    return _bootstrap_core(values_of, n_units, estimate, 4 * n_units, n_resamples, seed, method, level,
                           jackknife_max)


def exceeds(samples: np.ndarray, threshold, level: float = 0.95, one_sided: bool = False) -> np.ndarray:
    """Whether a quantity is above ``threshold`` beyond resampling noise: bool [...].

    samples [B, ...]: bootstrap samples (e.g. ``BootstrapResult.samples`` of per-language
    frequencies of one expert, [B, n]); threshold: scalar or broadcastable to [...]. True where
    the lower percentile bound exceeds the threshold: the ``(1 - level) / 2`` quantile (the low
    end of the two-sided ``level`` interval), or the ``1 - level`` quantile with ``one_sided``.
    NaN bounds give False.
    """
    samples = np.asarray(samples, dtype=float)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    q = (1.0 - level) if one_sided else (1.0 - level) / 2.0
    low = _quantiles(samples, np.full(samples.shape[1:], q))
    with np.errstate(invalid="ignore"):
        return np.asarray(np.nan_to_num(low, nan=-np.inf) > np.asarray(threshold, dtype=float))


def bootstrap_many(fn, n_units: int, n_resamples: int, seed: int, method: str = "bca",
                    rows_per_call: int = 64) -> dict:
    """Passage bootstrap of several statistics at once: ``fn(W)`` takes weights [m, P] and returns
    {name: array [m, ...]}; returns {name: BootstrapResult} (the same resamples for all, row b of
    ``passage_resamples(P, n_resamples, seed)``). ``fn`` sees at most ``rows_per_call`` rows."""
    shapes: dict = {}

    def flat(W):
        parts = []
        for s in range(0, len(W), rows_per_call):
            out = fn(W[s:s + rows_per_call])
            if not shapes:
                shapes.update({k: np.asarray(v).shape[1:] for k, v in out.items()})
            parts.append(np.concatenate([np.asarray(out[k], dtype=float).reshape(len(W[s:s + rows_per_call]), -1)
                                         for k in shapes], axis=1))
        return np.concatenate(parts)

    import warnings

    with warnings.catch_warnings():  # a statistic undefined on these data (NaN everywhere) stays NaN quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        res = bootstrap_units(flat, n_units, n_resamples, seed, method=method, batched=True)
    out, start = {}, 0
    for k, shape in shapes.items():
        size = int(np.prod(shape)) if shape else 1
        sl = slice(start, start + size)
        start += size

        def piece(a, shape=shape, sl=sl):
            return np.asarray(a, dtype=float).reshape(-1)[sl].reshape(shape) if np.ndim(a) else np.asarray(a)

        out[k] = BootstrapResult(_squeeze_scalar(piece(res.estimate)), _squeeze_scalar(piece(res.low)),
                                       _squeeze_scalar(piece(res.high)),
                                       res.samples[:, sl].reshape((n_resamples,) + shape), res.method,
                                       res.n_resamples, res.level, res.n_units)
    return out


def _squeeze_scalar(a):
    a = np.asarray(a, dtype=float)
    return float(a) if a.ndim == 0 else a


# ---------------------------------------------------------------------------- claims over languages
#: Below this many languages (or groups) a bootstrap over them is unreliable: the jackknife is used.
MIN_BOOTSTRAP_UNITS = 8


def _group_index(n_languages: int, groups) -> tuple[np.ndarray, int]:
    if groups is None:
        return np.arange(n_languages), n_languages
    labels = np.asarray(groups)
    if labels.shape != (n_languages,):
        raise ValueError(f"groups must give one label per language ({n_languages}), got shape {labels.shape}")
    _, owner = np.unique(labels, return_inverse=True)
    return owner.astype(np.int64), int(owner.max()) + 1


def crossed_bootstrap(statistic: Callable, n_languages: int, n_passages: int, n_resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0, groups=None, level: float = 0.95, batched: bool = False,
                      min_units: int = MIN_BOOTSTRAP_UNITS) -> BootstrapResult:
    """Interval of a statistic over languages, whose value varies with the text and with which
    languages were sampled: languages (or whole groups of them, e.g. families for a family claim)
    and passages are resampled together (a crossed, two-way bootstrap; percentile interval).

    ``statistic(lw, pw)`` receives language weights lw float [n_languages] (how often each language
    was drawn; with ``groups``, every language of a drawn group gets its group's count) and passage
    weights pw float [n_passages] (the same for every language: the passages are parallel), all
    ones for the full data, and returns a float, or S floats for S statistics at once (the same
    draws for all: estimate, low and high are then [S] and samples [B, S]). A statistic over pairs of languages weighs pair
    (i, j), i != j, by lw[i] * lw[j] and skips a language's pairs with its own copies. With
    ``batched=True`` it receives LW [m, n_languages], PW [m, n_passages] and returns [m].

    With fewer than ``min_units`` languages (groups) the bootstrap over them is unreliable; the
    interval is then estimate +- t(G-1) * sqrt(jackknife variance over the groups + passage-bootstrap
    variance) (method 'jackknife+passages'), and ``samples`` holds the passage bootstrap.
    ``n_units`` is the number of languages (groups) in both cases.
    """
    n_languages, n_passages = int(n_languages), int(n_passages)
    if n_languages < 2 or n_passages < 1:
        raise ValueError(f"a claim over languages needs at least 2 languages and 1 passage, got {n_languages}, "
                         f"{n_passages}")
    if n_resamples < 2:
        raise ValueError("a bootstrap interval needs at least 2 resamples")
    _check_method("percentile", level)
    owner, G = _group_index(n_languages, groups)

    def values_of(LW, PW):  # [m, S]
        if batched:
            return np.asarray(statistic(LW, PW), dtype=float).reshape(len(LW), -1)
        return np.array([np.atleast_1d(np.asarray(statistic(lw, pw), dtype=float)) for lw, pw in zip(LW, PW)])

    ones_l, ones_p = np.ones((1, n_languages)), np.ones((1, n_passages))
    estimate = values_of(ones_l, ones_p)[0]
    rng = np.random.default_rng(seed)
    PW = multiplicities(_draw_rows(rng, n_passages, n_resamples), n_passages)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"(All-NaN slice|Mean of empty slice|Degrees of freedom)", RuntimeWarning)
        if G >= min_units:
            GW = multiplicities(_draw_rows(rng, G, n_resamples), G)
            samples = values_of(GW[:, owner], PW)
            low, high = np.nanquantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
            return BootstrapResult(_one_or_many(estimate), _one_or_many(low), _one_or_many(high),
                                   _squeeze_samples(samples), "crossed", int(n_resamples), float(level), G)
        from scipy.stats import t as student_t

        leave_out = (owner[None, :] != np.arange(G)[:, None]).astype(float)  # [G, L]
        jack = values_of(leave_out, np.ones((G, n_passages)))
        var_languages = (G - 1) / G * np.nansum((jack - np.nanmean(jack, axis=0)) ** 2, axis=0)
        samples = values_of(np.ones((n_resamples, n_languages)), PW)
        var_passages = np.nanvar(samples, axis=0, ddof=1)
        half = student_t.ppf((1 + level) / 2, G - 1) * np.sqrt(var_languages + var_passages)
    return BootstrapResult(_one_or_many(estimate), _one_or_many(estimate - half),
                           _one_or_many(estimate + half), _squeeze_samples(samples), "jackknife+passages",
                           int(n_resamples), float(level), G)


def _one_or_many(values: np.ndarray):
    """[1] -> float (one statistic); [S] unchanged."""
    values = np.asarray(values, dtype=float).reshape(-1)
    return float(values[0]) if values.size == 1 else values


def _squeeze_samples(samples: np.ndarray) -> np.ndarray:
    """[B, 1] -> [B] (one statistic); [B, S] unchanged."""
    return samples[:, 0] if samples.shape[1] == 1 else samples


# ---------------------------------------------------------------------------- rank correlation
def spearman(a, b) -> float:
    """Spearman correlation of two 1-d sequences; NaN with fewer than 3 values or a constant side."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)





def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of x and y along the last axis, row by row: [m, n] -> [m] (NaN if constant)."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=-1)
    ry = rankdata(y, axis=-1)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


# ---------------------------------------------------------------------------- paired perplexity
def paired_ratio_interval(nll_a: np.ndarray, tokens_a: np.ndarray, nll_b: np.ndarray, tokens_b: np.ndarray,
                          n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, method: str = "percentile",
                          level: float = 0.95) -> BootstrapResult:
    """Perplexity ratio of condition b over condition a on the same passages, with a paired
    passage bootstrap interval.

    nll_a, nll_b float [P]: summed negative log-likelihood of each passage (nats); tokens_a,
    tokens_b int [P]: scored tokens of each passage (they may differ between conditions, e.g.
    another tokenizer). Ratio = ppl_b / ppl_a = exp(sum nll_b / sum tokens_b - sum nll_a /
    sum tokens_a): below 1, b predicts the text better. Each resample draws one set of passages
    for both conditions (paired), so the shared difficulty of the passages cancels.
    See :func:`ratio_decision` for the verdict.
    """
    arrays = [np.asarray(x, dtype=np.float64) for x in (nll_a, tokens_a, nll_b, tokens_b)]
    P = arrays[0].shape
    if len(P) != 1 or any(x.shape != P for x in arrays):
        raise ValueError("nll_a, tokens_a, nll_b, tokens_b must be 1-d arrays over the same passages")
    if arrays[1].sum() <= 0 or arrays[3].sum() <= 0:
        raise ValueError("both conditions need scored tokens")
    M = np.stack(arrays, axis=1)  # [P, 4]

    def ratio(W):
        s = np.atleast_2d(W) @ M
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.exp(s[:, 2] / s[:, 3] - s[:, 0] / s[:, 1])

    return bootstrap_units(ratio, P[0], n_resamples, seed, method, level, batched=True)


def ratio_decision(result, a: str = "a", b: str = "b", null: float = 1.0) -> str:
    """'b better' (the whole interval of ppl_b / ppl_a below 1), 'a better' (wholly above), or
    'indistinguishable' (it contains 1), from a :class:`BootstrapResult` or a (low, high) pair;
    ``a`` and ``b`` name the conditions in the answer."""
    low, high = (result.low, result.high) if isinstance(result, BootstrapResult) else result
    if not (np.isfinite(low) and np.isfinite(high)):
        return "indistinguishable"
    if high < null:
        return f"{b} better"
    if low > null:
        return f"{a} better"
    return "indistinguishable"


# ---------------------------------------------------------------------------- multiple testing
def _as_p(p) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=float)
    valid = np.isfinite(p)
    if ((p[valid] < 0) | (p[valid] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    return p, valid


def holm(p) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error): float array shaped like p.

    Sorted ascending, p_(i) -> max_{j <= i} min(1, (m - j + 1) p_(j)), m = the number of finite
    p-values; NaN stays NaN and does not count in m. Reject at level alpha where adjusted <= alpha.
    """
    p, valid = _as_p(p)
    out = np.full(p.shape, np.nan)
    v = p[valid]
    m = len(v)
    if m:
        order = np.argsort(v, kind="stable")
        adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * v[order]))
        res = np.empty(m)
        res[order] = adj
        out[valid] = res
    return out


def benjamini_hochberg(p) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values; false discovery rate): float array shaped like p.

    Sorted ascending, p_(i) -> min_{j >= i} min(1, m p_(j) / j), m = the number of finite
    p-values; NaN stays NaN and does not count in m.
    """
    p, valid = _as_p(p)
    out = np.full(p.shape, np.nan)
    v = p[valid]
    m = len(v)
    if m:
        order = np.argsort(v, kind="stable")
        scaled = v[order] * m / np.arange(1, m + 1)
        adj = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
        res = np.empty(m)
        res[order] = adj
        out[valid] = res
    return out


CORRECTIONS = {"holm": holm, "bh": benjamini_hochberg, "fdr_bh": benjamini_hochberg,
               "benjamini_hochberg": benjamini_hochberg}


def correct(table: pd.DataFrame, column: str = "p_value", method: str = "holm",
            out: str = "p_adjusted", by: str | None = None) -> pd.DataFrame:
    """A copy of ``table`` with column ``out`` = the ``method`` adjustment of ``column`` over all
    its rows ('holm', or 'bh' / 'benjamini_hochberg'); NaN p-values stay NaN and are not counted.
    With ``by``, each value of that column is its own family (one family per claim: a test cited in
    two chapters gets the same adjusted p-value in both)."""
    fn = CORRECTIONS.get(method)
    if fn is None:
        raise ValueError(f"method must be one of {sorted(CORRECTIONS)}, got {method!r}")
    res = table.copy()
    if by is None:
        res[out] = fn(res[column].to_numpy(dtype=float))
        return res
    res[out] = np.nan
    for _, rows in res.groupby(by, sort=False).groups.items():
        res.loc[rows, out] = fn(res.loc[rows, column].to_numpy(dtype=float))
    return res


# ---------------------------------------------------------------------------- noise floor
@dataclass
class SplitHalfResult:
    """Within-language noise floor: per_language float [n] (mean split-half distance of each
    language), overall (mean over languages), samples float [n_splits, n]."""

    per_language: np.ndarray
    overall: float
    samples: np.ndarray = field(repr=False)


def _distance_function(distance):
    if callable(distance):
        return distance
    return lambda X: analysis.profile_distances(X, distance)


def split_half_distance(counts: np.ndarray, tokens: np.ndarray, distance="js", n_splits: int = 100,
                        seed: int = 0) -> SplitHalfResult:
    """How far a language is from itself: the distance between its frequency profile from a random
    half of the passages and from the other half.

    counts int [n, P, ...], tokens int [n, P]; distance: a function of stacked profiles
    X [m, ...] -> [m, m] (e.g. ``analysis.js_distances``; the same one the chapter uses between
    languages) or a metric name of ``analysis.profile_distances`` ('js', 'cosine'). Each split
    shuffles the passages (seeded), takes the first floor(P / 2) as one half and the rest as the
    other, the same split for every language. Returns :class:`SplitHalfResult`.

    Reading it: between-language distances far above this floor are not resampling noise. Each
    half holds half the tokens, so the floor is conservative: for distances that grow linearly
    with small profile differences it is about sqrt(2) times the noise in a distance between two
    full-data profiles.
    """
    C, T, rest = _check_profile(counts, tokens)
    P, n = T.shape
    if P < 2:
        raise ValueError("a split half needs at least 2 passages")
    fn = _distance_function(distance)
    rng = np.random.default_rng(seed)
    half = P // 2
    out = np.empty((n_splits, n))
    for s in range(n_splits):
        w = np.zeros((1, P))
        w[0, rng.permutation(P)[:half]] = 1.0
        halves = _frequencies_from_weights(C, T, rest, np.concatenate([w, 1.0 - w]))  # [2, n, ...]
        D = np.asarray(fn(halves.reshape((2 * n,) + rest)), dtype=float)
        out[s] = D[np.arange(n), n + np.arange(n)]
    per = out.mean(axis=0)
    return SplitHalfResult(per, float(np.nanmean(per)), out)


# ---------------------------------------------------------------------------- words for prose
def evidence(p: float, alpha: float = 0.05) -> str:
    """Words for a p-value in generated prose: 'p = 0.003, significant at 0.05' /
    'p = 0.21: weak evidence, not significant at 0.05' / 'not testable on these data' (NaN)."""
    if p is None or not np.isfinite(p):
        return "not testable on these data"
    shown = "p < 0.001" if p < 0.001 else f"p = {p:.3g}"
    if p < alpha:
        return f"{shown}, significant at {alpha:g}"
    return f"{shown}: weak evidence, not significant at {alpha:g}"


#: Words for the size of a correlation |r| (our wording, Cohen's conventional steps): below 0.1
#: negligible, below 0.3 weak, below 0.5 moderate, else strong.
EFFECT_WORDS = ((0.1, "negligible"), (0.3, "weak"), (0.5, "moderate"), (float("inf"), "strong"))


def effect_size(r: float) -> str:
    """'negligible' / 'weak' / 'moderate' / 'strong' for a correlation (see EFFECT_WORDS); '' for NaN."""
    if r is None or not np.isfinite(r):
        return ""
    return next(word for bound, word in EFFECT_WORDS if abs(r) < bound)


def report(value: float, p: float | None = None, symbol: str = "r", digits: int = 3, alpha: float = 0.05,
           size: bool | None = None) -> str:
    """A statistic for generated prose: 'r = +0.412 (moderate; p < 0.001, significant at 0.05)', or
    'r not testable on these data' when the value is NaN (e.g. a constant matrix). ``size`` adds the
    effect-size word (:func:`effect_size`); default: for correlations (symbol 'r' or 'rho')."""
    if value is None or not np.isfinite(value):
        return f"{symbol} not testable on these data"
    text = f"{symbol} = {value:+.{digits}f}"
    size = symbol in ("r", "rho") if size is None else size
    notes = ([f"{effect_size(value)} correlation" if symbol in ("r", "rho") else effect_size(value)] if size else []) + \
        ([evidence(p, alpha)] if p is not None else [])
    return f"{text} ({'; '.join(notes)})" if notes else text


def finite(x) -> bool:
    try:
        return x is not None and bool(np.isfinite(float(x)))
    except (TypeError, ValueError):
        return False


def interval_text(estimate, low=None, high=None, digits: int = 3) -> str:
    """'0.412 [0.350, 0.470]': an estimate and its interval, all with ``digits`` decimals.
    ``estimate`` may be a scalar :class:`BootstrapResult`. 'not estimable' for a NaN estimate;
    '0.412 [interval not estimable]' for a NaN bound."""
    if isinstance(estimate, BootstrapResult):
        estimate, low, high = estimate.estimate, estimate.low, estimate.high
    if not finite(estimate):
        return "not estimable"
    text = f"{float(estimate):.{digits}f}"
    if not (finite(low) and finite(high)):
        return f"{text} [interval not estimable]"
    return f"{text} [{float(low):.{digits}f}, {float(high):.{digits}f}]"


def p_text(p_raw: float, p_adjusted: float | None = None, method: str = "Holm") -> str:
    """'p = 0.003 (Holm-adjusted 0.012)': a raw and an adjusted p-value for prose (3 significant
    digits, below 0.001 as '< 0.001'); without ``p_adjusted`` just 'p = 0.003'; NaN:
    'p not available'."""
    def fmt(p):
        return "< 0.001" if p < 0.001 else f"{p:.3g}"

    if not finite(p_raw):
        return "p not available"
    shown = "p < 0.001" if p_raw < 0.001 else f"p = {p_raw:.3g}"
    if p_adjusted is None:
        return shown
    adj = fmt(float(p_adjusted)) if finite(p_adjusted) else "not available"
    return f"{shown} ({method}-adjusted {adj})"

