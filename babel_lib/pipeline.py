"""One call from chapter parameters to a profiled model: load, partition, profile (all cached).

Notebooks call :func:`study` with their papermill parameters, so every chapter builds
the same model, partition and counts the same way, and reruns hit the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import corpus
from .models import LoadedModel, load_model
from .moefy import Partition, build_partition
from .profile import Definitions, Profile, profile_languages

_LOADED: dict[tuple, LoadedModel] = {}


@dataclass
class Study:
    """A model, its expert partition and the languages' activation profile."""

    lm: LoadedModel
    partition: Partition
    profile: Profile

    def describe(self) -> str:
        """Model, data, sequence length, token counts and our choices, in one paragraph."""
        p = self.partition
        return (f"**Model** {self.lm.description} (`{self.lm.name}`, fingerprint `{self.lm.fingerprint}`). "
                f"**Experts** {p.n_experts} per layer x {p.n_layers} layers, {p.expert_size} neurons each, built by "
                f"{p.method}{' on ' + p.features + ' rows' if p.features else ''} (seed {p.seed}). "
                f"**Profile** {self.profile.describe()}.")


def get_model(model: str, dtype: str = "bfloat16", device: str = "auto", device_map=None) -> LoadedModel:
    """Load once per process (notebooks that compare several settings reuse the same weights).
    ``device_map`` (e.g. 'auto') shards a big model over the available devices via accelerate."""
    key = (model, dtype, device, str(device_map))
    if key not in _LOADED:
        _LOADED[key] = load_model(model, dtype=dtype, device=device, device_map=device_map)
    return _LOADED[key]


def study(
    model: str = "gemma-3-270m",
    languages="paper",
    expert_size: int = 32,
    top_k_fraction: float = 0.2,
    max_tokens_per_language: int = 2048,
    max_length: int = 128,
    batch_size: int = 8,
    seed: int = 0,
    dtype: str = "bfloat16",
    device: str = "auto",
    device_map=None,
    split: str = "calibration",
    method: str = "kmeans",
    features: str = "gate",
    score: str = "abs",
    progress: bool = True,
) -> Study:
    """Load ``model``, build its partition and profile ``languages`` (see babel_lib.corpus.resolve_languages)."""
    progress = progress and not os.environ.get("TQDM_DISABLE")  # the book runner sets it: no bars in pages
    lm = get_model(model, dtype, device, device_map)
    partition = build_partition(lm, expert_size=expert_size, method=method, features=features, seed=seed,
                                progress=progress)
    prof = profile_languages(lm, partition, corpus.resolve_languages(languages), split=split,
                             max_tokens_per_language=max_tokens_per_language, max_length=max_length,
                             batch_size=batch_size, definitions=Definitions(score=score, top_k_fraction=top_k_fraction),
                             progress=progress)
    return Study(lm, partition, prof)


def pooled_sequences(lm: LoadedModel, languages, split: str = "calibration", max_tokens_per_language: int = 512,
                     max_length: int = 128) -> list[list[int]]:
    """Token sequences of several languages' UDHR text, ``max_tokens_per_language`` each, concatenated."""
    from .profile import build_sequences

    seqs = []
    for lang in corpus.resolve_languages(languages):
        seqs += build_sequences(lm.tokenizer, corpus.texts(lang, split), max_tokens_per_language, max_length).input_ids
    return seqs
