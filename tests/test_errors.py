"""The README's table of bad inputs: each gets one clear error that says what to do."""

import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from babel_lib.core.cache import Store
from babel_lib.core.errors import (ModelFolderError, PartitionMismatchError, UnknownModelError,
                                   UnsupportedArchitectureError)
from babel_lib.core.models import load_model
from babel_lib.data import corpus
from babel_lib.experts.moefy import build_partition
from babel_lib.experts.profile import passage_windows, profile_passages
from babel_lib.testing import tiny_model


def test_unknown_model_name_suggests_offline_model():
    with pytest.raises(UnknownModelError, match="did you mean the offline model 'gemma-3-270m'"):
        load_model("gemma-3-270mm")


def test_unknown_model_id_says_what_was_tried(tmp_path):
    with pytest.raises(UnknownModelError, match="not a local folder"):
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
        passage_windows(tiny_model("llama").tokenizer, ["", "  \n"], 16)


def test_partition_from_another_model(tmp_path):
    a = tiny_model("llama", seed=0)
    b = tiny_model("llama", seed=1)
    part = build_partition(a, expert_size=16, method="random", store=Store(tmp_path))
    text = corpus.Passages("udhr", "calibration", ["p0"], ["x"], {"x": ["text"]})
    with pytest.raises(PartitionMismatchError, match="different weights"):
        profile_passages(b, part, text, store=Store(tmp_path), progress=False)


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


# ------------------------------------------------------------------------------ model specs and folders
def test_unknown_model_id_fails_at_once_and_says_how_to_opt_in(monkeypatch):
    import time

    monkeypatch.delenv("BABEL_ALLOW_HUB", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the test session's own setting must not be what helps
    started = time.perf_counter()
    with pytest.raises(UnknownModelError) as info:
        load_model("no-such-org/no-such-model")
    assert time.perf_counter() - started < 5
    message = str(info.value)
    for part in ("gemma-3-270m", "smollm2-135m-instruct", "config.json", "BABEL_ALLOW_HUB=1", "--hub"):
        assert part in message


def test_hub_is_off_unless_opted_in():
    """Importing babel_lib.core.models without BABEL_ALLOW_HUB=1 sets HF_HUB_OFFLINE=1 before transformers loads."""
    import os
    import subprocess
    import sys

    code = ("import os, sys; import babel_lib.core.models; assert 'transformers' not in sys.modules; "
            "print(os.environ.get('HF_HUB_OFFLINE'))")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "BABEL_ALLOW_HUB")}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert off.stdout.strip() == "1"
    on = subprocess.run([sys.executable, "-c", code], env={**env, "BABEL_ALLOW_HUB": "1"}, capture_output=True,
                        text=True, check=True)
    assert on.stdout.strip() == "None"


def _tiny_folder(path, model_type="llama"):
    lm = tiny_model(model_type)
    lm.model.save_pretrained(path)
    return path


def test_model_folder_without_config(tmp_path):
    from babel_lib.core.errors import ModelFolderError

    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelFolderError, match=r"has no config\.json.*save_pretrained"):
        load_model(str(tmp_path))


def test_model_folder_with_invalid_config_json(tmp_path):
    from babel_lib.core.errors import ModelFolderError

    folder = _tiny_folder(tmp_path / "m")
    (folder / "config.json").write_text('{"model_type": "llama",')
    with pytest.raises(ModelFolderError, match=r"config\.json is not valid JSON \(.*line 1.*\)\. Fix the file"):
        load_model(str(folder))


def test_model_folder_without_model_type(tmp_path):
    import json

    from babel_lib.core.errors import ModelFolderError

    folder = _tiny_folder(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    del config["model_type"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderError, match=r"config\.json has no model_type.*llama"):
        load_model(str(folder))


def test_model_folder_with_truncated_weights(tmp_path):
    from babel_lib.core.errors import ModelFolderError

    folder = _tiny_folder(tmp_path / "m")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFolderError, match=r"model\.safetensors is truncated"):
        load_model(str(folder))


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "gemma3_text"])
def test_verify_model_folder_accepts_a_sound_folder(tmp_path, model_type):
    from babel_lib.core.models import verify_model_folder

    assert verify_model_folder(_tiny_folder(tmp_path / "m", model_type)) is None


