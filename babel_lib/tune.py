"""Instruction tuning made offline: a multilingual instruction set from the parallel UDHR, a cached
fine-tuning recipe, honest measurement of its effect, and base-vs-tuned profile comparisons.

No base/instruct pair of one model ships offline, so the project makes one: it fine-tunes a base
model (default Gemma 3 270M base) on instructions built from the UDHR and stores the result as a
plain model folder in the cache. Everything here is our choice (the paper does not say how its
instruct models were made; they are the publishers' releases).

**The instruction set** (:func:`instruction_set`). Instructions are written in English (our
choice: one instruction language, so that only the response language varies); the responses are
in the target languages. Four task types, each built from the parallel text:

- ``translate``: "Translate this paragraph from English into X" + an English paragraph; the
  reference is the parallel paragraph in X (paragraphs are paired by article and position, only in
  articles where both texts have the same number of paragraphs);
- ``to_english``: the reverse direction, a paragraph in X to translate into English;
- ``continue``: "Continue this text in X" + the first half of a paragraph in X (cut at the word
  boundary nearest the middle; at the middle character for scripts without spaces); the reference
  is the second half;
- ``repeat``: "Repeat the following X text exactly" + a paragraph in X; the reference is the same
  paragraph (a copying task: easy, but it teaches the format and to stop).

The training set uses the corpus' calibration split, the held-out set its evaluation split
(disjoint by article, see ``babel_lib.corpus.EVALUATION_RULE``), so no paragraph of an evaluation
article is ever trained on. The wording of each instruction is drawn from a few English phrasings
per task by a seeded generator: the set is deterministic for a seed.

**Formatting.** With a tokenizer that has a chat template, an example is the template rendered for
``[user: instruction, assistant: reference]``; the loss covers the assistant part including the
template's end-of-turn marker. Without one (Gemma 3 270M base: its GGUF tokenizer carries no chat
template; the tiny test tokenizer) the documented plain template :data:`PLAIN_TEMPLATE` is used::

    <bos>### Instruction:
    {instruction}

    ### Response:
    {reference}<eos>

and the tuned model's tokenizer is saved with the same format as a jinja chat template
(:data:`PLAIN_CHAT_TEMPLATE`), so the tuned folder formats its own prompts.

**The recipe** (:func:`instruction_tune`): AdamW, linear warm-up then linear decay, gradient
clipping at 1.0, loss = mean cross-entropy over response tokens only (the LM head, 70% of a Gemma
forward pass, is applied at response positions only). What is trained (``train``):
``'all_but_embeddings'`` (default: every weight except the tied input embedding / output head,
which holds 168M of Gemma 3 270M's 268M parameters: freezing it keeps the vocabulary fixed and cuts
optimizer work), ``'ffn_attention'`` (the decoder blocks' linear layers only) or ``'all'``.
With a bf16 model the forward and backward passes run in bf16 while AdamW updates fp32 master
copies of the trained weights (plain bf16 AdamW would lose updates smaller than bf16's resolution);
the saved model has the base model's dtype. The result is keyed by the base model's fingerprint,
the instruction set's content and every hyperparameter, built in a temporary folder and renamed
into place, and reloaded in seconds by a rerun.

**Measurement** (:func:`response_loss`, :func:`generate_answers`, :func:`score_answers`): held-out
loss on the response tokens, and greedy answers to held-out prompts scored by cheap documented
checks (see :func:`score_answers`).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import corpus
from .adapters import backbone, ffn_layers
from .cache import atomic_folder, cache_key, cache_root
from .models import LoadedModel, load_model, model_fingerprint

TASKS = ("translate", "to_english", "continue", "repeat")

#: English phrasings of each task's instruction; {target} / {source} are English language names.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "translate": (
        "Translate this paragraph from {source} into {target}.",
        "Translate the following text from {source} to {target}.",
        "Render this {source} paragraph in {target}.",
    ),
    "to_english": (
        "Translate this paragraph from {source} into {target}.",
        "Translate the following {source} text into {target}.",
        "What does this {source} paragraph say? Answer with its translation into {target}.",
    ),
    "continue": (
        "Continue this text in {target}.",
        "Here is the beginning of a paragraph in {target}. Write how it continues, in {target}.",
        "Complete the following {target} text.",
    ),
    "repeat": (
        "Repeat the following {target} text exactly.",
        "Copy this text in {target} word for word.",
        "Write out this {target} paragraph again, unchanged.",
    ),
}

#: The plain template (used when the tokenizer has no chat template): prompt part, then the response.
PLAIN_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
#: The same format as a jinja chat template (saved with a model tuned on the plain template).
PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}### Instruction:\n{{ message['content'] }}\n\n### Response:\n"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
MIN_CONTINUE_CHARS = 40
TUNED_KIND = "tuned"
META_FILE = "babel_tuning.json"
LOG_FILE = "training_log.csv"
TRAIN_CHOICES = ("all_but_embeddings", "ffn_attention", "all")


# ============================================================================ the instruction set
language_name = corpus.language_name  # re-exported: the instruction set's wording uses it


def _pairs(source: str, target: str, split: str) -> list[tuple[int, int, str, str]]:
    """(article, paragraph, source text, target text) for paragraphs paired by position, in
    articles where both texts have the same number of paragraphs."""
    frame = corpus.load_corpus([source, target], split).to_pandas()
    a, b = frame[frame["lang"] == source], frame[frame["lang"] == target]
    out = []
    for article, rows_a in a.groupby("article", sort=True):
        rows_b = b[b["article"] == article]
        if len(rows_a) != len(rows_b) or rows_a.empty:
            continue
        for (_, ra), (_, rb) in zip(rows_a.sort_values("paragraph").iterrows(), rows_b.sort_values("paragraph").iterrows()):
            if ra["text"].strip() and rb["text"].strip():
                out.append((int(article), int(ra["paragraph"]), ra["text"].strip(), rb["text"].strip()))
    return out


def split_for_continuation(text: str) -> tuple[str, str] | None:
    """(beginning, rest) of a paragraph cut near its middle: at the word boundary closest to the
    middle character when the text has at least 4 words, else at the middle character. None when
    the text is shorter than MIN_CONTINUE_CHARS."""
    text = text.strip()
    if len(text) < MIN_CONTINUE_CHARS:
        return None
    mid = len(text) // 2
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if len(spaces) >= 3:
        cut = min(spaces, key=lambda i: abs(i - mid))
        head, tail = text[:cut], text[cut + 1:]
    else:
        head, tail = text[:mid], text[mid:]
    if not head.strip() or not tail.strip():
        return None
    return head.strip(), tail.strip()


def _has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None)) and hasattr(tokenizer, "apply_chat_template")


def format_example(tokenizer, instruction: str, reference: str, template: str = "auto") -> tuple[str, str, str]:
    """(template used, prompt text, response text) of one example.

    template: 'auto' (the tokenizer's chat template when it has one, else 'plain'), 'chat' or
    'plain'. For 'chat' the response text includes the template's end-of-turn marker; for 'plain'
    it is the bare reference (the EOS token is appended at encoding, :func:`encode_example`).
    """
    if template == "auto":
        template = "chat" if _has_chat_template(tokenizer) else "plain"
    if template == "plain":
        return "plain", PLAIN_TEMPLATE.format(instruction=instruction), reference
    if template != "chat":
        raise ValueError(f"template must be 'auto', 'chat' or 'plain', got {template!r}")
    if not _has_chat_template(tokenizer):
        raise ValueError("template='chat' needs a tokenizer with a chat template; use 'plain' or 'auto'")
    user = [{"role": "user", "content": instruction}]
    prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": reference}], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template does not render the conversation as prompt + response; "
                         "use template='plain'")
    return "chat", prompt, full[len(prompt):]


def instruction_set(
    languages="paper",
    split: str = "calibration",
    tasks=TASKS,
    tokenizer=None,
    template: str = "auto",
    source_language: str = "eng",
    seed: int = 0,
):
    """The multilingual instruction set as a ``datasets.Dataset``, deterministic for ``seed``.

    languages: any selection understood by ``corpus.resolve_languages`` (default: the paper's
    nine; more with e.g. 'wide:30'). split: 'calibration' (training) or 'evaluation' (held out).
    tasks: a subset of :data:`TASKS`. tokenizer: decides the formatting (see
    :func:`format_example`); None formats with the plain template. source_language: the other
    side of the translation tasks (languages equal to it get no translation examples).

    Columns: task, lang (the response's language), source_lang, article, paragraph, split,
    instruction (the English instruction with its input text), input (the input text alone),
    reference (the expected answer), template ('plain' or 'chat'), prompt, response (formatted).
    """
    import datasets

    if split not in ("calibration", "evaluation"):
        raise ValueError(f"split must be 'calibration' or 'evaluation', got {split!r}")
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks!r}")
    langs = corpus.resolve_languages(languages)
    source = corpus.resolve_languages([source_language])[0]
    rng = np.random.default_rng(seed)
    rows = []

    def add(task, lang, src_lang, article, paragraph, given, reference, names):
        phrasing = PHRASINGS[task][int(rng.integers(len(PHRASINGS[task])))]
        head = phrasing.format(**names)
        instruction = f"{head}\n\n{given}"
        used, prompt, response = format_example(tokenizer, instruction, reference, template) if tokenizer is not None \
            else ("plain", PLAIN_TEMPLATE.format(instruction=instruction), reference)
        rows.append({"task": task, "lang": lang, "source_lang": src_lang, "article": article, "paragraph": paragraph,
                     "split": split, "head": head, "instruction": instruction, "input": given, "reference": reference,
                     "template": used, "prompt": prompt, "response": response})

    for lang in langs:
        own = corpus.load_corpus([lang], split).to_pandas().sort_values(["article", "paragraph"], kind="stable")
        for task in tasks:  # task order fixed, so the seeded draws are reproducible
            if task in ("translate", "to_english"):
                if lang == source:
                    continue
                for article, paragraph, src_text, tgt_text in _pairs(source, lang, split):
                    if task == "translate":
                        add(task, lang, source, article, paragraph, src_text, tgt_text,
                            {"source": language_name(source), "target": language_name(lang)})
                    else:
                        add(task, source, lang, article, paragraph, tgt_text, src_text,
                            {"source": language_name(lang), "target": language_name(source)})
            elif task == "continue":
                for _, r in own.iterrows():
                    cut = split_for_continuation(r["text"])
                    if cut:
                        add(task, lang, lang, int(r["article"]), int(r["paragraph"]), cut[0], cut[1],
                            {"target": language_name(lang)})
            else:
                for _, r in own.iterrows():
                    if r["text"].strip():
                        add(task, lang, lang, int(r["article"]), int(r["paragraph"]), r["text"].strip(),
                            r["text"].strip(), {"target": language_name(lang)})
    return datasets.Dataset.from_pandas(pd.DataFrame(rows), preserve_index=False)


def dataset_hash(dataset) -> str:
    """Content hash (16 hex chars) of an instruction set's prompts, responses, tasks and languages."""
    cols = {c: list(dataset[c]) for c in ("task", "lang", "template", "prompt", "response")}
    return cache_key(cols)[:16]


def encode_example(tokenizer, prompt: str, response: str, template: str) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids). Plain: BOS + prompt, response + EOS. Chat: the rendered texts
    tokenised without added special tokens (the template writes its own)."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"]
    if template == "plain":
        if tokenizer.bos_token_id is not None:
            p = [tokenizer.bos_token_id] + p
        r = r + [tokenizer.eos_token_id]
    return list(p), list(r)


