"""Chapter 7 (instruction tuning) executes with the smoke profile: it tunes a few steps, measures,
compares profiles, and writes its result tables and generated findings."""

import json

import pandas as pd
import pytest

from babel_lib import book

pytestmark = [pytest.mark.notebook, pytest.mark.real_model, pytest.mark.slow]

CHAPTER = "07_instruction_tuning"
TABLES = ["training_curve", "heldout_loss_by_task", "heldout_loss_by_language", "answer_rates",
          "answer_rates_by_language", "similarity_by_layer", "similarity_by_language_and_layer",
          "difference_heatmaps", "weight_change", "expert_retention"]


def markdown_outputs(notebook) -> str:
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    texts = []
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            md = output.get("data", {}).get("text/markdown")
            if md:
                texts.append("".join(md) if isinstance(md, list) else md)
    return "\n".join(texts)


def test_tuning_chapter_runs_with_the_smoke_profile(tmp_path):
    executed = book.run_chapter(CHAPTER, "smoke", output_dir=tmp_path, progress_bar=False)
    results = tmp_path / "results" / CHAPTER
    missing = [name for name in TABLES if not (results / f"{name}.csv").exists()]
    assert not missing, f"{CHAPTER} did not write {missing}"
    for name in TABLES:
        assert len(pd.read_csv(results / f"{name}.csv")) > 0, f"{name}.csv is empty"
    curve = pd.read_csv(results / "training_curve.csv")
    assert curve["step"].max() <= 8  # the smoke run tunes only a few steps
    loss = pd.read_csv(results / "heldout_loss_by_task.csv")
    assert set(loss["model"]) == {"base", "tuned"}
    findings = markdown_outputs(executed)
    assert "Held-out loss" in findings and "Strength of evidence" in findings
    assert "{" not in findings.split("Strength of evidence")[0][-3000:]  # no unformatted placeholders
