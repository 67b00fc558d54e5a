"""The paper's claims, each chapter's verdict on them, and the book's reproduction scorecard.

Claims are quoted from the paper's abstracts (:data:`CLAIMS`); where an abstract names a question
rather than a result, the claim tested is stated as such (``tested``). A chapter ends with a
verdict table (:func:`show`), saved as ``results/<chapter>/verdicts.csv``; the intro's scorecard
(:func:`write_scorecard`, ``book/scorecard.md``) is generated from those files by the book runner
and the build, never written by hand.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: The verdict words of every table (one per row).
VERDICTS = ("reproduced", "partly reproduced", "not reproduced", "not testable here")

EMNLP = "EMNLP 2024 abstract"
ARXIV_V1 = "arXiv v1 abstract (Feb 2024)"


@dataclass(frozen=True)
class Claim:
    """A claim of the paper: the words quoted, where they come from, and what this book tests
    when the words name a question rather than a result."""

    quote: str
    source: str
    tested: str = ""


CLAIMS: dict[str, Claim] = {
    "moefication": Claim(
        "We designed a method to convert dense LLMs into fine-grained MoE architectures", EMNLP,
        "the converted model with every expert on is the dense model, and its activated experts carry more of "
        "the activation than a random grouping of neurons"),
    "heatmaps": Claim(
        "we analyzed the similarities and differences in the internal neuron activation patterns of LLMs "
        "when processing different languages", EMNLP,
        "languages share a common map of frequently used experts and depart from it measurably beyond "
        "sampling noise"),
    "specific_neurons": Claim(
        "We discover the existence of non-language-specific neurons as well as language-specific activation "
        "neurons.", ARXIV_V1),
    "high_frequency": Claim(
        "we investigated the distribution of high-frequency activated experts", EMNLP,
        "high-frequency experts exist and are not spread evenly over the depth of the network"),
    "shared": Claim(
        "multilingual shared experts", EMNLP,
        "some experts are high-frequency in every language (shared), beyond what chance overlap gives"),
    "families": Claim(
        "whether multilingual activation patterns are related to language families", EMNLP,
        "languages of one family have closer activation profiles than languages of different families"),
    "families_v1": Claim(
        "demonstrate the connections of these activation patterns at the level of language families", ARXIV_V1),
    "model_families": Claim(
        "Through comprehensive experiments on different model families, different model sizes, and different "
        "variants", EMNLP,
        "the patterns found in one model (depth profile, language distances) hold in a model of another family"),
    "model_sizes": Claim(
        "Through comprehensive experiments on different model families, different model sizes, and different "
        "variants", EMNLP,
        "the patterns hold across sizes of one model family and across variants of one model"),
    "instruction_tuning": Claim(
        "the impact of instruction tuning on activation patterns", EMNLP,
        "instruction tuning changes a language's activation profile beyond sampling noise"),
    "beats_random": Claim("our method significantly outperformed random expert pruning", EMNLP),
    "beats_dense": Claim("and even exceeded the performance of unpruned models in some languages", EMNLP),
    "layerwise": Claim(
        "configuring different pruning rates for different layers based on activation level differences could "
        "achieve better results", EMNLP),
    "sparse_activation": Claim(
        "merely leveraging high-frequency activation neurons can accelerate inference while maintaining "
        "comparable performance", ARXIV_V1),
    "cross_domain": Claim(
        "(not in the paper) the activation patterns belong to the language rather than to the text", "this book",
        "a language's profile on one corpus is closer to its own profile on another corpus than to other "
        "languages' profiles on the same corpus"),
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


def table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def markdown(frame: pd.DataFrame, chapter_links: bool = False) -> str:
    """A Markdown table of verdicts (pipes escaped); with ``chapter_links`` a first column links to
    each row's chapter."""
    def cell(text) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    head = (["Chapter"] if chapter_links else []) + ["Claim (source)", "Our result", "Evidence", "Verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in frame.iterrows():
        claim = f"{r['claim']} ({r['source']})"
        if r.get("tested"):
            claim += f"; tested: {r['tested']}"
        cells = ([f"[{r['title']}]({r['chapter']}.ipynb)"] if chapter_links else []) + \
            [claim, r["result"], r["evidence"], f"**{r['verdict']}**"]
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def show(rows: list[dict]):
    """Save the chapter's verdicts (``verdicts.csv``) and display them as a table."""
    from IPython.display import Markdown, display

    from . import plots

    frame = table(rows)
    plots.save_table(frame, None, "verdicts")
    display(Markdown(markdown(frame)))
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
    card = scorecard(book_dir)
    if card.empty:
        return "No chapter has recorded verdicts yet.\n"
    counts = card["verdict"].value_counts()
    summary = ", ".join(f"{counts[v]} {v}" for v in VERDICTS if v in counts)
    return (f"<!-- Generated by babel_lib.verdicts.write_scorecard from results/*/verdicts.csv: do not edit. -->\n\n"
            f"{len(card)} verdicts from {card['chapter'].nunique()} chapters: {summary}.\n\n"
            + markdown(card, chapter_links=True))


def write_scorecard(book_dir) -> Path:
    """(Re)write ``book_dir/scorecard.md`` (the intro includes it); touched only when it changes."""
    from .cache import atomic_write_bytes

    path = Path(book_dir) / "scorecard.md"
    text = scorecard_markdown(book_dir)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_bytes(path, text.encode("utf-8"))
    return path
