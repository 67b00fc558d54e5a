"""Chapter 8 as library steps (``08_pruning.ipynb``): its tables and charts, the facts its prose quotes, the
prose and its verdict rows, from the pruning grid and the paired tests of
:mod:`babel_lib.interventions.applications`."""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from babel_lib.core.claims import row
from babel_lib.interventions import applications as app
from babel_lib.interventions.applications import (METHOD_LABELS, cells_text, claim_word, names_text,
                                                  ratio_interval_text, ratio_text, slug, strength_words, tests_text)

#: The chapter's tables: ``plots.table`` arguments by table name.
TABLES: dict[str, dict] = {
    "calibration_text": {"columns": {"name": "Language", "corpus": "Corpus", "text": "Text", "passages": "Passages",
                                     "tokens": "Tokens (own ranking)", "pooled_passages": "Pooled passages",
                                     "pooled_tokens": "Tokens (pooled rankings)"},
                         "caption": "In-domain calibration text per language: what its own ranking reads, and its "
                                    "share of what the pooled rankings read"},
    "calibration_check": {
        "columns": {"calibration": "Calibration", "rate": "Rate", "against_label": "Target language against",
                    "ratio": "Ratio", "low": "Low", "high": "High", "p_value": "p", "p_adjusted": "p (Holm)"},
        "formats": {"rate": "{:g}", "ratio": "{:.3g}", "low": "{:.3g}", "high": "{:.3g}", "p_value": "{:.4f}",
                    "p_adjusted": "{:.4f}"},
        "caption": "The headline comparison under two calibrations: in domain at equal budgets (the chapter's), and "
                   "the cross-domain check (UDHR calibration, the pooled rankings reading every language's text; Holm "
                   "within each calibration's own tests)"},
    "evaluation_text": app.EVALUATION_TEXT_TABLE,
    "tests_over_languages": {
        "columns": {"rate": "Rate", "against_label": "Target language against", "ratio": "Ratio", "low": "Low",
                    "high": "High", "wins_beyond_noise": "Better", "losses_beyond_noise": "Worse", "p_value": "p",
                    "p_adjusted": "p (Holm)"},
        "formats": {"rate": "{:g}", "ratio": "{:.3g}", "low": "{:.3g}", "high": "{:.3g}", "p_value": "{:.4f}",
                    "p_adjusted": "{:.4f}"},
        "caption": "Tests over languages: the target-language ranking against each other ranking, geometric-mean "
                   "perplexity ratio (exact sign-flip; Holm within each comparison, over its rates; languages better or worse "
                   "beyond noise by their paired intervals)"},
}
#: The findings' sentence on random pruning, by the verdict word of ``beats_random``.
RANDOM_WORDS = {"reproduced": "The paper’s claim holds at every rate tested, but random pruning removes experts "
                              "every language needs: it is a weak baseline.",
                "partly reproduced": "The paper’s claim holds at some rates only.",
                "not reproduced": "The paper’s claim is not reproduced here.",
                "not testable here": "Random pruning was not run."}


def calibration_table(tests: pd.DataFrame, cross: pd.DataFrame) -> pd.DataFrame:
    """The target language against the best language-agnostic ranking under both calibrations, one row per
    calibration and rate (from :func:`babel_lib.interventions.applications.language_tests`' rows)."""
    parts = []
    for name, t in ((IN_DOMAIN, tests), (CROSS_DOMAIN, cross)):
        own = t[(t["method"] == "language") & (t["against"] == "best agnostic")]
        parts.append(app.labelled(own).assign(calibration=name))
    return pd.concat(parts, ignore_index=True)


#: The two calibrations' names in tables and prose.
IN_DOMAIN = "in domain, equal budgets"
CROSS_DOMAIN = "UDHR (cross-domain check)"


