"""Per-token expert selection (chapter 10): a centroid router over each layer's experts, the masked view that computes only the routed experts, the oracle top-k, and how many of a token's oracle experts a router or a static set recalls."""

from __future__ import annotations

import numbers
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from babel_lib.core.adapters import ffn_layers
from babel_lib.core.definitions import active_count
from babel_lib.core.hooks import BatchRunner, experts_contiguous, ffn_pre_hooks, module_pre_hooks, run_all
from babel_lib.core.models import LoadedModel
from babel_lib.experts.moefy import Partition, moe_view
from babel_lib.interventions.evaluate import Condition
from babel_lib.interventions.prune import PrunePlan


# ------------------------------------------------------------------------------ routers
@dataclass
class CentroidRouter:
    """MoEfication's similarity router: expert e's score for FFN input x is x . c_e, where c_e is
    the mean of the expert's L2-normalised input weight rows (gate rows for gated FFNs by default,
    the k-means feature): the cluster centre of the parameter clustering. Costs E x hidden
    multiply-adds per token and layer (64 x 640 for Gemma 3 270M: 1% of its FFN).

    centroids: per layer, float32 [E, in_features] (rows indexed by expert id).
    """

    centroids: list[torch.Tensor]
    features: str
    partition_key: str
    normalize: bool = True

    @classmethod
    def build(cls, model: torch.nn.Module, partition: Partition, features: str = "gate",
              normalize: bool = True) -> "CentroidRouter":
        cents = []
        for layer in ffn_layers(model):
            rows = layer.input_rows(features)
            if normalize:
                rows = torch.nn.functional.normalize(rows, dim=1)
            if features == "both":  # [gate; up] rows, but the input x is shared: average the two halves
                rows = 0.5 * (rows[:, : rows.shape[1] // 2] + rows[:, rows.shape[1] // 2:])
            labels = torch.from_numpy(partition.labels[layer.index]).to(rows.device)
            c = torch.zeros(partition.n_experts, rows.shape[1], dtype=torch.float32, device=rows.device)
            c.index_add_(0, labels, rows.float())
            cents.append(c / partition.expert_size)
        return cls(cents, features, partition.key, normalize)

    @property
    def spec(self) -> dict:
        return {"router": "centroid", "features": self.features, "normalize": self.normalize,
                "partition": self.partition_key}

    def scores(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """[..., E] float32 scores of the experts of ``layer`` for inputs x [..., hidden]."""
        c = self.centroids[layer]
        if c.device != x.device:
            c = self.centroids[layer] = c.to(x.device)
        return x.float() @ c.T


@contextmanager
def routed_view(model: torch.nn.Module, partition: Partition, router: CentroidRouter,
                top_k_fraction: float) -> Iterator[None]:
    """Run only the router's top-k experts per token in every FFN (others' neuron values zeroed).

    This shows the quality of routing, not its speed: every neuron is still computed.
    """
    E, size = partition.n_experts, partition.expert_size
    k = active_count(top_k_fraction, E)
    layers = ffn_layers(model)
    keep: dict[int, torch.Tensor] = {}

    def make_router_hook(i):
        def hook(_mod, args):
            s = router.scores(i, args[0])
            idx = s.topk(k, dim=-1).indices
            keep[i] = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, idx, True)
        return hook

    def apply(i, a):
        blocks = a.reshape(*a.shape[:-1], E, size)
        return (blocks * keep.pop(i).unsqueeze(-1).to(a.dtype)).reshape(a.shape)

    with experts_contiguous(model, partition), \
            module_pre_hooks([l.up for l in layers], [make_router_hook(l.index) for l in layers]), \
            ffn_pre_hooks(model, apply):
        yield


def routed_condition(lm: LoadedModel, partition: Partition, router: CentroidRouter, top_k_fraction: float,
                     name: str | None = None) -> Condition:
    """Evaluate ``lm`` with per-token centroid routing to the top ``top_k_fraction`` of experts."""
    spec = {"kind": "router", **router.spec, "top_k_fraction": float(top_k_fraction)}
    return Condition(name or f"router top {top_k_fraction:.0%}", spec,
                     lambda: routed_view(lm.model, partition, router, top_k_fraction))


def oracle_condition(lm: LoadedModel, partition: Partition, top_k_fraction: float, name: str | None = None) -> Condition:
    """Per-token oracle top-k experts by sum|a| (needs every neuron computed first: an upper bound for routers)."""
    spec = {"kind": "oracle", "partition": partition.key, "top_k_fraction": float(top_k_fraction)}
    return Condition(name or f"oracle top {top_k_fraction:.0%}", spec,
                     lambda: moe_view(lm.model, partition, top_k_fraction=top_k_fraction))


@torch.inference_mode()
def router_recall(lm: LoadedModel, partition: Partition, router: CentroidRouter, seqs: list[list[int]],
                  top_k_fraction: float | list[float] = 0.2, batch_size: int = 8,
                  static: dict[str, PrunePlan] | None = None) -> pd.DataFrame:
    """Recall of the oracle top-k experts, per layer, on the dense model (one pass for every k).

    Oracle: each token's top ``k = round(top_k_fraction * E)`` experts by sum|a|. Router recall:
    |router top-k ∩ oracle top-k| / k, averaged over tokens (no BOS, no padding). ``static``:
    optional fixed expert sets (plans; their kept experts) whose recall of the oracle top-k is
    measured the same way (|set ∩ oracle top-k| / k). Chance level for a random set of m experts
    is m / E. top_k_fraction: one fraction or a list.

    Returns rows: selector, top_k_fraction, k, layer, recall, chance, set_size, tokens.
    """
    E, size = partition.n_experts, partition.expert_size
    fractions = [top_k_fraction] if isinstance(top_k_fraction, numbers.Real) else list(top_k_fraction)
    ks = [active_count(f, E) for f in fractions]
    kmax = max(ks)
    layers = ffn_layers(lm.model)
    L = len(layers)
    hits = torch.zeros(len(ks), L, dtype=torch.float64)
    static = static or {}
    static_masks = {name: torch.stack([torch.from_numpy(np.isin(np.arange(E), plan.keep[l])) for l in range(L)])
                    for name, plan in static.items()}
    static_hits = {name: torch.zeros(len(ks), L, dtype=torch.float64) for name in static}
    routed: dict[int, torch.Tensor] = {}
    runner = BatchRunner(lm, seqs, batch_size)

    def make_router_hook(i):
        def hook(_mod, args):
            x = args[0].reshape(-1, args[0].shape[-1]).index_select(0, runner.current.rows)
            routed[i] = router.scores(i, x).topk(kmax, dim=-1).indices  # sorted, best first
        return hook

    def oracle(i, a):
        flat = a.reshape(-1, a.shape[-1]).index_select(0, runner.current.rows)
        s = flat.abs().reshape(flat.shape[0], E, size).sum(-1, dtype=torch.float32)
        order = s.topk(kmax, dim=1).indices
        r = routed.pop(i)
        for j, k in enumerate(ks):
            top = torch.zeros_like(s, dtype=torch.bool).scatter_(1, order[:, :k], True)
            hits[j, i] += top.gather(1, r[:, :k]).sum().double().cpu()
            for name, m in static_masks.items():
                static_hits[name][j, i] += (top & m[i].to(top.device)).sum().double().cpu()
        return None

    n = run_all(runner, [experts_contiguous(lm.model, partition),
                         module_pre_hooks([l.up for l in layers], [make_router_hook(l.index) for l in layers]),
                         ffn_pre_hooks(lm.model, oracle)])
    rows = []
    for j, (f, k) in enumerate(zip(fractions, ks)):
        rows += [{"selector": "centroid router", "top_k_fraction": float(f), "k": k, "layer": l,
                  "recall": float(hits[j, l] / (n * k)), "chance": k / E, "set_size": k, "tokens": n}
                 for l in range(L)]
        for name, plan in static.items():
            rows += [{"selector": name, "top_k_fraction": float(f), "k": k, "layer": l,
                      "recall": float(static_hits[name][j, l] / (n * k)), "chance": len(plan.keep[l]) / E,
                      "set_size": len(plan.keep[l]), "tokens": n} for l in range(L)]
    return pd.DataFrame(rows)