def stop_token_ids(tokenizer, template: str) -> list[int]:
    """Token ids that end an answer: EOS, and for a chat template the first token of its end-of-turn marker."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    if template == "chat":
        _, _, resp = format_example(tokenizer, "x", "y", "chat")
        tail = resp[resp.index("y") + 1:] if "y" in resp else ""
        toks = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail.strip() else []
        if toks:
            ids.add(toks[0])
    return sorted(i for i in ids if i is not None)


def _encode_all(tokenizer, dataset, max_length: int) -> tuple[list[tuple[list[int], list[int]]], np.ndarray]:
    """Encoded examples that fit in max_length, and the indices kept."""
    out, kept = [], []
    for i, row in enumerate(dataset):
        p, r = encode_example(tokenizer, row["prompt"], row["response"], row["template"])
        if len(p) + len(r) <= max_length and r:
            out.append((p, r))
            kept.append(i)
    return out, np.array(kept, dtype=np.int64)


def _collate(batch, pad_id: int, device):
    """Right-padded input ids, attention mask, and per-position targets (-100 outside responses).
    targets[b, t] is the token that position t must predict (ids[b, t + 1])."""
    width = max(len(p) + len(r) for p, r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    targets = torch.full((len(batch), width), -100, dtype=torch.long)
    for b, (p, r) in enumerate(batch):
        seq = p + r
        ids[b, : len(seq)] = torch.tensor(seq)
        attn[b, : len(seq)] = 1
        targets[b, len(p) - 1: len(seq) - 1] = torch.tensor(r)
    return ids.to(device), attn.to(device), targets.to(device)


def _response_logits(model, ids, attn, targets):
    """Logits (fp32) at the positions that predict response tokens, and those tokens.
    The LM head runs on those positions only (final-logit soft-capping applied as the model does)."""
    hidden = backbone(model)(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
    sel = targets != -100
    logits = model.get_output_embeddings()(hidden[sel]).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits, targets[sel]


def _pad_id(tokenizer) -> int:
    for cand in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if cand is not None:
            return int(cand)
    return 0


# ============================================================================ tuning
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


class torch_threads:
    """Context manager: run the block with ``n`` torch threads ('auto': :func:`auto_threads`;
    None: unchanged), restoring the previous number after."""

    def __init__(self, n: int | str | None = "auto"):
        self.n = auto_threads() if n == "auto" else n
        self.before = None

    def __enter__(self):
        self.before = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)
        return False


@dataclass(frozen=True)
class TuneConfig:
    """Hyperparameters of :func:`instruction_tune` (all part of the cache key)."""

    steps: int = 300
    batch_size: int = 4
    max_length: int = 192
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
        """A model spec for babel_lib.models.load_model / pipeline.get_model: the folder path."""
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
    from .adapters import ffn_spec

    return backbone(model).get_submodule(ffn_spec(model).layers)


def tuned_key(lm: LoadedModel, dataset, config: TuneConfig) -> str:
    """Cache key of a tuning run: base fingerprint and dtype, tokenizer, instruction set, hyperparameters."""
    tok = lm.tokenizer
    return cache_key({"kind": TUNED_KIND, "base_fingerprint": lm.fingerprint, "base_dtype": str(lm.dtype),
                      "tokenizer": [type(tok).__name__, len(tok)], "dataset": dataset_hash(dataset),
                      "hyperparameters": config.__dict__})


def tuned_folder(key: str) -> Path:
    """Where a tuned model with this key lives: ``$BABEL_CACHE/tuned/<key[:16]>``."""
    return cache_root() / TUNED_KIND / key[:16]


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
    """Fine-tune a copy of ``lm`` on ``dataset`` (an :func:`instruction_set`); cached.

    config or keyword hyperparameters (see :class:`TuneConfig`): steps, batch_size, max_length,
    learning_rate, weight_decay, warmup_fraction, train, seed, grad_clip. ``lm`` is not changed: a
    copy is trained on ``lm``'s device in ``lm``'s dtype (fp32 master weights when that is bf16 or
    fp16) and saved in that dtype. Pass a float32 model on CPUs without fast bf16 matrix units:
    on this project's AMD EPYC (AVX2) machines a bf16 matmul is about 7x slower than fp32 and the
    output layer's bf16 backward about 100x (bf16 is the right choice on GPUs and AMX CPUs).
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
        return load_tuned(target, dtype=lm.dtype, device=str(lm.device), tokenizer=lm.tokenizer)

    with torch_threads(threads):
        return _train(lm, dataset, config, key, target, progress)


