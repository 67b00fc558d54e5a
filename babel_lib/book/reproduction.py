"""The reproduction contract: what a rerun of a chapter must reproduce, on any x86-64 machine.

``babel verify`` re-executes a chapter and compares every file of its results folder with the
committed one (:func:`compare_results`). A forward pass on another CPU (another vector width,
thread count or BLAS code path) rounds differently in the last bits; that moves a few top-k
decisions at the boundary (an expert's count by a token or two), and through them every statistic
computed from the counts, by little. What can move, and by how much, is stated here once:

==============  ==========================================================  ===============================
class           which columns (decided by whole words of the column name)    rule
==============  ==========================================================  ===============================
exact           text, labels, booleans; any column named by a word of the      equal
                fixed text or design (:data:`FIXED_WORDS`: tokens,
                characters, passages, layer, ...); integers below 1,000
model           every other number: computed through the model's float         ``|new - old| <= MODEL_ATOL +
                arithmetic (frequencies, statistics, intervals, p-values,      MODEL_RTOL * |old|``
                perplexities)
numbers in      the words must be equal; each number written in the text       within one unit of its last
text            follows the model rule, or moves by one unit of its last        printed digit, or the model rule
                printed digit (rounding)
timing          a word of :data:`TIMING_WORDS` (seconds, speedup, ...) in the  reported, not compared
                name, and text columns listed in :data:`TIMED_TEXT`
images          ``*.png``                                                       a PNG of the same size (pixels
                                                                                follow the numbers: not compared)
chart data      ``*.vl.json``: the same JSON, its inline data rows compared     as the columns of a table
                field by field with the column rules
==============  ==========================================================  ===============================

The bounds were measured, not guessed: chapter 02 rerun with one thread instead of two, with
AVX2 instead of AVX-512 kernels (``ATEN_CPU_CAPABILITY``, ``MKL_ENABLE_INSTRUCTIONS``,
``ONEDNN_MAX_CPU_ISA``) and with MKL's conditional-numerical-reproducibility mode; the README's
"What a rerun reproduces" gives what moved. Integers are model quantities too (a count of
high-frequency experts can move by one), but an integer below 1,000 (a number of languages, a rank)
only moves with a flipped decision, so the model rule keeps it exact.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path

#: Absolute and relative tolerance of a number computed through the model's float arithmetic:
#: one activation in 1,000 tokens of a frequency; a perplexity to 0.1%.
MODEL_ATOL = 1e-3
MODEL_RTOL = 1e-3
#: Words of a column name that mark a quantity of the fixed text or the design, not of the model:
#: such columns must be equal. Whole words: ``tokens_ratio`` is fixed, ``concentration`` is not.
FIXED_WORDS = frozenset({
    "tokens", "characters", "passages", "words", "chars", "character", "token", "passage",
    "layer", "layers", "expert", "experts_per_layer", "neurons", "units", "step", "examples",
    "seed", "rate", "keep", "k", "n", "permutations", "resamples", "pairs", "languages", "texts",
    "top_k_fraction", "uniform_share", "batch", "length", "rounds", "bin", "dendrogram_position",
})
#: Words of a column name that mark a measurement of this machine: reported, never compared.
TIMING_WORDS = frozenset({"seconds", "second", "time", "times", "speedup", "speed", "elapsed", "memory",
                          "rss", "tok_s", "noisy"})
#: Text columns that quote measured timings, per chapter and table: reported, not compared.
TIMED_TEXT = {"10_sparse_activation": {"verdicts.csv": ("result", "evidence")}}

#: Statuses of a comparison row; the last four fail a verification.
STATUSES = ("equal", "within contract", "not compared", "outside contract", "missing", "extra", "shape differs")
FAILING = ("outside contract", "missing", "extra", "shape differs")

_NUMBER = re.compile(r"(?<![\d.])[-+−]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")


def column_words(column: str) -> set[str]:
    """The whole words of a column name (split on ``_``, spaces, ``:``, ``-``, ``/``), lower case;
    multi-word names of :data:`FIXED_WORDS` match too (``top_k_fraction``)."""
    name = str(column).lower().strip()
    words = {w for w in re.split(r"[_\s:/]+", name) if w}
    return words | ({name} if name in FIXED_WORDS or name in TIMING_WORDS else set())


def column_class(column: str, table: str = "", chapter: str = "") -> str:
    """'timing', 'fixed' or 'model' (the rule for numbers; text and booleans are always exact unless timing)."""
    words = column_words(column)
    if words & TIMING_WORDS or "per second" in str(column).lower() or "per_second" in str(column).lower():
        return "timing"
    if column in TIMED_TEXT.get(chapter, {}).get(table, ()):
        return "timing"
    if words & FIXED_WORDS:
        return "fixed"
    return "model"


def model_close(old: float, new: float) -> bool:
    """The model rule for one pair of numbers (NaN equals NaN)."""
    if math.isnan(old) or math.isnan(new):
        return math.isnan(old) and math.isnan(new)
    if math.isinf(old) or math.isinf(new):
        return old == new
    return abs(new - old) <= MODEL_ATOL + MODEL_RTOL * abs(old)


def _parse_number(text: str) -> tuple[float, float]:
    """(value, unit of its last printed digit) of a number as written (``1,501``, ``0.390``, ``9.4e-78``)."""
    clean = text.replace(",", "").replace("−", "-")
    mantissa, _, exponent = clean.lower().partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else None
    scale = 10.0 ** int(exponent) if exponent else 1.0
    unit = (10.0 ** -decimals) * scale if decimals is not None else 0.0  # integers: no rounding allowance
    return float(clean), unit


def text_close(old: str, new: str) -> bool:
    """Two texts agree under the contract: the same words, and each number within one unit of its last
    printed digit or within the model rule (so "9 of 9" must stay, "0.390" may read "0.389")."""
    if old == new:
        return True
    if _NUMBER.sub("#", old) != _NUMBER.sub("#", new):
        return False
    for a, b in zip(_NUMBER.findall(old), _NUMBER.findall(new)):
        (x, unit_x), (y, unit_y) = _parse_number(a), _parse_number(b)
        if x == y:
            continue
        if not (abs(x - y) <= max(unit_x, unit_y) * (1 + 1e-9) or model_close(x, y)):
            return False
    return True


def _row(table: str, column: str, status: str, cls: str = "", rows_differing: int = 0, max_abs: float = math.nan,
         max_rel: float = math.nan) -> dict:
    return {"table": table, "column": column, "class": cls, "status": status, "rows_differing": rows_differing,
            "max_abs_diff": max_abs, "max_rel_diff": max_rel}


def compare_columns(table: str, old, new, chapter: str = "") -> list[dict]:
    """Compare two columns (pandas Series of equal length) of one table under the contract."""
    import numpy as np
    import pandas as pd

    column = str(old.name)
    cls = column_class(column, table, chapter)
    numeric = (pd.api.types.is_numeric_dtype(old) and pd.api.types.is_numeric_dtype(new)
               and not (pd.api.types.is_bool_dtype(old) or pd.api.types.is_bool_dtype(new)))
    if numeric:
        x, y = old.to_numpy(dtype=float), new.to_numpy(dtype=float)
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        diff = np.where(same, 0.0, np.abs(x - y))
        diff = np.where(np.isnan(diff), np.inf, diff)  # NaN on one side only
        max_abs = float(diff.max(initial=0.0))
        max_rel = float(np.max(np.where(same, 0.0, diff / np.maximum(np.abs(x), 1e-300)), initial=0.0))
        differing = int((~same).sum())
        if cls == "timing":
            return [_row(table, column, "not compared", cls, differing, max_abs, max_rel)]
        if differing == 0:
            return [_row(table, column, "equal", cls, 0, 0.0, 0.0)]
        close = cls == "model" and all(model_close(a, b) for a, b in zip(x[~same], y[~same]))
        return [_row(table, column, "within contract" if close else "outside contract", cls, differing, max_abs, max_rel)]
    a = old.astype(str).where(old.notna(), "")
    b = new.astype(str).where(new.notna(), "")
    differing = a != b
    if not differing.any():
        return [_row(table, column, "equal", "exact", 0)]
    if cls == "timing":
        return [_row(table, column, "not compared", cls, int(differing.sum()))]
    close = all(text_close(p, q) for p, q in zip(a[differing], b[differing]))
    return [_row(table, column, "within contract" if close else "outside contract", "text", int(differing.sum()))]


def _compare_csv(name: str, old: Path, new: Path, chapter: str) -> list[dict]:
    import pandas as pd

    a, b = pd.read_csv(old), pd.read_csv(new)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return [_row(name, "", "shape differs")]
    rows = []
    for column in a.columns:
        rows += compare_columns(name, a[column], b[column], chapter)
    return rows


def _json_close(old, new, field: str, table: str, chapter: str) -> bool:
    if isinstance(old, dict) and isinstance(new, dict):
        return old.keys() == new.keys() and all(_json_close(old[k], new[k], k, table, chapter) for k in old)
    if isinstance(old, list) and isinstance(new, list):
        return len(old) == len(new) and all(_json_close(p, q, field, table, chapter) for p, q in zip(old, new))
    if isinstance(old, bool) or isinstance(new, bool) or old is None or new is None:
        return old == new
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        cls = column_class(field, table, chapter)
        return cls == "timing" or old == new or (cls == "model" and model_close(float(old), float(new)))
    if isinstance(old, str) and isinstance(new, str):
        return old == new or column_class(field, table, chapter) == "timing" or text_close(old, new)
    return old == new


def _anonymous_datasets(spec):
    """A Vega-Lite spec with its inline datasets renamed by order (Altair names each by a hash of its
    values, so a change within the contract would rename it)."""
    text = json.dumps(spec)
    for i, name in enumerate((spec.get("datasets") or {}) if isinstance(spec, dict) else {}):
        text = text.replace(json.dumps(name), json.dumps(f"dataset-{i}"))
    return json.loads(text)


def _compare_json(name: str, old: Path, new: Path, chapter: str) -> list[dict]:
    a, b = json.loads(old.read_text(encoding="utf-8")), json.loads(new.read_text(encoding="utf-8"))
    if name.endswith(".vl.json"):
        a, b = _anonymous_datasets(a), _anonymous_datasets(b)
    if a == b:
        return [_row(name, "", "equal", "chart data")]
    return [_row(name, "", "within contract" if _json_close(a, b, "", name, chapter) else "outside contract",
                 "chart data")]


def png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a PNG file, or None when it is not one."""
    head = Path(path).read_bytes()[:24]
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _compare_png(name: str, old: Path, new: Path) -> list[dict]:
    if old.read_bytes() == new.read_bytes():
        return [_row(name, "", "equal", "image")]
    size_old, size_new = png_size(old), png_size(new)
    ok = size_new is not None and size_new == size_old
    return [_row(name, "", "not compared" if ok else "shape differs", "image")]


