"""Timing the FFN and the model, interleaved: seconds per call, speed-ups with their spread, and the FFN inputs of a real batch (benchmarks and chapter 10)."""

from __future__ import annotations

import time
from typing import Callable

import pandas as pd
import torch

from babel_lib.core.adapters import backbone, ffn_layers
from babel_lib.core.hooks import module_pre_hooks
from babel_lib.core.models import LoadedModel
from babel_lib.experts.moefy import Partition


# ------------------------------------------------------------------------------ timing
def time_interleaved(fns: dict[str, Callable[[], object]], rounds: int = 5, warmup: int = 1) -> pd.DataFrame:
    """Seconds per call of each function, timed interleaved after ``warmup`` rounds.

    Rounds alternate the order (A B C, then C B A, ...), so a steady drift of the machine's
    speed cancels in the per-round ratios instead of favouring whichever runs first.
    Returns rows: round, name, seconds.
    """
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    rows = []
    items = list(fns.items())
    for r in range(rounds):
        for name, fn in (items if r % 2 == 0 else items[::-1]):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            rows.append({"round": r, "name": name, "seconds": time.perf_counter() - t})
    return pd.DataFrame(rows)


def speedup(times: pd.DataFrame, baseline: str, other: str, spread: bool = False):
    """Median over rounds of baseline time / other time (from :func:`time_interleaved`).

    spread=True returns (median, lowest, highest) of the per-round ratios.
    """
    wide = times.pivot(index="round", columns="name", values="seconds")
    ratio = wide[baseline] / wide[other]
    if spread:
        return float(ratio.median()), float(ratio.min()), float(ratio.max())
    return float(ratio.median())


@torch.inference_mode()
def ffn_inputs(lm: LoadedModel, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's FFN input (the tensor its up/fc1 projection receives) for one dense forward."""
    layers = ffn_layers(lm.model)
    got: dict[int, torch.Tensor] = {}

    def make(i):
        def hook(_m, args):
            got.setdefault(i, args[0].detach().clone())
        return hook

    with module_pre_hooks([l.up for l in layers], [make(l.index) for l in layers]):
        backbone(lm.model)(input_ids=input_ids, use_cache=False)
    return [got[i] for i in range(len(layers))]


def mlp_callable(lm: LoadedModel, inputs: list[torch.Tensor]) -> Callable[[], None]:
    """A function that runs every layer's MLP module on its recorded input (FFN-only timing).

    For architectures whose FFN modules sit in their own MLP module (LLaMA-like, Gemma, GPT-2,
    GPT-NeoX, Phi-3); OPT's FFN lives in the block itself and BLOOM's MLP also takes the residual.
    """
    layers = ffn_layers(lm.model)
    if not layers[0].spec.mlp_callable:
        raise ValueError(f"{lm.model.config.model_type}: no stand-alone MLP module to time")

    @torch.inference_mode()
    def run():
        for layer, x in zip(layers, inputs):
            layer.mlp(x)
    return run


@torch.inference_mode()
def gathered_ffn(layer, partition: Partition, x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """A gated FFN computing only each token's chosen experts, by gathering tokens per expert.

    layer: an FFNLayer of a model whose experts are contiguous blocks (inside
    :func:`babel_lib.core.hooks.experts_contiguous`); x [tokens, hidden]; experts [tokens, k] ids.
    The output equals the masked FFN's (zeroed non-chosen experts) up to summation order. On CPUs
    the many small matrix products usually make it slower than the dense FFN; it exists to time
    per-token routing honestly, not as a fast kernel.
    """
    if not layer.spec.gated or layer.spec.fused_gate_up or layer.spec.conv1d:
        raise ValueError("gathered_ffn supports separate gate/up Linear layers (LLaMA-like, Gemma)")
    size = partition.expert_size
    act = layer.mlp.act_fn
    gw, uw, dw = layer.gate.weight, layer.up.weight, layer.down.weight
    out = torch.zeros(x.shape[0], dw.shape[0], dtype=x.dtype, device=x.device)
    tok_idx = torch.arange(x.shape[0], device=x.device).repeat_interleave(experts.shape[1])
    flat = experts.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=partition.n_experts).tolist()
    start = 0
    for e, c in enumerate(counts):
        if c == 0:
            continue
        toks = tok_idx[order[start:start + c]]
        start += c
        xs = x.index_select(0, toks)
        sl = slice(e * size, (e + 1) * size)
        h = act(xs @ gw[sl].T) * (xs @ uw[sl].T)
        out.index_add_(0, toks, h @ dw[:, sl].T)
    return out


def make_batch(lm: LoadedModel, batch: int, length: int, language: str = "eng",
               corpus_name: str = "udhr") -> torch.Tensor:
    """[batch, length] token ids of real text for timing: ``language``'s whole text of the corpus
    (repeated as needed), cut into rows that start with BOS, on the model's device."""
    from babel_lib.data import corpus

    text = " ".join(corpus.texts(language, "all", corpus=corpus_name))
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = lm.tokenizer.bos_token_id
    body = length - 1 if bos is not None else length
    need = batch * body
    ids = (ids * (need // len(ids) + 1))[:need]
    head = [bos] if bos is not None else []
    rows = [head + ids[i * body:(i + 1) * body] for i in range(batch)]
    return torch.tensor(rows, device=lm.device)
