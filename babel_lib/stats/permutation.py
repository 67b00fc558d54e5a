"""Permutation tests over languages: Mantel tests on distance matrices (plain, partial, with several
covariates), the same-label pair AUC with its test within strata, and correlations between
per-language quantities. Languages are the unit that is permuted (rows and columns of a distance
matrix together; within strata when controlling for script); p = (1 + #{T_perm >= T}) /
(1 + permutations), never below 1 / (permutations + 1). :mod:`babel_lib.stats` re-exports every
public name, so chapters use one module for their statistics.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import rankdata

#: Permutations for a headline p-value (resolution 1 / 10,000).
HEADLINE_PERMUTATIONS = 9999
#: Budget for the intermediate arrays of one chunk of permutations (float64 elements, 64 MiB).
_CHUNK_ELEMENTS = 8_000_000


# ---------------------------------------------------------------------------- Mantel tests
@dataclass
class MantelResult:
    """A Mantel test: statistic r (Pearson or Spearman on the upper triangles), one-sided p-value
    (r greater than under random relabelling), number of permutations, n items, method."""

    r: float
    p_value: float
    permutations: int
    n: int
    method: str

    def as_dict(self) -> dict:
        return asdict(self)


def _upper(M: np.ndarray) -> np.ndarray:
    M = np.asarray(M, dtype=float)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"a square distance matrix is needed, got shape {M.shape}")
    return M[np.triu_indices(len(M), 1)]


def _prepare(M: np.ndarray, method: str) -> np.ndarray:
    """The matrix whose upper triangle enters the correlation (ranks for Spearman), standardised."""
    v = _upper(M)
    if method == "spearman":
        v = rankdata(v)
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    sd = v.std()
    if sd == 0:
        raise ValueError("a constant distance matrix has no correlation (all pairs equal)")
    out = np.zeros((len(M), len(M)))
    out[np.triu_indices(len(M), 1)] = (v - v.mean()) / sd
    return out + out.T


def _permuted_corr(X: np.ndarray, yv: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """corr(upper(X[p][:, p]), yv) for each permutation p; X and yv standardised."""
    n = len(X)
    iu = np.triu_indices(n, 1)
    out = np.empty(len(perms))
    chunk = max(1, 2_000_000 // (n * n))
    for s in range(0, len(perms), chunk):
        P = perms[s:s + chunk]
        sub = X[P[:, :, None], P[:, None, :]][:, iu[0], iu[1]]
        out[s:s + chunk] = sub @ yv / len(yv)
    return out


def permutation_rows(n: int, permutations: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n) for _ in range(permutations)]) if permutations else np.zeros((0, n), int)


def mantel(x: np.ndarray, y: np.ndarray, permutations: int = HEADLINE_PERMUTATIONS, seed: int = 0,
           method: str = "pearson") -> MantelResult:
    """Mantel test: correlation of two [n, n] distance matrices over the n(n-1)/2 pairs, with a
    permutation p-value (rows and columns of x relabelled together; one-sided, greater).

    p = (1 + #{r_perm >= r}) / (1 + permutations), so never below 1 / (permutations + 1).
    method: 'pearson' (default) or 'spearman' (ranks of the distances).
    """
    if len(x) != len(y):
        raise ValueError("both matrices must cover the same items")
    if len(x) < 3:
        raise ValueError("a Mantel test needs at least 3 items")
    X = _prepare(x, method)
    yv = _upper(_prepare(y, method))
    r = float(_upper(X) @ yv / len(yv))
    perm_r = _permuted_corr(X, yv, permutation_rows(len(X), permutations, seed))
    p = (1 + int((perm_r >= r - 1e-12).sum())) / (1 + permutations)
    return MantelResult(r, p, permutations, len(X), method)


def partial_mantel(x: np.ndarray, y: np.ndarray, z: np.ndarray, permutations: int = HEADLINE_PERMUTATIONS,
                   seed: int = 0, method: str = "pearson") -> MantelResult:
    """Partial Mantel test: correlation of x and y with z held fixed,
    r_xy.z = (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2)); x is permuted (Legendre and
    Legendre's permutation of the raw matrix), one-sided p as in :func:`mantel`.

    Use it to separate two explanations, e.g. profile distance ~ family distance given script.
    """
    if not len(x) == len(y) == len(z):
        raise ValueError("all matrices must cover the same items")
    X = _prepare(x, method)
    yv = _upper(_prepare(y, method))
    zv = _upper(_prepare(z, method))
    m = len(yv)
    r_yz = float(yv @ zv / m)
    if abs(r_yz) >= 1 - 1e-12:
        raise ValueError("y and z are perfectly correlated: nothing is left to test")

    def partial(rxy, rxz):
        return (rxy - rxz * r_yz) / np.sqrt(np.clip((1 - rxz ** 2) * (1 - r_yz ** 2), 1e-300, None))

    xv = _upper(X)
    r = float(partial(xv @ yv / m, xv @ zv / m))
    perms = permutation_rows(len(X), permutations, seed)
    r_xy = _permuted_corr(X, yv, perms)
    r_xz = _permuted_corr(X, zv, perms)
    perm_r = partial(r_xy, r_xz)
    p = (1 + int((perm_r >= r - 1e-12).sum())) / (1 + permutations)
    return MantelResult(r, p, permutations, len(X), method)


def mantel_table(tests: dict, permutations: int = HEADLINE_PERMUTATIONS, seed: int = 0,
                 method: str = "pearson") -> pd.DataFrame:
    """Run several (partial) Mantel tests: tests = {name: (x, y)} or {name: (x, y, z)} (z held fixed).

    Returns test, r, p_value, permutations, n, method, note; a test that is undefined on
    these data (a constant matrix, y and z perfectly correlated, fewer than 3 items) gets NaN
    and the reason in ``note`` instead of an error, so a chapter still runs on small inputs.
    """
    rows = []
    for name, mats in tests.items():
        try:
            res = (mantel(*mats, permutations=permutations, seed=seed, method=method) if len(mats) == 2
                   else partial_mantel(*mats, permutations=permutations, seed=seed, method=method))
            rows.append({"test": name, **res.as_dict(), "note": ""})
        except ValueError as err:
            rows.append({"test": name, "r": float("nan"), "p_value": float("nan"), "permutations": permutations,
                         "n": len(mats[0]), "method": method, "note": str(err)})
    return pd.DataFrame(rows, columns=["test", "r", "p_value", "permutations", "n", "method", "note"])


# ---------------------------------------------------------------------------- pair AUC, stratified test
def same_label(labels) -> np.ndarray:
    """[n, n] bool: True where two items share a label (e.g. a family or a script)."""
    labels = np.asarray(labels)
    return labels[:, None] == labels[None, :]


def _auc_from_ranks(rank_sum_same, n_same, n_diff):
    """P(a same-label distance < a different-label distance) + half the ties, from the rank sum of
    the same-label distances among all compared distances (Mann-Whitney); NaN if a side is empty."""
    with np.errstate(divide="ignore", invalid="ignore"):
        u_same_larger = rank_sum_same - n_same * (n_same + 1) / 2.0
        return np.where((n_same > 0) & (n_diff > 0),
                        1.0 - u_same_larger / np.where(n_same * n_diff > 0, n_same * n_diff, 1), np.nan)


def pair_auc(D: np.ndarray, same: np.ndarray, compare_mask: np.ndarray | None = None) -> float:
    """Common-language effect size of "same-label pairs are closer": the probability that a
    randomly chosen same-label pair has a smaller distance than a randomly chosen
    different-label pair, ties counting half (the Mann-Whitney AUC), over the pairs i < j.

    D float [n, n] distances; same bool [n, n] (:func:`same_label`); compare_mask bool [n, n]:
    which pairs take part (default all), e.g. ``same_label(scripts)`` for pairs within a script.
    0.5 = no effect, 1 = every same-label pair closer than every different-label pair. NaN when
    either side has no pair. A plain function of D, so it can be bootstrapped over passages:
    ``bootstrap(lambda f: pair_auc(js_distances(f), same, mask), counts, tokens)``.
    """
    d = _upper(D)
    s = _upper(np.asarray(same, dtype=float)).astype(bool)
    keep = np.ones_like(s) if compare_mask is None else _upper(np.asarray(compare_mask, dtype=float)).astype(bool)
    d, s = d[keep], s[keep]
    r = rankdata(d)
    return float(_auc_from_ranks(r[s].sum(), s.sum(), (~s).sum()))


STRATUM_CLASSES = ("same stratum", "different strata")


@dataclass
class StratifiedResult:
    """A label effect on distances tested within strata (:func:`stratified_permutation_test`).

    classes: ('same stratum', 'different strata'); auc [2]: per class, the probability that a
    same-label pair is closer than a different-label pair (ties half; NaN where a side is empty);
    n_same, n_different [2]: same-label and different-label pairs in each class; p_values [2]:
    one-sided permutation p per class; auc_overall: the mean of the class AUCs weighted by their
    numbers of compared pair couples (n_same x n_different); p_value: its one-sided permutation
    p; permutations; n: items.
    """

    classes: tuple
    auc: np.ndarray
    n_same: np.ndarray
    n_different: np.ndarray
    p_values: np.ndarray
    auc_overall: float
    p_value: float
    permutations: int
    n: int

    def table(self) -> pd.DataFrame:
        """One row per class plus 'overall': pairs_class, same_label_pairs, different_label_pairs,
        auc, p_value."""
        rows = [{"pairs_class": c, "same_label_pairs": int(s), "different_label_pairs": int(d),
                 "auc": float(a), "p_value": float(p)}
                for c, s, d, a, p in zip(self.classes, self.n_same, self.n_different, self.auc, self.p_values)]
        rows.append({"pairs_class": "overall", "same_label_pairs": int(self.n_same.sum()),
                     "different_label_pairs": int(self.n_different.sum()), "auc": self.auc_overall,
                     "p_value": self.p_value})
        return pd.DataFrame(rows)


def within_strata_permutations(strata: np.ndarray, permutations: int, seed: int) -> np.ndarray:
    """int [permutations, n]: each row maps item i to the item whose label it takes; items are
    only shuffled among items of their own stratum."""
    rng = np.random.default_rng(seed)
    n = len(strata)
    out = np.tile(np.arange(n), (permutations, 1))
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        if len(members) > 1:
            out[:, members] = rng.permuted(np.tile(members, (permutations, 1)), axis=1)
    return out


def stratified_permutation_test(D: np.ndarray, labels, strata, permutations: int = HEADLINE_PERMUTATIONS,
                                seed: int = 0) -> StratifiedResult:
    """Do items with the same label (family) have closer profiles than items with different labels,
    once strata (scripts) are accounted for?

    D float [n, n] distances; labels [n] (e.g. families); strata [n] (e.g. scripts). The pairs
    i < j fall into two classes: both items in the same stratum, or in different strata. In each
    class the statistic is the AUC of :func:`pair_auc`: the probability that a same-label pair of
    that class is closer than a different-label pair of that class (ties half). So a family is
    only compared with other families *within the same kind of script relation*, and a family
    effect that is really a script effect does not count. Overall: the class AUCs weighted by
    their numbers of compared couples (n_same x n_different).

    Null distribution: labels permuted *within strata* (every item keeps its stratum; each
    stratum keeps its label composition, so the numbers of pairs are fixed), ``permutations``
    times, seeded; one-sided p = (1 + #{AUC_perm >= AUC}) / (1 + permutations) (same-label pairs
    closer). With a single stratum this is the plain, unstratified test. NaN AUC and p where a
    class (or every class) lacks same-label or different-label pairs.
    """
    D = np.asarray(D, dtype=float)
    labels = np.asarray(labels)
    strata = np.asarray(strata)
    n = len(D)
    if labels.shape != (n,) or strata.shape != (n,):
        raise ValueError(f"labels and strata must have one entry per item ({n})")
    if n < 3:
        raise ValueError("the test needs at least 3 items")
    iu = np.triu_indices(n, 1)
    d = _upper(D)
    _, lab = np.unique(labels, return_inverse=True)
    cls_same_stratum = same_label(strata)[iu]
    masks = [cls_same_stratum, ~cls_same_stratum]
    ranks = np.zeros((2, len(d)))
    for c, m in enumerate(masks):
        if m.any():
            ranks[c, m] = rankdata(d[m])

    def stats(lab_rows):  # lab_rows int [m, n] -> class AUCs [m, 2], n_same [m, 2]
        same = lab_rows[:, iu[0]] == lab_rows[:, iu[1]]  # [m, pairs]
        sf = same.astype(np.float64)
        rank_sum = sf @ ranks.T  # [m, 2]
        n_same = sf @ np.stack(masks).T.astype(np.float64)
        n_all = np.array([m.sum() for m in masks], dtype=np.float64)
        return _auc_from_ranks(rank_sum, n_same, n_all - n_same), n_same, n_all - n_same

    def overall(auc, n_same, n_diff):
        w = np.where(np.isfinite(auc), n_same * n_diff, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(w.sum(axis=1) > 0, (np.nan_to_num(auc) * w).sum(axis=1) / w.sum(axis=1), np.nan)

    auc, n_same, n_diff = stats(lab[None, :])
    auc_all = overall(auc, n_same, n_diff)
    perm_auc = np.zeros((0, 2))
    perm_all = np.zeros(0)
    if permutations:
        perms = within_strata_permutations(strata, permutations, seed)
        chunk = max(1, _CHUNK_ELEMENTS // max(1, len(d)))
        a_parts, o_parts = [], []
        for s in range(0, permutations, chunk):
            a, ns, nd = stats(lab[perms[s:s + chunk]])
            a_parts.append(a)
            o_parts.append(overall(a, ns, nd))
        perm_auc, perm_all = np.concatenate(a_parts), np.concatenate(o_parts)

    def p_of(obs, null):
        if not np.isfinite(obs):
            return float("nan")
        return (1 + int((null >= obs - 1e-12).sum())) / (1 + permutations)

    p_class = np.array([p_of(auc[0, c], perm_auc[:, c]) for c in range(2)])
    return StratifiedResult(STRATUM_CLASSES, auc[0], n_same[0].astype(int), n_diff[0].astype(int), p_class,
                            float(auc_all[0]), p_of(auc_all[0], perm_all), int(permutations), n)


# ---------------------------------------------------------------------------- correlations over languages
@dataclass
class PermutationResult:
    """A permutation test over languages: statistic, p_value, permutations, n (languages used),
    method, alternative ('two-sided', 'greater', 'less'), note (how the null was built)."""

    statistic: float
    p_value: float
    permutations: int
    n: int
    method: str
    alternative: str
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _standardise(v: np.ndarray) -> np.ndarray:
    v = v - v.mean(axis=-1, keepdims=True)
    sd = np.sqrt((v ** 2).mean(axis=-1, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sd > 0, v / np.where(sd > 0, sd, 1.0), np.nan)


def permutation_p(observed: float, null: np.ndarray, alternative: str, permutations: int) -> float:
    if not np.isfinite(observed):
        return float("nan")
    if alternative == "two-sided":
        hits = np.abs(null) >= abs(observed) - 1e-12
    elif alternative == "greater":
        hits = null >= observed - 1e-12
    elif alternative == "less":
        hits = null <= observed + 1e-12
    else:
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    return (1 + int(hits.sum())) / (1 + permutations)


def sign_flip(differences, permutations: int = HEADLINE_PERMUTATIONS, seed: int = 0,
              alternative: str = "two-sided") -> tuple:
    """Paired sign-flip permutation test over languages (the rows): is the mean of the per-language
    differences zero? differences [n] or [n, k] (k tests, e.g. layers, sharing the sign patterns).

    Under the null each sign is equally likely. Exact (all 2^n patterns, the identity included;
    p = share of patterns at least as extreme) when 2^n <= permutations + 1, else ``permutations``
    random patterns (p = (1 + hits) / (1 + permutations)). alternative: 'two-sided', 'greater'
    (differences above 0) or 'less'. A NaN difference counts as 0 in its column and the mean is over
    the finite ones. Returns (statistic, p, patterns used): floats for [n], arrays [k] for [n, k]."""
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be 'two-sided', 'greater' or 'less', got {alternative!r}")
    d = np.asarray(differences, dtype=float)
    single = d.ndim == 1
    d = d[:, None] if single else d
    n = d.shape[0]
    if n < 1:
        raise ValueError("a sign-flip test needs at least one language")
    exact = 2 ** n <= permutations + 1
    if exact:
        signs = 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1)
    else:
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(permutations, n))
    finite = np.isfinite(d)
    z = np.where(finite, d, 0.0)
    m = np.maximum(finite.sum(axis=0), 1)
    obs = z.sum(axis=0) / m
    null = signs @ z / m  # [patterns, k]
    tol = 1e-12 * np.maximum(1.0, np.abs(z).max(axis=0))
    if alternative == "greater":
        hits = (null >= obs - tol).sum(axis=0)
    elif alternative == "less":
        hits = (null <= obs + tol).sum(axis=0)
    else:
        hits = (np.abs(null) >= np.abs(obs) - tol).sum(axis=0)
    p = hits / len(signs) if exact else (1 + hits) / (1 + permutations)
    p = np.where(finite.any(axis=0), p, np.nan)
    return (float(obs[0]), float(p[0]), len(signs)) if single else (obs, p, len(signs))


def sign_flip_test(d, permutations: int = HEADLINE_PERMUTATIONS, seed: int = 0,
                   alternative: str = "two-sided") -> PermutationResult:
    """:func:`sign_flip` of one set of per-language differences (e.g. log perplexity ratios), NaN
    languages left out, as a :class:`PermutationResult`."""
    d = np.asarray(d, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        raise ValueError("a test over languages needs at least 2 languages")
    statistic, p, used = sign_flip(d, permutations, seed, alternative)
    exact = 2 ** len(d) <= permutations + 1
    return PermutationResult(statistic, p, int(used), len(d), f"sign-flip ({'exact' if exact else 'random'})",
                             alternative, "signs of the per-language differences flipped, "
                             + ("all patterns" if exact else "at random"))


def sign_flip_interval(d, level: float = 0.95, permutations: int = HEADLINE_PERMUTATIONS,
                       seed: int = 0) -> tuple[float, float, float]:
    """The mean of per-language differences d [n] (NaN left out) with the interval that inverts the
    two-sided :func:`sign_flip` test: every shift theta whose test of ``d - theta`` is not rejected at
    ``1 - level``, with the same sign patterns (exact when 2^n <= permutations + 1). So the interval
    excludes 0 exactly when the test of d gives p < 1 - level: an interval and a p-value that cannot
    disagree, which a percentile bootstrap over a handful of languages does not promise.

    Returns (mean, low, high); (mean, -inf, inf) when no shift can be rejected (with n languages the
    smallest exact p is 2 / 2^n: at level 0.95 at least 6 languages are needed); NaN bounds for fewer
    than 2 languages. Bounds found on a grid over [min d, max d] refined by bisection (1e-9 of the range)."""
    d = np.asarray(d, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    if n < 2:
        return (float(d.mean()) if n else float("nan")), float("nan"), float("nan")
    alpha = 1 - level

    def p_of(theta):  # theta [m] -> p [m]: sign_flip of d - theta, one column a shift (the same patterns)
        theta = np.atleast_1d(theta)
        return np.concatenate([np.atleast_1d(sign_flip(d[:, None] - theta[None, i:i + 256], permutations, seed)[1])
                               for i in range(0, len(theta), 256)])

    mean = float(d.mean())
    lo, hi = float(d.min()), float(d.max())
    beyond = 1e-6 * max(hi - lo, 1e-12)  # just outside the data: every difference has one sign
    if p_of(lo - beyond)[0] >= alpha or p_of(hi + beyond)[0] >= alpha:
        return mean, -math.inf, math.inf
    step = (hi - lo) / 2000
    grid = np.union1d(np.linspace(lo, hi, 2001), [mean])  # the mean (p = 1) keeps `accepted` non-empty
    accepted = grid[p_of(grid) >= alpha]

    def edge(inside, outside):  # bisection between an accepted and a rejected shift
        for _ in range(100):
            if abs(outside - inside) <= 1e-9 * max(hi - lo, 1e-300):
                break
            mid = (inside + outside) / 2
            inside, outside = (mid, outside) if p_of(mid)[0] >= alpha else (inside, mid)
        return inside

    return mean, edge(float(accepted.min()), float(accepted.min()) - step), \
        edge(float(accepted.max()), float(accepted.max()) + step)


def _paired_finite(x, y):
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("x and y must be 1-d arrays over the same languages")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def permutation_test_over_languages(x, y, statistic: str | Callable = "spearman",
                                    permutations: int = HEADLINE_PERMUTATIONS, seed: int = 0,
                                    alternative: str = "two-sided") -> PermutationResult:
    """Association of two per-language quantities x, y [n] (e.g. high-frequency experts vs tokens
    per character), with a permutation p-value: y's values shuffled over languages.

    statistic: 'spearman' (default; Pearson on average ranks), 'pearson', or a function
    ``f(x, y) -> float``. p = (1 + #{|T_perm| >= |T|}) / (1 + permutations) for 'two-sided'
    (default; 'greater' / 'less' one-sided). Languages with NaN in x or y are left out (n counts
    the rest). A constant x or y gives NaN.
    """
    x, y = _paired_finite(x, y)
    n = len(x)
    if n < 3:
        raise ValueError("a correlation over languages needs at least 3 languages")
    perms = permutation_rows(n, permutations, seed)
    if callable(statistic):
        obs = float(statistic(x, y))
        null = np.array([statistic(x, y[p]) for p in perms], dtype=float)
        name = getattr(statistic, "__name__", "custom")
    elif statistic in ("spearman", "pearson"):
        if statistic == "spearman":
            x, y = rankdata(x), rankdata(y)
        xs, ys = _standardise(x), _standardise(y)
        obs = float(xs @ ys / n)
        null = ys[perms] @ xs / n if permutations else np.zeros(0)
        name = statistic
    else:
        raise ValueError(f"statistic must be 'spearman', 'pearson' or a function, got {statistic!r}")
    return PermutationResult(obs, permutation_p(obs, null, alternative, permutations), int(permutations), n, name,
                             alternative, "y permuted over languages")


def partial_correlation(x, y, covariates, method: str = "pearson", permutations: int = HEADLINE_PERMUTATIONS,
                        seed: int = 0, alternative: str = "two-sided") -> PermutationResult:
    """Correlation of x and y [n] with covariates [n] or [n, k] held fixed, with a permutation p.

    r = corr(e_x, e_y), the residuals of x and of y after least squares on the covariates (with
    an intercept); method='spearman' ranks x, y and each covariate first. P-value: Freedman and
    Lane (1983): y* = fitted_y + permuted e_y, re-residualised on the covariates, r* = corr(e_x,
    residual of y*); p = (1 + #{|r*| >= |r|}) / (1 + permutations) ('two-sided'), seeded. Rows
    with any NaN are left out.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    Z = np.asarray(covariates, dtype=float)
    Z = Z[:, None] if Z.ndim == 1 else Z
    if x.ndim != 1 or y.shape != x.shape or Z.ndim != 2 or len(Z) != len(x):
        raise ValueError("x, y [n] and covariates [n] or [n, k] over the same languages are needed")
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(Z).all(axis=1)
    x, y, Z = x[keep], y[keep], Z[keep]
    n, k = Z.shape
    if n < k + 3:
        raise ValueError(f"a partial correlation with {k} covariate(s) needs at least {k + 3} languages")
    if method == "spearman":
        x, y = rankdata(x), rankdata(y)
        Z = np.column_stack([rankdata(c) for c in Z.T])
    elif method != "pearson":
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    A = np.column_stack([np.ones(n), Z])
    Q, _ = np.linalg.qr(A)

    def resid(V):  # V [..., n] -> residuals after projecting on A's columns
        return V - (V @ Q) @ Q.T

    ex, ey = resid(x), resid(y)
    xs = _standardise(ex)
    obs = float(xs @ _standardise(ey) / n)
    perms = permutation_rows(n, permutations, seed)
    null = _standardise(resid(ey[perms])) @ xs / n if permutations else np.zeros(0)
    return PermutationResult(obs, permutation_p(obs, null, alternative, permutations), int(permutations), n,
                             f"partial {method}", alternative, "Freedman-Lane: residuals of y permuted")



# ---------------------------------------------------------------------------- Mantel test, several covariates
def orthonormal_basis(A: np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """An orthonormal basis [m, r] of the column space of A [m, k] (columns that add nothing are
    dropped: a constant or duplicated covariate)."""
    U, s, _ = np.linalg.svd(A, full_matrices=False)
    return U[:, s > tol * max(s[0], 1e-300)] if len(s) else U


def partial_mantel_covariates(x: np.ndarray, y: np.ndarray, covariates, permutations: int = HEADLINE_PERMUTATIONS,
                              seed: int = 0, method: str = "pearson", permute: str = "raw") -> MantelResult:
    """Partial Mantel test with several covariate matrices held fixed at once: the correlation of
    x and y [n, n] over the n(n-1)/2 pairs after both pair vectors are residualised on the
    covariates' pair vectors (least squares with an intercept).

    Example: profile distance (x) vs tree distance (y), holding script difference and
    tokenisation-granularity difference fixed (covariates = [S, G]). With one covariate, r equals
    :func:`partial_mantel`'s first-order partial correlation.

    covariates: one [n, n] matrix or a sequence of them; a covariate that adds nothing (constant,
    or a combination of the others) is dropped. method: 'pearson' (default) or 'spearman' (x, y
    and every covariate ranked first). Null: the languages of x permuted (rows and columns
    together), ``permutations`` times, seeded (the same permutations as :func:`mantel`):
    ``permute='raw'`` (default; as :func:`partial_mantel` and vegan's ``mantel.partial``) permutes
    x itself and residualises each permuted x again; ``permute='residuals'`` permutes the matrix of
    x's residuals (Smouse, Long and Sokal 1986). One-sided p = (1 + #{r_perm >= r}) /
    (1 + permutations). ValueError when x or y is fully explained by the covariates (nothing left
    to correlate) or fewer than 3 items.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    covs = [np.asarray(covariates, dtype=float)] if np.ndim(covariates) == 2 else \
        [np.asarray(c, dtype=float) for c in covariates]
    n = len(x)
    if n < 3:
        raise ValueError("a Mantel test needs at least 3 items")
    if any(m.shape != (n, n) for m in [x, y] + covs):
        raise ValueError(f"x, y and every covariate must be [{n}, {n}] matrices over the same items")
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    if permute not in ("raw", "residuals"):
        raise ValueError(f"permute must be 'raw' or 'residuals', got {permute!r}")
    iu = np.triu_indices(n, 1)

    def vec(M):
        v = M[iu]
        return rankdata(v) if method == "spearman" else v

    m = len(iu[0])
    Z = np.column_stack([np.ones(m)] + [vec(c) for c in covs])
    U = orthonormal_basis(Z)

    def resid(V):  # [..., m] -> residuals after least squares on the covariates
        return V - (V @ U) @ U.T

    ex, ey = resid(vec(x)), resid(vec(y))
    for name, e in (("x", ex), ("y", ey)):
        if e.std() <= 1e-12 * max(1.0, np.abs(e).max()):
            raise ValueError(f"{name} is fully explained by the covariates: nothing is left to correlate")
    ys = _standardise(ey)
    r = float(_standardise(ex) @ ys / m)
    perms = permutation_rows(n, permutations, seed)
    source = x
    if permute == "residuals":
        source = np.zeros((n, n))
        source[iu] = ex
        source = source + source.T
    null = np.empty(len(perms))
    chunk = max(1, 2_000_000 // (n * n))
    for s in range(0, len(perms), chunk):
        P = perms[s:s + chunk]
        sub = source[P[:, iu[0]], P[:, iu[1]]]  # [c, m]: the permuted pair vectors
        if permute == "raw":
            # ys is orthogonal to the covariates and the intercept, so corr(resid(sub), ys) needs
            # only sub @ ys and the residual norm ||sub||^2 - ||sub U||^2 (no residual matrix)
            sub = rankdata(sub, axis=1) if method == "spearman" else sub
            ss = np.einsum("ij,ij->i", sub, sub) - ((sub @ U) ** 2).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                null[s:s + chunk] = (sub @ ys) / np.sqrt(np.clip(ss, 1e-300, None) * m)
        else:
            null[s:s + chunk] = _standardise(sub) @ ys / m
    p = (1 + int((null >= r - 1e-12).sum())) / (1 + permutations)
    return MantelResult(r, p, int(permutations), n, f"partial {method} ({len(covs)} covariates)")
