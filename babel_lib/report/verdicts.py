"""Each chapter's verdict table, its Answer box and the book's reproduction scorecard.

A chapter ends with a verdict table (:func:`show`) of rows made by :mod:`babel_lib.core.claims`
(re-exported here, so a chapter calls ``verdicts.row`` and ``verdicts.show`` from one module), saved
as ``results/<chapter>/verdicts.csv``; the intro's scorecard (:func:`write_scorecard`,
``book/scorecard.md``) is generated from those files by the book runner and the build, never written
by hand.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd

from babel_lib.core.claims import (ARXIV_V1, CLAIMS,  # noqa: F401 (a chapter's verdict rows and tables from one module)
                                   COLUMNS, DESCRIPTIVE_EVIDENCE, EMNLP, TESTED_VERDICTS, VERDICTS, Claim, decide,
                                   descriptive, row, verdict)


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def _claim_of(r) -> Claim | None:
    """The :class:`Claim` a verdict row (or a row of ``verdicts.csv``) quotes, matched on quote and tested."""
    for c in CLAIMS.values():
        if r["claim"].strip("“”\"") == c.quote and (r.get("tested") or "") == c.tested:
            return c
    return None


def _clauses(text: str) -> list[str]:
    """*text* split at '; ' outside brackets and parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch in "([" and 1 or (-1 if ch in ")]" else 0)
        if ch == ";" and depth <= 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p.rstrip(".") for p in parts if p]


_INTERVAL = re.compile(r"-?[\d.,]+(?:e-?\d+)? \[-?[\d.,]+(?:e-?\d+)?, -?[\d.,]+(?:e-?\d+)?\]")


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + " …"


def key_number(result: str, limit: int = 160) -> str:
    """The headline of a verdict's result: its first clause that holds an interval ('0.39 [0.38, 0.40]'),
    else its first clause; at most about *limit* characters, cut at a word."""
    parts = _clauses(str(result)) or [""]
    found = next((p for p in parts if _INTERVAL.search(p)), parts[0])
    m = _INTERVAL.search(found)
    if len(found) > limit and m:  # keep the interval and what qualifies it: cut at the next ', ' outside brackets
        depth = 0
        for i in range(m.end(), len(found)):
            ch = found[i]
            depth += 1 if ch in "([" else (-1 if ch in ")]" else 0)
            if depth == 0 and found.startswith(", ", i):
                found = found[:i]
                break
    if found != parts[0] and len(parts[0]) + len(found) + 2 <= limit + 40:
        found = f"{parts[0]}; {found}"  # the first clause is the answer; the interval backs it
    return _shorten(found, limit + 60)


def _esc(text) -> str:
    return html.escape(str(text), quote=False)


