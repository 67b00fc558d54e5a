"""The research chapters (03-06) execute with the smoke profile and write their result tables."""

import json

import pandas as pd
import pytest

from babel_lib import book

pytestmark = [pytest.mark.notebook, pytest.mark.real_model, pytest.mark.slow]

#: Result tables each chapter must write (results/<chapter>/<name>.csv).
TABLES = {
    "03_high_frequency": ["high_frequency_counts", "high_frequency_by_layer", "high_frequency_maps",
                          "high_frequency_by_third", "entropy_by_layer", "high_frequency_vs_tokenisation"],
    "04_shared_specific": ["sharing_map", "sharing_histogram", "shared_specific_by_layer", "shared_by_subset_size",
                           "specific_by_language", "jaccard_all", "lape_by_layer", "lape_by_language"],
    "05_families": ["dendrogram", "dendrogram_segments", "family_tree", "family_tests", "family_tests_by_layer",
                    "distance_matrix", "distance_by_family_and_script", "script_family_pairs", "nearest_neighbours"],
    "06_model_families": ["model_summary", "statistics_by_depth", "depth_agreement", "model_pair_tests",
                          "chars_per_token"],
}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("book")


def _slow_bf16() -> bool:
    """True where bf16 matrix products are far slower than fp32 (CPUs without AVX-512 BF16 or AMX,
    e.g. AVX2-only machines, where the smoke profile's bf16 would take many minutes a chapter)."""
    import time

    import torch

    a = torch.randn(256, 256)

    def best(x):
        times = []
        for _ in range(7):
            t = time.perf_counter()
            x @ x
            times.append(time.perf_counter() - t)
        return min(times)

    return best(a.bfloat16()) > 4 * best(a)


@pytest.fixture(scope="module")
def overrides():
    return {"dtype": "float32"} if _slow_bf16() else {}


def markdown_outputs(notebook) -> str:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    texts = []
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            md = output.get("data", {}).get("text/markdown")
            if md:
                texts.append("".join(md) if isinstance(md, list) else md)
    return "\n".join(texts)


@pytest.mark.parametrize("chapter", list(TABLES))
def test_chapter_runs_and_writes_its_tables(chapter, out, overrides):
    executed = book.run_chapter(chapter, "smoke", overrides, output_dir=out, progress_bar=False)
    assert executed.exists()
    results = out / "results" / chapter
    missing = [name for name in TABLES[chapter] if not (results / f"{name}.csv").exists()]
    assert not missing, f"{chapter} did not write {missing}"
    for name in TABLES[chapter]:
        assert len(pd.read_csv(results / f"{name}.csv")) > 0, f"{chapter}/{name}.csv is empty"
    findings = markdown_outputs(executed)
    assert "Strength of evidence" in findings  # the generated findings were rendered
    assert "{" not in findings.split("Strength of evidence")[0][-2000:]  # no unformatted placeholders


def test_family_chapter_reports_its_statistics(out, overrides):
    results = out / "results" / "05_families"
    if not (results / "family_tests.csv").exists():
        book.run_chapter("05_families", "smoke", overrides, output_dir=out, progress_bar=False)
    tests = pd.read_csv(results / "family_tests.csv").set_index("test")
    main = tests.loc["JS distance vs tree distance"]
    assert -1 <= main.statistic <= 1 and 0 < main.p_value <= 1
    # the smoke languages plus the script/family contrast languages (Hindi, Urdu, Arabic)
    assert main.n == len(book.PROFILES["smoke"]["languages"]) + 3
    pairs = pd.read_csv(results / "script_family_pairs.csv")
    assert {("hin", "urd"), ("urd", "arb")} <= set(zip(pairs.a, pairs.b))
