"""The README's table of bad inputs: each gets one clear error that says what to do."""

import numpy as np
import pytest

from babel_lib import corpus
from babel_lib.cache import Store
from babel_lib.errors import PartitionMismatchError, UnknownModelError, UnsupportedArchitectureError
from babel_lib.models import load_model
from babel_lib.moefy import build_partition
from babel_lib.profile import build_sequences, profile_languages
from babel_lib.testing import tiny_model


def test_unknown_model_name_suggests_offline_model():
    with pytest.raises(UnknownModelError, match="did you mean the offline model 'gemma-3-270m'"):
        load_model("gemma-3-270mm")


def test_unknown_model_id_says_what_was_tried(tmp_path):
    with pytest.raises(UnknownModelError, match="not a local folder with config.json"):
        load_model("no-such-org/no-such-model")


def test_unknown_architecture_lists_supported():
    lm = tiny_model("llama")
    lm.model.config.model_type = "rwkv"
    with pytest.raises(UnsupportedArchitectureError, match="Supported: .*llama.*Add a row"):
        build_partition(lm, store=Store("/nonexistent-never-written"))


def test_unknown_language_lists_close_matches():
    with pytest.raises(corpus.UnknownLanguageError, match="(?i)engl|eng"):
        corpus.resolve_languages(["Englsh"])


def test_empty_text_is_rejected():
    with pytest.raises(ValueError, match="no text to profile"):
        build_sequences(tiny_model("llama").tokenizer, ["", "  \n"], 100, 16)


def test_partition_from_another_model(tmp_path):
    a = tiny_model("llama", seed=0)
    b = tiny_model("llama", seed=1)
    part = build_partition(a, expert_size=16, method="random", store=Store(tmp_path))
    with pytest.raises(PartitionMismatchError, match="different weights"):
        profile_languages(b, part, ["x"], texts_fn=lambda l, s: ["text"], store=Store(tmp_path), progress=False)


def test_partition_that_does_not_fit(tmp_path):
    with pytest.raises(PartitionMismatchError, match="does not divide the FFN width 128.*divisor"):
        build_partition(tiny_model("llama"), expert_size=48, store=Store(tmp_path))


def test_corrupted_cache_file_is_recomputed_with_a_warning(tmp_path):
    store = Store(tmp_path)
    parts = {"x": 1}
    path = store.save("demo", parts, {"a": np.arange(5)})
    path.write_bytes(b"not a zip file")
    with pytest.warns(RuntimeWarning, match="unreadable.*recomputed"):
        arrays, _ = store.get_or_compute("demo", parts, lambda: ({"a": np.arange(5) * 2}, {}))
    assert (arrays["a"] == np.arange(5) * 2).all()
    assert path.with_suffix(".corrupt").exists()  # kept aside for inspection, never reused
