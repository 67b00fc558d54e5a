"""Chapter 08's module (babel_lib.chapters.pruning): its charts render from small synthetic tables within the
book's column, its table arguments name existing columns, and its findings prose follows the facts."""

import itertools

import pandas as pd

from babel_lib.chapters import pruning
from babel_lib.interventions import applications as app

LANGS = ["eng", "fra", "cmn_hans"]


def _grid() -> pd.DataFrame:
    rows = [{"method": "dense", "rate": 0.0, "seed": None, "language": l} for l in LANGS]
    for (m, seed), l in itertools.product([("language", None), ("multilingual", None), ("magnitude", None),
                                           ("wanda", None), ("random", 0), ("random", 1)], LANGS):
        rows.append({"method": m, "rate": 0.3, "seed": seed, "language": l})
    grid = pd.DataFrame(rows)
    return grid.assign(sparsity=0.3, perplexity=20.0, ratio=[1.0 + 0.01 * i for i in range(len(grid))],
                       low=0.95, high=1.3, decision="worse than dense", bits_per_char=1.1, corpus="bible",
                       tokens=100, allocation="uniform")


def test_ratio_to_dense_chart_renders(plots_env):
    plots_env.show(pruning.ratio_to_dense_chart(_grid(), ["language", "multilingual", "magnitude", "wanda",
                                                          "random"]), "ratio_to_dense")


def test_target_vs_agnostic_chart_renders_without_random(plots_env):
    cells = pd.DataFrame([{"method": "language", "against": a, "against_method": m, "rate": r, "language": l,
                           "corpus": "bible", "ratio": 0.98, "low": 0.9, "high": 1.05, "decision": "indistinguishable"}
                          for (a, m), r, l in itertools.product(
                              [("best agnostic", "wanda"), ("multilingual", "multilingual"), ("random", "random")],
                              [0.1, 0.3], LANGS)])
    chart = pruning.target_vs_agnostic_chart(cells, _grid())
    assert "random" not in set(chart.data.against)
    plots_env.show(chart, "target_vs_agnostic")


def test_cross_language_chart_renders(plots_env):
    matrix = pd.DataFrame([{"pruned_for": a, "evaluated_on": b, "perplexity": 20.0, "ratio_own": 1.0 if a == b else 1.1,
                            "low": 1.0 if a == b else 1.02, "high": 1.0 if a == b else 1.2, "ratio_dense": 1.2,
                            "decision": "indistinguishable" if a == b else "worse than own"}
                           for a, b in itertools.product(LANGS, LANGS)])
    chart = pruning.cross_language_chart(matrix, {"language_keys": LANGS}, 0.3)
    assert chart.title == "Pruned for A, evaluated on B (rate 0.3)"
    plots_env.show(chart, "cross_language_matrix")


def test_tables_name_columns_the_tables_have():
    tests = app.labelled(pd.DataFrame([{"method": "language", "against": "best agnostic", "against_method": "wanda",
                                        "rate": 0.3, "ratio": 0.9, "low": 0.8, "high": 1.0, "wins_beyond_noise": 1,
                                        "losses_beyond_noise": 0, "p_value": 0.25, "p_adjusted": 0.5}]))
    assert set(pruning.TABLES["tests_over_languages"]["columns"]) <= set(tests.columns)
    assert set(pruning.TABLES) == {"calibration_text", "calibration_check", "evaluation_text", "tests_over_languages"}


def _facts(**changes) -> dict:
    f = {"sparsity": "rate 0.3: 29.69% of the experts", "median_ratio": "rate 0.3: random x1.50",
         "random_range": "rate 0.3: x1.40-x1.60", "random_seeds": 2, "tests_best_agnostic": "rate 0.3: x1.02",
         "tests_best_agnostic_significant": 0, "tests_best_agnostic_rates": 1, "tests_best_agnostic_worse": 0,
         "vs_best_agnostic_better": 0, "vs_best_agnostic_cells": 3, "vs_best_agnostic_better_text": "rate 0.3: none",
         "vs_best_agnostic_worse": 1, "vs_best_agnostic_worse_text": "rate 0.3: French",
         "tests_multilingual": "rate 0.3: x0.99", "vs_multilingual_better": 0, "vs_multilingual_worse": 0,
         "vs_multilingual_cells": 3, "tests_random": "rate 0.3: x0.70", "vs_random_better": 3, "vs_random_cells": 3,
         "verdict_beats_random": "reproduced", "beats_dense_language": 0, "cells_language": 3,
         "beats_dense_cells": "none", "best_cell": "English at rate 0.3, x1.10 [1.05, 1.20]",
         "verdict_beats_dense": "not reproduced", "matrix_rate": 0.3, "matrix_languages": 2,
         "matrix_names": "English, French", "own_best": 2, "own_best_names": "English, French",
         "own_best_beyond_noise": 1, "own_best_beyond_noise_names": "English", "matrix_mean_ratio_own_off": 1.0812,
         "matrix_cells_worse_than_own": 1, "matrix_cells_off": 2, "matrix_cells_better_than_own": 0,
         "languages": 3, "tokens_min": 1200, "tokens_max": 2400, "corpora": "all on the Bible", "n_tests": 3,
         "rates": [0.1, 0.3], "random_tokens_min": 300, "random_tokens_max": 340,
         "random_median": "rate 0.3: x1.50 (seed 1)"}
    return f | changes


