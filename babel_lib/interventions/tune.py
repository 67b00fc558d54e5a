"""Instruction tuning: fine-tune a base model on the instruction set, cache the tuned model as a
plain model folder, and measure how far its weights moved.

No base/instruct pair of one model ships offline, so the project makes one: it fine-tunes a base
model (default Gemma 3 270M base) on instructions built from the UDHR
(:func:`babel_lib.data.instructions.instruction_set`) and stores the result as a plain model folder in
the cache. Everything here is our choice (the paper does not say how its instruct models were
made; they are the publishers' releases). Measuring the tuned model is :mod:`babel_lib.interventions.answers`;
comparing its activation profiles with the base's is :mod:`babel_lib.stats.compare`.

**The recipe** (:func:`instruction_tune`, defaults in :class:`TuneConfig`): AdamW (the fused
implementation where torch has one for the device), linear warm-up then linear decay, gradient
clipping at 1.0, loss = mean cross-entropy over response tokens only (the LM head, 70% of a Gemma
forward pass, is applied at response positions only: :func:`babel_lib.data.instructions.response_logits`).
What is trained (``train``): ``'all_but_embeddings'`` (default: every weight except the tied input
embedding / output head, which holds 168M of Gemma 3 270M's 268M parameters: freezing it keeps the
vocabulary fixed and cuts optimizer work), ``'ffn_attention'`` (the decoder blocks' linear layers
only) or ``'all'``. With a bf16 model the forward and backward passes run in bf16 while AdamW
updates fp32 master copies of the trained weights (plain bf16 AdamW would lose updates smaller
than bf16's resolution); the saved model has the base model's dtype.

Default schedule (:class:`TuneConfig`; measured on Gemma 3 270M in fp32 on this project's 2-core CPU
against the earlier 100-step recipe, held-out response loss on the whole evaluation split of the
paper's nine languages): 50 steps of 4 examples at a peak learning rate of 5e-5 reach a held-out
loss 0.06 nats above the 100-step recipe's (1.64 vs 1.58; the base model: 2.14) in 0.45 of its
time (50 fused steps of 1.35 s against 100 of 1.51 s). A higher learning rate does not buy fewer steps here: 30 steps at 1e-4 or 2e-4 end far
above (2.05, 2.79): in these runs the gain grew with the examples seen, not with the step size.
Where a step's time goes (batch 4 x about 90 tokens, 2 threads, an idle machine): backbone
forward 20%, LM head and loss at the response positions 12%, backward 50%, gradient clipping 4%,
the optimizer 15% with torch's per-tensor AdamW (0.22 s), 5% with the fused one (0.07 s).

The result is keyed by the base model's fingerprint, the instruction set's content, every
hyperparameter and the recipe's version, built in a temporary folder and renamed into place, and
reloaded in seconds by a rerun.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from babel_lib.core.adapters import backbone, ffn_layers, ffn_spec
from babel_lib.core.cache import atomic_folder, cache_key, cache_root
from babel_lib.core.errors import ModelFolderError
from babel_lib.core.hooks import pad_id, torch_threads
from babel_lib.core.models import LoadedModel, load_model, model_fingerprint
from babel_lib.core.validate import verify_model_folder
from babel_lib.data.instructions import (PLAIN_CHAT_TEMPLATE, collate, dataset_hash, encode_all, has_chat_template,
                                         response_logits)

TUNED_KIND = "tuned"
META_FILE = "babel_tuning.json"
LOG_FILE = "training_log.csv"
TRAIN_CHOICES = ("all_but_embeddings", "ffn_attention", "all")
#: Part of every tuned model's cache key; bumped when the training loop changes its numbers
#: (2: fused AdamW where available).
RECIPE_VERSION = 2


# ---------------------------------------------------------------------------- threads
def auto_threads() -> int | None:
    """1 when the machine is oversubscribed (1-minute load average above the CPU count), else None
    (keep torch's setting). Measured here (2 shared cores, load about 8): a Gemma 3 270M training
    step took about 3x longer with 2 torch threads than with 1, because threads wait at every
    parallel region for a core."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    return 1 if load > (os.cpu_count() or 1) else None


def _threads(n: int | str | None):
    """Context manager: torch threads for the block ('auto': :func:`auto_threads`; None: unchanged)."""
    return torch_threads(auto_threads() if n == "auto" else (int(n) if n else None))


# ---------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class TuneConfig:
    """Hyperparameters of :func:`instruction_tune` (all part of the cache key).

    Defaults (our choice, measured on Gemma 3 270M in fp32 on a 2-core CPU; see the module
    docstring): 50 steps of 4 examples of at most 128 tokens, peak learning rate 5e-5 with 10%
    warm-up and linear decay, everything but the embedding trained: the earlier recipe's held-out
    loss within 0.06 nats in 0.45 of its time (the 100 steps take about 2.5 min on an idle machine
    and took 21-31 min on a busy one).
    """

    steps: int = 50
    batch_size: int = 4
    max_length: int = 128
    learning_rate: float = 5e-5
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1
    train: str = "all_but_embeddings"
    seed: int = 0
    grad_clip: float = 1.0

    def __post_init__(self):
        if self.train not in TRAIN_CHOICES:
            raise ValueError(f"train must be one of {TRAIN_CHOICES}, got {self.train!r}")
        if self.steps < 1 or self.batch_size < 1 or self.max_length < 8:
            raise ValueError("steps and batch_size must be positive and max_length at least 8")


@dataclass
class TunedModel:
    """A tuned model: its folder in the cache, the loaded model, its training log and metadata."""

    path: Path
    lm: LoadedModel
    log: pd.DataFrame
    meta: dict
    cached: bool = False

    @property
    def spec(self) -> str:
        """A model spec for babel_lib.core.models.load_model / pipeline.get_model: the folder path."""
        return str(self.path)

    def describe(self) -> str:
        m = self.meta
        h = m["hyperparameters"]
        return (f"{m['base_model']} (fingerprint {m['base_fingerprint']}) instruction-tuned on {m['examples_used']:,} "
                f"examples of the UDHR instruction set ({', '.join(m['tasks'])}; {len(m['languages'])} languages; "
                f"{m['template']} template): {h['steps']} steps of {h['batch_size']} examples, at most "
                f"{h['max_length']} tokens, AdamW lr {h['learning_rate']:g} (warm-up {h['warmup_fraction']:.0%}, "
                f"linear decay), trained: {h['train']} ({m['trainable_parameters'] / 1e6:.1f}M of "
                f"{m['total_parameters'] / 1e6:.1f}M parameters), {m['compute_dtype']} compute on {m['device']}; "
                f"{m['train_seconds'] / 60:.1f} min, {m['tokens_seen']:,} tokens "
                f"({m['response_tokens_seen']:,} response tokens)")


def trainable_parameters(model: torch.nn.Module, train: str) -> list[tuple[str, torch.nn.Parameter]]:
    """The (name, parameter) pairs that ``train`` selects (see the module docstring)."""
    if train not in TRAIN_CHOICES:
        raise ValueError(f"train must be one of {TRAIN_CHOICES}, got {train!r}")
    emb = {id(p) for p in model.get_input_embeddings().parameters()}
    out_emb = model.get_output_embeddings()
    if out_emb is not None:
        emb |= {id(p) for p in out_emb.parameters()}
    named = list(model.named_parameters())  # shared (tied) parameters appear once
    if train == "all":
        return named
    if train == "all_but_embeddings":
        return [(n, p) for n, p in named if id(p) not in emb]
    blocks = {id(p) for block in _decoder_layers(model) for m in block.modules() if _is_projection(m)
              for p in m.parameters(recurse=False)}
    return [(n, p) for n, p in named if id(p) in blocks and id(p) not in emb]


def _is_projection(module: torch.nn.Module) -> bool:
    """A linear projection (torch Linear, or GPT-2's transposed Conv1D)."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (torch.nn.Linear, Conv1D))


def _decoder_layers(model):
    """The decoder blocks (the ModuleList the FFN adapter table names for this architecture)."""
    return backbone(model).get_submodule(ffn_spec(model).layers)


def tuned_key(lm: LoadedModel, dataset, config: TuneConfig) -> str:
    """Cache key of a tuning run: base fingerprint and dtype, tokenizer, instruction set,
    hyperparameters and :data:`RECIPE_VERSION`."""
    tok = lm.tokenizer
    return cache_key({"kind": TUNED_KIND, "recipe": RECIPE_VERSION, "base_fingerprint": lm.fingerprint,
                      "base_dtype": str(lm.dtype), "tokenizer": [type(tok).__name__, len(tok)],
                      "dataset": dataset_hash(dataset), "hyperparameters": config.__dict__})


def tuned_folder(key: str) -> Path:
    """Where a tuned model with this key lives: ``$BABEL_CACHE/tuned/<key[:16]>``."""
    return cache_root() / TUNED_KIND / key[:16]


# ---------------------------------------------------------------------------- training
def _lr_at(step: int, config: TuneConfig) -> float:
    warm = max(1, round(config.warmup_fraction * config.steps)) if config.warmup_fraction > 0 else 0
    if step < warm:
        return config.learning_rate * (step + 1) / warm
    rest = max(1, config.steps - warm)
    return config.learning_rate * max(0.0, 1 - (step - warm) / rest)


def _batches(n: int, config: TuneConfig, lengths: np.ndarray):
    """Example indices of each step: seeded shuffles epoch after epoch; within a window of 16
    batches, examples are sorted by length (less padding)."""
    rng = np.random.default_rng(config.seed)
    order: list[int] = []
    window = 16 * config.batch_size
    out = []
    while len(out) < config.steps:
        if not order:
            perm = rng.permutation(n)
            for i in range(0, n, window):
                chunk = perm[i:i + window]
                order.extend(chunk[np.argsort(-lengths[chunk], kind="stable")].tolist())
        out.append(order[:config.batch_size])
        order = order[config.batch_size:]
    return out


def _adamw(params, config: TuneConfig) -> torch.optim.Optimizer:
    """AdamW, fused where torch has a fused kernel for these tensors (CPU and CUDA: measured on
    Gemma 3 270M's 100M trained weights, 0.07 s a step instead of 0.22 s for the per-tensor loop)."""
    try:
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)


def instruction_tune(
    lm: LoadedModel,
    dataset,
    config: TuneConfig | None = None,
    *,
    progress: bool = True,
    force: bool = False,
    threads: int | str | None = "auto",
    **hyperparameters,
) -> TunedModel:
    """Fine-tune a copy of ``lm`` on ``dataset`` (an instruction set); cached.

    config or keyword hyperparameters (see :class:`TuneConfig`): steps, batch_size, max_length,
    learning_rate, weight_decay, warmup_fraction, train, seed, grad_clip. ``lm`` is not changed: a
    copy is trained on ``lm``'s device in ``lm``'s dtype (fp32 master weights when that is bf16 or
    fp16) and saved in that dtype. Pass a float32 model on CPUs without fast bf16 matrix units:
    on AVX2-only CPUs a bf16 matmul is about 7x slower than fp32 and the output layer's bf16
    backward about 100x (bf16 is the right choice on GPUs and AMX CPUs).
    The result lands in :func:`tuned_folder` (model, tokenizer, ``babel_tuning.json``,
    ``training_log.csv`` with the loss of every step); a rerun with the same base model (same
    fingerprint, hence same dtype), set and hyperparameters loads it instead (``force=True``
    retrains). threads: torch threads while training ('auto': see :func:`auto_threads`; not part
    of the key).
    """
    if config is None:
        config = TuneConfig(**hyperparameters)
    elif hyperparameters:
        raise ValueError("give either config or keyword hyperparameters, not both")
    key = tuned_key(lm, dataset, config)
    target = tuned_folder(key)
    if (target / META_FILE).exists() and not force:
        problem = verify_model_folder(target)
        if problem is None:
            return load_tuned(target, dtype=lm.dtype, device=str(lm.device), tokenizer=lm.tokenizer)
        warnings.warn(f"the cached tuned model {target} is damaged ({problem}); tuning it again", stacklevel=2)

    with _threads(threads):
        return _train(lm, dataset, config, key, target, progress)


def _train(lm: LoadedModel, dataset, config: TuneConfig, key: str, target: Path, progress: bool) -> TunedModel:
    from tqdm import tqdm

    tok = lm.tokenizer
    encoded, kept = encode_all(tok, dataset, config.max_length)
    if not encoded:
        raise ValueError(f"no example fits in max_length={config.max_length} tokens")
    lengths = np.array([len(p) + len(r) for p, r in encoded])
    torch.manual_seed(config.seed)
    model = copy.deepcopy(lm.model)
    model.train()
    chosen = trainable_parameters(model, config.train)
    chosen_ids = {id(p) for _, p in chosen}
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen_ids)
    params = [p for _, p in chosen]
    mixed = params[0].dtype != torch.float32
    masters = [p.detach().float().clone() for p in params] if mixed else params
    opt = _adamw(masters, config)
    pad = pad_id(tok)
    device = lm.device
    log = []
    seen = resp_seen = 0
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    bar = tqdm(total=config.steps, desc="instruction tuning", disable=not progress)
    for step, idx in enumerate(_batches(len(encoded), config, lengths)):
        ids, attn, targets = collate([encoded[i] for i in idx], pad, device)
        logits, gold = response_logits(model, ids, attn, targets)
        loss = torch.nn.functional.cross_entropy(logits, gold)
        loss.backward()
        if mixed:
            for m, p in zip(masters, params):
                m.grad = None if p.grad is None else p.grad.float()
                p.grad = None
        norm = torch.nn.utils.clip_grad_norm_(masters, config.grad_clip) if config.grad_clip else torch.tensor(0.0)
        lr = _lr_at(step, config)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        opt.zero_grad(set_to_none=True)
        if mixed:
            with torch.no_grad():
                for m, p in zip(masters, params):
                    p.copy_(m)
        seen += int(attn.sum())
        resp_seen += int(gold.numel())
        log.append({"step": step + 1, "loss": float(loss.detach()), "learning_rate": lr,
                    "grad_norm": float(norm), "tokens": seen, "response_tokens": resp_seen,
                    "seconds": time.perf_counter() - start})
        bar.update(1)
        bar.set_postfix(loss=f"{log[-1]['loss']:.3f}")
    bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    del opt, masters

    rows = dataset.select(kept.tolist())
    meta = {
        "key": key, "recipe": RECIPE_VERSION, "base_model": lm.name, "base_description": lm.description,
        "base_fingerprint": lm.fingerprint,
        "hyperparameters": dict(config.__dict__), "dataset_hash": dataset_hash(dataset),
        "examples": len(dataset), "examples_used": len(encoded), "examples_too_long": len(dataset) - len(encoded),
        "tasks": sorted(set(rows["task"])), "languages": sorted(set(rows["lang"]) | set(rows["source_lang"])),
        "template": rows[0]["template"], "trainable_parameters": int(sum(p.numel() for p in params)),
        "total_parameters": int(sum(p.numel() for p in model.parameters())),
        "compute_dtype": str(lm.dtype).replace("torch.", ""), "device": str(device),
        "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "load_average_at_start": load_at_start,
        "train_seconds": seconds, "tokens_seen": seen,
        "response_tokens_seen": resp_seen, "first_loss": log[0]["loss"],
        "last_loss_mean10": float(np.mean([r["loss"] for r in log[-10:]])),
        "torch": torch.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _save_atomic(model, tok, target, meta, pd.DataFrame(log), rows[0]["template"])
    tuned_lm = LoadedModel(model, tok, str(target), _description(meta), model_fingerprint(model))
    return TunedModel(target, tuned_lm, pd.DataFrame(log), meta, cached=False)


def _description(meta: dict) -> str:
    h = meta["hyperparameters"]
    return (f"{meta['base_model']} instruction-tuned by babel_lib.interventions.tune "
            f"({h['steps']} steps x {h['batch_size']}, "
            f"lr {h['learning_rate']:g}, {h['train']}; key {meta['key'][:8]})")


def _save_atomic(model, tokenizer, target: Path, meta: dict, log: pd.DataFrame, template: str) -> None:
    with atomic_folder(target) as tmp:
        model.save_pretrained(tmp)
        if hasattr(tokenizer, "save_pretrained"):
            tok = copy.copy(tokenizer)
            if template == "plain" and not has_chat_template(tokenizer):
                tok.chat_template = PLAIN_CHAT_TEMPLATE
            tok.save_pretrained(tmp)
        log.to_csv(tmp / LOG_FILE, index=False)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        (tmp / "SOURCE.txt").write_text(_description(meta) + "\n")


def random_perturbation(base: LoadedModel, tuned: LoadedModel, seed: int = 0) -> LoadedModel:
    """A placebo for a fine-tune: a copy of ``base`` whose every tensor that tuning changed gets
    Gaussian noise of exactly the tuning's norm for that tensor, ||noise|| = ||W_tuned - W_base||
    (seeded), and no other change. It moves the weights as far as tuning did, in no learned
    direction. In memory (not cached; its fingerprint keys its profiles)."""
    model = copy.deepcopy(base.model)
    tuned_state = tuned.model.state_dict()
    generator = torch.Generator().manual_seed(int(seed))
    changed = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            other = tuned_state.get(name)
            if other is None or other.shape != p.shape:
                raise ValueError(f"the tuned model has no parameter {name} of shape {tuple(p.shape)}: not a tuned "
                                 "version of this base model")
            delta = other.detach().float().cpu() - p.detach().float().cpu()
            norm = float(delta.norm())
            if norm == 0.0:
                continue
            noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
            p.add_((noise * (norm / float(noise.norm()))).to(p.dtype).to(p.device))
            changed += 1
    if not changed:
        raise ValueError("the tuned model equals the base model: there is no tuning norm to match")
    return LoadedModel(model, base.tokenizer, f"{base.name}+noise(seed {seed})",
                  f"{base.description} with Gaussian noise of the tuning's norm on each of the {changed} tensors "
                  f"tuning changed (seed {seed})", model_fingerprint(model))


def load_tuned(path, dtype="bfloat16", device: str | None = "auto", tokenizer=None) -> TunedModel:
    """Load a tuned model folder (a path, or a key as returned in ``meta['key']``).

    tokenizer: used when the folder holds none (models whose tokenizer cannot be saved, e.g. the
    tests' byte tokenizer). The folder path also works as a spec for ``models.load_model``.
    """
    from transformers import AutoModelForCausalLM

    from babel_lib.core.models import resolve_device, resolve_dtype

    path = Path(path)
    if not path.is_dir():
        path = tuned_folder(str(path))
    if not (path / META_FILE).exists():
        raise FileNotFoundError(f"{path} is not a tuned model folder (no {META_FILE})")
    problem = verify_model_folder(path)
    if problem is not None:
        raise ModelFolderError(f"the tuned model folder {path} is damaged: {problem}. Tune it again "
                               "(instruction_tune with force=True, or delete the folder: it is a cache entry).")
    meta = json.loads((path / META_FILE).read_text())
    log = pd.read_csv(path / LOG_FILE)
    has_tokenizer = any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model"))
    if has_tokenizer:
        lm = load_model(str(path), dtype=dtype, device=device)
    else:
        if tokenizer is None:
            raise ValueError(f"{path} holds no tokenizer: pass tokenizer=")
        model = AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype)).to(resolve_device(device))
        model.eval()
        lm = LoadedModel(model, tokenizer, str(path), "", model_fingerprint(model))
    lm.description = _description(meta)
    return TunedModel(path, lm, log, meta, cached=True)