def findings_pruning(grid_table: pd.DataFrame, tests: pd.DataFrame | None = None, matrix: dict | None = None,
                     alpha: float = 0.05, allocation: str = "uniform", cells: pd.DataFrame | None = None,
                     cross: pd.DataFrame | None = None, cross_tokens: tuple[int, int] | None = None,
                     random_grid: pd.DataFrame | None = None, random_cells: pd.DataFrame | None = None) -> dict:
    """The facts chapter 08 quotes (plain numbers and short strings).

    Keys: languages, rates, methods, tokens_min / tokens_max, passages_min / passages_max, sparsity
    (text: the measured fraction of experts dropped per rate), udhr_languages (names of the
    languages evaluated on the UDHR, 'none' if none) and corpora (text: which corpus each language
    is evaluated on); per method m:
    beats_dense_<m> / worse_than_dense_<m> / cells_<m> (language-rate cells decided by the
    paired intervals), beats_random_<m> (cells beating the random baseline beyond noise);
    beats_dense_cells (text listing the target-language cells that beat dense); best_cell (text:
    the target-language cell closest to dense, with its interval); median_ratio (text: median
    ratio to dense per rate and method); random_seeds and random_range (text per rate: the
    geometric mean over languages of each seed's ratio to dense, lowest to highest seed);
    from ``tests`` (:func:`language_tests`): n_tests and, for every ``against`` a of the
    target-language rows, tests_<a> (text per rate), tests_<a>_significant (rates where the
    target-language ranking is better, Holm-adjusted p < alpha), tests_<a>_worse (rates where
    it is worse), tests_<a>_rates; best_agnostic (text: which agnostic ranking was the best per
    rate); from ``cells`` (:func:`comparison_cells`): for every ``against`` a, vs_<a>_better /
    vs_<a>_worse (language-rate cells decided by the paired intervals), vs_<a>_cells and
    vs_<a>_better_text / vs_<a>_worse_text (which languages, per rate); verdict_beats_random /
    verdict_beats_dense (suggested verdict words: rules below); from the cross-language summary
    (:func:`cross_language_matrix`): matrix_* numbers, own_best, own_best_beyond_noise,
    matrix_languages, own_best_names, own_best_beyond_noise_names, matrix_names; from ``cross`` (the
    cross-domain check's :func:`language_tests`, UDHR calibration): cross_tests (text per rate),
    cross_significant / cross_worse / cross_rates (as tests_best_agnostic_*), cross_best_agnostic;
    ``cross_tokens`` (tokens of one language's own ranking, tokens of the pooled rankings there):
    cross_own_tokens, cross_pooled_tokens, cross_budget_ratio; ``random_grid``: the grid of the random
    band (random seeds and the target-language ranking on a shorter prefix of the evaluation text,
    :func:`babel_lib.interventions.applications.run_grid` with baseline 'random'): random_seeds,
    random_range (lowest-highest seed per rate), random_median (the median seed's ratio per rate),
    beats_random_language / random_cells (target-language cells better than the median seed beyond
    noise), random_tokens_min / random_tokens_max. Without it these come from ``grid_table``.
    ``random_cells``: :func:`comparison_cells` of the random band's experiment (added to ``cells``).

    Only the rows of ``allocation`` count (chapter 08: one uniform rate). Keys with spaces in the
    ``against`` name use underscores ('best agnostic' -> tests_best_agnostic).

    Verdict rules (our choices): beats_random is 'reproduced' when the target-language ranking
    beats random over languages (Holm-adjusted sign-flip p < alpha with a ratio below 1) at every
    rate, 'partly reproduced' at some rates, else 'not reproduced'; beats_dense is 'reproduced'
    when some (language, rate) cell of the target-language ranking beats dense beyond noise (its
    95% passage interval wholly below 1; per-cell intervals, not corrected for the number of cells:
    the count of cells is given beside it), else 'not reproduced'.
    """
    g = grid_table[(grid_table["method"] != "dense") & (grid_table["allocation"] == allocation)]
    dense = grid_table[grid_table["method"] == "dense"]
    out: dict = {"languages": int(dense["language"].nunique()), "rates": sorted(set(g["rate"])),
                 "methods": list(dict.fromkeys(g["method"])),
                 "tokens_min": int(dense["tokens"].min()), "tokens_max": int(dense["tokens"].max()),
                 "passages_min": int(dense["passages"].min()), "passages_max": int(dense["passages"].max()),
                 "udhr_languages": names_text(dense.loc[dense["corpus"] == "udhr", "language"])
                 if "corpus" in dense.columns else "none"}
    n_udhr = int((dense["corpus"] == "udhr").sum()) if "corpus" in dense.columns else 0
    out["corpora"] = ("all on the Bible" if n_udhr == 0 else "all on the UDHR" if n_udhr == len(dense) else
                      f"{out['udhr_languages']} on the UDHR, the other {len(dense) - n_udhr} on the Bible")
    for m, rows in g.groupby("method", sort=False):
        out[f"cells_{m}"] = int(len(rows))
        out[f"beats_dense_{m}"] = int((rows["decision"] == "beats dense").sum())
        out[f"worse_than_dense_{m}"] = int((rows["decision"] == "worse than dense").sum())
        if rows["baseline"].notna().any() and rows["baseline"].iloc[0] != m:
            out[f"beats_{rows['baseline'].iloc[0]}_{m}"] = int(rows["baseline_decision"].str.startswith("beats").sum())
    sp = g.groupby("rate")["sparsity"].first()
    out["sparsity"] = "; ".join(f"rate {r:g}: {v:.2%} of the experts" for r, v in sp.items())
    target = g[g["method"] == "language"]
    winners = target[target["decision"] == "beats dense"]
    out["beats_dense_cells"] = cells_text(winners) if len(winners) else "none"
    if len(target):
        b = target.loc[target["ratio"].idxmin()]
        out["best_cell"] = (f"{names_text([b['language']])} at rate {b['rate']:g}, "
                            f"{ratio_interval_text(b['ratio'], b['low'], b['high'])}")
    med = g.groupby(["rate", "method"], sort=False)["ratio"].median()
    out["median_ratio"] = "; ".join(
        f"rate {r:g}: " + ", ".join(f"{METHOD_LABELS.get(m, m)} {ratio_text(med[(r, m)])}" for m in out["methods"]
                                   if (r, m) in med.index) for r in out["rates"])
    rg = grid_table if random_grid is None else random_grid
    band = app.random_band(rg, allocation)
    out["random_seeds"] = int(band["seeds"].max()) if len(band) else 0
    if len(band):
        out["random_range"] = "; ".join(f"rate {b.rate:g}: {ratio_text(b.lowest)}-{ratio_text(b.highest)}"
                                        for b in band.itertuples())
        out["random_median"] = "; ".join(f"rate {b.rate:g}: {ratio_text(b.median)} (seed {b.median_seed})"
                                         for b in band.itertuples())
    own_r = rg[(rg["method"] == "language") & (rg["allocation"] == allocation)]
    out["random_cells"] = int(len(own_r))
    out["beats_random_language"] = int(own_r["baseline_decision"].astype(str).str.startswith("beats").sum()) \
        if "baseline_decision" in own_r else 0
    rd = rg[rg["method"] == "dense"]
    out["random_tokens_min"], out["random_tokens_max"] = (int(rd["tokens"].min()), int(rd["tokens"].max())) \
        if len(rd) else (0, 0)
    if tests is not None and not tests.empty:
        tests = tests[tests["allocation"] == allocation]
        out["n_tests"] = int(len(tests))
        own = tests[tests["method"] == "language"]
        for against in dict.fromkeys(["best agnostic", "random", *own["against"]]):
            key = f"tests_{slug(against)}"
            t = own[own["against"] == against]
            out[key] = tests_text(t) if len(t) else "not run"
            out[f"{key}_significant"] = int(((t["p_adjusted"] < alpha) & (t["ratio"] < 1)).sum())
            out[f"{key}_worse"] = int(((t["p_adjusted"] < alpha) & (t["ratio"] > 1)).sum())
            out[f"{key}_rates"] = int(len(t))
        t = own[own["against"] == "best agnostic"]
        out["best_agnostic"] = "; ".join(f"rate {r.rate:g}: {METHOD_LABELS.get(r.against_method, r.against_method)}"
                                         for r in t.itertuples()) or "not run"
        t = own[own["against"] == "random"]
        out["verdict_beats_random"] = claim_word(list((t["p_adjusted"] < alpha) & (t["ratio"] < 1))) \
            if len(t) else "not testable here"
    else:
        out["verdict_beats_random"] = "not testable here"
    if random_cells is not None and not random_cells.empty:
        cells = random_cells if cells is None or cells.empty else pd.concat([cells, random_cells], ignore_index=True)
    if cells is not None and not cells.empty:
        own = cells[(cells["method"] == "language") & (cells["allocation"] == allocation)]
        for against, c in own.groupby("against", sort=False):
            key = f"vs_{slug(against)}"
            better = c[c["decision"].str.startswith("beats")]
            worse = c[c["decision"].str.startswith("worse")]
            out[f"{key}_cells"] = int(len(c))
            out[f"{key}_better"] = int(len(better))
            out[f"{key}_worse"] = int(len(worse))
            for word, rows in (("better", better), ("worse", worse)):
                out[f"{key}_{word}_text"] = "; ".join(
                    f"rate {r:g}: {names_text(rows.loc[np.isclose(rows['rate'], r), 'language'])}"
                    for r in sorted(set(c["rate"])))
    out["verdict_beats_dense"] = "reproduced" if len(winners) else "not reproduced"
    if cross is not None and not cross.empty:
        t = cross[(cross["method"] == "language") & (cross["against"] == "best agnostic")]
        out["cross_tests"] = tests_text(t) if len(t) else "not run"
        out["cross_significant"] = int(((t["p_adjusted"] < alpha) & (t["ratio"] < 1)).sum())
        out["cross_worse"] = int(((t["p_adjusted"] < alpha) & (t["ratio"] > 1)).sum())
        out["cross_rates"] = int(len(t))
        out["cross_best_agnostic"] = "; ".join(f"rate {r.rate:g}: {METHOD_LABELS.get(r.against_method, r.against_method)}"
                                               for r in t.itertuples()) or "not run"
    if cross_tokens is not None:
        out["cross_own_tokens"], out["cross_pooled_tokens"] = int(cross_tokens[0]), int(cross_tokens[1])
        out["cross_budget_ratio"] = cross_tokens[1] / max(cross_tokens[0], 1)
    if matrix:
        out.update({f"matrix_{k}": v for k, v in matrix.items() if not isinstance(v, list)})
        out["own_best"] = matrix["own_best"]
        out["own_best_beyond_noise"] = matrix["own_best_beyond_noise"]
        out["matrix_languages"] = matrix["languages"]
        out["own_best_names"] = names_text(matrix.get("own_best_languages", []))
        out["own_best_beyond_noise_names"] = names_text(matrix.get("own_best_beyond_noise_languages", []))
        out["matrix_names"] = names_text(matrix.get("language_keys", []))
    return out


