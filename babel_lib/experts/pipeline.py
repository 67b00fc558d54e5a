"""One call from chapter parameters to a profiled model: load, partition, profile (all cached).

Notebooks call :func:`study` with their papermill parameters, so every chapter builds the same
model, partitions and counts the same way, and reruns hit the cache. A study profiles the
languages on the same parallel passages under the main partition (k-means, the first seed) and,
for robustness, under further partition seeds and the partition-free neuron view, all in the
same forward passes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pandas as pd

from babel_lib.core.definitions import Definitions
from babel_lib.core.models import LoadedModel, load_model
from babel_lib.data import corpus
from babel_lib.experts.moefy import Partition, build_partition
from babel_lib.experts.profile import Profile, profile_passages

#: How a chapter shows :meth:`Study.text_table`: ``plots.table(study.text_table(), "text", **TEXT_TABLE)``
#: (headers, formats and caption; a chapter may override the caption).
TEXT_TABLE = {"columns": {"name": "Language", "family": "Family", "script": "Script", "passages": "Passages",
                          "characters": "Characters", "tokens": "Tokens", "tokens_per_character": "Tokens per character"},
              "formats": {"tokens_per_character": "{:.2f}"}, "caption": "Text profiled per language"}

_LOADED: dict[tuple, LoadedModel] = {}


def get_model(model: str, dtype: str = "bfloat16", device: str = "auto", device_map=None) -> LoadedModel:
    """Load once per process (notebooks that compare several settings reuse the same weights).
    ``device_map`` (e.g. 'auto') shards a big model over the available devices via accelerate."""
    key = (model, dtype, device, str(device_map))
    if key not in _LOADED:
        _LOADED[key] = load_model(model, dtype=dtype, device=device, device_map=device_map)
    return _LOADED[key]


def release_model(model: str) -> None:
    """Forget :func:`get_model`'s loaded copies of ``model`` (every dtype and device); its weights are freed
    once nothing else holds them."""
    for key in [k for k in _LOADED if k[0] == model]:
        del _LOADED[key]


@dataclass
class Study:
    """A model, its partitions, the passages and the activation profiles.

    profiles: one per view, in order: the main partition first, then the other seeds, then the
    neuron view when asked for. ``profile`` is the main one; ``views`` names them all.
    """

    lm: LoadedModel
    passages: corpus.Passages
    partitions: list[Partition]
    profiles: list[Profile]
    definitions: Definitions
    names: list[str] = field(default_factory=list)

    @property
    def partition(self) -> Partition:
        return self.partitions[0]

    @property
    def profile(self) -> Profile:
        return self.profiles[0]

    @property
    def views(self) -> dict[str, Profile]:
        """{'k-means seed 0': profile, 'k-means seed 1': ..., 'neurons': ...}, main view first."""
        return dict(zip(self.names, self.profiles))

    @property
    def languages(self) -> list[str]:
        return self.profile.languages

    def describe(self) -> str:
        """Model, data, passages, token counts and our choices, in one paragraph (Markdown)."""
        p = self.partition
        others = [n for n in self.names[1:]]
        robust = f" Robustness views, counted on the same tokens: {', '.join(others)}." if others else ""
        return (f"**Model** {self.lm.description} (`{self.lm.name}`, fingerprint `{self.lm.fingerprint}`). "
                f"**Experts** {p.n_experts} per layer x {p.n_layers} layers, {p.expert_size} neurons each, built by "
                f"{p.describe_short()}{' (pinned: the same experts on every machine)' if p.info.get('pinned') else ''}. "
                f"**Profile** {self.profile.describe()}.{robust}")

    def controls(self, kinds=None, seed: int = 0, batch_size: int = 8) -> dict[str, dict[str, Profile]]:
        """Control inputs (:data:`babel_lib.experts.profile.CONTROL_KINDS`: shuffled tokens, random tokens) on
        the profiled passages, counted under every view: {kind: {view name: Profile}} (one language
        each, named ``control:<kind>``; cached like a language)."""
        views = list(self.partitions) + ([Partition.neurons(self.lm)] if "neurons" in self.names else [])
        max_length = int(self.profile.corpus.get("max_length", 128))
        got = control_profiles(self.lm, views, self.definitions, self.profiled_passages(), max_length, kinds=kinds,
                               seed=seed, batch_size=batch_size)
        return {kind: dict(zip(self.names, profiles)) for kind, profiles in got.items()}

    def profiled_passages(self) -> corpus.Passages:
        """The passages the profile counted (a token budget may keep fewer than were loaded)."""
        return profiled_passages(self.passages, self.profile)

    def views_without(self, languages) -> dict[str, Profile]:
        """:attr:`views` with ``languages`` (keys of this study) left out, for a sensitivity analysis."""
        drop = list(languages)
        unknown = [l for l in drop if l not in self.languages]
        if unknown:
            raise ValueError(f"not languages of this study: {unknown}")
        kept = [l for l in self.languages if l not in drop]
        if len(kept) < 3:
            raise ValueError(f"leaving out {len(drop)} of {len(self.languages)} languages leaves fewer than 3")
        return {name: p.select(kept) for name, p in self.views.items()}

    def byte_fallback_table(self, share: float | None = None) -> pd.DataFrame:
        """Per language: name, script, tokens of the profiled passages, raw-byte tokens among them, their
        share, and ``byte_fallback`` (the share is above ``share``, default
        :data:`babel_lib.core.definitions.BYTE_FALLBACK_SHARE`): languages whose script the tokenizer covers
        mainly by byte fallback, so that their "experts" may be those of bytes rather than of a language."""
        from babel_lib.core.definitions import BYTE_FALLBACK_SHARE, byte_token_counts

        share = BYTE_FALLBACK_SHARE if share is None else float(share)
        if not 0 < share < 1:
            raise ValueError(f"share must lie in (0, 1), got {share!r}")
        text = self.profiled_passages()
        labels = corpus.language_labels(self.languages)
        scripts = corpus.language_table()["script"]
        rows = []
        for lang in self.languages:
            byte, total = byte_token_counts(self.lm.tokenizer, text.text[lang])
            rows.append({"language": lang, "name": labels[lang], "script": scripts.get(lang, ""), "tokens": total,
                         "byte_tokens": byte, "byte_share": byte / max(total, 1)})
        table = pd.DataFrame(rows)
        table["byte_fallback"] = table["byte_share"] > share
        return table

    def text_table(self) -> pd.DataFrame:
        """Per language: name, script, family, passages, characters, tokens, tokens per character."""
        table = self.profile.text_table()
        meta = corpus.language_table()
        labels = corpus.language_labels(self.languages)
        table.insert(1, "name", table["language"].map(labels))
        table.insert(2, "script", table["language"].map(meta["script"]))
        table.insert(3, "family", table["language"].map(meta["family"]))
        return table


def study(
    model: str = "gemma-3-270m",
    languages="paper",
    corpus_name: str = "udhr",
    split: str = "calibration",
    max_passages: int | None = None,
    expert_size: int = 32,
    top_k_fraction: float = 0.2,
    seeds=(0,),
    neurons: bool = False,
    max_length: int = 128,
    batch_size: int = 8,
    max_tokens_per_language: int | None = None,
    dtype: str = "bfloat16",
    device: str = "auto",
    device_map=None,
    method: str = "kmeans",
    features: str = "gate",
    progress: bool = True,
) -> Study:
    """Load ``model``, build its partitions (one per seed) and profile ``languages`` on their parallel
    passages of ``corpus_name`` (see :func:`babel_lib.data.corpus.passages`; ``max_passages`` is the
    budget, in passages). ``neurons`` adds the partition-free neuron view.
    The languages are resolved before the model is loaded, so a bad name fails at once."""
    progress = progress and not os.environ.get("TQDM_DISABLE")  # the book runner sets it
    seeds = [int(s) for s in (seeds if isinstance(seeds, (list, tuple)) else [seeds])]
    if not seeds:
        raise ValueError("seeds must name at least one partition seed")
    text = corpus.passages(languages, corpus=corpus_name, split=split, max_passages=max_passages)
    definitions = Definitions(top_k_fraction=top_k_fraction)
    lm = get_model(model, dtype, device, device_map)
    partitions = [build_partition(lm, expert_size=expert_size, method=method, features=features, seed=s,
                                  progress=progress) for s in seeds]
    views = list(partitions) + ([Partition.neurons(lm)] if neurons else [])
    names = [f"{partitions[0].describe_short().split(',')[0]}, seed {s}" for s in seeds] + (["neurons"] if neurons else [])
    profiles = profile_passages(lm, views, text, definitions=definitions, max_length=max_length,
                                batch_size=batch_size, max_tokens_per_language=max_tokens_per_language,
                                progress=progress)
    return Study(lm, text, partitions, profiles, definitions, names)


def profiled_passages(passages: corpus.Passages, profile: Profile) -> corpus.Passages:
    """The passages of ``passages`` that ``profile`` counted, in its order (a token budget may keep fewer)."""
    return passages.select([passages.ids.index(i) for i in profile.passage_ids])


def control_profiles(lm: LoadedModel, views: list[Partition], definitions, passages: corpus.Passages,
                     max_length: int, kinds=None, seed: int = 0, batch_size: int = 8) -> dict[str, list[Profile]]:
    """Control inputs (:data:`babel_lib.experts.profile.CONTROL_KINDS`: shuffled tokens, random tokens, or ``kinds``)
    made from ``passages`` and counted under every view, each with its definitions (one or one a view):
    {kind: [Profile per view]} (one language each, named ``control:<kind>``; cached like a language)."""
    from babel_lib.experts.profile import CONTROL_KINDS, profile_control

    return {kind: profile_control(lm, views, passages, kind, definitions, max_length, batch_size, seed)
            for kind in (CONTROL_KINDS if kinds is None else kinds)}
