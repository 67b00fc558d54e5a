"""The result store: clearing deletes only what the project wrote, keys are canonical, listings flag damage."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from babel_lib.core.cache import KINDS, Store, cache_key


def _fill(root: Path) -> dict[str, Path]:
    """A cache with one entry of each file kind the project writes, plus user files around it."""
    store = Store(root)
    made = {"counts": store.save("counts", {"x": 1}, {"a": np.arange(3)}),
            "partition": store.save("partition", {"x": 2}, {"a": np.arange(3)})}
    corrupt = store.save("counts", {"x": 3}, {"a": np.arange(3)})
    made["corrupt"] = corrupt.rename(corrupt.with_suffix(".corrupt"))
    model = root / "models" / "gemma-3-270m"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "llama"}')
    (model / "model.safetensors").write_bytes(b"x")
    made["model"] = model
    tuned = root / "tuned" / "0123456789abcdef"
    tuned.mkdir(parents=True)
    (tuned / "config.json").write_text('{"model_type": "llama"}')
    made["tuned"] = tuned
    user = {"notes": root / "notes.txt", "own": root / "mine" / "data.npz", "in_kind": root / "counts" / "README",
            "in_models": root / "models" / "keep.txt", "own_model": root / "models" / "my-finetune" / "config.json",
            "own_tuned": root / "tuned" / "my-run" / "config.json"}
    for path in user.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("user file")
    return made, user


def test_clear_all_removes_only_project_files(tmp_path):
    made, user = _fill(tmp_path)
    n = Store(tmp_path).clear()
    assert n >= 5
    assert not any(p.exists() for p in made.values())
    assert all(p.read_text() == "user file" for p in user.values())  # the user's files stay
    assert tmp_path.is_dir()


def test_clear_one_kind(tmp_path):
    made, user = _fill(tmp_path)
    Store(tmp_path).clear("counts")
    assert not made["counts"].exists() and not made["corrupt"].exists()
    assert made["partition"].exists() and made["model"].exists()
    assert user["in_kind"].exists()


@pytest.mark.parametrize("kind", ["..", "../..", "/", "counts/..", "counts/../..", "", ".", "demo/../../x"])
def test_clear_refuses_kinds_outside_the_known_list(tmp_path, kind):
    root = tmp_path / "cache"
    made, user = _fill(root)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    with pytest.raises(ValueError, match="kind"):
        Store(root).clear(kind)
    assert outside.exists() and all(p.exists() for p in [*made.values(), *user.values()])


def test_clear_refuses_an_absolute_kind(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.npz").write_text("keep")
    with pytest.raises(ValueError, match="kind"):
        Store(tmp_path / "cache").clear(str(victim))
    assert (victim / "data.npz").exists()


def test_clear_refuses_a_kind_folder_that_leads_outside_the_root(tmp_path):
    outside = tmp_path / "outside"
    (outside / "ab").mkdir(parents=True)
    (outside / "ab" / "abcd.npz").write_text("keep")
    root = tmp_path / "cache"
    root.mkdir()
    (root / "counts").symlink_to(outside)
    with pytest.raises(ValueError, match="outside"):
        Store(root).clear("counts")
    with pytest.raises(ValueError, match="outside"):
        Store(root).clear()
    assert (outside / "ab" / "abcd.npz").exists()


def test_known_kinds_cover_every_kind_the_library_writes():
    import re

    lib = Path(__file__).resolve().parents[1] / "babel_lib"
    used = set()
    for path in lib.rglob("*.py"):
        text = path.read_text()
        used |= set(re.findall(r"(?:get_or_compute|\.save|\.load)\(\s*\"([a-z_]+)\"", text))
        used |= set(re.findall(r"_KIND = \"([a-z_]+)\"", text))
    assert used and used <= set(KINDS), used - set(KINDS)
    assert {"partition", "counts", "perplexity", "agreement", "tuned", "models"} <= set(KINDS)


def test_store_paths_refuse_a_kind_that_is_not_a_plain_name(tmp_path):
    for kind in ("../x", "/tmp/x", "a/b", ""):
        with pytest.raises(ValueError, match="kind"):
            Store(tmp_path).save(kind, {"x": 1}, {"a": np.arange(2)})


def test_entries_flag_unreadable_files(tmp_path):
    store = Store(tmp_path)
    good = store.save("counts", {"x": 1}, {"a": np.arange(3)})
    bad = store.save("counts", {"x": 2}, {"a": np.arange(10_000)})
    data = bytearray(bad.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64  # damage the compressed array, not the meta
    bad.write_bytes(bytes(data))
    rows = {Path(r["path"]): r for r in store.entries()}
    assert rows[good]["problem"] is None
    assert rows[bad]["problem"]


def test_entries_list_model_folders_and_flag_damaged_ones(tmp_path):
    store = Store(tmp_path)
    good = tmp_path / "models" / "smollm2-135m-instruct"
    good.mkdir(parents=True)
    (good / "config.json").write_text('{"model_type": "llama"}')
    broken = tmp_path / "tuned" / "0123456789abcdef"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json")
    rows = {Path(r["path"]).name: r for r in store.entries()}
    assert rows["smollm2-135m-instruct"]["kind"] == "models" and rows["smollm2-135m-instruct"]["problem"] is None
    assert "config.json" in rows["0123456789abcdef"]["problem"]


def test_clear_models_keeps_a_users_own_model_folder(tmp_path):
    made, user = _fill(tmp_path)
    Store(tmp_path).clear("models")
    assert not made["model"].exists()
    assert user["own_model"].read_text() == "user file" and user["in_models"].exists()


def test_offline_model_names_equal_the_models_table():
    from babel_lib.core import models
    from babel_lib.core.cache import OFFLINE_MODEL_NAMES

    assert tuple(OFFLINE_MODEL_NAMES) == tuple(models.OFFLINE_MODELS)


def _leftovers(root: Path, pid: int) -> dict[str, Path]:
    """The leftovers of writes killed with kill -9 (process ``pid``): a conversion's folders in models/,
    a result's temporary file."""
    made = {"conversion": root / "models" / f".gemma-3-270m.pid{pid}.ab12cd34.tmp",
            "gguf": root / "models" / f".gemma-3-270m.pid{pid}.zz99yy88.tmp",
            "result": root / "counts" / "ab" / f".{'ab' * 32}.npz.pid{pid}.k3j4h5g6.tmp"}
    made["conversion"].mkdir(parents=True)
    (made["conversion"] / "model.safetensors").write_bytes(b"x" * 1000)
    made["gguf"].mkdir()
    (made["gguf"] / "model.gguf").write_bytes(b"x" * 1000)
    made["result"].parent.mkdir(parents=True)
    made["result"].write_bytes(b"partial")
    return made