def _train(lm: LoadedModel, dataset, config: TuneConfig, key: str, target: Path, progress: bool) -> TunedModel:
    from tqdm import tqdm

    tok = lm.tokenizer
    encoded, kept = _encode_all(tok, dataset, config.max_length)
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
    opt = torch.optim.AdamW(masters, lr=config.learning_rate, weight_decay=config.weight_decay)
    pad = _pad_id(tok)
    device = lm.device
    log = []
    seen = resp_seen = 0
    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    bar = tqdm(total=config.steps, desc="instruction tuning", disable=not progress)
    for step, idx in enumerate(_batches(len(encoded), config, lengths)):
        ids, attn, targets = _collate([encoded[i] for i in idx], pad, device)
        logits, gold = _response_logits(model, ids, attn, targets)
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
        "key": key, "base_model": lm.name, "base_description": lm.description, "base_fingerprint": lm.fingerprint,
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
    return (f"{meta['base_model']} instruction-tuned by babel_lib.tune ({h['steps']} steps x {h['batch_size']}, "
            f"lr {h['learning_rate']:g}, {h['train']}; key {meta['key'][:8]})")


def _save_atomic(model, tokenizer, target: Path, meta: dict, log: pd.DataFrame, template: str) -> None:
    with atomic_folder(target) as tmp:
        model.save_pretrained(tmp)
        if hasattr(tokenizer, "save_pretrained"):
            tok = copy.copy(tokenizer)
            if template == "plain" and not _has_chat_template(tokenizer):
                tok.chat_template = PLAIN_CHAT_TEMPLATE
            tok.save_pretrained(tmp)
        log.to_csv(tmp / LOG_FILE, index=False)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
        (tmp / "SOURCE.txt").write_text(_description(meta) + "\n")


