"""Activation patterns of languages, as chapter steps: the layer x expert frequency maps (chapter 2),
high-frequency experts over depth (chapter 3), shared and language-specific experts (chapter 4).

Every statistic takes frequencies ``freq`` float [..., n, L, E] (``n`` languages, ``L`` layers,
``E`` experts; leading axes, if any, are bootstrap resamples) and returns an array with the same
leading axes, so one function serves the estimate and every resample. Intervals come from
:func:`babel_lib.stats.bootstrap` over passages (the same resample for every language).

Our choices (the paper is silent): the common map is the mean frequency over the languages shown;
a language's *departure* from it in a layer is the mean over experts of |f - common map|, in
frequency units (share of tokens); a layer's *concentration* is the share of its activations
carried by its 10% most used experts (uniform use gives 10%); intervals are BCa (bias-corrected:
a departure is an absolute value, so resampling noise inflates it); the *noise floor* of a departure is
what sampling noise alone gives (half the mean |difference| between the profiles of two random
halves of the passages, which estimates the mean |noise| of the full-data profile).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import stats
from .analysis import DEPTH_THIRDS, depth_third
from .corpus import language_labels


# ---------------------------------------------------------------------------- the maps
def rank_within_layer(values: np.ndarray) -> np.ndarray:
    """Position of each expert when its layer's experts are sorted by decreasing ``values`` [L, E]
    (0 = the highest; ties by expert id): int [L, E]."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(-values, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(values.shape[1])[None, :].repeat(values.shape[0], 0), axis=1)
    return ranks


def heatmap_frame(profile) -> pd.DataFrame:
    """One row per (language, layer, expert): language, name, layer, expert, rank (position in its
    layer by mean frequency over the languages: the x axis of the maps), frequency, difference
    (frequency minus the mean over the languages)."""
    freq = profile.frequencies()
    common = freq.mean(axis=0)
    n, L, E = freq.shape
    labels = language_labels(profile.languages)
    return pd.DataFrame({
        "language": np.repeat(profile.languages, L * E),
        "name": np.repeat([labels[k] for k in profile.languages], L * E),
        "layer": np.tile(np.repeat(np.arange(L), E), n),
        "expert": np.tile(np.arange(E), n * L),
        "rank": np.tile(rank_within_layer(common).reshape(-1), n),
        "frequency": freq.reshape(-1),
        "difference": (freq - common[None]).reshape(-1),
    })


def departure(freq: np.ndarray) -> np.ndarray:
    """Mean over experts of |f - mean over languages of f|: [..., n, L] (frequency units)."""
    freq = np.asarray(freq, dtype=float)
    return np.abs(freq - freq.mean(axis=-3, keepdims=True)).mean(axis=-1)


def concentration(freq: np.ndarray, top_fraction: float = 0.1) -> np.ndarray:
    """Share of a layer's activations carried by its ``top_fraction`` most used experts (at least
    one): [..., n, L], in [top_fraction, 1]; uniform use of the experts gives ``top / E``."""
    freq = np.asarray(freq, dtype=float)
    top = max(1, int(round(top_fraction * freq.shape[-1])))
    part = -np.partition(-freq, top - 1, axis=-1)[..., :top]
    total = freq.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, part.sum(axis=-1) / np.where(total > 0, total, 1.0), np.nan)


def uniform_share(n_experts: int, top_fraction: float = 0.1) -> float:
    """The concentration of a layer whose experts are used equally: top / E."""
    return max(1, int(round(top_fraction * n_experts))) / n_experts


def by_third(values: np.ndarray) -> np.ndarray:
    """Mean of per-layer values [..., L] within the early, middle and late thirds: [..., 3]."""
    values = np.asarray(values, dtype=float)
    thirds = depth_third(values.shape[-1])
    return np.stack([values[..., thirds == t].mean(axis=-1) for t in DEPTH_THIRDS], axis=-1)