def _ended_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # ended: no such process any more


def test_leftovers_of_killed_writes_are_listed_and_cleared(tmp_path):
    made = _leftovers(tmp_path, _ended_pid())
    live = tmp_path / "models" / f".smollm2-135m-instruct.pid{os.getpid()}.qwerty12.tmp"  # a write in progress
    live.mkdir()
    store = Store(tmp_path)
    rows = {Path(r["path"]): r for r in store.entries()}
    assert set(rows) == set(made.values())
    assert all("interrupted write" in r["problem"] for r in rows.values())
    store.clear()
    assert not any(p.exists() for p in made.values())


def test_a_later_write_cleans_the_stale_leftovers_it_owns(tmp_path):
    from babel_lib.core.cache import atomic_folder

    made = _leftovers(tmp_path, _ended_pid())
    live = tmp_path / "models" / f".gemma-3-270m.pid{os.getpid()}.qwerty12.tmp"
    live.mkdir()
    other = tmp_path / "models" / "gemma-3-270m-notes.tmp"  # not a temporary name: the user's
    other.write_text("user file")
    with atomic_folder(tmp_path / "models" / "gemma-3-270m") as tmp:
        (tmp / "config.json").write_text("{}")
    assert not made["conversion"].exists() and not made["gguf"].exists()
    assert live.is_dir() and other.exists()  # a write in progress, and a file that is not a leftover, stay
    Store(tmp_path).save("counts", {"x": 1}, {"a": np.arange(2)})
    assert made["result"].exists()  # another key's leftover: not this write's


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from([None, *KINDS]),
       names=st.lists(st.sampled_from(["notes.txt", "README", "my-finetune", "gemma-3-270m-x", "x.npz", "ab",
                                       "0123456789abcdef0", ".hidden.tmp", "data.corrupt", "tiny"]),
                      min_size=1, max_size=6),
       places=st.lists(st.sampled_from(["", "counts", "counts/ab", "models", "tuned", "partition/00"]),
                       min_size=1, max_size=6))
