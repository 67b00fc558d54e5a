"""Comparing two activation profiles of the same languages (e.g. a base model and its tuned
version under the base's partition, or two halves of one text): per-layer and per-language
similarity of the expert frequencies, and whether the high-frequency, shared and language-specific
experts of one are kept in the other.

Built only on :mod:`babel_lib.stats.analysis`, so that a comparison here means what the rest of the book
means by the same words:

- similarity of one language's layer in profile A and in profile B: the Jensen-Shannon distance
  (:func:`babel_lib.stats.analysis.js_distances`: base 2, frequencies normalised to sum 1 over the
  layer's experts) and the cosine (1 - :func:`babel_lib.stats.analysis.cosine_distances`) of the two
  frequency vectors; ``js`` is the Jensen-Shannon *divergence* in bits (the distance squared);
- high-frequency: :func:`babel_lib.stats.analysis.high_frequency` with the base rate
  :func:`babel_lib.stats.analysis.base_rate` (default: frequency >= 2 x k/E); shared:
  :func:`babel_lib.stats.analysis.shared_experts` (high-frequency in every language); specific:
  :func:`babel_lib.stats.analysis.specific_experts` (high-frequency in exactly one language);
- overlap of two expert sets: :func:`babel_lib.stats.analysis.jaccard_matrix` (two empty sets count as
  identical, 1.0).

Profiles are :class:`babel_lib.experts.profile.Profile` objects over the same languages, layers and
experts; where a function takes frequency arrays, they are ``f[lang, layer, expert]``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from babel_lib.stats import analysis


def check_pair(base, tuned) -> None:
    if list(base.languages) != list(tuned.languages) or base.counts.shape != tuned.counts.shape:
        raise ValueError("profiles must cover the same languages, layers and experts")


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two vectors; NaN when either is constant."""
    da, db = a - a.mean(), b - b.mean()
    den = np.linalg.norm(da) * np.linalg.norm(db)
    return float(da @ db / den) if den > 0 else float("nan")


def frequency_similarity(fa: np.ndarray, fb: np.ndarray, languages) -> pd.DataFrame:
    """Per language and layer, how the frequencies ``fb`` differ from ``fa`` (both [n, L, E]).

    Columns: language, layer, cosine (1 - analysis.cosine_distances), js_distance
    (analysis.js_distances, base 2, in [0, 1]), js (Jensen-Shannon divergence in bits = js_distance
    squared), mean_abs_diff, max_abs_diff (of fb - fa), pearson (NaN for a constant layer).
    A layer with no activation at all (possible only under threshold activation) has no
    distribution: analysis raises ValueError.
    """
    fa, fb = np.asarray(fa, dtype=float), np.asarray(fb, dtype=float)
    if fa.shape != fb.shape or fa.ndim != 3:
        raise ValueError(f"two frequency arrays [languages, layers, experts] of one shape are needed, "
                         f"got {fa.shape} and {fb.shape}")
    if len(languages) != fa.shape[0]:
        raise ValueError(f"{len(languages)} language names for {fa.shape[0]} languages")
    rows = []
    for i, lang in enumerate(languages):
        for layer in range(fa.shape[1]):
            pair = np.stack([fa[i, layer], fb[i, layer]])
            jsd = float(analysis.js_distances(pair)[0, 1])
            diff = np.abs(pair[1] - pair[0])
            rows.append({"language": lang, "layer": layer,
                         "cosine": 1.0 - float(analysis.cosine_distances(pair)[0, 1]),
                         "js_distance": jsd, "js": jsd ** 2,
                         "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
                         "pearson": _pearson(pair[0], pair[1])})
    return pd.DataFrame(rows)


def compare_profiles(base, tuned) -> pd.DataFrame:
    """:func:`frequency_similarity` of two profiles of the same languages, layers and experts (same
    partition, same text), one row per (language, layer)."""
    check_pair(base, tuned)
    return frequency_similarity(base.frequencies(), tuned.frequencies(), list(base.languages))


def difference_frame(base, tuned) -> pd.DataFrame:
    """Tidy table of two profiles: language, layer, expert, base, tuned, difference (tuned - base frequency)."""
    check_pair(base, tuned)
    fb, ft = base.frequencies(), tuned.frequencies()
    n, L, E = fb.shape
    return pd.DataFrame({
        "language": np.repeat(list(base.languages), L * E),
        "layer": np.tile(np.repeat(np.arange(L), E), n),
        "expert": np.tile(np.arange(E), n * L),
        "base": fb.reshape(-1), "tuned": ft.reshape(-1), "difference": (ft - fb).reshape(-1),
    })


def expert_retention(base, tuned, languages=None, rate=None, *, hf_ratio: float = analysis.HF_RATIO,
                     rule: str = "ratio", quantile: float = analysis.HF_QUANTILE) -> pd.DataFrame:
    """Do the base's high-frequency, shared and language-specific experts stay in the other profile?

    base, tuned: two :class:`~babel_lib.experts.profile.Profile` objects (languages from ``base``, base rate
    ``analysis.base_rate(base)``), or two frequency arrays [n, L, E] with ``languages`` and (for
    rule='ratio') ``rate`` given. hf_ratio, rule, quantile: as in :func:`analysis.high_frequency`.

    One row per (kind, language): kind 'high-frequency' (per language), 'shared' (language 'all'),
    'specific' (per language); n_base, n_tuned, kept (in both), kept_fraction (kept / n_base, NaN
    when n_base is 0) and jaccard (analysis.jaccard_matrix: 1.0 when both sets are empty), counted
    over all layers.
    """
    if hasattr(base, "frequencies"):
        check_pair(base, tuned)
        if dict(base.definitions) != dict(tuned.definitions):
            raise ValueError("the two profiles were counted under different definitions")
        languages = list(base.languages) if languages is None else list(languages)
        rate = analysis.base_rate(base) if rate is None else rate
        fb, ft = base.frequencies(), tuned.frequencies()
    else:
        fb, ft = np.asarray(base, dtype=float), np.asarray(tuned, dtype=float)
        if fb.shape != ft.shape or fb.ndim != 3:
            raise ValueError("two frequency arrays [languages, layers, experts] of one shape are needed")
        if languages is None:
            raise ValueError("frequency arrays need their languages")
        languages = list(languages)
    hb = analysis.high_frequency(fb, rate, rule=rule, hf_ratio=hf_ratio, quantile=quantile)
    ht = analysis.high_frequency(ft, rate, rule=rule, hf_ratio=hf_ratio, quantile=quantile)
    ob, ot = analysis.specific_experts(hb), analysis.specific_experts(ht)
    rows = []

    def row(kind, lang, a, b):
        n_base, kept = int(a.sum()), int(np.logical_and(a, b).sum())
        rows.append({"kind": kind, "language": lang, "n_base": n_base, "n_tuned": int(b.sum()), "kept": kept,
                     "kept_fraction": kept / n_base if n_base else float("nan"),
                     "jaccard": float(analysis.jaccard_matrix(np.stack([a, b]))[0, 1])})

    for i, lang in enumerate(languages):
        row("high-frequency", lang, hb[i], ht[i])
    row("shared", "all", analysis.shared_experts(hb), analysis.shared_experts(ht))
    for i, lang in enumerate(languages):
        row("specific", lang, ob == i, ot == i)
    return pd.DataFrame(rows)
