"""What a reader of the book sees, without a browser: verdict tables, the Answer box, the compact
scorecard, formatted tables, the runner's reader view of an executed chapter, and notebook defaults
that run what the book ran (tests/test_browser.py checks the rendered pages)."""
from __future__ import annotations

import json
import re

import nbformat
import pandas as pd
import pytest

from babel_lib.book import runner as book
from babel_lib.report import plots, verdicts

ROWS = [verdicts.row("heatmaps", "the 10% most used experts carry 0.391 [0.390, 0.392] of its activations "
                     "(uniform use: 0.094); 9 of 9 languages depart beyond noise", "bootstrap over 37 passages",
                     "reproduced"),
        verdicts.row("beats_dense", "0 of 18 cells beat the unpruned model beyond noise; the closest to it: "
                     "Hindi at rate 0.1, x1.21 [1.17, 1.26]", "weak: per-cell intervals", "not reproduced")]


def test_every_claim_has_a_short_name_and_a_question():
    for key, claim in verdicts.CLAIMS.items():
        assert claim.short and len(claim.short) <= 45, key
        assert claim.question.endswith("?"), key


def test_verdict_table_is_html_without_an_index_and_show_returns_nothing(tmp_path, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.extend(a))
    monkeypatch.setenv("BABEL_BOOK_DIR", str(tmp_path))
    monkeypatch.setenv("BABEL_CHAPTER", "02_heatmaps")
    assert verdicts.show(ROWS) is None  # nothing for Jupyter to display after the table
    (html,) = [o.data for o in shown]
    assert html.startswith('<table class="babel-table babel-verdicts">') and "|---|" not in html
    assert "<tbody><tr><td>" in html and "<th>0</th>" not in html  # no index column
    assert html.count("<tr>") == 3 and "A common map" in html and "reproduced" in html
    assert (tmp_path / "results" / "02_heatmaps" / "verdicts.csv").exists()


def test_answer_box_asks_answers_and_gives_the_key_number():
    html = verdicts.answer_html(verdicts.table(ROWS))
    text = re.sub(r"<[^>]+>", " ", html)
    assert "Question." in text and verdicts.CLAIMS["heatmaps"].question in text
    assert "Answer. Reproduced." in re.sub(r"\s+", " ", text)
    assert "0.391 [0.390, 0.392]" in text
    # a first clause without an interval is the answer; the interval clause backs it
    assert verdicts.key_number(ROWS[1]["result"]).startswith("0 of 18 cells") and "[1.17, 1.26]" in \
        verdicts.key_number(ROWS[1]["result"])


def test_scorecard_is_compact(tmp_path):
    (tmp_path / "results" / "02_heatmaps").mkdir(parents=True)
    verdicts.table(ROWS).to_csv(tmp_path / "results" / "02_heatmaps" / "verdicts.csv", index=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Heatmaps: a title")]
    nbformat.write(nb, tmp_path / "02_heatmaps.ipynb")
    text = verdicts.scorecard_markdown(tmp_path)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert table[0] == "| Chapter | Claim | Verdict | Headline number |" and len(table) == 4
    assert "[2. Heatmaps](02_heatmaps.ipynb)" in table[2] and "0.391 [0.390, 0.392]" in table[2]
    assert max(len(line) for line in table) < 320 and "bootstrap over 37" not in text  # evidence stays in the chapter


def test_tables_show_p_values_booleans_and_numbers_for_readers():
    df = pd.DataFrame({"view": ["a", "b"], "p_value": [9.4e-78, 0.0213], "robust": [True, False],
                       "ratio": [703.7, 0.40047], "count": [1234, 5]})
    html = plots.table_html(df, formats={"p_value": "{:.4f}"})
    cells = re.findall(r"<td[^>]*>([^<]*)</td>", html)
    assert cells == ["a", "&lt;\u00a00.001", "yes", "704", "1,234", "b", "0.0213", "no", "0.4", "5"], cells
    assert "e-78" not in html and "True" not in html and 'class="babel-table"' in html
    wide = pd.DataFrame({f"c{i}": [1.0, 2.0] for i in range(8)}).assign(view=["x", "y"])
    transposed = plots.table_html(wide[["view"] + [f"c{i}" for i in range(8)]])
    assert "babel-transposed" in transposed and transposed.count("<tr>") == 9  # header + one row per column


def _executed(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('dtype = "float32"', metadata={"tags": ["parameters"]})
    injected = nbformat.v4.new_code_cell('# Parameters\ndtype = "float32"\n',
                                         metadata={"tags": ["injected-parameters"]})
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\n**Overview.** ..."), params, injected,
                nbformat.v4.new_markdown_cell("## Method")]
    results = tmp_path / "results"
    results.mkdir()
    verdicts.table(ROWS).to_csv(results / "verdicts.csv", index=False)
    return nb, results


def test_reader_view_hides_parameters_and_puts_the_answer_first(tmp_path):
    nb, results = _executed(tmp_path)
    book.reader_view(nb, results)
    book.reader_view(nb, results)  # idempotent: one Answer box
    assert [c.cell_type for c in nb.cells] == ["markdown", "markdown", "code", "code", "markdown"]
    assert 'class="babel-answer"' in nb.cells[1].source
    assert "hide-cell" in nb.cells[2].metadata.tags and "remove-cell" in nb.cells[3].metadata.tags
    assert sum("babel-answer" in c.source for c in nb.cells) == 1


@pytest.mark.parametrize("source", book.chapters(), ids=lambda p: p.stem)
def test_a_notebook_opened_by_hand_runs_what_the_book_ran(source):
    """Defaults are the default profile's (float32 on the CPU), the parameters cell is folded in the book,
    and plots.setup names the chapter (a run by hand writes runs/interactive/<chapter>/)."""
    nb = json.loads(source.read_text(encoding="utf-8"))
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    assert "hide-cell" in params["metadata"]["tags"]
    declared = book.declared_parameters(source)
    for name in ("dtype", "device"):
        if name in declared:
            assert json.loads(declared[name]["default"]) == book.PROFILES["default"][name], (name, declared[name])
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert f'plots.setup("{source.stem}")' in code
