"""Perplexity and bits per character, with a protocol that says what it measured.

Protocol (every number it returns names these; each is a parameter):

- **Text**: per language, held-out passages. Either an :class:`EvalSet` (:func:`evaluation_set`:
  for each language the first corpus of ``prefer`` that has it, the Bible's evaluation books or
  the UDHR evaluation split, a seeded random sample of aligned passages shared by the languages of
  that corpus, just large enough for ``min_tokens`` scored tokens in every one of them), or any
  ``texts_fn(lang, split)``, by default the paragraphs of one UDHR split (``'evaluation'``,
  disjoint from the ``'calibration'`` split that profiles and ranks experts; see
  :func:`babel_lib.data.corpus.evaluation_rule`), in document order, whole paragraphs only, until
  ``max_tokens`` scored tokens are reached (``None``: the whole split). Whole passages keep the
  character count exact.
- **Windows**: each passage is tokenised alone (no special tokens) and cut into windows of
  at most ``max_length`` tokens, each starting with BOS. With ``stride=None`` windows do not
  overlap: a passage of n tokens gives ceil(n / (max_length - 1)) windows and every token
  is predicted from the tokens of its own window only. With a ``stride`` s < max_length - 1,
  a new window starts every s tokens and scores only the tokens no earlier window scored
  (more left context, more compute). Passages never share a window.
- **Loss**: the summed next-token negative log-likelihood (natural log) over every scored
  token: all tokens but BOS and padding, so each passage's first token is predicted from
  BOS alone. (A tokenizer without BOS cannot predict a window's first token: it is not scored.)
- **Perplexity** = exp(total NLL / scored tokens). **Bits per character** = total NLL / ln 2 /
  characters of the evaluated text (Unicode code points): comparable across tokenizers and
  scripts, unlike perplexity. Bits per UTF-8 byte are reported too.
- **Model**: the full model: backbone, then the LM head applied only at positions whose next
  token is scored (final-logit soft-capping applied where the config has it; Gemma 2). By
  default the head and the log-softmax run in float32 (``head_dtype``) whatever the backbone
  dtype: exact for fp32 models, and on CPUs without bf16 matrix units much faster than a bf16
  head; pass ``head_dtype=None`` to use the model's own dtype.
- **Paired comparisons** (:func:`paired_comparison`): two conditions evaluated on the same
  windows are compared passage by passage (:func:`passage_losses`): the perplexity ratio with a
  paired bootstrap interval over passages (:func:`babel_lib.stats.paired_ratio_interval`) and
  the decision the interval supports (:func:`babel_lib.stats.ratio_decision`).

A :class:`Condition` names an intervention (a masked expert set, a router) and opens it as a
context around the forwards, so the dense baseline and every variant are evaluated by the same
code in the same process. Results are cached per (model fingerprint, condition spec, language,
text, protocol) in the :class:`~babel_lib.core.cache.Store`; the cached arrays hold each window's
NLL, token count and passage, for paired comparisons.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, ContextManager

import numpy as np
import pandas as pd
import torch

from babel_lib.core.adapters import backbone
from babel_lib.core.cache import Store, cache_key
from babel_lib.core.hooks import pad_batch, pad_id
from babel_lib.core.models import LoadedModel, resolve_dtype

#: Bump when a change here changes cached perplexities (or what the cached arrays hold).
EVALUATE_VERSION = "2"


# ------------------------------------------------------------------------------ evaluation text
#: Corpora an evaluation set draws from, in the default order of preference.
EVAL_CORPORA = ("bible", "udhr")


@dataclass
class EvalSet:
    """Held-out evaluation text of several languages (made by :func:`evaluation_set`).

    languages: the keys, in order. texts / ids: {lang: passage texts / passage ids}, aligned.
    source: {lang: corpus} ('bible' or 'udhr'); text_key: {lang: the corpus's key of the text
    used} (differs from the language key only under an alias). tokens / characters: {lang: tokens
    (under the tokenizer it was made with) / Unicode code points of its passages}; with the
    default protocol (windows starting with BOS, no overlap) every token is scored once.
    available: {corpus: passages the corpus offers to its languages}; unit: {corpus: what one
    passage is}. min_tokens, max_length, seed, verses_per_passage, max_tokens: how it was made
    (``max_tokens``: the per-language cap, None for none; under a cap the languages keep nested
    prefixes of the same passages, so ``texts`` may hold fewer passages in some languages).

    Calling it as ``evalset(lang, split='evaluation')`` returns ``texts[lang]``, so it serves as
    the ``texts_fn`` of :func:`perplexity`, :func:`window_results` and :func:`compare` (or pass it
    as their ``evalset=``, which also adds the corpus of each language to the table).
    """

    languages: list[str]
    texts: dict[str, list[str]]
    ids: dict[str, list[str]]
    source: dict[str, str]
    text_key: dict[str, str]
    tokens: dict[str, int]
    characters: dict[str, int]
    available: dict[str, int]
    unit: dict[str, str]
    min_tokens: int
    max_length: int
    seed: int
    verses_per_passage: int | None
    max_tokens: int | None = None
    split: str = "evaluation"

    def __call__(self, lang: str, split: str = "evaluation") -> list[str]:
        if split != self.split:
            raise ValueError(f"an evaluation set holds the {self.split} split only, not {split!r}")
        if lang not in self.texts:
            raise ValueError(f"{lang!r} is not in this evaluation set ({', '.join(self.languages)})")
        return self.texts[lang]

    def languages_of(self, corpus_name: str) -> list[str]:
        """The languages evaluated on ``corpus_name``, in order."""
        return [l for l in self.languages if self.source[l] == corpus_name]

    @property
    def short(self) -> list[str]:
        """Languages whose whole available text is shorter than ``min_tokens``."""
        return [l for l in self.languages if self.tokens[l] < self.min_tokens]

    @property
    def key(self) -> str:
        """Content hash of the text (ids and passages of every language)."""
        return cache_key({"ids": self.ids, "texts": self.texts, "source": self.source})[:16]

    def table(self) -> pd.DataFrame:
        """Per language: corpus, text key, passages, characters, tokens, tokens per character."""
        from babel_lib.data import corpus

        return pd.DataFrame([{
            "language": l, "corpus": corpus.CORPUS_NAMES.get(self.source[l], self.source[l]),
            "text": self.text_key[l], "passages": len(self.texts[l]), "characters": self.characters[l],
            "tokens": self.tokens[l], "tokens_per_character": self.tokens[l] / max(self.characters[l], 1),
        } for l in self.languages])

    def describe(self) -> str:
        """How the text was chosen, per corpus, with passages and token counts (one paragraph)."""
        from babel_lib.data import corpus

        parts = []
        for c in dict.fromkeys(self.source[l] for l in self.languages):
            langs = self.languages_of(c)
            labels = language_labels(langs)
            names = ", ".join(labels.values()) if len(langs) <= 12 else f"{len(langs)} languages"
            texts = language_labels([self.text_key[l] for l in langs])
            alias = [f"{labels[l]} on the {texts[self.text_key[l]]} text" for l in langs if self.text_key[l] != l]
            tok = [self.tokens[l] for l in langs]
            kept = [len(self.texts[l]) for l in langs]
            n = max(kept)
            rule = corpus.evaluation_rule(c).split("; calibration")[0].replace("evaluation = ", "")
            if self.split != "evaluation":
                rule = "everything but the evaluation part"
            chosen = (f"all {n} passages ({self.unit[c]})" if n == self.available[c] else
                      f"{n} of its {self.available[c]:,} passages ({self.unit[c]}), drawn in a random order "
                      f"(seed {self.seed}) until each of these languages had at least {self.min_tokens:,} tokens")
            if min(kept) < n:
                chosen += (f"; each language then keeps the passages, in that order, until it has "
                           f"{self.max_tokens:,} tokens (our cap: {min(kept)}-{n} passages a language)")
            count = f"{tok[0]:,} tokens" if len(tok) == 1 else f"{min(tok):,}-{max(tok):,} tokens per language"
            parts.append(f"{names}{' (' + '; '.join(alias) + ')' if alias else ''}: the "
                         f"{corpus.CORPUS_NAMES.get(c, c)} {self.split} split, {rule}; {chosen}"
                         f"{', the same passages in each' if len(langs) > 1 and min(kept) == n else ''}: {count}")
        short = self.short
        note = (f" The whole evaluation split of {', '.join(language_labels(short).values())} is shorter than "
                f"{self.min_tokens:,} tokens: fewer tokens there, wider intervals." if short else "")
        head = ("Evaluation text, held out from calibration. " if self.split == "evaluation" else
                f"{self.split.capitalize()} text. ")
        return head + ". ".join(parts) + "." + note


def language_labels(keys) -> dict[str, str]:
    """{key: readable name} (:func:`babel_lib.data.corpus.language_labels`); a key the language table
    does not know keeps its key as its name."""
    from babel_lib.data import corpus

    keys = list(keys)
    known = set(corpus.language_table().index)
    names = corpus.language_labels([k for k in keys if k in known])
    return {k: names.get(k, k) for k in keys}


def verse_units(keys: list[str], verses_per_passage: int, split: str = "evaluation"):
    """Aligned passages of ``verses_per_passage`` consecutive verses of the Bible's ``split``.

    A verse is kept when every language has its own text for it: not empty or absent, and not
    translated together with the next verse (the ``merged`` flag of
    :func:`babel_lib.data.corpus.bible_verses`), so its content is the same in every language.
    Consecutive kept verses of a chapter are grouped ``verses_per_passage`` at a time (a run
    broken by a dropped verse starts a new group; a run's last group may be shorter). Returns
    (ids like 'LUK.15.3-4', {key: texts}) in document order.
    """
    from babel_lib.data import corpus

    cols = ["book_number", "chapter", "verse"]
    frames = {}
    for k in keys:
        f = corpus.bible_verses(k)
        frames[k] = f[f["split"] == split] if split != "all" else f
    index = None
    for f in frames.values():
        where = pd.MultiIndex.from_frame(f[cols])
        index = where if index is None else index.union(where)
    index = index.sort_values()
    text, merged = {}, []
    for k, f in frames.items():
        where = pd.MultiIndex.from_frame(f[cols])
        text[k] = pd.Series(f["text"].to_numpy(), index=where).reindex(index, fill_value="").to_numpy()
        merged.append(pd.Series(f["merged"].to_numpy(), index=where).reindex(index, fill_value=False)
                      .to_numpy(dtype=bool))
    verses = index.to_frame(index=False)
    chapter = verses["book_number"].to_numpy() * 1000 + verses["chapter"].to_numpy()
    same_chapter_next = np.r_[chapter[1:] == chapter[:-1], False]
    next_merged = np.r_[np.logical_or.reduce(merged)[1:], False] & same_chapter_next
    keep = np.logical_and.reduce([t != "" for t in text.values()]) & ~next_merged
    books = [corpus.BOOKS[b - 1] if 0 < b <= len(corpus.BOOKS) else str(b) for b in verses["book_number"]]
    scripts = corpus.language_table()["script"]
    seps = {k: "" if scripts.get(k, "") in corpus.NO_SPACE_SCRIPTS else " " for k in keys}
    ids: list[str] = []
    out: dict[str, list[str]] = {k: [] for k in keys}
    group: list[int] = []

    def flush():
        if group:
            first, last = int(verses["verse"].iat[group[0]]), int(verses["verse"].iat[group[-1]])
            ids.append(f"{books[group[0]]}.{int(verses['chapter'].iat[group[0]])}.{first}"
                       + (f"-{last}" if last != first else ""))
            for k in keys:
                out[k].append(seps[k].join(text[k][i] for i in group))
            group.clear()

    for i in range(len(keep)):
        if not keep[i]:
            flush()
            continue
        if group and (chapter[group[-1]] != chapter[i] or len(group) >= verses_per_passage):
            flush()
        group.append(i)
    flush()
    return ids, out


def _units(corpus_name: str, keys: list[str], verses_per_passage: int | None, split: str = "evaluation"):
    """(ids, {key: texts}, unit in words) of the aligned passages of one corpus's ``split``."""
    from babel_lib.data import corpus

    if corpus_name == "bible" and verses_per_passage is not None:
        ids, text = verse_units(keys, int(verses_per_passage), split)
        unit = ("single verses" if verses_per_passage == 1 else
                f"groups of up to {verses_per_passage} consecutive verses of one chapter")
        if not ids:
            raise ValueError(f"no verse of the Bible's {split} books has text in every one of {', '.join(keys)}")
        return ids, text, unit
    ps = corpus.passages(keys, corpus=corpus_name, split=split)
    unit = "chapters" if corpus_name == "bible" else "paragraphs, or whole articles"
    return list(ps.ids), {k: list(ps.text[k]) for k in keys}, unit


def _count_tokens(tokenizer, texts: list[str]) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def evaluation_set(tokenizer, languages, min_tokens: int = 2000, prefer=EVAL_CORPORA, max_length: int = 128,
                   seed: int = 0, verses_per_passage: int | None = 2, aliases: dict | None = None,
                   chunk: int = 32, max_tokens: int | None = None, split: str = "evaluation") -> EvalSet:
    """Held-out evaluation text for ``languages`` (keys, or a selection such as 'paper').

    Each language is evaluated on the first corpus of ``prefer`` that has it (``'bible'``: the
    evaluation books Joshua, Luke and Acts; ``'udhr'``: the evaluation articles); ``aliases``
    ({key: identifier}) looks a language up under another text, e.g. ``{'por_pt': 'por'}`` to
    evaluate European-Portuguese plans on the Brazilian Portuguese Bible (the table names the
    text used). Within one corpus the languages share the same aligned passages: the corpus's
    evaluation passages in a random order (``seed``), of which the shortest prefix that gives
    every language of that corpus at least ``min_tokens`` tokens is kept (in document order). When
    a corpus has fewer, all of it is kept and :attr:`EvalSet.short` names the languages below.

    Passage units: UDHR paragraphs (whole articles where the languages' paragraphs differ); in
    the Bible ``verses_per_passage`` consecutive aligned verses (default 2: about 60 tokens, so
    2,000 tokens are some 30 passages from as many chapters, enough to resample), or whole
    chapters with ``verses_per_passage=None`` (about 1,000 tokens each: too few passages for a
    bootstrap at small budgets).

    ``max_tokens`` (None: no cap) caps each language: of the chosen passages, in the random order,
    a language keeps the shortest prefix that gives it at least ``max_tokens`` tokens. Without a
    cap the languages that need the most tokens per passage set the common length for all (in
    UDHR, 200 tokens for the tersest language meant up to 4,888 for the most verbose); with it each
    language reads about as many tokens, and the languages' passages are nested prefixes of one
    random order (the same text where they overlap).

    ``split='calibration'`` draws the same way from the calibration split (the Bible's other books,
    the UDHR's calibration articles): in-domain calibration text at a token budget
    (:func:`babel_lib.interventions.applications.in_domain_calibration`).
    """
    from babel_lib.data import corpus

    if split not in ("evaluation", "calibration"):
        raise ValueError(f"split must be 'evaluation' or 'calibration', got {split!r}")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer))
                                   or max_tokens < min_tokens):
        raise ValueError(f"max_tokens must be None or an integer of at least min_tokens ({min_tokens!r}), "
                         f"got {max_tokens!r}")
    if isinstance(min_tokens, bool) or not isinstance(min_tokens, (int, np.integer)) or min_tokens < 1:
        raise ValueError(f"min_tokens must be a positive integer, got {min_tokens!r}")
    if isinstance(prefer, str):
        prefer = (prefer,)
    for c in prefer:
        if c not in corpus.CORPORA:
            raise ValueError(f"prefer must name corpora of {corpus.CORPORA}, got {c!r}")
    if verses_per_passage is not None and (isinstance(verses_per_passage, bool) or
                                           not isinstance(verses_per_passage, (int, np.integer)) or
                                           verses_per_passage < 1):
        raise ValueError(f"verses_per_passage must be a positive integer or None, got {verses_per_passage!r}")
    keys = list(corpus.resolve_languages(languages)) if isinstance(languages, str) else list(languages)
    if not keys:
        raise ValueError("no language to evaluate")
    if len(set(keys)) != len(keys):
        raise ValueError(f"languages must not repeat: {keys}")
    aliases = dict(aliases or {})
    source, text_key = {}, {}
    for k in keys:
        lookup = aliases.get(k, k)
        for c in prefer:
            if corpus.has_language(lookup, c):
                source[k], text_key[k] = c, corpus.resolve_languages([lookup], c)[0]
                break
        else:
            raise ValueError(f"no corpus of {tuple(prefer)} has a text for {k!r}"
                             + (f" (looked up as {lookup!r})" if lookup != k else ""))
    texts, ids, tokens, chars, available, units = {}, {}, {}, {}, {}, {}
    for c in dict.fromkeys(source[k] for k in keys):
        group = [k for k in keys if source[k] == c]
        tkeys = list(dict.fromkeys(text_key[k] for k in group))
        unit_ids, unit_text, units[c] = _units(c, tkeys, verses_per_passage, split)
        n = len(unit_ids)
        available[c] = n
        order = np.random.default_rng(int(seed)).permutation(n)
        counts = {t: [] for t in tkeys}
        need = n
        for start in range(0, n, chunk):
            part = order[start:start + chunk]
            for t in tkeys:
                counts[t] += _count_tokens(tokenizer, [unit_text[t][i] for i in part])
            cum = {t: np.cumsum(counts[t]) for t in tkeys}
            if all(cum[t][-1] >= min_tokens for t in tkeys):
                need = max(int(np.searchsorted(cum[t], min_tokens)) + 1 for t in tkeys)
                break
        position = {int(i): j for j, i in enumerate(order[:need])}
        for k in group:
            t = text_key[k]
            m = need
            if max_tokens is not None:
                m = min(need, int(np.searchsorted(np.cumsum(counts[t][:need]), max_tokens)) + 1)
            chosen = np.sort(order[:m])
            texts[k] = [unit_text[t][i] for i in chosen]
            ids[k] = [unit_ids[i] for i in chosen]
            tokens[k] = int(sum(counts[t][position[int(i)]] for i in chosen))
            chars[k] = int(sum(len(x) for x in texts[k]))
    return EvalSet(keys, texts, ids, source, text_key, tokens, chars, available, units, int(min_tokens),
                   int(max_length), int(seed), verses_per_passage, None if max_tokens is None else int(max_tokens),
                   split)


