"""The building blocks of findings, shared by the chapters: frequencies, high-frequency experts,
shared and specific experts, distances and clustering of languages, statistics at relative depth.

Pure functions on numpy arrays (and :class:`babel_lib.experts.profile.Profile` where named).
Shapes: ``n`` languages, ``L`` layers, ``E`` experts a layer. ``freq`` is always the
activation frequency ``f[lang, layer, expert]`` in [0, 1] (:meth:`Profile.frequencies`):
the fraction of a language's tokens on which the expert is activated.

Our choices where the paper is silent (each a named parameter):

- high-frequency: ``f >= hf_ratio * base rate`` with ``hf_ratio = 2.0``; the base rate is
  the frequency of an expert without preference, ``k / E`` under top-k activation
  (``rule='quantile'`` instead takes the top ``1 - quantile`` of a language's cells);
- depth: layer ``l`` of ``L`` sits at relative depth ``(l + 0.5) / L``; thirds early,
  middle, late by ``floor(3 l / L)``;
- entropy of a layer: Shannon entropy of ``f / sum_e f`` over the layer's experts,
  divided by ``log E`` (1 = uniform use of experts, 0 = one expert only);
- shared: high-frequency in all languages (or in at least ``min_languages``); specific:
  high-frequency in exactly one language;
- language distance: Jensen-Shannon distance (base 2, in [0, 1]) between frequency
  profiles normalised to sum 1 (under top-k every layer sums to k, so layers weigh
  equally), or cosine distance (the chapters' Hellinger distance is in
  :mod:`babel_lib.stats.distances`); hierarchical clustering with average linkage.

Tests and intervals live in :mod:`babel_lib.stats` (re-exported here for older callers).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform
from scipy.stats import rankdata

from babel_lib.core.definitions import active_count

DEPTH_THIRDS = ("early", "middle", "late")
#: Default high-frequency rule (our choice): frequency >= HF_RATIO x the base rate k/E.
HF_RATIO = 2.0
#: Default quantile of the alternative rule (our choice): the top 10% of a language's cells.
HF_QUANTILE = 0.9


# ---------------------------------------------------------------------------- frequencies
def frequencies(counts: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """f = counts / tokens: counts int [n, L, E], tokens int [n] -> float64 [n, L, E] in [0, 1]."""
    counts = np.asarray(counts)
    tokens = np.asarray(tokens)
    if counts.ndim != 3 or tokens.shape != counts.shape[:1]:
        raise ValueError(f"counts must be [n, L, E] and tokens [n]; got {counts.shape} and {tokens.shape}")
    if (tokens <= 0).any():
        raise ValueError("every language needs at least one token")
    if (counts < 0).any() or (counts > tokens[:, None, None]).any():
        raise ValueError("counts must lie in [0, tokens] (an expert fires at most once a token)")
    return counts / tokens[:, None, None]


def base_rate(profile) -> np.ndarray:
    """Frequency of an expert without preference, broadcastable to [n, L, E].

    Top-k activation: ``k / E`` for every cell (a scalar array). Threshold activation
    (no fixed k): each language's mean frequency of the layer, [n, L, 1] (our choice).
    """
    d = profile.definitions
    if d.get("activation", "topk") == "topk":
        E = profile.n_experts
        k = active_count(d["top_k_fraction"], E)
        return np.asarray(k / E)
    return profile.frequencies().mean(axis=2, keepdims=True)


def high_frequency(freq: np.ndarray, rate=None, rule: str = "ratio", hf_ratio: float = HF_RATIO,
                   quantile: float = HF_QUANTILE) -> np.ndarray:
    """Boolean [n, L, E]: which experts are high-frequency for each language.

    rule='ratio' (default, our choice): ``freq >= hf_ratio * rate``; ``rate`` is the base
    rate (:func:`base_rate`, e.g. k/E = 0.2), scalar or broadcastable to freq.
    rule='quantile': the cells of a language at or above its ``quantile`` over all its
    L x E cells (``quantile=0.9``: its top 10%; the number of such experts then varies by
    layer but not by language).
    """
    freq = np.asarray(freq, dtype=float)
    if rule == "ratio":
        if rate is None:
            raise ValueError("rule='ratio' needs the base rate (babel_lib.stats.analysis.base_rate(profile))")
        if hf_ratio <= 0:
            raise ValueError(f"hf_ratio must be positive, got {hf_ratio}")
        return freq >= hf_ratio * np.asarray(rate, dtype=float)
    if rule == "quantile":
        if not 0 < quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {quantile}")
        cut = np.quantile(freq.reshape(freq.shape[0], -1), quantile, axis=1)
        return freq >= cut[:, None, None]
    raise ValueError(f"rule must be 'ratio' or 'quantile', got {rule!r}")


def relative_depth(n_layers: int) -> np.ndarray:
    """Relative depth of each layer's centre, ``(l + 0.5) / L``: float [L] in (0, 1)."""
    return (np.arange(n_layers) + 0.5) / n_layers


