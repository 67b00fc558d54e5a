"""The reproduction contract (babel_lib/book/reproduction.py) and a fresh run of chapter 02 checked by it.

The chapter test reruns chapter 02 cold (an empty result cache: every count recomputed) with the
model's arithmetic deliberately moved to another code path (one thread, AVX2 kernels instead of
AVX-512 where the CPU has them), as another machine would, and requires every committed result
file to hold within the contract."""

import json
import math
import struct
import zlib

import pandas as pd
import pytest

from babel_lib.book import reproduction, runner as book
from babel_lib.book.reproduction import column_class, compare_results, model_close, text_close


def _png(path, width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(height))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_column_classes_use_whole_words():
    assert column_class("concentration") == "model"  # holds 'ratio' as letters, not as a word
    assert column_class("tokens_ratio") == "fixed"
    assert column_class("tokens per character: gemma-3-270m") == "fixed"
    assert column_class("lape_overlap_ratio") == "model"
    assert column_class("ffn_speedup_low") == "timing" and column_class("seconds") == "timing"
    assert column_class("dense_tokens_per_second") == "timing"
    assert column_class("perplexity") == "model" and column_class("frequency") == "model"
    assert column_class("result", "verdicts.csv", "10_sparse_activation") == "timing"
    assert column_class("result", "verdicts.csv", "02_heatmaps") == "model"


def test_model_rule_and_numbers_in_text():
    assert model_close(0.02, 0.0205) and not model_close(0.02, 0.0215)
    assert model_close(10.0, 10.009) and not model_close(10.0, 10.02)
    assert model_close(float("nan"), float("nan")) and not model_close(1.0, float("nan"))
    assert text_close("0.391 [0.390, 0.392]", "0.391 [0.389, 0.392]")  # one unit of the last digit
    assert not text_close("0.391 [0.390, 0.392]", "0.391 [0.388, 0.392]")
    assert not text_close("9 of 9 languages", "8 of 9 languages")  # small integers are exact
    assert text_close("x73,711 perplexity", "x73,712 perplexity")  # a large model number, within 1e-3
    assert not text_close("9 of 9 languages", "9 of 9 texts")  # the words must be equal
    # below MODEL_ATOL numbers are indistinguishable (a p of 9.4e-78 or 9.4e-70 reads "< 0.001" alike)
    assert text_close("p = 9.4e-78", "p = 9.4e-70") and not text_close("p = 9.4e-78", "p = 0.012")


def test_compare_results_classes_and_statuses(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    frame = pd.DataFrame({"language": ["eng", "fra"], "tokens": [1501, 2074], "tokens_per_character": [0.18, 0.22],
                          "frequency": [0.25, 0.5], "perplexity": [10.0, 20.0], "seconds": [1.0, 2.0],
                          "note": ["", "rival"], "beyond_noise": [True, False], "ffn_speedup_low": [1.1, 1.2],
                          "result": ["0.391 [0.390, 0.392]", "9 of 9"]})
    frame.to_csv(old / "a.csv", index=False)
    (old / "c.vl.json").write_text(json.dumps({"data": {"values": [{"language": "eng", "frequency": 0.25}]}}))
    _png(old / "d.png", 4, 3)
    frame.assign(perplexity=[10.005, 20.0], frequency=[0.2505, 0.5], seconds=[9.0, 9.0], ffn_speedup_low=[1.3, 1.0],
                 result=["0.391 [0.389, 0.392]", "9 of 9"]).to_csv(new / "a.csv", index=False)
    (new / "c.vl.json").write_text(json.dumps({"data": {"values": [{"language": "eng", "frequency": 0.2504}]}}))
    _png(new / "d.png", 4, 3)
    report = compare_results(old, new)
    status = report.set_index(["table", "column"]).status
    assert status["a.csv", "language"] == "equal" and status["a.csv", "note"] == "equal"  # empty == empty
    assert status["a.csv", "perplexity"] == "within contract"
    assert status["a.csv", "frequency"] == "within contract"
    assert status["a.csv", "result"] == "within contract"
    assert status["a.csv", "seconds"] == "not compared" and status["a.csv", "ffn_speedup_low"] == "not compared"
    assert status["c.vl.json", ""] == "within contract"
    assert report.status.isin(reproduction.FAILING).sum() == 0
    # outside the contract: a fixed count, a fixed float by 0.06%, a label, a model number beyond 1e-3, a chart
    for change in ({"tokens": [1502, 2074]}, {"tokens_per_character": [0.18 * 1.0006, 0.22]},
                   {"beyond_noise": [True, True]}, {"frequency": [0.2515, 0.5]}, {"result": ["0.391 [0.390, 0.392]", "8 of 9"]}):
        frame.assign(**change).to_csv(new / "a.csv", index=False)
        report = compare_results(old, new)
        assert set(report[report.status.isin(reproduction.FAILING)].column) == set(change), change
    frame.to_csv(new / "a.csv", index=False)
    (new / "c.vl.json").write_text(json.dumps({"data": {"values": [{"language": "deu", "frequency": 0.25}]}}))
    (new / "e.csv").write_text("x\n1\n")
    _png(new / "d.png", 5, 3)
    report = compare_results(old, new)
    failing = report[report.status.isin(reproduction.FAILING)]
    assert set(zip(failing.table, failing.status)) == {("c.vl.json", "outside contract"), ("e.csv", "extra"),
                                                        ("d.png", "shape differs")}
    (new / "a.csv").unlink()
    assert "missing" in set(compare_results(old, new).status)
    assert reproduction.summary(compare_results(old, new)).startswith("NOT REPRODUCED")


@pytest.mark.real_model
@pytest.mark.slow
@pytest.mark.notebook
def test_chapter_02_reproduces_cold_under_other_arithmetic(tmp_path, monkeypatch):
    """Chapter 02 from an empty result cache (the converted model is reused: its conversion is checked
    elsewhere), with one thread and AVX2 kernels: every committed result file within the contract."""
    from babel_lib.core.cache import cache_root
    from babel_lib.core.models import DEFAULT_MODEL, load_model

    load_model(DEFAULT_MODEL, dtype="float32", device="cpu")  # converts once into the real cache
    models = cache_root() / "models"
    cold = tmp_path / "cache"
    cold.mkdir()
    (cold / "models").symlink_to(models, target_is_directory=True)
    for key, value in {"BABEL_CACHE": str(cold), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                       "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                       "ONEDNN_MAX_CPU_ISA": "AVX2"}.items():
        monkeypatch.setenv(key, value)  # the kernel inherits them
    report = book.verify_chapter("02_heatmaps", output_dir=tmp_path / "verify", progress_bar=False)
    failing = report[report.status.isin(reproduction.FAILING)]
    assert failing.empty, failing.to_string()
    assert not list((cold / "counts").glob("*")) == []  # counted afresh, not read from a filled cache