def load_tuned(path, dtype="bfloat16", device: str | None = "auto", tokenizer=None) -> TunedModel:
    """Load a tuned model folder (a path, or a key as returned in ``meta['key']``).

    tokenizer: used when the folder holds none (models whose tokenizer cannot be saved, e.g. the
    tests' byte tokenizer). The folder path also works as a spec for ``models.load_model``.
    """
    from transformers import AutoModelForCausalLM

    from .models import resolve_device, resolve_dtype

    path = Path(path)
    if not path.is_dir():
        path = tuned_folder(str(path))
    if not (path / META_FILE).exists():
        raise FileNotFoundError(f"{path} is not a tuned model folder (no {META_FILE})")
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


# ============================================================================ measurement
def _measure_parts(kind: str, lm: LoadedModel, dataset, **settings) -> dict:
    tok = lm.tokenizer
    return {"measure": kind, "model_fingerprint": lm.fingerprint, "tokenizer": [type(tok).__name__, len(tok)],
            "rows": cache_key({c: list(dataset[c]) for c in ("prompt", "response", "template")}), **settings}


def response_loss(lm: LoadedModel, dataset, max_length: int = 192, batch_size: int = 8, store=None,
                  cache: bool = True) -> pd.DataFrame:
    """Held-out loss: per example, the summed cross-entropy (nats) of the response tokens given the
    prompt, and their count. Columns: row (index in dataset), task, lang, nll, tokens.
    Examples longer than max_length tokens are skipped (the same ones for models sharing a tokenizer).
    Cached (kind 'tune_eval') under the model's fingerprint, the rows and the settings."""
    from .cache import Store

    def compute():
        f = _response_loss(lm, dataset, max_length, batch_size)
        return {"row": f["row"].to_numpy(), "nll": f["nll"].to_numpy(), "tokens": f["tokens"].to_numpy()}, {}

    parts = _measure_parts("response_loss", lm, dataset, max_length=max_length, batch_size=batch_size)
    arrays, _ = (store or Store()).get_or_compute("tune_eval", parts, compute) if cache else compute()
    frame = dataset.select(arrays["row"].tolist()).to_pandas()[["task", "lang"]]
    frame.insert(0, "row", arrays["row"])
    frame["nll"] = arrays["nll"]
    frame["tokens"] = arrays["tokens"]
    return frame