def depth_third(n_layers: int) -> np.ndarray:
    """'early' / 'middle' / 'late' for each layer (layer l is in third floor(3 l / L)): str [L]."""
    return np.array(DEPTH_THIRDS)[(3 * np.arange(n_layers)) // n_layers]


def high_frequency_table(hf: np.ndarray, languages: list[str]) -> pd.DataFrame:
    """Counts per language and layer: language, layer, relative_depth, third, n_high, fraction (of E)."""
    n, L, E = hf.shape
    per = hf.sum(axis=2)
    return pd.DataFrame({
        "language": np.repeat(languages, L),
        "layer": np.tile(np.arange(L), n),
        "relative_depth": np.tile(relative_depth(L), n),
        "third": np.tile(depth_third(L), n),
        "n_high": per.reshape(-1),
        "fraction": per.reshape(-1) / E,
    })


def depth_summary(hf: np.ndarray, languages: list[str]) -> pd.DataFrame:
    """Where each language's high-frequency experts sit: language, third, n_high, share.

    share = n_high in the third / all the language's n_high (0 where it has none); thirds
    of unequal layer counts are compared fairly by ``per_layer`` = n_high / layers in it.
    """
    n, L, _ = hf.shape
    thirds = depth_third(L)
    rows = []
    for i, lang in enumerate(languages):
        total = int(hf[i].sum())
        for t in DEPTH_THIRDS:
            m = thirds == t
            c = int(hf[i, m].sum())
            rows.append({"language": lang, "third": t, "n_high": c, "layers": int(m.sum()),
                         "per_layer": c / max(int(m.sum()), 1), "share": c / total if total else 0.0})
    return pd.DataFrame(rows)


def layer_entropy(freq: np.ndarray, normalise: bool = True) -> np.ndarray:
    """Entropy of each layer's frequency distribution over experts: float [n, L].

    p_e = f_e / sum_e f_e; H = -sum p log p (natural log); with ``normalise`` divided by
    log E, so 1 = all experts used equally, 0 = a single expert. A layer with no
    activation at all gets NaN.
    """
    freq = np.asarray(freq, dtype=float)
    total = freq.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = freq / total
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=-1)
    h = np.where(total[..., 0] > 0, h, np.nan)
    if normalise:
        E = freq.shape[-1]
        h = h / np.log(E) if E > 1 else np.zeros_like(h)
    return np.clip(h, 0.0, None) if not normalise else np.clip(h, 0.0, 1.0)


# ---------------------------------------------------------------------------- shared and specific
def sharing_counts(hf: np.ndarray) -> np.ndarray:
    """In how many languages each expert is high-frequency: int [L, E] in [0, n]."""
    return np.asarray(hf, dtype=bool).sum(axis=0)


def shared_experts(hf: np.ndarray, min_languages: int | None = None) -> np.ndarray:
    """Boolean [L, E]: high-frequency in at least ``min_languages`` languages (default: all n)."""
    n = hf.shape[0]
    m = n if min_languages is None else int(min_languages)
    if not 1 <= m <= n:
        raise ValueError(f"min_languages must be in [1, {n}], got {min_languages}")
    return sharing_counts(hf) >= m


def specific_experts(hf: np.ndarray) -> np.ndarray:
    """Int [L, E]: the index of the only language for which the expert is high-frequency, else -1."""
    hf = np.asarray(hf, dtype=bool)
    owner = hf.argmax(axis=0)
    return np.where(sharing_counts(hf) == 1, owner, -1)


