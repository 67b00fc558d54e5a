"""Chapter 2 as library steps: the layer x expert frequency maps of several languages, how far each
language departs from the common map, and how concentrated each layer's activations are.

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

import altair as alt
import numpy as np
import pandas as pd

from babel_lib.data.corpus import language_labels
from babel_lib.experts import pipeline
from babel_lib.report import plots
from babel_lib.stats import analysis, inference as stats
from babel_lib.stats.analysis import DEPTH_THIRDS, depth_third


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
    ({name: Profile}, the main view first; see :class:`babel_lib.experts.pipeline.Study.views`).

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
    dep_third = stats.bootstrap(lambda f: analysis.by_third(departure(f).mean(axis=-2)), counts, tokens, n_resamples, seed,
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
        thirds = analysis.by_third(departure(f).mean(axis=-2))
        rows.append({
            "view": name, "concentration": float(concentration(f, top_fraction).mean()),
            "uniform_share": uniform_share(prof.n_experts, top_fraction),
            "beyond_noise": int((dep > fl).sum()), "languages": len(dep),
            "median_ratio": float(np.median(dep / fl)),
            "most_departing": labels[prof.languages[int(np.argmax(dep))]],
            "largest_third": DEPTH_THIRDS[int(np.argmax(thirds))],
            "spearman_with_main": stats.spearman(dep, main_dep) if name != names[0] else 1.0,
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


def heatmap_verdicts(facts: dict) -> list[dict]:
    """The chapter's verdict rows (see :mod:`babel_lib.report.verdicts`) from :func:`heatmap_results` facts: the
    analysis itself is descriptive; the tested statement is that each language departs from the common
    map beyond sampling noise (the split-half noise floor: a null a language identical to the others
    would not leave). The concentration of activations is reported against uniform use, which any model
    departs from: a description of the model, not a test of the claim."""
    from babel_lib.core.claims import decide, descriptive, row

    f = facts
    result = (f"{f['beyond_noise']} of {f['languages']} languages depart from the common map beyond sampling noise "
              f"(median {f['median_ratio']:.1f} times the noise floor); the {f['top_fraction']:.0%} most used experts "
              f"of a layer carry {stats.interval_text(f['concentration'], f['concentration_low'], f['concentration_high'])} "
              f"of its activations (uniform use, {f['uniform_share']:.3f}, is a reference any model departs from, "
              "not a test)")
    word = decide(f["beyond_noise"] == f["languages"], robust=f["robust_beyond_noise"])
    evidence = (f"bootstrap over {f['passages']} passages ({f['resamples']:,} resamples) against each language's "
                "split-half noise floor; "
                + ("holds under every partition seed and the neuron view" if f["robust_beyond_noise"]
                   else "does not hold under every partition seed and the neuron view"))
    analysis_row = descriptive("activation_analysis", f"layer x expert frequency maps of {f['languages']} languages "
                               f"on the same {f['passages']} passages")
    return [analysis_row, row("heatmaps", result, evidence, word)]


# ---------------------------------------------------------------------------- the notebook's tables, charts and prose
#: The chapter's tables: plots.table's options by table name.
TABLES: dict[str, dict] = {
    "text": pipeline.TEXT_TABLE,
    "robustness": {
        "columns": {"view": "View", "concentration": "Top-10% share", "uniform_share": "Uniform share",
                    "beyond_noise": "Languages beyond noise", "languages": "Languages",
                    "median_ratio": "Median departure / floor", "most_departing": "Most departing",
                    "largest_third": "Third with largest departure", "spearman_with_main": "Spearman with main view"},
        "formats": {"concentration": "{:.3f}", "uniform_share": "{:.3f}", "median_ratio": "{:.1f}",
                    "spearman_with_main": "{:+.2f}"},
        "caption": "Chapter statistics in every view",
    },
}


def _maps_chart(maps: pd.DataFrame, color: str, color_title: str, title: str, diverging: bool = False):
    return plots.heatmap(maps, "rank:O", "layer:O", color, facet="name", columns=3, width=180, height=150,
                         x_title="Expert (rank in its layer)", y_title="Layer", color_title=color_title,
                         diverging=diverging, title=title)


def frequency_heatmaps_chart(maps: pd.DataFrame) -> alt.FacetChart:
    """One layer x expert frequency map per language (experts by their rank in the layer).

    maps: :func:`heatmap_frame`'s rows (name, layer, rank, frequency)."""
    return _maps_chart(maps, "frequency:Q", "Frequency",
                       "Expert activation frequency (x: experts sorted by mean frequency in their layer)")


