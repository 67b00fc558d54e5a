"""Every chapter executes under papermill with the small `smoke` profile, once, and writes its result
tables and generated findings; chapter-specific checks read the same executed copy."""

import json
import re

import pandas as pd
import pytest

from babel_lib import book

pytestmark = [pytest.mark.notebook, pytest.mark.real_model]

#: Result tables a chapter must write (results/<chapter>/<name>.csv), beyond "at least one".
TABLES = {
    "03_high_frequency": ["high_frequency_counts", "high_frequency_by_layer", "high_frequency_maps",
                          "high_frequency_by_third", "entropy_by_layer", "high_frequency_vs_tokenisation"],
    "04_shared_specific": ["sharing_map", "sharing_histogram", "shared_specific_by_layer", "shared_by_subset_size",
                           "specific_by_language", "jaccard_all", "lape_by_layer", "lape_by_language"],
    "05_families": ["dendrogram", "dendrogram_segments", "family_tree", "family_tests", "family_tests_by_layer",
                    "distance_matrix", "distance_by_family_and_script", "script_family_pairs", "nearest_neighbours"],
    "06_model_families": ["model_summary", "statistics_by_depth", "depth_agreement", "model_pair_tests",
                          "chars_per_token"],
    "07_instruction_tuning": ["training_curve", "heldout_loss_by_task", "heldout_loss_by_language", "answer_rates",
                              "answer_rates_by_language", "similarity_by_layer", "similarity_by_language_and_layer",
                              "difference_heatmaps", "weight_change", "expert_retention"],
    "08_pruning": ["perplexity_vs_rate", "bits_per_char_vs_rate", "per_language_rate", "cross_language_matrix"],
    "09_layerwise_pruning": ["layer_rates", "layerwise_vs_uniform", "bits_per_char"],
    "10_sparse_activation": ["perplexity_vs_computed", "router_recall", "speed", "timings"],
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
    missing = [name for name in TABLES.get(chapter, []) if not (results / f"{name}.csv").exists()]
    assert not missing, f"{chapter} did not write {missing}"
    empty = [name for name in TABLES.get(chapter, []) if table(results, name).empty]
    assert not empty, f"{chapter} wrote empty tables {empty}"
    findings = book.markdown_outputs(executed)
    if "Strength of evidence" in findings or "**Evidence.**" in findings:
        assert not re.search(r"\{[a-z_]+[^}]*\}", findings), "unformatted placeholder in the generated prose"
        assert not re.search(r"\bnan\b", findings, re.IGNORECASE), "NaN in the generated prose"


def test_family_chapter_reports_its_statistics(smoke_book):
    _, results = smoke_book("05_families")
    tests = table(results, "family_tests").set_index("test")
    main = tests.loc["JS distance vs tree distance"]
    assert -1 <= main.statistic <= 1 and 0 < main.p_value <= 1
    # the smoke languages plus the script/family contrast languages (Hindi, Urdu, Arabic)
    assert main.n == len(book.PROFILES["smoke"]["languages"]) + 3
    pairs = table(results, "script_family_pairs")
    assert {("hin", "urd"), ("urd", "arb")} <= set(zip(pairs.a, pairs.b))


def test_tuning_chapter_tunes_and_measures(smoke_book):
    executed, results = smoke_book("07_instruction_tuning")
    assert table(results, "training_curve")["step"].max() <= 8  # the smoke run tunes only a few steps
    assert set(table(results, "heldout_loss_by_task")["model"]) == {"base", "tuned"}
    assert "Held-out loss" in book.markdown_outputs(executed)


def test_pruning_tables_are_consistent(smoke_book):
    executed, results = smoke_book("08_pruning")
    curves = table(results, "perplexity_vs_rate")
    langs = book.PROFILES["smoke"]["languages"]
    assert set(curves.language) == set(langs)
    dense = curves[curves.method == "dense"]
    assert len(dense) == len(langs) and (dense.ratio == 1).all()
    # every condition of a language was evaluated on the same tokens and characters
    assert curves.groupby("language")[["tokens", "characters"]].nunique().eq(1).all().all()
    assert set(curves.method) == {"dense", "target language", "multilingual", "random"}
    assert len(table(results, "cross_language_matrix")) == len(langs) ** 2
    text = book.markdown_outputs(executed)
    assert "**Protocol.** Perplexity of" in text and "windows of at most" in text  # the protocol is stated


def test_sparse_activation_reports_recall_and_speed(smoke_book):
    _, results = smoke_book("10_sparse_activation")
    assert table(results, "router_recall").recall.between(0, 1).all()
    assert (table(results, "speed").ffn_speedup > 0).all()
