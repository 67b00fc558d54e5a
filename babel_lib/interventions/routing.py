"""Per-token expert selection (chapter 10): a centroid router (:class:`CentroidRouter`) or a trained MLP router (:class:`TrainedRouter`, :func:`train_router`) over each layer's experts, the masked view that computes only the routed experts, the oracle top-k, and how many of a token's oracle experts a router or a static set recalls."""

from __future__ import annotations

import hashlib
import numbers
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from babel_lib.core.adapters import ffn_layers
from babel_lib.core.definitions import active_count
from babel_lib.core.hooks import (BatchRunner, check_batch_size, experts_contiguous, ffn_pre_hooks, module_pre_hooks,
                                  run_all)
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
    def name(self) -> str:
        """The router's label in tables (``router_recall``'s "selector")."""
        return "centroid router"

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


@dataclass
class TrainedRouter:
    """MoEfication's MLP router: per layer a small two-layer perceptron from the FFN input x to one
    logit per expert, ``relu(x @ w1.T + b1) @ w2.T + b2``, trained (:func:`train_router`) to predict
    each token's oracle top-k experts. Costs hidden x d + d x E multiply-adds per token and layer
    (d = ``hidden``; with d = 64 and E = 64 for Gemma 3 270M, FFN input 640: about 45k, vs the
    centroid router's 64 x 640 = 41k).

    weights: per layer {"w1": [d, in_features], "b1": [d], "w2": [E, d], "b2": [E]}, float32 (the
    input standardisation used in training is folded into w1 and b1). hidden: d. top_k_fraction:
    the fraction of experts whose top-k the router was trained on. train_tokens: training tokens
    (no BOS, no padding). steps, lr, train_batch, seed: the optimisation (Adam, ``steps`` mini-batches
    of ``train_batch`` tokens per layer). data_key: hash of the training token ids. train_loss: per
    layer, the binary cross-entropy (nats per expert and token) on all training tokens after training.
    """

    weights: list[dict[str, torch.Tensor]]
    hidden: int
    partition_key: str
    top_k_fraction: float
    train_tokens: int
    steps: int
    seed: int
    lr: float
    train_batch: int
    data_key: str
    train_loss: list[float] | None = None

    @property
    def name(self) -> str:
        """The router's label in tables (``router_recall``'s "selector")."""
        return "trained router"

    @property
    def spec(self) -> dict:
        """Everything that changes the router's scores beyond the model's weights. The training
        fraction is ``train_top_k_fraction`` (``routed_condition`` adds its own ``top_k_fraction``)."""
        return {"router": "trained", "hidden": self.hidden, "steps": self.steps, "seed": self.seed, "lr": self.lr,
                "train_batch": self.train_batch, "partition": self.partition_key,
                "train_top_k_fraction": self.top_k_fraction, "data_key": self.data_key}

    def scores(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """[..., E] float32 logits of the experts of ``layer`` for FFN inputs x [..., hidden]."""
        w = self.weights[layer]
        if w["w1"].device != x.device:
            w = self.weights[layer] = {name: t.to(x.device) for name, t in w.items()}
        return _mlp(w, x.float())


def _mlp(w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(x, w["w1"], w["b1"])), w["w2"], w["b2"])


