"""Faults: a profiling run killed with SIGKILL loses nothing it finished and leaves no corrupt file."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from babel_lib.core.cache import Store
from babel_lib.experts.moefy import build_partition
from babel_lib.testing import tiny_model

LANGS = [f"l{i:02d}" for i in range(40)]

CHILD = textwrap.dedent("""
    import sys
    from babel_lib.core.cache import Store
    from babel_lib.data.corpus import Passages
    from babel_lib.experts.moefy import build_partition
    from babel_lib.experts.profile import profile_passages
    from babel_lib.testing import tiny_model

    langs = [f"l{i:02d}" for i in range(40)]
    text = {l: [f"Paragraph in language {l}, number {i}." for i in range(40)] for l in langs}
    lm = tiny_model("llama")
    store = Store(sys.argv[1])
    part = build_partition(lm, expert_size=16, method="random", store=store)
    profile_passages(lm, part, Passages("udhr", "calibration", [f"p{i}" for i in range(40)], langs, text),
                     max_tokens_per_language=1500, max_length=64, store=store, progress=False)
""")


def _passages():
    from babel_lib.data.corpus import Passages

    text = {l: [f"Paragraph in language {l}, number {i}." for i in range(40)] for l in LANGS}
    return Passages("udhr", "calibration", [f"p{i}" for i in range(40)], LANGS, text)


def test_kill9_during_profiling_loses_nothing(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(root)])
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            done = list((root / "counts").rglob("*.npz")) if (root / "counts").exists() else []
            if len(done) >= 2:
                break
            assert proc.poll() is None, "the child finished or crashed before it could be killed"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = Store(root)
    rows = [e for e in store.entries() if e["kind"] == "counts"]
    # a write the kill interrupted leaves its temporary file, listed as a leftover with its problem named;
    # it is never read as a result (it can even be complete: killed between fsync and rename)
    finished = [e for e in rows if e["problem"] is None]
    assert all("interrupted write" in e["problem"] for e in rows if e["problem"] is not None)
    assert 2 <= len(finished) < len(LANGS)
    for e in finished:  # every file under a real name reads back
        with np.load(e["path"]) as npz:
            assert npz["counts"].shape[1:] == (2, 8)  # [passages, layers, experts]

    import babel_lib.experts.profile as prof

    calls = []
    real = prof.count_windows
    monkeypatch.setattr(prof, "count_windows", lambda *a, **k: calls.append(1) or real(*a, **k))
    lm = tiny_model("llama")
    part = build_partition(lm, expert_size=16, method="random", store=store)
    result = prof.profile_passages(lm, part, _passages(), max_tokens_per_language=1500, max_length=64, store=store,
                                   progress=False)
    assert len(calls) == len(LANGS) - len(finished)  # only the unfinished languages were recomputed
    assert (result.tokens > 0).all()


# ------------------------------------------------------------------------------ corruption that must heal
def _damage_deflate_stream(path, member="a.npy"):
    """Overwrite the start of one member's deflate data: reading it raises zlib.error, not BadZipFile."""
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    data = bytearray(path.read_bytes())
    name_len, extra_len = int.from_bytes(data[info.header_offset + 26: info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28: info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    data[start: start + 16] = b"\xff" * 16  # block type 3 (reserved): invalid
    path.write_bytes(bytes(data))


def test_corrupted_deflate_stream_is_recomputed_and_heals(tmp_path):
    import zlib

    store = Store(tmp_path)
    parts = {"language": "eng"}
    path = store.save("counts", parts, {"a": np.arange(10_000)})
    _damage_deflate_stream(path)
    with np.load(path) as npz:  # the damage is of the kind that raised zlib.error on every rerun
        try:
            npz["a"]
        except zlib.error:
            pass
        else:
            raise AssertionError("the file was not damaged as intended")
    with __import__("pytest").warns(RuntimeWarning, match="unreadable.*recomputed"):
        arrays, _ = store.get_or_compute("counts", parts, lambda: ({"a": np.arange(10_000) * 2}, {}))
    assert (arrays["a"] == np.arange(10_000) * 2).all()
    assert path.with_suffix(".corrupt").exists()
    arrays, _ = store.get_or_compute("counts", parts, lambda: 1 / 0)  # healed: read back, not recomputed
    assert (arrays["a"] == np.arange(10_000) * 2).all()


def test_any_read_failure_counts_as_corruption(tmp_path, monkeypatch):
    """Whatever the reader raises (here a made-up error), the entry is moved aside, never fatal."""
    import pytest

    store = Store(tmp_path)
    parts = {"x": 1}
    path = store.save("counts", parts, {"a": np.arange(5)})
    real = np.load

    def broken(*a, **k):
        raise MemoryError("cannot read")  # not among the exception types a narrow except clause lists

    monkeypatch.setattr(np, "load", broken)
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert store.load("counts", parts) is None
    monkeypatch.setattr(np, "load", real)
    assert path.with_suffix(".corrupt").exists() and not path.exists()


# ------------------------------------------------------------------------------ concurrent writers
def _writer(target, barrier, payload, queue):
    from babel_lib.core.cache import atomic_folder

    try:
        with atomic_folder(target) as tmp:
            (tmp / "a.bin").write_bytes(payload * 1000)
            (tmp / "b.bin").write_bytes(payload * 1000)
            barrier.wait(timeout=60)  # every writer finishes at the same moment
        queue.put(None)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put(f"{exc.__class__.__name__}: {exc}")


def _race(target, trials=20, writers=4):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    errors = []
    for trial in range(trials):
        barrier, queue = ctx.Barrier(writers), ctx.Queue()
        procs = [ctx.Process(target=_writer, args=(target, barrier, bytes([i + 1]), queue)) for i in range(writers)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        errors += [f"trial {trial}: {r}" for r in results if r]
        a, b = (target / "a.bin").read_bytes(), (target / "b.bin").read_bytes()
        assert a == b and len(set(a)) == 1, "a folder mixed from two writers"  # one writer's complete folder
    return errors


def test_atomic_folder_two_writers_creating_at_once(tmp_path):
    import shutil

    errors = []
    for trial in range(20):
        target = tmp_path / f"t{trial}" / "model"
        errors += _race(target, trials=1)
        shutil.rmtree(target.parent)
    assert not errors, errors
    assert not list(tmp_path.iterdir())


def test_atomic_folder_writers_replacing_at_once(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "a.bin").write_bytes(b"\x00")
    (target / "b.bin").write_bytes(b"\x00")
    assert not _race(target, trials=20)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left behind


def test_atomic_folder_never_replaces_a_file(tmp_path):
    import pytest

    from babel_lib.core.cache import atomic_folder

    target = tmp_path / "out"
    target.write_text("user data")
    with pytest.raises(FileExistsError, match="not a folder"):
        with atomic_folder(target) as tmp:
            (tmp / "x").write_text("x")
    assert target.read_text() == "user data"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# ------------------------------------------------------------------------------ damaged converted model
def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


import pytest  # noqa: E402


@pytest.mark.parametrize("file", ["model.safetensors", "tokenizer.json", "tokenizer_config.json"])
def test_truncated_converted_model_is_rebuilt(file, tmp_path, monkeypatch):
    """A converted offline model with a file cut short (the weights, the tokenizer's JSON files) is rebuilt
    with a warning naming the file, not loaded (the same error on every rerun), and `cache list` flags it."""
    from babel_lib.core import models
    from babel_lib.core.cache import Store

    monkeypatch.setenv("BABEL_CACHE", str(tmp_path))
    entry = models.OfflineModel("tiny-offline", "no_such_package", "a tiny test model")
    monkeypatch.setitem(models.OFFLINE_MODELS, entry.name, entry)
    builds = []

    def build(entry, out):  # stands in for the GGUF conversion
        lm = tiny_model("llama")
        lm.model.save_pretrained(out)
        (out / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0}}}')
        (out / "tokenizer_config.json").write_text('{"model_max_length": 128, "tokenizer_class": "Fast"}')
        builds.append(out)

    monkeypatch.setattr(models, "_build_converted", build)
    folder = models._convert_offline(entry)
    assert len(builds) == 1 and models.verify_model_folder(folder) is None
    assert models._convert_offline(entry) == folder and len(builds) == 1  # a sound folder is reused
    _truncate(folder / file)
    monkeypatch.setattr("babel_lib.core.cache.OFFLINE_MODEL_NAMES", ("tiny-offline",))
    assert file in Store(tmp_path).entries()[0]["problem"]
    with pytest.warns(RuntimeWarning, match=f"(?s)damaged.*{file}.*rebuilding"):
        assert models._convert_offline(entry) == folder
    assert len(builds) == 2 and models.verify_model_folder(folder) is None
