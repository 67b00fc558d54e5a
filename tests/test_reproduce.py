"""A fresh run reproduces the committed book: `babel verify` re-executes chapter 02 on the default
profile into runs/verify/ and compares every result table with the committed one (counts exactly,
given the pinned experts)."""

import pandas as pd
import pytest

from babel_lib import book

pytestmark = [pytest.mark.real_model, pytest.mark.slow, pytest.mark.notebook]


def test_compare_tables_rules(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    frame = pd.DataFrame({"language": ["eng", "fra"], "count": [3, 4], "frequency": [0.25, 0.5],
                          "perplexity": [10.0, 20.0], "seconds": [1.0, 2.0], "note": ["", "rival"],
                          "ffn_speedup_low": [1.1, 1.2]})
    frame.to_csv(old / "a.csv", index=False)
    frame.assign(perplexity=[10.0001, 20.0], seconds=[9.0, 9.0], ffn_speedup_low=[1.3, 1.0]).to_csv(new / "a.csv", index=False)
    report = book.compare_tables(old, new).set_index("column")
    assert report.loc["note", "status"] == "equal"  # an empty text cell (read back as NaN) equals itself
    assert report.loc["ffn_speedup_low", "status"] == "not compared"  # a measured speed-up's interval
    assert report.loc["count", "status"] == "equal" and report.loc["frequency", "status"] == "equal"
    assert report.loc["perplexity", "status"] == "within tolerance"  # model arithmetic: 1e-3 relative
    assert report.loc["seconds", "status"] == "not compared"
    frame.assign(count=[3, 5]).to_csv(new / "a.csv", index=False)
    frame.to_csv(new / "b.csv", index=False)
    report = book.compare_tables(old, new)
    assert set(report[report.status.isin(book.VERIFY_FAILING)].status) == {"differs", "extra"}


def test_chapter_02_reproduces_its_committed_tables():
    report = book.verify_chapter("02_heatmaps", progress_bar=False)
    failing = report[report.status.isin(book.VERIFY_FAILING)]
    assert failing.empty, failing.to_string()
    counts = report[(report.table == "frequency_heatmaps.csv") & (report.column == "frequency")]
    assert (counts.status == "equal").all()  # the frequencies behind the maps, to the last digit