def difference_heatmaps_chart(maps: pd.DataFrame) -> alt.FacetChart:
    """One map per language of its frequency minus the mean over the languages (diverging colours).

    maps: :func:`heatmap_frame`'s rows (name, layer, rank, difference)."""
    return _maps_chart(maps, "difference:Q", "Difference", "Frequency minus the mean over the languages",
                       diverging=True)


def departure_chart(by_language: pd.DataFrame) -> alt.LayerChart:
    """Each language's departure from the common map with its 95% interval and its noise floor (a red tick),
    the most departing first.

    by_language: name, departure, low, high, floor (:func:`heatmap_results`' ``by_language``)."""
    tooltip = ["name"] + [alt.Tooltip(f"{c}:Q", format=".4f") for c in ("departure", "low", "high", "floor")]
    return plots.interval_chart(by_language, "departure", "name", reference="floor", sort="-x", zero=True,
                                value_title="Departure from the common map (share of tokens per expert)",
                                height=24 * len(by_language), tooltip=tooltip,
                                title="Departure with its 95% interval; red: the noise floor")


def departure_and_concentration_chart(by_layer: pd.DataFrame) -> alt.HConcatChart:
    """Side by side, per layer: the mean departure and the share carried by the top 10% experts (green, dashed:
    uniform use), each over its 95% interval band.

    by_layer: layer, departure, departure_low, departure_high, concentration, concentration_low,
    concentration_high, uniform_share (:func:`heatmap_results`' ``by_layer``)."""
    departure_panel = plots.layer_bands(by_layer, "departure", low="departure_low", high="departure_high",
                                        y_title="Mean departure", zero=True, width=300, height=200,
                                        title="Departure by layer")
    concentration_panel = plots.layer_bands(by_layer, "concentration", low="concentration_low",
                                            high="concentration_high", colour="#2ca02c", zero=True,
                                            y_title="Share carried by the top 10% experts", reference="uniform_share",
                                            width=300, height=200, title="Concentration by layer (dashed: uniform use)")
    return alt.hconcat(departure_panel, concentration_panel)


def findings_text(f: dict, by_third: pd.DataFrame) -> str:
    """The chapter's findings (Markdown) from :func:`heatmap_results`' facts and its ``by_third`` table
    (third, departure, low, high)."""
    third = by_third.set_index("third")

    def third_text(name):
        return stats.interval_text(third.loc[name, "departure"], third.loc[name, "low"], third.loc[name, "high"],
                                   digits=4)

    concentration = stats.interval_text(f["concentration"], f["concentration_low"], f["concentration_high"])
    top = ("The first place is clear of the second beyond noise" if f["top_separated"] else
           "The first place is not clear of the second: the ranking at the top is weak evidence")
    top_view = "" if f["robust_most_departing"] else ", but another view puts another language first"
    largest = " beyond noise" if f["largest_third_separated"] else " (not clear of the next third: weak evidence)"
    largest_view = ", in every view" if f["robust_largest_third"] else "; this does not hold in every view"
    most, least = (stats.interval_text(*f[k], digits=4) for k in ("top_departure", "bottom_departure"))
    return f"""
- **A common map.** In every layer a few experts carry most activations: the {f['top_fraction']:.0%} most used
  experts carry {concentration} of a layer's
  activations, against {f['uniform_share']:.3f} if the experts were used equally
  ({'in every view' if f['robust_concentration'] else 'but not in every view'}).
- **Departures beyond noise.** {f['beyond_noise']} of {f['languages']} languages depart from the common map by more
  than sampling noise (interval above the noise floor); the median language departs by {f['median_ratio']:.1f} times
  its floor. The most departing is {f['most_departing']} ({most}), the least
  {f['least_departing']} ({least}).
  {top}{top_view}.
  Across views the languages' departures keep their order (lowest Spearman with the main view {f['min_spearman']:+.2f}).
- **Where languages differ.** Mean departure by third of the network: early
  {third_text('early')},
  middle {third_text('middle')},
  late {third_text('late')}:
  the {f['largest_third']} third differs most{largest}{largest_view}.
- **Strength of evidence.** {f['passages']} passages of one formal text, {f['resamples']:,} bootstrap resamples;
  one small model. The maps describe which parts of the FFN a language uses; they do not show that those
  experts matter for the language (the pruning chapters test that).
"""
