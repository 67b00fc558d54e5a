"""Chapter 13's notebook pieces (babel_lib.chapters.robustness_map): the verdict chart renders, the grid's
headers follow the cells, and the findings say where each verdict changes."""

import pandas as pd

from babel_lib.chapters import robustness_map as rmap

CELLS = ["default", "top-k fraction 0.1", "neurons"]


def verdict_table(changes: bool = True) -> pd.DataFrame:
    """cell_verdicts-like rows: two claims in three cells; with ``changes`` the shared-experts claim changes in
    the neuron view."""
    rows = []
    for claim in ("shared", "families"):
        for i, cell in enumerate(CELLS):
            word = "not reproduced" if changes and claim == "shared" and cell == "neurons" else "reproduced"
            rows.append({"cell": cell, "setting": cell, "value": "", "chapter": "04", "claim": claim,
                         "name": rmap.CLAIM_NAMES[claim], "verdict": word, "number": f"p = 0.0{i + 1}"})
    return pd.DataFrame(rows)


def test_verdict_chart_renders(plots_env):
    plots_env.show(rmap.verdict_chart(verdict_table()), "robustness_chart")


def test_grid_columns_follow_the_cells():
    grid = rmap.verdict_grid(verdict_table())
    columns = rmap.grid_columns(grid)
    assert list(columns) == ["name", *CELLS, "same_as_default"]
    assert columns["name"] == "Claim" and columns["neurons"] == "neurons"


def test_findings_text_names_the_changes():
    table = verdict_table()
    text = rmap.findings_text(rmap.map_facts(table), table)
    lines = text.splitlines()
    assert lines[0] == ("- **Shared experts (ch. 4)**: reproduced in the default cell (p = 0.01); the same word in "
                        "2 of 3 cells; it changes to not reproduced with neurons (p = 0.03).")
    assert lines[1].endswith("the same word in 3 of 3 cells: no definition the map changes moves it.")
    assert lines[2].startswith("- **Strength of evidence.** One model")
