"""Chapter 5's charts, tables and findings (babel_lib.chapters.families) on small synthetic inputs."""

import pandas as pd

from babel_lib.chapters import families

NAMES = ["English", "German", "French", "Russian"]


def _leaves():
    return pd.DataFrame({"name": NAMES, "family": ["Indo-European"] * 3 + ["Uralic"],
                         "script": ["Latn", "Latn", "Latn", "Cyrl"],
                         "colour": ["Indo-European"] * 3 + [families.OTHER_FAMILIES], "y": range(4)})


def test_distance_matrix_chart_renders(plots_env):
    matrix = pd.DataFrame([{"name_a": a, "name_b": b, "distance": 0.01 if a == b else 0.1 + 0.01 * (i + j)}
                           for i, a in enumerate(NAMES) for j, b in enumerate(NAMES)])
    chart = families.distance_matrix_chart(matrix, _leaves())
    assert chart.to_dict()["encoding"]["y"]["sort"] == NAMES
    plots_env.show(chart, "distance_matrix", image=True)


def test_dendrogram_chart_renders(plots_env):
    segments = pd.DataFrame({"x": [0.0, 0.0, 0.05, 0.0, 0.08], "x2": [0.05, 0.05, 0.08, 0.08, 0.12],
                             "y": [0.0, 1.0, 0.5, 2.0, 1.25], "y2": [0.0, 1.0, 0.5, 2.0, 1.25]})
    chart = families.dendrogram_chart(segments, _leaves(), ["Indo-European"], 0.02)
    scale = chart.to_dict()["layer"][1]["encoding"]["color"]["scale"]
    assert scale == {"domain": ["Indo-European", families.OTHER_FAMILIES], "range": ["#4c78a8", "#9e9e9e"]}
    plots_env.show(chart, "dendrogram", image=True)


def test_distance_by_clades_chart_renders(plots_env):
    clades = pd.DataFrame({"shared_clades": ["0", "1", "2", "0", "1"],
                           "script": ["same script"] * 3 + ["different scripts"] * 2, "pairs": [10, 4, 2, 12, 3],
                           "mean_distance": [0.12, 0.09, 0.05, 0.14, 0.1], "low": [0.11, 0.08, 0.04, 0.13, 0.09],
                           "high": [0.13, 0.1, 0.06, 0.15, 0.11]})
    plots_env.show(families.distance_by_clades_chart(clades, 0.02), "distance_by_clades")


def test_two_scripts_chart_renders(plots_env):
    twins = pd.DataFrame({"name": ["Serbian (Cyrillic)", "Serbian (Cyrillic)", "Serbian (Latin)", "Serbian (Latin)"],
                          "comparison": ["same language, other script", "nearest language, same script"] * 2,
                          "partner": ["Serbian (Latin)", "Russian", "Serbian (Cyrillic)", "Croatian"],
                          "distance": [0.08, 0.06, 0.08, 0.03], "low": [0.07, 0.05, 0.07, 0.02],
                          "high": [0.09, 0.07, 0.09, 0.04], "floor": [0.01, 0.01, 0.012, 0.012]})
    plots_env.show(families.two_scripts_chart(twins), "two_scripts")


def _layers():
    return pd.DataFrame({"layer": range(3), "auc": [0.55, 0.6, 0.58], "auc_low": [0.5, 0.55, 0.52],
                         "auc_high": [0.6, 0.65, 0.63], "auc_q": [0.2, 0.01, 0.04], "tree_r": [0.05, 0.1, 0.02],
                         "tree_low": [0.0, 0.05, -0.03], "tree_high": [0.1, 0.15, 0.07], "tree_q": [0.3, 0.02, 0.5]})


def test_family_by_layer_chart_renders(plots_env):
    chart = families.family_by_layer_chart(_layers())
    auc, tree = chart.to_dict()["vconcat"]
    assert auc["title"] == "Family effect within script strata" and tree["layer"][1]["mark"]["color"] == "#54a24b"
    plots_env.show(chart, "family_by_layer")


def test_show_family_by_layer_only_where_layers_were_tested(plots_env):
    families.show_family_by_layer(None, "family_by_layer")
    assert not (plots_env.results_dir() / "family_by_layer.vl.json").exists()
    families.show_family_by_layer(_layers(), "family_by_layer")
    assert (plots_env.results_dir() / "family_by_layer.vl.json").exists()
    assert (plots_env.results_dir() / "family_by_layer.csv").exists()


