"""How good is a partition? MoEfication's measures, per layer.

- ``mass_captured``: mean over tokens of (sum of the top-k experts' scores) / (sum of all
  |a|): the share of the FFN's activation mass that the activated experts carry
  (MoEfication's criterion; 1.0 would make top-k routing lossless for the score).
- ``within_coactivation``: mean cosine similarity of the activity patterns of two
  neurons of the same expert (from :func:`babel_lib.experts.profile.neuron_coactivation`):
  how much neurons grouped together fire together. Compare with the random split.
- ``balance``: entropy of the experts' activation counts / log(n_experts); 1 = every
  expert activated equally often.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from babel_lib.core.adapters import ffn_layers
from babel_lib.core.cache import Store, cache_key
from babel_lib.core.definitions import Definitions
from babel_lib.core.hooks import BatchRunner, ffn_pre_hooks, run_all
from babel_lib.core.models import LoadedModel
from babel_lib.experts.moefy import Partition


def _onehot(partition: Partition, layer: int, device) -> torch.Tensor:
    labels = torch.from_numpy(partition.labels[layer]).to(device)
    return torch.nn.functional.one_hot(labels, partition.n_experts).to(torch.float32)


def within_expert_coactivation(coactivation: np.ndarray, partition: Partition) -> np.ndarray:
    """Per layer, mean cosine of co-activation between distinct neurons of one expert. Shape [layers]."""
    out = np.zeros(partition.n_layers)
    for layer in range(partition.n_layers):
        c = coactivation[layer].astype(np.float64)
        d = np.sqrt(np.clip(np.diag(c), 1e-12, None))
        cos = c / d[:, None] / d[None, :]
        same = partition.labels[layer][:, None] == partition.labels[layer][None, :]
        np.fill_diagonal(same, False)
        out[layer] = cos[same].mean()
    return out


@torch.inference_mode()
def partition_quality(lm: LoadedModel, partitions: dict[str, Partition], seqs: list[list[int]],
                      definitions: Definitions = Definitions(), coactivation: np.ndarray | None = None,
                      batch_size: int = 8, units: list[int] | None = None):
    """One row per (partition, layer): mass_captured, balance, and within_coactivation if counts are given.

    units: for each sequence, the index of the unit it belongs to (e.g. a (language, passage) pair);
    then the result is ``(table, by_unit)`` with ``by_unit = {name: (mass [U, L], tokens [U])}``:
    each unit's summed per-token mass shares and its counted tokens, for a bootstrap over units.
    """
    layers = ffn_layers(lm.model)
    names = list(partitions)
    for p in partitions.values():
        p.check_fits(lm)
    onehots = {(name, l.index): _onehot(partitions[name], l.index, lm.device) for name in names for l in layers}
    n_units = (max(units) + 1) if units else 1
    owner = torch.tensor(units if units else [0] * len(seqs), dtype=torch.long, device=lm.device)
    mass = {name: torch.zeros(n_units, len(layers), dtype=torch.float64, device=lm.device) for name in names}
    unit_tokens = torch.zeros(n_units, dtype=torch.float64, device=lm.device)
    counts = {(name, l.index): torch.zeros(partitions[name].n_experts, device=lm.device) for name in names for l in layers}
    runner = BatchRunner(lm, seqs, batch_size)

    def hook(layer, a):
        batch = runner.current
        flat = a.reshape(-1, a.shape[-1]).index_select(0, batch.rows).abs().float()
        total = flat.sum(1).clamp_min(1e-12)
        unit = owner[batch.row_sequence]
        if layer == 0:
            unit_tokens.index_add_(0, unit, torch.ones_like(unit, dtype=torch.float64))
        for name in names:
            s = flat @ onehots[(name, layer)]
            top = s.topk(definitions.k(s.shape[1]), dim=1)
            mass[name][:, layer].index_add_(0, unit, (top.values.sum(1) / total).double())
            counts[(name, layer)] += torch.bincount(top.indices.reshape(-1), minlength=s.shape[1]).float()

    tokens = run_all(runner, [ffn_pre_hooks(lm.model, hook)])
    rows = []
    for name in names:
        within = (within_expert_coactivation(coactivation, partitions[name]) if coactivation is not None else None)
        captured = mass[name].sum(0).cpu().numpy() / tokens
        for l in layers:
            c = counts[(name, l.index)].cpu().numpy()
            p = c / c.sum()
            entropy = -(p[p > 0] * np.log(p[p > 0])).sum() / np.log(len(p))
            row = {"partition": name, "layer": l.index, "mass_captured": float(captured[l.index]), "balance": entropy}
            if within is not None:
                row["within_coactivation"] = within[l.index]
            rows.append(row)
    table = pd.DataFrame(rows)
    if units is None:
        return table
    return table, {name: (mass[name].cpu().numpy(), unit_tokens.cpu().numpy()) for name in names}


def moe_agreement(lm: LoadedModel, partition: Partition, seqs: list[list[int]], top_k_fraction: float = 1.0,
                  batch_size: int = 8) -> dict:
    """Compare the MoE view (top-k experts per token, oracle scores) with the dense model.

    Returns max_abs_logit_diff, mean_abs_logit_diff (over counted positions) and
    top1_agreement (share of counted positions whose most likely next token is unchanged),
    plus tokens. With top_k_fraction=1.0 this is the dense-equivalence check.
    """
    row = moe_agreements(lm, [("", partition, top_k_fraction)], seqs, batch_size, store=False).iloc[0]
    return {k: row[k] for k in ("top_k_fraction", "max_abs_logit_diff", "mean_abs_logit_diff", "top1_agreement",
                                "tokens")}


AGREEMENT_COLUMNS = ["partition", "top_k_fraction", "max_abs_logit_diff", "mean_abs_logit_diff", "top1_agreement",
                     "tokens"]


def moe_agreements(lm: LoadedModel, conditions: list[tuple[str, Partition, float]], seqs: list[list[int]],
                   batch_size: int = 8, store: Store | None | bool = None) -> pd.DataFrame:
    """:func:`moe_agreement` for several (name, partition, top_k_fraction) conditions on the same text: the
    dense forward runs once per batch for all of them. One row per condition (AGREEMENT_COLUMNS).

    Cached (kind 'agreement') by model fingerprint, partitions, fractions, text and batch size;
    ``store=False`` computes without the cache."""
    if store is False:
        return _agreements(lm, conditions, seqs, batch_size)
    parts = {"model": lm.fingerprint, "dtype": str(lm.dtype), "batch_size": int(batch_size),
             "conditions": [[name, part.key, float(f)] for name, part, f in conditions],
             "text": cache_key({"seqs": [list(map(int, s)) for s in seqs]})}
    _, meta = (store or Store()).get_or_compute(
        "agreement", parts, lambda: ({}, {"rows": _agreements(lm, conditions, seqs, batch_size).to_dict("records")}))
    return pd.DataFrame(meta["rows"], columns=AGREEMENT_COLUMNS)


@torch.inference_mode()
def _agreements(lm, conditions, seqs, batch_size) -> pd.DataFrame:
    from babel_lib.experts.moefy import moe_view

    acc = [[0.0, 0.0, 0] for _ in conditions]  # max diff, summed mean diff, top-1 agreements
    n = 0
    for batch, out in BatchRunner(lm, seqs, batch_size, full_model=True):
        count = batch.counted.to(lm.device)
        ids, attn = batch.input_ids, batch.attention_mask
        dense = out.logits[count].float()
        top1 = dense.argmax(1)
        for a, (_, partition, fraction) in zip(acc, conditions):
            with moe_view(lm.model, partition, top_k_fraction=fraction):
                moe = lm.model(input_ids=ids, attention_mask=attn, use_cache=False).logits[count].float()
            diff = (dense - moe).abs()
            a[0] = max(a[0], float(diff.max()))
            a[1] += float(diff.mean(1).sum())
            a[2] += int((top1 == moe.argmax(1)).sum())
        n += int(count.sum())
    return pd.DataFrame([[name, float(f), a[0], a[1] / n, a[2] / n, n] for (name, _, f), a in zip(conditions, acc)],
                        columns=AGREEMENT_COLUMNS)


# ---------------------------------------------------------------------------- overlap of two partitions
def partition_overlap(a, b) -> np.ndarray:
    """Per layer, the mean best-match Jaccard index between two partitions' experts (symmetrised:
    the mean over both directions of, for each expert, its highest Jaccard with any expert of the
    other partition). 1 = identical memberships (whatever the expert numbering); two random
    balanced splits give about :func:`chance_overlap`. a, b: partitions (anything with ``labels``
    int [layers, neurons]) of the same shape. Float [layers]."""
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
    """Mean :func:`partition_overlap` of two random balanced partitions of ``n_neurons`` into
    ``n_experts`` equal experts (the chance level), over ``trials`` seeded pairs."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    size = n_neurons // n_experts
    vals = []
    for _ in range(trials):
        a = rng.permutation(np.repeat(np.arange(n_experts), size))[None]
        b = rng.permutation(np.repeat(np.arange(n_experts), size))[None]
        vals.append(partition_overlap(SimpleNamespace(labels=a), SimpleNamespace(labels=b))[0])
    return float(np.mean(vals))
