"""The executed chapters committed in book/ match their sources in notebooks/.

When this fails: rerun the chapter(s) named with `python -m babel_lib run NN_topic`
(the default profile) and commit the executed copy in book/ with its results/.
"""
import json

from babel_lib import book


def test_executed_chapters_are_fresh():
    problems = book.check_fresh()
    assert not problems, "stale executed chapters:\n" + "\n".join(problems)


def _sources():
    """Chapter sources, including drafts (written, not yet executed into the book)."""
    return book.chapters() + book.chapters(book.NOTEBOOKS_DIR / "drafts")


def test_source_notebooks_have_no_outputs():
    """notebooks/ keeps sources only: outputs live in the executed copies in book/."""
    dirty = []
    for source in _sources():
        nb = json.loads(source.read_text(encoding="utf-8"))
        for i, cell in enumerate(nb["cells"]):
            if cell.get("outputs") or cell.get("execution_count"):
                dirty.append(f"{source.name} cell {i}")
    assert not dirty, "clear the outputs of: " + ", ".join(dirty)


def test_every_source_declares_parameters():
    import papermill

    missing = [s.name for s in _sources() if not papermill.inspect_notebook(str(s))]
    assert not missing, f"no cell tagged `parameters` in: {missing}"
