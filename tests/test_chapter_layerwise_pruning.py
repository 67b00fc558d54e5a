"""Chapter 09's module (babel_lib.chapters.layerwise_pruning): its charts render from small synthetic tables
within the book's column, its tests table carries readable names, and its findings prose follows the facts."""

import itertools

import pandas as pd

from babel_lib.chapters import layerwise_pruning
from babel_lib.interventions import applications as app

LANGS = ["eng", "fra", "cmn_hans"]


def _layer_table() -> pd.DataFrame:
    return pd.DataFrame([{"rule": rule, "rate": rate, "layer": layer,
                          "layer_rate": rate + (0.05 * (layer - 1.5) if rule != "uniform" else 0.0),
                          "entropy": 0.9 - 0.05 * layer, "bottom_half_share": 0.2 + 0.01 * layer,
                          "measured_sparsity": rate} for rule, rate, layer in
                         itertools.product(["uniform", "layerwise", "entropy"], [0.1, 0.3], range(4))])


def test_layer_charts_render(plots_env):
    plots_env.show(layerwise_pruning.layer_rates_chart(_layer_table()), "layer_rates")
    chart = layerwise_pruning.layer_concentration_chart(_layer_table())
    assert set(chart.data.rule) == {"uniform"} and set(chart.data.rate) == {0.1} and len(chart.data) == 4
    plots_env.show(chart, "layer_concentration")


def test_rule_vs_uniform_chart_renders_a_panel_per_rate_and_ranking(plots_env):
    cells = pd.DataFrame([{"method": m, "rule": rule, "rate": rate, "language": l, "corpus": "bible", "ratio": 1.01,
                           "low": 0.97, "high": 1.05, "decision": "indistinguishable"}
                          for m, rule, rate, l in itertools.product(["language", "multilingual"],
                                                                    ["layerwise", "entropy"], [0.1, 0.3], LANGS)])
    grid = pd.DataFrame({"method": "dense", "language": LANGS})
    chart = layerwise_pruning.rule_vs_uniform_chart(cells, grid)
    assert set(chart.data.method_name) == {"target-language frequency ranking", "multilingual frequency ranking"}
    plots_env.show(chart, "rule_vs_uniform")


def test_tests_table_has_the_columns_its_table_shows():
    tests = pd.DataFrame([{"method": "language", "rule": "entropy", "rate": 0.3, "languages": 3, "ratio": 1.02,
                           "low": 0.99, "high": 1.05, "wins_beyond_noise": 0, "losses_beyond_noise": 1,
                           "p_value": 0.25, "p_adjusted": 0.5}])
    table = layerwise_pruning.tests_table(tests)
    assert table.method_name[0] == app.METHOD_LABELS["language"] and table.rule_name[0] == "entropy rule"
    assert set(layerwise_pruning.TABLES["tests_over_languages"]["columns"]) <= set(table.columns)


def _facts(**changes) -> dict:
    f = {"methods": ["language"], "rules": ["layerwise", "entropy"], "rates": [0.1, 0.3], "tests": 4,
         "layerwise_language_text": "rate 0.1: x1.01 [0.99, 1.03], p = 0.5", "layerwise_language_cells_text": "none",
         "entropy_language_text": "rate 0.1: x0.98 [0.95, 1.00], p = 0.25", "entropy_language_cells_text": "few",
         "cells": 12, "cells_better": 1, "cells_worse": 2, "verdict_layerwise": "not reproduced",
         "sparsity_gap": 0.0, "layerwise_range": "at rate 0.3 from 0.10 (layer 2) to 0.50 (layer 0)",
         "entropy_range": "at rate 0.3 from 0.20 (layer 1) to 0.40 (layer 3)", "layerwise_max_deviation": 0.2,
         "entropy_max_deviation": 0.1}
    return f | changes


def test_findings_text_follows_the_facts():
    text = layerwise_pruning.findings_text(_facts(), 0.2)
    first, second = text.split("\n")[:2]
    assert first == ("- **layer-wise (by share), target-language frequency ranking.** Over languages: rate 0.1: "
                     "x1.01 [0.99, 1.03], p = 0.5. Language by language: none.")
    assert second.startswith("- **entropy rule, target-language frequency ranking.**")
    assert "No per-layer rule beats the uniform rate" in text and "`max_deviation` = 0.2, rates 0.1 and 0.3," in text
    assert "is\n  0.0000. Layer rates" in text and "{" not in text and text.endswith("not published.\n")
    assert "at some rates only" in layerwise_pruning.findings_text(_facts(verdict_layerwise="partly reproduced"), 0.2)
