"""Chapter 12's tables, charts and prose (babel_lib.chapters.language_experts): the charts render from small
synthetic tables within the book's column, the table helpers keep what the tables show, and the findings prose
follows the facts."""

import itertools

import pandas as pd

from babel_lib.chapters import language_experts as lx
from babel_lib.data.corpus import language_labels

LANGS = ["eng", "fra", "cmn_hans"]
LABELS = language_labels(LANGS)


def test_ablation_chart_renders_with_faint_cells_inside_the_noise(plots_env):
    matrix = pd.DataFrame([{"switched_off": a, "evaluated_on": b, "damage": 0.05 if a == b else 0.001,
                            "low": 0.02 if a == b else -0.01, "high": 0.08 if a == b else 0.01,
                            "bits_per_char_dense": 1.2, "bits_per_char_off": 1.25}
                           for a, b in itertools.product(LANGS, LANGS)])
    chart = lx.ablation_chart(matrix, LABELS)
    assert chart.data.beyond.sum() == 3 and set(chart.data.on_name) == set(LABELS.values())
    plots_env.show(chart, "ablation_matrix")


def test_selectivity_chart_renders(plots_env):
    sel = pd.DataFrame([{"language": l, "selectivity": 0.03, "selectivity_low": 0.01, "selectivity_high": 0.05,
                         "others": 0.01, "target": 0.04, "target_low": 0.02, "target_high": 0.06, "control": 0.01,
                         "control_low": 0.0, "control_high": 0.02} for l in LANGS])
    plots_env.show(lx.selectivity_chart(sel, LABELS), "selectivity")


def test_share_charts_render(plots_env):
    summary = pd.DataFrame([{"language": l, "condition": c, "prompts": 2, "changed": 0.5, "low": 0.0, "high": 1.0}
                            for l, c in itertools.product(LANGS, ["dense", "own experts off", "control off"])])
    plots_env.show(lx.language_change_chart(summary, LABELS), "language_change")
    steering = pd.DataFrame([{"target": t, "method": m, "in_target": 0.5, "low": 0.0, "high": 1.0, "chrf_target": 20.0,
                              "chrf_source": 30.0} for t, m in itertools.product(["fra", "cmn_hans"],
                                                                                 ["none", "experts", "diffmean"])])
    chart = lx.steering_chart(steering, LABELS)
    assert set(chart.data.method_name) == set(lx.STEERING_NAMES.values())
    plots_env.show(chart, "steering")


def test_routing_competence_chart_names_the_ends(plots_env):
    keys = ["eng", "fra", "deu", "spa", "hin", "arb", "rus", "cmn_hans", "jpn"]
    scripts = ["Latn"] * 4 + ["Deva", "Arab", "Cyrl", "Hans", "Jpan"]
    table = pd.DataFrame({"language": keys, "name": keys, "script": scripts, "family": "x",
                          "distance_reference": [0.1 * i for i in range(9)], "distance_mean": 0.3,
                          "bits_per_char": [1.0 + 0.1 * i for i in range(9)], "tokens_per_char": 0.3})
    chart = lx.routing_competence_chart(table)
    assert "eng" not in set(chart.layer[0].data.language) and list(chart.layer[1].data.name) == [
        "fra", "deu", "spa", "rus", "cmn_hans", "jpn"]
    plots_env.show(chart, "routing_competence")


def test_table_helpers_keep_what_the_tables_show():
    continuations = pd.DataFrame([{"language": l, "kind": k, "condition": k, "continuation": f"{l} {k} {i}",
                                   "identified": l} for l, k, i in
                                  itertools.product(LANGS, ["dense", "own off", "control off"], range(2))])
    first = lx.first_continuations(continuations, LABELS)
    assert len(first) == 6 and "control off" not in set(first.kind) and set(first.continuation.str[-1]) == {"0"}
    assert set(lx.TABLES["continuations"]["columns"]) <= set(first.columns)

    class Passages:
        text = {l: [f"{l} {i}" for i in range(5)] for l in LANGS}

    assert lx.first_passages(Passages(), LANGS[:2], 2) == {"eng": ["eng 0", "eng 1"], "fra": ["fra 0", "fra 1"]}
    assert list(lx.named(pd.DataFrame({"language": LANGS}), LABELS).name) == list(LABELS.values())


