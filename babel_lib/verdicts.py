"""The paper's claims, each chapter's verdict on them, and the book's reproduction scorecard.

Claims are quoted from the paper's abstracts (:data:`CLAIMS`); where an abstract names a question
rather than a result, the claim tested is stated as such (``tested``). A chapter ends with a
verdict table (:func:`show`), saved as ``results/<chapter>/verdicts.csv``; the intro's scorecard
(:func:`write_scorecard`, ``book/scorecard.md``) is generated from those files by the book runner
and the build, never written by hand.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: The verdict words of every table (one per row); "descriptive" marks a statement no outcome could
#: refute ("we designed", "we analysed"): the scorecard counts it apart from the verdicts.
VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not testable here", "descriptive")
#: The words that are verdicts on a claim (everything but "descriptive").
TESTED_VERDICTS = VERDICTS[:4]
#: What a descriptive row says as its evidence.
DESCRIPTIVE_EVIDENCE = "a statement of what was done, which no outcome could refute; counted apart from the verdicts"

EMNLP = "EMNLP 2024 abstract"
ARXIV_V1 = "arXiv v1 abstract (Feb 2024)"


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: the words quoted, where they come from, and what this book tests, in its own
    words (the Answer box's "Tested:"; empty only for descriptive statements, which nothing tests)."""

    quote: str
    source: str
    tested: str = ""
    #: the claim in a few words (the scorecard's column)
    short: str = ""
    #: the question a chapter answers about it (the first line of the chapter's Answer box)
    question: str = ""