def departure_floor(counts: np.ndarray, tokens: np.ndarray, n_splits: int = 100, seed: int = 0) -> np.ndarray:
    """The departure sampling noise alone gives, per language and layer: float [n, L].

    counts int [n, P, L, E], tokens int [n, P]. For ``n_splits`` random halves of the passages
    (the same split for every language): mean over experts of |f_half1 - f_half2| / 2, averaged
    over the splits. With fewer than 2 passages there is no split: NaN."""
    counts = np.asarray(counts, dtype=np.float64)
    tokens = np.asarray(tokens, dtype=np.float64)
    n, P = tokens.shape
    if P < 2:
        return np.full(counts.shape[:1] + counts.shape[2:3], np.nan)
    rng = np.random.default_rng(seed)
    total = np.zeros((n, counts.shape[2]))
    for _ in range(n_splits):
        half = np.zeros(P, dtype=bool)
        half[rng.permutation(P)[: P // 2]] = True
        fa = counts[:, half].sum(1) / tokens[:, half].sum(1)[:, None, None]
        fb = counts[:, ~half].sum(1) / tokens[:, ~half].sum(1)[:, None, None]
        total += np.abs(fa - fb).mean(axis=-1) / 2
    return total / n_splits


# ---------------------------------------------------------------------------- chapter 2 in one call
def heatmap_results(views: dict, n_resamples: int = 1000, seed: int = 0, top_fraction: float = 0.1,
                    n_splits: int = 100) -> dict:
    """Everything chapter 2 reports, from profiles of the same languages under several views
    ({name: Profile}, the main view first; see :class:`babel_lib.pipeline.Study.views`).

    Returns a dict of tables and facts:
    - ``by_language``: language, name, departure (mean over layers) with 95% bootstrap interval,
      floor (noise), ratio = departure / floor, beyond_noise (interval above the floor);
    - ``by_layer``: layer, third, departure (mean over languages) and concentration (mean over
      languages), each with its interval;
    - ``by_third``: third, departure with its interval;
    - ``robustness``: per view: concentration, uniform share, languages beyond noise, the most
      departing language, the third with the largest departure, Spearman correlation of the
      languages' departures with the main view's;
    - ``facts``: the scalars the findings quote.
    """
    names = list(views)
    main = views[names[0]]
    labels = language_labels(main.languages)
    n, L, E = main.counts.shape
    counts, tokens = main.passage_counts, main.passage_tokens

    def per_language(f):
        return departure(f).mean(axis=-1)

    dep_lang = stats.bootstrap(per_language, counts, tokens, n_resamples, seed, method="bca", batched=True)
    dep_layer = stats.bootstrap(lambda f: departure(f).mean(axis=-2), counts, tokens, n_resamples, seed, method="bca", batched=True)
    dep_third = stats.bootstrap(lambda f: by_third(departure(f).mean(axis=-2)), counts, tokens, n_resamples, seed,
                                method="bca", batched=True)
    conc_layer = stats.bootstrap(lambda f: concentration(f, top_fraction).mean(axis=-2), counts, tokens,
                                 n_resamples, seed, method="bca", batched=True)
    conc_all = stats.bootstrap(lambda f: concentration(f, top_fraction).mean(axis=(-2, -1)), counts, tokens,
                               n_resamples, seed, method="bca", batched=True)
    floor = departure_floor(counts, tokens, n_splits, seed).mean(axis=-1)
    by_language = pd.DataFrame({
        "language": main.languages, "name": [labels[k] for k in main.languages],
        "departure": dep_lang.estimate, "low": dep_lang.low, "high": dep_lang.high, "floor": floor,
        "ratio": dep_lang.estimate / floor, "beyond_noise": dep_lang.low > floor,
    }).sort_values("departure", ascending=False, ignore_index=True)
    by_layer = pd.DataFrame({
        "layer": np.arange(L), "third": depth_third(L),
        "departure": dep_layer.estimate, "departure_low": dep_layer.low, "departure_high": dep_layer.high,
        "concentration": conc_layer.estimate, "concentration_low": conc_layer.low,
        "concentration_high": conc_layer.high, "uniform_share": uniform_share(E, top_fraction),
    })
    by_third_table = pd.DataFrame({"third": list(DEPTH_THIRDS), "departure": dep_third.estimate,
                                   "low": dep_third.low, "high": dep_third.high})
    rows = []
    main_dep = per_language(main.frequencies())
    for name, prof in views.items():
        f = prof.frequencies()
        dep = per_language(f)
        fl = departure_floor(prof.passage_counts, prof.passage_tokens, n_splits, seed).mean(axis=-1)
        thirds = by_third(departure(f).mean(axis=-2))
        rows.append({
            "view": name, "concentration": float(concentration(f, top_fraction).mean()),
            "uniform_share": uniform_share(prof.n_experts, top_fraction),
            "beyond_noise": int((dep > fl).sum()), "languages": len(dep),
            "median_ratio": float(np.median(dep / fl)),
            "most_departing": labels[prof.languages[int(np.argmax(dep))]],
            "largest_third": DEPTH_THIRDS[int(np.argmax(thirds))],
            "spearman_with_main": _spearman(dep, main_dep) if name != names[0] else 1.0,
        })
    robustness = pd.DataFrame(rows)
    top3 = by_third_table.sort_values("departure", ascending=False)
    separated = bool(top3["low"].iloc[0] > top3["high"].iloc[1])
    facts = {
        "languages": n, "layers": L, "experts": E, "top_fraction": top_fraction,
        "uniform_share": uniform_share(E, top_fraction),
        "concentration": conc_all.estimate, "concentration_low": conc_all.low, "concentration_high": conc_all.high,
        "concentration_above_uniform": bool(conc_all.low > uniform_share(E, top_fraction)),
        "most_departing": by_language["name"].iloc[0], "least_departing": by_language["name"].iloc[-1],
        "top_departure": by_language.iloc[0][["departure", "low", "high"]].tolist(),
        "bottom_departure": by_language.iloc[-1][["departure", "low", "high"]].tolist(),
        "top_separated": bool(by_language["low"].iloc[0] > by_language["high"].iloc[1]) if n > 1 else False,
        "beyond_noise": int(by_language["beyond_noise"].sum()),
        "median_ratio": float(np.median(by_language["ratio"])),
        "largest_third": top3["third"].iloc[0], "smallest_third": top3["third"].iloc[-1],
        "largest_third_separated": separated,
        "passages": main.n_passages, "resamples": n_resamples,
        "views": len(views),
        "robust_concentration": bool((robustness["concentration"] > robustness["uniform_share"]).all()),
        "robust_beyond_noise": bool((robustness["beyond_noise"] == robustness["languages"]).all()),
        "robust_largest_third": bool((robustness["largest_third"] == top3["third"].iloc[0]).all()),
        "robust_most_departing": bool((robustness["most_departing"] == by_language["name"].iloc[0]).all()),
        "min_spearman": float(robustness["spearman_with_main"].min()),
    }
    return {"by_language": by_language, "by_layer": by_layer, "by_third": by_third_table,
            "robustness": robustness, "facts": facts}


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def heatmap_verdicts(facts: dict) -> list[dict]:
    """The chapter's verdict rows (see :mod:`babel_lib.verdicts`) from :func:`heatmap_results` facts."""
    from .verdicts import row

    f = facts
    result = (f"the {f['top_fraction']:.0%} most used experts of a layer carry "
              f"{stats.interval_text(f['concentration'], f['concentration_low'], f['concentration_high'])} of its "
              f"activations (uniform use: {f['uniform_share']:.3f}); {f['beyond_noise']} of {f['languages']} "
              f"languages depart from the common map beyond sampling noise (median {f['median_ratio']:.1f} times "
              "the noise floor)")
    holds = f["concentration_above_uniform"] and f["beyond_noise"] == f["languages"]
    robust = f["robust_concentration"] and f["robust_beyond_noise"]
    word = "reproduced" if holds and robust else ("partly reproduced" if holds or f["beyond_noise"] else
                                                 "not reproduced")
    evidence = (f"bootstrap over {f['passages']} passages ({f['resamples']:,} resamples); "
                + ("holds under every partition seed and the neuron view" if robust
                   else "does not hold under every partition seed and the neuron view"))
    return [row("heatmaps", result, evidence, word)]


# ============================================================================ chapter 3: high-frequency experts
# Our choices (the paper is silent): an expert is *high-frequency* for a language when its frequency
# is at least ``hf_ratio`` (2) times the base rate k/E, the frequency of an expert without preference
# under top-k activation (for the neuron view the same rule with its own base rate k/N). Where such
# experts sit: their share in the early, middle and late thirds of the layers, against the share of
# layers in each third (uniform placement). Numbers of experts above a threshold are biased by noise,
# so their intervals are BCa.

def hf_threshold(profile, hf_ratio: float = 2.0) -> float:
    """The high-frequency bar of a profile's view: ``hf_ratio`` x the base rate k/E (top-k definitions;
    :func:`babel_lib.analysis.base_rate`)."""
    from .analysis import base_rate

    rate = np.asarray(base_rate(profile), dtype=float)
    if rate.ndim:
        raise ValueError("a single base rate is needed (top-k definitions)")
    return float(hf_ratio * rate)


def high_frequency_reductions(counts: np.ndarray, tokens: np.ndarray, threshold, weights: np.ndarray,
                              max_elements: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Which experts are high-frequency under each row of passage weights, reduced two ways:

    - ``per_layer`` int [m, n, L]: high-frequency experts of each language in each layer;
    - ``sharing`` int [m, L, E]: the number of languages in which each expert is high-frequency.

    counts int [n, P, L, E], tokens int [n, P], threshold: scalar or broadcastable to [n, L, E]
    (frequency >= threshold is high-frequency), weights float [m, P] (resample multiplicities).
    Exact and cheap for big views (the neuron view): a cell's frequency under any weights is a
    weighted mean of its per-passage frequencies, so a cell whose per-passage frequencies all reach
    the threshold is high-frequency under every weighting and one whose never do is never; only
    the cells in between are recomputed. A language without weighted tokens counts nothing.
    """
    counts = np.asarray(counts)
    tokens = np.asarray(tokens, dtype=np.float64)
    W = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    n, P, L, E = counts.shape
    m = len(W)
    if tokens.shape != (n, P) or W.shape[1] != P:
        raise ValueError(f"counts [n, P, L, E], tokens [n, P] and weights [m, P] are needed; got "
                         f"{counts.shape}, {tokens.shape}, {W.shape}")
    if (tokens.sum(axis=1) <= 0).any():
        raise ValueError("every language needs at least one token")
    thr = np.broadcast_to(np.asarray(threshold, dtype=float), (n, L, E)).reshape(n, L * E)
    flat = counts.reshape(n, P, L * E)
    lo = np.full((n, L * E), np.inf)
    hi = np.full((n, L * E), -np.inf)
    for p in range(P):  # per-passage frequencies, passages without tokens left out
        has = tokens[:, p] > 0
        if has.any():
            f = flat[has, p].astype(np.float64) / tokens[has, p][:, None]
            lo[has] = np.minimum(lo[has], f)
            hi[has] = np.maximum(hi[has], f)
    always = lo >= thr
    li, ci = np.nonzero((hi >= thr) & ~always)
    valid = (W @ tokens.T) > 0  # [m, n]
    layer_of = np.arange(L * E) // E
    always_layer = np.stack([np.bincount(layer_of, weights=always[i], minlength=L) for i in range(n)])  # [n, L]
    per_layer = valid[:, :, None] * always_layer[None]
    sharing = valid.astype(np.float64) @ always.astype(np.float64)  # [m, L * E]
    if len(li):
        from scipy import sparse

        K = len(li)
        C = flat[li, :, ci].astype(np.float64).T  # [P, K]
        to_group = sparse.csr_matrix((np.ones(K), (np.arange(K), li * L + layer_of[ci])), shape=(K, n * L))
        to_cell = sparse.csr_matrix((np.ones(K), (np.arange(K), ci)), shape=(K, L * E))
        per_layer = per_layer.reshape(m, n * L).astype(np.float64)
        step = max(1, max_elements // K)
        for s in range(0, m, step):
            Ws = W[s:s + step]
            den = (Ws @ tokens.T)[:, li]
            with np.errstate(divide="ignore", invalid="ignore"):
                hit = ((Ws @ C) >= thr[li, ci] * den) & (den > 0)
            H = hit.astype(np.float64)
            per_layer[s:s + step] += np.asarray((to_group.T @ H.T).T)
            sharing[s:s + step] += np.asarray((to_cell.T @ H.T).T)
        per_layer = per_layer.reshape(m, n, L)
    return np.rint(per_layer).astype(np.int64), np.rint(sharing).reshape(m, L, E).astype(np.int64)


def third_shares(per_layer: np.ndarray) -> np.ndarray:
    """Share of the high-frequency experts in the early, middle and late thirds: per_layer [..., L]
    (counts) -> [..., 3] (NaN where there is none)."""
    per_layer = np.asarray(per_layer, dtype=float)
    thirds = depth_third(per_layer.shape[-1])
    part = np.stack([per_layer[..., thirds == t].sum(axis=-1) for t in DEPTH_THIRDS], axis=-1)
    total = part.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, part / np.where(total > 0, total, 1.0), np.nan)


def uniform_third_shares(n_layers: int) -> np.ndarray:
    """The shares uniform placement over the layers gives each third: layers in the third / L, [3]."""
    thirds = depth_third(n_layers)
    return np.array([(thirds == t).mean() for t in DEPTH_THIRDS])


def recentred_bootstrap_p(estimate: np.ndarray, samples: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Bootstrap test that a vector statistic equals ``expected`` (e.g. third shares = uniform):
    T = sum (estimate - expected)^2 against the resampling noise T*_b = sum (sample_b - estimate)^2
    (the recentred bootstrap, Hall and Wilson 1991); p = (1 + #{T* >= T}) / (1 + B).

    estimate [..., k], samples [B, ..., k], expected [k] -> p [...] (NaN where the estimate is NaN;
    resamples with NaN are left out)."""
    estimate = np.asarray(estimate, dtype=float)
    samples = np.asarray(samples, dtype=float)
    T = ((estimate - expected) ** 2).sum(axis=-1)
    Tb = ((samples - estimate[None]) ** 2).sum(axis=-1)
    finite = np.isfinite(Tb)
    hits = ((Tb >= T[None] - 1e-15) & finite).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = (1 + hits) / (1 + finite.sum(axis=0))
    return np.where(np.isfinite(T), p, np.nan)


def _rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman correlation of x and y along the last axis, row by row: [m, n] -> [m] (NaN if constant)."""
    from scipy.stats import rankdata

    rx = rankdata(x, axis=-1)
    ry = rankdata(y, axis=-1)
    rx = rx - rx.mean(axis=-1, keepdims=True)
    ry = ry - ry.mean(axis=-1, keepdims=True)
    den = np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (rx * ry).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def _bootstrap_dict(fn, n_units: int, n_resamples: int, seed: int, method: str = "bca",
                    rows_per_call: int = 64) -> dict:
    """Passage bootstrap of several statistics at once: ``fn(W)`` takes weights [m, P] and returns
    {name: array [m, ...]}; returns {name: BootstrapResult} (the same resamples for all, row b of
    ``stats.passage_resamples(P, n_resamples, seed)``). ``fn`` sees at most ``rows_per_call`` rows."""
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
        res = stats.bootstrap_units(flat, n_units, n_resamples, seed, method=method, batched=True)
    out, start = {}, 0
    for k, shape in shapes.items():
        size = int(np.prod(shape)) if shape else 1
        sl = slice(start, start + size)
        start += size

        def piece(a, shape=shape, sl=sl):
            return np.asarray(a, dtype=float).reshape(-1)[sl].reshape(shape) if np.ndim(a) else np.asarray(a)

        out[k] = stats.BootstrapResult(_squeeze_scalar(piece(res.estimate)), _squeeze_scalar(piece(res.low)),
                                       _squeeze_scalar(piece(res.high)),
                                       res.samples[:, sl].reshape((n_resamples,) + shape), res.method,
                                       res.n_resamples, res.level, res.n_units)
    return out


def _squeeze_scalar(a):
    a = np.asarray(a, dtype=float)
    return float(a) if a.ndim == 0 else a


def _hf_statistics(profile, threshold: float):
    """The chapter-3 statistics of one view as a function of passage weights (see :func:`high_frequency_results`)."""
    counts, tokens = profile.passage_counts, profile.passage_tokens
    chars = np.asarray(profile.passage_characters, dtype=np.float64)
    tok = np.asarray(tokens, dtype=np.float64)

    def fn(W):
        per_layer, _ = high_frequency_reductions(counts, tokens, threshold, W)
        per_layer = per_layer.astype(float)
        totals = per_layer.sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            tpc = (W @ tok.T) / (W @ chars.T)
        return {"per_layer": per_layer, "mean_layer": per_layer.mean(axis=1),
                "pooled": third_shares(per_layer.sum(axis=1)), "shares": third_shares(per_layer),
                "totals": totals, "mean_total": totals.mean(axis=1), "rho": _rowwise_spearman(tpc, totals)}

    return fn


def _entropy_statistics(profile):
    from .analysis import layer_entropy

    counts, tokens = profile.passage_counts, profile.passage_tokens

    def fn(W):
        H = layer_entropy(stats.weighted_frequencies(counts, tokens, W))  # [m, n, L]
        return {"layer": H.mean(axis=1), "third": by_third(H.mean(axis=1)), "language": H.mean(axis=2)}

    return fn


def high_frequency_results(views: dict, n_resamples: int = 1000, permutations: int = stats.HEADLINE_PERMUTATIONS,
                           seed: int = 0, hf_ratio: float = 2.0) -> dict:
    """Everything chapter 3 reports, from profiles of the same languages under several views
    ({name: Profile}, the main view first; :attr:`babel_lib.pipeline.Study.views`).

    High-frequency: frequency >= ``hf_ratio`` x k/E (each view its own base rate). Returns a dict:

    - ``by_layer``: layer, third, mean high-frequency experts per language (BCa interval), mean
      normalised entropy of the layer's frequency distribution (BCa interval), its top-k floor log k / log E;
    - ``by_third``: third, share of the high-frequency experts (pooled over languages; BCa interval),
      the uniform share (layers in the third / L), mean entropy (interval);
    - ``by_language``: per language: total high-frequency experts (interval), tokens per character,
      shares per third, the recentred-bootstrap p of "uniform over the thirds" with its
      Benjamini-Hochberg q over languages, mean entropy;
    - ``language_layer``: per language and layer: high-frequency experts with their interval;
    - ``tests``: the chapter's headline tests (depth uniformity; Spearman of high-frequency experts
      with tokens per character, 9,999 permutations over languages) with raw and Holm-adjusted p;
    - ``robustness``: per view: mean high-frequency units per language (and as a share of a layer's
      units), shares per third, the depth test's p, the largest third, the layer of lowest entropy's
      third, Spearman with tokens per character and its permutation p;
    - ``facts``: the scalars the findings and the verdict quote.
    """
    names = list(views)
    main = views[names[0]]
    labels = language_labels(main.languages)
    meta = _language_meta(main.languages)
    n, P, L, E = main.passage_counts.shape
    thr = hf_threshold(main, hf_ratio)
    hf = _bootstrap_dict(_hf_statistics(main, thr), P, n_resamples, seed, method="bca")
    ent = _bootstrap_dict(_entropy_statistics(main), P, n_resamples, seed, method="bca", rows_per_call=32)
    expected = uniform_third_shares(L)
    k = main.k()
    floor = float(np.log(k) / np.log(E)) if E > 1 else float("nan")

    by_layer = pd.DataFrame({
        "layer": np.arange(L), "third": depth_third(L),
        "mean_high": hf["mean_layer"].estimate, "low": hf["mean_layer"].low, "high": hf["mean_layer"].high,
        "entropy": ent["layer"].estimate, "entropy_low": ent["layer"].low, "entropy_high": ent["layer"].high,
        "entropy_floor": floor, "uniform_mean": float(hf["mean_total"].estimate) / L,
    })
    by_third_table = pd.DataFrame({
        "third": list(DEPTH_THIRDS), "share": hf["pooled"].estimate, "low": hf["pooled"].low,
        "high": hf["pooled"].high, "uniform": expected,
        "entropy": ent["third"].estimate, "entropy_low": ent["third"].low, "entropy_high": ent["third"].high,
    })
    p_lang = recentred_bootstrap_p(hf["shares"].estimate, hf["shares"].samples, expected)
    q_lang = stats.benjamini_hochberg(p_lang)
    tpc = main.tokens / main.characters
    by_language = pd.DataFrame({
        "language": main.languages, "name": [labels[x] for x in main.languages],
        "family": meta["family"], "script": meta["script"],
        "high_total": hf["totals"].estimate, "low": hf["totals"].low, "high": hf["totals"].high,
        "tokens_per_character": tpc,
        **{f"share_{t}": hf["shares"].estimate[:, j] for j, t in enumerate(DEPTH_THIRDS)},
        "p_uniform": p_lang, "q_uniform": q_lang, "departs": q_lang < 0.05,
        "mean_entropy": ent["language"].estimate,
    }).sort_values("high_total", ascending=False, ignore_index=True)
    language_layer = pd.DataFrame({
        "language": np.repeat(main.languages, L), "name": np.repeat([labels[x] for x in main.languages], L),
        "layer": np.tile(np.arange(L), n), "high_frequency": hf["per_layer"].estimate.reshape(-1),
        "low": hf["per_layer"].low.reshape(-1), "high": hf["per_layer"].high.reshape(-1),
    })

    p_depth = float(recentred_bootstrap_p(hf["pooled"].estimate, hf["pooled"].samples, expected))
    tok = stats.permutation_test_over_languages(tpc, hf["totals"].estimate, "spearman", permutations, seed) \
        if n >= 3 else None
    tests = pd.DataFrame([
        {"test": "high-frequency experts spread over the thirds as the layers are (recentred bootstrap)",
         "statistic": "largest third share", "value": float(np.nanmax(hf["pooled"].estimate)), "p_value": p_depth,
         "resamples_or_permutations": n_resamples},
        {"test": "Spearman: high-frequency experts vs tokens per character (permutation over languages)",
         "statistic": "rho", "value": tok.statistic if tok else float("nan"),
         "p_value": tok.p_value if tok else float("nan"), "resamples_or_permutations": permutations},
    ])
    tests = stats.correct(tests, "p_value", "holm", "p_holm")

    rows = []
    for name, prof in views.items():
        t = hf_threshold(prof, hf_ratio)
        if prof is main:
            pooled, p_view, totals = hf["pooled"].estimate, p_depth, hf["totals"].estimate
        else:
            res = _bootstrap_dict(_depth_only(prof, t), prof.n_passages, n_resamples, seed, method="percentile")
            pooled, totals = res["pooled"].estimate, res["totals"].estimate
            p_view = float(recentred_bootstrap_p(pooled, res["pooled"].samples, expected))
        H = _layer_entropy_point(prof)
        rho = stats.permutation_test_over_languages(prof.tokens / prof.characters, totals, "spearman",
                                                    permutations, seed) if n >= 3 else None
        rows.append({
            "view": name, "units": prof.n_experts, "threshold": t,
            "mean_high": float(np.mean(totals)), "share_of_units": float(np.mean(totals)) / (L * prof.n_experts),
            **{f"share_{x}": float(pooled[j]) for j, x in enumerate(DEPTH_THIRDS)},
            "largest_third": DEPTH_THIRDS[int(np.nanargmax(pooled))] if np.isfinite(pooled).any() else "none",
            "p_depth": p_view, "lowest_entropy_third": DEPTH_THIRDS[int(np.nanargmin(by_third(H)))],
            "rho_tokenisation": rho.statistic if rho else float("nan"),
            "p_tokenisation": rho.p_value if rho else float("nan"),
        })
    robustness = pd.DataFrame(rows)

    order = by_third_table.sort_values("share", ascending=False)
    low_ent = by_layer.loc[by_layer["entropy"].idxmin()]
    peak = by_layer.loc[by_layer["mean_high"].idxmax()]
    main_row = robustness.iloc[0]
    depth_holds = bool(tests["p_holm"].iloc[0] < 0.05)
    facts = {
        "languages": n, "layers": L, "experts": E, "k": k, "hf_ratio": hf_ratio, "threshold": thr,
        "passages": P, "resamples": n_resamples, "permutations": permutations, "views": len(views),
        "mean_high": float(hf["mean_total"].estimate), "mean_high_low": float(hf["mean_total"].low),
        "mean_high_high": float(hf["mean_total"].high), "units": L * E,
        "min_language": by_language["name"].iloc[-1], "min_high": float(by_language["high_total"].iloc[-1]),
        "max_language": by_language["name"].iloc[0], "max_high": float(by_language["high_total"].iloc[0]),
        "peak_layer": int(peak["layer"]), "peak_mean": [float(peak["mean_high"]), float(peak["low"]), float(peak["high"])],
        "largest_third": order["third"].iloc[0], "smallest_third": order["third"].iloc[-1],
        "largest_share": order.iloc[0][["share", "low", "high"]].astype(float).tolist(),
        "smallest_share": order.iloc[-1][["share", "low", "high"]].astype(float).tolist(),
        "uniform_share": float(expected[0]),
        "depth_max_departure": float(np.nanmax(np.abs(hf["pooled"].estimate - expected))),
        "largest_separated": bool(order["low"].iloc[0] > order["high"].iloc[1]),
        "p_depth": float(tests["p_value"].iloc[0]), "p_depth_holm": float(tests["p_holm"].iloc[0]),
        "depth_departs": depth_holds,
        "languages_departing": int(by_language["departs"].sum()),
        "languages_largest_same": int((np.nan_to_num(by_language[[f"share_{t}" for t in DEPTH_THIRDS]].to_numpy(), nan=-1)
                                       .argmax(axis=1) == DEPTH_THIRDS.index(order["third"].iloc[0])).sum()),
        "entropy_floor": floor,
        "lowest_entropy_layer": int(low_ent["layer"]),
        "lowest_entropy": [float(low_ent["entropy"]), float(low_ent["entropy_low"]), float(low_ent["entropy_high"])],
        "entropy_thirds": {r.third: [float(r.entropy), float(r.entropy_low), float(r.entropy_high)]
                           for r in by_third_table.itertuples()},
        "lowest_entropy_third": DEPTH_THIRDS[int(np.nanargmin(by_third_table["entropy"]))],
        "entropy_range": [float(by_layer["entropy"].min()), float(by_layer["entropy"].max())],
        "rho": float(hf["rho"].estimate), "rho_low": float(hf["rho"].low), "rho_high": float(hf["rho"].high),
        "p_rho": float(tests["p_value"].iloc[1]), "p_rho_holm": float(tests["p_holm"].iloc[1]),
        "rho_holds": bool(tests["p_holm"].iloc[1] < 0.05),
        "robust_depth": bool((robustness["p_depth"] < 0.05).all()
                             and (robustness["largest_third"] == main_row["largest_third"]).all()),
        "robust_largest_third": bool((robustness["largest_third"] == main_row["largest_third"]).all()),
        "robust_depth_test": bool((robustness["p_depth"] < 0.05).all()),
        "robust_entropy_third": bool((robustness["lowest_entropy_third"] == main_row["lowest_entropy_third"]).all()),
        "robust_rho": bool(((robustness["p_tokenisation"] < 0.05)
                            & (np.sign(robustness["rho_tokenisation"]) == np.sign(main_row["rho_tokenisation"]))).all()),
        "rho_range": [float(robustness["rho_tokenisation"].min()), float(robustness["rho_tokenisation"].max())],
        "exists": bool(hf["mean_total"].low > 0),
    }
    return {"by_layer": by_layer, "by_third": by_third_table, "by_language": by_language,
            "language_layer": language_layer, "tests": tests, "robustness": robustness, "facts": facts}


def _depth_only(profile, threshold):
    counts, tokens = profile.passage_counts, profile.passage_tokens

    def fn(W):
        per_layer, _ = high_frequency_reductions(counts, tokens, threshold, W)
        return {"pooled": third_shares(per_layer.sum(axis=1)), "totals": per_layer.sum(axis=-1).astype(float)}

    return fn


def _layer_entropy_point(profile) -> np.ndarray:
    """Mean over languages of each layer's normalised entropy (full data): [L]."""
    from .analysis import layer_entropy

    return layer_entropy(profile.frequencies()).mean(axis=0)


def _language_meta(languages) -> pd.DataFrame:
    from .corpus import language_table

    return language_table().reindex(list(languages))[["family", "script"]].fillna("").reset_index(drop=True)


def high_frequency_verdicts(facts: dict) -> list[dict]:
    """The chapter-3 verdict row (see :mod:`babel_lib.verdicts`) from :func:`high_frequency_results` facts."""
    from .verdicts import row

    f = facts
    share = f["largest_share"]
    result = (f"a language has {stats.interval_text(f['mean_high'], f['mean_high_low'], f['mean_high_high'], 1)} "
              f"high-frequency experts of {f['units']:,} on average; the {f['largest_third']} third holds "
              f"{stats.interval_text(*share)} of them against {f['uniform_share']:.3f} for an even spread, "
              f"{stats.p_text(f['p_depth'], f['p_depth_holm'])}; Spearman with tokens per character "
              f"{stats.interval_text(f['rho'], f['rho_low'], f['rho_high'], 2)}")
    holds = f["exists"] and f["depth_departs"]
    robust = f["robust_depth"]
    word = "reproduced" if holds and robust else ("partly reproduced" if f["exists"] and (holds or robust)
                                                 else "not reproduced")
    evidence = (f"bootstrap over {f['passages']} passages ({f['resamples']:,} resamples), {f['languages']} languages; "
                + ("the uneven depth profile and its largest third hold under every partition seed and the neuron view"
                   if robust else "the depth profile does not hold under every partition seed and the neuron view")
                + (f"; the departure is small (at most {100 * f['depth_max_departure']:.1f} points of share)"
                   if f["depth_max_departure"] < 0.05 else ""))
    return [row("high_frequency", result, evidence, word)]


# ============================================================================ chapter 4: shared and specific experts
# Our choices (the paper is silent): *shared* = high-frequency in every language; *specific* =
# high-frequency in exactly one language. Point estimates only ("naive") are not enough: a frequency
# near the bar crosses it by sampling noise. *Robustly shared*: the lower end of the 95% bootstrap
# interval of its frequency is above the bar in every language. *Robustly specific to language i*:
# naive-specific to i, the lower end of i's interval above the bar, and the upper end of every other
# language's interval below it. Chance model for overlaps: in each layer every language's
# high-frequency experts (its observed number in that layer) are placed at random among the layer's
# experts, independently of the other languages.

def frequency_bounds(counts: np.ndarray, tokens: np.ndarray, layers, experts, n_resamples: int = 1000,
                     seed: int = 0, level: float = 0.95, max_elements: int = 8_000_000):
    """Percentile bootstrap interval of the frequency of chosen experts in every language.

    counts int [n, P, L, E], tokens [n, P]; layers, experts int [c] (the cells). Returns low, high
    float [n, c] (the ``level`` interval; the same resamples for every cell and language, row b of
    ``stats.passage_resamples(P, n_resamples, seed)``). Works in chunks of cells."""
    counts = np.asarray(counts)
    layers = np.asarray(layers, dtype=np.int64)
    experts = np.asarray(experts, dtype=np.int64)
    n = counts.shape[0]
    low = np.full((n, len(layers)), np.nan)
    high = np.full((n, len(layers)), np.nan)
    step = max(1, max_elements // max(1, n_resamples * n))
    for s in range(0, len(layers), step):
        sub = counts[:, :, layers[s:s + step], experts[s:s + step]]  # [n, P, c]
        res = stats.bootstrap(lambda f: f, sub, tokens, n_resamples, seed, method="percentile", level=level,
                              batched=True)
        low[:, s:s + step] = np.asarray(res.low).reshape(n, -1)
        high[:, s:s + step] = np.asarray(res.high).reshape(n, -1)
    return low, high


def shared_and_specific(counts: np.ndarray, tokens: np.ndarray, threshold: float, n_resamples: int = 1000,
                        seed: int = 0, level: float = 0.95) -> dict:
    """Shared and specific experts of one view, naive and noise-robust (definitions above).

    counts int [n, P, L, E], tokens [n, P]; threshold: the high-frequency bar. Returns
    ``sharing`` int [L, E] (languages in which each expert is high-frequency), ``shared`` /
    ``robust_shared`` bool [L, E], ``owner`` / ``robust_owner`` int [L, E] (the language an expert
    is specific to, else -1). Robust sets are subsets of the naive ones by definition, so only naive
    candidates are bootstrapped."""
    counts = np.asarray(counts)
    n = counts.shape[0]
    freq = stats.weighted_frequencies(counts, tokens, np.ones((1, counts.shape[1])))[0]
    hf = freq >= threshold
    sharing = hf.sum(axis=0)
    shared = sharing == n
    owner = np.where(sharing == 1, hf.argmax(axis=0), -1)
    robust_shared = np.zeros_like(shared)
    robust_owner = np.full_like(owner, -1)
    for kind, mask in (("shared", shared), ("specific", owner >= 0)):
        ls, es = np.nonzero(mask)
        if not len(ls):
            continue
        low, high = frequency_bounds(counts, tokens, ls, es, n_resamples, seed, level)
        if kind == "shared":
            robust_shared[ls, es] = (low > threshold).all(axis=0)
        else:
            own = owner[ls, es]
            cols = np.arange(len(ls))
            others = np.ones_like(low, dtype=bool)
            others[own, cols] = False
            ok = (low[own, cols] > threshold) & np.where(others, high < threshold, True).all(axis=0)
            robust_owner[ls[ok], es[ok]] = own[ok]
    return {"sharing": sharing, "shared": shared, "robust_shared": robust_shared, "owner": owner,
            "robust_owner": robust_owner}


def poisson_binomial(p) -> np.ndarray:
    """Distribution of the number of successes of independent trials with probabilities p [n]: [n + 1]."""
    pmf = np.ones(1)
    for q in np.asarray(p, dtype=float):
        pmf = np.concatenate([pmf * (1 - q), [0.0]]) + np.concatenate([[0.0], pmf * q])
    return pmf


def chance_sharing_histogram(high_per_layer: np.ndarray, n_experts: int) -> np.ndarray:
    """Expected number of experts high-frequency in exactly j languages (j = 0..n) under the chance
    model (each language's high-frequency experts of a layer, ``high_per_layer`` int [n, L], placed
    at random among the layer's ``n_experts``, independently across languages): float [n + 1]."""
    h = np.asarray(high_per_layer, dtype=float)
    return sum(n_experts * poisson_binomial(h[:, l] / n_experts) for l in range(h.shape[1]))


def chance_shared_distribution(high_per_layer: np.ndarray, n_experts: int, tol: float = 1e-18) -> np.ndarray:
    """Exact distribution of the number of experts high-frequency in all languages (all layers) under
    the chance model of :func:`chance_sharing_histogram`: float [L * E + 1].

    Per layer, the intersection of the languages' random sets shrinks language by language with a
    hypergeometric step (of s experts still common, j are drawn among the h of the next language);
    layers are independent, so their distributions convolve. Probabilities below ``tol`` are dropped."""
    from scipy.stats import hypergeom

    h = np.asarray(high_per_layer, dtype=np.int64)
    E = int(n_experts)
    total = np.ones(1)
    for l in range(h.shape[1]):
        dist = np.zeros(E + 1)
        dist[E] = 1.0
        for hi in h[:, l]:
            support = np.flatnonzero(dist > tol)
            top = int(support.max())
            j = np.arange(top + 1)
            step = hypergeom.pmf(j[None, :], E, support[:, None], int(hi))
            new = np.zeros(E + 1)
            new[:top + 1] = dist[support] @ np.nan_to_num(step)
            dist = new
        total = np.convolve(total, dist[: int(np.flatnonzero(dist > tol).max()) + 1])
    out = np.zeros(h.shape[1] * E + 1)
    out[:len(total)] = total[: len(out)]
    return out


def match_experts(labels_a: np.ndarray, labels_b: np.ndarray):
    """Match each expert of partition a to the expert of partition b (same layer) sharing most of its
    neurons (ties: the lowest id). labels int [L, N] (expert of each neuron). Returns best int [L, E_a],
    overlap int [L, E_a] (neurons in common), jaccard float [L, E_a]."""
    a = np.asarray(labels_a, dtype=np.int64)
    b = np.asarray(labels_b, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError("both partitions must cover the same layers and neurons")
    L = a.shape[0]
    Ea, Eb = int(a.max()) + 1, int(b.max()) + 1
    best = np.zeros((L, Ea), dtype=np.int64)
    overlap = np.zeros((L, Ea), dtype=np.int64)
    jac = np.zeros((L, Ea))
    for l in range(L):
        M = np.bincount(a[l] * Eb + b[l], minlength=Ea * Eb).reshape(Ea, Eb)
        best[l] = M.argmax(axis=1)
        overlap[l] = M[np.arange(Ea), best[l]]
        size_a = np.bincount(a[l], minlength=Ea)
        size_b = np.bincount(b[l], minlength=Eb)
        jac[l] = overlap[l] / (size_a + size_b[best[l]] - overlap[l])
    return best, overlap, jac


def grouped_counts(neuron_counts: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Neuron-view counts [n, P, L, N] summed over each expert's neurons: [n, P, L, E]. Divided by
    (tokens x expert size) this is the mean neuron frequency of the expert's neurons."""
    labels = np.asarray(labels, dtype=np.int64)
    n, P, L, N = neuron_counts.shape
    E = int(labels.max()) + 1
    out = np.zeros((n, P, L, E), dtype=np.int64)
    for l in range(L):
        order = np.argsort(labels[l], kind="stable")
        size = np.bincount(labels[l], minlength=E)
        if (size != size[0]).any():
            raise ValueError("experts of unequal size")
        out[:, :, l] = neuron_counts[:, :, l][:, :, order].reshape(n, P, E, size[0]).sum(axis=-1)
    return out


def lape_comparison(lape_table: pd.DataFrame, sharing: np.ndarray, robust_owner: np.ndarray,
                    languages: list[str]) -> dict:
    """How LAPE's low-entropy experts relate to the high-frequency rule.

    Returns: selected (LAPE's experts), hf_languages (the number of languages in which each is
    high-frequency, [selected]), median / quartiles of it, specific (robustly specific experts),
    overlap (experts in both sets), expected (chance overlap |A| |B| / N, N = all experts), ratio,
    p (hypergeometric, one-sided: overlap at least this large by chance), same_language (of the
    overlap, experts whose LAPE top language is the robust owner)."""
    from scipy.stats import hypergeom

    L, E = sharing.shape
    N = L * E
    a = np.zeros((L, E), dtype=bool)
    if len(lape_table):
        a[lape_table["layer"].to_numpy(), lape_table["expert"].to_numpy()] = True
    b = robust_owner >= 0
    both = a & b
    A, B, X = int(a.sum()), int(b.sum()), int(both.sum())
    hf_langs = sharing[lape_table["layer"].to_numpy(), lape_table["expert"].to_numpy()] if len(lape_table) \
        else np.zeros(0, dtype=int)
    expected = A * B / N
    top = {(int(r.layer), int(r.expert)): r.top_language for r in lape_table.itertuples()}
    same = sum(languages[robust_owner[l, e]] == top[(l, e)] for l, e in zip(*np.nonzero(both)))
    q = np.percentile(hf_langs, [25, 50, 75]) if len(hf_langs) else [np.nan] * 3
    return {"selected": A, "hf_languages": hf_langs, "hf_languages_q1": float(q[0]),
            "hf_languages_median": float(q[1]), "hf_languages_q3": float(q[2]),
            "hf_in_one": int((hf_langs == 1).sum()), "hf_in_none": int((hf_langs == 0).sum()),
            "specific": B, "overlap": X, "expected": expected,
            "ratio": X / expected if expected > 0 else float("nan"),
            "p": float(hypergeom.sf(X - 1, N, A, B)) if A and B else float("nan"), "same_language": int(same)}


def _specific_by_language(owner: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(owner[owner >= 0], minlength=n)


def shared_specific_results(views: dict, partitions: list, n_resamples: int = 1000,
                            permutations: int = stats.HEADLINE_PERMUTATIONS, seed: int = 0, hf_ratio: float = 2.0,
                            lape_top_rate: float = 0.01, lape_quantile: float = 0.95, level: float = 0.95) -> dict:
    """Everything chapter 4 reports, from the views of a study ({name: Profile}, main view first;
    k-means views in the order of ``partitions``, their :class:`babel_lib.moefy.Partition` objects,
    and the neuron view, recognised by its expert size of 1).

    Returns a dict:

    - ``histogram``: languages (j), experts high-frequency in exactly j languages, observed and
      expected under the chance model;
    - ``by_layer``: per layer: shared (naive, robust) and specific (naive, robust) experts;
    - ``by_language``: per language: high-frequency experts, naive and robust specific experts,
      whether the language is alone with its script in the selection, robust specific experts in
      every other view;
    - ``lape``: LAPE's experts with the number of languages in which each is high-frequency;
    - ``survival``: per definition (shared / specific, naive / robust): experts in the main view,
      how many the other seeds' best-matching experts and the neuron view confirm, how many survive all;
    - ``survivors``: the robust shared and specific experts that survive every view (the only ones named);
    - ``tests``: shared vs chance (exact), LAPE overlap vs chance (hypergeometric), robust specific
      experts vs script uniqueness (Spearman, permutations over languages), raw and Holm-adjusted p;
    - ``robustness``: the counts and tests per view;
    - ``facts``: the scalars the findings and the verdicts quote.
    """
    from .analysis import lape as lape_rank

    names = list(views)
    main = views[names[0]]
    n, P, L, E = main.passage_counts.shape
    labels = language_labels(main.languages)
    meta = _language_meta(main.languages)
    script_n = meta["script"].map(meta["script"].value_counts())
    alone = (script_n == 1).to_numpy()
    kmeans = [v for v in names if views[v].expert_size > 1]
    neuron_names = [v for v in names if views[v].expert_size == 1]
    if len(partitions) != len(kmeans):
        raise ValueError(f"one partition per partitioned view is needed ({len(kmeans)} views, {len(partitions)} partitions)")
    part_of = dict(zip(kmeans, partitions))

    per_view, view_rows = {}, []
    for name, prof in views.items():
        thr = hf_threshold(prof, hf_ratio)
        res = shared_and_specific(prof.passage_counts, prof.passage_tokens, thr, n_resamples, seed, level)
        freq = prof.frequencies()
        hf_layer = (freq >= thr).sum(axis=2)  # [n, U... ] -> [n, L]
        res.update(threshold=thr, high_per_layer=hf_layer, freq=freq)
        per_view[name] = res
    m = per_view[names[0]]

    # counts with intervals (main view)
    def count_stats(W):
        _, sharing = high_frequency_reductions(main.passage_counts, main.passage_tokens, m["threshold"], W)
        return {"shared": (sharing == n).sum(axis=(1, 2)).astype(float),
                "specific": (sharing == 1).sum(axis=(1, 2)).astype(float)}

    counts_ci = _bootstrap_dict(count_stats, P, n_resamples, seed, method="bca")
    chance_hist = chance_sharing_histogram(m["high_per_layer"], E)
    observed_hist = np.bincount(m["sharing"].reshape(-1), minlength=n + 1)
    histogram = pd.DataFrame({"languages": np.arange(n + 1), "observed": observed_hist, "chance": chance_hist})
    pmf = chance_shared_distribution(m["high_per_layer"], E)
    n_shared = int(m["shared"].sum())
    p_shared = float(min(1.0, max(pmf[n_shared:].sum(), 1e-18)))  # the pmf drops probabilities below 1e-18
    expected_shared = float((np.arange(len(pmf)) * pmf).sum())

    # LAPE
    lape_table = lape_rank(m["freq"], main.languages, top_rate=lape_top_rate, filter_quantile=lape_quantile,
                           assign_quantile=lape_quantile)
    lape_cmp = lape_comparison(lape_table, m["sharing"], m["robust_owner"], main.languages)
    lape_table = lape_table.assign(hf_languages=lape_cmp["hf_languages"],
                                   top_name=lape_table["top_language"].map(labels),
                                   robust_specific=[bool(m["robust_owner"][r.layer, r.expert] >= 0)
                                                    for r in lape_table.itertuples()])

    # per language
    spec_naive = _specific_by_language(m["owner"], n)
    spec_robust = _specific_by_language(m["robust_owner"], n)
    by_language = pd.DataFrame({
        "language": main.languages, "name": [labels[x] for x in main.languages], "family": meta["family"],
        "script": meta["script"], "alone_with_script": alone,
        "high_frequency": m["high_per_layer"].sum(axis=1), "specific_naive": spec_naive,
        "specific_robust": spec_robust,
        **{f"robust_{v}": _specific_by_language(per_view[v]["robust_owner"], n) for v in names[1:]},
    })
    script_test = _script_test(alone, spec_robust, permutations, seed)

    tests = pd.DataFrame([
        {"test": "experts high-frequency in every language vs chance overlap (exact)",
         "observed": n_shared, "expected": expected_shared, "p_value": p_shared},
        {"test": "overlap of LAPE's experts with the robust specific experts vs chance (hypergeometric)",
         "observed": lape_cmp["overlap"], "expected": lape_cmp["expected"], "p_value": lape_cmp["p"]},
        {"test": "robust specific experts vs being alone with its script (Spearman, permutations over languages)",
         "observed": script_test["rho"], "expected": 0.0, "p_value": script_test["p"]},
    ])
    tests = stats.correct(tests, "p_value", "holm", "p_holm")

    by_layer = pd.DataFrame({
        "layer": np.arange(L), "third": depth_third(L),
        "shared": m["shared"].sum(axis=1), "robust_shared": m["robust_shared"].sum(axis=1),
        "specific": (m["owner"] >= 0).sum(axis=1), "robust_specific": (m["robust_owner"] >= 0).sum(axis=1),
        "lape": np.bincount(lape_table["layer"], minlength=L) if len(lape_table) else np.zeros(L, dtype=int),
    })

    # survival of individual experts
    survival, survivors, match_share, neuron_facts = _survival(views, names, kmeans, neuron_names, part_of, per_view,
                                                 hf_ratio, n_resamples, seed, level, labels, main.languages)

    # every view
    for name in names:
        r, prof = per_view[name], views[name]
        U = prof.n_experts
        lt = lape_rank(r["freq"], main.languages, top_rate=lape_top_rate, filter_quantile=lape_quantile,
                       assign_quantile=lape_quantile)
        lc = lape_comparison(lt, r["sharing"], r["robust_owner"], main.languages)
        sr = _specific_by_language(r["robust_owner"], n)
        st = _script_test(alone, sr, permutations, seed)
        exp_shared = float(sum(U * np.prod(r["high_per_layer"][:, l] / U) for l in range(L)))
        hist = chance_sharing_histogram(r["high_per_layer"], U)
        view_rows.append({
            "view": name, "units": L * U, "shared": int(r["shared"].sum()),
            "robust_shared": int(r["robust_shared"].sum()), "chance_shared": exp_shared,
            "shared_share": r["shared"].mean(), "specific": int((r["owner"] >= 0).sum()),
            "chance_specific": float(hist[1]), "robust_specific": int((r["robust_owner"] >= 0).sum()),
            "robust_specific_share": float((r["robust_owner"] >= 0).mean()),
            "languages_with_specific": int((sr > 0).sum()),
            "spearman_with_main": _spearman(sr, spec_robust) if name != names[0] else 1.0,
            "rho_script": st["rho"], "p_script": st["p"],
            "lape_hf_median": lc["hf_languages_median"], "lape_overlap_ratio": lc["ratio"], "p_lape": lc["p"],
        })
    robustness = pd.DataFrame(view_rows)

    top = by_language.sort_values(["specific_robust", "specific_naive"], ascending=False).head(5)
    holm = tests.set_index(tests.index)["p_holm"].tolist()
    shared_every_view = bool((robustness["shared"] > robustness["chance_shared"] + 1).all()
                             and (robustness["robust_shared"] > 0).all())
    facts = {
        "languages": n, "layers": L, "experts": E, "units": L * E, "threshold": m["threshold"],
        "hf_ratio": hf_ratio, "passages": P, "resamples": n_resamples, "permutations": permutations,
        "level": level, "views": len(views),
        "shared": n_shared, "shared_low": float(counts_ci["shared"].low), "shared_high": float(counts_ci["shared"].high),
        "robust_shared": int(m["robust_shared"].sum()), "chance_shared": expected_shared,
        "p_shared": p_shared, "p_shared_holm": holm[0],
        "specific": int((m["owner"] >= 0).sum()), "specific_low": float(counts_ci["specific"].low),
        "specific_high": float(counts_ci["specific"].high), "chance_specific": float(chance_hist[1]),
        "robust_specific": int((m["robust_owner"] >= 0).sum()),
        "languages_with_robust": int((spec_robust > 0).sum()), "languages_with_naive": int((spec_naive > 0).sum()),
        "top_specific": [(r.name, int(r.specific_robust), int(r.specific_naive), r.script) for r in top.itertuples()],
        "alone_languages": int(alone.sum()),
        "alone_mean": float(spec_robust[alone].mean()) if alone.any() else float("nan"),
        "others_mean": float(spec_robust[~alone].mean()) if (~alone).any() else float("nan"),
        "rho_script": script_test["rho"], "p_script": script_test["p"], "p_script_holm": holm[2],
        "lape_selected": lape_cmp["selected"], "lape_top_rate": lape_top_rate,
        "lape_hf_median": lape_cmp["hf_languages_median"], "lape_hf_q1": lape_cmp["hf_languages_q1"],
        "lape_hf_q3": lape_cmp["hf_languages_q3"], "lape_hf_in_one": lape_cmp["hf_in_one"],
        "lape_overlap": lape_cmp["overlap"], "lape_expected": lape_cmp["expected"], "lape_ratio": lape_cmp["ratio"],
        "p_lape": lape_cmp["p"], "p_lape_holm": holm[1], "lape_same_language": lape_cmp["same_language"],
        "lape_assigned_median": float(lape_table["n_languages"].median()) if len(lape_table) else float("nan"),
        "match_share": match_share,
        "survival": survival.set_index(["kind", "definition"])["survive_all"].to_dict(),
        "survival_seeds": survival.set_index(["kind", "definition"])["survive_seeds"].to_dict(),
        "neuron_bar": neuron_facts["bar"], "neuron_owner_median": neuron_facts["owner_median"],
        "neuron_owner_top": neuron_facts["owner_top"], "neuron_shared_min_median": neuron_facts["shared_min_median"],
        "survivors_shared": int((survivors["kind"] == "shared").sum()),
        "survivors_specific": int((survivors["kind"] == "specific").sum()),
        "robust_shared_every_view": shared_every_view,
        "robust_specific_every_view": bool((robustness["robust_specific"] > 0).all()),
        "specific_below_chance_every_view": bool((robustness["specific"] < robustness["chance_specific"]).all()),
        "script_every_view": bool(((robustness["p_script"] < 0.05)
                                   & (np.sign(robustness["rho_script"]) == np.sign(script_test["rho"]))).all()),
        "min_spearman": float(robustness["spearman_with_main"].min()),
        "lape_hf_median_range": [float(robustness["lape_hf_median"].min()), float(robustness["lape_hf_median"].max())],
        "kmeans_views": len(kmeans), "neuron_view": bool(neuron_names),
    }
    return {"histogram": histogram, "by_layer": by_layer, "by_language": by_language, "lape": lape_table,
            "survival": survival, "survivors": survivors, "tests": tests, "robustness": robustness, "facts": facts}


def _script_test(alone: np.ndarray, counts: np.ndarray, permutations: int, seed: int) -> dict:
    if len(counts) < 3 or alone.all() or not alone.any() or np.all(counts == counts[0]):
        return {"rho": float("nan"), "p": float("nan")}
    res = stats.permutation_test_over_languages(alone.astype(float), counts.astype(float), "spearman",
                                                permutations, seed)
    return {"rho": res.statistic, "p": res.p_value}


def _survival(views, names, kmeans, neuron_names, part_of, per_view, hf_ratio, n_resamples, seed, level,
              labels, languages):
    """Which main-view shared / specific experts the other views confirm (see :func:`shared_specific_results`)."""
    main_name = names[0]
    m = per_view[main_name]
    main_labels = part_of[main_name].labels
    checks = {}  # check name -> (shared_ok, owner_seen) for naive and robust, [L, E] in main-view experts
    shares = []
    for v in kmeans[1:]:
        best, overlap, _ = match_experts(main_labels, part_of[v].labels)
        shares.append(float((overlap / views[main_name].expert_size).mean()))
        r = per_view[v]
        rows = np.arange(best.shape[0])[:, None]
        checks[v] = {"shared": r["shared"][rows, best], "robust_shared": r["robust_shared"][rows, best],
                     "owner": r["owner"][rows, best], "robust_owner": r["robust_owner"][rows, best]}
    for v in neuron_names:
        prof = views[v]
        grouped = grouped_counts(prof.passage_counts, main_labels)
        size = views[main_name].expert_size
        thr = hf_threshold(prof, hf_ratio)
        g = shared_and_specific(grouped, prof.passage_tokens * size, thr, n_resamples, seed, level)
        checks[v] = {k: g[k] for k in ("shared", "robust_shared", "owner", "robust_owner")}
        gf = grouped.sum(axis=1) / (prof.tokens[:, None, None] * size)  # mean neuron frequency [n, L, E]
        ls, es = np.nonzero(m["robust_owner"] >= 0)
        own = m["robust_owner"][ls, es]
        neuron_facts = {"bar": thr, "owner_median": float(np.median(gf[own, ls, es])) if len(ls) else float("nan"),
                        "owner_top": int((gf[:, ls, es].argmax(axis=0) == own).sum()),
                        "shared_min_median": float(np.median(gf[:, m["robust_shared"]].min(axis=0)))
                        if m["robust_shared"].any() else float("nan")}
    rows, surv = [], []
    for kind in ("shared", "specific"):
        for definition in ("naive", "robust"):
            key = ("robust_" if definition == "robust" else "") + ("shared" if kind == "shared" else "owner")
            base = m[key] if kind == "shared" else m[key] >= 0
            row = {"kind": kind, "definition": definition, "main_view": int(base.sum())}
            ok_all = base.copy()
            ok_seeds = base.copy()
            for v, c in checks.items():
                ok = c[key] if kind == "shared" else (c[key] == m[key]) & base
                ok = ok & base
                row[v] = int(ok.sum())
                ok_all &= ok
                if v not in neuron_names:
                    ok_seeds &= ok
            row["survive_seeds"] = int(ok_seeds.sum())
            row["survive_all"] = int(ok_all.sum())
            rows.append(row)
            if definition == "robust":
                for l, e in zip(*np.nonzero(ok_all)):
                    surv.append({"kind": kind, "layer": int(l), "expert": int(e),
                                 "language": languages[m[key][l, e]] if kind == "specific" else "",
                                 "name": labels[languages[m[key][l, e]]] if kind == "specific" else "all languages"})
    survivors = pd.DataFrame(surv, columns=["kind", "layer", "expert", "language", "name"])
    if not neuron_names:
        neuron_facts = {"bar": float("nan"), "owner_median": float("nan"), "owner_top": 0,
                        "shared_min_median": float("nan")}
    return (pd.DataFrame(rows), survivors, (float(np.mean(shares)) if shares else float("nan")), neuron_facts)


def chance_text(x: float) -> str:
    """A chance expectation in words: 'less than 0.01' below 0.01, else two significant digits."""
    return "less than 0.01" if x < 0.01 else f"{x:.2g}"


def shared_specific_verdicts(facts: dict) -> list[dict]:
    """The chapter-4 verdict rows from :func:`shared_specific_results` facts."""
    from .verdicts import row

    f = facts
    shared_holds = f["shared"] > f["chance_shared"] and f["p_shared_holm"] < 0.05 and f["robust_shared"] > 0
    result = (f"{stats.interval_text(f['shared'], f['shared_low'], f['shared_high'], 0)} of {f['units']:,} experts "
              f"are high-frequency in all {f['languages']} languages ({f['robust_shared']} beyond noise) against "
              f"{chance_text(f['chance_shared'])} expected by chance overlap, {stats.p_text(f['p_shared'], f['p_shared_holm'])}; "
              f"{f['survivors_shared']} keep their identity under every view")
    robust = f["robust_shared_every_view"]
    word = "reproduced" if shared_holds and robust else ("partly reproduced" if shared_holds else "not reproduced")
    evidence = (f"bootstrap over {f['passages']} passages ({f['resamples']:,} resamples); "
                + ("beyond chance in every partition seed and the neuron view" if robust
                   else "not beyond chance in every view"))
    rows = [row("shared", result, evidence, word)]
    spec_holds = f["robust_specific"] > 0
    result = (f"{stats.interval_text(f['specific'], f['specific_low'], f['specific_high'], 0)} experts are "
              f"high-frequency in exactly one language (chance overlap: {chance_text(f['chance_specific'])}); "
              f"{f['robust_specific']} of them beyond bootstrap noise, in {f['languages_with_robust']} languages; "
              f"{f['survivors_specific']} keep their identity and language under every view; LAPE's experts are "
              f"high-frequency in a median of {f['lape_hf_median']:.0f} languages")
    robust = f["robust_specific_every_view"]
    if spec_holds and robust and f["survivors_specific"] > 0:
        word = "reproduced"
    elif spec_holds and robust:
        word = "partly reproduced"
    elif spec_holds:
        word = "partly reproduced"
    else:
        word = "not reproduced"
    evidence = ("language-specific experts "
                + ("exist beyond noise in every view" if robust else "do not exist beyond noise in every view")
                + ("; individual experts survive every view" if f["survivors_specific"] > 0
                   else "; no individual specific expert survives every view (weak evidence for any one expert)")
                + "; shared experts (the non-language-specific part) as in the row above")
    rows.append(row("specific_neurons", result, evidence, word))
    return rows
