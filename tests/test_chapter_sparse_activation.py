"""Chapter 10's module (babel_lib.chapters.sparse_activation): its charts render from small synthetic tables
within the book's column, its tables carry the columns they show, and its findings prose follows the facts."""

import itertools

import numpy as np
import pandas as pd

from babel_lib.chapters import sparse_activation

LANGS = ["eng", "fra", "cmn_hans"]
SELECTORS = ["static", "router", "oracle"]


def _quality() -> pd.DataFrame:
    rows = []
    for selector in SELECTORS:
        row = {"selector": selector, "keep": 0.5, "experts": 32, "languages": 3, "ratio": 1.5, "low": 1.3,
               "high": 1.7, "best": 1.3, "worst": 1.7, "worse_than_dense": 3, "beats_dense": 0}
        if selector == "static":
            row |= {"ffn_speedup": 1.8, "ffn_speedup_low": 1.6, "ffn_speedup_high": 1.9, "backbone_speedup": 1.4,
                    "backbone_speedup_low": 1.3, "backbone_speedup_high": 1.5, "model_speedup": 1.1,
                    "model_speedup_low": 0.98, "model_speedup_high": 1.2, "speed_noisy": False}
        rows.append(row)
    return pd.DataFrame(rows)


def _selectors() -> pd.DataFrame:
    return pd.DataFrame([{"selector": s, "keep": 0.5, "experts": 32, "experts_per_layer": 64, "language": l,
                          "corpus": "bible", "perplexity": 30.0, "bits_per_char": 1.2, "ratio": 1.5, "low": 1.3,
                          "high": 1.7, "decision": "worse than dense",
                          "vs_static_ratio": np.nan if s == "static" else 1.2,
                          "vs_static_low": np.nan if s == "static" else 1.1,
                          "vs_static_high": np.nan if s == "static" else 1.3,
                          "vs_static_decision": "" if s == "static" else "worse than static"}
                         for s, l in itertools.product(SELECTORS, LANGS)])


def _tests() -> pd.DataFrame:
    return pd.DataFrame([{"keep": 0.5, "experts": 32, "selector": s, "against": a, "languages": 3, "ratio": r,
                          "low": r * 0.9, "high": r * 1.1, "better_beyond_noise": 0, "worse_beyond_noise": 3,
                          "p_value": 0.25, "test": "exact", "p_adjusted": 0.75}
                         for s, a, r in (("static", "dense", 1.5), ("router", "static", 1.2),
                                         ("oracle", "static", 0.8))])


def test_quality_vs_speed_chart_renders_the_static_sets_only(plots_env):
    chart = sparse_activation.quality_vs_speed_chart(_quality(), 1.05)
    data = chart.data
    assert set(data.part) == {"whole model", "backbone (no output layer)"} and len(data) == 2
    assert list(data.speedup) == [1.1, 1.4] and set(data.keep_name) == {"keep 0.5"}
    plots_env.show(chart, "quality_vs_speed")


def test_selectors_chart_renders(plots_env):
    plots_env.show(sparse_activation.selectors_chart(_selectors(), LANGS), "selectors_by_language")


def test_tables_name_columns_the_tables_have():
    tests = sparse_activation.tests_table(_tests())
    assert list(tests.against_label) == ["against dense", "against static", "against static"]
    assert set(sparse_activation.TABLES["tests_over_languages"]["columns"]) <= set(tests.columns)
    speed = _quality().iloc[:1].assign(computed=0.5)
    assert set(sparse_activation.TABLES["speed"]["columns"]) <= set(speed.columns)
    assert sparse_activation.TABLES["speed"]["formats"]["model_speedup_high"] == "{:.2f}"


def test_findings_text_follows_the_facts():
    speed = pd.DataFrame([{"keep": 0.5, "speed_noisy": True, "dense_tokens_per_second": 123.4}])
    recall = pd.DataFrame([{"selector": s, "top_k_fraction": k, "k": 13, "recall": 0.6, "lowest_layer": 0.4,
                            "highest_layer": 0.8, "chance": 0.2}
                           for s, k in (("centroid router", 0.2), ("centroid router", 0.5), ("static 0.5", 0.5))])
    f = sparse_activation.findings_sparse(_quality(), _selectors(), speed, comparable=1.05, tests=_tests(),
                                          recall=recall)
    text = sparse_activation.findings_text(f, 1.05, 0.2)
    first = text.split("\n")[0]
    assert first.startswith("- **Keep 0.5** (32 of 64 experts a layer). Static set (target-language pruning at rate "
                            "0.5): perplexity x1.50 [1.30, 1.70] of the unpruned model (worse beyond noise in 3 of 3")
    assert first.endswith("(better in 0, worse in 3 languages beyond noise). Oracle: x1.50 [1.30, 1.70] of the "
                          "unpruned model.")
    assert "- **Comparable performance?** No. The paper’s claim" in text and "within our threshold of x1.05" in text
    assert "- **Speed.** Faster than the unpruned model in every timing round: the FFN and the backbone" in text
    assert "At k = 0.2 x E the centroid router picks 0.60 (layers 0.40-0.80; chance 0.20) of each" in text
    assert "(1 of 1 keep fractions\n  with noisy rounds), dense backbone 123 tokens/s" in text
    assert "{" not in text and text.endswith("a large part of its cost.\n")
    assert "Partly: a faster static set" in sparse_activation.findings_text(
        dict(f, verdict_sparse_activation="partly reproduced"), 1.05, 0.2)


def test_per_token_sentence_reports_the_trained_router():
    f = {"keeps": [0.9, 0.7], "router_better_keeps": 0, "router_worse_keeps": 2, "oracle_better_keeps": 2,
         "oracle_worse_keeps": 0}
    untrained = sparse_activation.per_token_sentence(f)
    assert "a trained router might" in untrained and "the trained router" not in untrained
    trained = sparse_activation.per_token_sentence(f | {"trained_better_keeps": 1, "trained_worse_keeps": 0})
    assert "the trained router is better at 1 and worse at 0 of 2" in trained
    assert "a trained router might" not in trained and "beats the static set at some keep fractions" in trained
    every = sparse_activation.per_token_sentence(f | {"trained_better_keeps": 2, "trained_worse_keeps": 0})
    assert "beats the static set at every keep fraction" in every
    none = sparse_activation.per_token_sentence(f | {"trained_better_keeps": 0, "trained_worse_keeps": 2})
    assert "does not beat the static set at any keep fraction" in none