def verdicts_pruning(f: dict) -> list[dict]:
    """Chapter 08's verdict rows (:func:`babel_lib.report.verdicts.row`) from :func:`findings_pruning`'s facts:
    'beats_random' and 'beats_dense', each with our result, its interval and the evidence in words."""

    n = f["languages"]
    text = f"{n} languages, {f['tokens_min']:,}-{f['tokens_max']:,} held-out tokens each ({f['corpora']})"
    rows = []
    sig, total = f.get("tests_random_significant", 0), f.get("tests_random_rates", 0)
    rows.append(row(
        "beats_random",
        f"Target-language frequency ranking against random pruning (the median of {f.get('random_seeds', 0)} seeds), "
        f"over {n} languages: {f.get('tests_random', 'not run')}.",
        f"{strength_words(sig, total)}: {text}; the random comparison on the first "
        f"{f.get('random_tokens_min', 0):,}-{f.get('random_tokens_max', 0):,} tokens of that text; "
        f"{f.get('beats_random_language', 0)} of {f.get('random_cells', 0)} "
        f"language-rate cells better than random beyond noise; exact sign-flip tests over languages, Holm over the "
        f"{f.get('tests_random_rates', 0)} rates of this comparison; every ranking calibrated in domain at equal budgets. Random pruning "
        f"is a weak baseline: against the best language-agnostic ranking ({f.get('best_agnostic', 'not run')}) the "
        f"target-language ranking gives {f.get('tests_best_agnostic', 'not run')}"
        + (f"; with the cross-domain UDHR calibration: {f['cross_tests']}" if "cross_tests" in f else "") + ".",
        f["verdict_beats_random"]))
    won = f.get("beats_dense_language", 0)
    rows.append(row(
        "beats_dense",
        f"{won} of {f.get('cells_language', 0)} target-language cells (language x rate) beat the unpruned model "
        f"beyond noise{': ' + f['beats_dense_cells'] if won else ''}; the closest to it: {f.get('best_cell', 'none')}.",
        f"{'Weak' if won <= 1 else 'Moderate'}: per-cell 95% paired passage intervals, not corrected for the "
        f"{f.get('cells_language', 0)} cells; {text}; rates {', '.join(f'{r:g}' for r in f['rates'])}.",
        f["verdict_beats_dense"]))
    return rows


