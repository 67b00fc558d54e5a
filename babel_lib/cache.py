"""Content-addressed, atomic store of expensive results (partitions, counts, tuned models).

A result's key is the SHA-256 of a canonical JSON of everything that changes it
(model fingerprint, partition key, corpus slice, definitions, dtype, code version), so a
changed parameter can never reuse a stale result. Files are written to a temp
file in the same folder and renamed (atomic on POSIX); a file that cannot be read
back (truncated, corrupted) is moved aside with a warning and recomputed.

Layout: ``$BABEL_CACHE/<kind>/<key[:2]>/<key>.npz`` (arrays + a JSON ``__meta__``); model
folders (converted offline models, tuned models) in ``models/<name>/`` and ``tuned/<key>/``.
``BABEL_CACHE`` defaults to ``$XDG_CACHE_HOME/babel`` or ``~/.cache/babel``. Clearing removes only
these files: the cache may share its folder with other files.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

# Bump when a change to the code changes cached numbers: every old entry then misses.
CODE_VERSION = "1"

#: Every kind of result the project stores; ``Store.clear`` touches nothing else.
KINDS = ("partition", "counts", "importance", "perplexity", "agreement", "tune_eval", "tuned", "models")
#: Kinds stored as model folders (``<kind>/<name>/config.json, ...``) rather than ``.npz`` files.
FOLDER_KINDS = ("models", "tuned")
_PLAIN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_KEY_FILE = re.compile(r"^\.?[0-9a-f]{64}\.npz(\..*\.tmp)?$|^[0-9a-f]{64}\.corrupt$")


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


def _canonical_key(k) -> str:
    """A dict key as text; a non-string key is tagged with its type, so {1: x} and {"1": x} differ."""
    k = _canonical(k)
    return k if isinstance(k, str) else f"{type(k).__name__}:{json.dumps(k)}"


def _canonical(obj):
    """Plain JSON values for hashing: numpy scalars and arrays by value, tuples as lists."""
    if isinstance(obj, dict):
        return dict(sorted(((_canonical_key(k), _canonical(v)) for k, v in obj.items()), key=lambda kv: kv[0]))
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _canonical(obj.tolist())
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
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
    renamed to ``target``, on any error it is removed and ``target`` is left as it was. Readers never
    see a half-written folder. An older ``target`` folder is replaced; an existing file is never
    replaced (FileExistsError). Safe with concurrent writers: when ``target`` did not exist and
    another process completes it first, that folder is kept and ours is discarded."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file, not a folder: it is never replaced by a folder")
    replace = target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-", suffix=".tmp"))
    try:
        yield tmp
        _normal_mode(tmp, 0o777)
        _commit_folder(tmp, target, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _commit_folder(tmp: Path, target: Path, replace: bool) -> None:
    """Rename ``tmp`` to ``target``. A folder that appears meanwhile (a concurrent writer finished first)
    is kept when ``replace`` is false, else moved aside and deleted; retried while writers race."""
    old = None
    try:
        for _ in range(100):
            try:
                os.replace(tmp, target)
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise  # e.g. ENOTDIR: a file appeared there, which is never replaced
            if not replace:  # another writer completed the same folder first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
                return
            old = old or Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-", suffix=".old"))
            try:
                os.replace(target, old / f"replaced-{len(os.listdir(old))}")
            except FileNotFoundError:
                pass  # another writer moved it aside first
        raise OSError(f"could not put {target} in place: other processes keep replacing it")
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


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
        if not isinstance(kind, str) or not _PLAIN_NAME.match(kind):
            raise ValueError(f"cache kind must be a plain name such as 'counts' (lower-case letters, digits, _), "
                             f"got {kind!r}")
        return self.root / kind / key[:2] / f"{key}.npz"

    def save(self, kind: str, parts: dict, arrays: dict[str, np.ndarray], meta: dict | None = None) -> Path:
        """Store ``arrays`` under the key of ``parts``, atomically. Returns the file path."""
        key = cache_key(parts)
        path = self.path(kind, key)
        buf = io.BytesIO()
        meta_json = json.dumps({"kind": kind, "parts": _canonical(parts), "meta": _canonical(meta or {})})
        np.savez_compressed(buf, __meta__=np.array(meta_json), **arrays)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def load(self, kind: str, parts: dict) -> tuple[dict[str, np.ndarray], dict] | None:
        """The stored arrays and meta for ``parts``, or None when absent or unreadable.

        Any failure to read the file back (truncated, bad zip, damaged deflate stream, bad meta)
        moves it aside to ``*.corrupt`` with a warning (kept for inspection, never reused).
        """
        path = self.path(kind, cache_key(parts))
        if not path.exists():
            return None
        try:
            arrays, meta = _read(path)
        except Exception as exc:  # noqa: BLE001 - whatever the damage, recompute instead of failing forever
            aside = path.with_suffix(".corrupt")
            try:
                os.replace(path, aside)
            except FileNotFoundError:
                pass  # another process moved it aside first
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
        """One dict per stored result: kind, key, bytes, path, its key parts and ``problem`` (None when
        it reads back; else what is wrong). Model folders (models/, tuned/) are checked with
        :func:`babel_lib.validate.verify_model_folder`."""
        from .validate import verify_model_folder

        out = []
        for kind in KINDS:
            folder = self.root / kind
            if not folder.is_dir():
                continue
            if kind in FOLDER_KINDS:
                for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                    size = sum(f.stat().st_size for f in sub.rglob("*") if f.is_file())
                    out.append({"kind": kind, "key": sub.name, "bytes": size, "path": str(sub), "parts": {},
                                "problem": verify_model_folder(sub)})
                continue
            for path in sorted(folder.glob("*/*.npz")):
                row = {"kind": kind, "key": path.stem, "bytes": path.stat().st_size, "path": str(path),
                       "parts": {}, "problem": None}
                try:
                    _, meta = _read(path)
                    row["parts"] = meta.get("parts", {})
                except Exception as exc:  # noqa: BLE001 - a listing reports damage, it does not fail on it
                    row["problem"] = f"unreadable ({exc.__class__.__name__}: {exc})"
                out.append(row)
        return out

    def _kind_folder(self, kind: str) -> Path:
        """The folder of one known kind, refusing anything that is not one or leads outside the root."""
        if kind not in KINDS:
            raise ValueError(f"unknown cache kind {kind!r}; kinds: {', '.join(KINDS)}")
        folder = self.root / kind
        if folder.is_symlink() or (folder.exists() and not folder.resolve().is_relative_to(self.root.resolve())):
            raise ValueError(f"cache kind folder {folder} leads outside the cache {self.root}; refusing to clear it "
                             "(remove the link by hand)")
        return folder

    def clear(self, kind: str | None = None) -> int:
        """Delete stored results (all kinds, or one of :data:`KINDS`). Returns the number of files removed.

        Only files the project writes are removed: ``<key>.npz``, ``<key>.corrupt`` and their temporary
        files under each kind, and model folders (holding config.json) under models/ and tuned/. Other
        files stay, and so do the cache folder itself and any folder still holding them.
        """
        folders = [self._kind_folder(k) for k in ([kind] if kind is not None else KINDS)]  # check all first
        removed = 0
        for folder in folders:
            if folder.is_dir():
                removed += _clear_models(folder) if folder.name in FOLDER_KINDS else _clear_results(folder)
                _remove_if_empty(folder)
        return removed


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """Every array of a stored file, fully read and decompressed, and its meta (raises on any damage)."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: np.array(npz[k]) for k in npz.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    if not isinstance(meta, dict):
        raise ValueError("the __meta__ entry is not a JSON object")
    return arrays, meta


def _clear_results(folder: Path) -> int:
    """Remove the result files of one kind (``<kind>/<xx>/<key>.npz`` and their .corrupt/.tmp companions)."""
    removed = 0
    for shard in folder.iterdir():
        if shard.is_symlink() or not shard.is_dir() or not re.fullmatch(r"[0-9a-f]{2}", shard.name):
            continue
        for path in shard.iterdir():
            if not path.is_symlink() and path.is_file() and _KEY_FILE.match(path.name):
                path.unlink()
                removed += 1
        _remove_if_empty(shard)
    return removed


def _clear_models(folder: Path) -> int:
    """Remove the model folders of models/ or tuned/: folders holding config.json, and the hidden
    temporary folders of interrupted writes (``.<name>-*.tmp``, ``.old``)."""
    removed = 0
    for sub in folder.iterdir():
        if sub.is_symlink() or not sub.is_dir():
            continue
        leftover = sub.name.startswith(".") and sub.name.endswith((".tmp", ".old"))
        if leftover or (sub / "config.json").is_file():
            removed += sum(1 for f in sub.rglob("*") if f.is_file())
            shutil.rmtree(sub)
    return removed


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: it holds files the project did not write