def _data_key(seqs: list[list[int]]) -> str:
    """SHA-256 (first 16 hex digits) of the token ids, sequence boundaries included."""
    h = hashlib.sha256()
    for s in seqs:
        h.update(np.int64(len(s)).tobytes())
        h.update(np.asarray(s, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


def train_router(lm: LoadedModel, partition: Partition, seqs: list[list[int]], top_k_fraction: float = 0.2,
                 hidden: int = 64, steps: int = 300, lr: float = 1e-2, batch_size: int = 8, seed: int = 0,
                 train_batch: int = 1024) -> TrainedRouter:
    """Train a :class:`TrainedRouter` on the dense model's FFN inputs over ``seqs`` (token-id lists).

    One pass of ``lm`` (``batch_size`` sequences per forward; no BOS, no padding) captures per
    layer the FFN inputs x (float32 [tokens, in_features], on the CPU) and the oracle target: each
    token's top ``k = active_count(top_k_fraction, E)`` experts by sum|a| over the expert's neurons
    (bool [tokens, E]), as :func:`router_recall` ranks them. Then, layer by layer, on the CPU, an
    MLP in_features -> ``hidden`` -> E (ReLU between) is trained on standardised x with Adam
    (``lr``), multi-label binary cross-entropy against the top-k indicator, for ``steps`` mini-batches
    of ``train_batch`` rows drawn (with replacement) by a generator seeded by ``seed``: deterministic.
    Memory: 4 x tokens x (in_features + E) bytes per layer for the captures (about 1 GB for 20k tokens,
    18 layers, 640 features). Several k from one pass: :func:`train_routers`.
    """
    return train_routers(lm, partition, seqs, [top_k_fraction], hidden, steps, lr, batch_size, seed, train_batch)[0]


def train_routers(lm: LoadedModel, partition: Partition, seqs: list[list[int]], top_k_fractions,
                  hidden: int = 64, steps: int = 300, lr: float = 1e-2, batch_size: int = 8, seed: int = 0,
                  train_batch: int = 1024) -> list[TrainedRouter]:
    """:func:`train_router` for each of ``top_k_fractions`` from one pass of the model: the same routers,
    weight for weight, as one call each (every router draws from its own generator seeded by ``seed``)."""
    if not seqs:
        raise ValueError("seqs is empty: train_router needs token sequences to train on")
    if any(len(s) == 0 for s in seqs):
        raise ValueError("seqs holds an empty sequence: every sequence needs at least one token")
    for name, value in (("hidden", hidden), ("steps", steps), ("train_batch", train_batch)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not float(lr) > 0 or not np.isfinite(float(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    fractions = [float(f) for f in top_k_fractions]
    if not fractions:
        raise ValueError("top_k_fractions is empty: name at least one fraction of the experts to route to")
    check_batch_size(batch_size)
    partition.check_fits(lm)
    E, size = partition.n_experts, partition.expert_size
    ks = [active_count(f, E) for f in fractions]
    layers = ffn_layers(lm.model)
    xs: list[list[torch.Tensor]] = [[] for _ in layers]
    scores: list[list[torch.Tensor]] = [[] for _ in layers]
    runner = BatchRunner(lm, seqs, batch_size)

    def make_input_hook(i):
        def hook(_mod, args):
            x = args[0].reshape(-1, args[0].shape[-1]).index_select(0, runner.current.rows)
            xs[i].append(x.float().cpu())
        return hook

    def oracle(i, a):
        flat = a.reshape(-1, a.shape[-1]).index_select(0, runner.current.rows)
        scores[i].append(flat.abs().reshape(flat.shape[0], E, size).sum(-1, dtype=torch.float32).cpu())
        return None

    n = run_all(runner, [experts_contiguous(lm.model, partition),
                         module_pre_hooks([l.up for l in layers], [make_input_hook(l.index) for l in layers]),
                         ffn_pre_hooks(lm.model, oracle)])
    if n == 0:
        raise ValueError("seqs hold no token to train on (BOS and padding are not counted)")
    weights: list[list] = [[] for _ in ks]
    losses: list[list] = [[] for _ in ks]
    gens = [torch.Generator().manual_seed(int(seed)) for _ in ks]
    with torch.inference_mode(False), torch.enable_grad():
        for i in range(len(layers)):
            x = torch.cat(xs[i]).clone()  # a normal (not inference) tensor, usable by autograd
            s = torch.cat(scores[i])
            xs[i] = scores[i] = None  # free the captures layer by layer
            for j, k in enumerate(ks):
                y = torch.zeros_like(s, dtype=torch.bool).scatter_(1, s.topk(k, dim=1).indices, True).float()
                w, loss = _fit_mlp(x, y, hidden, steps, float(lr), train_batch, k / E, gens[j])
                weights[j].append(w)
                losses[j].append(loss)
            del x, s
    return [TrainedRouter(weights[j], int(hidden), partition.key, fractions[j], int(n), int(steps), int(seed),
                          float(lr), int(train_batch), _data_key(seqs), losses[j]) for j in range(len(ks))]


def _fit_mlp(x: torch.Tensor, y: torch.Tensor, hidden: int, steps: int, lr: float, train_batch: int,
             prior: float, gen: torch.Generator) -> tuple[dict[str, torch.Tensor], float]:
    """Fit relu-MLP logits to the 0/1 targets y [N, E] from x [N, in] (CPU, float32); returns the
    weights with the standardisation of x folded into the first layer, and the final mean BCE."""
    n, d_in = x.shape
    E = y.shape[1]
    mean = x.mean(0)
    std = x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / std
    bound1, bound2 = 1 / d_in ** 0.5, 1 / hidden ** 0.5
    w1 = ((torch.rand(hidden, d_in, generator=gen) * 2 - 1) * bound1).requires_grad_()
    b1 = torch.zeros(hidden, requires_grad=True)
    w2 = ((torch.rand(E, hidden, generator=gen) * 2 - 1) * bound2).requires_grad_()
    b2 = torch.full((E,), float(np.log(prior / (1 - prior))) if prior < 1 else 0.0, requires_grad=True)
    params = {"w1": w1, "b1": b1, "w2": w2, "b2": b2}
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    for _ in range(steps):
        idx = torch.randint(0, n, (train_batch,), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss = bce(_mlp(params, z[idx]), y[idx])
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = float(bce(_mlp(params, z), y))
        w1f = w1 / std  # relu(w1 @ ((x - mean) / std) + b1) = relu((w1 / std) @ x + b1 - (w1 / std) @ mean)
        out = {"w1": w1f.contiguous(), "b1": (b1 - w1f @ mean).contiguous(), "w2": w2.detach().clone(),
               "b2": b2.detach().clone()}
    return out, final


@contextmanager
def routed_view(model: torch.nn.Module, partition: Partition, router: CentroidRouter | TrainedRouter,
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


def routed_condition(lm: LoadedModel, partition: Partition, router: CentroidRouter | TrainedRouter,
                     top_k_fraction: float, name: str | None = None) -> Condition:
    """Evaluate ``lm`` with per-token routing (centroid or trained router) to the top ``top_k_fraction`` of experts."""
    spec = {"kind": "router", **router.spec, "top_k_fraction": float(top_k_fraction)}
    label = "router" if isinstance(router, CentroidRouter) else router.name
    return Condition(name or f"{label} top {top_k_fraction:.0%}", spec,
                     lambda: routed_view(lm.model, partition, router, top_k_fraction))


def oracle_condition(lm: LoadedModel, partition: Partition, top_k_fraction: float, name: str | None = None) -> Condition:
    """Per-token oracle top-k experts by sum|a| (needs every neuron computed first: an upper bound for routers)."""
    spec = {"kind": "oracle", "partition": partition.key, "top_k_fraction": float(top_k_fraction)}
    return Condition(name or f"oracle top {top_k_fraction:.0%}", spec,
                     lambda: moe_view(lm.model, partition, top_k_fraction=top_k_fraction))


@torch.inference_mode()
def router_recall(lm: LoadedModel, partition: Partition, router: CentroidRouter | TrainedRouter,
                  seqs: list[list[int]], top_k_fraction: float | list[float] = 0.2, batch_size: int = 8,
                  static: dict[str, PrunePlan] | None = None) -> pd.DataFrame:
    """Recall of the oracle top-k experts, per layer, on the dense model (one pass for every k).

    Oracle: each token's top ``k = round(top_k_fraction * E)`` experts by sum|a|. Router recall:
    |router top-k ∩ oracle top-k| / k, averaged over tokens (no BOS, no padding). ``static``:
    optional fixed expert sets (plans; their kept experts) whose recall of the oracle top-k is
    measured the same way (|set ∩ oracle top-k| / k). Chance level for a random set of m experts
    is m / E. top_k_fraction: one fraction or a list.

    Returns rows: selector (the router's ``name`` or the static set's name), top_k_fraction, k, layer,
    recall, chance, set_size, tokens.
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
        rows += [{"selector": router.name, "top_k_fraction": float(f), "k": k, "layer": l,
                  "recall": float(hits[j, l] / (n * k)), "chance": k / E, "set_size": k, "tokens": n}
                 for l in range(L)]
        for name, plan in static.items():
            rows += [{"selector": name, "top_k_fraction": float(f), "k": k, "layer": l,
                      "recall": float(static_hits[name][j, l] / (n * k)), "chance": len(plan.keep[l]) / E,
                      "set_size": len(plan.keep[l]), "tokens": n} for l in range(L)]
    return pd.DataFrame(rows)
