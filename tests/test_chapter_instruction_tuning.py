"""Chapter 7's charts, tables and findings (babel_lib.chapters.instruction_tuning) on small synthetic inputs."""

import time

import numpy as np
import pandas as pd

from babel_lib.chapters import instruction_tuning

NAMES = ["English", "French", "Chinese"]


def _intervals(column: str, groups: dict, value: float = 0.5) -> pd.DataFrame:
    """One row per name and group: name, the group column, value, low, high."""
    return pd.DataFrame([{"name": n, column: g, "value": value * (1 + i), "low": value * (1 + i) * 0.8,
                          "high": value * (1 + i) * 1.2} for n in NAMES for i, g in enumerate(groups)])


def test_training_curve_chart_renders(plots_env):
    curve = pd.DataFrame({"step": [1, 2, 3], "loss": [3.2, 2.9, 2.5], "mean": [3.2, 3.05, 2.87]})
    chart = instruction_tuning.training_curve_chart(curve)
    assert set(chart.data["series"]) == {"each step", "mean of 10 steps"}
    plots_env.show(chart, "training_curve")


def test_heldout_loss_chart_renders(plots_env):
    by_task = _intervals("model", ["base", "tuned"], 2.0).rename(columns={"value": "loss"})
    by_task = by_task.assign(examples=10, tokens=300)
    chart = instruction_tuning.heldout_loss_chart(by_task)
    assert chart.to_dict()["layer"][1]["encoding"]["yOffset"]["field"] == "model"
    plots_env.show(chart, "heldout_loss_by_task")


def test_answer_rates_chart_renders(plots_env):
    rates = _intervals("model", ["base", "tuned"], 0.3).rename(columns={"value": "rate"})
    plots_env.show(instruction_tuning.answer_rates_chart(rates), "answer_rates")


def test_shift_chart_is_as_tall_as_its_languages(plots_env):
    long = _intervals("comparison", list(instruction_tuning.COMPARISONS.values()), 0.01)
    chart = instruction_tuning.shift_chart(long)
    assert chart.to_dict()["height"] == 30 * len(NAMES)
    plots_env.show(chart, "shift_by_language")


def test_distances_by_layer_chart_renders(plots_env):
    rows = [{"layer": layer, "comparison": c, "value": v * (layer + 1), "low": v * (layer + 1) * 0.8,
             "high": v * (layer + 1) * 1.2}
            for layer in range(4) for c, v in zip(instruction_tuning.COMPARISONS.values(), (0.01, 0.005, 0.05))]
    plots_env.show(instruction_tuning.distances_by_layer_chart(pd.DataFrame(rows)), "similarity_by_layer")


def test_difference_chart_renders(plots_env):
    rng = np.random.default_rng(0)
    diff = pd.DataFrame([{"name": n, "layer": layer, "rank": r, "difference": rng.normal(scale=0.01)}
                         for n in NAMES for layer in range(3) for r in range(8)])
    plots_env.show(instruction_tuning.difference_chart(diff), "difference_heatmaps", image=True)


def test_weight_change_chart_renders(plots_env):
    long = pd.DataFrame([{"layer": layer, "part": part, "relative_change": 0.001 * (layer + 1)}
                         for layer in range(3) for part in ("feed-forward (gate, up, down)", "rest of the block")])
    plots_env.show(instruction_tuning.weight_change_chart(long), "weight_change")


def test_heldout_loss_tables_split_the_languages_off():
    table = pd.DataFrame({"kind": ["all", "task", "task", "language", "language"], "name": list("abcde")})
    tables = instruction_tuning.heldout_loss_tables(table)
    assert tables["heldout_loss"]["name"].tolist() == ["a", "b", "c"]
    assert tables["heldout_loss_by_language"]["name"].tolist() == ["d", "e"]
    options = instruction_tuning.TABLES
    assert options["heldout_loss"]["columns"] == options["heldout_loss_by_language"]["columns"]
    assert set(instruction_tuning.CHECKS) <= set(options["answer_rates_by_task"]["columns"])


