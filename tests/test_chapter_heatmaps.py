"""Chapter 2's notebook pieces (babel_lib.chapters.heatmaps): the charts render on small synthetic tables and
the findings read the facts."""

import numpy as np
import pandas as pd
import pytest

from babel_lib.chapters import heatmaps

NAMES = ["English", "French", "Mandarin Chinese (Simplified)"]
L = 6


@pytest.fixture
def maps():
    """heatmap_frame-like rows: 3 languages, 6 layers, 8 experts."""
    rng = np.random.default_rng(0)
    E = 8
    freq = rng.uniform(0, 0.5, (len(NAMES), L, E))
    return pd.DataFrame({"name": np.repeat(NAMES, L * E), "layer": np.tile(np.repeat(np.arange(L), E), len(NAMES)),
                         "rank": np.tile(np.arange(E), len(NAMES) * L), "frequency": freq.reshape(-1),
                         "difference": (freq - freq.mean(0)).reshape(-1)})


@pytest.fixture
def by_layer():
    departure = np.linspace(0.03, 0.08, L)
    concentration = np.linspace(0.3, 0.45, L)
    return pd.DataFrame({"layer": np.arange(L), "departure": departure, "departure_low": departure - 0.005,
                         "departure_high": departure + 0.005, "concentration": concentration,
                         "concentration_low": concentration - 0.01, "concentration_high": concentration + 0.01,
                         "uniform_share": 0.094})


def test_map_charts_render(maps, plots_env):
    plots_env.show(heatmaps.frequency_heatmaps_chart(maps), "frequency_heatmaps", image=True)
    plots_env.show(heatmaps.difference_heatmaps_chart(maps), "difference_heatmaps", image=True)


def test_departure_chart_renders(plots_env):
    by_language = pd.DataFrame({"name": NAMES, "departure": [0.047, 0.045, 0.044], "low": [0.046, 0.044, 0.043],
                                "high": [0.048, 0.046, 0.057], "floor": [0.028, 0.026, 0.035]})
    plots_env.show(heatmaps.departure_chart(by_language), "departure_by_language")


def test_departure_and_concentration_chart_renders(by_layer, plots_env):
    plots_env.show(heatmaps.departure_and_concentration_chart(by_layer), "departure_and_concentration_by_layer")


FACTS = {"top_fraction": 0.1, "concentration": 0.391, "concentration_low": 0.39, "concentration_high": 0.392,
         "uniform_share": 0.0938, "robust_concentration": True, "beyond_noise": 2, "languages": 3,
         "median_ratio": 1.6, "most_departing": "English", "top_departure": [0.0441, 0.043, 0.057],
         "least_departing": "French", "bottom_departure": [0.0449, 0.044, 0.046], "top_separated": False,
         "robust_most_departing": True, "min_spearman": -0.5, "largest_third": "late",
         "largest_third_separated": True, "robust_largest_third": False, "passages": 4, "resamples": 1000}
BY_THIRD = pd.DataFrame({"third": ["early", "middle", "late"], "departure": [0.03, 0.04, 0.06],
                         "low": [0.02, 0.035, 0.05], "high": [0.04, 0.045, 0.07]})


def test_findings_text_reads_the_facts():
    text = heatmaps.findings_text(FACTS, BY_THIRD)
    assert "experts carry 0.391 [0.390, 0.392] of a layer's" in text and "(in every view)" in text
    assert "The most departing is English (0.0441 [0.0430, 0.0570]), the least\n  French" in text
    assert "The first place is not clear of the second: the ranking at the top is weak evidence." in text
    assert "late 0.0600 [0.0500, 0.0700]:\n  the late third differs most beyond noise; this does not hold" in text
    assert "4 passages of one formal text, 1,000 bootstrap resamples" in text
    flipped = heatmaps.findings_text({**FACTS, "top_separated": True, "robust_most_departing": False}, BY_THIRD)
    assert "clear of the second beyond noise, but another view puts another language first." in flipped
