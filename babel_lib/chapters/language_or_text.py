"""Do activation patterns belong to the language or to the text? The same languages profiled on two
parallel corpora of different domains, compared (chapter 11).

The UDHR (a short legal text, cut into paragraphs) and the Bible (narrative, law, poetry, prophecy,
letters; cut into chapters) share their languages (:func:`shared_languages`). Each language is
profiled on each corpus under the same model and the same experts; every statistic here takes the
two frequency arrays ``fu`` (UDHR) and ``fb`` (Bible), float [n, L, E] over the same ``n``
languages in the same order (``L`` layers, ``E`` experts a layer, or neurons in the neuron view).

Our choices (the paper used one corpus and never asked the question):

- **Distance**: the Jensen-Shannon distance between whole profiles (all layers flattened,
  :func:`babel_lib.stats.analysis.js_distances`), the book's distance between languages. ``D_uu``,
  ``D_bb``: between languages within the UDHR and within the Bible; ``D_ub[i, j]``: between the
  UDHR profile of language i and the Bible profile of language j (:func:`distance_blocks`).
- **Identified across corpora**: a language's profile on one corpus has its own profile as its
  nearest profile on the other corpus. The share is averaged over both directions (UDHR -> Bible
  and Bible -> UDHR); chance is 1 / n.
- **Closer to itself**: the distance between a language's two profiles (its *self distance*
  ``D_ub[i, i]``) is smaller than its distance to its nearest other language within the UDHR and
  within the Bible.
- **Domain / language ratio**: the mean self distance divided by the mean within-corpus distance
  between two different languages, over the pairs of both corpora. Below 1: changing the text moves
  a profile less than changing the language. Pooling both corpora in the denominator keeps the ratio
  fair to their different budgets: a self distance carries the sampling noise of one profile of each
  corpus, and the pooled within-corpus distances carry, on average, the same.
- **Variance partition** (:func:`variance_partition`): the frequencies of every expert as a
  language x domain table, split as in a two-way analysis of variance without replication into the
  language effect (how languages differ, averaged over the two texts), the domain effect (the shift
  from one text to the other shared by all languages) and language x domain (the part of the shift
  that differs between languages, plus sampling noise); shares of the total sum of squares.
- **High-frequency experts**: :func:`babel_lib.stats.analysis.high_frequency` (frequency >= ``hf_ratio``
  x the base rate k / E) on each corpus; a language's sets on the two corpora are compared by their
  Jaccard index, against the Jaccard index of two languages within one corpus.
- **Intervals**: a joint passage bootstrap (:func:`joint_bootstrap`): each corpus's passages are
  resampled within that corpus (the same resample for every language), BCa intervals by default
  (distances are inflated by resampling noise; BCa corrects the bias).
- **Tests**: the Bible's language labels permuted (languages are the unit):
  :func:`identification_test` (is the identification share above chance?),
  :func:`matched_pairs_test` (is a language's own cross-corpus Jaccard above that of random pairs?),
  and the Mantel test of ``D_uu`` against ``D_bb`` (:func:`babel_lib.stats.mantel`); Holm within
  the chapter.
- **Noise floor**: the split-half distance of a language within one corpus
  (:func:`babel_lib.stats.split_half_distance`): the distance that sampling alone gives, the same
  language on the same text.
"""

from __future__ import annotations

from typing import Callable, Sequence

import altair as alt
import numpy as np
import pandas as pd

from babel_lib.data import corpus
from babel_lib.stats import analysis, inference as stats
from babel_lib.stats.analysis import DEPTH_THIRDS, depth_third

#: The parts of :func:`variance_partition`, in order.
VARIANCE_PARTS = ("language", "domain", "interaction")


# ---------------------------------------------------------------------------- languages and text
def shared_languages(spec="all") -> list[str]:
    """The languages of ``spec`` (any :func:`babel_lib.data.corpus.resolve_languages` spec) that both
    corpora have, as keys, in the Bible's order: resolved on the Bible (its missing languages
    dropped), then kept where the UDHR has the same text key. ValueError when fewer than 2 remain."""
    keys = corpus.resolve_languages(spec, corpus="bible", missing="drop")
    kept = [k for k in keys if corpus.has_language(k, "udhr")]
    if len(kept) < 2:
        raise ValueError(f"at least 2 languages both corpora have are needed; {spec!r} gives {kept or 'none'} "
                         f"(the Bible has {', '.join(corpus.corpus_languages('bible'))})")
    return kept


def text_comparison(udhr_table: pd.DataFrame, bible_table: pd.DataFrame) -> pd.DataFrame:
    """One row per language from the two studies' text tables (:meth:`babel_lib.experts.pipeline.Study.text_table`):
    language, name, script, then passages, characters, tokens, tokens_per_character for each corpus
    (suffixes ``_udhr``, ``_bible``) and tokens_ratio = Bible tokens / UDHR tokens."""
    keep = ["passages", "characters", "tokens", "tokens_per_character"]
    left = udhr_table.set_index("language")
    right = bible_table.set_index("language")
    if list(left.index) != list(right.index):
        raise ValueError("the two text tables must list the same languages in the same order")
    out = left[[c for c in ("name", "script") if c in left]].copy()
    for name, table in (("udhr", left), ("bible", right)):
        for c in keep:
            out[f"{c}_{name}"] = table[c]
    out["tokens_ratio"] = out["tokens_bible"] / out["tokens_udhr"]
    return out.reset_index()