def shared_specific_by_layer(hf: np.ndarray, min_languages: int | None = None) -> pd.DataFrame:
    """Per layer: layer, relative_depth, third, shared_all, shared_min (>= min_languages; default
    half the languages, rounded up, our choice), specific, high_any (high-frequency in >= 1), experts."""
    n, L, E = hf.shape
    m = -(-n // 2) if min_languages is None else int(min_languages)
    return pd.DataFrame({
        "layer": np.arange(L),
        "relative_depth": relative_depth(L),
        "third": depth_third(L),
        "shared_all": shared_experts(hf).sum(axis=1),
        "shared_min": shared_experts(hf, m).sum(axis=1),
        "min_languages": m,
        "specific": (specific_experts(hf) >= 0).sum(axis=1),
        "high_any": (sharing_counts(hf) >= 1).sum(axis=1),
        "experts": E,
    })


def specific_by_language(hf: np.ndarray, languages: list[str]) -> pd.DataFrame:
    """Language-specific experts per language: language, specific, high (all its high-frequency experts),
    specific_share = specific / high (0 where it has none)."""
    owner = specific_experts(hf)
    spec = np.array([(owner == i).sum() for i in range(len(languages))])
    high = hf.reshape(len(languages), -1).sum(axis=1)
    return pd.DataFrame({"language": languages, "specific": spec, "high": high,
                         "specific_share": np.where(high > 0, spec / np.maximum(high, 1), 0.0)})


def jaccard_matrix(hf: np.ndarray) -> np.ndarray:
    """Jaccard similarity of the languages' high-frequency sets (over all layers): float [n, n].

    |A & B| / |A | B|; two empty sets count as identical (1.0), as scipy's jaccard distance does.
    """
    X = np.asarray(hf, dtype=bool).reshape(hf.shape[0], -1).astype(np.float64)
    inter = X @ X.T
    size = X.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)


def shared_by_subset_size(hf: np.ndarray, sizes, draws: int = 20, seed: int = 0) -> pd.DataFrame:
    """How the number of experts shared by *all* languages shrinks as languages are added.

    For each size s in ``sizes`` (sizes above n are skipped; s = n is one draw), ``draws``
    random subsets of s languages (seeded); returns size, draw, shared (experts high-frequency
    in every language of the subset, over all layers)."""
    n = hf.shape[0]
    rng = np.random.default_rng(seed)
    rows = []
    for s in sorted({int(x) for x in sizes if 1 <= int(x) <= n} | {n}):
        for d in range(1 if s == n else draws):
            idx = rng.choice(n, size=s, replace=False)
            rows.append({"size": s, "draw": d, "shared": int(shared_experts(hf[idx]).sum())})
    return pd.DataFrame(rows)


def lape(freq: np.ndarray, languages: list[str], top_rate: float = 0.05, filter_quantile: float = 0.95,
         assign_quantile: float = 0.95, min_probability: float | None = None) -> pd.DataFrame:
    """LAPE-style ranking of language-specific experts (Tang et al. 2024, RUCAIBox identify.py).

    Activation probability per language (here: the frequency) -> normalised over languages
    -> entropy over languages (divided by log n, so in [0, 1]) -> the ``top_rate`` share of
    all L x E experts with the lowest entropy, among experts where some language's
    probability exceeds a bar. Bar: the ``filter_quantile`` of all probabilities (LAPE:
    0.95), or ``min_probability`` when given. Each selected expert is assigned to every
    language whose probability exceeds the ``assign_quantile`` bar (or ``min_probability``).

    Returns one row per selected expert, lowest entropy first: layer, expert, entropy,
    top_language, top_probability, mean_probability (over languages), languages
    (assigned, comma-separated), n_languages.
    """
    P = np.asarray(freq, dtype=float)
    n, L, E = P.shape
    if n < 2:
        raise ValueError("LAPE needs at least two languages")
    total = P.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = np.where(total > 0, P / np.where(total > 0, total, 1.0), 0.0)
        H = -np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).sum(axis=0) / np.log(n)
    filter_bar = min_probability if min_probability is not None else float(np.quantile(P, filter_quantile))
    assign_bar = min_probability if min_probability is not None else float(np.quantile(P, assign_quantile))
    eligible = (P > filter_bar).any(axis=0)
    want = max(1, round(top_rate * L * E))
    flat = np.where(eligible, H, np.inf).reshape(-1)
    order = np.argsort(flat, kind="stable")[:want]
    order = order[np.isfinite(flat[order])]
    layer, expert = np.unravel_index(order, (L, E))
    rows = []
    for l, e in zip(layer, expert):
        p = P[:, l, e]
        assigned = [languages[i] for i in np.flatnonzero(p > assign_bar)]
        rows.append({"layer": int(l), "expert": int(e), "entropy": float(H[l, e]),
                     "top_language": languages[int(p.argmax())], "top_probability": float(p.max()),
                     "mean_probability": float(p.mean()), "languages": ",".join(assigned),
                     "n_languages": len(assigned)})
    cols = ["layer", "expert", "entropy", "top_language", "top_probability", "mean_probability", "languages",
            "n_languages"]
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------------------- distances
def _rows(freq: np.ndarray) -> np.ndarray:
    X = np.asarray(freq, dtype=float)
    return X.reshape(X.shape[0], -1)


