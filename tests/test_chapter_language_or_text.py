"""Chapter 11's charts, tables and findings (babel_lib.chapters.language_or_text) on small synthetic inputs."""

import pandas as pd

from babel_lib.chapters import language_or_text

NAMES = ["English", "French", "Russian"]


def test_distance_ladder_chart_sorts_by_self_distance(plots_env):
    rows = []
    for i, name in enumerate(NAMES):
        for j, measure in enumerate(language_or_text.LADDER_WORDS):
            d = 0.05 * (j + 1) + 0.01 * i
            known = measure != language_or_text.LADDER_WORDS[-1]
            rows.append({"name": name, "measure": measure, "distance": d, "low": d - 0.01 if known else None,
                         "high": d + 0.01 if known else None})
    by_language = pd.DataFrame({"name": NAMES, "self": [0.3, 0.1, 0.2]})
    chart = language_or_text.distance_ladder_chart(pd.DataFrame(rows), by_language)
    assert chart.to_dict()["layer"][1]["encoding"]["y"]["sort"] == ["French", "Russian", "English"]
    plots_env.show(chart, "distance_ladder")


def test_cross_corpus_chart_renders(plots_env):
    cross = pd.DataFrame([{"udhr_name": a, "bible_name": b, "distance": 0.1 if a == b else 0.3, "own": a == b,
                           "nearest_in_row": a == b} for a in NAMES for b in NAMES])
    plots_env.show(language_or_text.cross_corpus_chart(cross), "cross_corpus_distances")


def test_pair_distances_chart_renders(plots_env):
    pairs = pd.DataFrame({"pair": ["English-French", "English-Russian", "French-Russian"],
                          "udhr": [0.2, 0.3, 0.32], "bible": [0.22, 0.35, 0.3]})
    plots_env.show(language_or_text.pair_distances_chart(pairs), "pair_distances")


def test_high_frequency_by_layer_chart_renders(plots_env):
    parts = list(language_or_text.HF_PARTS.values())
    layers = pd.DataFrame([{"layer": layer, "part": part, "experts": 3.0 + layer, "low": 2.0, "high": 5.0 + layer}
                           for layer in range(3) for part in parts])
    chart = language_or_text.high_frequency_by_layer_chart(layers)
    assert chart.to_dict()["encoding"]["color"]["scale"]["domain"] == parts
    plots_env.show(chart, "high_frequency_by_layer")


def test_describe_studies():
    class Profile:
        def describe(self):
            return "2 chapters"

    class Study:
        profile = Profile()

        def describe(self):
            return "UDHR study"

    assert language_or_text.describe_studies(Study(), Study()) == "UDHR study\n\n**Bible profile** 2 chapters."


def test_tables_name_existing_options():
    assert set(language_or_text.TABLES) == {"text", "by_language", "high_frequency_by_language", "summary", "variance",
                                            "tests", "robustness"}
    assert language_or_text.TABLES["by_language"]["max_rows"] == 30


def facts(**changes) -> dict:
    """Facts of :func:`language_or_text.cross_domain_results` for three languages."""
    tri = [0.5, 0.4, 0.6]
    f = {"languages": 3, "ratio_below_one": True, "ratio": [0.6, 0.5, 0.7], "mean_self": [0.1, 0.09, 0.11],
         "mean_within": [0.17, 0.15, 0.19], "language_share": tri, "domain_share": [0.3, 0.2, 0.4],
         "interaction_share": [0.2, 0.1, 0.3], "self_above_floor": 3, "median_self_over_floor": 4.0,
         "min_self_over_floor": 2.5, "floor_bible": 0.03, "floor_udhr": 0.02, "bible_tokens": 9000,
         "udhr_tokens": 3000, "identified_both": 3, "identification": [1.0, 1.0, 1.0], "chance": 1 / 3,
         "p_identification": 0.01, "p_holm_identification": 0.03, "misidentified": [], "closer_count": 2,
         "closer": [0.67, 0.33, 1.0], "closer_udhr": tri, "closer_bible": tri,
         "not_closer": ["Russian (Ukrainian, UDHR)"], "rivals_same_branch": 1, "p_holm_mantel": 0.2,
         "mantel_r": [0.5, 0.1, 0.9], "p_mantel": 0.1, "jaccard_self": tri, "jaccard_within": tri,
         "jaccard_gap": [0.1, 0.0, 0.2], "jaccard_gap_positive": False, "p_high_frequency": 0.04,
         "p_holm_high_frequency": 0.08, "jaccard_above_others": 2, "hf_both": 30.0, "hf_udhr_only": 8.0,
         "hf_bible_only": 6.0, "one_only_third": "late", "one_only_third_share": 0.4, "views": 3,
         "robust_identification": [0.9, 1.0], "robust_closer": [0.6, 0.7], "robust_ratio": [0.55, 0.65],
         "robust_mantel": [0.3, 0.5], "robust": True, "matched_passages": 1, "matched_tokens": 3100,
         "matched_identification": 1.0, "matched_closer": 0.67, "matched_ratio": 0.7, "matched_mantel": 0.4,
         "udhr_passages": 10, "bible_passages": 8, "resamples": 50, "permutations": 99}
    f.update(changes)
    return f


def test_findings_text():
    text = language_or_text.findings_text(facts())
    assert text.startswith("\n- **On average the text moves a profile less than a change of\n")
    assert text.endswith("move the profiles, not every domain.\n")
    assert "**The text still moves every profile beyond noise.**" in text and "Every language is identified." in text
    assert "although it rests on more tokens" in text and "With the Bible cut to 1 chapter (a median 3,100" in text
    assert ": on one text, a close relative can be nearer" in text and "most common in the late third" in text
    assert "**Whether the two corpora agree on which languages are close is weak evidence:**" in text
    other = language_or_text.findings_text(facts(self_above_floor=0, misidentified=["Russian (x)"], not_closer=[],
                                                 one_only_third="", p_holm_mantel=0.01, robust=False,
                                                 matched_passages=2))
    assert "clearly beyond noise (weak evidence)" in other
    assert "Not identified in both directions: Russian (x)." in other
    assert "**The two corpora agree on which languages are close:**" in other and "does not hold in every view" in other
    assert "Bible only.\n" in other and "2 chapters (" in other