def verdict_html(frame: pd.DataFrame) -> str:
    """The verdict table as HTML (no index, text wraps within the column): the claim (in a few words, then
    the paper's words and source), our result with the evidence beneath it, and the verdict."""
    rows = []
    for _, r in frame.iterrows():
        c = _claim_of(r)
        claim = (f"<strong>{_esc(c.short)}</strong><br>" if c and c.short else "") + \
            f"{_esc(r['claim'])} <span class=\"babel-source\">({_esc(r['source'])})</span>"
        if r.get("tested"):
            claim += f"<br><em>Tested here:</em> {_esc(r['tested'])}"
        result = f"{_esc(r['result'])}<p class=\"babel-evidence\"><em>Evidence:</em> {_esc(r['evidence'])}</p>"
        word = str(r["verdict"])
        rows.append(f"<tr><td>{claim}</td><td>{result}</td>"
                    f"<td class=\"babel-verdict babel-{word.replace(' ', '-')}\"><strong>{_esc(word)}</strong></td></tr>")
    return ('<table class="babel-table babel-verdicts"><thead><tr><th>Claim of the paper</th><th>Our result</th>'
            "<th>Verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def answer_html(frame: pd.DataFrame) -> str:
    """A chapter's Answer box, from its verdicts: per claim the question, the answer (the verdict and what
    was tested) and the key number with its interval (:func:`key_number`)."""
    blocks = []
    for _, r in frame.iterrows():
        c = _claim_of(r)
        question = c.question if c and c.question else f"The paper: {r['claim']}"
        tested = r.get("tested") or (c.short if c else "")
        word = str(r["verdict"])
        answer = f"<strong>{_esc(word[:1].upper() + word[1:])}.</strong>" + (f" Tested: {_esc(tested)}." if tested else "")
        blocks.append(f'<p class="babel-answer-q"><strong>Question.</strong> {_esc(question)}</p>'
                      f'<p class="babel-answer-a"><strong>Answer.</strong> {answer}</p>'
                      f'<p class="babel-answer-n"><strong>Key number.</strong> {_esc(key_number(r["result"]))}</p>')
    body = '<hr class="babel-answer-sep">'.join(blocks) or "<p>No verdict recorded.</p>"
    return f'<div class="babel-answer" role="note"><p class="babel-answer-title">Answer</p>{body}</div>'


def answer_cell_source(frame: pd.DataFrame) -> str:
    """The Markdown cell the runner puts after a chapter's overview (raw HTML: renders in the book,
    JupyterLab and GitHub alike)."""
    return ("<!-- Answer box: generated by babel_lib.report.verdicts.answer_html from results/<chapter>/verdicts.csv "
            "when the chapter was executed. -->\n" + answer_html(frame) + "\n")


def markdown(frame: pd.DataFrame, chapter_links: bool = False) -> str:
    """The compact scorecard as a Markdown table (pipes escaped): with ``chapter_links`` a first column links
    to each row's chapter; then the claim in a few words, the verdict, and the headline number with its
    interval (:func:`key_number`). The long evidence stays in the chapters."""
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    head = (["Chapter"] if chapter_links else []) + ["Claim", "Verdict", "Headline number"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in frame.iterrows():
        c = _claim_of(r)
        claim = c.short if c and c.short else r["claim"]
        cells = ([f"[{r['title']}]({r['chapter']}.ipynb)"] if chapter_links else []) + \
            [claim, f"**{r['verdict']}**", key_number(r["result"], limit=110)]
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def show(rows: list[dict]) -> None:
    """Save the chapter's verdicts (``verdicts.csv``) and display them as an HTML table (returns None, so
    nothing is displayed after it)."""
    from IPython.display import HTML, display

    from babel_lib.report import plots

    frame = table(rows)
    plots.save_table(frame, None, "verdicts")
    display(HTML(verdict_html(frame)))


def sensitivity(full: list[dict], subset: list[dict]) -> pd.DataFrame:
    """The same claims decided on all the data (``full``) and on a subset (``subset``, the rows of the
    same verdict function on the reduced data, in the same order): one row a claim with ``claim``
    (short), ``verdict``, ``verdict_subset``, ``change`` ('same' / 'changed', words for the page) and
    ``result_subset``. A sensitivity analysis: these rows never enter the scorecard."""
    if [r["claim"] for r in full] != [r["claim"] for r in subset] or \
            [r.get("tested") for r in full] != [r.get("tested") for r in subset]:
        raise ValueError("the two verdict lists must decide the same claims in the same order")
    rows = []
    for a, b in zip(full, subset):
        c = _claim_of(a)
        rows.append({"claim": c.short if c and c.short else a["claim"], "verdict": a["verdict"],
                     "verdict_subset": b["verdict"], "change": "same" if a["verdict"] == b["verdict"] else "changed",
                     "result_subset": b["result"]})
    return pd.DataFrame(rows, columns=["claim", "verdict", "verdict_subset", "change", "result_subset"])


def sensitivity_text(table: pd.DataFrame, without: str) -> str:
    """One sentence on :func:`sensitivity`'s table: how many verdicts hold ``without`` (a phrase: 'without
    the 7 byte-fallback languages') and which change, from what to what."""
    changed = table[table["change"] == "changed"]
    n = len(table)
    if changed.empty:
        return f"{_upper_first(without)}, every verdict of this chapter stays the same ({n} of {n})."
    moves = "; ".join(f"{r.claim}: {r.verdict} -> {r.verdict_subset}" for r in changed.itertuples())
    return (f"{_upper_first(without)}, {n - len(changed)} of {n} verdicts stay the same; "
            f"{len(changed)} change ({moves}).")


def _upper_first(text: str) -> str:
    """``text`` with its first letter upper case and the rest kept ('on the Bible's ...' -> 'On the Bible's ...')."""
    return text[:1].upper() + text[1:]


def show_sensitivity(full: list[dict], subset: list[dict], without: str, name: str,
                     reference: str = "All languages") -> pd.DataFrame:
    """Display :func:`sensitivity` of ``full`` and ``subset`` as a table saved as ``<name>.csv`` (never as
    ``verdicts.csv``: these rows stay out of the scorecard), then :func:`sensitivity_text`; return the
    table. ``without``: what the subset leaves out (or which other data it is), as a phrase ('without the
    7 languages ...', 'on the Bible's languages'); ``reference``: the heading of the full data's column."""
    from babel_lib.report import plots

    frame = sensitivity(full, subset)
    plots.table(frame, name, columns={"claim": "Claim", "verdict": reference, "verdict_subset": _upper_first(without),
                                      "change": "Change", "result_subset": f"Result {without}"},
                caption=f"The chapter's verdicts {without}", transpose=False)
    plots.md(sensitivity_text(frame, without))
    return frame


# ---------------------------------------------------------------------------- the scorecard
def _title(notebook: Path) -> str:
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return notebook.stem
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            text = "".join(cell.get("source", ""))
            m = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
            if m:
                return m.group(1).split(":")[0].strip()
    return notebook.stem


def scorecard(book_dir) -> pd.DataFrame:
    """Every chapter's verdicts (``results/<chapter>/verdicts.csv``), in chapter order, with the
    chapter's name and title. Only chapters of the book count: a results folder without an
    executed ``NN_topic.ipynb`` beside it is ignored."""
    book_dir = Path(book_dir)
    frames = []
    for path in sorted((book_dir / "results").glob("*/verdicts.csv")):
        chapter = path.parent.name
        if not re.match(r"^\d\d_", chapter) or not (book_dir / f"{chapter}.ipynb").exists():
            continue
        frame = pd.read_csv(path, keep_default_na=False)
        frame.insert(0, "chapter", chapter)
        frame.insert(1, "title", f"{int(chapter[:2])}. {_title(book_dir / f'{chapter}.ipynb')}"
                     if chapter[:2].isdigit() else chapter)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["chapter", "title"] + COLUMNS)
    return pd.concat(frames, ignore_index=True)


def scorecard_markdown(book_dir) -> str:
    """The intro's scorecard: a first line counting each label, the compact table of the tested claims,
    then the descriptive statements (counted apart: no outcome could refute them)."""
    card = scorecard(book_dir)
    if card.empty:
        return "No chapter has recorded verdicts yet.\n"
    tested = card[card["verdict"] != "descriptive"]
    described = card[card["verdict"] == "descriptive"]
    counts = tested["verdict"].value_counts()
    summary = ", ".join(f"{counts[v]} {v}" for v in TESTED_VERDICTS if v in counts)
    text = (f"<!-- Generated by babel_lib.report.verdicts.write_scorecard from results/*/verdicts.csv: do not edit. -->\n\n"
            f"{len(tested)} verdicts from {tested['chapter'].nunique()} chapters: {summary or 'none'}; "
            f"and {len(described)} descriptive statement{'s' if len(described) != 1 else ''} counted apart.\n\n"
            + markdown(tested, chapter_links=True))
    if len(described):
        items = []
        for _, r in described.iterrows():
            c = _claim_of(r)
            items.append(f"- [{r['title']}]({r['chapter']}.ipynb): {r['claim']} ({c.short if c and c.short else r['source']})")
        text += ("\nDescriptive statements of the paper (what it did; no outcome could refute them, so they are not "
                 "verdicts):\n\n" + "\n".join(items) + "\n")
    return text + robustness_line(book_dir)


def robustness_line(book_dir) -> str:
    """One paragraph linking the robustness map (chapter 13's ``robustness_grid.csv``): per mapped verdict,
    in how many cells of other definitions it keeps its word; '' when the map has not run."""
    grids = sorted((Path(book_dir) / "results").glob("*/robustness_grid.csv"))
    if not grids:
        return ""
    grid = pd.read_csv(grids[0], keep_default_na=False)
    chapter = grids[0].parent.name
    cells = len(grid.columns) - 2  # name, the cells, same_as_default
    kept = "; ".join(f"{r['name']}: {r['default']} in {r['same_as_default']} of {cells}" for _, r in grid.iterrows())
    return (f"\nUnder other definitions (one changed at a time: top-k fraction, expert size, high-frequency ratio, "
            f"partition seed, neuron view), the [robustness map]({chapter}.ipynb) decides these verdicts again in "
            f"{cells} cells: {kept}.\n")


def write_scorecard(book_dir) -> Path:
    """(Re)write ``book_dir/scorecard.md`` (the intro includes it); touched only when it changes."""
    from babel_lib.core.cache import atomic_write_bytes

    path = Path(book_dir) / "scorecard.md"
    text = scorecard_markdown(book_dir)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_bytes(path, text.encode("utf-8"))
    return path