def token_matched_passages(tokens: np.ndarray, target) -> np.ndarray:
    """The fewest passages, evenly spread over the profile, whose median (over languages) token count
    reaches the median of ``target``: tokens int [n, P] (per language and passage), target [n] (e.g.
    the other corpus's tokens per language). Returns the passage positions, int [k]; all passages when
    even all of them fall short."""
    tokens = np.asarray(tokens, dtype=float)
    n, P = tokens.shape
    goal = float(np.median(np.asarray(target, dtype=float)))
    for k in range(1, P + 1):
        idx = np.array([(2 * i + 1) * P // (2 * k) for i in range(k)], dtype=np.int64)
        if np.median(tokens[:, idx].sum(axis=1)) >= goal:
            return idx
    return np.arange(P, dtype=np.int64)


# ---------------------------------------------------------------------------- distances
def distance_blocks(fu: np.ndarray, fb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jensen-Shannon distances of the 2n profiles, cut into blocks: ``D_uu`` [n, n] (within the
    UDHR), ``D_bb`` [n, n] (within the Bible), ``D_ub`` [n, n] (row i: UDHR profile of language i,
    column j: Bible profile of language j; its diagonal holds the self distances)."""
    fu, fb = _check_pair(fu, fb)
    n = len(fu)
    D = analysis.js_distances(np.concatenate([fu, fb]))
    return D[:n, :n], D[n:, n:], D[:n, n:]


def nearest_other(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each item of a square distance matrix [n, n], its nearest *other* item: (index int [n],
    distance float [n]); ties go to the lower index."""
    D = np.array(D, dtype=float)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or len(D) < 2:
        raise ValueError(f"a square distance matrix of at least 2 items is needed, got shape {D.shape}")
    np.fill_diagonal(D, np.inf)
    j = np.argmin(D, axis=1)
    return j, D[np.arange(len(D)), j]


def identification(D_ub: np.ndarray) -> dict:
    """Which languages are identified across corpora, from ``D_ub`` [n, n] (row: UDHR, column: Bible).

    Returns nearest_ub int [n] (the Bible profile nearest to each UDHR profile), nearest_bu int [n]
    (the UDHR profile nearest to each Bible profile), identified_ub / identified_bu bool [n] (that
    nearest profile is the language's own), share (float: the mean of both, chance 1 / n)."""
    D_ub = np.asarray(D_ub, dtype=float)
    n = len(D_ub)
    ub = np.argmin(D_ub, axis=1)
    bu = np.argmin(D_ub, axis=0)
    own_ub, own_bu = ub == np.arange(n), bu == np.arange(n)
    return {"nearest_ub": ub, "nearest_bu": bu, "identified_ub": own_ub, "identified_bu": own_bu,
            "share": float((own_ub.mean() + own_bu.mean()) / 2)}


def variance_partition(fu: np.ndarray, fb: np.ndarray) -> dict:
    """Shares of the variation of the profiles due to language, domain and language x domain.

    Every expert's frequencies form a language x domain table X[i, c] (two domains). With the grand
    mean m, language effects a_i = mean_c X[i, c] - m, domain effects b_c = mean_i X[i, c] - m and
    residuals r = X - m - a_i - b_c: SS_language = 2 sum a^2, SS_domain = n sum b^2,
    SS_interaction = sum r^2, summed over experts; they add up to the total sum of squares. Returns
    {'language', 'domain', 'interaction'}: shares summing to 1 (NaN when the profiles are all equal).
    Sampling noise adds to every part in proportion to its degrees of freedom (n - 1, 1, n - 1)."""
    fu, fb = _check_pair(fu, fb)
    n = len(fu)
    X = np.stack([fu.reshape(n, -1), fb.reshape(n, -1)], axis=1)  # [n, 2, cells]
    m = X.mean(axis=(0, 1))
    a = X.mean(axis=1) - m
    b = X.mean(axis=0) - m
    r = X - m - a[:, None, :] - b[None, :, :]
    parts = np.array([2.0 * (a ** 2).sum(), n * (b ** 2).sum(), (r ** 2).sum()])
    total = parts.sum()
    shares = parts / total if total > 0 else np.full(3, np.nan)
    return dict(zip(VARIANCE_PARTS, (float(s) for s in shares)))


# ---------------------------------------------------------------------------- high-frequency experts
def set_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard index of paired boolean sets a, b [n, ...] (flattened per item): float [n]; two empty
    sets count as identical (1.0), as in :func:`babel_lib.stats.analysis.jaccard_matrix`."""
    a = np.asarray(a, dtype=bool).reshape(len(a), -1)
    b = np.asarray(b, dtype=bool).reshape(len(b), -1)
    inter = (a & b).sum(axis=1)
    union = (a | b).sum(axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def hf_overlap(hu: np.ndarray, hb: np.ndarray) -> dict:
    """A language's high-frequency experts in both corpora and in one only: hu, hb bool [n, L, E].

    Returns both, udhr_only, bible_only int [n, L] (experts per language and layer) and jaccard
    float [n] (of each language's two sets, over all layers)."""
    hu = np.asarray(hu, dtype=bool)
    hb = np.asarray(hb, dtype=bool)
    if hu.shape != hb.shape or hu.ndim != 3:
        raise ValueError(f"two boolean arrays [languages, layers, experts] of one shape are needed, got "
                         f"{hu.shape} and {hb.shape}")
    return {"both": (hu & hb).sum(axis=-1), "udhr_only": (hu & ~hb).sum(axis=-1),
            "bible_only": (~hu & hb).sum(axis=-1), "jaccard": set_jaccard(hu, hb)}


def jaccard_blocks(hu: np.ndarray, hb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Jaccard indices of the high-frequency sets, cut into blocks like :func:`distance_blocks`:
    ``J_uu``, ``J_bb`` (within a corpus) and ``J_ub`` [n, n] (row: UDHR set of language i, column:
    Bible set of language j)."""
    hu = np.asarray(hu, dtype=bool)
    n = len(hu)
    J = analysis.jaccard_matrix(np.concatenate([hu, np.asarray(hb, dtype=bool)]))
    return J[:n, :n], J[n:, n:], J[:n, n:]


# ---------------------------------------------------------------------------- everything at once
def cross_domain_statistics(fu: np.ndarray, fb: np.ndarray, rate, hf_ratio: float = analysis.HF_RATIO) -> dict:
    """Every statistic of the chapter from one pair of profiles fu, fb [n, L, E] (n >= 2); ``rate``:
    the base rate of :func:`babel_lib.stats.analysis.high_frequency`. Each value is a float or an array
    (the same keys and shapes for any input of the same shape, so a bootstrap can stack them):

    - per language [n]: self (self distance), nearest_udhr, nearest_bible (distance to the nearest
      other language within each corpus), identified_ub, identified_bu (1.0 where identified),
      jaccard_self (of its two high-frequency sets), jaccard_nearest_udhr, jaccard_nearest_bible
      (its highest Jaccard with another language within each corpus), hf_both, hf_udhr_only,
      hf_bible_only (high-frequency experts over all layers);
    - per layer [L]: hf_both_layer, hf_udhr_only_layer, hf_bible_only_layer (means over languages);
    - scalars: identification (share identified, both directions), closer (share of languages
      closer to themselves than to their nearest other language in both corpora), closer_udhr,
      closer_bible, mantel_r (Pearson r of the within-corpus distances over the pairs; NaN below 3
      languages), mean_self, mean_within (over the pairs of both corpora), ratio (mean_self /
      mean_within), jaccard_self_mean, jaccard_within_mean (over the pairs of both corpora),
      jaccard_gap (jaccard_self_mean - jaccard_within_mean), language, domain, interaction (the
      shares of :func:`variance_partition`).
    """
    fu, fb = _check_pair(fu, fb)
    n = len(fu)
    if n < 2:
        raise ValueError("at least 2 languages are needed")
    D_uu, D_bb, D_ub = distance_blocks(fu, fb)
    own = np.diag(D_ub).copy()
    _, near_u = nearest_other(D_uu)
    _, near_b = nearest_other(D_bb)
    ident = identification(D_ub)
    iu = np.triu_indices(n, 1)
    within = np.concatenate([D_uu[iu], D_bb[iu]])
    hu = analysis.high_frequency(fu, rate, hf_ratio=hf_ratio)
    hb = analysis.high_frequency(fb, rate, hf_ratio=hf_ratio)
    J_uu, J_bb, _ = jaccard_blocks(hu, hb)
    overlap = hf_overlap(hu, hb)
    parts = variance_partition(fu, fb)
    j_within = np.concatenate([J_uu[iu], J_bb[iu]])
    out = {
        "self": own, "nearest_udhr": near_u, "nearest_bible": near_b,
        "identified_ub": ident["identified_ub"].astype(float), "identified_bu": ident["identified_bu"].astype(float),
        "jaccard_self": overlap["jaccard"],
        "jaccard_nearest_udhr": _max_other(J_uu), "jaccard_nearest_bible": _max_other(J_bb),
        "hf_both": overlap["both"].sum(axis=1).astype(float),
        "hf_udhr_only": overlap["udhr_only"].sum(axis=1).astype(float),
        "hf_bible_only": overlap["bible_only"].sum(axis=1).astype(float),
        "hf_both_layer": overlap["both"].mean(axis=0), "hf_udhr_only_layer": overlap["udhr_only"].mean(axis=0),
        "hf_bible_only_layer": overlap["bible_only"].mean(axis=0),
        "identification": ident["share"],
        "closer": float(((own < near_u) & (own < near_b)).mean()),
        "closer_udhr": float((own < near_u).mean()), "closer_bible": float((own < near_b).mean()),
        "mantel_r": _pearson(D_uu[iu], D_bb[iu]) if n >= 3 else float("nan"),
        "mean_self": float(own.mean()), "mean_within": float(within.mean()),
        "ratio": float(own.mean() / within.mean()) if within.mean() > 0 else float("nan"),
        "jaccard_self_mean": float(overlap["jaccard"].mean()), "jaccard_within_mean": float(j_within.mean()),
        "jaccard_gap": float(overlap["jaccard"].mean() - j_within.mean()),
        **parts,
    }
    return out


def _max_other(S: np.ndarray) -> np.ndarray:
    S = np.array(S, dtype=float)
    np.fill_diagonal(S, -np.inf)
    return S.max(axis=1)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    da, db = a - a.mean(), b - b.mean()
    den = np.linalg.norm(da) * np.linalg.norm(db)
    return float(da @ db / den) if den > 0 else float("nan")


def _check_pair(fu, fb) -> tuple[np.ndarray, np.ndarray]:
    fu = np.asarray(fu, dtype=float)
    fb = np.asarray(fb, dtype=float)
    if fu.shape != fb.shape or fu.ndim < 2:
        raise ValueError(f"two frequency arrays [languages, ...] of one shape are needed, got {fu.shape} and "
                         f"{fb.shape}")
    return fu, fb


# ---------------------------------------------------------------------------- the joint bootstrap
def joint_bootstrap(statistic: Callable[[list], np.ndarray], n_units: Sequence[int],
                    n_resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0, method: str = "bca",
                    level: float = 0.95) -> stats.BootstrapResult:
    """A stratified bootstrap: units of several strata (the passages of each corpus), each stratum
    resampled within itself, so every resample keeps each corpus's number of passages.

    ``statistic(weights)`` receives a list of multiplicity vectors, one per stratum (float [n_units[s]]:
    how often each unit was drawn; all ones for the full data) and returns a float or a fixed-shape
    array. Stratum s of resample b is row b of ``stats.passage_resamples(n_units[s], n_resamples,
    seed + s)``. ``method``: 'percentile' or 'bca' (acceleration from a leave-one-unit-out jackknife
    over the units of all strata). Returns :class:`babel_lib.stats.BootstrapResult` (``n_units``: all
    units together)."""
    sizes = [int(s) for s in n_units]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"every stratum needs at least one unit, got {sizes}")
    if n_resamples < 2:
        raise ValueError("a bootstrap interval needs at least 2 resamples")
    if method not in ("percentile", "bca"):
        raise ValueError(f"method must be 'percentile' or 'bca', got {method!r}")
    estimate = np.asarray(statistic([np.ones(s) for s in sizes]), dtype=float)
    draws = [stats.multiplicities(stats.passage_resamples(s, n_resamples, seed + i), s) for i, s in enumerate(sizes)]
    samples = np.stack([np.asarray(statistic([d[b] for d in draws]), dtype=float) for b in range(n_resamples)])
    jack = None
    if method == "bca":
        if sum(sizes) < 2:
            raise ValueError("BCa needs at least 2 units for the jackknife")
        rows = []
        for s, size in enumerate(sizes):
            for unit in range(size):
                weights = [np.ones(z) for z in sizes]
                weights[s][unit] = 0.0
                rows.append(np.asarray(statistic(weights), dtype=float))
        jack = np.stack(rows)
    return stats.interval_result(estimate, samples, jack, method, level, sum(sizes))


def _flatten(values: dict) -> tuple[np.ndarray, list]:
    layout = [(k, np.shape(v)) for k, v in values.items()]
    return np.concatenate([np.atleast_1d(np.asarray(v, dtype=float)).ravel() for v in values.values()]), layout


def _unflatten(vector: np.ndarray, layout: list) -> dict:
    out, pos = {}, 0
    for key, shape in layout:
        size = int(np.prod(shape)) if shape else 1
        part = np.asarray(vector[pos:pos + size], dtype=float)
        out[key] = float(part[0]) if not shape else part.reshape(shape)
        pos += size
    return out


def bootstrap_statistics(udhr, bible, n_resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0,
                         hf_ratio: float = analysis.HF_RATIO, method: str = "bca") -> dict:
    """:func:`cross_domain_statistics` of two profiles (:class:`babel_lib.experts.profile.Profile`, the same
    languages) with intervals from :func:`joint_bootstrap` over both corpora's passages.

    Returns {'estimate', 'low', 'high'}: three dicts with the keys of
    :func:`cross_domain_statistics`, plus 'samples' (the flat bootstrap samples) and 'layout'."""
    _check_profiles(udhr, bible)
    rate = analysis.base_rate(udhr)
    cu, tu = udhr.passage_counts.astype(np.float64), udhr.passage_tokens
    cb, tb = bible.passage_counts.astype(np.float64), bible.passage_tokens
    _, layout = _flatten(cross_domain_statistics(udhr.frequencies(), bible.frequencies(), rate, hf_ratio))

    def statistic(weights):
        fu = stats.weighted_frequencies(cu, tu, weights[0])[0]
        fb = stats.weighted_frequencies(cb, tb, weights[1])[0]
        return _flatten(cross_domain_statistics(fu, fb, rate, hf_ratio))[0]

    res = joint_bootstrap(statistic, [udhr.n_passages, bible.n_passages], n_resamples, seed, method)
    return {"estimate": _unflatten(np.atleast_1d(res.estimate), layout),
            "low": _unflatten(np.atleast_1d(res.low), layout), "high": _unflatten(np.atleast_1d(res.high), layout),
            "samples": res.samples, "layout": layout, "n_resamples": n_resamples,
            "passages": (udhr.n_passages, bible.n_passages)}


#: The statistics of :func:`claim_statistics`: claims over languages, whose intervals resample languages too.
CLAIM_STATISTICS = ("identification", "closer", "closer_udhr", "closer_bible", "mantel_r", "mean_self",
                    "mean_within", "ratio", "jaccard_self_mean", "jaccard_within_mean", "jaccard_gap")


def claim_statistics(fu: np.ndarray, fb: np.ndarray, lw: np.ndarray, rate, hf_ratio: float = analysis.HF_RATIO) -> dict:
    """The scalars of :func:`cross_domain_statistics` that are claims over languages
    (:data:`CLAIM_STATISTICS`), with language weights lw [n] (how often each language was drawn; all
    ones: the same values). A language's copies are never its rivals: a language is identified when
    its own profile in the other corpus is nearer than every *other* drawn language's; a pair (i, j),
    i < j, weighs lw[i] * lw[j]."""
    fu, fb = _check_pair(fu, fb)
    lw = np.asarray(lw, dtype=float)
    n = len(fu)
    D_uu, D_bb, D_ub = distance_blocks(fu, fb)
    drawn = lw > 0
    own = np.diag(D_ub).copy()

    def rivals(D):  # [n, n] with the diagonal and undrawn columns out of reach
        D = np.array(D, dtype=float)
        D[:, ~drawn] = np.inf
        np.fill_diagonal(D, np.inf)
        return D

    ub = np.argmin(np.where(drawn[None, :], D_ub, np.inf), axis=1) == np.arange(n)
    bu = np.argmin(np.where(drawn[:, None], D_ub, np.inf), axis=0) == np.arange(n)
    near_u, near_b = rivals(D_uu).min(axis=1), rivals(D_bb).min(axis=1)
    total = lw.sum()
    iu = np.triu_indices(n, 1)
    w = lw[iu[0]] * lw[iu[1]]
    w2 = np.concatenate([w, w])
    within = np.concatenate([D_uu[iu], D_bb[iu]])
    hu = analysis.high_frequency(fu, rate, hf_ratio=hf_ratio)
    hb = analysis.high_frequency(fb, rate, hf_ratio=hf_ratio)
    J_uu, J_bb, _ = jaccard_blocks(hu, hb)
    j_self = set_jaccard(hu, hb)
    j_within = np.concatenate([J_uu[iu], J_bb[iu]])

    def mean(v, weights):
        return float((weights * v).sum() / weights.sum()) if weights.sum() > 0 else float("nan")

    mean_self, mean_within = mean(own, lw), mean(within, w2)
    return {
        "identification": float(((lw * ub).sum() + (lw * bu).sum()) / (2 * total)),
        "closer": mean(((own < near_u) & (own < near_b)).astype(float), lw),
        "closer_udhr": mean((own < near_u).astype(float), lw), "closer_bible": mean((own < near_b).astype(float), lw),
        "mantel_r": weighted_pearson(D_uu[iu], D_bb[iu], w) if drawn.sum() >= 3 else float("nan"),
        "mean_self": mean_self, "mean_within": mean_within,
        "ratio": mean_self / mean_within if mean_within > 0 else float("nan"),
        "jaccard_self_mean": mean(j_self, lw), "jaccard_within_mean": mean(j_within, w2),
        "jaccard_gap": mean(j_self, lw) - mean(j_within, w2),
    }


def weighted_pearson(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> float:
    """Pearson correlation of a and b [m] with weights w [m] (NaN if a side is constant)."""
    w = np.asarray(w, dtype=float)
    if w.sum() <= 0:
        return float("nan")
    da, db = a - (w * a).sum() / w.sum(), b - (w * b).sum() / w.sum()
    den = np.sqrt((w * da * da).sum() * (w * db * db).sum())
    return float((w * da * db).sum() / den) if den > 0 else float("nan")


def crossed_claim_intervals(udhr, bible, n_resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0,
                            hf_ratio: float = analysis.HF_RATIO, level: float = 0.95) -> tuple[dict, dict]:
    """Intervals of :data:`CLAIM_STATISTICS` as claims over languages: the languages, the UDHR's
    passages and the Bible's passages resampled together (:func:`joint_bootstrap` with the languages
    as a third stratum; percentile). Returns (low, high): dicts keyed like :func:`claim_statistics`."""
    _check_profiles(udhr, bible)
    rate = analysis.base_rate(udhr)
    cu, tu = udhr.passage_counts.astype(np.float64), udhr.passage_tokens
    cb, tb = bible.passage_counts.astype(np.float64), bible.passage_tokens

    def statistic(weights):
        fu = stats.weighted_frequencies(cu, tu, weights[0])[0]
        fb = stats.weighted_frequencies(cb, tb, weights[1])[0]
        values = claim_statistics(fu, fb, weights[2], rate, hf_ratio)
        return np.array([values[k] for k in CLAIM_STATISTICS])

    res = joint_bootstrap(statistic, [udhr.n_passages, bible.n_passages, len(udhr.languages)], n_resamples, seed,
                          "percentile", level)
    return dict(zip(CLAIM_STATISTICS, map(float, res.low))), dict(zip(CLAIM_STATISTICS, map(float, res.high)))


def _check_profiles(udhr, bible) -> None:
    if list(udhr.languages) != list(bible.languages):
        raise ValueError("the two profiles must cover the same languages in the same order")
    if udhr.counts.shape != bible.counts.shape:
        raise ValueError(f"the two profiles must have the same layers and experts, got {udhr.counts.shape} "
                         f"and {bible.counts.shape}")


# ---------------------------------------------------------------------------- tests over languages
def _label_permutations(n: int, permutations: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if not permutations:
        return np.zeros((0, n), dtype=np.int64)
    return np.stack([rng.permutation(n) for _ in range(permutations)])


def identification_test(D_ub: np.ndarray, permutations: int = stats.HEADLINE_PERMUTATIONS,
                        seed: int = 0) -> stats.PermutationResult:
    """Is the identification share (:func:`identification`) above chance? The Bible's language
    labels are permuted (language i's Bible profile taken to be column perm[i] of ``D_ub``); one-sided,
    p = (1 + #{share_perm >= share}) / (1 + permutations). Under the null the share is 1 / n on average."""
    D_ub = np.asarray(D_ub, dtype=float)
    n = len(D_ub)
    if n < 2:
        raise ValueError("a permutation test over languages needs at least 2 languages")
    ident = identification(D_ub)
    perms = _label_permutations(n, permutations, seed)
    # relabelled: UDHR i is identified iff perm[i] is its nearest Bible profile; the Bible profile
    # perm[i] (now language i's) is identified iff its nearest UDHR profile is i
    null = ((perms == ident["nearest_ub"][None, :]).mean(axis=1)
            + (ident["nearest_bu"][perms] == np.arange(n)[None, :]).mean(axis=1)) / 2
    p = (1 + int((null >= ident["share"] - 1e-12).sum())) / (1 + permutations)
    return stats.PermutationResult(ident["share"], p, int(permutations), n, "identification share", "greater",
                                   "Bible language labels permuted")


def matched_pairs_test(S: np.ndarray, permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0,
                       alternative: str = "greater") -> stats.PermutationResult:
    """Is the mean of the diagonal of a cross-corpus matrix S [n, n] (row: a language on one corpus,
    column: a language on the other; e.g. the Jaccard index of high-frequency sets) extreme among the
    means of S[i, perm[i]] over random relabellings of the columns? alternative 'greater' (similarities)
    or 'less' (distances); p = (1 + #{T_perm as or more extreme}) / (1 + permutations)."""
    S = np.asarray(S, dtype=float)
    n = len(S)
    if S.ndim != 2 or S.shape[1] != n or n < 2:
        raise ValueError(f"a square cross matrix of at least 2 languages is needed, got shape {S.shape}")
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    observed = float(np.diag(S).mean())
    perms = _label_permutations(n, permutations, seed)
    null = S[np.arange(n)[None, :], perms].mean(axis=1)
    hits = null >= observed - 1e-12 if alternative == "greater" else null <= observed + 1e-12
    p = (1 + int(hits.sum())) / (1 + permutations)
    return stats.PermutationResult(observed, p, int(permutations), n, "mean of matched pairs", alternative,
                                   "labels of the second corpus permuted")


def tests_table(fu: np.ndarray, fb: np.ndarray, rate, permutations: int = stats.HEADLINE_PERMUTATIONS,
                seed: int = 0, hf_ratio: float = analysis.HF_RATIO) -> pd.DataFrame:
    """The chapter's three tests over languages, with raw and Holm-adjusted p: identification across
    corpora (:func:`identification_test`), agreement of the two corpora's distance matrices
    (:func:`babel_lib.stats.mantel`, Pearson), a language's own high-frequency sets across corpora
    (:func:`matched_pairs_test` on the cross-corpus Jaccard indices). Columns: test, statistic,
    p_value, p_holm, permutations, n, note (why a test is undefined, else ''), words (the test in words)."""
    D_uu, D_bb, D_ub = distance_blocks(fu, fb)
    hu = analysis.high_frequency(fu, rate, hf_ratio=hf_ratio)
    hb = analysis.high_frequency(fb, rate, hf_ratio=hf_ratio)
    _, _, J_ub = jaccard_blocks(hu, hb)
    n = len(D_ub)
    rows = []
    ident = identification_test(D_ub, permutations, seed)
    rows.append({"test": "identification", "statistic": ident.statistic, "p_value": ident.p_value, "note": ""})
    try:
        m = stats.mantel(D_uu, D_bb, permutations=permutations, seed=seed)
        rows.append({"test": "mantel", "statistic": m.r, "p_value": m.p_value, "note": ""})
    except ValueError as err:
        rows.append({"test": "mantel", "statistic": float("nan"), "p_value": float("nan"), "note": str(err)})
    jac = matched_pairs_test(J_ub, permutations, seed)
    rows.append({"test": "high_frequency", "statistic": jac.statistic, "p_value": jac.p_value, "note": ""})
    table = pd.DataFrame(rows)
    table["p_holm"] = stats.holm(table["p_value"].to_numpy(dtype=float))
    table["permutations"] = int(permutations)
    table["n"] = n
    table["words"] = table["test"].map(TEST_WORDS)
    return table[["test", "words", "statistic", "p_value", "p_holm", "permutations", "n", "note"]]


# ---------------------------------------------------------------------------- chapter 11 in one call
TEST_WORDS = {
    "identification": "Identification across corpora (share, both directions)",
    "mantel": "Language distances of the two corpora agree (Mantel r)",
    "high_frequency": "Own high-frequency sets across corpora (mean Jaccard)",
}

#: The headline statistics of ``summary``, in words.
SUMMARY_WORDS = {
    "identification": "Share of languages identified across corpora (both directions)",
    "closer": "Share closer to themselves than to their nearest other language in both corpora",
    "closer_udhr": "... than to their nearest other language in the UDHR",
    "closer_bible": "... than to their nearest other language in the Bible",
    "mantel_r": "Agreement of the two corpora's language distances (Mantel r)",
    "mean_self": "Mean distance: same language, other corpus",
    "mean_within": "Mean distance: other language, same corpus",
    "ratio": "Ratio: same language, other corpus / other language, same corpus",
    "jaccard_self_mean": "Jaccard of high-frequency sets: same language, other corpus",
    "jaccard_within_mean": "Jaccard of high-frequency sets: other language, same corpus",
    "jaccard_gap": "Difference of the two Jaccard indices",
}
VARIANCE_WORDS = {"language": "Language (how languages differ, both texts averaged)",
                  "domain": "Text (the shift from UDHR to Bible shared by all languages)",
                  "interaction": "Language x text (the shift that differs by language, and sampling noise)"}
HF_PARTS = {"both": "in both corpora", "udhr_only": "in the UDHR only", "bible_only": "in the Bible only"}

LADDER = (
    ("floor_udhr", "Noise: two halves of the UDHR"),
    ("floor_bible", "Noise: two halves of the Bible"),
    ("self", "Same language, other corpus"),
    ("nearest_udhr", "Nearest other language, UDHR"),
    ("nearest_bible", "Nearest other language, Bible"),
)
#: The measures of the ``ladder`` table, in words, in order.
LADDER_WORDS = [words for _, words in LADDER]


def cross_domain_results(udhr_views: dict, bible_views: dict, n_resamples: int = stats.DEFAULT_RESAMPLES,
                         permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0,
                         hf_ratio: float = analysis.HF_RATIO, n_splits: int = 100, method: str = "bca") -> dict:
    """Everything chapter 11 reports, from the same languages profiled on the UDHR and on the Bible
    under the same views ({name: Profile}, the same names in both, the main view first; see
    :attr:`babel_lib.experts.pipeline.Study.views`).

    Returns a dict of tables and facts:

    - ``by_language``: language, name, self distance, nearest other language and its distance in each
      corpus (with intervals), the noise floors of both corpora, identified (both directions), closer,
      the Jaccard indices, high-frequency experts in both corpora / in one only;
    - ``ladder``: long form of the distances per language for the chart (measure, distance, low, high);
    - ``cross``: the cross-corpus distance matrix, long form (udhr, bible, names, distance, own);
    - ``pairs``: per pair of languages, the UDHR and the Bible distance (the Mantel scatter);
    - ``by_layer``: per layer, mean high-frequency experts per language in both / UDHR only / Bible only,
      with intervals; ``by_third``: the same per third of the network;
    - ``summary``: the headline statistics with intervals; ``variance``: the variance partition;
    - ``tests``: :func:`tests_table`;
    - ``robustness``: the headline statistics in every view, and in the main view with the Bible cut to
      about the UDHR's tokens (:func:`token_matched_passages`);
    - ``facts``: the scalars the findings quote.
    """
    names = list(udhr_views)
    if list(bible_views) != names:
        raise ValueError(f"both corpora need the same views in the same order, got {names} and {list(bible_views)}")
    pu, pb = udhr_views[names[0]], bible_views[names[0]]
    _check_profiles(pu, pb)
    langs = list(pu.languages)
    n, L = len(langs), pu.n_layers
    labels = corpus.language_labels(langs)
    rate = analysis.base_rate(pu)
    boot = bootstrap_statistics(pu, pb, n_resamples, seed, hf_ratio, method)
    est, low, high = boot["estimate"], boot["low"], boot["high"]
    # claims over languages (identification, the distance ratio, the corpora's agreement): languages
    # resampled with both corpora's passages; per-language quantities keep the passage intervals
    if n >= 3:
        c_low, c_high = crossed_claim_intervals(pu, pb, n_resamples, seed, hf_ratio)
        low, high = {**low, **c_low}, {**high, **c_high}
    fu, fb = pu.frequencies(), pb.frequencies()
    D_uu, D_bb, D_ub = distance_blocks(fu, fb)
    near_u, _ = nearest_other(D_uu)
    near_b, _ = nearest_other(D_bb)
    ident = identification(D_ub)
    floor_u = _floor(pu, n_splits, seed)
    floor_b = _floor(pb, n_splits, seed)
    tests = tests_table(fu, fb, rate, permutations, seed, hf_ratio)

    by_language = pd.DataFrame({
        "language": langs, "name": [labels[k] for k in langs],
        "self": est["self"], "self_low": low["self"], "self_high": high["self"],
        "nearest_udhr_name": [labels[langs[j]] for j in near_u], "nearest_udhr": est["nearest_udhr"],
        "nearest_udhr_low": low["nearest_udhr"], "nearest_udhr_high": high["nearest_udhr"],
        "nearest_bible_name": [labels[langs[j]] for j in near_b], "nearest_bible": est["nearest_bible"],
        "nearest_bible_low": low["nearest_bible"], "nearest_bible_high": high["nearest_bible"],
        "floor_udhr": floor_u, "floor_bible": floor_b,
        "identified_ub": ident["identified_ub"], "identified_bu": ident["identified_bu"],
        "udhr_matches": [labels[langs[j]] for j in ident["nearest_ub"]],
        "bible_matches": [labels[langs[j]] for j in ident["nearest_bu"]],
        "closer": (est["self"] < est["nearest_udhr"]) & (est["self"] < est["nearest_bible"]),
        "jaccard_self": est["jaccard_self"], "jaccard_self_low": low["jaccard_self"],
        "jaccard_self_high": high["jaccard_self"],
        "jaccard_nearest_udhr": est["jaccard_nearest_udhr"], "jaccard_nearest_bible": est["jaccard_nearest_bible"],
        "hf_both": est["hf_both"].astype(int), "hf_udhr_only": est["hf_udhr_only"].astype(int),
        "hf_bible_only": est["hf_bible_only"].astype(int),
    })
    by_language["self_over_floor"] = by_language["self"] / np.fmax(by_language["floor_udhr"], by_language["floor_bible"])
    by_language["jaccard_above_others"] = by_language["jaccard_self"] > np.fmax(
        by_language["jaccard_nearest_udhr"], by_language["jaccard_nearest_bible"])
    branch = corpus.language_table()["branch"].reindex(langs)
    beaten_u = by_language["self"] >= by_language["nearest_udhr"]
    rival = np.where(by_language["closer"], -1, np.where(beaten_u, near_u, near_b))
    by_language["rival"] = [labels[langs[j]] if j >= 0 else "" for j in rival]
    by_language["rival_corpus"] = np.where(by_language["closer"], "", np.where(beaten_u, "UDHR", "Bible"))
    by_language["rival_same_branch"] = [bool(j >= 0 and branch.iloc[i] == branch.iloc[j]) for i, j in enumerate(rival)]
    by_language["self_text"] = [stats.interval_text(*v, digits=4) for v in
                                by_language[["self", "self_low", "self_high"]].to_numpy()]
    by_language["jaccard_self_text"] = [stats.interval_text(*v) for v in
                                        by_language[["jaccard_self", "jaccard_self_low", "jaccard_self_high"]].to_numpy()]

    ladder = []
    for key, words in LADDER:
        for _, r in by_language.iterrows():
            ladder.append({"language": r["language"], "name": r["name"], "measure": words, "distance": r[key],
                           "low": r.get(f"{key}_low", np.nan), "high": r.get(f"{key}_high", np.nan)})
    ladder = pd.DataFrame(ladder)

    cross = pd.DataFrame({
        "udhr": np.repeat(langs, n), "bible": np.tile(langs, n),
        "udhr_name": np.repeat([labels[k] for k in langs], n), "bible_name": np.tile([labels[k] for k in langs], n),
        "distance": D_ub.reshape(-1), "own": np.eye(n, dtype=bool).reshape(-1),
        "nearest_in_row": (np.arange(n)[None, :] == ident["nearest_ub"][:, None]).reshape(-1),
        "nearest_in_column": (np.arange(n)[:, None] == ident["nearest_bu"][None, :]).reshape(-1),
    })
    iu = np.triu_indices(n, 1)
    pairs = pd.DataFrame({
        "a": [langs[i] for i in iu[0]], "b": [langs[j] for j in iu[1]],
        "pair": [f"{labels[langs[i]]} - {labels[langs[j]]}" for i, j in zip(*iu)],
        "udhr": D_uu[iu], "bible": D_bb[iu],
    })

    by_layer = pd.DataFrame({"layer": np.arange(L), "third": depth_third(L)})
    for part in ("both", "udhr_only", "bible_only"):
        key = f"hf_{part}_layer"
        by_layer[part], by_layer[f"{part}_low"], by_layer[f"{part}_high"] = est[key], low[key], high[key]
    by_layer_long = pd.concat([pd.DataFrame({"layer": by_layer["layer"], "part": words, "experts": by_layer[part],
                                             "low": by_layer[f"{part}_low"], "high": by_layer[f"{part}_high"]})
                               for part, words in HF_PARTS.items()], ignore_index=True)
    by_third = by_layer.groupby("third", sort=False)[["both", "udhr_only", "bible_only"]].sum().reindex(
        list(DEPTH_THIRDS)).reset_index()
    one_only = by_third["udhr_only"] + by_third["bible_only"]
    by_third["one_only_share"] = one_only / (one_only + by_third["both"]).where(lambda s: s > 0)

    summary = pd.DataFrame([
        {"statistic": key, "words": words, "estimate": est[key], "low": low[key], "high": high[key],
         "interval": "languages and passages resampled" if key in CLAIM_STATISTICS and n >= 3 else "passages resampled"}
        for key, words in SUMMARY_WORDS.items()])
    variance = pd.DataFrame([{"part": part, "words": VARIANCE_WORDS[part], "share": est[part], "low": low[part],
                              "high": high[part]} for part in VARIANCE_PARTS])

    robustness, matched = _robustness(udhr_views, bible_views, permutations, seed, hf_ratio)
    t = tests.set_index("test")
    facts = _facts(est, low, high, by_language, by_third, t, robustness, matched, pu, pb, n_resamples,
                   permutations, len(names))
    return {"by_language": by_language, "ladder": ladder, "cross": cross, "pairs": pairs, "by_layer": by_layer,
            "by_layer_long": by_layer_long, "by_third": by_third, "summary": summary, "variance": variance, "tests": tests,
            "robustness": robustness, "facts": facts}


def _floor(profile, n_splits: int, seed: int) -> np.ndarray:
    if profile.n_passages < 2:
        return np.full(len(profile.languages), np.nan)
    return stats.split_half_distance(profile.passage_counts, profile.passage_tokens, analysis.js_distances,
                                     n_splits, seed).per_language


def _view_row(view: str, pu, pb, permutations: int, seed: int, hf_ratio: float, note: str = "") -> dict:
    fu, fb = pu.frequencies(), pb.frequencies()
    s = cross_domain_statistics(fu, fb, analysis.base_rate(pu), hf_ratio)
    _, _, D_ub = distance_blocks(fu, fb)
    p = identification_test(D_ub, permutations, seed).p_value
    return {"view": view, "note": note, "identification": s["identification"], "identification_p": p,
            "closer": s["closer"], "mantel_r": s["mantel_r"], "ratio": s["ratio"],
            "jaccard_self": s["jaccard_self_mean"], "jaccard_within": s["jaccard_within_mean"],
            "language": s["language"], "domain": s["domain"], "interaction": s["interaction"],
            "bible_passages": pb.n_passages, "bible_tokens": int(np.median(pb.tokens)),
            "udhr_tokens": int(np.median(pu.tokens))}


def _robustness(udhr_views: dict, bible_views: dict, permutations: int, seed: int,
                hf_ratio: float) -> tuple[pd.DataFrame, dict]:
    rows = [_view_row(name, udhr_views[name], bible_views[name], permutations, seed, hf_ratio)
            for name in udhr_views]
    name = next(iter(udhr_views))
    pu, pb = udhr_views[name], bible_views[name]
    idx = token_matched_passages(pb.passage_tokens, pu.tokens)
    matched = _view_row(name, pu, pb.select_passages(idx), permutations, seed, hf_ratio,
                        note=f"Bible cut to {len(idx)} of {pb.n_passages} passages (about the UDHR's tokens)")
    rows.append(matched)
    return pd.DataFrame(rows), matched


def _facts(est, low, high, by_language, by_third, t, robustness, matched, pu, pb, n_resamples, permutations,
           n_views) -> dict:
    n = len(by_language)

    def trio(key):
        return [float(est[key]), float(low[key]), float(high[key])]

    views = robustness[robustness["note"] == ""]
    missed = by_language[~(by_language["identified_ub"] & by_language["identified_bu"])]
    not_closer = by_language[~by_language["closer"]]
    third = by_third.set_index("third")["one_only_share"]
    p_ident, p_holm_ident = float(t.loc["identification", "p_value"]), float(t.loc["identification", "p_holm"])
    holds = bool(np.isfinite(high["ratio"]) and high["ratio"] < 1 and p_holm_ident < 0.05)
    robust = bool(((views["ratio"] < 1) & (views["identification_p"] < 0.05)).all())
    return {
        "languages": n, "chance": 1.0 / n, "views": n_views, "resamples": n_resamples, "permutations": permutations,
        "udhr_passages": pu.n_passages, "bible_passages": pb.n_passages,
        "udhr_tokens": int(np.median(pu.tokens)), "bible_tokens": int(np.median(pb.tokens)),
        "identification": trio("identification"), "identified_both": int(n - len(missed)),
        "misidentified": [_miss_text(r) for _, r in missed.iterrows()],
        "p_identification": p_ident, "p_holm_identification": p_holm_ident,
        "closer": trio("closer"), "closer_count": int(by_language["closer"].sum()),
        "closer_udhr": trio("closer_udhr"), "closer_bible": trio("closer_bible"),
        "not_closer": [f"{r['name']} ({r['rival']}, {r['rival_corpus']})" for _, r in not_closer.iterrows()],
        "rivals_same_branch": int(not_closer["rival_same_branch"].sum()),
        "mantel_r": trio("mantel_r"), "p_mantel": float(t.loc["mantel", "p_value"]),
        "p_holm_mantel": float(t.loc["mantel", "p_holm"]),
        "mean_self": trio("mean_self"), "mean_within": trio("mean_within"), "ratio": trio("ratio"),
        "ratio_below_one": bool(high["ratio"] < 1),
        "floor_udhr": float(by_language["floor_udhr"].median()), "floor_bible": float(by_language["floor_bible"].median()),
        "min_self_over_floor": float(by_language["self_over_floor"].min()),
        "median_self_over_floor": float(by_language["self_over_floor"].median()),
        "self_above_floor": int((by_language["self_low"] > np.fmax(by_language["floor_udhr"],
                                                                    by_language["floor_bible"])).sum()),
        "jaccard_self": trio("jaccard_self_mean"), "jaccard_within": trio("jaccard_within_mean"),
        "jaccard_gap": trio("jaccard_gap"), "jaccard_gap_positive": bool(low["jaccard_gap"] > 0),
        "jaccard_above_others": int(by_language["jaccard_above_others"].sum()),
        "p_high_frequency": float(t.loc["high_frequency", "p_value"]),
        "p_holm_high_frequency": float(t.loc["high_frequency", "p_holm"]),
        "hf_both": float(by_language["hf_both"].mean()), "hf_udhr_only": float(by_language["hf_udhr_only"].mean()),
        "hf_bible_only": float(by_language["hf_bible_only"].mean()),
        "one_only_third": str(third.idxmax()) if third.notna().any() else "",
        "one_only_third_share": float(third.max()) if third.notna().any() else float("nan"),
        "language_share": trio("language"), "domain_share": trio("domain"), "interaction_share": trio("interaction"),
        "holds": holds, "strict": bool(by_language["closer"].all()), "robust": robust,
        "robust_identification": [float(views["identification"].min()), float(views["identification"].max())],
        "robust_closer": [float(views["closer"].min()), float(views["closer"].max())],
        "robust_ratio": [float(views["ratio"].min()), float(views["ratio"].max())],
        "robust_mantel": [float(views["mantel_r"].min()), float(views["mantel_r"].max())],
        "robust_jaccard_gap": bool((views["jaccard_self"] > views["jaccard_within"]).all()),
        "robust_language_over_domain": bool((views["language"] > views["domain"]).all()),
        "matched_passages": int(matched["bible_passages"]), "matched_tokens": int(matched["bible_tokens"]),
        "matched_identification": float(matched["identification"]), "matched_closer": float(matched["closer"]),
        "matched_ratio": float(matched["ratio"]), "matched_mantel": float(matched["mantel_r"]),
    }


def _miss_text(r) -> str:
    """'Vietnamese (its Bible profile is nearest to the UDHR's Indonesian)': how a language fails identification."""
    parts = []
    if not r["identified_ub"]:
        parts.append(f"its UDHR profile is nearest to the Bible's {r['udhr_matches']}")
    if not r["identified_bu"]:
        parts.append(f"its Bible profile is nearest to the UDHR's {r['bible_matches']}")
    return f"{r['name']} ({' and '.join(parts)})"


def cross_domain_verdicts(facts: dict) -> list[dict]:
    """The chapter's verdict row (claim 'cross_domain', see :mod:`babel_lib.report.verdicts`) from the facts of
    :func:`cross_domain_results`.

    Our rule: *reproduced* when on average a language's two profiles are closer than two languages
    on one corpus (the ratio's interval below 1), identification beats chance (Holm-adjusted p < 0.05),
    every language is closer to itself than to its nearest other language in both corpora, and the
    first two hold in every view; *partly reproduced* when the average holds but not for every
    language or not in every view; *not reproduced* otherwise."""
    from babel_lib.core.claims import row

    f = facts
    it = stats.interval_text
    result = (f"the same language on the other corpus is at {it(*f['ratio'])} times the mean distance between two "
              f"languages of one corpus; {f['identified_both']} of {f['languages']} languages identified across "
              f"corpora in both directions (share {it(*f['identification'])}, chance {f['chance']:.3f}; "
              f"{stats.p_text(f['p_identification'], f['p_holm_identification'])}); {f['closer_count']} of "
              f"{f['languages']} closer to themselves than to their nearest other language in both corpora")
    if f["holds"] and f["strict"] and f["robust"]:
        word = "reproduced"
    elif f["holds"]:
        word = "partly reproduced"
    else:
        word = "not reproduced"
    evidence = (f"intervals resample the {f['languages']} languages with the {f['udhr_passages']} UDHR and "
                f"{f['bible_passages']} Bible passages ({f['resamples']:,} resamples), {f['permutations']:,} "
                f"permutations of languages; "
                + ("holds under every partition seed and the neuron view" if f["robust"]
                   else "does not hold under every partition seed and the neuron view")
                + "; two domains and one small model only")
    return [row("cross_domain", result, evidence, word)]


# ---------------------------------------------------------------------------- chapter 11's charts, tables and prose
#: The chapter's tables: ``plots.table(df, name, **TABLES[name])``.
TABLES: dict[str, dict] = {
    "text": {"columns": {"name": "Language", "script": "Script", "passages_udhr": "UDHR passages",
                         "tokens_udhr": "UDHR tokens", "tokens_per_character_udhr": "UDHR tokens per character",
                         "passages_bible": "Bible chapters", "tokens_bible": "Bible tokens",
                         "tokens_per_character_bible": "Bible tokens per character",
                         "tokens_ratio": "Bible / UDHR tokens"},
             "formats": {"tokens_per_character_udhr": "{:.2f}", "tokens_per_character_bible": "{:.2f}",
                         "tokens_ratio": "{:.1f}"},
             "caption": "Text profiled per language on each corpus"},
    "by_language": {"columns": {"name": "Language", "self_text": "Self distance [95%]",
                                "nearest_udhr_name": "Nearest, UDHR", "nearest_udhr": "Distance, UDHR",
                                "nearest_bible_name": "Nearest, Bible", "nearest_bible": "Distance, Bible",
                                "identified_ub": "UDHR → own Bible", "identified_bu": "Bible → own UDHR",
                                "closer": "Closer to itself"},
                    "formats": {"nearest_udhr": "{:.4f}", "nearest_bible": "{:.4f}", "self_over_floor": "{:.1f}"},
                    "caption": "Per language: self distance, nearest other language in each corpus, identification "
                               "(the self distance over the noise floor in the downloadable table)",
                    "max_rows": 30},
    "high_frequency_by_language": {
        "columns": {"name": "Language", "jaccard_self_text": "Jaccard, own sets on the two corpora [95% interval]",
                    "jaccard_nearest_udhr": "Highest Jaccard with another language (UDHR)",
                    "jaccard_nearest_bible": "Highest Jaccard with another language (Bible)",
                    "hf_both": "In both corpora", "hf_udhr_only": "UDHR only", "hf_bible_only": "Bible only"},
        "formats": {"jaccard_nearest_udhr": "{:.3f}", "jaccard_nearest_bible": "{:.3f}"},
        "caption": "High-frequency experts per language on the two corpora", "max_rows": 30},
    "summary": {"columns": {"words": "Statistic", "estimate": "Estimate", "low": "95% interval, low", "high": "high",
                            "interval": "Resampled"},
                "formats": {"estimate": "{:.4f}", "low": "{:.4f}", "high": "{:.4f}"},
                "caption": "Headline statistics (claims over languages: languages and passages resampled)"},
    "variance": {"columns": {"words": "Part of the variation", "share": "Share", "low": "95% interval, low",
                             "high": "high"},
                 "formats": {"share": "{:.3f}", "low": "{:.3f}", "high": "{:.3f}"},
                 "caption": "Variance partition of the expert frequencies: language x text"},
    "tests": {"columns": {"words": "Test", "statistic": "Statistic", "p_value": "p", "p_holm": "p (Holm)",
                          "permutations": "Permutations", "n": "Languages"},
              "formats": {"statistic": "{:.3f}", "p_value": "{:.4f}", "p_holm": "{:.4f}"},
              "caption": "Tests over languages (one-sided; the Bible's language labels permuted)"},
    "robustness": {"columns": {"view": "View", "note": "Note", "identification": "Identified (share)",
                               "identification_p": "p", "closer": "Closer to itself (share)", "mantel_r": "Mantel r",
                               "ratio": "Ratio self / other language", "jaccard_self": "Jaccard, own",
                               "jaccard_within": "Jaccard, two languages", "language": "Language share",
                               "domain": "Text share", "interaction": "Language x text share"},
                   "formats": {"identification": "{:.2f}", "identification_p": "{:.4f}", "closer": "{:.2f}",
                               "mantel_r": "{:+.2f}", "ratio": "{:.2f}", "jaccard_self": "{:.3f}",
                               "jaccard_within": "{:.3f}", "language": "{:.2f}", "domain": "{:.2f}",
                               "interaction": "{:.2f}"},
                   "caption": "Chapter statistics in every view"},
}

#: The colours of the ladder's measures (:data:`LADDER_WORDS`, in order) and of the high-frequency parts
#: (:data:`HF_PARTS`, in order).
LADDER_COLOURS = ["#c7c7c7", "#7f7f7f", "#d62728", "#1f77b4", "#2ca02c"]
HF_PART_COLOURS = ["#4c78a8", "#f58518", "#54a24b"]


def describe_studies(udhr, bible) -> str:
    """The two studies in words (Markdown): the UDHR study's description and the Bible profile's."""
    return udhr.describe() + "\n\n**Bible profile** " + bible.profile.describe() + "."


def distance_ladder_chart(ladder: pd.DataFrame, by_language: pd.DataFrame) -> alt.LayerChart:
    """Per language, its self distance, nearest other language on each corpus and noise floors (95% intervals
    where known), languages sorted by the self distance. ``ladder``: name, measure (:data:`LADDER_WORDS`),
    distance, low, high; ``by_language``: name, self."""
    order = by_language.sort_values("self")["name"].tolist()
    measures = alt.Scale(domain=LADDER_WORDS, range=LADDER_COLOURS)
    points = alt.Chart(ladder).mark_point(filled=True, size=45).encode(
        x=alt.X("distance:Q", title="Jensen-Shannon distance between profiles"),
        y=alt.Y("name:N", sort=order, title=None),
        color=alt.Color("measure:N", scale=measures, title=None, legend=alt.Legend(orient="bottom", columns=2)),
        tooltip=["name", "measure", alt.Tooltip("distance:Q", format=".4f"), alt.Tooltip("low:Q", format=".4f"),
                 alt.Tooltip("high:Q", format=".4f")])
    bars = alt.Chart(ladder.dropna(subset=["low"])).mark_rule().encode(
        x="low:Q", x2="high:Q", y=alt.Y("name:N", sort=order), color=alt.Color("measure:N", scale=measures))
    return (bars + points).properties(width=470, height=17 * len(order),
                                      title="Distances of each language's profiles (sorted by the self distance)")


def cross_corpus_chart(cross: pd.DataFrame) -> alt.LayerChart:
    """The UDHR x Bible distance matrix: the own-language cells outlined in red, each row's nearest marked white.
    ``cross``: udhr_name, bible_name, distance, own, nearest_in_row (one row per cell)."""
    names = list(dict.fromkeys(cross["udhr_name"]))
    base = alt.Chart(cross).encode(
        x=alt.X("bible_name:N", sort=names, title="Bible profile", axis=alt.Axis(labelAngle=-45)),
        y=alt.Y("udhr_name:N", sort=names, title="UDHR profile"))
    cells = base.mark_rect().encode(
        color=alt.Color("distance:Q", scale=alt.Scale(scheme="viridis"), title="Distance"),
        tooltip=[alt.Tooltip("udhr_name", title="UDHR"), alt.Tooltip("bible_name", title="Bible"),
                 alt.Tooltip("distance:Q", format=".4f")])
    own = base.transform_filter("datum.own").mark_rect(fill=None, stroke="#d62728", strokeWidth=1.5)
    nearest = base.transform_filter("datum.nearest_in_row").mark_circle(color="white", size=18)
    return (cells + own + nearest).properties(width=15 * len(names), height=15 * len(names),
                                              title="Distance between a UDHR profile and a Bible profile")


def pair_distances_chart(pairs: pd.DataFrame) -> alt.Chart:
    """Each pair of languages: its distance on the UDHR against its distance on the Bible.
    ``pairs``: pair, udhr, bible."""
    scatter = alt.Chart(pairs).mark_circle(size=28, opacity=0.7).encode(
        x=alt.X("udhr:Q", title="Distance on the UDHR", scale=alt.Scale(zero=False)),
        y=alt.Y("bible:Q", title="Distance on the Bible", scale=alt.Scale(zero=False)),
        tooltip=["pair", alt.Tooltip("udhr:Q", format=".4f"), alt.Tooltip("bible:Q", format=".4f")])
    return scatter.properties(width=420, height=320, title="Language pairs on the two corpora")


def high_frequency_by_layer_chart(by_layer_long: pd.DataFrame) -> alt.Chart:
    """Stacked bars per layer: a language's high-frequency experts on both corpora and on one only (mean over
    languages). ``by_layer_long``: layer, part (:data:`HF_PARTS` words), experts, low, high."""
    parts = alt.Scale(domain=list(HF_PARTS.values()), range=HF_PART_COLOURS)
    stack = alt.Chart(by_layer_long).mark_bar().encode(
        x=alt.X("layer:O", title="Layer"),
        y=alt.Y("experts:Q", title="High-frequency experts per language"),
        color=alt.Color("part:N", scale=parts, title=None, legend=alt.Legend(orient="bottom")),
        order=alt.Order("part:N"),
        tooltip=["layer", "part", alt.Tooltip("experts:Q", format=".1f"), alt.Tooltip("low:Q", format=".1f"),
                 alt.Tooltip("high:Q", format=".1f")])
    return stack.properties(width=480, height=220, title="A language's high-frequency experts, by layer")


def findings_text(f: dict) -> str:
    """The chapter's findings (Markdown) from :func:`cross_domain_results` facts."""
    it, pt = stats.interval_text, stats.p_text
    if f["self_above_floor"] == f["languages"]:
        beyond_noise = "The text still moves every profile beyond noise."
    elif f["self_above_floor"]:
        beyond_noise = "The text moves some profiles beyond noise."
    else:
        beyond_noise = "The text does not move the profiles clearly beyond noise (weak evidence)."
    bible_floor_reason = (" although it rests on more tokens: its chapters (law, poetry, narrative, letters) differ "
                          "more from one another than the UDHR paragraphs do"
                          if f["floor_bible"] > f["floor_udhr"] and f["bible_tokens"] > f["udhr_tokens"] else "")
    misidentified = ("Not identified in both directions: " + "; ".join(f["misidentified"]) + "."
                     if f["misidentified"] else "Every language is identified.")
    exceptions = ""
    if f["not_closer"]:
        exceptions = ("The exceptions, each with the other language nearer to it than its own profile on the other "
                      "text (and the corpus where it is nearer): " + "; ".join(f["not_closer"])
                      + f". {f['rivals_same_branch']} of these {len(f['not_closer'])} nearer languages are close "
                      "relatives (the same branch of the family tree)"
                      + (": on one text, a close relative can be nearer than the same language on another text."
                         if f["rivals_same_branch"] else "."))
    agree = ("The two corpora agree on which languages are close" if f["p_holm_mantel"] < 0.05 and f["mantel_r"][1] > 0
             else "Whether the two corpora agree on which languages are close is weak evidence")
    one_only = (f"; experts high-frequency on one text only are most common in the {f['one_only_third']} third of the "
                f"network ({f['one_only_third_share']:.0%} of the high-frequency experts there)"
                if f["one_only_third"] else "")
    headline = ("the headline (ratio below 1, identification beyond chance) "
                + ("holds in every view" if f["robust"] else "does not hold in every view"))
    return "\n".join([
        "",
        f"- **On average the text moves a profile {'less' if f['ratio_below_one'] else 'not clearly less'} than a "
        "change of",
        f"  language.** A language's UDHR and Bible profiles are {it(*f['ratio'], digits=2)} times as far apart as two "
        "different",
        f"  languages on one corpus (mean self distance {it(*f['mean_self'], digits=4)}, mean distance between two "
        "languages",
        f"  {it(*f['mean_within'], digits=4)}). In the variance partition, language carries "
        f"{it(*f['language_share'])} of the",
        "  variation of the expert frequencies, the shift from one text to the other shared by all languages",
        f"  {it(*f['domain_share'])}, and the part of that shift that differs by language (with sampling noise)",
        f"  {it(*f['interaction_share'])}.",
        f"- **{beyond_noise}**",
        f"  {f['self_above_floor']} of {f['languages']} languages have a self distance whose interval lies above the "
        "noise floor",
        f"  of both corpora (median {f['median_self_over_floor']:.1f} times the higher floor, lowest",
        f"  {f['min_self_over_floor']:.1f})"
        + (": a profile measured on one text is not the language profile of another text"
           if f["self_above_floor"] else "") + ".",
        f"  The Bible's floor (median {f['floor_bible']:.3f}) is "
        f"{'higher' if f['floor_bible'] > f['floor_udhr'] else 'lower'} than",
        f"  the UDHR's ({f['floor_udhr']:.3f}){bible_floor_reason}.",
        f"- **Identification.** {f['identified_both']} of {f['languages']} languages are identified across corpora "
        "in both",
        f"  directions: share {it(*f['identification'], digits=2)} against {f['chance']:.3f} by chance",
        f"  ({pt(f['p_identification'], f['p_holm_identification'])}"
        f"{'' if f['p_holm_identification'] < 0.05 else ': weak evidence'}).",
        f"  {misidentified}",
        f"- **Closer to itself than to its nearest neighbour.** {f['closer_count']} of {f['languages']} languages are "
        "closer to",
        "  their own profile on the other corpus than to their nearest other language on either corpus (share",
        f"  {it(*f['closer'], digits=2)}; against the nearest other language in the UDHR alone "
        f"{it(*f['closer_udhr'], digits=2)},",
        f"  in the Bible alone {it(*f['closer_bible'], digits=2)}).",
        f"  {exceptions}",
        f"- **{agree}:**",
        f"  Mantel r = {it(*f['mantel_r'], digits=2)} ({pt(f['p_mantel'], f['p_holm_mantel'])}"
        f"{'' if f['p_holm_mantel'] < 0.05 else ', not significant after correction'}).",
        "- **High-frequency experts.** A language's high-frequency sets on the two texts overlap with Jaccard",
        f"  {it(*f['jaccard_self'])}; two different languages on one text {it(*f['jaccard_within'])} (difference",
        f"  {it(*f['jaccard_gap'])}{'' if f['jaccard_gap_positive'] else ', not clear of zero: weak evidence'};",
        f"  {pt(f['p_high_frequency'], f['p_holm_high_frequency'])}). {f['jaccard_above_others']} of "
        f"{f['languages']} languages",
        "  share more of their set with themselves on the other text than with any other language on one text. "
        "A language",
        f"  has on average {f['hf_both']:.0f} high-frequency experts on both texts, {f['hf_udhr_only']:.0f} on the "
        "UDHR only and",
        f"  {f['hf_bible_only']:.0f} on the Bible only{one_only}.",
        f"- **Robustness.** Over the {f['views']} views the identification share ranges over "
        f"{f['robust_identification'][0]:.2f}-{f['robust_identification'][1]:.2f},",
        f"  the share closer to itself over {f['robust_closer'][0]:.2f}-{f['robust_closer'][1]:.2f}, the ratio over",
        f"  {f['robust_ratio'][0]:.2f}-{f['robust_ratio'][1]:.2f} and the Mantel r over "
        f"{f['robust_mantel'][0]:+.2f} to",
        f"  {f['robust_mantel'][1]:+.2f}; {headline}.",
        f"  With the Bible cut to {f['matched_passages']} chapter{'' if f['matched_passages'] == 1 else 's'} "
        f"(a median {f['matched_tokens']:,} tokens against the UDHR's",
        f"  {f['udhr_tokens']:,}): identification {f['matched_identification']:.2f}, closer to itself "
        f"{f['matched_closer']:.2f},",
        f"  ratio {f['matched_ratio']:.2f}, Mantel r {f['matched_mantel']:+.2f}.",
        f"- **Strength of evidence.** {f['languages']} languages; {f['udhr_passages']} UDHR passages and "
        f"{f['bible_passages']}",
        f"  Bible chapters (median {f['udhr_tokens']:,} and {f['bible_tokens']:,} tokens a language); "
        f"{f['resamples']:,}",
        f"  bootstrap resamples and {f['permutations']:,} permutations. Two texts only, both translations "
        "(the Bible versions",
        "  differ in age and style from language to language), and one small model: the result says how far these "
        "two texts",
        "  move the profiles, not every domain.",
        ""])
