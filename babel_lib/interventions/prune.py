"""Expert pruning, physical slicing and sparse activation, guided by activation frequencies.

Four pieces (each usable alone):

1. **Rankings**: how important each expert of each layer is. From a
   :class:`~babel_lib.experts.profile.Profile` measured on the *calibration* split (:func:`rank_experts`,
   :data:`RANKINGS`): ``'language'`` (one target language's activation frequency),
   ``'multilingual'`` (the mean frequency over the profile's languages) or ``'random'`` (seeded;
   the baseline). Ties are broken by the multilingual mean, then by expert id, so plans are
   deterministic. Two language-agnostic importance baselines from the neuron values on
   calibration text pooled over languages (:func:`neuron_importance`, :func:`importance_ranking`,
   :data:`IMPORTANCE_RANKINGS`; see "Importance baselines" below): ``'magnitude'`` and
   ``'wanda'``.
2. **Plans** (:func:`prune_plan`): which experts each layer drops for an overall rate p:
   ``'uniform'`` (round(p * E) experts in every layer), or per-layer rates from activation
   levels, ``'layerwise'`` or ``'entropy'`` (our rules, below), which drop exactly as many
   experts in all as the uniform plan (L x round(p * E)). Every plan reports its *measured*
   sparsity (experts dropped / experts), which differs from the requested rate by rounding.
   Bad rates raise :class:`PruneRateError`.
3. **Pruning**: masked (:func:`masked_condition`: :func:`babel_lib.experts.moefy.moe_view` zeroes the
   dropped experts' neuron values: same outputs, no compute saved) or physical: gate/up rows
   and down columns (fc1/fc2 for plain FFNs) are sliced away by
   :meth:`babel_lib.core.adapters.FFNLayer.select_neurons`, giving a genuinely smaller model, either
   as a copy (:func:`prune_model`; :func:`save_pruned` / :func:`load_pruned` write and read it,
   see below for unequal widths) or in place for the duration of a block (:func:`sliced_view`,
   :func:`sliced_condition`: no copy, the original tensors are put back on exit).
4. **Sparse activation**: a language's static high-frequency set (:func:`high_frequency_plan`,
   physically sliceable, so its speed-up is real) and per-token routing by MoEfication's
   centroid-similarity router (:class:`CentroidRouter`, :func:`routed_condition`), with the
   router's recall of the oracle top-k experts (:func:`router_recall`). Routing is applied by
   masking: it shows the quality a router gets, **not** a speed-up (every neuron is still
   computed); :func:`gathered_ffn` is a per-expert gather implementation for timing that honestly.

Per-layer rates (our rules; the paper sets per-layer rates from per-layer activation levels but
does not publish its formula). Both start from share[l, e] = level[l, e] / sum_e level[l, e],
expert e's share of layer l's activations (levels default to the ranking's frequencies; pass
``levels=`` for rankings that are not frequencies), keep every layer's rate within
[p - max_deviation, p + max_deviation] and at least ``min_keep`` experts, and drop exactly
L x round(p * E) experts in all, the uniform plan's number:

- ``'layerwise'``: experts are dropped in increasing order of share *across all layers*. So a
  layer whose activation mass is concentrated in few experts (many near-idle experts) gives up
  more experts; a layer that uses its experts evenly gives up fewer.
- ``'entropy'``: each layer's rate is set from the normalised entropy of its activation
  distribution, H_l = -sum_e share[l, e] ln share[l, e] / ln E (1: every expert used equally;
  low: activation concentrated in few experts). Target rate r_l = p + max_deviation * d_l with
  d_l = (mean_l H - H_l) / max_l |H_l - mean H| in [-1, 1]: the most concentrated layer drops
  p + max_deviation, the most even one p - max_deviation, linearly in between. The targets are
  shifted by one common amount and rounded (largest remainders) so that the counts, clipped to
  the bounds, sum to the uniform plan's total. It needs a number for ``max_deviation`` (its
  strength).

Two published rules as baselines (the field's; each adapted to experts, same bounds and total):

- ``'owl'`` (outlier-weighed layer-wise sparsity, Yin et al. 2024): a layer with more outliers is
  pruned less. OWL's outlier ratio of a layer is the share of its weights whose Wanda score exceeds
  M times the layer's mean score (M = 5 in its paper); we remove whole neurons, so we count neurons:
  D_l = share of layer l's neurons whose Wanda-style score ||W_down[:, i]|| ||a_i|| exceeds
  ``threshold`` x the layer's mean (:func:`outlier_ratios`). Rates r_l = p + max_deviation * d_l with
  d_l = (mean D - D_l) / max |D_l - mean D| (OWL's linear map into [p - lambda, p + lambda]).
- ``'crosslingual'`` (in the spirit of M-Wanda's correlation-based layer-wise sparsity, Choenni and
  Titov 2025): a layer whose experts the languages use alike is pruned more, one whose use differs
  between languages less. C_l = mean over language pairs of the Pearson correlation of their expert
  frequencies in layer l (:func:`crosslingual_correlation`); r_l = p + max_deviation * d_l with
  d_l = (C_l - mean C) / max |C_l - mean C|. M-Wanda's exact formula differs (it correlates Wanda
  scores computed per language); the direction, protecting language-specific layers, is its.

Both go through the same rounding as the entropy rule (a common shift, largest remainders, the
bounds) and drop exactly the uniform plan's total (:func:`scored_counts`).

Which experts a layer drops is then decided by the ranking, as in the uniform plan.

Importance baselines (language-agnostic, computed in ONE pass over calibration text pooled over
the calibration languages, :func:`neuron_importance`; cached as kind 'importance'). For neuron
i of a layer with values a_i(t) (the down projection's input) over the T calibration tokens t:

- ``'magnitude'``: m_i = (1/T) sum_t |a_i(t)|; an expert's score is sum_{i in e} m_i, the mean
  over tokens of its activation score s_e = sum_{i in e} |a_i| (the score that decides
  activation, averaged instead of thresholded).
- ``'wanda'``: w_i = ||W_down[:, i]||_2 * ||a_i||_2 with ||a_i||_2 = sqrt(sum_t a_i(t)^2); an
  expert's score is sum_{i in e} w_i. Wanda (Sun et al. 2024) scores a weight W_jk of a linear
  layer by |W_jk| * ||X_k||_2, the L2 norm over tokens of that weight's contribution W_jk X_k(t)
  to output j. Dropping neuron i removes the down projection's whole column W_down[:, i], whose
  contribution over tokens and outputs, W_down[:, i] a_i(t), has L2 (Frobenius) norm exactly
  ||W_down[:, i]||_2 * ||a_i||_2: the same quantity for the unit we remove (a neuron, not one
  weight), with Wanda's per-output comparison groups replaced by the layer (our experts compete
  within their layer). The gate/up rows of neuron i are removed with it but only act through
  a_i, which the score already measures.

Saving a physically pruned model: the kept widths are recorded in the config
(``babel_pruned_ffn``: widths per layer, original width, plan and partition keys). When every
layer keeps the same width the architecture's width field (``intermediate_size``, ``n_inner``,
``ffn_dim``) is set too, so plain ``AutoModelForCausalLM.from_pretrained`` reloads it (BLOOM
has no such field: its FFN is always 4 x hidden). Unequal widths cannot be described by one
config field: plain ``from_pretrained`` then refuses the checkpoint (size mismatch), and
:func:`load_pruned` rebuilds the model from the config, slices each layer to its recorded
width and loads the weights.
"""

