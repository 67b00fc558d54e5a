"""Every chapter executes under papermill with the small `smoke` profile, once, and writes its result
tables and generated findings; chapter-specific checks read the same executed copy."""

import json
import re

import pandas as pd
import pytest

from babel_lib.book import runner as book
from babel_lib.core.claims import VERDICTS

pytestmark = [pytest.mark.notebook, pytest.mark.real_model]

#: Result tables a chapter must write (results/<chapter>/<name>.csv), beyond "at least one"; every
#: chapter also writes its verdicts (verdicts.csv).
TABLES = {
    "01_moefication": ["mass_captured", "partition_quality", "moe_view_agreement"],
    "02_heatmaps": ["text", "frequency_heatmaps", "departure_by_language", "departure_and_concentration_by_layer",
                    "robustness"],
    "03_high_frequency": ["text", "high_frequency_by_language", "high_frequency_by_layer", "high_frequency_by_third",
                          "high_frequency_by_language_and_layer", "tests", "robustness"],
    "04_shared_specific": ["text", "sharing_histogram", "shared_specific_by_layer", "specific_by_language", "controls",
                           "lape_high_frequency_languages", "survival", "tests", "robustness"],
    "05_families": ["selection", "text", "distance_matrix", "dendrogram", "dendrogram_segments", "pair_classes",
                    "distance_by_clades", "family_tests", "family_by_layer", "robustness"],
    "06_model_families": ["text", "statistics_by_depth", "depth_agreement", "distances_two_models", "tests",
                          "holds_in", "tokens_per_character", "robustness"],
    "07_instruction_tuning": ["training_curve", "text", "heldout_loss_by_task", "answer_rates_by_task", "tests", "placebos",
                              "expert_retention", "robustness"],
    "08_pruning": ["calibration_text", "evaluation_text", "ratio_to_dense", "random_band", "target_vs_agnostic",
                   "tests_over_languages", "cross_language_matrix", "calibration_check"],
    "09_layerwise_pruning": ["evaluation_text", "layer_rates", "rule_vs_uniform", "tests_over_languages"],
    "10_sparse_activation": ["selectors_by_language", "router_recall", "speed", "quality_vs_speed",
                             "tests_over_languages"],
    "11_language_or_text": ["text", "by_language", "distance_ladder", "cross_corpus_distances", "pair_distances",
                            "high_frequency_by_layer", "high_frequency_by_language", "summary", "variance", "tests",
                            "robustness"],
    "12_language_experts": ["calibration_text", "experts_and_controls", "ablation_matrix", "selectivity",
                            "selectivity_by_language", "language_change", "continuations", "steering",
                            "routing_competence", "tests"],
    "13_robustness_map": ["cells", "robustness_chart", "robustness_grid", "robustness_map"],
}


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    """run(chapter) -> (executed notebook, its results folder); each chapter runs once a session."""
    out = tmp_path_factory.mktemp("book")
    done = {}

    def run(chapter):
        if chapter not in done:
            done[chapter] = book.run_chapter(chapter, "smoke", output_dir=out, progress_bar=False)
        return done[chapter], out / "results" / chapter
    return run


def table(results, name) -> pd.DataFrame:
    return pd.read_csv(results / f"{name}.csv")


@pytest.mark.parametrize("chapter", [p.stem for p in book.chapters()])
def test_chapter_runs_with_smoke_profile(chapter, smoke_book):
    executed, results = smoke_book(chapter)
    nb = json.loads(executed.read_text(encoding="utf-8"))
    assert nb["metadata"]["babel"]["profile"] == "smoke"
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert list(results.glob("*.csv"))  # its tables were written
    missing = [name for name in TABLES.get(chapter, []) + ["verdicts"] if not (results / f"{name}.csv").exists()]
    assert not missing, f"{chapter} did not write {missing}"
    empty = [name for name in TABLES.get(chapter, []) if table(results, name).empty]
    assert not empty, f"{chapter} wrote empty tables {empty}"
    verdicts = table(results, "verdicts")
    assert len(verdicts) and set(verdicts.verdict) <= set(VERDICTS), verdicts.verdict.tolist()
    findings = book.markdown_outputs(executed)
    assert not re.search(r"\{[a-z_]+[^}]*\}", findings), "unformatted placeholder in the generated prose"
    assert not re.search(r"\bnan\b", findings, re.IGNORECASE), "NaN in the generated prose"


def test_family_chapter_reports_its_statistics(smoke_book):
    executed, results = smoke_book("05_families")
    tests = table(results, "family_tests")
    assert {"p_value", "p_holm"} <= set(tests.columns) and len(tests) >= 5
    # three smoke languages hold no same-family pair: the chapter says so rather than inventing a result
    assert "not testable" in book.markdown_outputs(executed).lower()


def test_tuning_chapter_tunes_and_measures(smoke_book):
    executed, results = smoke_book("07_instruction_tuning")
    assert table(results, "training_curve")["step"].max() <= 8  # the smoke run tunes only a few steps
    assert set(table(results, "heldout_loss_by_task")["model"]) == {"base", "tuned"}
    assert "Held-out loss" in book.markdown_outputs(executed)


def test_pruning_tables_are_consistent(smoke_book):
    executed, results = smoke_book("08_pruning")
    ratios = table(results, "ratio_to_dense")
    langs = book.PROFILES["smoke"]["languages"]
    assert set(ratios.language) == set(langs)
    dense = ratios[ratios.method == "dense"]
    assert len(dense) == len(langs) and (dense.ratio == 1).all()
    # every condition of a language was evaluated on the same tokens
    assert ratios.groupby("language")["tokens"].nunique().eq(1).all()
    assert set(ratios.method) == {"dense", "language", "multilingual", "magnitude", "wanda"}
    band = table(results, "random_band")  # random pruning: the seeds' band on a prefix, through the median seed
    assert (band.seeds == len(book.PROFILES["smoke"]["random_seeds"])).all()
    assert ((band.lowest <= band["median"]) & (band["median"] <= band.highest)).all()
    pruned = ratios[ratios.method != "dense"]
    assert ((pruned.low <= pruned.ratio) & (pruned.ratio <= pruned.high)).all()
    matrix = table(results, "cross_language_matrix")
    assert len(matrix) == len(book.PROFILES["smoke"]["matrix_languages"]) ** 2
    assert (matrix[matrix.own].ratio_own == 1).all()
    text = book.markdown_outputs(executed)
    assert "**Protocol.** Perplexity of" in text and "windows of at most" in text  # the protocol is stated


def test_layerwise_rules_keep_the_budget(smoke_book):
    _, results = smoke_book("09_layerwise_pruning")
    rates = table(results, "layer_rates")
    assert rates.layer_rate.between(0, 1).all()
    # every rule drops the same share of experts as the uniform plan at the same rate
    sparsity = rates.groupby(["rate", "rule"]).measured_sparsity.first().unstack()
    assert sparsity.sub(sparsity["uniform"], axis=0).abs().max().max() < 1e-9
    assert set(table(results, "rule_vs_uniform").rule) == {"layerwise", "entropy", "owl", "crosslingual"}


def test_sparse_activation_reports_recall_and_speed(smoke_book):
    _, results = smoke_book("10_sparse_activation")
    assert table(results, "router_recall").recall.between(0, 1).all()
    assert (table(results, "speed").ffn_speedup > 0).all()
