"""Test session settings: no hub access (fail fast instead of retrying for minutes)."""

import os

# Set before transformers/huggingface_hub are imported by any test module.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """A fresh, empty BABEL_CACHE for one test."""
    monkeypatch.setenv("BABEL_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def one_thread():
    """Tiny models run many tiny ops: one torch thread avoids OpenMP barrier stalls on a busy machine
    (measured: 10 tuning steps 85 s with 2 threads under load, 2.4 s with 1)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


#: The languages of the instruction-set fixtures.
INSTRUCTION_LANGS = ["eng", "fra", "cmn_hans"]


@pytest.fixture(scope="session")
def train_set():
    """The instruction set's calibration (training) split for INSTRUCTION_LANGS, seed 0."""
    from babel_lib.data import instructions

    return instructions.instruction_set(INSTRUCTION_LANGS, "calibration", seed=0)


@pytest.fixture(scope="session")
def eval_set():
    """The instruction set's held-out evaluation split for INSTRUCTION_LANGS, seed 0."""
    from babel_lib.data import instructions

    return instructions.instruction_set(INSTRUCTION_LANGS, "evaluation", seed=0)


@pytest.fixture
def plots_env(tmp_path, monkeypatch):
    """babel_lib.report.plots writing its results under tmp_path (chapter "01_test"); charts render as in JupyterLab."""
    from babel_lib.report import plots

    monkeypatch.setenv("BABEL_BOOK_DIR", str(tmp_path))
    monkeypatch.delenv("BABEL_RENDER", raising=False)
    plots.setup("01_test")
    yield plots
    plots.setup(None)