# ------------------------------------------------------------------------------ charts and prose
def _ratio_tooltip(*extra) -> list:
    return [alt.Tooltip(f"{c}:Q", format=".3f") for c in ("ratio", "low", "high")] + ["decision:N", *extra]


def ratio_to_dense_chart(grid: pd.DataFrame, methods: list[str]) -> alt.FacetChart:
    """Every pruned model's perplexity ratio to the unpruned one per language, a panel per rate, coloured by
    ranking in the order of ``methods``. grid: :func:`babel_lib.interventions.applications.run_grid`'s rows
    (method, rate, seed, language, sparsity, perplexity, ratio, low, high, decision, bits_per_char, corpus,
    tokens)."""
    rankings = [METHOD_LABELS[m] for m in methods]
    return app.ratio_chart(
        app.facet_named(grid[grid.method != "dense"], "rate"), color="ranking", color_title="Ranking",
        color_sort=rankings, legend=alt.Legend(orient="bottom", columns=3), column="rate_name", step=5, size=28,
        columns=2,
        x_title="Perplexity / unpruned (log scale)", title="Perplexity relative to the unpruned model",
        order=list(app.labelled(grid[grid.method == "dense"]).name),
        tooltip=["name:N", "ranking:N", "seed_name:N", "rate:Q", alt.Tooltip("sparsity:Q", format=".2%"),
                 alt.Tooltip("perplexity:Q", format=".2f"), *_ratio_tooltip(),
                 alt.Tooltip("bits_per_char:Q", format=".3f"), "corpus:N", "tokens:Q"])