# ------------------------------------------------------------------------------ windows
@dataclass
class Windows:
    """Tokenised evaluation text of one language.

    input_ids: one list per window (BOS first when the tokenizer has one).
    score_from: per window, the first position whose token is scored (1 = every token after BOS).
    passage: per window, the index of its passage in the texts given (the unit of paired resampling).
    tokens: scored tokens in all; characters / bytes: of the evaluated passages; passages: how many
    passages were evaluated (empty ones and those beyond a token budget are not).
    """

    input_ids: list[list[int]]
    score_from: list[int]
    passage: list[int]
    tokens: int
    characters: int
    bytes: int
    passages: int
    max_length: int
    stride: int | None

    @property
    def n_windows(self) -> int:
        return len(self.input_ids)

    def scored_per_window(self) -> np.ndarray:
        return np.array([len(ids) - s for ids, s in zip(self.input_ids, self.score_from)], dtype=np.int64)


def make_windows(tokenizer, passages: list[str], max_length: int = 128, stride: int | None = None,
                 max_tokens: int | None = None) -> Windows:
    """Cut passages into evaluation windows (see the module docstring for the protocol)."""
    if not isinstance(max_length, (int, np.integer)) or max_length < 2:
        raise ValueError(f"max_length must be an integer >= 2, got {max_length!r}")
    bos = tokenizer.bos_token_id
    body = max_length - 1 if bos is not None else max_length
    if stride is None:
        stride_ = body
    elif not isinstance(stride, (int, np.integer)) or not 1 <= stride <= body:
        raise ValueError(f"stride must be an integer in [1, {body}] (max_length - 1) or None, got {stride!r}")
    else:
        stride_ = int(stride)
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be positive or None, got {max_tokens!r}")
    head = [bos] if bos is not None else []
    windows, score_from, owner = [], [], []
    tokens = chars = nbytes = n_par = 0
    for index, text in enumerate(passages):
        if max_tokens is not None and tokens >= max_tokens:
            break
        if not text or not text.strip():
            continue
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            continue
        n_par += 1
        chars += len(text)
        nbytes += len(text.encode("utf-8"))
        scored_until = 0  # passage tokens [0, scored_until) already scored
        start = 0
        while True:
            end = min(start + body, len(ids))
            window = head + ids[start:end]
            # first scored passage index in this window: max(start, scored_until); sequence position adds len(head)
            pos = len(head) + max(start, scored_until) - start
            pos = max(pos, 1)  # position 0 has no context (BOS itself, or a first token without BOS)
            if pos < len(window):
                windows.append(window)
                score_from.append(pos)
                owner.append(index)
                tokens += len(window) - pos
            scored_until = end
            if end >= len(ids):
                break
            start += stride_
    if not windows:
        raise ValueError("no text to evaluate: every passage is empty")
    return Windows(windows, score_from, owner, tokens, chars, nbytes, n_par, int(max_length), stride)