def test_findings_text_follows_the_facts():
    text = pruning.findings_text(_facts())
    assert text.startswith("\n- **The pruned models.** Experts dropped: rate 0.3: 29.69% of the experts")
    assert "it is a weak baseline." in text and "no pruned model is better than the unpruned one" in text
    assert "beat it beyond noise; the closest is" in text and "1.08 times the own model's perplexity" in text
    assert "1,200-2,400 held-out tokens each" in text and "The\n  rates are 0.1 and 0.3 only" in text
    assert "first 300-340 tokens" in text and "median seed (rate 0.3: x1.50 (seed 1))" in text
    assert "The cross-domain check was not run." in text
    cross = pruning.findings_text(_facts(cross_tests="rate 0.3: x1.01", cross_significant=0, cross_worse=0,
                                         cross_rates=1, cross_best_agnostic="rate 0.3: activation magnitude",
                                         cross_own_tokens=1800, cross_pooled_tokens=16200, cross_budget_ratio=9.0))
    assert "1,800 tokens for a language's own ranking against 16,200" in cross and "9.0 times as many" in cross
    assert "The conclusion is the same under both calibrations." in cross
    differs = pruning.findings_text(_facts(cross_tests="rate 0.3: x0.90", cross_significant=1, cross_worse=0,
                                           cross_rates=1, cross_best_agnostic="rate 0.3: activation magnitude"))
    assert "The two calibrations disagree" in differs
    assert text.endswith("the matrix covers 2 of the\n  3 languages.\n") and "{" not in text
    won = pruning.findings_text(_facts(beats_dense_language=1, beats_dense_cells="English at 0.3",
                                       verdict_beats_dense="reproduced", verdict_beats_random="not testable here"))
    assert "beat it beyond noise: English at 0.3; the closest" in won and "Random pruning was not run." in won
    assert "per-cell intervals, not corrected for the number of cells" in won


def test_charts_of_the_books_five_rates_and_nine_languages_fit_the_column(plots_env):
    # the defect: five rate panels side by side were 1,415 px wide (the column holds 730)
    langs = ["eng", "fra", "spa", "por_pt", "ben", "urd", "hin", "arb", "cmn_hans"]
    rates = [0.05, 0.1, 0.2, 0.3, 0.5]
    rows = [{"method": "dense", "rate": 0.0, "seed": None, "language": l} for l in langs]
    rows += [{"method": m, "rate": r, "seed": None, "language": l}
             for m, r, l in itertools.product(["language", "multilingual", "magnitude", "wanda"], rates, langs)]
    grid = pd.DataFrame(rows).assign(sparsity=0.3, perplexity=20.0, ratio=1.2, low=1.1, high=1.3,
                                     decision="worse than dense", bits_per_char=1.1, corpus="bible", tokens=100,
                                     allocation="uniform")
    plots_env.show(pruning.ratio_to_dense_chart(grid, ["language", "multilingual", "magnitude", "wanda"]),
                   "ratio_to_dense")
    cells = pd.DataFrame([{"method": "language", "against": a, "against_method": m, "rate": r, "language": l,
                           "corpus": "bible", "ratio": 0.98, "low": 0.9, "high": 1.05, "decision": "indistinguishable"}
                          for (a, m), r, l in itertools.product(
                              [("best agnostic", "wanda"), ("multilingual", "multilingual")], rates, langs)])
    plots_env.show(pruning.target_vs_agnostic_chart(cells, grid), "target_vs_agnostic")
    band = pd.DataFrame([{"method": m, "rate": r, "seed": s, "language": l, "ratio": 50.0 * (s + 1) if s is not None
                          else 1.5, "allocation": "uniform", "baseline_decision": ""}
                         for r, l in itertools.product(rates, langs)
                         for m, s in [("language", None)] + [("random", k) for k in range(10)]])
    plots_env.show(pruning.random_band_chart(band), "random_band")