@torch.inference_mode()
def _response_loss(lm: LoadedModel, dataset, max_length: int, batch_size: int) -> pd.DataFrame:
    encoded, kept = _encode_all(lm.tokenizer, dataset, max_length)
    pad = _pad_id(lm.tokenizer)
    order = np.argsort([-(len(p) + len(r)) for p, r in encoded], kind="stable")
    nll = np.zeros(len(encoded))
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        ids, attn, targets = _collate([encoded[j] for j in idx], pad, lm.device)
        logits, gold = _response_logits(lm.model, ids, attn, targets)
        per_tok = torch.nn.functional.cross_entropy(logits, gold, reduction="none").cpu().numpy()
        counts = (targets != -100).sum(1).cpu().numpy()
        for j, start, n in zip(idx, np.concatenate([[0], np.cumsum(counts)[:-1]]), counts):
            nll[j] = per_tok[start:start + n].sum()
    frame = dataset.select(kept.tolist()).to_pandas()[["task", "lang"]]
    frame.insert(0, "row", kept)
    frame["nll"] = nll
    frame["tokens"] = [len(r) for _, r in encoded]
    return frame


def loss_summary(frame: pd.DataFrame, by=("task",)) -> pd.DataFrame:
    """Token-weighted mean loss (nats per response token) and perplexity, grouped by ``by``."""
    g = frame.groupby(list(by), as_index=False)[["nll", "tokens"]].sum() if by else \
        pd.DataFrame({"nll": [frame["nll"].sum()], "tokens": [frame["tokens"].sum()]})
    g["loss"] = g["nll"] / g["tokens"]
    g["perplexity"] = np.exp(g["loss"])
    return g


def sample_prompts(dataset, per_task_language: int = 4, seed: int = 0):
    """A deterministic subset: at most ``per_task_language`` rows of each (task, lang)."""
    frame = dataset.to_pandas()
    rng = np.random.default_rng(seed)
    picked = []
    for _, g in frame.groupby(["lang", "task"], sort=True):
        idx = g.index.to_numpy()
        picked.extend(sorted(rng.choice(idx, size=min(per_task_language, len(idx)), replace=False).tolist()))
    return dataset.select(sorted(picked))


def generate_answers(lm: LoadedModel, dataset, max_new_tokens: int = 64, batch_size: int = 8, store=None,
                     cache: bool = True) -> pd.DataFrame:
    """Greedy answers to the dataset's prompts. Columns: row, answer (decoded, stop token
    excluded), new_tokens, stopped (a stop token came before max_new_tokens).

    Prompts are sorted by length and batched with left padding (attention mask and explicit
    position ids, so a padded prompt sees exactly what it would see alone). Cached (kind
    'tune_eval') under the model's fingerprint, the prompts and the settings.
    """
    from .cache import Store

    def compute():
        f = _generate_answers(lm, dataset, max_new_tokens, batch_size)
        return {"row": f["row"].to_numpy(), "answer": f["answer"].to_numpy().astype(str),
                "new_tokens": f["new_tokens"].to_numpy(), "stopped": f["stopped"].to_numpy()}, {}

    parts = _measure_parts("generate_answers", lm, dataset, max_new_tokens=max_new_tokens, batch_size=batch_size)
    arrays, _ = (store or Store()).get_or_compute("tune_eval", parts, compute) if cache else compute()
    return pd.DataFrame({"row": arrays["row"].astype(int), "answer": [str(a) for a in arrays["answer"]],
                         "new_tokens": arrays["new_tokens"].astype(int), "stopped": arrays["stopped"].astype(bool)})


@torch.inference_mode()
def _generate_answers(lm: LoadedModel, dataset, max_new_tokens: int, batch_size: int) -> pd.DataFrame:
    tok = lm.tokenizer
    templates = list(dataset["template"])
    prompts = [encode_example(tok, r["prompt"], "", r["template"])[0] for r in dataset]
    stops = {t: stop_token_ids(tok, t) for t in sorted(set(templates))}
    pad = _pad_id(tok)
    out = [None] * len(prompts)
    for template in sorted(stops):
        members = sorted((i for i in range(len(prompts)) if templates[i] == template), key=lambda i: -len(prompts[i]))
        stop = torch.tensor(stops[template], device=lm.device)
        for s in range(0, len(members), batch_size):
            idx = members[s:s + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            attn = torch.zeros((len(idx), width), dtype=torch.long)
            for b, i in enumerate(idx):
                ids[b, width - len(prompts[i]):] = torch.tensor(prompts[i])
                attn[b, width - len(prompts[i]):] = 1
            new = _greedy(lm.model, ids.to(lm.device), attn.to(lm.device), max_new_tokens, stop)
            for i, seq in zip(idx, new.tolist()):
                hit = next((k for k, t in enumerate(seq) if t in stops[template]), None)
                body = seq if hit is None else seq[:hit]
                out[i] = {"row": i, "answer": tok.decode(body, skip_special_tokens=True).strip(),
                          "new_tokens": len(body), "stopped": hit is not None}
    return pd.DataFrame(out)


def _greedy(model, ids: torch.Tensor, attn: torch.Tensor, max_new_tokens: int, stop: torch.Tensor) -> torch.Tensor:
    """Greedy decoding with the KV cache for a left-padded batch; [batch, new tokens]
    (after a row's stop token the row keeps decoding but its tokens are ignored)."""
    import inspect

    # transformers >= 5.2x names the KV cache argument and output `cache` (earlier: past_key_values)
    name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
    last = pos[:, -1:]
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new = []
    nxt = out.logits[:, -1].argmax(-1)
    for _ in range(max_new_tokens):
        new.append(nxt)
        done |= torch.isin(nxt, stop)
        if bool(done.all()) or len(new) == max_new_tokens:
            break
        past = out.get("cache", None) if name == "cache" else out.get("past_key_values", None)
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], 1)
        last = last + 1
        out = model(input_ids=nxt[:, None], attention_mask=attn, position_ids=last, use_cache=True, **{name: past})
        nxt = out.logits[:, -1].argmax(-1)
    return torch.stack(new, 1)


