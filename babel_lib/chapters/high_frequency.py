"""Chapter 3 as library steps: high-frequency experts, where they sit over the depth of the network,
the entropy of each layer's use of its experts, and the relation with tokenisation granularity; the
chapter's tables, charts and findings."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from babel_lib.data.corpus import language_labels, language_metadata
from babel_lib.experts import pipeline
from babel_lib.report import plots
from babel_lib.stats import analysis, inference as stats
from babel_lib.stats.analysis import DEPTH_THIRDS, depth_third

# Our choices (the paper is silent): an expert is *high-frequency* for a language when its frequency
# is at least ``hf_ratio`` (2) times the base rate k/E, the frequency of an expert without preference
# under top-k activation (for the neuron view the same rule with its own base rate k/N). Where such
# experts sit: their share in the early, middle and late thirds of the layers, against the share of
# layers in each third (uniform placement). Numbers of experts above a threshold are biased by noise,
# so their intervals are BCa.

def hf_threshold(profile, hf_ratio: float = 2.0) -> float:
    """The high-frequency bar of a profile's view: ``hf_ratio`` x the base rate k/E (top-k definitions;
    :func:`babel_lib.stats.analysis.base_rate`)."""
    from babel_lib.stats.analysis import base_rate

    if isinstance(hf_ratio, bool) or not isinstance(hf_ratio, (int, float)) or not 0 < hf_ratio < np.inf:
        raise ValueError(f"hf_ratio must be a positive number, got {hf_ratio!r} (at or below 0 every expert would "
                         "count as high-frequency)")
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
                "totals": totals, "mean_total": totals.mean(axis=1), "rho": stats.spearman_rows(tpc, totals)}

    return fn


def crossed_rho(profile, threshold: float, n_resamples: int = stats.DEFAULT_RESAMPLES, seed: int = 0,
                level: float = 0.95) -> stats.BootstrapResult:
    """Interval of the Spearman correlation over languages between a language's high-frequency
    experts (all layers) and its tokens per character: a claim over languages, so languages and
    passages are resampled together (:func:`babel_lib.stats.crossed_bootstrap`; a language drawn k
    times enters the correlation k times)."""
    counts, tokens = profile.passage_counts, profile.passage_tokens
    chars = np.asarray(profile.passage_characters, dtype=np.float64)
    tok = np.asarray(tokens, dtype=np.float64)
    n = counts.shape[0]

    def rho(LW, PW):  # [m, n], [m, P] -> [m]
        per_layer, _ = high_frequency_reductions(counts, tokens, threshold, PW)
        totals = per_layer.astype(float).sum(axis=-1)  # [m, n]
        with np.errstate(invalid="ignore", divide="ignore"):
            tpc = (PW @ tok.T) / (PW @ chars.T)
        out = np.empty(len(LW))
        for i, lw in enumerate(LW):
            drawn = np.repeat(np.arange(n), np.rint(lw).astype(int))
            out[i] = stats.spearman(tpc[i, drawn], totals[i, drawn])
        return out

    return stats.crossed_bootstrap(rho, n, profile.n_passages, n_resamples, seed, level=level, batched=True)


def _entropy_statistics(profile):
    from babel_lib.stats.analysis import layer_entropy

    counts, tokens = profile.passage_counts, profile.passage_tokens

    def fn(W):
        H = layer_entropy(stats.weighted_frequencies(counts, tokens, W))  # [m, n, L]
        return {"layer": H.mean(axis=1), "third": analysis.by_third(H.mean(axis=1)), "language": H.mean(axis=2)}

    return fn


def high_frequency_results(views: dict, n_resamples: int = 1000, permutations: int = stats.HEADLINE_PERMUTATIONS,
                           seed: int = 0, hf_ratio: float = 2.0) -> dict:
    """Everything chapter 3 reports, from profiles of the same languages under several views
    ({name: Profile}, the main view first; :attr:`babel_lib.experts.pipeline.Study.views`).

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
    meta = language_metadata(main.languages)
    n, P, L, E = main.passage_counts.shape
    thr = hf_threshold(main, hf_ratio)
    hf = stats.bootstrap_many(_hf_statistics(main, thr), P, n_resamples, seed, method="bca")
    ent = stats.bootstrap_many(_entropy_statistics(main), P, n_resamples, seed, method="bca", rows_per_call=32)
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
    # the correlation is a claim over languages: its interval resamples languages and passages
    rho_crossed = crossed_rho(main, thr, n_resamples, seed) if n >= 3 and n_resamples >= 2 else \
        stats.BootstrapResult(float("nan"), float("nan"), float("nan"), np.array([]), "none", 0, 0.95, n)
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
            res = stats.bootstrap_many(_depth_only(prof, t), prof.n_passages, n_resamples, seed, method="percentile")
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
            "p_depth": p_view, "lowest_entropy_third": DEPTH_THIRDS[int(np.nanargmin(analysis.by_third(H)))],
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
        "rho": float(hf["rho"].estimate), "rho_low": float(rho_crossed.low), "rho_high": float(rho_crossed.high),
        "rho_interval": rho_crossed.method,
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
    from babel_lib.stats.analysis import layer_entropy

    return layer_entropy(profile.frequencies()).mean(axis=0)