CLAIMS: dict[str, Claim] = {
    "moefication_design": Claim(
        "We designed a method to convert dense LLMs into fine-grained MoE architectures", EMNLP,
        short="A method to convert dense LLMs into experts",
        question="Can a dense model's feed-forward layers be converted into fine-grained experts?"),
    "activation_analysis": Claim(
        "we analyzed the similarities and differences in the internal neuron activation patterns of LLMs "
        "when processing different languages", EMNLP,
        short="Activation patterns analysed per language",
        question="What does each language's map of expert activations look like?"),
    "high_frequency_investigation": Claim(
        "we investigated the distribution of high-frequency activated experts", EMNLP,
        short="High-frequency experts investigated",
        question="Where do the high-frequency experts sit?"),
    "moefication": Claim(
        "We designed a method to convert dense LLMs into fine-grained MoE architectures", EMNLP,
        "the converted model with every expert on is the dense model, and its activated experts carry more of "
        "the activation than a random grouping of neurons",
        short="Dense FFN as fine-grained experts",
        question="Is the converted model the dense model, with experts that carry the activation?"),
    "heatmaps": Claim(
        "we analyzed the similarities and differences in the internal neuron activation patterns of LLMs "
        "when processing different languages", EMNLP,
        "languages share a common map of frequently used experts and depart from it measurably beyond "
        "sampling noise",
        short="A common map; languages depart from it",
        question="Do languages share a map of busy experts and depart from it beyond noise?"),
    "specific_neurons": Claim(
        "We discover the existence of non-language-specific neurons as well as language-specific activation "
        "neurons.", ARXIV_V1,
        "more experts are high-frequency in exactly one language than if the languages did not differ",
        short="Language-specific and shared neurons",
        question="Are there language-specific as well as shared neurons?"),
    "high_frequency": Claim(
        "we investigated the distribution of high-frequency activated experts", EMNLP,
        "high-frequency experts exist and are not spread evenly over the depth of the network",
        short="High-frequency experts, uneven over depth",
        question="Do high-frequency experts exist, and are they spread unevenly over the layers?"),
    "shared": Claim(
        "multilingual shared experts", EMNLP,
        "some experts are high-frequency in every language (shared) and not on random tokens (multilingual, "
        "not always-on)",
        short="Multilingual experts shared by every language",
        question="Are some experts high-frequency in every language without being busy on any input?"),
    "families": Claim(
        "whether multilingual activation patterns are related to language families", EMNLP,
        "languages of one family have closer activation profiles than languages of different families",
        short="Patterns follow language families",
        question="Are languages of one family closer in activation than languages of different families?"),
    "families_v1": Claim(
        "demonstrate the connections of these activation patterns at the level of language families", ARXIV_V1,
        "the dendrogram of the language profiles, cut into flat clusters, groups the languages by family more "
        "than chance",
        short="Family-level structure",
        question="Do the activation patterns recover the language families as groups?"),
    "model_families": Claim(
        "Through comprehensive experiments on different model families, different model sizes, and different "
        "variants", EMNLP,
        "the patterns found in one model (depth profile, language distances) hold in a model of another family",
        short="Holds in another model family",
        question="Do the patterns of one model hold in a model of another family?"),
    "model_sizes": Claim(
        "Through comprehensive experiments on different model families, different model sizes, and different "
        "variants", EMNLP,
        "the patterns hold across two sizes of one model family (language distances and depth profiles; "
        "variants of one model are not testable offline)",
        short="Holds across sizes and variants",
        question="Do the patterns hold across model sizes and variants?"),
    "instruction_tuning": Claim(
        "the impact of instruction tuning on activation patterns", EMNLP,
        "instruction tuning changes a language's activation profile beyond sampling noise",
        short="Instruction tuning changes the patterns",
        question="Does instruction tuning change a language's activation profile beyond noise?"),
    "tuning_beyond_placebo": Claim(
        "(not in the paper) the change comes from instruction tuning, not from any fine-tune of its size",
        "this book",
        "instruction tuning moves a language's profile further than the same recipe on plain text (no "
        "instructions) and further than a random weight change of the tuning's norm",
        short="Beyond placebo fine-tunes (ours)",
        question="Does instruction tuning move the profiles further than a placebo fine-tune of the same size?"),
    "beats_random": Claim("our method significantly outperformed random expert pruning", EMNLP,
        "pruning a language's least frequently activated experts raises its held-out perplexity less than "
        "pruning random experts at the same rate",
        short="Frequency pruning beats random",
        question="Does pruning by a language's expert frequency beat random pruning?"),
    "beats_dense": Claim("and even exceeded the performance of unpruned models in some languages", EMNLP,
        "in some language, a model pruned for it has a lower held-out perplexity than the unpruned model "
        "beyond noise",
        short="Pruned beats unpruned in some languages",
        question="Does a pruned model beat the unpruned one in some language?"),
    "layerwise": Claim(
        "configuring different pruning rates for different layers based on activation level differences could "
        "achieve better results", EMNLP,
        "per-layer pruning rates from activation differences (our two rules) give a lower held-out perplexity "
        "than one uniform rate at the same budget",
        short="Per-layer pruning rates help",
        question="Do per-layer pruning rates beat one uniform rate at the same budget?"),
    "sparse_activation": Claim(
        "merely leveraging high-frequency activation neurons can accelerate inference while maintaining "
        "comparable performance", ARXIV_V1,
        "keeping only a language's high-frequency experts is measurably faster and keeps the perplexity within "
        "our threshold of comparable",
        short="Only frequent experts: faster, as good",
        question="Does computing only the high-frequency experts speed up inference at comparable quality?"),
    "specific_causal": Claim(
        "We discover the existence of non-language-specific neurons as well as language-specific activation "
        "neurons.", ARXIV_V1,
        "a language's specific experts are necessary for it: switching them off harms that language more than the "
        "other languages and more than random experts of the same layers and busyness (a causal test)",
        short="Specific experts are necessary (causal)",
        question="Does switching off a language's specific experts harm that language more than matched controls?"),
    "output_language": Claim(
        "(not in the paper) a language's specific experts control the language the model writes", "this book",
        "switching them off makes continuations leave the language more often than matched controls do",
        short="Specific experts steer the output language",
        question="Do a language's specific experts control the language the model writes?"),
    "routing_competence": Claim(
        "(not in the paper) how far a language's routing is from the dominant language's predicts where the model "
        "is weak", "this book",
        "the distance of a language's expert profile from English's correlates with the model's bits per character "
        "beyond tokens per character and script",
        short="Distance from English predicts weakness",
        question="Does a language's routing distance from English predict where the model is weak?"),
    "definitions_robust": Claim(
        "(not in the paper) the book's verdicts on languages do not depend on its choice of definitions",
        "this book",
        "chapters 4 and 5's verdicts keep their word when one definition changes: the top-k fraction, the expert "
        "size, the high-frequency ratio, the partition seed, or no experts at all (the neuron view)",
        short="Verdicts hold under other definitions (ours)",
        question="Do the verdicts on shared, specific experts and families change under other definitions?"),
    "cross_domain": Claim(
        "(not in the paper) the activation patterns belong to the language rather than to the text", "this book",
        "a language's profile on one corpus is closer to its own profile on another corpus than to other "
        "languages' profiles on the same corpus",
        short="Patterns belong to the language (ours)",
        question="Does a profile belong to the language rather than to the text?"),
}