from __future__ import annotations

import copy
import math
import numbers
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from babel_lib.core.adapters import ffn_layers
from babel_lib.core.cache import atomic_folder, cache_key
from babel_lib.core.errors import BabelError
from babel_lib.core.hooks import BatchRunner, ffn_pre_hooks, run_all
from babel_lib.core.models import LoadedModel, model_fingerprint
from babel_lib.experts.moefy import Partition, moe_view
from babel_lib.experts.profile import Profile
from babel_lib.interventions.evaluate import Condition

#: Rankings from an activation profile (:func:`rank_experts`).
RANKINGS = ("language", "multilingual", "random")
#: Language-agnostic importance rankings (:func:`importance_ranking`).
IMPORTANCE_RANKINGS = ("magnitude", "wanda")
#: How a plan spreads its experts over layers (:func:`prune_plan`).
ALLOCATIONS = ("uniform", "layerwise", "entropy", "owl", "crosslingual")
#: The allocations whose per-layer rates come from one score per layer (``layer_scores=`` of :func:`prune_plan`).
SCORED_ALLOCATIONS = ("owl", "crosslingual")
#: Bump when a change here changes cached neuron importances.
IMPORTANCE_VERSION = "1"



class PruneRateError(BabelError, ValueError):
    """A pruning rate that is not a number in [0, 1), or one that would leave a layer without experts."""


# ------------------------------------------------------------------------------ rankings
@dataclass
class Ranking:
    """Expert importance per layer (higher = keep longer).

    scores: float [L, E]; order: int [L, E], expert ids from most to least important;
    spec: what made it (enters cache keys).
    """

    name: str
    scores: np.ndarray
    order: np.ndarray
    spec: dict
    frequency_based: bool

    @property
    def n_layers(self) -> int:
        return int(self.scores.shape[0])

    @property
    def n_experts(self) -> int:
        return int(self.scores.shape[1])


def _profile_digest(profile: Profile) -> str:
    return cache_key({"counts": profile.counts.tolist(), "tokens": profile.tokens.tolist(),
                      "languages": profile.languages, "partition": profile.partition_key,
                      "model": profile.model_fingerprint, "definitions": profile.definitions,
                      "corpus": profile.corpus})[:16]


def random_ranking(n_layers: int, n_experts: int, seed: int = 0) -> Ranking:
    """A seeded random ranking without a profile (for speed tests, where which experts go does not matter)."""
    scores = np.random.default_rng(int(seed)).random((n_layers, n_experts))
    return Ranking(f"random (seed {seed})", scores, np.argsort(-scores, axis=1, kind="stable"),
                   {"by": "random", "seed": int(seed), "shape": [n_layers, n_experts]}, False)