# ---------------------------------------------------------------------------- weight change
def weight_change(base: torch.nn.Module, tuned: torch.nn.Module) -> pd.DataFrame:
    """Relative change ||W_tuned - W_base|| / ||W_base|| of each decoder layer's weight matrices,
    split into the FFN (the adapter table's gate/up/down projections) and the rest of the block
    ('attention': its other matrices). Columns: layer, part, relative_change."""
    rows = []
    for i, (a, b) in enumerate(zip(_decoder_layers(base), _decoder_layers(tuned))):
        ffn = ffn_layers(base)[i]
        ffn_ids = {id(p) for m in (ffn.up, ffn.gate, ffn.down) if m is not None for p in m.parameters()}
        other = dict(b.named_parameters())
        sums = {"ffn": [0.0, 0.0], "attention": [0.0, 0.0]}
        for name, p in a.named_parameters():
            if p.dim() < 2:
                continue
            part = "ffn" if id(p) in ffn_ids else "attention"
            sums[part][0] += (other[name].float() - p.float()).norm().item() ** 2
            sums[part][1] += p.float().norm().item() ** 2
        for part, (d, n) in sums.items():
            if n:
                rows.append({"layer": i, "part": part, "relative_change": math.sqrt(d / n)})
    return pd.DataFrame(rows)