def facts():
    """Facts of shift_results, Pair.facts, heldout_loss, answer_checks, weight_change and placebo_results (only
    what the findings quote)."""
    tri = (0.0123, 0.0101, 0.0145)
    f = {"retention": {k: {"tuning": (0.8, 0.7, 0.9), "reference": (0.9, 0.85, 0.95), "below": True}
                       for k in instruction_tuning.RETENTION_KINDS},
         "thirds": {k: tri for k in ("early", "middle", "late")}, "half": 6, "mean_shift": tri, "languages": 9,
         "mean_resample": tri, "mean_language": tri, "ratio_resample": (2.1, 1.5, 3.0),
         "ratio_language": (0.3, 0.2, 0.4),
         "beyond_noise": 7, "p_resample": 0.002, "p_resample_holm": 0.004, "language_holds": True, "p_language": 0.01,
         "p_language_holm": 0.02, "most_moved": ("French", 0.02, 0.01, 0.03),
         "least_moved": ("English", 0.01, 0.005, 0.015), "common_share": (0.42, 0.3, 0.5), "top_layers": [3, 5, 7],
         "layers_moved": [3, 5], "layers_tested": 18, "largest_third": "late", "largest_third_separated": True,
         "robust_third": True, "threshold": 0.4, "views": 4, "view_ratio_range": (1.5, 2.5),
         "view_language_ratio_range": (0.2, 0.4), "view_p_max": 0.0039, "view_above_min": 7, "robust": True,
         "robust_retention": True, "min_spearman": 0.83, "exact": True, "min_p": 0.00195, "passages": 12,
         "resamples": 1000}
    pair = {"base": "gemma-3-270m", "tuned": "x/y", "steps": 50, "batch_size": 4, "tokens": 123456,
            "response_tokens": 23456, "trainable": 100e6, "total": 268e6, "minutes": 1.3, "first_loss": 3.21,
            "last_loss": 2.1, "made_here": True}
    loss = {"examples": 1234, "tokens": 23456, "units": 30, "base": (2.1, 2.0, 2.2), "tuned": (1.5, 1.4, 1.6),
            "difference": (-0.6, -0.7, -0.5), "ppl_base": 8.2, "ppl_tuned": 4.5, "lower_beyond_noise": True,
            "tasks_lower": 4, "tasks": 4, "languages_lower": 9, "languages": 9, "largest_drop": ("repeat", -1.2),
            "smallest_drop": ("continue", -0.1)}
    answers = {"prompts": 36, "ok_base": (0.1, 0.0, 0.2), "ok_tuned": (0.6, 0.5, 0.7), "ok_difference": (0.5, 0.4, 0.6),
               **{f"{k}_{m}": (0.33, 0.2, 0.4) for k in ("well_formed", "right_language", "stopped")
                  for m in ("base", "tuned")},
               "chrf_base": (12.3, 10.0, 14.0), "chrf_tuned": (30.1, 25.0, 35.0), "identifier_accuracy": 0.97}
    weights = {"ffn_mean": 0.0123, "attention_mean": 0.0045, "ffn_top_layer": 12, "spearman_ffn_shift": 0.35}
    placebo = {"placebos": ["plain text"], "languages": 9,
               "plain text": {"ratio": (3.2, 2.1, 4.5), "larger": 8, "p": 0.004, "p_holm": 0.008}}
    return f, pair, loss, answers, weights, placebo


def test_findings_text_quotes_every_part():
    text = instruction_tuning.findings_text(*facts(), "bible")
    bullets = [line.split("**")[1] for line in text.splitlines() if line.startswith("- **")]
    assert bullets == ["The pair.", "Against placebos.", "Held-out loss.", "Answers.", "How far the profiles move.",
                       "Which layers move.", "Experts kept.", "Weights.", "Robustness.", "Strength of evidence."]
    assert text.startswith("\n- **The pair.** gemma-3-270m was fine-tuned for 50 steps of 4 examples\n")
    assert text.endswith("correctness beyond chrF.\n")
    assert "3.20 [2.10, 4.50] times the shift of " + instruction_tuning.PLACEBOS["plain text"] in text
    assert "in 2 of 18\n  layers (3, 5)." in text and "Bible chapters: another domain" in text
    assert "well-formed 33% ->\n  33%" in text


def test_findings_text_for_a_published_pair_without_placebos():
    f, pair, loss, answers, weights, placebo = facts()
    pair = dict(pair, made_here=False)
    placebo = dict(placebo, placebos=[])
    f = dict(f, layers_moved=[], robust=False)
    text = instruction_tuning.findings_text(f, pair, loss, answers, weights, placebo, "udhr")
    assert "- **The pair.** The published pair gemma-3-270m / x/y.\n" in text
    assert "The tuning moved the profiles no placebo was run." in text
    assert "in 0 of 18\n  layers. By thirds" in text and "UDHR articles: the tuning text" in text
    assert "The pair was made here" not in text and "does not exceed sampling noise in every view" in text


def test_run_time_text():
    assert instruction_tuning.run_time_text(time.perf_counter() - 3.2) == "*This run: 3 s.*"