def test_clear_never_removes_a_file_the_project_did_not_write(kind, names, places):
    """Any files and folders of the user's, under any kind, beside the project's entries: clearing any
    kind removes none of them."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made, user = _fill(root)
        for i, (name, place) in enumerate(zip(names, places)):
            path = root / place / name / f"f{i}.txt" if i % 2 else root / place / f"{name}{i}"
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                continue  # a file of the user's is already there
            if not path.exists():
                path.write_text("user file")
                user[f"extra{i}"] = path
        before = {p: p.read_bytes() for p in user.values()}
        Store(root).clear(kind)
        assert {p: p.read_bytes() for p in user.values()} == before


# ------------------------------------------------------------------------------ cache keys
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=6), st.integers(-5, 5)), inner,
                                                 max_size=4)), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6), st.randoms())
def test_cache_key_ignores_dict_order(parts, rnd):
    items = list(parts.items())
    rnd.shuffle(items)
    assert cache_key(dict(items)) == cache_key(parts)


@settings(max_examples=300, deadline=None)
@given(json_values, json_values)
@example({1: 0}, {"1": 0})
@example([1], [True])
def test_different_values_give_different_keys(a, b):
    if not _same(a, b):
        assert cache_key({"v": a}) != cache_key({"v": b})


def _same(a, b) -> bool:
    """Equal as parameters: the same types and equal values, recursively (1, 1.0 and True differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@settings(max_examples=200, deadline=None)
@given(st.integers(-2**63, 2**63 - 1), st.sampled_from([np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint64]))
def test_numpy_ints_key_like_python_ints(value, dtype):
    info = np.iinfo(dtype)
    value = int(np.clip(value, info.min, info.max))
    assert cache_key({"n": dtype(value), "d": {"k": [dtype(value)]}}) == cache_key({"n": value, "d": {"k": [value]}})


def test_numpy_scalars_and_arrays_key_by_value():
    assert cache_key({"b": np.bool_(True)}) == cache_key({"b": True})
    assert cache_key({"f": np.float64(0.25)}) == cache_key({"f": 0.25})
    a = np.zeros(2000, dtype=np.int64)
    b = a.copy()
    b[1000] = 1  # the two arrays print alike ("[0 0 0 ... 0 0 0]"): keys must still differ
    assert cache_key({"a": a}) != cache_key({"a": b})
    assert cache_key({"a": np.arange(3)}) == cache_key({"a": [0, 1, 2]})


def test_cache_key_keeps_known_keys_stable():
    """Keys of existing caches do not change (a changed key recomputes hours of results)."""
    import hashlib
    import json

    parts = {"model": "abc", "expert_size": 32, "languages": ["eng", "fra"], "top_k": 0.2, "meta": {"b": 1, "a": None}}
    text = json.dumps({"code_version": "1", **parts}, sort_keys=True, ensure_ascii=False)
    assert cache_key(parts) == hashlib.sha256(text.encode()).hexdigest()


def test_clear_on_missing_root_is_zero(tmp_path):
    assert Store(tmp_path / "nothing").clear() == 0
    assert not (tmp_path / "nothing").exists()


def test_cli_list_flags_unreadable(tmp_path, monkeypatch, capsys):
    from babel_lib.__main__ import main

    monkeypatch.setenv("BABEL_CACHE", str(tmp_path))
    store = Store(tmp_path)
    bad = store.save("counts", {"x": 2}, {"a": np.arange(10_000)})
    data = bytearray(bad.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    bad.write_bytes(bytes(data))
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "UNREADABLE" in out
    assert os.path.exists(bad)  # listing never moves or deletes
