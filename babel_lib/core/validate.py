"""Checks of user input before any heavy work: numbers, output paths, devices, chapter parameters, and
model folders (language specs: :func:`babel_lib.data.corpus.check_languages`). Each raises one clear
error that says what to do.

Only the standard library is imported here (torch loads lazily where a check needs it), so the
command line can check its arguments in milliseconds.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import stat
from pathlib import Path

from babel_lib.core.errors import InputError, OutputPathError


# ---------------------------------------------------------------------------- numbers
def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (an integral float such as 8.0 is accepted), else InputError."""
    ok = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
    if not ok or value < minimum:
        need = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise InputError(f"{name} must be {need}, got {value!r}")
    return int(value)


def fraction(name: str, value) -> float:
    """``value`` as a float in (0, 1], else InputError."""
    return number(name, value, 0, 1, "(]")


def number(name: str, value, low: float = -math.inf, high: float = math.inf, bounds: str = "[]") -> float:
    """``value`` as a finite float between ``low`` and ``high`` (``bounds``: '[]', '(]', '[)', '()' say
    which ends are included), else InputError naming the interval."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or value > high or value == low and bounds[0] == "(" or value == high and bounds[1] == ")":
        interval = f"{bounds[0]}{low:g}, {high:g}{bounds[1]}"
        what = ("a positive number" if (low, high, bounds[0]) == (0, math.inf, "(") else
                "a number >= {:g}".format(low) if high == math.inf else f"a number in {interval}")
        raise InputError(f"{name} must be {what}, got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------- chapter parameter rules
#: The dtype names babel_lib.core.models.resolve_dtype knows.
DTYPES = ("bfloat16", "bf16", "float32", "fp32", "float16", "fp16")
#: The most permutations or bootstrap resamples a run may ask for (each one costs a pass over the data;
#: the paper preset uses 9,999 and 2,000).
MAX_RESAMPLES = 1_000_000


def _one_of(choices):
    def check(name, value):
        if value not in choices:
            raise InputError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    return check


def _list_of(check):
    def check_list(name, value):
        if not isinstance(value, (list, tuple)) or not value:
            raise InputError(f"{name} must be a non-empty list, got {value!r}")
        return [check(f"{name}[{i}]", v) for i, v in enumerate(value)]
    return check_list


def _optional(check):
    return lambda name, value: None if value is None else check(name, value)


def _at_least(minimum):
    return lambda name, value: positive_int(name, value, minimum=minimum)


def _count(name, value):
    value = positive_int(name, value)
    if value > MAX_RESAMPLES:
        raise InputError(f"{name} must be at most {MAX_RESAMPLES:,}, got {value!r}")
    return value


def _rate(name, value):
    return number(name, value, 0, 1, "[)")


def _device(name, value):
    return check_device(value)


def _boolean(name, value):
    if not isinstance(value, bool):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return value


#: Choices of list parameters, named here so that checking them never imports the model stack (a test
#: holds each equal to the library's own tuple).
PRUNING_METHODS = ("language", "multilingual", "magnitude", "wanda", "random")  # applications.METHODS
LAYER_RULES = ("layerwise", "entropy", "owl", "crosslingual")  # applications.layer_rates, besides "uniform"
TUNE_TASKS = ("translate", "to_english", "continue", "repeat")  # instructions.TASKS
PLACEBO_KINDS = ("plain text", "noise")  # tuning_pair.PLACEBOS

#: One rule for each chapter parameter with a range, applied to ``-p`` values before any kernel starts
#: (:func:`check_parameters`) and to the same options of the command line (``--batch-size``, ...).
#: A rule is ``check(name, value) -> value``; it raises InputError naming the parameter.
PARAMETER_RULES = {
    "expert_size": positive_int, "batch_size": positive_int, "max_passages": _optional(positive_int),
    "max_tokens": _optional(positive_int), "max_length": _at_least(2), "top_k_fraction": fraction,
    "seed": _at_least(0), "seeds": _list_of(_at_least(0)), "random_seeds": _list_of(_at_least(0)),
    "n_resamples": _count, "permutations": _count, "hf_ratio": lambda n, v: number(n, v, 0, math.inf, "(]"),
    "level": lambda n, v: number(n, v, 0, 1, "()"), "byte_fallback_share": lambda n, v: number(n, v, 0, 1, "()"),
    "lape_top_rate": fraction, "lape_quantile": fraction,
    "top_families": positive_int, "grid_points": _optional(_at_least(2)), "tune_steps": _optional(positive_int),
    "tune_batch_size": _optional(positive_int),
    "tune_learning_rate": _optional(lambda n, v: number(n, v, 0, math.inf, "(]")),
    "loss_examples": positive_int, "loss_max_length": _at_least(2), "answer_examples": positive_int,
    "answer_batch_size": positive_int, "max_new_tokens": positive_int, "min_tokens": positive_int, "calibration_tokens": positive_int,
    "timing_batch": positive_int, "timing_rounds": positive_int, "bible_passages": positive_int,
    "sister_trios": _at_least(2),
    "rates": _list_of(_rate), "cross_rates": _list_of(_rate), "random_tokens": positive_int, "matrix_rate": _rate, "max_deviation": _rate, "keep_fractions": _list_of(fraction),
    "comparable": lambda n, v: number(n, v, 1), "dtype": _one_of(DTYPES), "device": _device,
    "corpus_name": _one_of(("udhr", "bible")), "view": _one_of(("slice", "mask")),
    "router_features": _one_of(("gate", "up", "both")), "trained_router": _boolean, "router_steps": positive_int,
    "router_hidden": positive_int,
    "linkage": _one_of(("single", "complete", "average", "weighted", "centroid", "median", "ward")),
    "neurons": _boolean, "layer_tests": _boolean, "oracle": _boolean, "null_draws": _count,
    "split": _one_of(("calibration", "evaluation", "all")), "methods": _list_of(_one_of(PRUNING_METHODS)),
    "rules": _list_of(_one_of(LAYER_RULES)), "tune_tasks": _list_of(_one_of(TUNE_TASKS)),
    "placebo_kinds": _list_of(_one_of(PLACEBO_KINDS)),
    "m_experts": positive_int, "n_controls": positive_int, "eval_tokens": positive_int, "n_prompts": positive_int,
    "gen_tokens": positive_int, "n_gen_controls": positive_int, "steer_passages": positive_int,
    "wide_passages": positive_int, "wide_eval_tokens": positive_int, "wide_max_tokens": _optional(positive_int),
    "top_k_fractions": _list_of(fraction), "expert_sizes": _list_of(positive_int),
    "hf_ratios": _list_of(lambda n, v: number(n, v, 0, math.inf, "(]")), "partition_seeds": _list_of(_at_least(0)),
    "size_passages": positive_int, "size_bible_passages": _at_least(0), "size_eval_tokens": positive_int,
    "steer_scale": lambda n, v: number(n, v, 0, math.inf, "(]"), "steer_layer": _optional(_at_least(0)),
}


def check_parameter(name: str, value, option: str | None = None):
    """``value`` checked by the rule of parameter ``name`` (:data:`PARAMETER_RULES`; unchanged when it has
    none); errors name ``option`` (e.g. '--batch-size') when given, else the parameter."""
    rule = PARAMETER_RULES.get(name)
    return value if rule is None else rule(option or name, value)


# ---------------------------------------------------------------------------- outputs
def check_output(path, kind: str = "file", force: bool = False, *, cwd=None) -> Path:
    """Check that ``path`` can take a new output of ``kind`` before any work starts.

    kind: 'file' (replaced whole), 'folder' (a model folder, replaced whole) or 'contents' (a folder
    the command writes its files into, e.g. ``babel run --output``). An existing target is refused
    unless ``force``; even with ``force`` a file is never replaced by a folder or the reverse, nor is
    anything but a regular file replaced by a file (a FIFO, a device), nor a folder by a model folder
    unless it is empty or a model folder itself (it holds config.json). The nearest existing parent
    must be a writable folder (missing folders are created by the writer). A folder holding the
    current folder (``cwd``) or the home folder is never replaced. Nothing is created, moved or
    deleted here. Returns the path.
    """
    if kind not in ("file", "folder", "contents"):
        raise ValueError(f"kind must be 'file', 'folder' or 'contents', got {kind!r}")
    path = Path(path).expanduser()
    if path.exists() or path.is_symlink():
        if kind != "file" and not path.is_dir():
            raise OutputPathError(f"output {path} is a file; a folder is to be written there. Choose another path "
                                  "(--force never replaces a file by a folder).")
        if kind == "file" and path.is_dir():
            raise OutputPathError(f"output {path} is a folder; a file is to be written there. Choose a file path "
                                  "(--force never replaces a folder by a file).")
        if kind == "contents" and not any(path.iterdir()):
            pass  # an empty folder: nothing in it can be lost
        elif not force:
            what = "pass --force to write into it" if kind == "contents" else "pass --force to replace it"
            raise OutputPathError(f"output {path} already exists; {what}, or choose another path.")
        if kind == "file" and path.exists() and not stat.S_ISREG(path.stat().st_mode):
            raise OutputPathError(f"output {path} is not a regular file (a FIFO, a device or a socket); it is never "
                                  "replaced, even with --force. Choose a file path.")
        if kind == "folder":
            here = Path(cwd if cwd is not None else os.getcwd()).resolve()
            target = path.resolve()
            if target == here or target in here.parents or target == Path.home().resolve():
                raise OutputPathError(f"output {path} holds the current folder or is the home folder; it is never "
                                      "replaced. Choose another path.")
            if any(path.iterdir()) and not (path / "config.json").is_file():
                raise OutputPathError(f"output {path} is not a model folder (it holds no config.json) and is not "
                                      "empty; --force replaces only a model folder. Choose another path.")
    parent = Path(os.path.abspath(path)).parent
    while not (parent.exists() or parent.is_symlink()):
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"output {path}: {parent} is a file, not a folder. Choose another path.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"output {path}: cannot write in {parent} (permission denied). Choose another path.")
    return path


# ---------------------------------------------------------------------------- devices
def check_device(device) -> str:
    """A device torch can use here ('auto', 'cpu', 'cuda', 'cuda:1', 'mps', ...), else ValueError
    naming what is missing. Returns ``device`` unchanged ('auto' for None)."""
    if device is None or device == "auto":
        return "auto"
    if device == "cpu":
        return device  # no torch import: the light commands check the default profile's device
    if not isinstance(device, str):
        raise InputError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"device {device!r} is not a device torch knows; use 'auto', 'cpu', 'cuda', 'cuda:1' or "
                         f"'mps' ({str(exc).splitlines()[0]})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "" if torch.version.cuda else ", a build without CUDA"
            raise InputError(f"device {device!r}: torch sees no CUDA GPU on this machine (torch {torch.__version__}"
                             f"{built}). Use --device cpu, or auto (a GPU when there is one).")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise InputError(f"device {device!r}: only {n} CUDA GPU(s) are visible (cuda:0 to cuda:{n - 1}).")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {device!r}: the Apple MPS backend is not available here. Use --device cpu.")
    if dev.type not in ("cpu", "cuda", "mps", "xpu"):
        raise InputError(f"device {device!r}: a {dev.type} device cannot run a model here; use 'auto', 'cpu', "
                         "'cuda' or 'mps'.")
    return str(device)


# ---------------------------------------------------------------------------- chapter parameters
_DESCRIBE = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
             "list[str]": "a list of strings", "list[int]": "a list of integers", "list[float]": "a list of numbers",
             "list": "a list", "dict": "a JSON object", "None": "None"}
_EXAMPLE = {"int": "8", "float": "0.5", "bool": "true", "str": "text", "list[str]": '\'["eng", "fra"]\'',
            "list[int]": "'[0, 1]'", "list[float]": "'[0.1, 0.5]'", "list": "'[1, 2]'", "dict": '\'{"a": 1}\'',
            "None": "null"}
_ANNOTATION_NAMES = {"int": "int", "float": "float", "bool": "bool", "str": "str", "list": "list", "List": "list",
                     "tuple": "list", "dict": "dict", "Dict": "dict", "None": "None", "NoneType": "None"}


def check_parameters(declared: dict, values: dict) -> dict:
    """Check ``values`` against a notebook's declared parameters before it runs; returns them converted.

    declared: papermill's ``inspect_notebook`` result, {name: {"inferred_type_name", "default", ...}}.
    The type comes from the annotation when there is one, else from the default's value (a default
    of None accepts anything). Conversions: an integral float for an int (32.0 -> 32), an int for a
    float, a number for a string (its text); a string parameter also takes a list of strings (specs
    such as ``languages = "paper"``). Then each value's range (:data:`PARAMETER_RULES`). Parameters the
    notebook does not declare pass unchanged.
    """
    out = {}
    for name, value in values.items():
        info = declared.get(name)
        out[name] = value if info is None else check_parameter(name, _check_parameter(name, value, info))
    for low, high in ORDERED_PARAMETERS:
        if low in declared and high in declared and (low in out or high in out):
            a, b = (out[n] if n in out else _default(declared[n]) for n in (low, high))
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b < a:
                raise InputError(f"{high} ({b!r}) must be at least {low} ({a!r}); for example -p {high} {a!r} "
                                 f"(or None where the notebook allows it)")
    return out


#: Pairs (low, high) of one notebook's parameters where high, when a number, must be at least low.
ORDERED_PARAMETERS = (("wide_eval_tokens", "wide_max_tokens"), ("n_gen_controls", "n_controls"),
                      ("random_tokens", "min_tokens"))


def _default(info: dict):
    try:
        return ast.literal_eval(str(info.get("default", "None")))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def _check_parameter(name: str, value, info: dict):
    default_text = str(info.get("default", "None"))
    kinds = _declared_kinds(str(info.get("inferred_type_name") or "None"), default_text)
    if kinds is None:
        return value
    for kind in kinds:
        ok, converted = _convert(kind, value)
        if ok:
            return converted
    wanted = " or ".join(_DESCRIBE[k] for k in kinds)
    raise InputError(f"{name} must be {wanted} (the notebook's default is {default_text}), got {value!r}; "
                     f"for example -p {name} {_example(kinds, default_text)}")


def _declared_kinds(annotation: str, default_text: str) -> list[str] | None:
    """The accepted kinds (keys of _DESCRIBE) of a parameter, or None for anything."""
    if annotation != "None":
        return _annotation_kinds(annotation)
    try:
        default = ast.literal_eval(default_text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None  # not a literal: nothing to check against
    return _value_kinds(default)


def _value_kinds(default) -> list[str] | None:
    if default is None:
        return None
    if isinstance(default, bool):
        return ["bool"]
    if isinstance(default, int):
        return ["int"]
    if isinstance(default, float):
        return ["float"]
    if isinstance(default, str):
        return ["str", "list[str]"]  # a spec string or a list of items (e.g. languages)
    if isinstance(default, (list, tuple)):
        items = list(default)
        if items and all(isinstance(v, str) for v in items):
            return ["list[str]"]
        if items and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            return ["list[int]"]
        if items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return ["list[float]"]
        return ["list"]
    if isinstance(default, dict):
        return ["dict"]
    return None


def _annotation_kinds(annotation: str) -> list[str] | None:
    """Kinds of an annotation such as 'int', 'Optional[float]', 'Union[str, list]', 'str | None', 'list[int]'."""
    text = annotation.replace("typing.", "").strip()
    match = re.fullmatch(r"(Optional|Union)\[(.*)\]", text)
    if match:
        members = _split_top(match.group(2)) + (["None"] if match.group(1) == "Optional" else [])
    else:
        members = _split_top(text, "|")
    kinds = []
    for member in members:
        member = member.strip()
        inner = re.fullmatch(r"(list|List)\[(\w+)\]", member)
        if inner and inner.group(2) in ("str", "int", "float"):
            kinds.append(f"list[{inner.group(2)}]")
        elif re.sub(r"\[.*\]$", "", member) in _ANNOTATION_NAMES:
            kinds.append(_ANNOTATION_NAMES[re.sub(r"\[.*\]$", "", member)])
        else:
            return None  # a type we do not check (Any, a class, ...)
    return kinds or None


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split at ``sep`` outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _convert(kind: str, value):
    """(fits, converted value) of ``value`` for one kind."""
    if kind == "int":
        if _is_number(value) and (isinstance(value, int) or math.isfinite(value) and value.is_integer()):
            return True, int(value)
        return False, None
    if kind == "float":
        return (True, float(value)) if _is_number(value) else (False, None)
    if kind == "bool":
        return isinstance(value, bool), value
    if kind == "str":
        if isinstance(value, str):
            return True, value
        return (True, str(value)) if _is_number(value) else (False, None)
    if kind.startswith("list"):
        if not isinstance(value, (list, tuple)):
            return False, None
        item = kind[5:-1] if "[" in kind else None
        if item is None:
            return True, list(value)
        if item == "str":
            return (True, list(value)) if all(isinstance(v, str) for v in value) else (False, None)
        converted = [_convert(item, v) for v in value]
        return (True, [c for _, c in converted]) if all(ok for ok, _ in converted) else (False, None)
    if kind == "dict":
        return isinstance(value, dict), value
    if kind == "None":
        return value is None, None
    raise AssertionError(kind)


def _example(kinds: list[str], default_text: str) -> str:
    try:
        default = ast.literal_eval(default_text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        default = None
    if default is not None and any(_convert(k, default)[0] for k in kinds):
        text = json.dumps(default)
        return f"'{text}'" if any(c in text for c in " []{}\"") else text
    return _EXAMPLE[kinds[0]]


# ---------------------------------------------------------------------------- model folders
#: The files a tuned model folder adds (babel_lib.interventions.tune.META_FILE and LOG_FILE, named here so that this
#: module imports no torch; a test checks they are equal).
TUNING_META, TUNING_LOG = "babel_tuning.json", "training_log.csv"
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8,
                "U32": 4, "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}
_MAX_HEADER = 100 * 2**20
_EMBEDDING_NAMES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight")
_LAYER_INDEX = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")


def verify_model_folder(folder) -> str | None:
    """None when a model folder looks sound, else what is wrong with which file (one sentence).

    Checks, without loading any weights: config.json parses and names a model_type; every other
    ``*.json`` file parses (the tokenizer's, a tuned model's ``babel_tuning.json``); a tuned model's
    training log holds a header and a row; every ``*.safetensors`` file's header parses and its data
    section has exactly the length the header's offsets give (a truncated or padded file is caught);
    shards named by an index file exist; hidden size and layer count in config.json agree with the
    embedding's shape and the layer indices present in the weights.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return f"{folder.name} is not a folder"
    config_path = folder / "config.json"
    if not config_path.is_file():
        return "it has no config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return f"config.json cannot be read ({exc})"
    except ValueError as exc:
        return f"config.json is not valid JSON ({exc})"
    if not isinstance(config, dict):
        return "config.json is not a JSON object"
    if not config.get("model_type"):
        return 'config.json has no model_type (the architecture, e.g. "llama")'
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            return f"{path.name} is not valid JSON ({exc.__class__.__name__}: {exc})"
    if (folder / TUNING_META).is_file():
        log = folder / TUNING_LOG
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
        if len(lines) < 2:
            return f"{TUNING_LOG} is {'empty' if lines or log.is_file() else 'missing'} (it holds the loss of every step)"
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            return f"model.safetensors.index.json is unreadable ({exc.__class__.__name__}: {exc})"
        missing = sorted(s for s in shards if not (folder / str(s)).is_file())
        if missing:
            return f"model.safetensors.index.json names {', '.join(missing)}, which is missing"
    shapes = {}
    for path in sorted(folder.glob("*.safetensors")):
        problem, header = _safetensors_shapes(path)
        if problem:
            return problem
        shapes.update(header)
    return _shape_problem(config, shapes)


