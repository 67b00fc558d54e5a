"""Chapter 3's notebook pieces (babel_lib.chapters.high_frequency): the charts render on small synthetic tables,
the bar's sentence and the findings read the profile and the facts."""

import numpy as np
import pandas as pd
import pytest

from babel_lib.chapters import high_frequency
from babel_lib.experts.profile import Profile

L = 6
LANGUAGES = pd.DataFrame({"name": ["English", "Russian", "Arabic", "Japanese"],
                          "script": ["Latn", "Cyrl", "Arab", "Jpan"],
                          "tokens_per_character": [0.22, 0.3, 0.35, 0.9], "high_total": [14.0, 12.0, 11.0, 10.0],
                          "low": [12.0, 10.0, 9.0, 8.0], "high": [16.0, 14.0, 13.0, 12.0]})


@pytest.fixture
def by_layer():
    mean = np.linspace(1.0, 3.0, L)
    entropy = np.linspace(0.9, 0.7, L)
    return pd.DataFrame({"layer": np.arange(L), "third": ["early"] * 2 + ["middle"] * 2 + ["late"] * 2,
                         "mean_high": mean, "low": mean - 0.5, "high": mean + 0.5, "uniform_mean": 2.0,
                         "entropy": entropy, "entropy_low": entropy - 0.01, "entropy_high": entropy + 0.01,
                         "entropy_floor": 0.6})


def test_by_layer_charts_render(by_layer, plots_env):
    plots_env.show(high_frequency.by_layer_chart(by_layer), "high_frequency_by_layer")
    plots_env.show(high_frequency.entropy_chart(by_layer), "entropy_by_layer")


def test_language_layer_chart_renders_in_the_languages_order(plots_env):
    cells = pd.DataFrame({"name": np.repeat(LANGUAGES["name"], L), "layer": np.tile(np.arange(L), len(LANGUAGES)),
                          "high_frequency": np.arange(L * len(LANGUAGES)) % 4})
    cells = cells.assign(low=cells.high_frequency - 1, high=cells.high_frequency + 1)
    chart = high_frequency.language_layer_chart(cells, LANGUAGES)
    assert chart.to_dict()["encoding"]["y"]["sort"] == LANGUAGES["name"].tolist()
    plots_env.show(chart, "high_frequency_by_language_and_layer", image=True)


def test_by_third_chart_renders(plots_env):
    thirds = pd.DataFrame({"third": ["early", "middle", "late"], "share": [0.3, 0.3, 0.4], "low": [0.28, 0.27, 0.37],
                           "high": [0.32, 0.33, 0.43], "uniform": [1 / 3] * 3})
    plots_env.show(high_frequency.by_third_chart(thirds), "high_frequency_by_third")


def test_tokenisation_chart_groups_scripts(plots_env):
    chart = high_frequency.tokenisation_chart(LANGUAGES)
    groups = chart.to_dict()["datasets"]
    assert {r["script_group"] for rows in groups.values() for r in rows} == {"Latin", "Cyrillic", "Arabic",
                                                                            "other scripts"}
    plots_env.show(chart, "high_frequency_vs_tokenisation")


def test_threshold_text_works_out_the_bar():
    P, E = 2, 8
    profile = Profile(["eng", "fra"], ["p0", "p1"], np.ones((2, P, L, E), dtype=np.int32), np.full((2, P), 10),
                      np.full((2, P), 100), "m", "fp", "key", 4, "test",
                      {"top_k_fraction": 0.25, "activation": "topk", "score": "abs", "threshold": None},
                      {"split": "calibration"}, "float32")
    assert high_frequency.threshold_text(profile, 2.0) == (
        "Here: 2 languages on 2 passages, 6 layers of 8 experts, k = 2 experts activated per token: an expert is "
        "high-frequency for a language when its frequency is at least 2 x 2/8 = 0.500.")


FACTS = {"threshold": 0.4, "mean_high": 170.3, "mean_high_low": 160.1, "mean_high_high": 180.0, "units": 1152,
         "min_high": 120, "min_language": "French", "max_high": 200, "max_language": "English", "peak_layer": 14,
         "peak_mean": [12.7, 12.0, 13.1], "largest_third": "late", "largest_share": [0.36, 0.34, 0.38],
         "smallest_third": "middle", "smallest_share": [0.3, 0.28, 0.32], "uniform_share": 0.333,
         "depth_departs": True, "depth_max_departure": 0.03, "p_depth": 0.0004, "p_depth_holm": 0.0008,
         "largest_separated": False, "languages_departing": 1, "languages": 3, "languages_largest_same": 2,
         "robust_depth": False, "robust_largest_third": True, "entropy_floor": 0.617, "entropy_range": [0.72, 0.9],
         "entropy_thirds": {"early": [0.87, 0.86, 0.88], "middle": [0.88, 0.87, 0.89], "late": [0.8, 0.79, 0.81]},
         "lowest_entropy_layer": 17, "lowest_entropy": [0.72, 0.71, 0.73], "robust_entropy_third": True,
         "rho": 0.5, "rho_low": -1.0, "rho_high": 1.0, "p_rho": 0.5, "p_rho_holm": 0.5, "permutations": 99,
         "robust_rho": False, "rho_range": [-0.5, 1.0], "passages": 4, "resamples": 50}


def test_findings_text_reads_the_facts():
    text = high_frequency.findings_text(FACTS)
    assert "a language has\n  170.3 [160.1, 180.0] high-frequency experts of\n  1,152 on average" in text
    assert ("the spread departs from even beyond sampling noise, though the departure is small (at most 3.0 points "
            "of share),\n  p < 0.001") in text
    assert "; the largest third is not clear of the second beyond noise." in text
    assert "The largest third is the same in every view, but the departure is not beyond noise" in text
    assert "over the layers): early 0.8700 [0.8600, 0.8800], middle 0.8800 [0.8700, 0.8900],\n  late 0.8000" in text
    assert "not a relation that holds beyond chance in every view\n  (range over views -0.50 to +1.00)" in text
    even = high_frequency.findings_text({**FACTS, "depth_departs": False, "robust_depth": True})
    assert "no departure from an even spread beyond sampling noise (weak evidence),\n" in even
    assert "The uneven spread and its largest third hold under every partition seed" in even