# ---------------------------------------------------------------------------- answer checks
_SCRIPT_ALIASES = {"Hans": "Han", "Hant": "Han", "Hani": "Han", "Jpan": ("Han", "Hira", "Kana"),
                   "Kore": ("Hang", "Han")}


def script_share(text: str, script: str) -> float | None:
    """Fraction of the letters of ``text`` (Unicode category L) written in ``script`` (ISO 15924,
    e.g. 'Latn', 'Deva', 'Hans'). None when the script is unknown to the ``regex`` module or the
    text has no letters."""
    import regex

    letters = regex.findall(r"\p{L}", text)
    if not letters:
        return None
    names = _SCRIPT_ALIASES.get(script, script)
    names = names if isinstance(names, tuple) else (names,)
    try:
        pattern = regex.compile("|".join(rf"\p{{Script={n}}}" for n in names))
    except regex.error:
        return None
    return sum(1 for ch in letters if pattern.match(ch)) / len(letters)


def _ngrams(text: str, n_max: int) -> Counter:
    t = " " + " ".join(text.lower().split()) + " "
    c = Counter()
    for n in range(1, n_max + 1):
        c.update(t[i:i + n] for i in range(len(t) - n + 1))
    return c


class LanguageIdentifier:
    """A cheap language identifier: character 1-3-gram count vectors of each candidate language's
    UDHR calibration text; a text is assigned the candidate of highest cosine similarity. It knows
    only the candidates (the languages of the instruction set and the source language)."""

    def __init__(self, languages, split: str = "calibration", n_max: int = 3):
        self.languages = corpus.resolve_languages(languages)
        self.n_max = n_max
        self.profiles = {}
        for lang in self.languages:
            c = _ngrams("\n".join(corpus.texts(lang, split)), n_max)
            norm = math.sqrt(sum(v * v for v in c.values()))
            self.profiles[lang] = (c, norm)

    def scores(self, text: str) -> dict[str, float]:
        c = _ngrams(text, self.n_max)
        norm = math.sqrt(sum(v * v for v in c.values())) or 1.0
        return {lang: sum(v * prof.get(g, 0) for g, v in c.items()) / (norm * pnorm)
                for lang, (prof, pnorm) in self.profiles.items()}

    def identify(self, text: str) -> str | None:
        if not text.strip():
            return None
        s = self.scores(text)
        return max(s, key=s.get)


def chrf(hypothesis: str, reference: str, n_max: int = 6, beta: float = 2.0) -> float:
    """chrF (Popovic 2015), 0-100: character n-gram (1..6) F-score, recall weighted by beta = 2,
    whitespace removed, averaged over n. Our implementation (sentence level, no smoothing beyond
    skipping orders absent from both sides)."""
    h, r = "".join(hypothesis.split()), "".join(reference.split())
    precisions, recalls = [], []
    for n in range(1, n_max + 1):
        hc = Counter(h[i:i + n] for i in range(len(h) - n + 1))
        rc = Counter(r[i:i + n] for i in range(len(r) - n + 1))
        if not hc and not rc:
            continue
        match = sum((hc & rc).values())
        precisions.append(match / sum(hc.values()) if hc else 0.0)
        recalls.append(match / sum(rc.values()) if rc else 0.0)
    if not precisions:
        return 0.0
    p, rcl = float(np.mean(precisions)), float(np.mean(recalls))
    if p + rcl == 0:
        return 0.0
    return 100 * (1 + beta ** 2) * p * rcl / (beta ** 2 * p + rcl)


