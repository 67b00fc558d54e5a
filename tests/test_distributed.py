"""Data-parallel profiling: 2 CPU processes (gloo) give exactly the single-process counts."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from babel_lib.core.cache import Store
from babel_lib.experts.moefy import build_partition
from babel_lib.experts.profile import profile_passages
from babel_lib.testing import passages, tiny_model

TEXTS = {"aaa": ["One paragraph of text for the test.", "Another one, a bit longer than the first one is."],
         "bbb": ["Texte en français, avec des accents : é è à.", "Un deuxième paragraphe."]}


def _worker(root):
    lm = tiny_model("llama")
    store = Store(root)
    part = build_partition(lm, expert_size=16, method="random", store=store)
    profile_passages(lm, part, passages(TEXTS), max_length=12, batch_size=1, store=store, progress=False,
                     distributed=True)


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
    kw = dict(max_length=12, batch_size=1, progress=False)
    single = profile_passages(lm, part, passages(TEXTS), store=single_store, **kw)
    # the distributed run stored its reduced counts under the same key: read them back from its store
    dist = profile_passages(lm, part, passages(TEXTS), store=Store(tmp_path / "dist"), **kw)
    assert len(Store(tmp_path / "dist").entries()) == 1 + 2  # partition + two languages, nothing recomputed
    np.testing.assert_array_equal(single.passage_counts, dist.passage_counts)
    np.testing.assert_array_equal(single.tokens, dist.tokens)
    assert single.counts.sum() > 0