def cosine_distances(X: np.ndarray, centre: bool = False) -> np.ndarray:
    """1 - cosine similarity between rows of X [n, d] (or [n, L, E], flattened): float [n, n].

    centre=True subtracts the mean row first (distances then reflect how languages depart
    from the all-language mean; plain frequency vectors are all positive and close to k/E,
    so their cosine distances are small)."""
    X = _rows(X)
    if centre:
        X = X - X.mean(axis=0, keepdims=True)
    norm = np.linalg.norm(X, axis=1)
    if (norm == 0).any():
        raise ValueError("cosine distance is undefined for an all-zero profile")
    U = X / norm[:, None]
    D = 1.0 - np.clip(U @ U.T, -1.0, 1.0)
    np.fill_diagonal(D, 0.0)
    return np.maximum(D, 0.0)


def js_distances(X: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2, in [0, 1]) between rows of X [n, d] (or [n, L, E],
    flattened), each normalised to sum 1: float [n, n], symmetric, zero diagonal.

    JS distance = sqrt(JSD), JSD = (KL(p || m) + KL(q || m)) / 2, m = (p + q) / 2; it is a metric.
    """
    X = _rows(X)
    if (X < 0).any():
        raise ValueError("Jensen-Shannon needs non-negative profiles")
    s = X.sum(axis=1, keepdims=True)
    if (s == 0).any():
        raise ValueError("Jensen-Shannon is undefined for an all-zero profile")
    P = X / s
    n = len(P)
    with np.errstate(divide="ignore", invalid="ignore"):
        logP = np.where(P > 0, np.log2(np.where(P > 0, P, 1.0)), 0.0)
        D = np.zeros((n, n))
        for i in range(n - 1):
            Q = P[i + 1:]
            M = (P[i] + Q) / 2
            logM = np.where(M > 0, np.log2(np.where(M > 0, M, 1.0)), 0.0)
            kl_p = np.where(P[i] > 0, P[i] * (logP[i] - logM), 0.0).sum(axis=1)
            kl_q = np.where(Q > 0, Q * (logP[i + 1:] - logM), 0.0).sum(axis=1)
            D[i, i + 1:] = np.sqrt(np.clip((kl_p + kl_q) / 2, 0.0, 1.0))
    return D + D.T


def profile_distances(freq: np.ndarray, metric: str = "js", per_layer: bool = False,
                      centre: bool = False) -> np.ndarray:
    """Distances between languages from frequency profiles freq [n, L, E].

    metric: 'js' (Jensen-Shannon distance) or 'cosine' (``centre`` as in :func:`cosine_distances`).
    per_layer=False: one [n, n] matrix from the flattened L x E profile; True: [L, n, n], one
    matrix per layer from that layer's E frequencies.
    """
    fn = {"js": js_distances, "cosine": lambda X: cosine_distances(X, centre=centre)}.get(metric)
    if fn is None:
        raise ValueError(f"metric must be 'js' or 'cosine', got {metric!r}")
    freq = np.asarray(freq, dtype=float)
    if per_layer:
        return np.stack([fn(freq[:, l, :]) for l in range(freq.shape[1])])
    return fn(freq)


def mean_offdiagonal(D: np.ndarray) -> np.ndarray:
    """Mean of the off-diagonal entries of [..., n, n] distance matrices: float [...]."""
    n = D.shape[-1]
    iu = np.triu_indices(n, 1)
    return D[..., iu[0], iu[1]].mean(axis=-1)


def nearest_neighbours(D: np.ndarray, languages: list[str], k: int = 3) -> pd.DataFrame:
    """The k nearest other languages of each: language, rank (1 = nearest), neighbour, distance."""
    D = np.asarray(D, dtype=float)
    rows = []
    for i, lang in enumerate(languages):
        d = D[i].copy()
        d[i] = np.inf
        for r, j in enumerate(np.argsort(d, kind="stable")[:k], 1):
            rows.append({"language": lang, "rank": r, "neighbour": languages[j], "distance": float(D[i, j])})
    return pd.DataFrame(rows)


def different(labels) -> np.ndarray:
    """[n, n] 0/1 matrix: 1 where two items have different labels (e.g. scripts, families)."""
    labels = np.asarray(labels)
    return (labels[:, None] != labels[None, :]).astype(float)


# ---------------------------------------------------------------------------- clustering
def cluster(D: np.ndarray, method: str = "average") -> np.ndarray:
    """Hierarchical clustering of a distance matrix D [n, n]: scipy linkage matrix [n - 1, 4]."""
    return hierarchy.linkage(squareform(np.asarray(D, dtype=float), checks=False), method=method)


def cophenetic_correlation(Z: np.ndarray, D: np.ndarray) -> float:
    """Pearson correlation between the dendrogram's cophenetic distances and D [n, n]:
    how faithfully the tree drawn represents the distances (1 = exactly)."""
    c, _ = hierarchy.cophenet(Z, squareform(np.asarray(D, dtype=float), checks=False))
    return float(c)


def flat_clusters(Z: np.ndarray, n_clusters: int) -> np.ndarray:
    """Cut the dendrogram into at most ``n_clusters`` clusters: int labels [n] (1-based)."""
    return hierarchy.fcluster(Z, t=n_clusters, criterion="maxclust")


def dendrogram_segments(Z: np.ndarray, labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Coordinates to draw a dendrogram without matplotlib (scipy ``no_plot=True``).

    Returns (segments, leaves): segments has x, x2 (merge height, 0 = leaves) and y, y2
    (leaf axis; leaf i of the drawing order sits at y = i); leaves has label, position
    (drawing order, 0 first) and y.
    """
    d = hierarchy.dendrogram(Z, labels=list(labels), no_plot=True)
    rows = []
    for ic, dc in zip(d["icoord"], d["dcoord"]):
        for s in range(3):
            rows.append({"y": (ic[s] - 5) / 10, "y2": (ic[s + 1] - 5) / 10, "x": dc[s], "x2": dc[s + 1]})
    leaves = pd.DataFrame({"label": d["ivl"], "position": np.arange(len(d["ivl"])),
                           "y": np.arange(len(d["ivl"]), dtype=float)})
    return pd.DataFrame(rows), leaves