def test_verify_model_folder_finds_each_problem(tmp_path):
    import json

    from babel_lib.core.models import verify_model_folder

    folder = _tiny_folder(tmp_path / "m")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    config = json.loads((folder / "config.json").read_text())

    assert "not a folder" in verify_model_folder(weights)
    weights.write_bytes(data[:-1])
    assert "truncated" in verify_model_folder(folder)
    weights.write_bytes(data + b"\0")
    assert "longer" in verify_model_folder(folder)
    weights.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    assert "header" in verify_model_folder(folder)
    weights.write_bytes(b"\xff" * 8)
    assert "header" in verify_model_folder(folder)
    weights.write_bytes(data)
    assert verify_model_folder(folder) is None
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": 96}))
    assert "hidden_size" in verify_model_folder(folder)
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    assert "num_hidden_layers" in verify_model_folder(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "model-2.safetensors"}}))
    assert "model-2.safetensors" in verify_model_folder(folder)


def test_device_without_gpu_is_refused_before_loading(monkeypatch):
    import torch

    from babel_lib.core import validate

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU.*cpu"):
        validate.check_device("cuda")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        load_model("no-such-org/model", device="cuda:0")  # the device is checked before the model spec
    with pytest.raises(ValueError, match="not a device"):
        validate.check_device("gpu9")
    assert validate.check_device("cpu") == "cpu" and validate.check_device("auto") == "auto"


# ------------------------------------------------------------------------------ numbers
@pytest.mark.parametrize("value", [0, -1, -8, True, 2.5, "8", None])
def test_positive_int_refuses(value):
    from babel_lib.core.validate import positive_int

    with pytest.raises(ValueError, match="--batch-size must be a positive integer, got"):
        positive_int("--batch-size", value)


def test_positive_int_with_a_minimum():
    from babel_lib.core.validate import positive_int

    assert positive_int("--max-length", 2, minimum=2) == 2 and positive_int("n", 8.0) == 8
    with pytest.raises(ValueError, match="--max-length must be an integer >= 2, got 1"):
        positive_int("--max-length", 1, minimum=2)


# ------------------------------------------------------------------------------ outputs
def test_output_guard(tmp_path):
    from babel_lib.core.errors import OutputPathError
    from babel_lib.core.validate import check_output

    (tmp_path / "file.csv").write_text("x")
    (tmp_path / "folder").mkdir()
    assert check_output(tmp_path / "new" / "deeper" / "p.csv") == tmp_path / "new" / "deeper" / "p.csv"
    with pytest.raises(OutputPathError, match=r"file\.csv already exists; pass --force"):
        check_output(tmp_path / "file.csv")
    assert check_output(tmp_path / "file.csv", force=True) == tmp_path / "file.csv"
    with pytest.raises(OutputPathError, match="is a folder.*never replaces a folder by a file"):
        check_output(tmp_path / "folder", force=True)
    with pytest.raises(OutputPathError, match="is a file.*never replaces a file by a folder"):
        check_output(tmp_path / "file.csv", kind="folder", force=True)
    with pytest.raises(OutputPathError, match=r"file\.csv is a file, not a folder"):
        check_output(tmp_path / "file.csv" / "p.csv")
    with pytest.raises(OutputPathError, match="holds the current folder"):
        check_output(tmp_path, kind="folder", force=True, cwd=tmp_path / "folder")
    with pytest.raises(ValueError, match="kind"):
        check_output(tmp_path / "x", kind="dir")


def test_output_guard_checks_permissions(tmp_path):
    import os

    from babel_lib.core.errors import OutputPathError
    from babel_lib.core.validate import check_output

    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(OutputPathError, match="cannot write"):
            check_output(locked / "sub" / "p.csv")
    finally:
        locked.chmod(0o700)


def _snapshot(root):
    import os

    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st_ = os.lstat(p)
            out[p] = (st_.st_mode, st_.st_size, st_.st_mtime_ns, open(p, "rb").read() if name in filenames else None)
    return out


layouts = st.sampled_from(["none", "file", "empty_folder", "folder"])


@settings(max_examples=150, deadline=None)
@given(parent=st.sampled_from(["folder", "missing", "file"]), target=layouts,
       kind=st.sampled_from(["file", "folder"]), force=st.booleans())
