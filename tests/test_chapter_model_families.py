"""Chapter 6's charts, tables and findings (babel_lib.chapters.model_families) on small synthetic inputs."""

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from babel_lib.chapters import model_families
from babel_lib.core.errors import UnknownModelError

MODELS = ["gemma-3-270m", "smollm2-135m-instruct"]


def _by_layer(models=MODELS, layers=(3, 4)):
    rows = []
    for m, L in zip(models, layers):
        for s in model_families.DEPTH_STATISTICS:
            for layer in range(L):
                v = 0.1 + 0.05 * layer
                rows.append({"model": m, "statistic": s, "layer": layer, "relative_depth": (layer + 0.5) / L,
                             "value": v, "low": v - 0.02, "high": v + 0.02,
                             "floor": 0.05 if s == "distance between languages" else np.nan})
    return pd.DataFrame(rows)


def test_depth_chart_renders_a_panel_per_statistic(plots_env):
    chart = model_families.depth_chart(_by_layer(), "Per-layer statistics of the two models")
    assert chart.to_dict()["facet"]["sort"] == list(model_families.DEPTH_STATISTICS)
    plots_env.show(chart, "statistics_by_depth")


def test_distances_chart_renders(plots_env):
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame({"name_a": ["English", "English", "French"], "name_b": ["French", "Chinese", "Chinese"],
                          "scripts": ["same script", "different scripts", "different scripts"],
                          MODELS[0]: rng.uniform(0.1, 0.3, 3), MODELS[1]: rng.uniform(0.1, 0.3, 3)})
    chart = model_families.distances_chart(pairs, MODELS)
    assert chart.to_dict()["encoding"]["x"]["title"] == f"Hellinger distance, {MODELS[0]}"
    plots_env.show(chart, "distances_two_models")


def test_tokenisation_table_and_chart(plots_env):
    tok = pd.DataFrame({"language": ["eng", "cmn_hans"], "name": ["English", "Chinese"], "script": ["Latn", "Hans"],
                        "family": ["Indo-European", "Sino-Tibetan"], MODELS[0]: [0.23, 0.7], MODELS[1]: [0.25, 1.1]})
    table = model_families.tokenisation_table(tok)
    assert table["writing"].tolist() == ["Latin", "other scripts"] and "writing" not in tok
    plots_env.show(model_families.tokenisation_chart(table, MODELS), "tokens_per_character")


def test_table_options_name_the_models():
    tables = model_families.model_tables(MODELS)
    text = tables["text"]
    assert list(text["columns"])[5:] == [f"tokens: {MODELS[0]}", f"tokens per character: {MODELS[0]}",
                                         f"tokens: {MODELS[1]}", f"tokens per character: {MODELS[1]}"]
    assert set(text["formats"]) == {f"tokens per character: {m}" for m in MODELS}
    assert tables["depth_agreement"]["columns"]["trend_other"] == f"Trend with depth, {MODELS[1]}"
    assert list(tables["holds_in"]["columns"]) == ["finding", *MODELS, "holds_in"]
    robustness = tables["robustness"]
    assert robustness["columns"][f"{MODELS[1]}: tree_r"] == f"{MODELS[1]}: tree partial r"
    assert robustness["formats"][f"{MODELS[0]}: auc"] == "{:.3f}"
    assert set(model_families.TABLES) == {"tests", "size_summary", "size_pairs", "size_contrast"}
    bits = pd.DataFrame(columns=["language", "name", "udhr: a", "bible: a", "memorised_by"])
    options = model_families.bits_table_options(bits)
    assert list(options["columns"]) == ["name", "udhr: a", "bible: a", "memorised_by"]
    assert options["max_rows"] == 30 and set(options["formats"]) == {"udhr: a", "bible: a"}


def test_studies_text_and_model_checks():
    study = SimpleNamespace(describe=lambda: "a study")
    assert model_families.studies_text({"a": study, "b": study}) == "- a study\n- a study"
    assert model_families.studies_text({"udhr": {"a": study}, "bible": {"a": study}}) == \
        "- udhr: a study\n- bible: a study"
    model_families.check_models([])
    with pytest.raises(UnknownModelError):
        model_families.check_models(["no-such-model-anywhere"])


