"""Perplexity and bits per character, with a protocol that says what it measured.

Protocol (every number it returns names these; each is a parameter):

- **Text**: per language, the paragraphs of one UDHR split (default ``'evaluation'``, disjoint
  from the ``'calibration'`` split that profiles and ranks experts; see
  :data:`babel_lib.corpus.EVALUATION_RULE`), in document order, whole paragraphs only, until
  ``max_tokens`` scored tokens are reached (``None``: the whole split). Whole paragraphs keep
  the character count exact.
- **Windows**: each paragraph is tokenised alone (no special tokens) and cut into windows of
  at most ``max_length`` tokens, each starting with BOS. With ``stride=None`` windows do not
  overlap: a paragraph of n tokens gives ceil(n / (max_length - 1)) windows and every token
  is predicted from the tokens of its own window only. With a ``stride`` s < max_length - 1,
  a new window starts every s tokens and scores only the tokens no earlier window scored
  (more left context, more compute). Paragraphs never share a window.
- **Loss**: the summed next-token negative log-likelihood (natural log) over every scored
  token: all tokens but BOS and padding, so each paragraph's first token is predicted from
  BOS alone. (A tokenizer without BOS cannot predict a window's first token: it is not scored.)
- **Perplexity** = exp(total NLL / scored tokens). **Bits per character** = total NLL / ln 2 /
  characters of the evaluated text (Unicode code points): comparable across tokenizers and
  scripts, unlike perplexity. Bits per UTF-8 byte are reported too.
- **Model**: the full model: backbone, then the LM head applied only at positions whose next
  token is scored (final-logit soft-capping applied where the config has it; Gemma 2). By
  default the head and the log-softmax run in float32 (``head_dtype``) whatever the backbone
  dtype: exact for fp32 models, and on CPUs without bf16 matrix units much faster than a bf16
  head; pass ``head_dtype=None`` to use the model's own dtype.

A :class:`Condition` names an intervention (a masked expert set, a router) and opens it as a
context around the forwards, so the dense baseline and every variant are evaluated by the same
code in the same process. Results are cached per (model fingerprint, condition spec, language,
text, protocol) in the :class:`~babel_lib.cache.Store`; the cached arrays hold each window's
NLL and token count, for paired comparisons.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import numpy as np
import pandas as pd
import torch

from .adapters import backbone
from .cache import Store, cache_key
from .models import LoadedModel, resolve_dtype
from .profile import pad_batch

#: Bump when a change here changes cached perplexities.
EVALUATE_VERSION = "1"


# ------------------------------------------------------------------------------ windows
@dataclass
class Windows:
    """Tokenised evaluation text of one language.

    input_ids: one list per window (BOS first when the tokenizer has one).
    score_from: per window, the first position whose token is scored (1 = every token after BOS).
    tokens: scored tokens in all; characters / bytes: of the evaluated paragraphs.
    """

    input_ids: list[list[int]]
    score_from: list[int]
    tokens: int
    characters: int
    bytes: int
    paragraphs: int
    max_length: int
    stride: int | None

    @property
    def n_windows(self) -> int:
        return len(self.input_ids)

    def scored_per_window(self) -> np.ndarray:
        return np.array([len(ids) - s for ids, s in zip(self.input_ids, self.score_from)], dtype=np.int64)


def make_windows(tokenizer, paragraphs: list[str], max_length: int = 128, stride: int | None = None,
                 max_tokens: int | None = None) -> Windows:
    """Cut paragraphs into evaluation windows (see the module docstring for the protocol)."""
    if not isinstance(max_length, (int, np.integer)) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
    bos = tokenizer.bos_token_id
    body = max_length - 1 if bos is not None else max_length
    if stride is None:
        stride_ = body
    elif not isinstance(stride, (int, np.integer)) or not 1 <= stride <= body:
        raise ValueError(f"stride must be an integer in [1, {body}] (max_length - 1) or None, got {stride!r}")
    else:
        stride_ = int(stride)
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be positive or None, got {max_tokens!r}")
    head = [bos] if bos is not None else []
    windows, score_from = [], []
    tokens = chars = nbytes = n_par = 0
    for text in paragraphs:
        if max_tokens is not None and tokens >= max_tokens:
            break
        if not text or not text.strip():
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            continue
        n_par += 1
        chars += len(text)
        nbytes += len(text.encode("utf-8"))
        scored_until = 0  # paragraph tokens [0, scored_until) already scored
        start = 0
        while True:
            end = min(start + body, len(ids))
            window = head + ids[start:end]
            # first scored paragraph index in this window: max(start, scored_until); sequence position adds len(head)
            pos = len(head) + max(start, scored_until) - start
            pos = max(pos, 1)  # position 0 has no context (BOS itself, or a first token without BOS)
            if pos < len(window):
                windows.append(window)
                score_from.append(pos)
                tokens += len(window) - pos
            scored_until = end
            if end >= len(ids):
                break
            start += stride_
    if not windows:
        raise ValueError("no text to evaluate: every paragraph is empty")
    return Windows(windows, score_from, tokens, chars, nbytes, n_par, int(max_length), stride)


# ------------------------------------------------------------------------------ the loss
def _head(model: torch.nn.Module):
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ValueError(f"{type(model).__name__} has no LM head (get_output_embeddings() is None): perplexity "
                         "needs a *ForCausalLM model")
    return head


_CONVERTED: dict[tuple, torch.Tensor] = {}


def _converted(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight`` in ``dtype``, the conversion kept for the next call (one entry: Gemma's fp32 head is 670 MB).

    Keyed by the tensor's identity, storage and in-place version counter, so a changed weight is
    converted afresh.
    """
    if weight.dtype == dtype:
        return weight
    key = (id(weight), weight.data_ptr(), weight._version, tuple(weight.shape), dtype, weight.device)
    if key not in _CONVERTED:
        _CONVERTED.clear()
        _CONVERTED[key] = weight.detach().to(dtype)
    return _CONVERTED[key]