def rank_experts(profile: Profile, by: str = "multilingual", language: str | None = None, seed: int = 0,
                 languages: list[str] | None = None) -> Ranking:
    """Rank every layer's experts from a profile (see the module docstring).

    by: 'language' (needs ``language``, one of the profile's languages), 'multilingual' (mean
    frequency over ``languages``, default all of the profile's) or 'random' (``seed``).
    """
    if by not in RANKINGS:
        raise ValueError(f"by must be one of {RANKINGS}, got {by!r}")
    freq = profile.frequencies()
    pool = list(languages) if languages is not None else list(profile.languages)
    missing = [l for l in pool + ([language] if language else []) if l not in profile.languages]
    if missing:
        raise ValueError(f"languages {missing} are not in the profile ({', '.join(profile.languages)})")
    multi = freq[[profile.languages.index(l) for l in pool]].mean(axis=0)
    spec = {"by": by, "profile": _profile_digest(profile)}
    if by == "language":
        if language is None:
            raise ValueError("by='language' needs language=")
        scores = freq[profile.languages.index(language)]
        name, spec["language"] = f"{language} frequency", language
    elif by == "multilingual":
        scores = multi
        name, spec["languages"] = "multilingual mean frequency", pool
    else:
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        scores = np.random.default_rng(int(seed)).random(multi.shape)
        name, spec["seed"] = f"random (seed {seed})", int(seed)
    L, E = scores.shape
    ids = np.arange(E)
    order = np.stack([np.lexsort((ids, -multi[l], -scores[l])) for l in range(L)])
    return Ranking(name, np.asarray(scores, dtype=np.float64), order, spec, by != "random")


# ------------------------------------------------------------------------------ importance baselines
@dataclass
class NeuronImportance:
    """Per-neuron statistics of the neuron values a over calibration tokens (module docstring).

    abs_sum, sq_sum: float64 [L, N], sum over tokens of |a_i| and of a_i^2; down_norm: float64
    [L, N], ||W_down[:, i]||_2; tokens: calibration tokens (BOS and padding excluded); spec: what
    made it (enters cache keys and ranking specs).
    """

    abs_sum: np.ndarray
    sq_sum: np.ndarray
    down_norm: np.ndarray
    tokens: int
    spec: dict

    @property
    def key(self) -> str:
        return cache_key(self.spec)[:16]

    def magnitude(self) -> np.ndarray:
        """[L, N] mean |a_i| over tokens."""
        return self.abs_sum / max(self.tokens, 1)

    def wanda(self) -> np.ndarray:
        """[L, N] ||W_down[:, i]||_2 * ||a_i||_2 (L2 norm over tokens)."""
        return self.down_norm * np.sqrt(self.sq_sum)

    def neuron_scores(self, by: str) -> np.ndarray:
        if by == "magnitude":
            return self.magnitude()
        if by == "wanda":
            return self.wanda()
        raise ValueError(f"by must be one of {IMPORTANCE_RANKINGS}, got {by!r}")


def down_column_norms(model: torch.nn.Module) -> np.ndarray:
    """float64 [L, N]: the L2 norm of each neuron's column of the down projection (its output weights)."""
    out = []
    for layer in ffn_layers(model):
        w = layer.down.weight.detach().float()
        out.append((w.norm(dim=1) if layer.spec.conv1d else w.norm(dim=0)).double().cpu().numpy())
    return np.stack(out)


def neuron_importance(lm: LoadedModel, passages, max_length: int = 128, batch_size: int = 8,
                      store=None, progress: bool = False) -> NeuronImportance:
    """Per-neuron sums of |a| and a^2 over calibration text pooled over its languages, in one pass.

    passages: a :class:`babel_lib.data.corpus.Passages` (every language's windows are pooled, see
    :func:`babel_lib.experts.profile.pooled_windows`: the same passages in each language, so each
    language weighs by its token count), or a list of token-id sequences. Cached in the Store
    (kind 'importance') by model fingerprint, dtype, text and batch size.
    """
    from tqdm import tqdm

    from babel_lib.core.cache import Store
    from babel_lib.experts.profile import pooled_windows

    seqs = passages if isinstance(passages, list) else pooled_windows(lm.tokenizer, passages, max_length)[0]
    if not seqs:
        raise ValueError("no calibration text for the importance scores")
    store = store or Store()
    parts = {"version": IMPORTANCE_VERSION, "model_fingerprint": lm.fingerprint, "dtype": str(lm.dtype),
             "text": cache_key({"ids": seqs})[:32], "batch_size": int(batch_size)}

    def compute():
        layers = ffn_layers(lm.model)
        L, N = len(layers), layers[0].n_neurons
        abs_acc = torch.zeros(L, N, dtype=torch.float64, device=lm.device)
        sq_acc = torch.zeros(L, N, dtype=torch.float64, device=lm.device)
        runner = BatchRunner(lm, seqs, batch_size)

        def hook(layer, a):
            x = a.reshape(-1, a.shape[-1]).index_select(0, runner.current.rows).float()
            abs_acc[layer] += x.abs().sum(0).double()  # one batch in float32, the running sums in float64
            sq_acc[layer] += x.square().sum(0).double()

        bar = tqdm(total=sum(len(s) for s in seqs), unit="tok", desc="importance", disable=not progress)
        n = run_all(runner, [ffn_pre_hooks(lm.model, hook)], bar)
        bar.close()
        arrays = {"abs_sum": abs_acc.cpu().numpy(), "sq_sum": sq_acc.cpu().numpy(),
                  "down_norm": down_column_norms(lm.model), "tokens": np.array(n)}
        return arrays, {"sequences": len(seqs)}

    arrays, _ = store.get_or_compute("importance", parts, compute)
    return NeuronImportance(arrays["abs_sum"], arrays["sq_sum"], arrays["down_norm"], int(arrays["tokens"]),
                            parts)


