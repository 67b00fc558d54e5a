"""The FFN adapter table: where each architecture keeps its feed-forward neurons.

One declarative row per Hugging Face ``model_type``. Paths are relative to the
model's backbone (``model.base_model``), so a ``*ForCausalLM`` and its bare
backbone resolve alike.

The *neuron value* of FFN neuron i is the i-th input of the down projection:

- gated FFN (SwiGLU, GeGLU): ``a = act(gate(x)) * up(x)``
- plain FFN (GPT-2, BLOOM, OPT, GPT-NeoX): ``a = act(fc1(x))``

It is read with a forward *pre*-hook on the down projection, never by hooking
the activation module (that would give ``act(gate(x))`` without ``up``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from babel_lib.core.errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class FFNSpec:
    """Where one architecture's FFN lives (paths relative to the backbone).

    layers: path to the ModuleList of decoder blocks.
    mlp:    path from a block to the module holding the FFN projections ("" = the block itself).
    down:   name of the down projection (its input is the neuron value).
    up:     name of the up projection (gated) or fc1 (plain).
    gate:   name of the gate projection; None for plain FFNs.
    fused_gate_up: gate and up stacked in one Linear as [gate; up] rows (Phi-3).
    conv1d: weights stored transposed ([in, out], GPT-2's Conv1D).
    width_field: the config field holding the FFN width (None: the architecture has none, e.g.
        BLOOM's FFN is always 4 x hidden), set when a pruned model is saved.
    mlp_callable: the FFN can be run alone as ``mlp(x)`` on its input (for FFN-only timing): not
        when it lives in the block itself (OPT) or also takes the residual (BLOOM).
    """

    layers: str
    mlp: str
    down: str
    up: str
    gate: str | None = None
    fused_gate_up: bool = False
    conv1d: bool = False
    width_field: str | None = "intermediate_size"
    mlp_callable: bool = True

    @property
    def gated(self) -> bool:
        return self.gate is not None or self.fused_gate_up


_LLAMA_LIKE = FFNSpec(layers="layers", mlp="mlp", down="down_proj", up="up_proj", gate="gate_proj")

FFN_ADAPTERS: dict[str, FFNSpec] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _LLAMA_LIKE,
    "gemma3_text": _LLAMA_LIKE,
    "olmo": _LLAMA_LIKE,
    "olmo2": _LLAMA_LIKE,
    "phi3": FFNSpec(layers="layers", mlp="mlp", down="down_proj", up="gate_up_proj", fused_gate_up=True),
    "gpt2": FFNSpec(layers="h", mlp="mlp", down="c_proj", up="c_fc", conv1d=True, width_field="n_inner"),
    "bloom": FFNSpec(layers="h", mlp="mlp", down="dense_4h_to_h", up="dense_h_to_4h", width_field=None,
                     mlp_callable=False),
    "opt": FFNSpec(layers="decoder.layers", mlp="", down="fc2", up="fc1", width_field="ffn_dim", mlp_callable=False),
    "gpt_neox": FFNSpec(layers="layers", mlp="mlp", down="dense_4h_to_h", up="dense_h_to_4h"),
}


def _get(module: nn.Module, path: str) -> nn.Module:
    return module.get_submodule(path) if path else module


def backbone(model: nn.Module) -> nn.Module:
    """The transformer without its LM head (``model.base_model``)."""
    return getattr(model, "base_model", model)


def check_model_type(model_type) -> FFNSpec:
    """The adapter row of a ``model_type`` (config.json's), or UnsupportedArchitectureError listing the
    supported ones: checked before a model's weights are loaded."""
    spec = FFN_ADAPTERS.get(model_type)
    if spec is None:
        raise UnsupportedArchitectureError(
            f"Unsupported architecture model_type={model_type!r}. Supported: "
            f"{', '.join(sorted(FFN_ADAPTERS))}. Add a row to babel_lib.core.adapters.FFN_ADAPTERS "
            "naming its FFN modules (paths relative to model.base_model)."
        )
    return spec


def ffn_spec(model: nn.Module) -> FFNSpec:
    """The adapter row for ``model``; a clear error for architectures not in the table."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    spec = check_model_type(model_type)
    cfg = model.config
    if model_type == "bloom" and getattr(cfg, "pretraining_tp", 1) > 1 and getattr(cfg, "slow_but_exact", False):
        raise UnsupportedArchitectureError(
            "BLOOM with pretraining_tp > 1 and slow_but_exact=True bypasses dense_4h_to_h.forward, "
            "so its neuron values cannot be hooked; load it with slow_but_exact=False."
        )
    return spec


@dataclass
class FFNLayer:
    """One layer's FFN modules. ``n_neurons`` = width of the down projection's input."""

    index: int
    mlp: nn.Module
    down: nn.Module
    up: nn.Module
    gate: nn.Module | None
    spec: FFNSpec

    @property
    def n_neurons(self) -> int:
        w = self.down.weight
        return w.shape[0] if self.spec.conv1d else w.shape[1]

    # -- weights as [n_neurons, hidden] rows ------------------------------------------
    def input_rows(self, which: str = "gate") -> torch.Tensor:
        """Each neuron's input weight row, [n_neurons, hidden] (a view or copy, fp32).

        which: 'gate', 'up' or 'both' (gate and up concatenated, [n, 2*hidden]) for gated
        FFNs; plain FFNs have only fc1, returned for any choice.
        """
        n = self.n_neurons
        if self.spec.conv1d:
            fc1 = self.up.weight.t()
        else:
            fc1 = self.up.weight
        if not self.spec.gated:
            return fc1.detach().float()
        if self.spec.fused_gate_up:
            gate_w, up_w = fc1[:n], fc1[n:]
        else:
            gate_w, up_w = self.gate.weight, fc1
        if which == "gate":
            return gate_w.detach().float()
        if which == "up":
            return up_w.detach().float()
        if which == "both":
            return torch.cat([gate_w, up_w], dim=1).detach().float()
        raise ValueError(f"which must be 'gate', 'up' or 'both', got {which!r}")

    # -- in-place neuron reindexing (permute or slice) ---------------------------------
    @torch.inference_mode(False)
    @torch.no_grad()
    def select_neurons(self, index: torch.Tensor) -> None:
        """Keep neurons ``index`` (in that order) in every FFN projection, in place.

        A permutation reorders neurons (output unchanged); a subset slices them away
        (the FFN becomes physically smaller). Linear ``in/out_features`` are updated.
        The new weights are ordinary tensors even when called under inference mode.
        """
        index = index.to(self.down.weight.device)
        n = self.n_neurons
        if self.spec.fused_gate_up:
            _select_out(self.up, torch.cat([index, index + n]), conv1d=False)
        else:
            _select_out(self.up, index, conv1d=self.spec.conv1d)
            if self.gate is not None:
                _select_out(self.gate, index, conv1d=False)
        _select_in(self.down, index, conv1d=self.spec.conv1d)


def _select_out(lin: nn.Module, index: torch.Tensor, conv1d: bool) -> None:
    """Keep output units ``index`` of a projection into the FFN."""
    if conv1d:  # Conv1D weight [in, out], bias [out]
        lin.weight = nn.Parameter(lin.weight.data[:, index].contiguous(), requires_grad=lin.weight.requires_grad)
        lin.nf = len(index)
    else:
        lin.weight = nn.Parameter(lin.weight.data[index].contiguous(), requires_grad=lin.weight.requires_grad)
        lin.out_features = len(index)
    if getattr(lin, "bias", None) is not None:
        lin.bias = nn.Parameter(lin.bias.data[index].contiguous(), requires_grad=lin.bias.requires_grad)


def _select_in(lin: nn.Module, index: torch.Tensor, conv1d: bool) -> None:
    """Keep input units ``index`` of the down projection (its bias is untouched)."""
    if conv1d:  # [in, out]
        lin.weight = nn.Parameter(lin.weight.data[index].contiguous(), requires_grad=lin.weight.requires_grad)
    else:
        lin.weight = nn.Parameter(lin.weight.data[:, index].contiguous(), requires_grad=lin.weight.requires_grad)
        lin.in_features = len(index)


def ffn_layers(model: nn.Module) -> list[FFNLayer]:
    """Every decoder layer's FFN modules, in depth order."""
    spec = ffn_spec(model)
    base = backbone(model)
    try:
        blocks = _get(base, spec.layers)
    except AttributeError as exc:
        raise UnsupportedArchitectureError(
            f"model_type={model.config.model_type!r}: no module at '{spec.layers}' under the backbone "
            f"({type(base).__name__}); the adapter row does not match this model."
        ) from exc
    out = []
    for i, block in enumerate(blocks):
        mlp = _get(block, spec.mlp)
        out.append(
            FFNLayer(
                index=i,
                mlp=mlp,
                down=getattr(mlp, spec.down),
                up=getattr(mlp, spec.up),
                gate=getattr(mlp, spec.gate) if spec.gate else None,
                spec=spec,
            )
        )
    return out