def model_facts(**changes) -> dict:
    """Facts of :func:`model_families.model_results` for two models (only what the findings quote)."""
    a, b = MODELS
    f = {"models": MODELS, "testable": True, "languages": 120, "passages": 10, "resamples": 1000,
         "mantel": [0.61, 0.5, 0.7], "mantel_p": 0.0001, "mantel_p_holm": 0.0002,
         "partial": [0.4, 0.3, 0.5], "partial_p": 0.0001, "partial_p_holm": 0.0002, "robust_mantel": True,
         "models_r_range": [0.55, 0.63], "same_shape": ["entropy"], "weakly_similar": [], "opposite": [],
         "unclear": ["departure"], "curves": {"entropy": [0.9, 0.7, 0.95], "departure": [0.1, -0.3, 0.5]},
         "holds_in": {"auc": "every model", "partial_tree": "only " + a, "partial_script": "no model",
                      "partial_granularity": "every model"},
         "tpc_median": {a: 0.25, b: 0.41}, "tpc_ratio_median": 1.6, "tpc_ratio_max": ["Chinese", 3.2],
         "tpc_rho": 0.8}
    for m in MODELS:
        for test in ("auc", "partial_tree", "partial_script"):
            f[f"{m}: {test}"], f[f"{m}: {test}_p"], f[f"{m}: {test}_p_holm"] = [0.6, 0.55, 0.65], 0.001, 0.003
    return f | changes


def test_findings_text_quotes_the_facts():
    text = model_families.findings_text(model_facts())
    assert text.startswith("\n- **The same languages are close in both models.**") and text.endswith("\n")
    assert "Mantel\n  r = 0.61 [0.50, 0.70]" in text and "The agreement holds in every view" in text
    assert "Same shape in both models (curve correlation above 0.5): entropy;" in text
    assert "weakly similar (above 0 only): none;" in text and "most for\n  Chinese: 3.2 times" in text
    assert "weak evidence that it is general" not in text
    weak = model_families.findings_text(model_facts(holds_in=dict(model_facts()["holds_in"], auc="no model"),
                                                    robust_mantel=False, same_shape=[]))
    assert "weak evidence that it is general" in weak and "does not hold in every view" in weak
    assert "none of the statistics" in weak


def test_findings_text_when_not_testable():
    text = model_families.findings_text(model_facts(testable=False, languages=3, same_shape=[]))
    assert text == ("\n- **Not testable on this language set.** 3 languages leave no same-family pair to compare; "
                    "run the\n  chapter on `families:120` (the default).\n- The two models' language distances: "
                    "Mantel r = 0.61 [0.50, 0.70]. Same depth shape:\n  none of the statistics.\n")


def size_facts(**changes) -> dict:
    """Facts of :func:`model_families.size_results` on one corpus (only what the findings quote)."""
    f = {"languages": 9, "passages": 5, "interval_method": "crossed", "size_pairs": [("small", "large")],
         "size_mantel": [[0.9, 0.8, 0.95]], "family_mantel_range": [0.2, 0.5], "size_same_shape": ["entropy"],
         "contrast": {"language distances (Mantel r)": [0.5, 0.3, 0.7, "size changes it less than family"],
                      "share of high-frequency experts (|difference|)": [-0.01, -0.03, 0.01, "no difference shown"]},
         "hf_share": {"small": [0.1, 0.09, 0.11], "large": [0.12, 0.1, 0.13]},
         "shared_count": {"small": 1200, "large": 30}, "specific_count": {"small": 4, "large": 5}}
    return f | changes


def test_size_findings_text():
    text = model_families.size_findings_text({"udhr": {"facts": size_facts()}}, [])
    lines = text.split("\n")
    assert len(lines) == 2 and lines[0].startswith("- **Sizes on the UDHR** (9 languages, 5 passages, crossed")
    assert "shared by every language: 1,200 and 30" in lines[0] and "(no difference shown)" in lines[0]
    assert lines[1].startswith("- **Memorisation.** No size model's Bible text is flagged")
    both = model_families.size_findings_text({"udhr": {"facts": size_facts()}, "bible": {"facts": size_facts()}},
                                             model_families.flagged_languages({"large": ["English"]}, ["large"]))
    assert "- **Sizes on the Bible**" in both and "flags English (large) on the Bible" in both


def test_flagged_languages_keep_the_size_models_only():
    memorised = {"gemma-3-270m": ["French"], "large": ["English", "Hindi"]}
    assert model_families.flagged_languages(memorised, ["small", "large"]) == ["English (large)", "Hindi (large)"]


def test_size_helpers_on_constructed_size_results(plots_env):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_model_sizes import _four_models

    results = model_families.size_results_by_corpus({"udhr": _four_models(True)[0]},
                                                    families={"A1": "A", "A2": "A", "B": "B", "C": "C"},
                                                    n_resamples=20)
    by_layer = model_families.size_by_layer(results)
    assert set(by_layer["corpus"]) == {"udhr"} and len(by_layer) == len(results["udhr"]["by_layer"])
    row = model_families.corpus_size_verdict(results, ["English (A2)"])
    assert row == model_families.size_verdict(results["udhr"]["facts"], ["English (A2)"], "the UDHR")
    assert "high-frequency experts: A1 0." in model_families.size_findings_text(results, [])
    plots_env.show(model_families.depth_chart(results["udhr"]["by_layer"], "Per-layer statistics of the four models"),
                   "size_statistics_by_depth")