def importance_ranking(importance: NeuronImportance, partition: Partition, by: str = "wanda") -> Ranking:
    """Rank every layer's experts by a language-agnostic importance (module docstring): the sum of
    ``by`` ('magnitude' or 'wanda') over the expert's neurons. Ties are broken by expert id."""
    neuron = importance.neuron_scores(by)
    if neuron.shape != (partition.n_layers, partition.n_neurons):
        raise ValueError(f"importance of shape {neuron.shape} does not fit the partition "
                         f"({partition.n_layers} x {partition.n_neurons} neurons)")
    E = partition.n_experts
    scores = np.stack([np.bincount(partition.labels[l], weights=neuron[l], minlength=E)
                       for l in range(partition.n_layers)])
    ids = np.arange(E)
    order = np.stack([np.lexsort((ids, -scores[l])) for l in range(partition.n_layers)])
    name = "mean activation magnitude" if by == "magnitude" else "Wanda-style |W_down| x ||a||"
    spec = {"by": by, "importance": importance.key, "partition": partition.key}
    return Ranking(name, scores, order, spec, False)


# ------------------------------------------------------------------------------ plans
@dataclass
class PrunePlan:
    """Which experts each layer drops.

    drop: per layer, the dropped expert ids (sorted). requested_rate: what was asked;
    :attr:`sparsity` is what the plan really drops.
    """

    drop: list[np.ndarray]
    n_experts: int
    requested_rate: float
    allocation: str
    ranking: str
    spec: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return len(self.drop)

    @property
    def keep(self) -> dict[int, np.ndarray]:
        """{layer: kept expert ids (sorted)} (the ``experts=`` argument of moe_view)."""
        return {l: np.setdiff1d(np.arange(self.n_experts), d) for l, d in enumerate(self.drop)}

    @property
    def dropped_per_layer(self) -> np.ndarray:
        return np.array([len(d) for d in self.drop], dtype=np.int64)

    @property
    def layer_rates(self) -> np.ndarray:
        """Measured fraction of experts dropped in each layer."""
        return self.dropped_per_layer / self.n_experts

    @property
    def sparsity(self) -> float:
        """Measured overall fraction of FFN experts (= neurons) dropped."""
        return float(self.dropped_per_layer.sum() / (self.n_layers * self.n_experts))

    @property
    def key(self) -> str:
        return cache_key({"drop": [d.tolist() for d in self.drop], "n_experts": self.n_experts})[:16]

    def neuron_index(self, partition: Partition, layer: int) -> np.ndarray:
        """Kept neurons of ``layer`` (ascending original indices)."""
        keep = np.ones(partition.n_neurons, dtype=bool)
        keep[np.isin(partition.labels[layer], self.drop[layer])] = False
        return np.flatnonzero(keep)

    def describe(self) -> str:
        r = self.layer_rates
        per = (f"{int(self.dropped_per_layer[0])} of {self.n_experts} experts in every layer" if r.min() == r.max()
               else f"per layer {r.min():.1%}-{r.max():.1%} ({self.dropped_per_layer.min()}-"
                    f"{self.dropped_per_layer.max()} of {self.n_experts} experts)")
        return (f"{self.allocation} plan by {self.ranking}: requested {self.requested_rate:.1%}, measured "
                f"{self.sparsity:.2%} of FFN experts dropped ({per})")


def check_rate(rate, n_experts: int | None = None, min_keep: int = 1, what: str = "rate") -> float:
    """``rate`` as a float in [0, 1), or :class:`PruneRateError` saying what is wrong."""
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
        raise PruneRateError(f"{what} must be a number in [0, 1) (the fraction of experts to drop), "
                             f"got {rate!r} ({type(rate).__name__})")
    value = float(rate)
    if not math.isfinite(value) or not 0 <= value < 1:
        raise PruneRateError(f"{what} must be a number in [0, 1) (the fraction of experts to drop), got {rate!r}")
    if n_experts is not None and _n_drop(value, n_experts) > n_experts - min_keep:
        raise PruneRateError(
            f"{what} {value:g} drops {_n_drop(value, n_experts)} of {n_experts} experts in a layer, leaving fewer "
            f"than {min_keep}; the largest usable rate is below {(n_experts - min_keep + 0.5) / n_experts:.4g}")
    return value


def _n_drop(rate: float, n: int) -> int:
    return int(math.floor(rate * n + 0.5))  # round half up (Python's round() rounds half to even)


