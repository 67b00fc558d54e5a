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
import glob
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from babel_lib.core.errors import InputError, OutputPathError

# Bump when a change to the code changes cached numbers: every old entry then misses.
CODE_VERSION = "1"

#: Every kind of result the project stores; ``Store.clear`` touches nothing else.
KINDS = ("partition", "counts", "importance", "perplexity", "agreement", "tune_eval", "tuned", "models")
#: Kinds stored as model folders (``<kind>/<name>/config.json, ...``) rather than ``.npz`` files.
FOLDER_KINDS = ("models", "tuned")
_PLAIN_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_KEY_FILE = re.compile(r"^\.?[0-9a-f]{64}\.npz(\..*\.tmp)?$|^[0-9a-f]{64}\.corrupt$")


#: Names of the folders the project writes under the folder kinds; ``Store.clear`` removes no other
#: folder there. models/: the converted offline models (babel_lib.core.models.OFFLINE_MODELS, named here so
#: that clearing never imports torch; a test checks they are equal); tuned/: 16 hex digits of a key.
OFFLINE_MODEL_NAMES = ("gemma-3-270m", "smollm2-135m-instruct", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
_TUNED_NAME = re.compile(r"^[0-9a-f]{16}$")
#: A temporary file or folder of a write in progress: ``.<owner>.pid<N>.<random>.<tmp|old|stage>`` (the
#: writing process named, so a leftover of a killed one is told from a live write); older writes had no
#: pid (``.<owner>-<random>.tmp``, ``.<owner>.<random>.tmp``).
_TEMPORARY = re.compile(r"^\.(?P<owner>.+?)\.pid(?P<pid>\d+)\.[a-z0-9_]+\.(?:tmp|old|stage)$")
_TEMPORARY_OLD = re.compile(r"^\.(?P<owner>.+?)[-.][a-z0-9_]{8}\.(?:tmp|old|stage)$")
#: A temporary without a pid counts as left over once it is this old (seconds).
STALE_AFTER = 24 * 3600


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


def normal_mode(path, mode: int) -> None:
    """Give a mkstemp/mkdtemp result (private: 0600/0700) the mode a new file/folder normally gets."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def temporary_prefix(target: Path) -> str:
    """The name prefix of a temporary sibling of ``target``: hidden, naming this process."""
    return f".{Path(target).name}.pid{os.getpid()}."


def temporary_owner(name: str) -> tuple[str, int | None] | None:
    """(the name it is written for, the writing process or None) of a temporary file or folder's name;
    None for any other name."""
    match = _TEMPORARY.match(name)
    if match:
        return match["owner"], int(match["pid"])
    match = _TEMPORARY_OLD.match(name)
    return (match["owner"], None) if match else None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def is_stale(path: Path) -> bool:
    """Whether a temporary file or folder is left over from a killed write: its process has ended (or,
    without a pid, it is older than :data:`STALE_AFTER`). A write in progress is never stale."""
    owner = temporary_owner(path.name)
    if owner is None:
        return False
    if owner[1] is not None:
        return owner[1] != os.getpid() and not _running(owner[1])
    try:
        return time.time() - path.lstat().st_mtime > STALE_AFTER
    except FileNotFoundError:
        return False


def _remove(path: Path) -> int:
    """Delete a file or a folder tree (not following links); the number of files removed."""
    if path.is_dir() and not path.is_symlink():
        n = sum(1 for f in path.rglob("*") if f.is_file() or f.is_symlink())
        shutil.rmtree(path, ignore_errors=True)
        return n
    path.unlink(missing_ok=True)
    return 1


def remove_stale_temporaries(folder: Path, owner: str) -> None:
    """Delete the leftovers of killed writes of ``owner`` in ``folder`` (never a write in progress)."""
    try:
        siblings = list(Path(folder).glob(f".{glob.escape(owner)}*"))
    except OSError:
        return
    for path in siblings:
        found = temporary_owner(path.name)
        if found and found[0] == owner and is_stale(path):
            _remove(path)


def _remove_stale_temporaries(target: Path) -> None:
    remove_stale_temporaries(target.parent, target.name)


@contextmanager
def atomic_folder(target, replace: bool | None = None) -> Iterator[Path]:
    """Build a folder atomically: yields a temporary sibling of ``target`` to fill; on success it is
    renamed to ``target``, on any error it is removed and ``target`` is left as it was. Readers never
    see a half-written folder. An existing file is never replaced (FileExistsError).

    replace: None (the cache's rule) replaces a folder that existed when the write began, and keeps
    one that another process completed meanwhile (ours is discarded: concurrent writers of the same
    entry); True replaces an existing folder; False never replaces anything: a file or folder that
    appears at ``target`` meanwhile is kept and :class:`OutputPathError` raised (a user's output
    without --force)."""
    target = Path(target)
    if replace is False and (target.exists() or target.is_symlink()):
        raise _appeared(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} is a file, not a folder: it is never replaced by a folder")
    existed = target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=temporary_prefix(target), suffix=".tmp"))
    try:
        yield tmp
        normal_mode(tmp, 0o777)
        if replace is False:
            _commit_new_folder(tmp, target)
        else:
            _commit_folder(tmp, target, replace=existed or bool(replace))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _appeared(target: Path) -> OutputPathError:
    return OutputPathError(f"output {target} appeared while the result was being written; it is kept and nothing "
                           "was written there. Choose another path, or pass --force to replace it.")


def _commit_new_folder(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target`` where nothing is: the name is claimed first with mkdir (atomic), and
    the rename onto that empty folder fails if anything was put in it meanwhile. Never replaces what
    another process or the user put there (:class:`OutputPathError`)."""
    try:
        target.mkdir()
    except FileExistsError:
        raise _appeared(target) from None
    try:
        os.replace(tmp, target)
    except OSError as exc:
        try:
            target.rmdir()  # ours, if it is still empty
        except OSError:
            pass
        raise _appeared(target) from exc


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
            old = old or Path(tempfile.mkdtemp(dir=target.parent, prefix=temporary_prefix(target), suffix=".old"))
            try:
                os.replace(target, old / f"replaced-{len(os.listdir(old))}")
            except FileNotFoundError:
                pass  # another writer moved it aside first
        raise OSError(f"could not put {target} in place: other processes keep replacing it")
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: Path, data: bytes, replace: bool = True) -> None:
    """Write ``data`` to ``path`` via a temp file + fsync + rename: readers never see a partial file.
    replace=False never replaces a file that appeared at ``path`` meanwhile (a hard link, atomic: the
    file is kept and :class:`OutputPathError` raised)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        normal_mode(tmp, 0o666)
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails when anything is at path
            except FileExistsError:
                raise _appeared(path) from None
            os.unlink(tmp)
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
        :func:`babel_lib.core.validate.verify_model_folder`; leftovers of killed writes are listed with
        their problem (``babel cache clear`` removes them)."""
        from babel_lib.core.validate import verify_model_folder

        out = []
        for kind in KINDS:
            folder = self.root / kind
            if not folder.is_dir():
                continue
            if kind in FOLDER_KINDS:
                for sub in sorted(folder.iterdir()):
                    if _project_folder(kind, sub.name) and sub.is_dir() and not sub.is_symlink():
                        out.append({"kind": kind, "key": sub.name, "bytes": _size(sub), "path": str(sub),
                                    "parts": {}, "problem": verify_model_folder(sub)})
                    elif _project_leftover(kind, sub) and is_stale(sub):
                        out.append(_leftover_row(kind, sub))
                continue
            for path in sorted(folder.glob("*/*")):
                if _KEY_FILE.match(path.name) and temporary_owner(path.name):
                    if is_stale(path):
                        out.append(_leftover_row(kind, path))
                    continue
                if not path.name.endswith(".npz") or not path.is_file():
                    continue
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
            raise InputError(f"unknown cache kind {kind!r}; kinds: {', '.join(KINDS)}")
        folder = self.root / kind
        if folder.is_symlink() or (folder.exists() and not folder.resolve().is_relative_to(self.root.resolve())):
            raise InputError(f"cache kind folder {folder} leads outside the cache {self.root}; refusing to clear it "
                             "(remove the link by hand)")
        return folder

    def clear(self, kind: str | None = None) -> int:
        """Delete stored results (all kinds, or one of :data:`KINDS`). Returns the number of files removed.

        Only files the project writes are removed: ``<key>.npz``, ``<key>.corrupt`` and their temporary
        files under each kind, the converted models under models/ (:data:`OFFLINE_MODEL_NAMES`), the tuned
        models under tuned/ (named by a key) and the temporary folders of their writes. Other files and
        folders stay (a model folder of the user's own under models/ too), and so do the cache folder
        itself and any folder still holding them.
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


def _project_folder(kind: str, name: str) -> bool:
    """Whether ``<kind>/<name>`` is a model folder the project writes (a converted or a tuned model)."""
    return name in OFFLINE_MODEL_NAMES if kind == "models" else bool(_TUNED_NAME.match(name))


def _project_leftover(kind: str, path: Path) -> bool:
    """Whether ``path`` is a temporary file or folder of a write of one of the project's model folders."""
    owner = temporary_owner(path.name)
    return owner is not None and _project_folder(kind, owner[0])


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())


def _leftover_row(kind: str, path: Path) -> dict:
    """A listing row for the leftover of a killed write."""
    size = _size(path) if path.is_dir() else path.lstat().st_size
    return {"kind": kind, "key": path.name, "bytes": size, "path": str(path), "parts": {},
            "problem": "left over by an interrupted write (its process has ended); `babel cache clear` removes it"}


def _clear_models(folder: Path) -> int:
    """Remove the project's model folders of models/ or tuned/ (:func:`_project_folder`) and the
    temporary folders of their writes; any other folder stays (a user's own model included)."""
    removed = 0
    for sub in folder.iterdir():
        if sub.is_symlink():
            continue
        if (_project_folder(folder.name, sub.name) and sub.is_dir()) or _project_leftover(folder.name, sub):
            removed += _remove(sub)
    return removed


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: it holds files the project did not write
