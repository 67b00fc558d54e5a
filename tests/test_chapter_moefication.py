"""Chapter 1's notebook pieces (babel_lib.chapters.moefication): the chart renders, the tables' columns exist,
and the prose reads the measured tables."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from babel_lib.chapters import moefication

GROUPINGS = ["k-means (gate rows)", "k-means (gate+up rows)", "co-activation", "random"]
MAIN = GROUPINGS[0]


@pytest.fixture(scope="module")
def tables():
    """Synthetic measures of four groupings on 6 units and 4 layers: mass, per-layer quality, MoE-view checks."""
    rng = np.random.default_rng(0)
    U, L = 6, 4
    tokens = np.full(U, 50.0)
    level = {MAIN: 0.45, GROUPINGS[1]: 0.44, "co-activation": 0.40, "random": 0.30}
    by_unit = {g: (tokens[:, None] * (level[g] + 0.01 * rng.standard_normal((U, L))), tokens) for g in GROUPINGS}
    mass = moefication.mass_comparison(by_unit, n_resamples=50)
    per_layer = pd.DataFrame([{"partition": g, "layer": layer, "mass_captured": level[g],
                               "within_coactivation": level[g] / 2, "balance": 0.9 + 0.01 * layer}
                              for g in GROUPINGS for layer in range(L)])
    checks = pd.DataFrame([{"partition": MAIN, "top_k_fraction": 1.0, "max_abs_logit_diff": 3e-5,
                            "mean_abs_logit_diff": 1e-6, "top1_agreement": 1.0, "tokens": 300}]
                          + [{"partition": g, "top_k_fraction": 0.2, "max_abs_logit_diff": 9.0,
                              "mean_abs_logit_diff": 1.5, "top1_agreement": level[g], "tokens": 300}
                             for g in GROUPINGS])
    return mass, per_layer, checks


def test_partition_quality_chart_renders(tables, plots_env):
    _, per_layer, _ = tables
    plots_env.show(moefication.partition_quality_chart(per_layer), "partition_quality")


def test_tables_name_existing_columns(tables):
    mass, _, checks = tables
    assert set(moefication.TABLES["mass_captured"]["columns"]) <= set(mass.columns)
    assert set(moefication.TABLES["moe_view_agreement"]["columns"]) <= set(checks.columns)


def test_agreement_runs_put_the_dense_check_first():
    partitions = {g: object() for g in GROUPINGS}
    runs = moefication.agreement_runs(partitions, MAIN, 0.2)
    assert runs[0] == (MAIN, partitions[MAIN], 1.0)
    assert [(name, k) for name, _, k in runs[1:]] == [(g, 0.2) for g in GROUPINGS]


def test_text_description_names_model_and_tokens():
    lm = SimpleNamespace(description="Gemma", name="gemma-3-270m", dtype="torch.float32", fingerprint="abc")
    text = SimpleNamespace(describe=lambda: "Three languages.")
    out = moefication.text_description(lm, text, text, 12345, 678, 64)
    assert "(`gemma-3-270m`, float32, fingerprint `abc`)" in out
    assert "Co-activation on 12,345 calibration tokens, quality on 678 evaluation tokens" in out
    assert out.endswith("windows of at most 64 tokens.")


def test_findings_text_quotes_the_tables(tables):
    mass, per_layer, checks = tables
    text = moefication.findings_text(mass, per_layer, checks, MAIN, 0.2, "torch.bfloat16")
    assert "maximum absolute difference of\n  3.00e-05 (bfloat16)" in text
    assert "on\n  100.0% of 300 positions" in text
    assert "Within-expert co-activation is 0.225 for k-means" in text
    assert "prediction on 45.0% of positions with k-means experts" in text
    assert "more than random beyond noise" in text and "more than random in 4 of 4" in text
    assert "{" not in text and "nan" not in text.lower()
