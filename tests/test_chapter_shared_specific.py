"""Chapter 4's charts, tables and findings (babel_lib.chapters.shared_specific) on small synthetic inputs."""

import numpy as np
import pandas as pd

from babel_lib.chapters import shared_specific
from babel_lib.experts import pipeline


def _by_language():
    return pd.DataFrame({"language": ["eng", "fra", "cmn_hans"], "name": ["English", "French", "Chinese"],
                         "family": ["Indo-European", "Indo-European", "Sino-Tibetan"],
                         "script": ["Latn", "Latn", "Hans"], "alone_with_script": [False, False, True],
                         "high_frequency": [40, 38, 45], "specific_naive": [3, 1, 6], "specific_robust": [1, 0, 4],
                         "robust_seed_1": [1, 0, 3], "robust_neurons": [2, 1, 5]})


def test_sharing_histogram_chart_renders(plots_env):
    histogram = pd.DataFrame({"languages": np.arange(4), "observed": [50, 20, 8, 3], "chance": [48.0, 25.1, 6.2, 0.4]})
    plots_env.show(shared_specific.sharing_histogram_chart(histogram), "sharing_histogram")


def test_by_layer_chart_renders_every_series(plots_env):
    by_layer = pd.DataFrame({"layer": range(3), "third": ["early", "middle", "late"], "shared": [2, 3, 1],
                             "robust_shared": [1, 2, 0], "specific": [5, 4, 6], "robust_specific": [1, 0, 2],
                             "lape": [0, 1, 1]})
    chart = shared_specific.by_layer_chart(by_layer, 64)
    assert set(chart.data["series"]) == set(shared_specific.BY_LAYER_SERIES.values())
    assert chart.to_dict()["encoding"]["y"]["title"] == "Experts (of 64 a layer)"
    plots_env.show(chart, "shared_specific_by_layer")


def test_specific_by_language_chart_ranks_languages(plots_env):
    chart = shared_specific.specific_by_language_chart(_by_language(), top=2)
    assert chart.to_dict()["encoding"]["y"]["sort"] == ["Chinese", "English"]
    assert set(chart.data["definition"]) == {"naive", "beyond noise"}
    plots_env.show(chart, "specific_by_language")


def test_lape_chart_renders(plots_env):
    plots_env.show(shared_specific.lape_chart(pd.DataFrame({"hf_languages": [1, 2, 2, 5, 9]})),
                   "lape_high_frequency_languages")


def test_table_options_follow_the_views():
    options = shared_specific.specific_by_language_options(_by_language())
    assert list(options["columns"])[-2:] == ["robust_seed_1", "robust_neurons"]
    assert options["columns"]["robust_neurons"] == "Beyond noise, neurons"
    survival = shared_specific.survival_options(["seed 0", "seed 1", "neurons"])["columns"]
    assert list(survival) == ["kind", "definition", "main_view", "seed 1", "neurons", "survive_seeds", "survive_all"]
    assert survival["neurons"] == "Confirmed: neurons"
    assert shared_specific.TABLES["text"] is pipeline.TEXT_TABLE


def facts(**changes) -> dict:
    """Facts of :func:`shared_specific.shared_specific_results` for three languages, two views and controls."""
    f = {"languages": 3, "units": 128, "passages": 4, "resamples": 50, "permutations": 99,
         "shared": 5, "shared_low": 4.0, "shared_high": 7.0, "robust_shared": 3, "null_shared": 4.2,
         "controls": ["shuffled", "random"], "shared_hf_random": 2, "shared_hf_shuffled": 1,
         "multilingual": 3, "multilingual_low": 2.0, "multilingual_high": 4.0, "multilingual_every_view": True,
         "specific": 9, "specific_low": 6.0, "specific_high": 12.0, "null_specific": 2.5, "null_specific_low": 1.0,
         "null_specific_high": 4.0, "p_specific_null": 0.01, "p_specific_null_holm": 0.03,
         "specific_beyond_null_every_view": True, "robust_specific": 2, "languages_with_robust": 1,
         "languages_with_naive": 3, "top_specific": [("Chinese", 2, 6, "Hans"), ("English", 0, 2, "Latn")],
         "robust_specific_every_view": False, "min_spearman": 0.5, "alone_languages": 1, "alone_mean": 2.0,
         "others_mean": 0.0, "rho_script": 0.87, "p_script": 0.3, "p_script_holm": 0.6, "script_every_view": False,
         "lape_selected": 2, "lape_top_rate": 0.01, "lape_hf_median": 3.0, "lape_hf_q1": 2.0, "lape_hf_q3": 3.0,
         "lape_hf_median_range": [2.0, 3.0], "lape_assigned_median": 1.0, "lape_hf_in_one": 0, "lape_overlap": 1,
         "lape_expected": 0.03, "p_lape": 0.03, "p_lape_holm": 0.06, "lape_same_language": 1, "match_share": 0.6,
         "survival": {("shared", "robust"): 1, ("specific", "robust"): 0, ("shared", "naive"): 2,
                      ("specific", "naive"): 1},
         "survival_seeds": {("shared", "robust"): 2, ("specific", "robust"): 1},
         "neuron_owner_median": 0.2, "neuron_bar": 0.4, "neuron_owner_top": 2, "survivors_shared": 1,
         "survivors_specific": 0}
    f.update(changes)
    return f


def test_findings_text():
    text = shared_specific.findings_text(facts())
    assert text.startswith("\n- **Shared experts.** 5 [4, 7] of 128 experts\n") and text.endswith("rely on.\n")
    assert "Every partition seed and the neuron view keep some." in text
    assert "Most: Chinese: 2 of 6 beyond noise; English: 0 of 2 beyond noise." in text
    assert "The 1 language alone with its script in this\n  selection has 2.00" in text
    assert "(Holm-adjusted 0.06); 1 of these for the same language." in text
    assert "not specific to it at the neuron bar" in text and "Only the survivors are named" in text
    bare = shared_specific.findings_text(facts(controls=[], alone_languages=2, lape_overlap=0, survivors_shared=0,
                                               lape_hf_median=1.0))
    assert "No control input was profiled." in bare and "The 2 languages alone with their script" in bare
    assert "(Holm-adjusted 0.06).\n" in bare and "largely agree" in bare and "none is named" in bare
    always_on = shared_specific.findings_text(facts(multilingual=0))
    assert "always-on, not multilingual." in always_on