def prune_plan(ranking: Ranking, rate, allocation: str = "uniform", levels: np.ndarray | None = None,
               max_deviation: float | None = 0.2, min_keep: int = 1,
               layer_scores: np.ndarray | None = None) -> PrunePlan:
    """Drop the least important experts of each layer for an overall rate ``rate``.

    rate: fraction of experts to drop, in [0, 1); or a sequence of per-layer rates (allocation
    is then 'given'). allocation: 'uniform', 'layerwise' or 'entropy' (rules in the module
    docstring; ``levels`` [L, E] default to the ranking's frequencies, required for rankings that
    are not frequencies; ``max_deviation``: the most a layer's rate may differ from ``rate``, None
    for no bound with 'layerwise'; the strength of 'entropy'). 'owl' and 'crosslingual' take one
    score per layer, ``layer_scores`` [L] (:func:`outlier_ratios`, :func:`crosslingual_correlation`).
    The per-layer rules drop exactly as many experts in all as 'uniform'.
    """
    L, E = ranking.n_layers, ranking.n_experts
    if not isinstance(min_keep, (int, np.integer)) or not 1 <= min_keep <= E:
        raise PruneRateError(f"min_keep must be an integer in [1, {E}], got {min_keep!r}")
    if not isinstance(rate, numbers.Real) or isinstance(rate, bool):
        if isinstance(rate, (str, bytes)) or not hasattr(rate, "__len__"):
            check_rate(rate)  # raises
        rates = list(rate)
        if len(rates) != L:
            raise PruneRateError(f"per-layer rates need one rate per layer ({L}), got {len(rates)}")
        n = np.array([_n_drop(check_rate(r, E, min_keep, f"rate of layer {l}"), E) for l, r in enumerate(rates)])
        requested, allocation, extra = float(np.mean([float(r) for r in rates])), "given", {"rates": rates}
    else:
        requested = check_rate(rate, E, min_keep)
        extra = {}
        if allocation == "uniform":
            n = np.full(L, _n_drop(requested, E))
        elif allocation in ("layerwise", "entropy"):
            if levels is None:
                if not ranking.frequency_based:
                    raise ValueError(f"a {allocation} plan from a ranking that is not a frequency ({ranking.name}) "
                                     "needs levels= (e.g. the multilingual mean frequencies)")
                levels = ranking.scores
            levels = np.asarray(levels, dtype=np.float64)
            if levels.shape != (L, E):
                raise ValueError(f"levels must be [{L}, {E}] (layers x experts), got {levels.shape}")
            counts = layerwise_counts if allocation == "layerwise" else entropy_counts
            n = counts(levels, requested, max_deviation, min_keep)
            extra = {"max_deviation": max_deviation,
                     "levels": cache_key({"levels": np.round(levels, 12).tolist()})[:16]}
        elif allocation in SCORED_ALLOCATIONS:
            if layer_scores is None:
                raise ValueError(f"a {allocation!r} plan needs layer_scores= (one score per layer: "
                                 f"{'outlier_ratios' if allocation == 'owl' else 'crosslingual_correlation'})")
            sign = -1.0 if allocation == "owl" else 1.0  # OWL: more outliers, lower rate
            n = scored_counts(sign * np.asarray(layer_scores, dtype=np.float64), requested, E, max_deviation,
                              min_keep)
            extra = {"max_deviation": max_deviation,
                     "layer_scores": cache_key({"s": np.round(np.asarray(layer_scores, float), 12).tolist()})[:16]}
        else:
            raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
    drop = [np.sort(ranking.order[l, E - int(n[l]):]) if n[l] else np.zeros(0, dtype=np.int64) for l in range(L)]
    spec = {"ranking": ranking.spec, "rate": requested, "allocation": allocation, "min_keep": int(min_keep), **extra}
    return PrunePlan(drop, E, requested, allocation, ranking.name, spec)


