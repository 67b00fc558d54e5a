"""Faults: a profiling run killed with SIGKILL loses nothing it finished and leaves no corrupt file."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from babel_lib.cache import Store
from babel_lib.moefy import build_partition
from babel_lib.testing import tiny_model

LANGS = [f"l{i:02d}" for i in range(40)]

CHILD = textwrap.dedent("""
    import sys
    from babel_lib.cache import Store
    from babel_lib.moefy import build_partition
    from babel_lib.profile import profile_languages
    from babel_lib.testing import tiny_model

    texts = lambda lang, split: [f"Paragraph in language {lang}, number {i}." for i in range(40)]
    lm = tiny_model("llama")
    store = Store(sys.argv[1])
    part = build_partition(lm, expert_size=16, method="random", store=store)
    profile_languages(lm, part, [f"l{i:02d}" for i in range(40)], max_tokens_per_language=1500,
                      max_length=64, store=store, progress=False, texts_fn=texts)
""")


def _texts(lang, split):
    return [f"Paragraph in language {lang}, number {i}." for i in range(40)]


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
    finished = [e for e in store.entries() if e["kind"] == "counts"]
    assert 2 <= len(finished) < len(LANGS)
    for e in finished:  # every file under a real name reads back
        with np.load(e["path"]) as npz:
            assert npz["counts"].shape == (2, 8)

    import babel_lib.profile as prof

    calls = []
    real = prof.count_sequences
    monkeypatch.setattr(prof, "count_sequences", lambda *a, **k: calls.append(1) or real(*a, **k))
    lm = tiny_model("llama")
    part = build_partition(lm, expert_size=16, method="random", store=store)
    result = prof.profile_languages(lm, part, LANGS, max_tokens_per_language=1500, max_length=64, store=store,
                                    progress=False, texts_fn=_texts)
    assert len(calls) == len(LANGS) - len(finished)  # only the unfinished languages were recomputed
    assert (result.tokens > 0).all()