def test_output_guard_never_touches_what_exists(parent, target, kind, force):
    import tempfile
    from pathlib import Path

    from babel_lib.core.errors import OutputPathError
    from babel_lib.core.validate import check_output

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = root / "parent"
        if parent == "folder":
            base.mkdir()
        elif parent == "file":
            base.write_text("parent is a file")
        path = base / "out"
        if parent == "folder":
            if target == "file":
                path.write_text("user data")
            elif target in ("empty_folder", "folder"):
                path.mkdir()
                if target == "folder":
                    (path / "inside.txt").write_text("user data")
        before = _snapshot(root)
        try:
            got = check_output(path, kind=kind, force=force)
        except OutputPathError:
            got = None
        assert _snapshot(root) == before  # the guard never writes, moves or deletes anything
        exists = path.exists()
        if got is not None:  # accepted: nothing that exists is lost without --force, no file <-> folder swap
            assert parent != "file"
            assert not exists or force
            assert not exists or path.is_dir() == (kind == "folder")


# ------------------------------------------------------------------------------ chapter parameters
DECLARED = {  # as papermill.inspect_notebook reports them
    "expert_size": {"inferred_type_name": "None", "default": "32"},
    "top_k_fraction": {"inferred_type_name": "None", "default": "0.2"},
    "languages": {"inferred_type_name": "None", "default": '"paper"'},
    "model": {"inferred_type_name": "None", "default": '"gemma-3-270m"'},
    "rates": {"inferred_type_name": "None", "default": "[0.1, 0.2]"},
    "random_seeds": {"inferred_type_name": "None", "default": "[0, 1, 2]"},
    "models": {"inferred_type_name": "None", "default": '["a", "b"]'},
    "tune_steps": {"inferred_type_name": "None", "default": "None"},
    "free": {"inferred_type_name": "None", "default": "None"},
    "flag": {"inferred_type_name": "None", "default": "True"},
    "annotated": {"inferred_type_name": "int", "default": "None"},
    "either": {"inferred_type_name": "Union[str, list]", "default": '"x"'},
    "optional": {"inferred_type_name": "Optional[float]", "default": "None"},
}


def test_check_parameters_accepts_and_converts():
    from babel_lib.core.validate import check_parameters

    got = check_parameters(DECLARED, {
        "expert_size": 32.0, "top_k_fraction": 1, "languages": ["eng", "fra"], "model": 7, "rates": [0.3, 0],
        "random_seeds": [0.0, 1], "models": ["m"], "tune_steps": 3.0, "free": "anything", "flag": False,
        "annotated": 5, "either": ["a"], "optional": 2, "undeclared": "kept"})
    assert got == {"expert_size": 32, "top_k_fraction": 1.0, "languages": ["eng", "fra"], "model": "7",
                   "rates": [0.3, 0.0], "random_seeds": [0, 1], "models": ["m"], "tune_steps": 3, "free": "anything",
                   "flag": False, "annotated": 5, "either": ["a"], "optional": 2.0, "undeclared": "kept"}
    assert type(got["expert_size"]) is int and type(got["top_k_fraction"]) is float
    assert check_parameters(DECLARED, {"optional": None}) == {"optional": None}


@pytest.mark.parametrize("name, value, message", [
    ("expert_size", "abc", "expert_size must be an integer (the notebook's default is 32), got 'abc'"),
    ("expert_size", 32.5, "expert_size must be an integer (the notebook's default is 32), got 32.5"),
    ("expert_size", True, "expert_size must be an integer (the notebook's default is 32), got True"),
    ("top_k_fraction", "x", "top_k_fraction must be a number (the notebook's default is 0.2), got 'x'"),
    ("languages", 5.5, None),
    ("languages", [1, 2], "languages must be a string or a list of strings (the notebook's default is \"paper\")"),
    ("rates", 0.3, "rates must be a list of numbers (the notebook's default is [0.1, 0.2]), got 0.3"),
    ("random_seeds", [0.5], "random_seeds must be a list of integers (the notebook's default is [0, 1, 2])"),
    ("flag", 1, "flag must be true or false (the notebook's default is True), got 1"),
    ("annotated", "x", "annotated must be an integer"),
    ("either", 3.5, None),
    ("optional", "x", "optional must be a number or None"),
    ("expert_size", None, "expert_size must be an integer (the notebook's default is 32), got None"),
])
def test_check_parameters_names_the_parameter_and_type(name, value, message):
    from babel_lib.core.validate import check_parameters

    if message is None:  # numbers for a string parameter become strings
        assert check_parameters(DECLARED, {name: value}) == {name: str(value)}
        return
    with pytest.raises(ValueError) as info:
        check_parameters(DECLARED, {name: value})
    assert message in str(info.value)
    assert "-p " + name in str(info.value)  # with an example of a valid value