def high_frequency_verdicts(facts: dict) -> list[dict]:
    """The chapter-3 verdict rows (see :mod:`babel_lib.report.verdicts`) from :func:`high_frequency_results` facts.

    The investigation itself is descriptive. The tested statement (high-frequency experts exist and are
    spread unevenly over depth) is compared here only with zero and with an even spread over depth, nulls
    that any model rejects (experts and layers differ in busyness whatever the language): no test of it
    could fail yet, so its word is "not testable here" by :func:`babel_lib.report.verdicts.decide`, with the
    measured profile as the result."""
    from babel_lib.core.claims import decide, descriptive, row

    f = facts
    share = f["largest_share"]
    result = (f"a language has {stats.interval_text(f['mean_high'], f['mean_high_low'], f['mean_high_high'], 1)} "
              f"high-frequency experts of {f['units']:,} on average; the {f['largest_third']} third holds "
              f"{stats.interval_text(*share)} of them against {f['uniform_share']:.3f} for an even spread, "
              f"{stats.p_text(f['p_depth'], f['p_depth_holm'])}; Spearman with tokens per character "
              f"{stats.interval_text(f['rho'], f['rho_low'], f['rho_high'], 2)}")
    word = decide([f["exists"], f["depth_departs"]], robust=f["robust_depth"], null_can_fail=False)
    evidence = (f"bootstrap over {f['passages']} passages ({f['resamples']:,} resamples), {f['languages']} languages; "
                "compared only with none and with an even spread over depth, which any model departs from (layers "
                "differ in how skewed their use is whatever the language), so no test here could have failed; "
                + ("the profile and its largest third hold under every partition seed and the neuron view"
                   if f["robust_depth"] else "the profile does not hold under every partition seed and the neuron view")
                + (f"; the departure is small (at most {100 * f['depth_max_departure']:.1f} points of share)"
                   if f["depth_max_departure"] < 0.05 else ""))
    investigation = descriptive("high_frequency_investigation", f"high-frequency experts counted per layer in "
                                f"{f['languages']} languages on the same {f['passages']} passages")
    return [investigation, row("high_frequency", result, evidence, word)]


# ---------------------------------------------------------------------------- the notebook's tables, charts and prose
#: The chapter's tables: plots.table's options by table name.
TABLES: dict[str, dict] = {
    "text": pipeline.TEXT_TABLE,
    "high_frequency_by_language": {
        "columns": {"name": "Language", "script": "Script", "high_total": "High-frequency experts", "low": "Low",
                    "high": "High", "tokens_per_character": "Tokens per character", "share_early": "Early",
                    "share_middle": "Middle", "share_late": "Late", "q_uniform": "q (even spread, BH)"},
        "formats": {"high_total": "{:.0f}", "low": "{:.0f}", "high": "{:.0f}", "tokens_per_character": "{:.2f}",
                    "share_early": "{:.3f}", "share_middle": "{:.3f}", "share_late": "{:.3f}", "q_uniform": "{:.3g}"},
        "caption": "Per language: high-frequency experts (95% interval), their shares per third of the network, "
                   "the depth test (raw p and mean entropy in the downloadable table)",
    },
    "tests": {
        "columns": {"test": "Test", "statistic": "Statistic", "value": "Value", "p_value": "p",
                    "p_holm": "Holm-adjusted p", "resamples_or_permutations": "Resamples / permutations"},
        "formats": {"value": "{:+.3f}", "p_value": "{:.4f}", "p_holm": "{:.4f}"},
        "caption": "Headline tests (Holm correction over the chapter)",
    },
    "robustness": {
        "columns": {"view": "View", "units": "Units a layer", "threshold": "Bar",
                    "mean_high": "High-frequency per language", "share_of_units": "Share of units",
                    "share_early": "Early share", "share_middle": "Middle share", "share_late": "Late share",
                    "largest_third": "Largest third", "p_depth": "p (even spread)",
                    "lowest_entropy_third": "Lowest-entropy third",
                    "rho_tokenisation": "Spearman with tokens per character", "p_tokenisation": "p (Spearman)"},
        "formats": {"threshold": "{:.3f}", "mean_high": "{:.1f}", "share_of_units": "{:.3f}", "share_early": "{:.3f}",
                    "share_middle": "{:.3f}", "share_late": "{:.3f}", "p_depth": "{:.4f}",
                    "rho_tokenisation": "{:+.2f}", "p_tokenisation": "{:.4f}"},
        "caption": "Chapter statistics in every view",
    },
}