COLUMNS = ["claim", "source", "tested", "result", "evidence", "verdict"]


def verdict(claim: str, result: str, evidence: str, verdict: str) -> dict:
    """One row of a verdict table: {'claim', 'result', 'evidence', 'verdict'}; ``verdict`` must be one of
    :data:`VERDICTS` (ValueError otherwise)."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return {"claim": claim, "result": result, "evidence": evidence, "verdict": verdict}


def row(claim: str, result: str, evidence: str, word: str) -> dict:
    """One verdict: the claim's id in :data:`CLAIMS`, our result (with its interval), the strength of the
    evidence in words, and one of :data:`VERDICTS`."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; claims: {', '.join(CLAIMS)}")
    c = CLAIMS[claim]
    out = verdict(f"“{c.quote}”", result, evidence, word)
    return {"claim": out["claim"], "source": c.source, "tested": c.tested, "result": out["result"],
            "evidence": out["evidence"], "verdict": out["verdict"]}


def descriptive(claim: str, result: str) -> dict:
    """A row for a statement of the paper that no outcome could refute ("we designed", "we analysed"):
    what this book did about it, labelled "descriptive" and counted apart in the scorecard."""
    return row(claim, result, DESCRIPTIVE_EVIDENCE, "descriptive")


def decide(passed, *, robust: bool = True, null_can_fail=True) -> str:
    """The one rule set behind every verdict word of a tested claim.

    passed: for each of the claim's tests, whether it passes: its p-value after the book's correction is
    below 0.05 and its effect's interval lies beyond the null (bool or a sequence of bool).
    robust: whether every passing test still passes (interval beyond the null) in the robustness views
    (other partition seeds, the neuron view, other definitions).
    null_can_fail: for each test (or one bool for all), whether its null could have rejected the claim on
    some model and text; a test against a null that any model rejects (uniform use, an even spread,
    independent placement) counts as not passing.

    =================================================  ====================
    tests                                              verdict
    =================================================  ====================
    no test, or none whose null could fail             not testable here
    every test passes, and robust                      reproduced
    some pass (or all pass but not robust)             partly reproduced
    none passes                                        not reproduced
    =================================================  ====================

    A statement no outcome could refute gets no test and is not decided here: see :func:`descriptive`.
    """
    import numpy as np

    passed = np.atleast_1d(np.asarray(passed, dtype=bool))
    fair = np.broadcast_to(np.atleast_1d(np.asarray(null_can_fail, dtype=bool)), passed.shape)
    if passed.size == 0 or not fair.any():
        return "not testable here"
    ok = passed & fair
    if ok.all() and robust:
        return "reproduced"
    if ok.any():
        return "partly reproduced"
    return "not reproduced"


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
    return ("<!-- Answer box: generated by babel_lib.verdicts.answer_html from results/<chapter>/verdicts.csv "
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

    from . import plots

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
        return f"{without.capitalize()}, every verdict of this chapter stays the same ({n} of {n})."
    moves = "; ".join(f"{r.claim}: {r.verdict} -> {r.verdict_subset}" for r in changed.itertuples())
    return (f"{without.capitalize()}, {n - len(changed)} of {n} verdicts stay the same; "
            f"{len(changed)} change ({moves}).")


def show_sensitivity(full: list[dict], subset: list[dict], without: str, name: str) -> pd.DataFrame:
    """Display :func:`sensitivity` of ``full`` and ``subset`` as a table saved as ``<name>.csv`` (never as
    ``verdicts.csv``: these rows stay out of the scorecard), then :func:`sensitivity_text`; return the
    table. ``without``: what the subset leaves out, as a phrase ('without the 7 languages ...')."""
    from . import plots

    frame = sensitivity(full, subset)
    plots.table(frame, name, columns={"claim": "Claim", "verdict": "All languages", "verdict_subset": without.capitalize(),
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
    text = (f"<!-- Generated by babel_lib.verdicts.write_scorecard from results/*/verdicts.csv: do not edit. -->\n\n"
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
    from .cache import atomic_write_bytes

    path = Path(book_dir) / "scorecard.md"
    text = scorecard_markdown(book_dir)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_bytes(path, text.encode("utf-8"))
    return path