# ------------------------------------------------------------------------------ the loss
def _head(model: torch.nn.Module):
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise ValueError(f"{type(model).__name__} has no LM head (get_output_embeddings() is None): perplexity "
                         "needs a *ForCausalLM model")
    return head


_CONVERTED: dict[tuple, torch.Tensor] = {}


def _converted(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``weight`` in ``dtype``, the conversion kept for the next call (one entry: Gemma's fp32 head is 670 MB).

    Keyed by the tensor's identity, storage and in-place version counter, so a changed weight is
    converted afresh.
    """
    if weight.dtype == dtype:
        return weight
    key = (id(weight), weight.data_ptr(), weight._version, tuple(weight.shape), dtype, weight.device)
    if key not in _CONVERTED:
        _CONVERTED.clear()
        _CONVERTED[key] = weight.detach().to(dtype)
    return _CONVERTED[key]


@torch.inference_mode()
def window_nll(lm: LoadedModel, windows: Windows, batch_size: int = 8, head_dtype: str | None = "float32",
               chunk: int = 256) -> np.ndarray:
    """Summed NLL (nats, float64) of each window's scored tokens, in window order.

    The backbone runs on right-padded batches of similar length; the LM head is applied only
    to the hidden states that predict a scored token, ``chunk`` rows at a time.
    """
    model = lm.model
    pad = pad_id(lm.tokenizer)
    body = backbone(model)
    head = _head(model)
    cap = getattr(model.config, "final_logit_softcapping", None)
    weight = head.weight
    bias = getattr(head, "bias", None)
    hd = resolve_dtype(head_dtype) if head_dtype is not None else weight.dtype
    w = _converted(weight, hd)
    b = None if bias is None else bias.to(hd)
    out = np.zeros(windows.n_windows, dtype=np.float64)
    order = sorted(range(windows.n_windows), key=lambda i: -len(windows.input_ids[i]))
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        batch = [windows.input_ids[j] for j in idx]
        ids, attn = (t.to(lm.device) for t in pad_batch(batch, pad))
        h = body(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
        # position t predicts token t + 1; it counts when t + 1 is a scored, real token
        T = ids.shape[1]
        pos = torch.arange(T - 1, device=ids.device)
        starts = torch.tensor([windows.score_from[j] for j in idx], device=ids.device)
        lens = attn.sum(1)
        want = (pos[None, :] + 1 >= starts[:, None]) & (pos[None, :] + 1 < lens[:, None])
        rows = want.nonzero()
        hsel = h[:, :-1][want]
        targets = ids[:, 1:][want]
        nll = torch.empty(hsel.shape[0], dtype=torch.float64, device=h.device)
        for c in range(0, hsel.shape[0], chunk):
            logits = torch.nn.functional.linear(hsel[c:c + chunk].to(hd), w, b).float()
            if cap:
                logits = torch.tanh(logits / cap) * cap
            nll[c:c + chunk] = torch.nn.functional.cross_entropy(logits, targets[c:c + chunk],
                                                                 reduction="none").double()
        sums = torch.zeros(len(idx), dtype=torch.float64, device=h.device).index_add_(0, rows[:, 0], nll)
        out[idx] = sums.cpu().numpy()
    return out


# ------------------------------------------------------------------------------ conditions
@dataclass(frozen=True)
class Condition:
    """An intervention under which a model is evaluated.

    name: a label for tables; spec: everything that changes the result beyond the model's weights
    (it enters the cache key: plan hashes, partition key, rates); context: a zero-argument
    callable returning the context manager to hold open around the forwards (None = as is).
    """

    name: str
    spec: dict = field(default_factory=dict)
    context: Callable[[], ContextManager] | None = None

    def open(self) -> ContextManager:
        return self.context() if self.context is not None else nullcontext()


DENSE = Condition("dense", {"kind": "dense"})


def _texts(texts_fn, lang, split):
    if texts_fn is None:
        from babel_lib.data import corpus

        return corpus.texts(lang, split)
    return texts_fn(lang, split)


def _protocol(languages, split, max_length, max_tokens, texts_fn, evalset):
    """(languages, max_length, texts_fn) after checking the arguments against an evaluation set."""
    if evalset is None:
        if languages is None:
            raise ValueError("languages are needed (or evalset=)")
        from babel_lib.data import corpus

        langs = corpus.resolve_languages(languages) if texts_fn is None else list(languages)
        return list(langs), (128 if max_length is None else max_length), texts_fn
    if texts_fn is not None:
        raise ValueError("give texts_fn or evalset, not both")
    if split != "evaluation":
        raise ValueError(f"an evaluation set holds the evaluation split only, not {split!r}")
    if max_tokens is not None:
        raise ValueError("an evaluation set fixes the text: max_tokens must be None (set min_tokens when making it)")
    langs = list(evalset.languages) if languages is None else list(languages)
    missing = [l for l in langs if l not in evalset.texts]
    if missing:
        raise ValueError(f"languages {missing} are not in the evaluation set ({', '.join(evalset.languages)})")
    return langs, (evalset.max_length if max_length is None else max_length), evalset


def perplexity(
    lm: LoadedModel,
    languages=None,
    condition: Condition = DENSE,
    split: str = "evaluation",
    max_length: int | None = None,
    stride: int | None = None,
    max_tokens: int | None = None,
    batch_size: int = 8,
    head_dtype: str | None = "float32",
    store: Store | None = None,
    texts_fn=None,
    windows: dict | None = None,
    evalset: EvalSet | None = None,
) -> pd.DataFrame:
    """Perplexity and bits per character of ``lm`` under ``condition``, one row per language.

    languages: keys / names / 'paper' (see babel_lib.data.corpus.resolve_languages), or any list when
    ``texts_fn(lang, split)`` supplies the passages; with ``evalset`` (an :class:`EvalSet`) its
    languages by default, its text, and its ``max_length`` unless given. windows: optional
    {lang: Windows} made earlier (saves re-tokenising when many conditions are compared).
    max_length: tokens per window (default 128). Cached per language.

    Columns: condition, language, perplexity, bits_per_char, bits_per_byte, nll (nats), tokens,
    characters, bytes, windows, passages, max_length, stride, split, max_tokens, model,
    fingerprint, dtype; with an evalset also corpus and unit. The per-window NLLs are in
    :func:`window_results`.
    """
    rows = []
    results = window_results(lm, languages, condition, split, max_length, stride, max_tokens, batch_size, head_dtype,
                             store, texts_fn, windows, evalset)
    for lang, res in results.items():
        row = summarize(res, condition.name, lang, lm)
        if evalset is not None:
            row["corpus"] = evalset.source[lang]
            row["unit"] = evalset.unit[evalset.source[lang]]
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(res: dict, condition: str, language: str, lm: LoadedModel) -> dict:
    """One table row from a window result (see :func:`perplexity` for the columns)."""
    nll = float(res["window_nll"].sum())
    tokens = int(res["window_tokens"].sum())
    chars, nbytes = int(res["characters"]), int(res["bytes"])
    return {
        "condition": condition, "language": language,
        "perplexity": math.exp(nll / tokens), "bits_per_char": nll / math.log(2) / chars,
        "bits_per_byte": nll / math.log(2) / nbytes, "nll": nll, "tokens": tokens, "characters": chars,
        "bytes": nbytes, "windows": int(res["window_nll"].size), "passages": int(res["passages"]),
        "max_length": int(res["max_length"]), "stride": None if int(res["stride"]) < 0 else int(res["stride"]),
        "split": str(res["split"]), "max_tokens": None if int(res["max_tokens"]) < 0 else int(res["max_tokens"]),
        "model": lm.name, "fingerprint": lm.fingerprint, "dtype": str(lm.dtype).replace("torch.", ""),
    }


def window_results(lm: LoadedModel, languages=None, condition: Condition = DENSE, split: str = "evaluation",
                   max_length: int | None = None, stride: int | None = None, max_tokens: int | None = None,
                   batch_size: int = 8, head_dtype: str | None = "float32", store: Store | None = None,
                   texts_fn=None, windows: dict | None = None,
                   evalset: EvalSet | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{lang: {'window_nll', 'window_tokens', 'window_passage', 'characters', 'bytes', ...}} under
    ``condition`` (cached; arguments as in :func:`perplexity`). ``window_passage`` is each window's
    index in the language's passage list (see :func:`passage_losses`)."""
    langs, max_length, texts_fn = _protocol(languages, split, max_length, max_tokens, texts_fn, evalset)
    store = store or Store()
    windows = dict(windows or {})
    todo, results = [], {}
    for lang in langs:
        if lang not in windows:
            windows[lang] = make_windows(lm.tokenizer, _texts(texts_fn, lang, split), max_length, stride, max_tokens)
        win = windows[lang]
        if win.max_length != max_length or win.stride != stride:
            raise ValueError(f"windows for {lang!r} were made with max_length={win.max_length}, stride={win.stride}")
        parts = _parts(lm, condition, lang, split, win, max_tokens, batch_size, head_dtype)
        hit = store.load("perplexity", parts)
        if hit is not None:
            results[lang] = hit[0]
        else:
            todo.append((lang, parts))
    if todo:
        with condition.open():
            for lang, parts in todo:
                win = windows[lang]
                nll = window_nll(lm, win, batch_size, head_dtype)
                arrays = {"window_nll": nll, "window_tokens": win.scored_per_window(),
                          "window_passage": np.array(win.passage, dtype=np.int64),
                          "characters": np.array(win.characters), "bytes": np.array(win.bytes),
                          "passages": np.array(win.passages), "max_length": np.array(win.max_length),
                          "stride": np.array(-1 if win.stride is None else win.stride),
                          "max_tokens": np.array(-1 if max_tokens is None else max_tokens), "split": np.array(split)}
                store.save("perplexity", parts, arrays, {"language": lang, "condition": condition.name})
                results[lang] = arrays
    return {lang: results[lang] for lang in langs}


def _parts(lm, condition, lang, split, win, max_tokens, batch_size, head_dtype) -> dict:
    return {"version": EVALUATE_VERSION, "model_fingerprint": lm.fingerprint, "dtype": str(lm.dtype),
            "condition": condition.spec, "language": lang, "split": split, "max_length": win.max_length,
            "stride": win.stride, "max_tokens": max_tokens, "batch_size": batch_size, "head_dtype": head_dtype,
            "text": cache_key({"ids": win.input_ids, "from": win.score_from})}


def compare(lm: LoadedModel, languages, conditions: list[Condition], include_dense: bool = True,
            progress: bool = False, **kwargs) -> pd.DataFrame:
    """:func:`perplexity` for the dense model (first) and every condition, in one table.

    kwargs: the protocol arguments of :func:`perplexity` (split, max_length, stride, max_tokens,
    batch_size, head_dtype, store, texts_fn, evalset). Texts are tokenised once.
    """
    from tqdm import tqdm

    langs, max_length, texts_fn = _protocol(languages, kwargs.get("split", "evaluation"), kwargs.get("max_length"),
                                            kwargs.get("max_tokens"), kwargs.get("texts_fn"), kwargs.get("evalset"))
    if "windows" not in kwargs:
        kwargs["windows"] = {lang: make_windows(lm.tokenizer, _texts(texts_fn, lang, kwargs.get("split", "evaluation")),
                                                max_length, kwargs.get("stride"), kwargs.get("max_tokens"))
                             for lang in langs}
    kwargs["max_length"] = max_length
    todo = ([DENSE] if include_dense else []) + list(conditions)
    frames = [perplexity(lm, langs, c, **kwargs) for c in tqdm(todo, desc="conditions", disable=not progress)]
    return pd.concat(frames, ignore_index=True)


def describe(df: pd.DataFrame) -> str:
    """One sentence stating the protocol behind a perplexity table: model, dtype, the text of each
    language (corpus and passages), windows, scored tokens and characters per language."""
    from babel_lib.data import corpus

    row = df.iloc[0]
    per = df.drop_duplicates("language")
    stride = "no overlap" if pd.isna(row["stride"]) or row["stride"] is None else f"stride {int(row['stride'])}"
    if "corpus" in per.columns:
        parts = []
        for c, g in per.groupby("corpus", sort=False):
            names = ", ".join(language_labels(g["language"]).values()) if len(g) <= 12 else f"{len(g)} languages"
            n = sorted(set(int(x) for x in g["passages"]))
            count = f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}"
            unit = g["unit"].iloc[0] if "unit" in g.columns else "passages"
            parts.append(f"the {corpus.CORPUS_NAMES.get(c, c)} evaluation split for {names} ({count} passages: {unit})")
        text = "held-out text: " + "; ".join(parts)
    else:
        if pd.isna(row["max_tokens"]) or row["max_tokens"] is None:
            budget = "the whole split"
        elif int(per["tokens"].max()) < int(row["max_tokens"]):
            budget = f"the whole split: shorter than the budget of {int(row['max_tokens']):,} tokens in every language"
        else:
            budget = f"whole paragraphs in document order until at least {int(row['max_tokens']):,} tokens"
        text = f"the UDHR '{row['split']}' split ({budget})"
    return (f"Perplexity of {row['model']} ({row['dtype']}, fingerprint {row['fingerprint']}) on {text}, "
            f"{len(per)} languages: windows of at most {int(row['max_length'])} tokens, each starting with BOS "
            f"({stride}); {int(per['windows'].min())}-{int(per['windows'].max())} windows and "
            f"{int(per['tokens'].min()):,}-{int(per['tokens'].max()):,} scored tokens per language "
            f"({int(per['tokens'].sum()):,} in all), {int(per['characters'].min()):,}-{int(per['characters'].max()):,} "
            "characters; loss over every token but BOS and padding, through the full model.")


# ------------------------------------------------------------------------------ paired comparisons
def passage_losses(result: dict) -> tuple[np.ndarray, np.ndarray]:
    """(nll float64 [P], tokens int64 [P]): a window result's NLL and scored tokens summed per passage,
    over the passages that have scored windows, in passage order (:func:`window_results`)."""
    passage = np.asarray(result["window_passage"], dtype=np.int64)
    nll = np.asarray(result["window_nll"], dtype=np.float64)
    tokens = np.asarray(result["window_tokens"], dtype=np.int64)
    if not (passage.shape == nll.shape == tokens.shape):
        raise ValueError("a window result needs window_nll, window_tokens and window_passage of one length")
    _, inverse = np.unique(passage, return_inverse=True)
    return (np.bincount(inverse, weights=nll),
            np.bincount(inverse, weights=tokens).round().astype(np.int64))


def check_paired(a: dict, b: dict) -> None:
    if not (np.array_equal(np.asarray(a["window_passage"]), np.asarray(b["window_passage"])) and
            np.array_equal(np.asarray(a["window_tokens"]), np.asarray(b["window_tokens"]))):
        raise ValueError("the two results were not evaluated on the same windows: no paired comparison")


def paired_comparison(dense_result: dict, other_result: dict, n_resamples: int = 1000, seed: int = 0,
                      names: tuple[str, str] = ("dense", "other"), level: float = 0.95) -> dict:
    """Perplexity ratio other / dense on the same windows, with a paired bootstrap over passages.

    dense_result, other_result: window results of one language (:func:`window_results`) on the
    same windows. Returns {'ratio', 'low', 'high' (the ``level`` percentile interval of
    :func:`babel_lib.stats.paired_ratio_interval`, ``n_resamples`` resamples of passages,
    ``seed``), 'decision' (:func:`babel_lib.stats.ratio_decision` with ``names``: '<other> better'
    when the interval lies below 1, '<dense> better' above, else 'indistinguishable'), 'passages',
    'n_resamples'}.
    """
    from babel_lib.stats import inference as stats

    check_paired(dense_result, other_result)
    nll_a, tok_a = passage_losses(dense_result)
    nll_b, tok_b = passage_losses(other_result)
    res = stats.paired_ratio_interval(nll_a, tok_a, nll_b, tok_b, n_resamples=n_resamples, seed=seed, level=level)
    return {"ratio": float(res.estimate), "low": float(res.low), "high": float(res.high),
            "decision": stats.ratio_decision(res, a=names[0], b=names[1]), "passages": int(len(nll_a)),
            "n_resamples": int(n_resamples)}
