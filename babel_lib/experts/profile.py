"""Profile which experts each language activates, passage by passage.

Definitions (:mod:`babel_lib.core.definitions`): an expert's score on a token is the sum of |a| over
its neurons; it is activated when among the top ``k`` experts of its layer; frequency =
activated tokens / tokens.

Text (:func:`babel_lib.data.corpus.passages`): parallel passages, the same content in every language.
Each passage is tokenised alone (no special tokens) and cut into consecutive windows of at most
``max_length`` tokens, each starting with BOS; a passage's counts are the sum over its windows.
Counted tokens: every token but BOS and padding. An optional safety cap on tokens per language
(``max_tokens_per_language``) keeps the longest run of leading passages that fits every
language, so the languages still share the same passages; the profile says when it bit.

Views: one forward pass counts several partitions at once (e.g. k-means with three seeds) and
the partition-free neuron view (:meth:`babel_lib.experts.moefy.Partition.neurons`: every neuron its
own expert). Every view scores its experts the same way (float32 sum of |a| by a one-hot
product over the partition's labels; the neuron view takes |a| itself), so a view's counts do
not depend on which other views are counted alongside.

Per-passage counts are kept (int32 [passages, layers, experts] per language): every statistic
can be resampled over passages. Only counts leave the model's device, never activations.
Results are cached per (language, view): a killed run keeps every language it finished.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import torch

from babel_lib.core.adapters import ffn_layers
from babel_lib.core.cache import Store, cache_key
from babel_lib.core.definitions import Definitions, active_count  # noqa: F401 (re-exported)
from babel_lib.core.errors import InputError
from babel_lib.core.hooks import BatchRunner, check_batch_size, ffn_pre_hooks, run_all
from babel_lib.core.models import LoadedModel
from babel_lib.experts.moefy import Partition

#: Bump when a change here changes cached counts.
PROFILE_VERSION = "2"


# ---------------------------------------------------------------------------- text -> windows
@dataclass
class PassageWindows:
    """One language's passages as model input.

    input_ids: the windows (BOS first when the tokenizer has one, at most max_length tokens);
    passage: the passage index of each window; tokens / characters: int64 [P] counted tokens
    (all but BOS) and Unicode code points per passage.
    """

    input_ids: list[list[int]]
    passage: list[int]
    tokens: np.ndarray
    characters: np.ndarray
    max_length: int

    @property
    def n_passages(self) -> int:
        return int(self.tokens.shape[0])

    def key(self) -> str:
        """Content hash of the model input (for cache keys)."""
        return cache_key({"ids": self.input_ids, "passage": self.passage, "n": self.n_passages})[:32]

    def head(self, n_passages: int) -> "PassageWindows":
        """The first ``n_passages`` passages only."""
        keep = [i for i, p in enumerate(self.passage) if p < n_passages]
        return PassageWindows([self.input_ids[i] for i in keep], [self.passage[i] for i in keep],
                              self.tokens[:n_passages].copy(), self.characters[:n_passages].copy(), self.max_length)


def check_max_length(max_length) -> int:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2 (tokens per window, BOS included), got {max_length!r}")
    return max_length


def passage_windows(tokenizer, texts: list[str], max_length: int = 128) -> PassageWindows:
    """Tokenise passages (one list entry each) into windows (see the module docstring).

    An empty passage counts 0 tokens; a language whose passages are all empty is a ValueError."""
    check_max_length(max_length)
    bos = getattr(tokenizer, "bos_token_id", None)
    body = max_length - 1 if bos is not None else max_length
    head = [bos] if bos is not None else []
    windows, owner = [], []
    tokens = np.zeros(len(texts), dtype=np.int64)
    chars = np.zeros(len(texts), dtype=np.int64)
    for p, text in enumerate(texts):
        if not text or not text.strip():
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        chars[p] = len(text)
        tokens[p] = len(ids)
        for start in range(0, len(ids), body):
            windows.append(head + list(ids[start:start + body]))
            owner.append(p)
    if not windows or tokens.sum() == 0:
        raise InputError("no text to profile: every passage is empty")
    return PassageWindows(windows, owner, tokens, chars, max_length)


#: Control inputs profiled like a language: what experts do on input that is no language.
CONTROL_KINDS = ("shuffled", "random")


def control_windows(tokenizer, passages, kind: str, max_length: int = 128, seed: int = 0) -> PassageWindows:
    """A control "language" on the same passages (a :class:`babel_lib.data.corpus.Passages`): passage p is
    the p-th passage of one language, the languages taken in turn (language (p + seed) mod n), tokenised
    as usual and then

    - ``'shuffled'``: its tokens in a random order (word order and sentences gone, the tokens kept);
    - ``'random'``: as many token ids drawn uniformly from the ids that the passages of all the
      languages use (tokens the text knows, in no language's order or choice).

    Windows as in :func:`passage_windows` (BOS first); tokens and characters per passage are those
    of the passage it was made from."""
    if kind not in CONTROL_KINDS:
        raise InputError(f"unknown control input {kind!r}: choose one of {', '.join(CONTROL_KINDS)}")
    check_max_length(max_length)
    rng = np.random.default_rng(seed)
    langs = list(passages.languages)

    def encode(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"] if text and text.strip() else []

    chosen = [encode(passages.text[langs[(p + seed) % len(langs)]][p]) for p in range(len(passages.ids))]
    characters = np.array([len(passages.text[langs[(p + seed) % len(langs)]][p]) for p in range(len(passages.ids))],
                          dtype=np.int64)
    if kind == "random":
        pool = np.unique(np.concatenate([np.asarray(encode(t), dtype=np.int64) for lang in langs
                                         for t in passages.text[lang]] + [np.zeros(0, dtype=np.int64)]))
        if not len(pool):
            raise InputError("no text to draw control tokens from: every passage is empty")
        ids = [rng.choice(pool, size=len(c)).tolist() for c in chosen]
    else:
        ids = [rng.permutation(np.asarray(c, dtype=np.int64)).tolist() for c in chosen]
    bos = getattr(tokenizer, "bos_token_id", None)
    body = max_length - 1 if bos is not None else max_length
    head = [bos] if bos is not None else []
    windows, owner = [], []
    for p, seq in enumerate(ids):
        for start in range(0, len(seq), body):
            windows.append(head + [int(t) for t in seq[start:start + body]])
            owner.append(p)
    if not windows:
        raise InputError("no text to profile: every passage is empty")
    return PassageWindows(windows, owner, np.array([len(c) for c in chosen], dtype=np.int64), characters, max_length)


def common_passages(windows: dict[str, PassageWindows], max_tokens: int | None) -> int:
    """The number of leading passages every language can keep under a cap of ``max_tokens`` counted
    tokens (at least one); all passages when ``max_tokens`` is None."""
    n = min(w.n_passages for w in windows.values())
    if max_tokens is None:
        return n
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens_per_language must be a positive integer or None, got {max_tokens!r}")
    fits = [int(np.searchsorted(np.cumsum(w.tokens[:n]), max_tokens, side="right")) for w in windows.values()]
    return max(1, min(fits))


# ---------------------------------------------------------------------------- counting
def per_view(definitions, n_views: int) -> list[Definitions]:
    """``definitions`` as one :class:`Definitions` per view: one object is used for every view; a list
    or tuple must hold exactly one per view."""
    if isinstance(definitions, Definitions):
        return [definitions] * n_views
    out = list(definitions)
    if len(out) != n_views or not all(isinstance(d, Definitions) for d in out):
        raise ValueError(f"definitions: one Definitions, or one per view ({n_views}), got {definitions!r}")
    return out


class ExpertCounter:
    """Counts, for each view, how often each expert is activated, per passage (a context manager).

    Runs inside the forward passes of ``runner`` (a :class:`BatchRunner` over windows whose
    passage indices are ``window_passage``). ``counts[v]`` is int64 [layers, passages, experts]
    on the model's device. ``definitions``: one :class:`Definitions` for every view, or one per view
    (e.g. several top-k fractions counted in the same forward passes). Nothing is modified in the model.
    """

    def __init__(self, lm: LoadedModel, views: list[Partition], definitions, runner: BatchRunner,
                 window_passage: list[int], n_passages: int):
        self.views = list(views)
        self.definitions = per_view(definitions, len(self.views))
        self.runner = runner
        device = lm.device
        self.n_layers = len(ffn_layers(lm.model))
        for view in self.views:
            if view.n_layers != self.n_layers:
                raise ValueError("partition does not match the model's layer count")
        self.passage_of = torch.tensor(window_passage, dtype=torch.long, device=device)
        self.n_passages = int(n_passages)
        self.counts = [torch.zeros(self.n_layers, self.n_passages, v.n_experts, dtype=torch.int64, device=device)
                       for v in self.views]
        self.k = [d.k(v.n_experts) for d, v in zip(self.definitions, self.views)]
        self._onehot = [None if v.expert_size == 1 else
                        [torch.nn.functional.one_hot(torch.from_numpy(v.labels[l]).to(device), v.n_experts)
                         .to(torch.float32) for l in range(self.n_layers)] for v in self.views]
        self._ones = torch.ones(1 << 16, dtype=torch.int64, device=device)
        self._hooks = ffn_pre_hooks(lm.model, self._hook)

    def _add(self, view: int, layer: int, flat: torch.Tensor) -> None:
        if self._ones.numel() < flat.numel():
            self._ones = torch.ones(flat.numel(), dtype=torch.int64, device=self._ones.device)
        self.counts[view][layer].view(-1).index_add_(0, flat, self._ones[:flat.numel()])

    def _hook(self, layer: int, a: torch.Tensor) -> None:
        batch = self.runner.current
        raw = a.reshape(-1, a.shape[-1]).index_select(0, batch.rows)
        scored = {}  # one score tensor per score rule in use
        passage = self.passage_of[batch.row_sequence]
        for v, view in enumerate(self.views):
            d = self.definitions[v]
            if d.score not in scored:
                scored[d.score] = (raw.abs() if d.score == "abs" else raw.clamp_min(0)).float()
            x = scored[d.score]
            E = view.n_experts
            s = x if self._onehot[v] is None else x @ self._onehot[v][layer]
            if d.activation == "topk":
                idx = s.topk(self.k[v], dim=1).indices
                self._add(v, layer, (passage[:, None] * E + idx).reshape(-1))
            else:
                rows, experts = (s / view.expert_size > d.threshold).nonzero(as_tuple=True)
                self._add(v, layer, passage[rows] * E + experts)

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        return self._hooks.__exit__(*exc)

    def result(self) -> list[np.ndarray]:
        """Per view: int32 [passages, layers, experts] on the CPU."""
        return [c.permute(1, 0, 2).cpu().numpy().astype(np.int32) for c in self.counts]


def count_windows(lm: LoadedModel, views: list[Partition], windows: PassageWindows, definitions,
                  batch_size: int = 8, progress=None, subset: list[int] | None = None) -> list[np.ndarray]:
    """Counts of every view over ``windows`` (or the windows at ``subset``): int32 [P, L, E] each."""
    ids = windows.input_ids if subset is None else [windows.input_ids[i] for i in subset]
    owner = windows.passage if subset is None else [windows.passage[i] for i in subset]
    runner = BatchRunner(lm, ids, batch_size)
    counter = ExpertCounter(lm, views, definitions, runner, owner, windows.n_passages)
    if ids:
        run_all(runner, [counter], progress)
    return counter.result()


# ---------------------------------------------------------------------------- the profile
@dataclass
class Profile:
    """Expert activation counts of several languages on the same passages, under one model, one view
    (a partition, or the neuron view) and one set of definitions.

    passage_counts: int32 [n_languages, n_passages, n_layers, n_experts];
    passage_tokens, passage_characters: int64 [n_languages, n_passages] (counted tokens, code points).
    ``counts`` / ``tokens`` / ``characters`` sum over passages.
    """

    languages: list[str]
    passage_ids: list[str]
    passage_counts: np.ndarray
    passage_tokens: np.ndarray
    passage_characters: np.ndarray
    model_name: str
    model_fingerprint: str
    partition_key: str
    expert_size: int
    view: str
    definitions: dict
    corpus: dict
    dtype: str
    extra: dict = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.passage_counts.shape[2])

    @property
    def n_experts(self) -> int:
        return int(self.passage_counts.shape[3])

    @property
    def n_passages(self) -> int:
        return int(self.passage_counts.shape[1])

    @property
    def counts(self) -> np.ndarray:
        """int64 [n, L, E]: activations summed over passages."""
        return self.passage_counts.sum(axis=1, dtype=np.int64)

    @property
    def tokens(self) -> np.ndarray:
        """int64 [n]: counted tokens per language."""
        return self.passage_tokens.sum(axis=1)

    @property
    def characters(self) -> np.ndarray:
        return self.passage_characters.sum(axis=1)

    def frequencies(self) -> np.ndarray:
        """f[lang, layer, expert] = activated tokens / tokens, float64 in [0, 1]."""
        return self.counts / self.tokens[:, None, None]

    def k(self) -> int:
        """Experts activated per token (top-k definitions)."""
        return active_count(self.definitions["top_k_fraction"], self.n_experts)

    def select(self, languages: list[str]) -> "Profile":
        """The same profile restricted to ``languages`` (in that order)."""
        idx = [self.languages.index(l) for l in languages]
        return self._replace(languages=list(languages), passage_counts=self.passage_counts[idx],
                             passage_tokens=self.passage_tokens[idx], passage_characters=self.passage_characters[idx])

    def select_passages(self, index) -> "Profile":
        """The same profile on a subset of passages (the same for every language)."""
        index = np.asarray(index, dtype=np.int64)
        return self._replace(passage_ids=[self.passage_ids[i] for i in index],
                             passage_counts=self.passage_counts[:, index], passage_tokens=self.passage_tokens[:, index],
                             passage_characters=self.passage_characters[:, index])

    def summed(self) -> "Profile":
        """The profile with its passages summed into one (saves memory for the neuron view)."""
        return self._replace(passage_ids=["all"], passage_counts=self.counts[:, None].astype(np.int32),
                             passage_tokens=self.tokens[:, None], passage_characters=self.characters[:, None],
                             extra={**self.extra, "passages_summed": self.n_passages})

    def _replace(self, **changes) -> "Profile":
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(changes)
        values["extra"] = dict(values["extra"])
        return Profile(**values)

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

    def text_table(self) -> pd.DataFrame:
        """Per language: passages, characters, tokens, tokens_per_character (tokenisation granularity)."""
        per = self.extra.get("passages_per_language")
        n_pass = [per[l] for l in self.languages] if per else int(self.extra.get("passages_summed", self.n_passages))
        return pd.DataFrame({"language": self.languages, "passages": n_pass, "characters": self.characters,
                             "tokens": self.tokens, "tokens_per_character": self.tokens / self.characters})

    def describe(self) -> str:
        """One sentence naming model, data, passages, token counts and definitions."""
        c = self.corpus
        tpc = self.tokens / np.maximum(self.characters, 1)
        cap = c.get("cap")
        capped = (f"; the cap of {cap['max_tokens_per_language']:,} tokens per language kept {cap['kept']} of "
                  f"{cap['available']} passages" if cap and cap["kept"] < cap["available"] else "")
        view = "every neuron its own expert (partition-free view)" if self.expert_size == 1 else \
            f"experts of {self.expert_size} neurons ({self.view})"
        per = self.extra.get("passages_per_language")
        where = (f"each on its own {min(per.values())}-{max(per.values())} passages of the {c.get('name', 'UDHR')} "
                 f"{c.get('split')} split" if per else
                 f"on the same {int(self.extra.get('passages_summed', self.n_passages))} passages of the "
                 f"{c.get('name', 'UDHR')} {c.get('split')} split{capped}")
        return (f"{self.model_name} ({self.dtype}); {len(self.languages)} languages {where}: {int(self.tokens.min()):,}-{int(self.tokens.max()):,} tokens per "
                f"language ({tpc.min():.2f}-{tpc.max():.2f} tokens per character), windows of at most "
                f"{c.get('max_length')} tokens; {view}; {Definitions(**self.definitions).describe()}")


def joined(profiles: list[Profile], corpus: dict | None = None) -> Profile:
    """Profiles of different languages, each counted on its own text, in one :class:`Profile`.

    Each is summed over its passages first (its text need not be the others'), so the result has
    one passage, ``"all"``; languages keep the order given. All must share the model, view and
    definitions. ``corpus``: the joined profile's corpus description (default: the first one's).
    """
    if not profiles:
        raise ValueError("no profile to join")
    first = profiles[0]
    for p in profiles[1:]:
        for name in ("model_fingerprint", "partition_key", "definitions", "dtype"):
            if getattr(p, name) != getattr(first, name):
                raise ValueError(f"profiles to join must share {name}: {getattr(first, name)!r} vs {getattr(p, name)!r}")
    languages = [l for p in profiles for l in p.languages]
    if len(set(languages)) != len(languages):
        raise ValueError(f"a language appears in two profiles: {languages}")
    summed = [p.summed() for p in profiles]
    return first._replace(languages=languages, passage_ids=["all"],
                          passage_counts=np.concatenate([p.passage_counts for p in summed]),
                          passage_tokens=np.concatenate([p.passage_tokens for p in summed]),
                          passage_characters=np.concatenate([p.passage_characters for p in summed]),
                          corpus=dict(corpus or first.corpus),
                          extra={"passages_per_language": {l: int(p.n_passages) for p in profiles for l in p.languages}})


def _parts(lm: LoadedModel, view: Partition, definitions: Definitions, lang: str, windows: PassageWindows,
           batch_size: int) -> dict:
    return {"version": PROFILE_VERSION, "model_fingerprint": lm.fingerprint, "dtype": str(lm.dtype),
            "view": view.key, "definitions": asdict(definitions), "language": lang, "max_length": windows.max_length,
            "batch_size": batch_size, "text": windows.key()}


def profile_passages(
    lm: LoadedModel,
    partitions: Partition | list[Partition],
    passages,
    definitions: Definitions | list[Definitions] = Definitions(),
    max_length: int = 128,
    batch_size: int = 8,
    max_tokens_per_language: int | None = None,
    store: Store | None = None,
    progress: bool = True,
    distributed: bool = False,
    allow_other_model: bool = False,
    keep_passages: bool | list[bool] = True,
) -> Profile | list[Profile]:
    """Count expert activations of every language of ``passages`` (a :class:`babel_lib.data.corpus.Passages`).

    partitions: one partition (returns one :class:`Profile`) or several views counted in the
    same forward passes (returns a list, same order). definitions: one for every view, or one per
    view (:func:`per_view`; e.g. other top-k fractions counted in the same forward passes). keep_passages: False (or one flag per view)
    sums the passages of that view's profile (the cache keeps them), e.g. for the neuron view.
    distributed: data-parallel over the processes of an ``accelerate launch`` (or any
    torch.distributed group): each process counts every N-th window and the counts are summed
    by a reduce; with ``batch_size=1`` N processes give exactly the single-process counts. Only
    the main process writes the cache. allow_other_model: use partitions built for another model
    of the same FFN shape (e.g. a base model's partition on its fine-tuned version), deliberately.
    """
    from tqdm import tqdm

    single = isinstance(partitions, Partition)
    views = [partitions] if single else list(partitions)
    if not views:
        raise ValueError("no partition given")
    for view in views:
        view.check_fits(lm, allow_other_model=allow_other_model)
    check_batch_size(batch_size)
    flags = keep_passages if isinstance(keep_passages, (list, tuple)) else [keep_passages] * len(views)
    defs = per_view(definitions, len(views))
    store = store or Store()
    windows = {lang: passage_windows(lm.tokenizer, passages.text[lang], max_length) for lang in passages.languages}
    available = min(w.n_passages for w in windows.values())
    kept = common_passages(windows, max_tokens_per_language)
    if kept < available:
        windows = {lang: w.head(kept) for lang, w in windows.items()}
    todo = {}
    results: dict[tuple[str, int], dict] = {}
    for lang, win in windows.items():
        for v, view in enumerate(views):
            hit = store.load("counts", _parts(lm, view, defs[v], lang, win, batch_size))
            if hit is not None and hit[0]["counts"].shape == (win.n_passages, view.n_layers, view.n_experts):
                results[(lang, v)] = hit[0]
            else:
                todo.setdefault(lang, []).append(v)
    bar = tqdm(total=int(sum(windows[l].tokens.sum() for l in todo)), unit="tok", desc="profiling",
               disable=not progress)
    for lang, missing in todo.items():
        win = windows[lang]
        mine, mine_defs = [views[v] for v in missing], [defs[v] for v in missing]
        if distributed:
            counts = _count_distributed(lm, mine, win, mine_defs, batch_size)
        else:
            counts = count_windows(lm, mine, win, mine_defs, batch_size, bar)
        for v, c in zip(missing, counts):
            arrays = {"counts": c, "tokens": win.tokens, "characters": win.characters}
            if not distributed or _is_main_process():
                store.save("counts", _parts(lm, views[v], defs[v], lang, win, batch_size), arrays,
                           {"language": lang, "view": views[v].method})
            results[(lang, v)] = arrays
        bar.set_postfix_str(lang)
    bar.close()
    corpus_info = {"name": getattr(passages, "corpus", "udhr").upper() if getattr(passages, "corpus", "udhr") == "udhr"
                   else "Bible", "corpus": getattr(passages, "corpus", "udhr"), "split": passages.split,
                   "max_length": max_length, "batch_size": batch_size,
                   "cap": {"max_tokens_per_language": max_tokens_per_language, "kept": kept, "available": available}}
    out = []
    for v, view in enumerate(views):
        prof = Profile(
            languages=list(passages.languages),
            passage_ids=list(passages.ids[:kept]),
            passage_counts=np.stack([results[(lang, v)]["counts"].astype(np.int32) for lang in passages.languages]),
            passage_tokens=np.stack([results[(lang, v)]["tokens"].astype(np.int64) for lang in passages.languages]),
            passage_characters=np.stack([results[(lang, v)]["characters"].astype(np.int64)
                                         for lang in passages.languages]),
            model_name=lm.name, model_fingerprint=lm.fingerprint, partition_key=view.key,
            expert_size=view.expert_size, view=view.describe_short(), definitions=asdict(defs[v]),
            corpus=corpus_info, dtype=str(lm.dtype).replace("torch.", ""))
        out.append(prof if flags[v] else prof.summed())
    return out[0] if single else out


def profile_control(lm: LoadedModel, partitions: Partition | list[Partition], passages, kind: str,
                    definitions: Definitions | list[Definitions] = Definitions(), max_length: int = 128,
                    batch_size: int = 8, seed: int = 0, store: Store | None = None) -> Profile | list[Profile]:
    """Counts of a control input (:func:`control_windows`) under every view, like one more language
    named ``control:<kind>`` on the same passages: one :class:`Profile` per view (a list when
    ``partitions`` is a list), cached like a language's counts. ``definitions``: as in
    :func:`profile_passages`."""
    single = isinstance(partitions, Partition)
    views = [partitions] if single else list(partitions)
    defs = per_view(definitions, len(views))
    for view in views:
        view.check_fits(lm)
    check_batch_size(batch_size)
    store = store or Store()
    name = f"control:{kind}"
    windows = control_windows(lm.tokenizer, passages, kind, max_length, seed)
    key = f"{name}:{seed}"
    counts, missing = {}, []
    for v, view in enumerate(views):
        hit = store.load("counts", _parts(lm, view, defs[v], key, windows, batch_size))
        if hit is not None and hit[0]["counts"].shape == (windows.n_passages, view.n_layers, view.n_experts):
            counts[v] = hit[0]["counts"]
        else:
            missing.append(v)
    if missing:
        for v, c in zip(missing, count_windows(lm, [views[v] for v in missing], windows, [defs[v] for v in missing],
                                               batch_size)):
            store.save("counts", _parts(lm, views[v], defs[v], key, windows, batch_size),
                       {"counts": c, "tokens": windows.tokens, "characters": windows.characters},
                       {"language": key, "view": views[v].method})
            counts[v] = c
    out = [Profile(languages=[name], passage_ids=list(passages.ids),
                   passage_counts=counts[v][None].astype(np.int32), passage_tokens=windows.tokens[None].copy(),
                   passage_characters=windows.characters[None].copy(), model_name=lm.name,
                   model_fingerprint=lm.fingerprint, partition_key=view.key, expert_size=view.expert_size,
                   view=view.describe_short(), definitions=asdict(defs[v]),
                   corpus={"name": f"control ({kind})", "corpus": getattr(passages, "corpus", "udhr"),
                           "split": passages.split, "max_length": max_length, "batch_size": batch_size,
                           "seed": seed},
                   dtype=str(lm.dtype).replace("torch.", "")) for v, view in enumerate(views)]
    return out[0] if single else out


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def _count_distributed(lm, views, windows: PassageWindows, definitions, batch_size) -> list[np.ndarray]:
    """One language's counts across the processes of the current accelerate state (summed by reduce)."""
    from accelerate import PartialState
    from accelerate.utils import reduce

    state = PartialState()
    mine = list(range(state.process_index, len(windows.input_ids), state.num_processes))
    local = count_windows(lm, views, windows, definitions, batch_size, subset=mine)
    out = []
    for c in local:
        total = reduce(torch.as_tensor(c, dtype=torch.float64, device=lm.device), reduction="sum")
        out.append(total.cpu().numpy().round().astype(np.int32))
    state.wait_for_everyone()
    return out


# ---------------------------------------------------------------------------- neuron co-activation
def pooled_windows(tokenizer, passages, max_length: int = 128) -> tuple[list[list[int]], list[int]]:
    """Every language's windows of ``passages``, concatenated (text pooled over languages), and for
    each window its unit ``language index * passages + passage`` (for a bootstrap over units)."""
    seqs, units = [], []
    n = len(passages.ids)
    for i, lang in enumerate(passages.languages):
        win = passage_windows(tokenizer, passages.text[lang], max_length)
        seqs += win.input_ids
        units += [i * n + p for p in win.passage]
    return seqs, units


def neuron_coactivation(lm: LoadedModel, seqs: list[list[int]], top_k_fraction: float = 0.2,
                        batch_size: int = 8) -> tuple[np.ndarray, int]:
    """How often two neurons of a layer are active on the same token.

    A neuron is active on a token when its |a| is among the top ``top_k_fraction`` of its
    layer's neurons for that token (our choice: GeGLU/SwiGLU values are signed, so MoEfication's
    ``a > 0`` does not apply). Returns (counts float32 [layers, n_neurons, n_neurons], tokens);
    the diagonal holds each neuron's own activation count. Padding and BOS excluded.
    """
    layers = ffn_layers(lm.model)
    n = layers[0].n_neurons
    k = active_count(top_k_fraction, n)
    co = torch.zeros(len(layers), n, n, dtype=torch.float32, device=lm.device)
    runner = BatchRunner(lm, seqs, batch_size)

    def hook(layer, a):
        flat = a.reshape(-1, n).index_select(0, runner.current.rows)
        idx = flat.abs().float().topk(k, dim=1).indices
        act = torch.zeros(flat.shape, dtype=torch.float32, device=flat.device).scatter_(1, idx, 1.0)
        co[layer] += act.T @ act

    tokens = run_all(runner, [ffn_pre_hooks(lm.model, hook)])
    return co.cpu().numpy(), tokens
