"""Content-addressed, atomic store of expensive results (partitions, counts, tuned models).

A result's key is the SHA-256 of a canonical JSON of everything that changes it
(model fingerprint, partition key, corpus slice, definitions, dtype, code version), so a
changed parameter can never reuse a stale result. Files are written to a temp
file in the same folder and renamed (atomic on POSIX); a file that cannot be read
back (truncated, corrupted) is moved aside with a warning and recomputed.

Layout: ``$BABEL_CACHE/<kind>/<key[:2]>/<key>.npz`` (arrays + a JSON ``__meta__``).
``BABEL_CACHE`` defaults to ``$XDG_CACHE_HOME/babel`` or ``~/.cache/babel``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

# Bump when a change to the code changes cached numbers: every old entry then misses.
CODE_VERSION = "1"


def cache_root() -> Path:
    """The cache folder: $BABEL_CACHE, else $XDG_CACHE_HOME/babel, else ~/.cache/babel."""
    env = os.environ.get("BABEL_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "babel"


def shown_path(path) -> str:
    """*path* as printed in results: ``$BABEL_CACHE/...`` when it lies in the cache, else its name
    (executed chapters are published and must not carry this machine's folders)."""
    path = Path(path).resolve()
    try:
        return "$BABEL_CACHE/" + path.relative_to(cache_root().resolve()).as_posix()
    except ValueError:
        return path.name


def _canonical(obj):
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def cache_key(parts: dict) -> str:
    """SHA-256 (hex) of the canonical JSON of ``parts`` plus the code version."""
    text = json.dumps({"code_version": CODE_VERSION, **_canonical(parts)}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _normal_mode(path, mode: int) -> None:
    """Give a mkstemp/mkdtemp result (private: 0600/0700) the mode a new file/folder normally gets."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextmanager
def atomic_folder(target) -> Iterator[Path]:
    """Build a folder atomically: yields a temporary sibling of ``target`` to fill; on success it is
    renamed to ``target`` (an older ``target`` is replaced), on any error it is removed and
    ``target`` is left as it was. Readers never see a half-written folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-", suffix=".tmp"))
    try:
        yield tmp
        _normal_mode(tmp, 0o777)
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-", suffix=".old"))
            os.replace(target, old / "replaced")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _normal_mode(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Store:
    """The result store. ``Store()`` uses :func:`cache_root`."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else cache_root()

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key[:2] / f"{key}.npz"

    def save(self, kind: str, parts: dict, arrays: dict[str, np.ndarray], meta: dict | None = None) -> Path:
        """Store ``arrays`` under the key of ``parts``, atomically. Returns the file path."""
        key = cache_key(parts)
        buf = io.BytesIO()
        meta_json = json.dumps({"kind": kind, "parts": _canonical(parts), "meta": _canonical(meta or {})})
        np.savez_compressed(buf, __meta__=np.array(meta_json), **arrays)
        path = self.path(kind, key)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def load(self, kind: str, parts: dict) -> tuple[dict[str, np.ndarray], dict] | None:
        """The stored arrays and meta for ``parts``, or None when absent or unreadable.

        An unreadable file is moved aside to ``*.corrupt`` with a warning (kept for
        inspection, never reused).
        """
        path = self.path(kind, cache_key(parts))
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(str(arrays.pop("__meta__")))
        except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError, json.JSONDecodeError) as exc:
            aside = path.with_suffix(".corrupt")
            os.replace(path, aside)
            warnings.warn(
                f"Cache file {path} is unreadable ({exc.__class__.__name__}: {exc}); moved to {aside.name} "
                "and the result will be recomputed.",
                RuntimeWarning,
                stacklevel=2,
            )
            return None
        return arrays, meta.get("meta", {})

    def get_or_compute(
        self, kind: str, parts: dict, compute: Callable[[], tuple[dict[str, np.ndarray], dict]]
    ) -> tuple[dict[str, np.ndarray], dict]:
        """Load the result for ``parts`` or compute, store and return it.

        ``compute()`` returns (arrays, meta).
        """
        hit = self.load(kind, parts)
        if hit is not None:
            return hit
        arrays, meta = compute()
        self.save(kind, parts, arrays, meta)
        return arrays, meta

    def entries(self) -> list[dict]:
        """One dict per stored file: kind, key, bytes, path, and its key parts."""
        out = []
        if not self.root.exists():
            return out
        for path in sorted(self.root.glob("*/*/*.npz")):
            row = {"kind": path.parent.parent.name, "key": path.stem, "bytes": path.stat().st_size, "path": str(path)}
            try:
                with np.load(path, allow_pickle=False) as npz:
                    row["parts"] = json.loads(str(npz["__meta__"])).get("parts", {})
            except Exception:  # noqa: BLE001 - a listing must not fail on one bad file
                row["parts"] = {"error": "unreadable"}
            out.append(row)
        return out

    def clear(self, kind: str | None = None) -> int:
        """Delete stored results (all, or one kind). Returns the number of files removed."""
        target = self.root / kind if kind else self.root
        if not target.exists():
            return 0
        n = sum(1 for _ in target.rglob("*") if _.is_file())
        shutil.rmtree(target)
        return n