@torch.inference_mode()
def window_nll(lm: LoadedModel, windows: Windows, batch_size: int = 8, head_dtype: str | None = "float32",
               chunk: int = 256) -> np.ndarray:
    """Summed NLL (nats, float64) of each window's scored tokens, in window order.

    The backbone runs on right-padded batches of similar length; the LM head is applied only
    to the hidden states that predict a scored token, ``chunk`` rows at a time.
    """
    model = lm.model
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    body = backbone(model)
    head = _head(model)
    cap = getattr(model.config, "final_logit_softcapping", None)
    weight = head.weight
    bias = getattr(head, "bias", None)
    hd = resolve_dtype(head_dtype) if head_dtype is not None else weight.dtype
    w = _converted(weight, hd)
    b = None if bias is None else bias.to(hd)
    out = np.zeros(windows.n_windows, dtype=np.float64)
    order = sorted(range(windows.n_windows), key=lambda i: -len(windows.input_ids[i]))
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        batch = [windows.input_ids[j] for j in idx]
        ids, attn, _ = pad_batch(batch, pad, None, lm.device)
        h = body(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
        # position t predicts token t + 1; it counts when t + 1 is a scored, real token
        T = ids.shape[1]
        pos = torch.arange(T - 1, device=ids.device)
        starts = torch.tensor([windows.score_from[j] for j in idx], device=ids.device)
        lens = attn.sum(1)
        want = (pos[None, :] + 1 >= starts[:, None]) & (pos[None, :] + 1 < lens[:, None])
        rows = want.nonzero()
        hsel = h[:, :-1][want]
        targets = ids[:, 1:][want]
        nll = torch.empty(hsel.shape[0], dtype=torch.float64, device=h.device)
        for c in range(0, hsel.shape[0], chunk):
            logits = torch.nn.functional.linear(hsel[c:c + chunk].to(hd), w, b).float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            nll[c:c + chunk] = torch.nn.functional.cross_entropy(logits, targets[c:c + chunk],
                                                                 reduction="none").double()
        sums = torch.zeros(len(idx), dtype=torch.float64, device=h.device).index_add_(0, rows[:, 0], nll)
        out[idx] = sums.cpu().numpy()
    return out


# ------------------------------------------------------------------------------ conditions
@dataclass(frozen=True)
class Condition:
    """An intervention under which a model is evaluated.

    name: a label for tables; spec: everything that changes the result beyond the model's weights
    (it enters the cache key: plan hashes, partition key, rates); context: a zero-argument
    callable returning the context manager to hold open around the forwards (None = as is).
    """

    name: str
    spec: dict = field(default_factory=dict)
    context: Callable[[], ContextManager] | None = None

    def open(self) -> ContextManager:
        return self.context() if self.context is not None else nullcontext()


DENSE = Condition("dense", {"kind": "dense"})


def _texts(texts_fn, lang, split):
    if texts_fn is None:
        from . import corpus

        return corpus.texts(lang, split)
    return texts_fn(lang, split)


def perplexity(
    lm: LoadedModel,
    languages,
    condition: Condition = DENSE,
    split: str = "evaluation",
    max_length: int = 128,
    stride: int | None = None,
    max_tokens: int | None = None,
    batch_size: int = 8,
    head_dtype: str | None = "float32",
    store: Store | None = None,
    texts_fn=None,
    windows: dict | None = None,
) -> pd.DataFrame:
    """Perplexity and bits per character of ``lm`` under ``condition``, one row per language.

    languages: keys / names / 'paper' (see babel_lib.corpus.resolve_languages), or any list when
    ``texts_fn(lang, split)`` supplies the paragraphs. windows: optional {lang: Windows} made
    earlier (saves re-tokenising when many conditions are compared). Cached per language.

    Columns: condition, language, perplexity, bits_per_char, bits_per_byte, nll (nats), tokens,
    characters, bytes, windows, paragraphs, max_length, stride, split, max_tokens, model,
    fingerprint, dtype. The per-window NLLs are in :func:`window_results`.
    """
    rows = []
    for lang, res in window_results(lm, languages, condition, split, max_length, stride, max_tokens, batch_size,
                                    head_dtype, store, texts_fn, windows).items():
        rows.append(summarize(res, condition.name, lang, lm))
    return pd.DataFrame(rows)


def summarize(res: dict, condition: str, language: str, lm: LoadedModel) -> dict:
    """One table row from a window result (see :func:`perplexity` for the columns)."""
    nll = float(res["window_nll"].sum())
    tokens = int(res["window_tokens"].sum())
    chars, nbytes = int(res["characters"]), int(res["bytes"])
    return {
        "condition": condition, "language": language,
        "perplexity": math.exp(nll / tokens), "bits_per_char": nll / math.log(2) / chars,
        "bits_per_byte": nll / math.log(2) / nbytes, "nll": nll, "tokens": tokens, "characters": chars,
        "bytes": nbytes, "windows": int(res["window_nll"].size), "paragraphs": int(res["paragraphs"]),
        "max_length": int(res["max_length"]), "stride": None if int(res["stride"]) < 0 else int(res["stride"]),
        "split": str(res["split"]), "max_tokens": None if int(res["max_tokens"]) < 0 else int(res["max_tokens"]),
        "model": lm.name, "fingerprint": lm.fingerprint, "dtype": str(lm.dtype).replace("torch.", ""),
    }


def window_results(lm: LoadedModel, languages, condition: Condition = DENSE, split: str = "evaluation",
                   max_length: int = 128, stride: int | None = None, max_tokens: int | None = None,
                   batch_size: int = 8, head_dtype: str | None = "float32", store: Store | None = None,
                   texts_fn=None, windows: dict | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{lang: {'window_nll', 'window_tokens', 'characters', 'bytes', ...}} under ``condition`` (cached)."""
    from . import corpus

    langs = corpus.resolve_languages(languages) if texts_fn is None else list(languages)
    store = store or Store()
    windows = dict(windows or {})
    todo, results = [], {}
    for lang in langs:
        if lang not in windows:
            windows[lang] = make_windows(lm.tokenizer, _texts(texts_fn, lang, split), max_length, stride, max_tokens)
        win = windows[lang]
        if win.max_length != max_length or win.stride != stride:
            raise ValueError(f"windows for {lang!r} were made with max_length={win.max_length}, stride={win.stride}")
        parts = _parts(lm, condition, lang, split, win, max_tokens, batch_size, head_dtype)
        hit = store.load("perplexity", parts)
        if hit is not None:
            results[lang] = hit[0]
        else:
            todo.append((lang, parts))
    if todo:
        with condition.open():
            for lang, parts in todo:
                win = windows[lang]
                nll = window_nll(lm, win, batch_size, head_dtype)
                arrays = {"window_nll": nll, "window_tokens": win.scored_per_window(),
                          "characters": np.array(win.characters), "bytes": np.array(win.bytes),
                          "paragraphs": np.array(win.paragraphs), "max_length": np.array(win.max_length),
                          "stride": np.array(-1 if win.stride is None else win.stride),
                          "max_tokens": np.array(-1 if max_tokens is None else max_tokens), "split": np.array(split)}
                store.save("perplexity", parts, arrays, {"language": lang, "condition": condition.name})
                results[lang] = arrays
    return {lang: results[lang] for lang in langs}


def _parts(lm, condition, lang, split, win, max_tokens, batch_size, head_dtype) -> dict:
    return {"version": EVALUATE_VERSION, "model_fingerprint": lm.fingerprint, "dtype": str(lm.dtype),
            "condition": condition.spec, "language": lang, "split": split, "max_length": win.max_length,
            "stride": win.stride, "max_tokens": max_tokens, "batch_size": batch_size, "head_dtype": head_dtype,
            "text": cache_key({"ids": win.input_ids, "from": win.score_from})}


def compare(lm: LoadedModel, languages, conditions: list[Condition], include_dense: bool = True,
            progress: bool = False, **kwargs) -> pd.DataFrame:
    """:func:`perplexity` for the dense model (first) and every condition, in one table.

    kwargs: the protocol arguments of :func:`perplexity` (split, max_length, stride, max_tokens,
    batch_size, head_dtype, store, texts_fn). Texts are tokenised once.
    """
    from tqdm import tqdm

    from . import corpus

    texts_fn = kwargs.get("texts_fn")
    langs = corpus.resolve_languages(languages) if texts_fn is None else list(languages)
    if "windows" not in kwargs:
        kwargs["windows"] = {lang: make_windows(lm.tokenizer, _texts(texts_fn, lang, kwargs.get("split", "evaluation")),
                                                kwargs.get("max_length", 128), kwargs.get("stride"),
                                                kwargs.get("max_tokens")) for lang in langs}
    todo = ([DENSE] if include_dense else []) + list(conditions)
    frames = [perplexity(lm, langs, c, **kwargs) for c in tqdm(todo, desc="conditions", disable=not progress)]
    return pd.concat(frames, ignore_index=True)


def describe(df: pd.DataFrame) -> str:
    """One sentence stating the protocol behind a perplexity table (model, split, windows, tokens)."""
    row = df.iloc[0]
    per = df.drop_duplicates("language")
    stride = "no overlap" if pd.isna(row["stride"]) or row["stride"] is None else f"stride {int(row['stride'])}"
    if pd.isna(row["max_tokens"]) or row["max_tokens"] is None:
        budget = "the whole split"
    elif int(per["tokens"].max()) < int(row["max_tokens"]):
        budget = f"the whole split: shorter than the budget of {int(row['max_tokens']):,} tokens in every language"
    else:
        budget = f"whole paragraphs in document order until at least {int(row['max_tokens']):,} tokens"
    return (f"Perplexity of {row['model']} ({row['dtype']}, fingerprint {row['fingerprint']}) on the UDHR "
            f"'{row['split']}' split ({budget}) of {len(per)} languages: windows of at most "
            f"{int(row['max_length'])} tokens, each starting with BOS ({stride}); "
            f"{int(per['windows'].min())}-{int(per['windows'].max())} windows and "
            f"{int(per['tokens'].min()):,}-{int(per['tokens'].max()):,} scored tokens per language "
            f"({int(per['tokens'].sum()):,} in all), {int(per['characters'].min()):,}-{int(per['characters'].max()):,} "
            "characters; loss over every token but BOS and padding, through the full model.")
