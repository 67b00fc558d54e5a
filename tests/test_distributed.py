"""Data-parallel profiling: 2 CPU processes (gloo) give exactly the single-process counts."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from babel_lib.cache import Store
from babel_lib.moefy import build_partition
from babel_lib.profile import profile_languages
from babel_lib.testing import tiny_model

TEXTS = {"aaa": ["One paragraph of text for the test.", "Another one, a bit longer than the first one is."],
         "bbb": ["Texte en français, avec des accents : é è à.", "Un deuxième paragraphe."]}


def _texts(lang, split):
    return TEXTS[lang]


def _worker(root):
    lm = tiny_model("llama")
    store = Store(root)
    part = build_partition(lm, expert_size=16, method="random", store=store)
    profile_languages(lm, part, ["aaa", "bbb"], max_tokens_per_language=80, max_length=12, batch_size=1,
                      store=store, progress=False, texts_fn=_texts, distributed=True)


@pytest.mark.slow
def test_two_processes_equal_single_process(tmp_path):
    # accelerate's debug_launcher forks: run it from a fresh interpreter, because forking a
    # process whose torch thread pools already ran (as in a test session) can deadlock.
    code = ("import sys; sys.path.insert(0, sys.argv[2]); from accelerate import debug_launcher; "
            "from test_distributed import _worker; debug_launcher(_worker, args=(sys.argv[1],), num_processes=2)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "dist"), str(Path(__file__).parent)],
                   check=True, timeout=600)
    lm = tiny_model("llama")
    single_store = Store(tmp_path / "single")
    part = build_partition(lm, expert_size=16, method="random", store=single_store)
    kw = dict(max_tokens_per_language=80, max_length=12, batch_size=1, progress=False, texts_fn=_texts)
    single = profile_languages(lm, part, ["aaa", "bbb"], store=single_store, **kw)
    # the distributed run stored its reduced counts under the same key: read them back from its store
    dist = profile_languages(lm, part, ["aaa", "bbb"], store=Store(tmp_path / "dist"), **kw)
    assert len(Store(tmp_path / "dist").entries()) == 1 + 2  # partition + two languages, nothing recomputed
    np.testing.assert_array_equal(single.counts, dist.counts)
    np.testing.assert_array_equal(single.tokens, dist.tokens)
    assert single.counts.sum() > 0