def _facts(**changes) -> dict:
    f = {"languages": 3, "m": 4, "layers": 18, "experts": 64, "robust_total": 2, "languages_with_robust": 1,
         "max_target_language": "fra", "max_target": 0.0512, "harmful_languages": 2, "selective_languages": 1,
         "n_controls": 2, "beyond_control_languages": 1, "gen_own": 0.5, "gen_prompts": 2, "gen_tokens": 6,
         "gen_control": 0.25, "gen_dense": 0.0, "gen_languages_beyond": 0, "steer_scale": 4.0,
         "steer_experts": 0.5, "steer_targets": 2, "steer_none": 0.0, "steer_layer": 9, "steer_match": 1.0,
         "steer_diffmean": 0.25, "steer_chrf_experts": 20.0, "steer_chrf_diffmean": 15.0, "steer_chrf_none": 10.0,
         "steer_chrf_source_experts": 30.0, "steer_chrf_source_diffmean": 35.0, "steer_chrf_source_none": 40.0,
         "wide_correlated": 8, "wide_passages": 3, "rho_tpc": 0.5, "closest": ["French", "German"],
         "farthest": ["Hindi"], "worst_bpc": ["Japanese"], "n_tests": 9}
    for key, bounds, value in (("mean_target", "mean_target", 0.03), ("selectivity_mean", "selectivity", 0.02),
                               ("mean_control", "mean_control", 0.01), ("excess_mean", "excess", 0.02),
                               ("own_vs_other_sets_mean", "own_vs_other_sets", 0.01),
                               ("gen_difference", "gen_difference", 0.25),
                               ("experts_vs_diffmean_diff", "experts_vs_diffmean", 0.25),
                               ("rho_reference", "rho_reference", 0.4), ("partial_reference", "partial_reference", 0.3),
                               ("rho_mean", "rho_mean", 0.2), ("partial_mean", "partial_mean", 0.1)):
        f |= {key: value, f"{bounds}_low": value / 2, f"{bounds}_high": value * 2}
    for name in ("selectivity", "excess", "own_vs_other_sets", "gen", "experts_vs_diffmean", "rho_reference",
                 "partial_reference", "partial_mean"):
        f |= {f"p_{name}": 0.01, f"p_{name}_holm": 0.04}
    return f | changes


def test_findings_text_follows_the_facts():
    text = lx.findings_text(_facts(), LABELS, 48)
    assert text.startswith("\n- **Switching a language's experts off.** Each of the 3 languages loses its 4 most "
                           "specific\n  experts (4 of 1,152); 2 of these 12 experts pass")
    assert "(largest:\n  French, 5.12%)" in text and "a causal sense of language-specific." in text
    assert "25% with matched controls off and 0% for the dense model" in text
    assert "scaling language M's experts by 4 puts 50%\n  of the outputs" in text
    assert "against the English reference 30.0,\n  35.0 and 40.0." in text
    assert "Over 8 languages (3 calibration passages)" in text and "Tokens per character alone: Spearman +0.50." in text
    assert "Divergence from English routing predicts where the model is weak" in text
    assert "text of at least 48 tokens a language, 2 prompts, 6 new tokens)" in text and "{" not in text
    weak = lx.findings_text(_facts(p_selectivity_holm=0.2, p_gen_holm=0.2, p_partial_reference_holm=0.2), LABELS, 48)
    assert "The causal evidence is weak" in weak and "With so few prompts this is weak evidence either way." in weak
    assert "routing distance mostly restates how a language is tokenised and written." in weak