#: The scripts the tokenisation chart colours apart (every other script is "other scripts").
SCRIPT_GROUPS = {"Latn": "Latin", "Cyrl": "Cyrillic", "Arab": "Arabic"}


def threshold_text(profile, hf_ratio: float) -> str:
    """One Markdown sentence: the languages, passages, layers and experts of ``profile`` and the
    high-frequency bar (:func:`hf_threshold`) worked out."""
    return (f"Here: {len(profile.languages)} languages on {profile.n_passages} passages, {profile.n_layers} layers "
            f"of {profile.n_experts} experts, k = {profile.k()} experts activated per token: an expert is "
            f"high-frequency for a language when its frequency is at least {hf_ratio:g} x {profile.k()}/"
            f"{profile.n_experts} = {hf_threshold(profile, hf_ratio):.3f}.")


def by_layer_chart(by_layer: pd.DataFrame) -> alt.LayerChart:
    """Mean high-frequency experts per language in each layer over its 95% band, a dashed rule at an even spread.

    by_layer: layer, third, mean_high, low, high, uniform_mean (:func:`high_frequency_results`' ``by_layer``)."""
    tooltip = ["layer", "third", alt.Tooltip("mean_high:Q", format=".2f", title="mean"),
               alt.Tooltip("low:Q", format=".2f"), alt.Tooltip("high:Q", format=".2f")]
    return plots.layer_bands(by_layer, "mean_high", y_title="High-frequency experts per language", zero=True,
                             reference=float(by_layer["uniform_mean"].iloc[0]), width=560, height=240,
                             tooltip=tooltip, title="Mean high-frequency experts per layer with its 95% interval "
                                                    "(dashed: an even spread)")


def language_layer_chart(language_layer: pd.DataFrame, by_language: pd.DataFrame) -> alt.Chart:
    """High-frequency experts per layer (x) and language (y, in ``by_language``'s order: by total).

    language_layer: name, layer, high_frequency, low, high; by_language: name."""
    order = by_language["name"].tolist()
    return alt.Chart(language_layer).mark_rect().encode(
        x=alt.X("layer:O", title="Layer"),
        y=alt.Y("name:N", sort=order, title=None, axis=alt.Axis(labelFontSize=7)),
        color=alt.Color("high_frequency:Q", title="High-frequency experts", scale=alt.Scale(scheme=plots.SEQUENTIAL)),
        tooltip=["name", "layer", "high_frequency", "low", "high"],
    ).properties(width=300, height=7 * len(order), title="High-frequency experts per layer and language")


def by_third_chart(by_third: pd.DataFrame) -> alt.LayerChart:
    """The share of the high-frequency experts in each third as a bar with its 95% interval, and the share an
    even spread gives (a red tick).

    by_third: third, share, low, high, uniform (:func:`high_frequency_results`' ``by_third``)."""
    third = alt.X("third:N", sort=list(DEPTH_THIRDS), title="Third of the network", axis=alt.Axis(labelAngle=0))
    bars = alt.Chart(by_third).mark_bar(opacity=0.6).encode(
        x=third, y=alt.Y("share:Q", title="Share of the high-frequency experts"),
        tooltip=["third"] + [alt.Tooltip(f"{c}:Q", format=".3f") for c in ("share", "low", "high", "uniform")])
    interval = alt.Chart(by_third).mark_rule(strokeWidth=2).encode(x=alt.X("third:N", sort=list(DEPTH_THIRDS)),
                                                                   y="low:Q", y2="high:Q")
    even = alt.Chart(by_third).mark_tick(color="#d62728", thickness=2, size=40).encode(
        x=alt.X("third:N", sort=list(DEPTH_THIRDS)), y="uniform:Q")
    return (bars + interval + even).properties(width=320, height=240,
                                               title="Where high-frequency experts sit (red: an even spread)")


def entropy_chart(by_layer: pd.DataFrame) -> alt.LayerChart:
    """Each layer's normalised entropy (mean over languages) over its 95% band, a dashed rule at the top-k floor.

    by_layer: layer, entropy, entropy_low, entropy_high, entropy_floor (:func:`high_frequency_results`')."""
    tooltip = ["layer"] + [alt.Tooltip(f"{c}:Q", format=".4f") for c in ("entropy", "entropy_low", "entropy_high")]
    return plots.layer_bands(by_layer, "entropy", low="entropy_low", high="entropy_high", colour="#e45756",
                             y_title="Normalised entropy (1 = even use)", zero=False,
                             reference=float(by_layer["entropy_floor"].iloc[0]), width=560, height=240,
                             tooltip=tooltip, title="Entropy of each layer's frequency distribution, mean over "
                                                    "languages (dashed: the top-k floor)")