def random_band_chart(random_grid: pd.DataFrame) -> alt.LayerChart:
    """The random seeds' band (lowest to highest geometric-mean ratio to dense over languages, per rate), the
    median seed and the target-language ranking on the same text. random_grid: the random band's
    :func:`babel_lib.interventions.applications.run_grid` rows."""
    band = app.random_band(random_grid)
    own = random_grid[random_grid["method"] == "language"]
    own = own.assign(lr=np.log(own["ratio"])).groupby("rate", as_index=False)["lr"].mean()
    own = own.assign(ratio=np.exp(own["lr"]), line="target-language frequency")
    med = band.assign(ratio=band["median"], line="random, median seed")
    title = "Perplexity / unpruned (geometric mean over languages)"
    y = alt.Y("ratio:Q", scale=alt.Scale(type="log"), title=title)
    x = alt.X("rate:Q", title="Rate (share of every layer's experts dropped)")
    area = alt.Chart(band).mark_area(opacity=0.25, color="#888").encode(
        x=x, y=alt.Y("lowest:Q", scale=alt.Scale(type="log"), title=title), y2="highest:Q",
        tooltip=["rate:Q", "seeds:Q", alt.Tooltip("lowest:Q", format=".3g"), alt.Tooltip("highest:Q", format=".3g")])
    lines = alt.Chart(pd.concat([med[["rate", "ratio", "line"]], own[["rate", "ratio", "line"]]])).mark_line(
        point=True).encode(x=x, y=y, color=alt.Color("line:N", title=None, legend=alt.Legend(orient="bottom")),
                           tooltip=["line:N", "rate:Q", alt.Tooltip("ratio:Q", format=".3g")])
    return (area + lines).properties(width=520, height=260, title="Random pruning: every seed's band and the median")