# ---------------------------------------------------------------------------- models at relative depth
def depth_grid(points: int) -> np.ndarray:
    """A common relative-depth grid: the centres (i + 0.5) / points, float [points]."""
    if points < 1:
        raise ValueError("the grid needs at least one point")
    return (np.arange(points) + 0.5) / points


def resample_depth(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per-layer statistics [..., L] -> the same statistics at relative depths ``grid`` [G]:
    linear interpolation between layer centres (:func:`relative_depth`), held constant beyond
    the first and last centre. Returns float [..., G]."""
    values = np.asarray(values, dtype=float)
    L = values.shape[-1]
    src = relative_depth(L)
    flat = values.reshape(-1, L)
    out = np.stack([np.interp(grid, src, row) for row in flat])
    return out.reshape(values.shape[:-1] + (len(grid),))


def depth_frame(stats: dict, grid_points: int | None = None) -> pd.DataFrame:
    """Per-layer statistics of several models on one relative-depth grid.

    stats: {model: {statistic: array [L_model]}}. grid_points: default the smallest layer
    count among the models (our choice: no model is upsampled beyond its own resolution by
    more than the others). Returns model, statistic, depth, value.
    """
    if grid_points is None:
        grid_points = min(len(np.asarray(v)) for s in stats.values() for v in s.values())
    grid = depth_grid(grid_points)
    rows = []
    for model, s in stats.items():
        for name, v in s.items():
            for d, val in zip(grid, resample_depth(np.asarray(v), grid)):
                rows.append({"model": model, "statistic": name, "depth": float(d), "value": float(val)})
    return pd.DataFrame(rows)


def by_third(values: np.ndarray) -> np.ndarray:
    """Mean of per-layer values [..., L] within the early, middle and late thirds: [..., 3]."""
    values = np.asarray(values, dtype=float)
    thirds = depth_third(values.shape[-1])
    return np.stack([values[..., thirds == t].mean(axis=-1) for t in DEPTH_THIRDS], axis=-1)


def depth_trend(values: np.ndarray) -> float:
    """Spearman correlation of a per-layer statistic [L] with depth (+1: rises steadily with depth)."""
    values = np.asarray(values, dtype=float)
    if len(values) < 3 or np.allclose(values, values[0]):
        return float("nan")
    a = rankdata(np.arange(len(values)))
    b = rankdata(values)
    return float(np.corrcoef(a, b)[0, 1])


def depth_agreement(a: np.ndarray, b: np.ndarray, grid_points: int | None = None) -> float:
    """Pearson correlation of two per-layer statistics [L_a] and [L_b] after resampling both onto a
    common relative-depth grid (default: the smaller layer count). NaN when either is constant."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    grid = depth_grid(grid_points or min(len(a), len(b)))
    x, y = resample_depth(a, grid), resample_depth(b, grid)
    if np.allclose(x, x[0]) or np.allclose(y, y[0]):
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