def tokenisation_chart(by_language: pd.DataFrame) -> alt.LayerChart:
    """Each language's high-frequency experts (with its 95% interval) against its tokens per character (log
    scale), coloured by script group (:data:`SCRIPT_GROUPS`).

    by_language: name, script, tokens_per_character, high_total, low, high."""
    groups = by_language["script"].map(SCRIPT_GROUPS).fillna("other scripts")
    points = alt.Chart(by_language.assign(script_group=groups)).encode(
        x=alt.X("tokens_per_character:Q", title="Tokens per character (log scale)", scale=alt.Scale(type="log")),
        color=alt.Color("script_group:N", title="Script", legend=alt.Legend(orient="bottom")))
    dots = points.mark_circle(size=45, opacity=0.8).encode(
        y=alt.Y("high_total:Q", title="High-frequency experts (all layers)", scale=alt.Scale(zero=False)),
        tooltip=["name", "script", alt.Tooltip("tokens_per_character:Q", format=".3f"), "high_total", "low", "high"])
    intervals = points.mark_rule(opacity=0.5).encode(y="low:Q", y2="high:Q")
    return (intervals + dots).properties(width=520, height=300, title="High-frequency experts vs tokenisation")


def findings_text(f: dict) -> str:
    """The chapter's findings (Markdown) from :func:`high_frequency_results`' facts."""
    interval = stats.interval_text
    e = {third: interval(*values, digits=4) for third, values in f["entropy_thirds"].items()}
    depth = ("the spread departs from even beyond sampling noise" if f["depth_departs"] else
             "no departure from an even spread beyond sampling noise (weak evidence)")
    small = (f", though the departure is small (at most {100 * f['depth_max_departure']:.1f} points of share)"
             if f["depth_departs"] and f["depth_max_departure"] < 0.05 else "")
    separated = "" if f["largest_separated"] else "; the largest third is not clear of the second beyond noise"
    robust_depth = (
        "The uneven spread and its largest third hold under every partition seed and in the neuron view."
        if f["robust_depth"] else
        "The largest third is the same in every view, but the departure is not beyond noise in all of them."
        if f["robust_largest_third"] else
        "Another view puts the largest share in another third: the location is not a robust finding.")
    robust_entropy = ("The least even third is the same in every view." if f["robust_entropy_third"] else
                      "Another view puts the least even third elsewhere.")
    robust_rho = ("a relation that holds with the same sign in every view" if f["robust_rho"] else
                  "not a relation that holds beyond chance in every view")
    return f"""
- **How many.** With the bar at {f['threshold']:.3f}, a language has
  {interval(f['mean_high'], f['mean_high_low'], f['mean_high_high'], 1)} high-frequency experts of
  {f['units']:,} on average, from {f['min_high']:.0f} ({f['min_language']}) to {f['max_high']:.0f}
  ({f['max_language']}). The layer with the most is layer {f['peak_layer']}
  ({interval(*f['peak_mean'], digits=1)} per language).
- **Where.** The {f['largest_third']} third holds {interval(*f['largest_share'])} of all high-frequency
  experts and the {f['smallest_third']} third {interval(*f['smallest_share'])}, against
  {f['uniform_share']:.3f} each for an even spread over the layers:
  {depth}{small},
  {stats.p_text(f['p_depth'], f['p_depth_holm'])}{separated}.
  Language by language, {f['languages_departing']} of {f['languages']} departures from an even spread survive a
  Benjamini-Hochberg correction, and {f['languages_largest_same']} languages have their largest share in the
  {f['largest_third']} third.
  {robust_depth}
- **Entropy.** Mean normalised entropy of a layer's frequency distribution (1 = every expert used equally, top-k
  floor {f['entropy_floor']:.3f}, from {f['entropy_range'][0]:.3f} to {f['entropy_range'][1]:.3f} over the layers): \
early {e['early']}, middle {e['middle']},
  late {e['late']}; the most concentrated layer is layer {f['lowest_entropy_layer']}
  ({interval(*f['lowest_entropy'], digits=4)}).
  {robust_entropy}
- **Tokenisation.** Across languages, the number of high-frequency experts and tokens per character have a
  Spearman correlation of {interval(f['rho'], f['rho_low'], f['rho_high'], 2)} (languages and passages resampled),
  {stats.p_text(f['p_rho'], f['p_rho_holm'])} from {f['permutations']:,} permutations over languages:
  {robust_rho}
  (range over views {f['rho_range'][0]:+.2f} to {f['rho_range'][1]:+.2f}). The text is the same in every language,
  so unequal coverage of the text no longer enters this relation.
- **Strength of evidence.** {f['passages']} passages of one formal text, {f['resamples']:,} bootstrap resamples;
  one small model. The count of high-frequency experts depends on the bar (`hf_ratio`, our choice); the
  location over depth and the comparison between languages are the robust part.
"""