def _bounds(rate: float, L: int, E: int, max_deviation, min_keep: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(lo, hi, total): per-layer limits on experts dropped and the total to drop (the uniform plan's)."""
    total = L * _n_drop(rate, E)
    hi = np.full(L, E - min_keep, dtype=np.int64)
    lo = np.zeros(L, dtype=np.int64)
    if max_deviation is not None:
        if isinstance(max_deviation, bool) or not isinstance(max_deviation, numbers.Real) or not max_deviation >= 0:
            raise PruneRateError(f"max_deviation must be a non-negative number or None, got {max_deviation!r}")
        lo = np.maximum(lo, np.ceil((rate - max_deviation) * E - 1e-9)).astype(np.int64)
        hi = np.minimum(hi, np.floor((rate + max_deviation) * E + 1e-9)).astype(np.int64)
    if lo.sum() > total or hi.sum() < total or (lo > hi).any():
        raise PruneRateError(f"rate {rate:g} cannot be met with per-layer rates within {max_deviation} of it while "
                             f"keeping {min_keep} experts a layer")
    return lo, hi, total


def _check_levels(levels: np.ndarray) -> None:
    if levels.ndim != 2 or not np.isfinite(levels).all() or (levels < 0).any():
        raise ValueError("levels must be a finite, non-negative [layers, experts] array")


def _shares(levels: np.ndarray) -> np.ndarray:
    sums = levels.sum(axis=1, keepdims=True)
    return np.divide(levels, sums, out=np.full_like(levels, 1.0 / levels.shape[1]), where=sums > 0)


def layerwise_counts(levels: np.ndarray, rate: float, max_deviation: float | None = 0.2,
                     min_keep: int = 1) -> np.ndarray:
    """Experts to drop per layer under the 'layerwise' rule (module docstring); sums to the uniform
    plan's total, L x round(rate * E)."""
    rate = check_rate(rate)
    _check_levels(levels)
    L, E = levels.shape
    lo, hi, total = _bounds(rate, L, E, max_deviation, min_keep)
    share = np.sort(_shares(levels), axis=1)
    cand_layer, cand_cost = [], []
    for l in range(L):
        j = np.arange(lo[l], hi[l])
        cand_layer.append(np.full(j.size, l))
        cand_cost.append(share[l, j])
    layer_of = np.concatenate(cand_layer)
    cost = np.concatenate(cand_cost)
    need = total - int(lo.sum())
    pick = np.lexsort((layer_of, cost))[:need]
    return lo + np.bincount(layer_of[pick], minlength=L)


def layer_entropy(levels: np.ndarray) -> np.ndarray:
    """[L] normalised entropy of each layer's activation distribution: -sum_e s ln s / ln E with
    s = level / sum of the layer's levels (1 = every expert used equally)."""
    _check_levels(levels)
    share = _shares(np.asarray(levels, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(share > 0, share * np.log(share), 0.0).sum(axis=1)
    E = levels.shape[1]
    return h / math.log(E) if E > 1 else np.ones(levels.shape[0])


def _apportion(target: np.ndarray, total: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Integers n in [lo, hi] summing to ``total``, closest to ``target`` + one common shift:
    the shift by bisection, then floors and the largest remainders (ties: lower layer first)."""
    lo_f, hi_f = lo.astype(np.float64), hi.astype(np.float64)
    a = float(lo_f.min() - target.max() - 1)
    b = float(hi_f.max() - target.min() + 1)
    for _ in range(200):
        mid = 0.5 * (a + b)
        if np.clip(target + mid, lo_f, hi_f).sum() < total:
            a = mid
        else:
            b = mid
    x = np.clip(target + b, lo_f, hi_f)
    n = np.clip(np.floor(x), lo, hi).astype(np.int64)
    frac = x - n
    layers = np.arange(len(n))
    for l in np.lexsort((layers, -frac)):  # add where the remainder is largest
        if n.sum() >= total:
            break
        if n[l] < hi[l]:
            n[l] += 1
    for l in np.lexsort((layers, frac)):  # (rounding overshoot) take where it is smallest
        if n.sum() <= total:
            break
        if n[l] > lo[l]:
            n[l] -= 1
    return n


def entropy_counts(levels: np.ndarray, rate: float, max_deviation: float = 0.2, min_keep: int = 1) -> np.ndarray:
    """Experts to drop per layer under the 'entropy' rule (module docstring); sums to the uniform
    plan's total, L x round(rate * E)."""
    rate = check_rate(rate)
    _check_levels(levels)
    if max_deviation is None:
        raise PruneRateError("the 'entropy' allocation needs a number for max_deviation (its strength), not None")
    L, E = levels.shape
    lo, hi, total = _bounds(rate, L, E, max_deviation, min_keep)
    h = layer_entropy(levels)
    dev = h.mean() - h
    scale = np.abs(dev).max()
    d = dev / scale if scale > 1e-12 else np.zeros(L)
    return _apportion((rate + float(max_deviation) * d) * E, total, lo, hi)


def scored_counts(score: np.ndarray, rate: float, n_experts: int, max_deviation: float = 0.2,
                  min_keep: int = 1) -> np.ndarray:
    """Experts to drop per layer from one score per layer: a higher score, a higher rate.

    Target r_l = rate + max_deviation * d_l with d_l = (score_l - mean) / max_l |score_l - mean| in
    [-1, 1] (all equal: the uniform rate), then the entropy rule's rounding (:func:`_apportion`): the
    counts stay within the bounds and sum to the uniform plan's total, L x round(rate * E)."""
    rate = check_rate(rate)
    score = np.asarray(score, dtype=np.float64)
    if score.ndim != 1 or not np.isfinite(score).all():
        raise ValueError(f"layer scores must be a finite 1-d array (one per layer), got shape {score.shape}")
    if max_deviation is None:
        raise PruneRateError("a scored allocation needs a number for max_deviation (its strength), not None")
    L, E = len(score), int(n_experts)
    lo, hi, total = _bounds(rate, L, E, max_deviation, min_keep)
    dev = score - score.mean()
    scale = np.abs(dev).max()
    d = dev / scale if scale > 1e-12 else np.zeros(L)
    return _apportion((rate + float(max_deviation) * d) * E, total, lo, hi)


def outlier_ratios(neuron_scores: np.ndarray, threshold: float = 5.0) -> np.ndarray:
    """[L] OWL's layer-wise outlier ratio at the neuron level: the share of each layer's neurons whose
    score (e.g. :meth:`NeuronImportance.wanda`, float [L, N]) exceeds ``threshold`` x the layer's mean."""
    x = np.asarray(neuron_scores, dtype=np.float64)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError("neuron scores must be a finite [layers, neurons] array")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not threshold > 0:
        raise ValueError(f"threshold must be a positive number, got {threshold!r}")
    return (x > threshold * x.mean(axis=1, keepdims=True)).mean(axis=1)


def crosslingual_correlation(frequencies: np.ndarray) -> np.ndarray:
    """[L] per layer, the mean over language pairs of the Pearson correlation of the languages' expert
    frequencies (float [n_languages, L, E], e.g. :meth:`Profile.frequencies`; at least two languages).
    A layer with no variation in some language counts that pair as 0."""
    f = np.asarray(frequencies, dtype=np.float64)
    if f.ndim != 3 or f.shape[0] < 2:
        raise ValueError("frequencies must be [languages, layers, experts] with at least two languages")
    z = f - f.mean(axis=2, keepdims=True)
    norm = np.sqrt((z ** 2).sum(axis=2))  # [n, L]
    n = f.shape[0]
    out = np.zeros(f.shape[1])
    pairs = 0
    for i in range(n):
        for j in range(i + 1, n):
            den = norm[i] * norm[j]
            r = np.divide((z[i] * z[j]).sum(axis=1), den, out=np.zeros_like(den), where=den > 0)
            out += r
            pairs += 1
    return out / pairs


def high_frequency_plan(profile: Profile, language: str, keep_fraction: float) -> PrunePlan:
    """A language's static expert set: its ``keep_fraction`` most frequently activated experts per layer.

    This is target-language pruning at rate 1 - keep_fraction with the uniform allocation: the
    same plan (same key) as ``prune_plan(rank_experts(profile, 'language', language), 1 - f)``."""
    if isinstance(keep_fraction, bool) or not isinstance(keep_fraction, numbers.Real) or not 0 < keep_fraction <= 1:
        raise PruneRateError(f"keep_fraction must be a number in (0, 1], got {keep_fraction!r}")
    return prune_plan(rank_experts(profile, "language", language), 1 - float(keep_fraction))


# ------------------------------------------------------------------------------ masked and physical pruning
def _check_plan(partition: Partition, plan: PrunePlan) -> None:
    if plan.n_layers != partition.n_layers or plan.n_experts != partition.n_experts:
        raise ValueError(f"plan for {plan.n_layers} layers x {plan.n_experts} experts does not fit the partition "
                         f"({partition.n_layers} x {partition.n_experts})")


def masked_condition(lm: LoadedModel, partition: Partition, plan: PrunePlan, name: str | None = None) -> Condition:
    """Evaluate ``lm`` with the plan's dropped experts masked (moe_view): outputs of the pruned model."""
    _check_plan(partition, plan)
    spec = {"kind": "mask", "partition": partition.key, "plan": plan.key}
    return Condition(name or plan.describe(), spec, lambda: moe_view(lm.model, partition, experts=plan.keep))


def _snapshot(layer) -> list[tuple]:
    out = []
    for mod in (layer.gate, layer.up, layer.down):
        if mod is not None:
            attrs = {k: getattr(mod, k) for k in ("weight", "bias", "in_features", "out_features", "nf")
                     if hasattr(mod, k)}
            out.append((mod, attrs))
    return out


@contextmanager
def sliced_view(model: torch.nn.Module, partition: Partition, plan: PrunePlan) -> Iterator[None]:
    """Physically slice the plan's dropped experts out of ``model`` for the duration of the block.

    Inside, the FFNs are genuinely smaller (the speed-up is real); on exit the original weight
    tensors are put back (nothing is copied: the sliced weights are new, smaller tensors).
    """
    _check_plan(partition, plan)
    layers = ffn_layers(model)
    if len(layers) != partition.n_layers or layers[0].n_neurons != partition.n_neurons:
        raise ValueError("the model's FFN shape does not match the partition (is it already pruned?)")
    saved = []
    try:
        for layer in layers:
            saved.append(_snapshot(layer))
            layer.select_neurons(torch.from_numpy(plan.neuron_index(partition, layer.index)))
        yield
    finally:
        for snap in saved:
            for mod, attrs in snap:
                for k, v in attrs.items():
                    setattr(mod, k, v)


def sliced_condition(lm: LoadedModel, partition: Partition, plan: PrunePlan, name: str | None = None) -> Condition:
    """Evaluate ``lm`` physically sliced by the plan (:func:`sliced_view`): the real pruned model, faster."""
    _check_plan(partition, plan)
    spec = {"kind": "slice", "partition": partition.key, "plan": plan.key}
    return Condition(name or plan.describe(), spec, lambda: sliced_view(lm.model, partition, plan))


def _width_field(config) -> str | None:
    from babel_lib.core.adapters import FFN_ADAPTERS

    spec = FFN_ADAPTERS.get(getattr(config, "model_type", None))
    return spec.width_field if spec is not None else "intermediate_size"


def ffn_parameters(model: torch.nn.Module) -> int:
    """Parameters of all FFN projections (gate, up, down, with biases)."""
    total = 0
    for layer in ffn_layers(model):
        for mod in (layer.gate, layer.up, layer.down):
            if mod is not None:
                total += sum(p.numel() for p in mod.parameters(recurse=False))
    return total


def _unique_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() already skips tied duplicates


def prune_model(lm: LoadedModel, partition: Partition, plan: PrunePlan, inplace: bool = False,
                share: bool = False) -> LoadedModel:
    """A physically smaller copy of ``lm`` without the plan's dropped experts (kept neurons keep their order).

    Its outputs equal the masked dense model's up to floating-point summation order.
    inplace: slice ``lm.model`` itself. share: the copy shares every tensor except the sliced FFN
    weights with ``lm`` (no memory for embeddings, attention, norms); neither model's weights may
    then be modified in place (replacing parameters, as slicing and moe_view do, is fine).
    """
    partition.check_fits(lm)
    _check_plan(partition, plan)
    if inplace:
        model = lm.model
    elif share:
        memo = {id(t): t for t in list(lm.model.parameters()) + list(lm.model.buffers())}
        model = copy.deepcopy(lm.model, memo)
    else:
        model = copy.deepcopy(lm.model)
    original = partition.n_neurons
    widths = []
    for layer in ffn_layers(model):
        idx = torch.from_numpy(plan.neuron_index(partition, layer.index))
        layer.select_neurons(idx)
        widths.append(int(idx.numel()))
    _record_widths(model.config, widths, original, {"plan": plan.key, "partition": partition.key,
                                                     "sparsity": plan.sparsity})
    desc = f"{lm.description}; FFN pruned: {plan.describe()}"
    return LoadedModel(model, lm.tokenizer, f"{lm.name} [pruned {plan.key}]", desc, model_fingerprint(model))


def _record_widths(config, widths: list[int], original: int, extra: dict) -> None:
    info = dict(getattr(config, "babel_pruned_ffn", None) or {})
    original = info.get("original_width", original)
    config.babel_pruned_ffn = {"widths": [int(w) for w in widths], "original_width": int(original), **extra}
    name = _width_field(config)
    if name is not None:
        # equal widths: the architecture's own field describes the model exactly; unequal: keep the
        # original so that plain from_pretrained fails loudly on the size mismatch (use load_pruned)
        setattr(config, name, int(widths[0]) if len(set(widths)) == 1 else int(original))


def save_pruned(lm: LoadedModel, folder: str | Path, force: bool = False) -> Path:
    """``save_pretrained`` the (pruned) model and its tokenizer into ``folder`` (atomically: an
    interrupted save leaves no half-written folder); reload with :func:`load_pruned`. Nothing at
    ``folder`` is replaced unless ``force``, and then only a model folder or an empty one (checked
    again just before the swap: :func:`babel_lib.core.validate.check_output`)."""
    from babel_lib.core.validate import check_output

    folder = Path(folder)
    with atomic_folder(folder, replace=force) as tmp:
        lm.model.save_pretrained(tmp)
        if hasattr(lm.tokenizer, "save_pretrained"):
            lm.tokenizer.save_pretrained(tmp)
        if force:
            check_output(folder, "folder", force=True)
    return folder


def load_pruned(folder: str | Path, dtype="float32", device: str = "cpu", tokenizer=None) -> LoadedModel:
    """Load a model written by :func:`save_pruned` (any per-layer widths; plain models too)."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from babel_lib.core.models import resolve_device, resolve_dtype

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder)
    info = getattr(config, "babel_pruned_ffn", None)
    torch_dtype = resolve_dtype(dtype)
    widths = (info or {}).get("widths")
    if not widths or len(set(widths)) == 1 and _width_field(config) is not None:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype)
    else:
        model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
        layers = ffn_layers(model)
        if len(layers) != len(widths):
            raise ValueError(f"{folder}: config records {len(widths)} FFN widths for {len(layers)} layers")
        for layer, w in zip(layers, widths):
            layer.select_neurons(torch.arange(int(w)))
        state = {}
        for f in sorted(folder.glob("*.safetensors")):
            state.update(load_file(str(f)))
        if not state:
            raise FileNotFoundError(f"no *.safetensors weights in {folder}")
        result = model.load_state_dict(state, strict=False)
        tied = set(getattr(model, "_tied_weights_keys", None) or {})
        missing = [k for k in result.missing_keys if k not in tied]
        if missing or result.unexpected_keys:
            raise ValueError(f"{folder}: weights do not match the recorded widths (missing {missing[:5]}, "
                             f"unexpected {result.unexpected_keys[:5]})")
        model.tie_weights()
        model.to(torch_dtype)
    model = model.to(resolve_device(device)).eval()
    if tokenizer is None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder)
        except (OSError, ValueError, TypeError):
            tokenizer = None
    return LoadedModel(model, tokenizer, str(folder), f"pruned model folder {folder.name}", model_fingerprint(model))


def size_report(dense: LoadedModel, pruned: LoadedModel) -> dict:
    """Parameters (all, FFN) of the dense and the pruned model and the fractions removed."""
    pd_, pp = _unique_parameters(dense.model), _unique_parameters(pruned.model)
    fd, fp = ffn_parameters(dense.model), ffn_parameters(pruned.model)
    return {"params_dense": pd_, "params_pruned": pp, "params_removed": 1 - pp / pd_,
            "ffn_params_dense": fd, "ffn_params_pruned": fp, "ffn_params_removed": 1 - fp / fd}
