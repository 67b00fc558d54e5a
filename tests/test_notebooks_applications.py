"""The application chapters (08-10) execute with the smoke profile and write their result tables."""

import json
import re

import pandas as pd
import pytest

from babel_lib import book

pytestmark = [pytest.mark.notebook, pytest.mark.real_model, pytest.mark.slow]

#: Result tables each chapter must write (results/<chapter>/<name>.csv).
TABLES = {
    "08_pruning": ["perplexity_vs_rate", "bits_per_char_vs_rate", "per_language_rate", "cross_language_matrix"],
    "09_layerwise_pruning": ["layer_rates", "layerwise_vs_uniform", "bits_per_char"],
    "10_sparse_activation": ["perplexity_vs_computed", "router_recall", "speed", "timings"],
}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("book")


def _slow_bf16() -> bool:
    """True where bf16 matrix products are far slower than fp32 (CPUs without AVX-512 BF16 or AMX)."""
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
    results = out / "results" / chapter
    missing = [name for name in TABLES[chapter] if not (results / f"{name}.csv").exists()]
    assert not missing, f"{chapter} did not write {missing}"
    for name in TABLES[chapter]:
        assert len(pd.read_csv(results / f"{name}.csv")) > 0, f"{chapter}/{name}.csv is empty"
    text = markdown_outputs(executed)
    assert "**Protocol.** Perplexity of" in text and "windows of at most" in text  # stated protocol
    assert "**Evidence.**" in text and "Quick run" in text
    findings = text.split("**Protocol.**")[-1]
    assert "{" not in findings and not re.search(r"\bnan\b", findings, re.IGNORECASE)  # all values computed


def test_pruning_tables_are_consistent(out, overrides):
    results = out / "results" / "08_pruning"
    if not (results / "per_language_rate.csv").exists():
        book.run_chapter("08_pruning", "smoke", overrides, output_dir=out, progress_bar=False)
    curves = pd.read_csv(results / "perplexity_vs_rate.csv")
    langs = book.PROFILES["smoke"]["languages"]
    assert set(curves.language) == set(langs)
    dense = curves[curves.method == "dense"]
    assert len(dense) == len(langs) and (dense.ratio == 1).all()
    # every condition of a language was evaluated on the same tokens and characters
    assert curves.groupby("language")[["tokens", "characters"]].nunique().eq(1).all().all()
    assert set(curves.method) == {"dense", "target language", "multilingual", "random"}
    matrix = pd.read_csv(results / "cross_language_matrix.csv")
    assert len(matrix) == len(langs) ** 2


def test_sparse_activation_reports_recall_and_speed(out, overrides):
    results = out / "results" / "10_sparse_activation"
    if not (results / "router_recall.csv").exists():
        book.run_chapter("10_sparse_activation", "smoke", overrides, output_dir=out, progress_bar=False)
    recall = pd.read_csv(results / "router_recall.csv")
    assert recall.recall.between(0, 1).all()
    speed = pd.read_csv(results / "speed.csv")
    assert (speed.ffn_speedup > 0).all()
