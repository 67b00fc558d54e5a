"""MoEfication: group each FFN layer's neurons into equal-size experts.

Methods (our defaults where the paper is silent):

- ``kmeans`` (default; MoEfication's parameter clustering): L2-normalise each
  neuron's input weight row (gate rows for gated FFNs; 'up' or 'both' as options;
  fc1 rows for plain FFNs) and run balanced k-means with exactly equal sizes.
- ``random``: a random balanced split (the baseline).
- ``coactivation``: neurons that are active on the same tokens grouped together
  (spectral embedding of the co-activation graph + balanced k-means), from counts
  measured by :func:`babel_lib.experts.profile.neuron_coactivation`.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from babel_lib.core.adapters import ffn_layers
from babel_lib.core.cache import Store, atomic_write_bytes, cache_key
from babel_lib.core.definitions import active_count
from babel_lib.core.errors import PartitionMismatchError
from babel_lib.core.models import LoadedModel
from babel_lib.experts import clustering

METHODS = ("kmeans", "random", "coactivation")
#: Partitions kept with the project (see :func:`pinned_path`): a rerun on any machine uses the same experts.
PINNED_DIR = Path(__file__).resolve().parents[1] / "data" / "partitions"
FEATURES = ("gate", "up", "both")
DEFAULT_EXPERT_SIZE = 32


@dataclass
class Partition:
    """Expert membership of every FFN neuron.

    labels: int array [n_layers, n_neurons]; labels[l, i] = expert of neuron i in layer l.
    Every expert of a layer holds exactly ``expert_size`` neurons.
    """

    labels: np.ndarray
    expert_size: int
    method: str
    features: str
    seed: int
    model_name: str
    model_fingerprint: str
    info: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.labels.shape[1])

    @property
    def n_experts(self) -> int:
        return self.n_neurons // self.expert_size

    @property
    def key(self) -> str:
        """Content hash of the labels and how they were made (for cache keys)."""
        return cache_key({"labels": _digest(self.labels),
                          "expert_size": self.expert_size, "method": self.method, "features": self.features,
                          "seed": self.seed, "model_fingerprint": self.model_fingerprint})[:16]

    @classmethod
    def neurons(cls, lm: LoadedModel) -> "Partition":
        """The partition-free view: every neuron its own expert (expert_size 1), so statistics
        computed on it do not depend on how neurons were grouped."""
        layers = ffn_layers(lm.model)
        labels = np.tile(np.arange(layers[0].n_neurons, dtype=np.int64), (len(layers), 1))
        return cls(labels, 1, "neurons", "", 0, lm.name, lm.fingerprint)

    def describe_short(self) -> str:
        """'k-means on gate rows, seed 0', 'random split, seed 1', 'neurons', ..."""
        if self.method == "neurons":
            return "neurons"
        what = {"kmeans": f"k-means on {self.features} rows", "random": "random split",
                "coactivation": "co-activation split"}.get(self.method, self.method)
        return f"{what}, seed {self.seed}"

    def order(self, layer: int) -> torch.Tensor:
        """Neuron indices sorted by expert: expert e's neurons sit at [e*size, (e+1)*size). Shape [n_neurons]."""
        return torch.from_numpy(np.argsort(self.labels[layer], kind="stable").astype(np.int64))

    def members(self, layer: int, expert: int) -> np.ndarray:
        """Neuron indices (ascending) of one expert."""
        return np.flatnonzero(self.labels[layer] == expert)

    def check_fits(self, lm: LoadedModel, allow_other_model: bool = False) -> None:
        """Raise PartitionMismatchError unless this partition was built for ``lm``'s FFN shape and weights.

        allow_other_model: accept another model of the same FFN shape (e.g. a fine-tuned
        version of the partition's model), deliberately; the shape is still checked.
        """
        layers = ffn_layers(lm.model)
        shape = (len(layers), layers[0].n_neurons if layers else 0)
        if shape != tuple(self.labels.shape):
            raise PartitionMismatchError(
                f"Partition of shape {tuple(self.labels.shape)} (layers x neurons, built for {self.model_name!r}) "
                f"does not fit model {lm.name!r} with {shape[0]} layers x {shape[1]} neurons. Build one for this "
                "model with babel_lib.experts.moefy.build_partition(model)."
            )
        if (not allow_other_model and self.model_fingerprint and lm.fingerprint
                and self.model_fingerprint != lm.fingerprint):
            raise PartitionMismatchError(
                f"Partition was built for {self.model_name!r} (fingerprint {self.model_fingerprint}) but the model "
                f"is {lm.name!r} (fingerprint {lm.fingerprint}): same shape, different weights. Build one for this "
                "model with build_partition, or pass allow_other_model=True to reuse it deliberately."
            )

    # -- persistence ---------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (.npz), atomically."""
        import io

        meta = {k: getattr(self, k) for k in ("expert_size", "method", "features", "seed", "model_name", "model_fingerprint")}
        meta["info"] = self.info
        buf = io.BytesIO()
        compact = self.labels.astype(np.uint16 if self.labels.max() < 2 ** 16 else np.int64)
        np.savez_compressed(buf, labels=compact, meta=np.array(json.dumps(meta)))
        atomic_write_bytes(Path(path), buf.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "Partition":
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            labels = npz["labels"].astype(np.int64)
        info = meta.pop("info", {})
        return cls(labels=labels, info=info, **meta)


def _digest(a: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _validate(n_neurons: int, expert_size: int, method: str, features: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    if not isinstance(expert_size, (int, np.integer)) or expert_size < 1 or n_neurons % expert_size:
        divisors = [d for d in (8, 16, 32, 64, 128, 256) if n_neurons % d == 0]
        raise PartitionMismatchError(
            f"expert_size={expert_size!r} does not divide the FFN width {n_neurons}: every expert must have the "
            f"same size. Choose a divisor of {n_neurons}, e.g. {divisors}."
        )


def pinned_path(model_fingerprint: str, expert_size: int, method: str = "kmeans", features: str = "gate",
                seed: int = 0, folder: str | Path | None = None) -> Path:
    """Where the pinned partition of a model (by weight fingerprint) and these settings lives:
    ``<folder>/<fingerprint>_<method>[-<features>]_e<expert_size>_s<seed>.npz`` (folder: PINNED_DIR)."""
    name = f"{method}-{features}" if method == "kmeans" else method
    return Path(folder or PINNED_DIR) / f"{model_fingerprint}_{name}_e{int(expert_size)}_s{int(seed)}.npz"


def pin_partition(partition: Partition, folder: str | Path | None = None, force: bool = False) -> Path:
    """Keep ``partition`` with the project so :func:`build_partition` loads it instead of clustering.

    Co-activation partitions depend on profiled text and cannot be pinned by settings alone.
    An existing pinned file is replaced only with ``force`` (FileExistsError otherwise)."""
    if partition.method == "coactivation":
        raise ValueError("co-activation partitions depend on the profiled text; they cannot be pinned")
    path = pinned_path(partition.model_fingerprint, partition.expert_size, partition.method,
                       partition.features or "gate", partition.seed, folder)
    if path.exists() and not force:
        raise FileExistsError(f"{path.name} is already pinned; pass force=True to replace it")
    return partition.save(path)


def _load_pinned(path: Path, lm: LoadedModel, expert_size: int, method: str, seed: int) -> Partition | None:
    """The pinned partition at ``path`` if it exists and fits ``lm`` and the settings, else None."""
    if not path.exists():
        return None
    try:
        part = Partition.load(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable pinned file must not stop a run
        warnings.warn(f"pinned partition {path.name} is unreadable ({exc}); clustering instead", RuntimeWarning)
        return None
    if (part.model_fingerprint != lm.fingerprint or part.expert_size != expert_size or part.method != method
            or part.seed != seed or np.bincount(part.labels[0]).tolist() != [expert_size] * part.n_experts):
        warnings.warn(f"pinned partition {path.name} does not match its name; clustering instead", RuntimeWarning)
        return None
    part.model_name = lm.name
    part.info = {**part.info, "pinned": path.name}
    return part


def build_partition(
    lm: LoadedModel,
    expert_size: int = DEFAULT_EXPERT_SIZE,
    method: str = "kmeans",
    features: str = "gate",
    seed: int = 0,
    coactivation: np.ndarray | None = None,
    store: Store | None = None,
    progress: bool = False,
    pinned: bool = True,
) -> Partition:
    """Partition every FFN layer of ``lm`` into experts of ``expert_size`` neurons (cached).

    coactivation: [n_layers, n_neurons, n_neurons] counts, required for method='coactivation'.
    pinned: use the partition kept with the project for this model and these settings when there
    is one (:func:`pinned_path`), so that every machine uses the same experts; False clusters
    afresh (balanced k-means can reach another local optimum on another machine).
    """
    layers = ffn_layers(lm.model)
    n_neurons = layers[0].n_neurons
    _validate(n_neurons, expert_size, method, features)
    n_experts = n_neurons // expert_size
    if pinned and method != "coactivation":
        hit = _load_pinned(pinned_path(lm.fingerprint, expert_size, method, features, seed), lm, expert_size,
                           method, seed)
        if hit is not None:
            return hit
    if method == "coactivation":
        if coactivation is None:
            raise ValueError("method='coactivation' needs coactivation counts from babel_lib.experts.profile.neuron_coactivation")
        if coactivation.shape != (len(layers), n_neurons, n_neurons):
            raise PartitionMismatchError(
                f"coactivation has shape {coactivation.shape}, expected {(len(layers), n_neurons, n_neurons)}"
            )
    parts = {"model_fingerprint": lm.fingerprint, "expert_size": expert_size, "method": method,
             "algorithm": clustering.VERSION,
             "features": features if method == "kmeans" else None, "seed": seed,
             "coactivation": _digest(coactivation) if coactivation is not None and method == "coactivation" else None}

    def compute():
        from tqdm import tqdm

        labels = np.zeros((len(layers), n_neurons), dtype=np.int64)
        for layer in tqdm(layers, desc=f"partition ({method})", disable=not progress):
            if method == "kmeans":
                rows = layer.input_rows(features)
                rows = torch.nn.functional.normalize(rows, dim=1)
                labels[layer.index] = clustering.balanced_kmeans(rows, n_experts, seed=seed + layer.index)
            elif method == "random":
                labels[layer.index] = clustering.random_partition(n_neurons, n_experts, seed=seed + layer.index)
            else:
                labels[layer.index] = clustering.coactivation_partition(coactivation[layer.index], n_experts,
                                                                        seed=seed + layer.index)
        return {"labels": labels}, {}

    arrays, _ = (store or Store()).get_or_compute("partition", parts, compute)
    return Partition(
        labels=arrays["labels"],
        expert_size=expert_size,
        method=method,
        features=features if method == "kmeans" else "",
        seed=seed,
        model_name=lm.name,
        model_fingerprint=lm.fingerprint,
    )


@contextmanager
def moe_view(
    model: torch.nn.Module,
    partition: Partition,
    top_k_fraction: float | None = None,
    experts: dict[int, np.ndarray] | None = None,
    score: str = "abs",
) -> Iterator[None]:
    """Run the dense model as a mixture of experts: only chosen experts contribute to each FFN.

    Exactly one of:
    top_k_fraction: per token, the top ``active_count(fraction, n_experts)`` experts of each layer by
        the oracle score sum|a| (score='abs') or sum ReLU(a) ('relu');
    experts: {layer: expert ids kept}, a fixed set per layer (layers not named keep all).
    The other experts' neuron values are zeroed before the down projection, which equals an
    MoE that skips them (outputs only; compute is not saved: see babel_lib.interventions.prune for slicing).
    With every expert chosen the outputs equal the dense model's.
    """
    from babel_lib.core.hooks import experts_contiguous, ffn_pre_hooks

    if (top_k_fraction is None) == (experts is None):
        raise ValueError("give exactly one of top_k_fraction or experts")
    E, size = partition.n_experts, partition.expert_size
    if top_k_fraction is not None and not 0 < top_k_fraction <= 1:
        raise ValueError(f"top_k_fraction must be in (0, 1], got {top_k_fraction}")
    masks = {}
    if experts is not None:
        for layer, ids in experts.items():
            ids = np.asarray(ids, dtype=np.int64)
            if ids.size and (ids.min() < 0 or ids.max() >= E):
                raise ValueError(f"layer {layer}: expert ids must be in [0, {E}), got {ids.min()}..{ids.max()}")
            m = torch.zeros(E, dtype=torch.bool)
            m[torch.from_numpy(ids)] = True
            masks[int(layer)] = m
    k = None if top_k_fraction is None else active_count(top_k_fraction, E)

    def hook(layer: int, a: torch.Tensor):
        blocks = a.reshape(*a.shape[:-1], E, size)
        if k is not None:
            if k == E:
                return None
            v = blocks.abs() if score == "abs" else blocks.clamp_min(0)
            s = v.sum(-1, dtype=torch.float32)
            idx = s.topk(k, dim=-1).indices
            keep = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, idx, True)
        elif layer in masks:
            keep = masks[layer].to(a.device)
        else:
            return None
        return (blocks * keep.unsqueeze(-1).to(a.dtype)).reshape(a.shape)

    with experts_contiguous(model, partition), ffn_pre_hooks(model, hook):
        yield