def test_tables_name_existing_options():
    assert set(families.TABLES) == {"selection", "text", "pair_classes", "family_tests", "robustness", "sister_trios",
                                    "sister_test"}
    assert all(set(t) <= {"columns", "formats", "caption"} for t in families.TABLES.values())


def facts(**changes) -> dict:
    """Facts of :func:`families.family_results` for a testable language set."""
    tri = [0.5, 0.4, 0.6]
    f = {"testable": True, "languages": 20, "family_languages": 19, "families": 6, "families_3plus": 3,
         "scripts": 4, "same_family_pairs": 30, "pairs": 171, "same_family_share": 30 / 171,
         "same_family_same_script": 20, "same_family_different_scripts": 10, "mean_distance": 0.1, "floor": 0.01,
         "inflation": 0.002, "auc": [0.7, 0.62, 0.78], "auc_null": 0.49, "auc_p": 0.001, "auc_p_holm": 0.008,
         "auc_same_script": [0.66, 0.6, 0.72], "auc_same_script_p": 0.01, "auc_same_script_p_holm": 0.04,
         "auc_different_scripts": [0.8, 0.7, 0.9], "auc_different_scripts_p": 0.001,
         "auc_different_scripts_p_holm": 0.008, "auc_holds": True, "auc_same_script_holds": False,
         "classes": {k: [0.05, 0.04, 0.06] for k in families.PAIR_CLASSES},
         "mantel_tree": tri, "mantel_tree_p": 0.001, "mantel_tree_p_holm": 0.008, "partial_tree": [0.3, 0.2, 0.4],
         "partial_tree_p": 0.001, "partial_tree_p_holm": 0.008, "partial_tree_edges": tri,
         "partial_script": [0.4, 0.3, 0.5], "partial_script_p": 0.001, "partial_script_p_holm": 0.008,
         "partial_granularity": [0.1, 0.0, 0.2], "partial_granularity_p": 0.2, "partial_granularity_p_holm": 0.4,
         "tree_vs_script": "script", "clade_gradient": [["0", 0.12, 0.11, 0.13, 50], ["3", 0.04, 0.03, 0.05, 6]],
         "clusters": [0.3, 0.2, 0.4], "clusters_p": 0.01, "clusters_p_holm": 0.01, "cophenetic": 0.8,
         "twins": 4, "twin_pairs": 2, "twins_closer": 2, "twins_closer_beyond_noise": 1,
         "twins_farther_beyond_noise": 1, "twins_farther_names": ["Serbian (Latin) (nearer Croatian)"],
         "twins_farther_same_group": 1, "twins_same_group_names": ["Serbian (Latin)"], "layers": 18,
         "layers_auc_significant": 5, "layers_tree_significant": 2, "views": 4, "auc_range": [0.65, 0.72],
         "tree_range": [0.2, 0.35], "script_range": [0.35, 0.45], "robust_auc": True, "robust_tree": False,
         "robust_script": True, "robust_granularity": False, "passages": 10,
         "interval_method": "crossed bootstrap over families and passages"}
    f.update(changes)
    return f


def test_findings_text():
    text = families.findings_text(facts())
    assert text.startswith("\n- **The languages.** 20 texts;") and text.endswith("same-family pairs.\n")
    assert "The effect is moderate." in text and "Among pairs written in one script alone" in text
    assert "farther beyond noise: Serbian (Latin) (nearer Croatian).\n  For Serbian (Latin) the nearer text" in text
    assert "The larger of the two partial effects is the script's." in text
    assert "the family effect within script strata, the script beyond the tree and tokenisation." in text
    weak = families.findings_text(facts(auc_holds=False, robust_auc=False, robust_script=False,
                                        twins_farther_names=[], twins_farther_same_group=0,
                                        twins_farther_beyond_noise=0))
    assert "weak evidence for a family effect" in weak and "none of the findings." in weak
    assert "are farther beyond noise.\n  \n" in weak


def test_findings_text_when_not_testable():
    text = families.findings_text({"testable": False, "family_languages": 3, "mean_distance": 0.05, "floor": 0.03})
    assert text == ("\n- **Not testable on this language set.** 3 languages (one text each) leave no same-family pair\n"
                    "  to compare with a cross-family pair in the same kind of script. Run the chapter on "
                    "`families:120` (the default).\n"
                    "- The mean distance between two languages is 0.0500, against a noise floor of 0.0300.\n")
