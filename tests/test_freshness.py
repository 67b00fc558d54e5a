"""The executed chapters committed in book/ match their sources in notebooks/.

When this fails: rerun the chapter(s) named with `python -m babel_lib run NN_topic`
(the default profile) and commit the executed copy in book/ with its results/.
"""
import json

from babel_lib.book import runner as book


def test_executed_chapters_are_fresh():
    problems = book.check_fresh()
    assert not problems, "stale executed chapters:\n" + "\n".join(problems)


def test_executed_chapters_ran_with_the_current_library():
    """`make book` re-executes a chapter run with another version of babel_lib (`babel run --stale`), so
    a fresh clone's `make book` only renders the HTML when every committed chapter ran with the library
    committed beside it. When this fails: rerun the chapters named (warm, from the cache) and commit them."""
    changed = book.library_changes()
    assert not changed, "chapters executed with another babel_lib:\n" + "\n".join(changed)


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


def test_executed_chapters_name_no_machine_folders():
    """Executed chapters are published: their text (not their images) must not carry this
    machine's folders (repository, cache, home, temporary files)."""
    import os
    import re
    from pathlib import Path

    from babel_lib.core import cache

    roots = {str(Path(p).resolve()) for p in (book.BOOK_DIR.parent, cache.cache_root(), Path.home(), "/tmp")}
    roots.discard(os.sep)  # a home of "/" would match every URL
    pattern = re.compile("|".join(re.escape(r + os.sep) for r in sorted(roots, key=len, reverse=True)))
    found = []
    for executed in sorted(book.BOOK_DIR.glob("*.ipynb")):
        nb = json.loads(executed.read_text(encoding="utf-8"))
        for i, cell in enumerate(nb["cells"]):
            texts = ["".join(cell["source"]), json.dumps(cell.get("metadata", {}))]
            for out in cell.get("outputs", []):
                texts += [json.dumps(v) for k, v in out.get("data", {}).items() if not k.startswith("image/")]
                texts.append("".join(out.get("text", "")))
            found += [f"{executed.name} cell {i}: ...{t[max(0, m.start() - 40):m.end() + 40]}..."
                      for t in texts for m in [pattern.search(t)] if m]
        m = pattern.search(json.dumps(nb.get("metadata", {})))
        if m:
            found.append(f"{executed.name} metadata")
    assert not found, "machine folders in executed chapters:\n" + "\n".join(found)


def test_executed_chapters_have_no_hand_typed_numbers():
    """Every number in a chapter's prose comes from its run (or is a parameter, a chapter number, a
    year): a hand-typed '512 sign patterns' would survive a rerun with eight languages."""
    found = {c.stem: book.hand_typed_numbers(book.BOOK_DIR / c.name) for c in book.chapters()
             if (book.BOOK_DIR / c.name).exists()}
    found = {k: v for k, v in found.items() if v}
    assert not found, f"numbers typed by hand in the prose (compute them, or point to the table): {found}"


def _notebook(tmp_path, markdown, output, parameters="languages = 'paper'\n"):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
                nbformat.v4.new_markdown_cell(markdown),
                nbformat.v4.new_code_cell("print(x)", outputs=[nbformat.v4.new_output("stream", text=output)])]
    path = tmp_path / "nb.ipynb"
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


def test_hand_typed_numbers_rule(tmp_path):
    # the defect: the run had 8 languages (256 patterns, p 0.0039) and the prose says 512
    bad = _notebook(tmp_path, "All 512 sign patterns; the smallest p is 0.004.", "256 patterns, p = 0.0039")
    assert book.hand_typed_numbers(bad) == ["512"]
    good = _notebook(tmp_path, "All 512 sign patterns; the smallest p is 0.004.", "512 patterns, p = 0.00390625")
    assert book.hand_typed_numbers(good) == []
    # a percentage from a share, thousands separators, and a number from the parameters
    share = _notebook(tmp_path, "Kept 37.5% of 1,024 experts, 2,000 tokens.", "share 0.375 of 1024",
                      parameters="min_tokens = 2000\n")
    assert book.hand_typed_numbers(share) == []
    # model names, chapter numbers, years, code spans and 95% are not run numbers
    names = _notebook(tmp_path, "Gemma 3 270M (2025), chapter 5, 95% intervals, `-p rates \"[0.05, 0.3]\"`.", "")
    assert book.hand_typed_numbers(names) == []


def test_a_test_cited_by_two_chapters_has_one_adjusted_p_value():
    """Chapter 06 reruns chapter 05's family tests on the same model, languages and passages: one
    family per claim gives them the same corrected p-values, so the two chapters cannot disagree."""
    import pandas as pd

    five = pd.read_csv(book.BOOK_DIR / "results" / "05_families" / "family_tests.csv").set_index("test")
    six = pd.read_csv(book.BOOK_DIR / "results" / "06_model_families" / "tests.csv")
    model = book.resolve_parameters(book.NOTEBOOKS_DIR / "05_families.ipynb", "default")["model"]
    six = six[six["model"] == model].set_index("test")
    common = five.index.intersection(six.index)
    assert len(common) >= 8, f"chapter 06 does not cite chapter 05's tests for {model}"
    for test in common:
        assert six.loc[test, "statistic"] == five.loc[test, "statistic"], test
        assert six.loc[test, "p_holm"] == five.loc[test, "p_holm"], test


def test_executed_chapters_show_no_progress_bars():
    """The runner silences progress bars (TQDM_DISABLE); a library step that ignores it leaves
    'profiling: 0tok [00:00, ?tok/s]' boxes in the reader's page."""
    import re

    bars = re.compile(r"\[\d\d:\d\d[<,]|[?\d.]+(?:tok|it)/s\]")
    found = {}
    for c in book.chapters():
        nb = json.loads((book.BOOK_DIR / c.name).read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", "")) if out.get("output_type") == "stream" else ""
                if bars.search(text):
                    found.setdefault(c.stem, []).append(text.strip()[:60])
    assert not found, f"progress bars in the executed chapters: {found}"