def _safetensors_shapes(path: Path) -> tuple[str | None, dict]:
    """(problem or None, {tensor name: shape}) of a safetensors file, from its header and its size."""
    name, size = path.name, path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{name} is truncated: {size} bytes, too short for a header", {}
        n = int.from_bytes(head, "little")
        if n > min(size - 8, _MAX_HEADER):
            return f"{name} is truncated or its header is damaged: the header claims {n:,} bytes, the file " \
                   f"holds {size:,}", {}
        try:
            header = json.loads(fh.read(n))
        except (ValueError, UnicodeDecodeError) as exc:
            return f"{name} has an unreadable header ({exc})", {}
    if not isinstance(header, dict):
        return f"{name} has an unreadable header (not a JSON object)", {}
    end, shapes = 0, {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            begin, stop = (int(v) for v in info["data_offsets"])
            shape = [int(v) for v in info["shape"]]
            dtype = info["dtype"]
        except (KeyError, TypeError, ValueError):
            return f"{name} has an unreadable header (tensor {key!r} lacks dtype, shape or data_offsets)", {}
        width = _DTYPE_BYTES.get(dtype)
        if stop < begin or width is not None and stop - begin != width * math.prod(shape):
            return f"{name} is damaged: tensor {key} ({dtype}, shape {shape}) spans {stop - begin:,} bytes", {}
        end = max(end, stop)
        shapes[key] = shape
    data = size - 8 - n
    if data < end:
        return f"{name} is truncated: its header lists {end:,} bytes of tensor data, the file holds {data:,}", {}
    if data > end:
        return f"{name} is longer than its header says ({data:,} bytes of tensor data, {end:,} expected)", {}
    return None, shapes


def _config_value(config: dict, keys: tuple[str, ...]) -> tuple[str, int] | None:
    """(key, value) of the first integer setting among ``keys`` (top level, else text_config)."""
    for source in (config, config.get("text_config") if isinstance(config.get("text_config"), dict) else {}):
        for key in keys:
            if isinstance(source.get(key), int) and not isinstance(source.get(key), bool):
                return key, source[key]
    return None


def _shape_problem(config: dict, shapes: dict) -> str | None:
    """Disagreements between config.json and the weights' shapes (hidden size, number of layers)."""
    if not shapes:
        return None
    hidden = _config_value(config, ("hidden_size", "n_embd", "d_model"))
    projected = config.get("word_embed_proj_dim")  # OPT: embeddings narrower than the hidden size
    for name, shape in shapes.items():
        if hidden and name.endswith(_EMBEDDING_NAMES) and len(shape) == 2 and shape[1] not in (hidden[1], projected):
            return f"config.json says {hidden[0]} = {hidden[1]}, but {name} has shape {shape}"
    layers = _config_value(config, ("num_hidden_layers", "n_layer", "num_layers"))
    found = {int(m.group(1)) for name in shapes if not re.search(r"vision|visual|audio", name)
             for m in [_LAYER_INDEX.search(name)] if m}
    if layers and found and max(found) + 1 != layers[1]:
        return (f"config.json says {layers[0]} = {layers[1]}, but the weights hold layers 0-{max(found)} "
                f"({len(found)} layers)")
    return None