def target_vs_agnostic_chart(cells: pd.DataFrame, grid: pd.DataFrame) -> alt.FacetChart:
    """The target-language model's perplexity ratio to each other ranking's model per language (random
    pruning left out), a panel per rate. cells: :func:`babel_lib.interventions.applications.comparison_cells`'s
    rows (language, rate, against, against_method, ratio, low, high, decision, corpus); grid: the grid's
    rows, whose dense rows give the languages' order."""
    return app.ratio_chart(
        app.facet_named(cells[cells.against != "random"], "rate"), color="against", color_title="Against",
        column="rate_name", step=9, size=40, columns=2, x_title="Perplexity: target-language model / other model",
        title="Target-language ranking against rankings that ignore the language",
        order=list(app.labelled(grid[grid.method == "dense"]).name),
        tooltip=["name:N", "rate:Q", "against_label:N", *_ratio_tooltip("corpus:N")])


def cross_language_chart(matrix: pd.DataFrame, summary: dict, rate: float) -> alt.LayerChart:
    """The pruned-for-A, evaluated-on-B matrix: each cell's perplexity over B's own model (log colour, faint
    where indistinguishable). matrix: :func:`babel_lib.interventions.applications.cross_language_matrix`'s
    rows (pruned_for, evaluated_on, perplexity, ratio_own, low, high, decision, ratio_dense); summary: its
    summary (``language_keys``: the order)."""
    return app.annotated_matrix(
        app.labelled(matrix), x="evaluated_on_name", y="pruned_for_name", value="ratio_own",
        names=app.language_order(summary["language_keys"]), x_title="Evaluated on", y_title="Pruned for",
        scale=alt.Scale(type="log", scheme="redblue", reverse=True, domainMid=1),
        color_title="Perplexity / own model (red: the own model is better)", text_format=".2f",
        faint="datum.decision == 'indistinguishable'", title=f"Pruned for A, evaluated on B (rate {rate:g})",
        tooltip=["pruned_for_name:N", "evaluated_on_name:N", alt.Tooltip("perplexity:Q", format=".2f"),
                 alt.Tooltip("ratio_own:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                 alt.Tooltip("high:Q", format=".3f"), "decision:N", alt.Tooltip("ratio_dense:Q", format=".3f")])


def _cross_sentence(f: dict) -> str:
    if "cross_tests" not in f:
        return "The cross-domain check was not run."
    budget = (f" (about {f['cross_own_tokens']:,} tokens for a language's own ranking against {f['cross_pooled_tokens']:,} "
              f"for the pooled ones, {f['cross_budget_ratio']:.1f} times as many)" if "cross_budget_ratio" in f else "")
    same = (f["cross_significant"] == f["tests_best_agnostic_significant"] and
            f["cross_worse"] == f["tests_best_agnostic_worse"])
    return (f"The cross-domain check calibrates on the UDHR as the first edition of this chapter did{budget}: there "
            f"the target language against the best agnostic ranking ({f['cross_best_agnostic']}) gives "
            f"{f['cross_tests']}; better at {f['cross_significant']} and worse at {f['cross_worse']} of "
            f"{f['cross_rates']} rates. "
            + ("The conclusion is the same under both calibrations." if same else
               "The two calibrations disagree: the conclusion depends on the calibration text."))


def findings_text(f: dict) -> str:
    """Chapter 08's findings in Markdown, from :func:`findings_pruning`'s facts."""
    winners = ": " + f["beats_dense_cells"] if f["beats_dense_language"] else ""
    beats_dense = ("The paper’s claim that pruning can exceed the unpruned model is not reproduced here: no pruned "
                   "model is better than the unpruned one in any language." if f["verdict_beats_dense"] ==
                   "not reproduced" else "Some cells beat the unpruned model; these are per-cell intervals, not "
                   "corrected for the number of cells.")
    rates = " and ".join(f"{r:g}" for r in f["rates"])
    return f"""
- **The pruned models.** Experts dropped: {f['sparsity']} (every layer the same share: p x E rounded). Median
  perplexity ratio to the unpruned model over languages: {f['median_ratio']}. Random pruning varies with its seed
  (evaluated on the first {f['random_tokens_min']:,}-{f['random_tokens_max']:,} tokens of each language's text): the
  geometric mean over languages runs {f['random_range']} across the {f['random_seeds']} seeds; every comparison
  with random uses the median seed ({f['random_median']}).
- **Target language against the best language-agnostic ranking** (the headline): {f['tests_best_agnostic']}.
  The target-language ranking is better over languages at {f['tests_best_agnostic_significant']} of
  {f['tests_best_agnostic_rates']} rates and worse at {f['tests_best_agnostic_worse']} (Holm-adjusted p < 0.05).
  Language by language (paired intervals) it is better in {f['vs_best_agnostic_better']} of
  {f['vs_best_agnostic_cells']} language-rate cells ({f['vs_best_agnostic_better_text']}) and worse in
  {f['vs_best_agnostic_worse']} ({f['vs_best_agnostic_worse_text']}).
- **Does the calibration decide it?** Every ranking above was calibrated in domain (the calibration split of the
  corpus each language is evaluated on) at equal budgets. {_cross_sentence(f)}
- **Target language against the multilingual frequency** (the same statistic without the language):
  {f['tests_multilingual']}; better in {f['vs_multilingual_better']} and worse in {f['vs_multilingual_worse']} of
  {f['vs_multilingual_cells']} cells.
- **Against random pruning** (the paper's baseline): {f['tests_random']}; better than random beyond noise in
  {f['vs_random_better']} of {f['vs_random_cells']} cells. {RANDOM_WORDS[f['verdict_beats_random']]}
- **Better than the unpruned model?** {f['beats_dense_language']} of {f['cells_language']} target-language cells
  beat it beyond noise{winners}; the closest is
  {f['best_cell']}. {beats_dense}
- **Pruned for A, evaluated on B** (rate {f['matrix_rate']:g}, {f['matrix_languages']} languages: {f['matrix_names']}):
  the own-language model has the lowest perplexity in its column for {f['own_best']} of {f['matrix_languages']}
  languages ({f['own_best_names']}), and beats every other language's model beyond noise for
  {f['own_best_beyond_noise']} ({f['own_best_beyond_noise_names']}). Off the diagonal a model pruned for another
  language has {f['matrix_mean_ratio_own_off']:.3g} times the own model's perplexity on average (geometric mean);
  {f['matrix_cells_worse_than_own']} of {f['matrix_cells_off']} such cells are worse than the own model beyond noise
  and {f['matrix_cells_better_than_own']} better.
- **Strength of evidence.** {f['languages']} languages, {f['tokens_min']:,}-{f['tokens_max']:,} held-out tokens each
  ({f['corpora']}); {f['n_tests']} tests over languages, Holm-corrected within each comparison (one family per
  claim, over its rates); one small model and one partition. The
  rates are {rates} only, and the matrix covers {f['matrix_languages']} of the
  {f['languages']} languages.
"""