def compare_results(committed: Path, fresh: Path, chapter: str | None = None) -> "pd.DataFrame":
    """Compare every file of two results folders under the contract; one row per (file, column) of a
    table and one per other file. Columns: table, column, class, status (:data:`STATUSES`),
    rows_differing, max_abs_diff, max_rel_diff. ``chapter`` (default: the committed folder's name)
    selects the chapter's timed text columns."""
    import pandas as pd

    committed, fresh = Path(committed), Path(fresh)
    chapter = chapter or committed.name
    old = {p.name: p for p in committed.iterdir() if p.is_file() and not p.name.startswith(".")}
    new = {p.name: p for p in fresh.iterdir() if p.is_file() and not p.name.startswith(".")} if fresh.is_dir() else {}
    rows: list[dict] = []
    for name in sorted(set(old) | set(new)):
        if name not in new or name not in old:
            rows.append(_row(name, "", "missing" if name not in new else "extra"))
        elif name.endswith(".csv"):
            rows += _compare_csv(name, old[name], new[name], chapter)
        elif name.endswith(".json"):
            rows += _compare_json(name, old[name], new[name], chapter)
        elif name.endswith(".png"):
            rows += _compare_png(name, old[name], new[name])
        else:
            same = old[name].read_bytes() == new[name].read_bytes()
            rows.append(_row(name, "", "equal" if same else "outside contract", "file"))
    return pd.DataFrame(rows, columns=["table", "column", "class", "status", "rows_differing", "max_abs_diff",
                                       "max_rel_diff"])


def summary(report) -> str:
    """One line: REPRODUCED / NOT REPRODUCED and the count of each status."""
    bad = report[report.status.isin(FAILING)]
    counts = report.status.value_counts()
    parts = ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)
    return f"{'REPRODUCED' if bad.empty else 'NOT REPRODUCED'} ({parts})"