# ------------------------------------------------------------------------------ languages
def test_check_languages():
    from babel_lib.data.corpus import check_languages

    assert check_languages("eng,") == ["eng"]
    assert check_languages(["French", " ", "eng"]) == ["fra", "eng"]
    assert check_languages("paper") == list(corpus.PAPER_LANGUAGES)
    for bad in ("", ",", [], [""], 5, None, [3], "wide:x", "wide:0"):
        with pytest.raises(corpus.UnknownLanguageError):
            check_languages(bad)


KEYS = sorted(corpus.corpus_languages("udhr"))


@st.composite
def variants(draw):
    key = draw(st.sampled_from(KEYS))
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in key)
    space = st.text(alphabet=" \t\n\u00a0\u2003", max_size=3)
    return key, draw(space) + cased + draw(space)


@settings(max_examples=200, deadline=None)
@given(variants())
def test_case_and_whitespace_never_change_a_key(pair):
    from babel_lib.data.corpus import check_languages

    key, variant = pair
    assert check_languages(variant) == [key]
    assert check_languages([variant]) == [key]
    assert corpus.resolve_languages([variant]) == [key]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True),
       st.lists(st.sampled_from(["", " ", "\t", "  \n"]), max_size=4), st.randoms())
def test_empty_entries_are_dropped(keys, blanks, rnd):
    from babel_lib.data.corpus import check_languages

    mixed = keys + blanks
    rnd.shuffle(mixed)
    order = [e for e in mixed if e.strip()]
    assert check_languages(mixed) == order
    assert check_languages(",".join(mixed)) == order


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=12), st.lists(st.text(max_size=8), max_size=3), st.integers(), st.none(),
                 st.lists(st.one_of(st.integers(), st.none()), min_size=1, max_size=2)))
def test_unresolvable_languages_raise_only_unknown_language_error(spec):
    from babel_lib.data.corpus import check_languages

    try:
        keys = check_languages(spec)
    except corpus.UnknownLanguageError:
        return
    assert keys and set(keys) <= set(KEYS)


# ------------------------------------------------------------------------------ ranges in the library too
@pytest.mark.parametrize("ratio", [-1, 0, 0.0, float("inf"), float("nan")])
def test_high_frequency_bar_refuses_a_ratio_at_or_below_zero(ratio):
    """hf_ratio -1 made every expert high-frequency (frequency >= a negative bar)."""
    from types import SimpleNamespace

    from babel_lib.chapters.high_frequency import hf_threshold

    with pytest.raises(ValueError, match="hf_ratio must be a positive number"):
        hf_threshold(SimpleNamespace(), ratio)


# ------------------------------------------------------------------------------ model folders refused before loading
def _model_folder(path, model_type="llama"):
    """A tiny llama folder with a real (one-word) tokenizer, as save_pretrained writes it."""
    import json

    from tokenizers import Tokenizer, models as token_models
    from transformers import PreTrainedTokenizerFast

    tiny_model("llama").model.save_pretrained(path)
    tokenizer = Tokenizer(token_models.WordLevel({"a": 0, "<unk>": 1}, unk_token="<unk>"))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<unk>").save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "model_type": model_type}))
    return path


@pytest.mark.parametrize("model_type", ["rwkv", "my_new_architecture"])
def test_unsupported_architecture_is_refused_before_loading(model_type, tmp_path, monkeypatch):
    """A model_type transformers does not know got its 'pip install --upgrade transformers'; a known but
    unsupported one failed only after loading: both are refused from config.json, before any weights load."""
    import transformers

    folder = _model_folder(tmp_path / "m", model_type)

    def never(*a, **k):
        raise AssertionError("loaded before the architecture was checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", never)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", never)
    with pytest.raises(UnsupportedArchitectureError, match=f"model_type='{model_type}'. Supported: .*llama"):
        load_model(str(folder), dtype="float32", device="cpu")


