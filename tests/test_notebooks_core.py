"""The book's chapters execute under papermill with the small `smoke` parameters."""

import json

import pytest

from babel_lib import book

pytestmark = pytest.mark.notebook


@pytest.mark.parametrize("chapter", [p.stem for p in book.chapters()])
def test_book_chapter_runs_with_smoke_profile(chapter, tmp_path):
    executed = book.run_chapter(chapter, "smoke", output_dir=tmp_path, progress_bar=False)
    nb = json.loads(executed.read_text(encoding="utf-8"))
    assert nb["metadata"]["babel"]["profile"] == "smoke"
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert list((tmp_path / "results" / chapter).glob("*.csv"))  # its tables were written