def _is_echo(answer: str, given: str) -> bool:
    """The answer mostly copies ``given``: a common substring of at least max(20, half the answer) characters."""
    import difflib

    a, g = " ".join(answer.split()), " ".join(given.split())
    if not a or not g:
        return False
    m = difflib.SequenceMatcher(None, a, g, autojunk=False).find_longest_match(0, len(a), 0, len(g))
    return m.size >= max(20, len(a) // 2) or (len(a) < 20 and a in g and len(a) >= 0.8 * len(g))


def _loops(answer: str, n: int = 8) -> bool:
    """Degenerate repetition: over 60 characters and fewer than half of its character 8-grams distinct."""
    t = " ".join(answer.split())
    if len(t) <= 60:
        return False
    grams = [t[i:i + n] for i in range(len(t) - n + 1)]
    return len(set(grams)) < 0.5 * len(grams)


_PLAIN_MARKERS = ("### Instruction", "### Response")


def score_answers(dataset, answers: pd.DataFrame, identifier: LanguageIdentifier | None = None,
                  script_threshold: float = 0.5) -> pd.DataFrame:
    """Judge generated answers with cheap, documented checks. One row per answer with:

    - ``nonempty``: the answer has at least one letter;
    - ``echo``: it mostly copies the instruction line, or (translation and continuation tasks) the
      given input text (a common substring of at least max(20, half the answer) characters);
    - ``loops``: degenerate repetition (over 60 characters, fewer than half its character 8-grams distinct);
    - ``runaway``: the answer writes the template's turn markers itself (plain template: '### Instruction'
      or '### Response'), i.e. it goes on to invent the next turn instead of answering;
    - ``well_formed`` = nonempty and not echo and not loops and not runaway;
    - ``script_share``: fraction of its letters in the target language's script (ISO 15924 code
      from corpus.language_table());
    - ``identified``: the language a character 1-3-gram identifier picks among the candidates
      (:class:`LanguageIdentifier`);
    - ``right_language`` = script_share >= script_threshold and identified == target language;
    - ``ok`` = well_formed and right_language;
    - ``chrf``: chrF against the reference (translation quality; for 'repeat', copying fidelity;
      for 'continue', overlap with the true continuation, a weak signal);
    - ``stopped``: the model ended its answer itself before the token limit.
    """
    frame = dataset.to_pandas().reset_index(drop=True)
    merged = answers.merge(frame, left_on="row", right_index=True, how="left")
    table = corpus.language_table()
    if identifier is None:
        identifier = LanguageIdentifier(sorted(set(frame["lang"]) | set(frame["source_lang"])))
    rows = []
    for _, r in merged.iterrows():
        ans = r["answer"] or ""
        nonempty = any(ch.isalpha() for ch in ans)
        echo = _is_echo(ans, r["head"]) or (r["task"] != "repeat" and _is_echo(ans, r["input"]))
        loops = _loops(ans)
        runaway = r["template"] == "plain" and any(m in ans for m in _PLAIN_MARKERS)
        share = script_share(ans, table.loc[r["lang"], "script"]) if nonempty else None
        ident = identifier.identify(ans) if nonempty else None
        right = bool(share is not None and share >= script_threshold and ident == r["lang"])
        formed = nonempty and not echo and not loops and not runaway
        rows.append({"row": r["row"], "task": r["task"], "lang": r["lang"], "nonempty": nonempty, "echo": echo,
                     "loops": loops, "runaway": runaway, "well_formed": formed,
                     "script_share": np.nan if share is None else share, "identified": ident,
                     "right_language": right, "ok": formed and right,
                     "chrf": chrf(ans, r["reference"]), "stopped": bool(r["stopped"]),
                     "new_tokens": int(r["new_tokens"]), "answer": ans})
    return pd.DataFrame(rows)


# ============================================================================ profile comparison
def _normalise(f: np.ndarray) -> np.ndarray:
    s = f.sum(-1, keepdims=True)
    return np.divide(f, s, out=np.full_like(f, 1.0 / f.shape[-1]), where=s > 0)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in bits (0..1) between distributions along the last axis."""
    p, q = _normalise(p), _normalise(q)
    m = 0.5 * (p + q)

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(a > 0, a * np.log2(a / b), 0.0)
        return t.sum(-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity along the last axis."""
    num = (a * b).sum(-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def compare_profiles(base, tuned) -> pd.DataFrame:
    """Per language and layer, how the tuned model's expert frequencies differ from the base's
    (same partition, same text). Columns: language, layer, cosine, js (Jensen-Shannon divergence,
    bits, of the frequency vectors normalised to distributions over the layer's experts),
    mean_abs_diff, max_abs_diff, pearson.

    base, tuned: babel_lib.profile.Profile objects over the same languages, layers and experts
    (or frequency arrays [languages, layers, experts] with ``languages`` given by a Profile).
    """
    if list(base.languages) != list(tuned.languages) or base.counts.shape != tuned.counts.shape:
        raise ValueError("profiles must cover the same languages, layers and experts")
    fb, ft = base.frequencies(), tuned.frequencies()
    return frequency_similarity(fb, ft, base.languages)


def frequency_similarity(fa: np.ndarray, fb: np.ndarray, languages) -> pd.DataFrame:
    """The table of :func:`compare_profiles` for two frequency arrays [languages, layers, experts]."""
    L = fa.shape[1]
    cos, js = cosine(fa, fb), jensen_shannon(fa, fb)
    diff = fb - fa
    da, db = fa - fa.mean(-1, keepdims=True), fb - fb.mean(-1, keepdims=True)
    pear = cosine(da, db)
    rows = []
    for i, lang in enumerate(languages):
        for layer in range(L):
            rows.append({"language": lang, "layer": layer, "cosine": float(cos[i, layer]), "js": float(js[i, layer]),
                         "mean_abs_diff": float(np.abs(diff[i, layer]).mean()),
                         "max_abs_diff": float(np.abs(diff[i, layer]).max()), "pearson": float(pear[i, layer])})
    return pd.DataFrame(rows)


def difference_frame(base, tuned) -> pd.DataFrame:
    """Tidy table: language, layer, expert, base, tuned, difference (tuned - base frequency)."""
    fb, ft = base.frequencies(), tuned.frequencies()
    n, L, E = fb.shape
    return pd.DataFrame({
        "language": np.repeat(base.languages, L * E),
        "layer": np.tile(np.repeat(np.arange(L), E), n),
        "expert": np.tile(np.arange(E), n * L),
        "base": fb.reshape(-1), "tuned": ft.reshape(-1), "difference": (ft - fb).reshape(-1),
    })


def high_frequency(freq: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean [languages, layers, experts]: frequency >= threshold. The book's rule (chapter 3,
    our choice) is threshold = 2 x the base rate k/E, i.e. 0.4 with top-20% activation."""
    return np.asarray(freq) >= threshold


def shared_and_specific(freq: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(shared [layers, experts], specific [languages, layers, experts]): high-frequency for every
    language, and high-frequency for exactly that one language."""
    hf = high_frequency(freq, threshold)
    shared = hf.all(0)
    specific = hf & (hf.sum(0, keepdims=True) == 1)
    return shared, specific


def _jaccard(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def expert_retention(base_freq: np.ndarray, tuned_freq: np.ndarray, languages, threshold: float) -> pd.DataFrame:
    """Do the base's high-frequency, shared and language-specific experts stay after tuning?

    Experts are high-frequency when their frequency >= ``threshold`` (see :func:`high_frequency`).
    One row per (kind, language): kind 'high-frequency' (per language), 'shared' (language 'all'),
    'specific' (per language); n_base, n_tuned, kept (in both), kept_fraction (kept / n_base) and
    jaccard, counted over all layers.
    """
    rows = []
    hb, ht = high_frequency(base_freq, threshold), high_frequency(tuned_freq, threshold)
    sb, pb = shared_and_specific(base_freq, threshold)
    st, pt = shared_and_specific(tuned_freq, threshold)

    def row(kind, lang, a, b):
        kept = int(np.logical_and(a, b).sum())
        rows.append({"kind": kind, "language": lang, "n_base": int(a.sum()), "n_tuned": int(b.sum()), "kept": kept,
                     "kept_fraction": kept / a.sum() if a.sum() else float("nan"), "jaccard": _jaccard(a, b)})

    for i, lang in enumerate(languages):
        row("high-frequency", lang, hb[i], ht[i])
    row("shared", "all", sb, st)
    for i, lang in enumerate(languages):
        row("specific", lang, pb[i], pt[i])
    return pd.DataFrame(rows)


def partition_overlap(a, b) -> np.ndarray:
    """Per layer, the mean best-match Jaccard index between two partitions' experts (symmetrised:
    the mean over both directions of, for each expert, its highest Jaccard with any expert of the
    other partition). 1 = identical memberships; a random balanced split of n neurons into E
    experts gives about that of chance (see :func:`chance_overlap`)."""
    la, lb = np.asarray(a.labels), np.asarray(b.labels)
    if la.shape != lb.shape:
        raise ValueError(f"partitions differ in shape: {la.shape} vs {lb.shape}")
    out = np.zeros(la.shape[0])
    for layer in range(la.shape[0]):
        Ea, Eb = la[layer].max() + 1, lb[layer].max() + 1
        inter = np.zeros((Ea, Eb))
        np.add.at(inter, (la[layer], lb[layer]), 1)
        sa, sb = np.bincount(la[layer], minlength=Ea), np.bincount(lb[layer], minlength=Eb)
        jac = inter / (sa[:, None] + sb[None, :] - inter)
        out[layer] = 0.5 * (jac.max(1).mean() + jac.max(0).mean())
    return out


def chance_overlap(n_neurons: int, n_experts: int, seed: int = 0, trials: int = 5) -> float:
    """Mean best-match Jaccard between two random balanced partitions (the chance level)."""
    rng = np.random.default_rng(seed)
    size = n_neurons // n_experts

    class _P:
        def __init__(self, labels):
            self.labels = labels

    vals = []
    for _ in range(trials):
        a = rng.permutation(np.repeat(np.arange(n_experts), size))[None]
        b = rng.permutation(np.repeat(np.arange(n_experts), size))[None]
        vals.append(partition_overlap(_P(a), _P(b))[0])
    return float(np.mean(vals))


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