def test_pickle_weights_are_refused_in_one_line(tmp_path):
    import torch

    folder = _model_folder(tmp_path / "m")
    (folder / "model.safetensors").unlink()

    class Code:
        def __reduce__(self):
            return (print, ("this would run",))

    torch.save({**tiny_model("llama").model.state_dict(), "x": Code()}, folder / "pytorch_model.bin")
    with pytest.raises(ModelFolderError, match="pytorch_model.bin.*refused.*could run code") as info:
        load_model(str(folder), dtype="float32", device="cpu")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, value, message", [
    ("byte_fallback_share", 1.0, "byte_fallback_share must be a number in (0, 1)"),
    ("neurons", "yes", "neurons must be True or False"),
    ("null_draws", 0, "null_draws must be a positive integer"),
    ("methods", ["language", "lottery"], "methods[1] must be one of language, multilingual"),
    ("rules", ["uniform"], "rules[0] must be one of layerwise, entropy"),
    ("placebo_kinds", ["silence"], "placebo_kinds[0] must be one of plain text, noise"),
    ("tune_tasks", [], "tune_tasks must be a non-empty list"),
    ("split", "train", "split must be one of calibration, evaluation, all"),
    ("m_experts", 0, "m_experts must be a positive integer"),
    ("steer_scale", -1.0, "steer_scale must be a positive number"),
    ("steer_layer", -1, "steer_layer must be an integer >= 0"),
])
def test_chapter_parameter_rules(name, value, message):
    """Every range a chapter parameter has is checked before a kernel starts, naming the parameter."""
    from babel_lib.core.errors import InputError
    from babel_lib.core.validate import check_parameter

    with pytest.raises(InputError, match=re.escape(message)):
        check_parameter(name, value)


def test_choice_lists_match_the_library():
    """validate.py names the choices without importing the model stack; they are the library's own."""
    from babel_lib.chapters import instruction_tuning as tuning_pair
    from babel_lib.core import validate
    from babel_lib.data import instructions
    from babel_lib.interventions import applications

    assert validate.PRUNING_METHODS == applications.METHODS
    assert validate.TUNE_TASKS == instructions.TASKS
    assert validate.PLACEBO_KINDS == tuple(tuning_pair.PLACEBOS)
    assert set(validate.LAYER_RULES) | {"uniform"} == set(applications.layer_rates.__defaults__[0])


def test_every_chapter_parameter_has_a_rule():
    """A new parameter gets its range checked before a kernel starts; only names and language lists, which
    are resolved when the chapter starts (an unknown model or language fails there), go without a rule."""
    import ast
    import json

    from babel_lib.book import runner as book
    from babel_lib.core.validate import PARAMETER_RULES

    resolved_later = {"model", "models", "base_model", "tuned_model", "languages", "matrix_languages",
                      "wide_languages", "bible_languages", "aliases", "size_models"}
    missing = set()
    for source in book.chapters():
        for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
            if "parameters" in cell["metadata"].get("tags", []):
                names = {n.targets[0].id for n in ast.parse("".join(cell["source"])).body if isinstance(n, ast.Assign)}
                missing |= {f"{source.stem}: {n}" for n in names - set(PARAMETER_RULES) - resolved_later}
    assert not missing, sorted(missing)


def test_check_parameters_refuses_a_cap_below_its_floor_before_anything_runs():
    from babel_lib.core.validate import InputError, check_parameters

    declared = {"wide_eval_tokens": {"inferred_type_name": "None", "default": "200"},
                "wide_max_tokens": {"inferred_type_name": "Optional[int]", "default": "300"},
                "n_controls": {"inferred_type_name": "None", "default": "10"},
                "n_gen_controls": {"inferred_type_name": "None", "default": "2"}}
    assert check_parameters(declared, {"wide_max_tokens": 200}) == {"wide_max_tokens": 200}
    assert check_parameters(declared, {"wide_max_tokens": None}) == {"wide_max_tokens": None}
    with pytest.raises(InputError, match=r"wide_max_tokens \(150\) must be at least wide_eval_tokens \(200\)"):
        check_parameters(declared, {"wide_max_tokens": 150})
    with pytest.raises(InputError, match="wide_max_tokens"):  # the floor raised above the default cap
        check_parameters(declared, {"wide_eval_tokens": 400})
    with pytest.raises(InputError, match="n_controls"):
        check_parameters(declared, {"n_gen_controls": 11})
