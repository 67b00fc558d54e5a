"""Measuring an instruction-tuned model: held-out response loss, greedy answers to held-out prompts,
and cheap documented checks of those answers.

- :func:`response_loss` / :func:`loss_summary`: the summed cross-entropy of each held-out
  example's response tokens given its prompt (the training objective of :mod:`babel_lib.interventions.tune`,
  on examples it never saw), token-weighted means by task or language.
- :func:`sample_prompts`, :func:`generate_answers`: a deterministic subset of prompts (every task
  in every language) and the model's greedy answers (left-padded batches with the KV cache, equal
  to unbatched decoding).
- :func:`score_answers`: is an answer well formed (not empty, not an echo, not looping, not
  running on into a new turn), in the right language (:func:`script_share`,
  :class:`LanguageIdentifier`), and how close to the reference (:func:`chrf`, sacrebleu's chrF2).

Loss and answers are cached (kind 'tune_eval') under the model's fingerprint, the rows and the
settings.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import torch

from babel_lib.core.cache import Store, cache_key
from babel_lib.core.hooks import pad_id
from babel_lib.core.models import LoadedModel
from babel_lib.data import corpus
from babel_lib.data.instructions import (PLAIN_MARKERS, collate, encode_all, encode_example, response_logits,
                                         stop_token_ids)


# ---------------------------------------------------------------------------- held-out loss
def _measure_parts(kind: str, lm: LoadedModel, dataset, **settings) -> dict:
    tok = lm.tokenizer
    return {"measure": kind, "model_fingerprint": lm.fingerprint, "tokenizer": [type(tok).__name__, len(tok)],
            "rows": cache_key({c: list(dataset[c]) for c in ("prompt", "response", "template")}), **settings}


def response_loss(lm: LoadedModel, dataset, max_length: int = 192, batch_size: int = 8, store=None,
                  cache: bool = True) -> pd.DataFrame:
    """Held-out loss: per example, the summed cross-entropy (nats) of the response tokens given the
    prompt, and their count. Columns: row (index in dataset), task, lang, nll, tokens.
    Examples longer than max_length tokens are skipped (the same ones for models sharing a tokenizer).
    Cached (kind 'tune_eval') under the model's fingerprint, the rows and the settings."""

    def compute():
        f = _response_loss(lm, dataset, max_length, batch_size)
        return {"row": f["row"].to_numpy(), "nll": f["nll"].to_numpy(), "tokens": f["tokens"].to_numpy()}, {}

    parts = _measure_parts("response_loss", lm, dataset, max_length=max_length, batch_size=batch_size)
    arrays, _ = (store or Store()).get_or_compute("tune_eval", parts, compute) if cache else compute()
    frame = dataset.select(arrays["row"].tolist()).to_pandas()[["task", "lang"]]
    frame.insert(0, "row", arrays["row"])
    frame["nll"] = arrays["nll"]
    frame["tokens"] = arrays["tokens"]
    return frame


@torch.inference_mode()
def _response_loss(lm: LoadedModel, dataset, max_length: int, batch_size: int) -> pd.DataFrame:
    encoded, kept = encode_all(lm.tokenizer, dataset, max_length)
    pad = pad_id(lm.tokenizer)
    order = np.argsort([-(len(p) + len(r)) for p, r in encoded], kind="stable")
    nll = np.zeros(len(encoded))
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        ids, attn, targets = collate([encoded[j] for j in idx], pad, lm.device)
        logits, gold = response_logits(lm.model, ids, attn, targets)
        per_tok = torch.nn.functional.cross_entropy(logits, gold, reduction="none").cpu().numpy()
        counts = (targets != -100).sum(1).cpu().numpy()
        for j, start, n in zip(idx, np.concatenate([[0], np.cumsum(counts)[:-1]]), counts):
            nll[j] = per_tok[start:start + n].sum()
    frame = dataset.select(kept.tolist()).to_pandas()[["task", "lang"]]
    frame.insert(0, "row", kept)
    frame["nll"] = nll
    frame["tokens"] = [len(r) for _, r in encoded]
    return frame


def loss_summary(frame: pd.DataFrame, by=("task",)) -> pd.DataFrame:
    """Token-weighted mean loss (nats per response token) and perplexity, grouped by ``by``
    (``by=()``: one row over everything)."""
    g = frame.groupby(list(by), as_index=False)[["nll", "tokens"]].sum() if by else \
        pd.DataFrame({"nll": [frame["nll"].sum()], "tokens": [frame["tokens"].sum()]})
    g["loss"] = g["nll"] / g["tokens"]
    g["perplexity"] = np.exp(g["loss"])
    return g


# ---------------------------------------------------------------------------- greedy answers
def sample_prompts(dataset, per_task_language: int = 4, seed: int = 0):
    """A deterministic subset: at most ``per_task_language`` rows of each task and language pair
    (task, lang, source_lang), so every language gets prompts of every task: the rows of
    'to_english' all answer in English and differ by their source language."""
    frame = dataset.to_pandas()
    rng = np.random.default_rng(seed)
    picked = []
    for _, g in frame.groupby(["lang", "source_lang", "task"], sort=True):
        idx = g.index.to_numpy()
        picked.extend(sorted(rng.choice(idx, size=min(per_task_language, len(idx)), replace=False).tolist()))
    return dataset.select(sorted(picked))


def generate_answers(lm: LoadedModel, dataset, max_new_tokens: int = 64, batch_size: int = 8, store=None,
                     cache: bool = True) -> pd.DataFrame:
    """Greedy answers to the dataset's prompts. Columns: row, answer (decoded, stop token
    excluded), new_tokens, stopped (a stop token came before max_new_tokens).

    Prompts are sorted by length and batched with left padding (attention mask and explicit
    position ids, so a padded prompt sees exactly what it would see alone). Cached (kind
    'tune_eval') under the model's fingerprint, the prompts and the settings.
    """

    def compute():
        f = _generate_answers(lm, dataset, max_new_tokens, batch_size)
        return {"row": f["row"].to_numpy(), "answer": f["answer"].to_numpy().astype(str),
                "new_tokens": f["new_tokens"].to_numpy(), "stopped": f["stopped"].to_numpy()}, {}

    parts = _measure_parts("generate_answers", lm, dataset, max_new_tokens=max_new_tokens, batch_size=batch_size)
    arrays, _ = (store or Store()).get_or_compute("tune_eval", parts, compute) if cache else compute()
    return pd.DataFrame({"row": arrays["row"].astype(int), "answer": [str(a) for a in arrays["answer"]],
                         "new_tokens": arrays["new_tokens"].astype(int), "stopped": arrays["stopped"].astype(bool)})


@torch.inference_mode()
def _generate_answers(lm: LoadedModel, dataset, max_new_tokens: int, batch_size: int) -> pd.DataFrame:
    tok = lm.tokenizer
    templates = list(dataset["template"])
    prompts = [encode_example(tok, r["prompt"], "", r["template"])[0] for r in dataset]
    stops = {t: stop_token_ids(tok, t) for t in sorted(set(templates))}
    pad = pad_id(tok)
    out = [None] * len(prompts)
    for template in sorted(stops):
        members = sorted((i for i in range(len(prompts)) if templates[i] == template), key=lambda i: -len(prompts[i]))
        stop = torch.tensor(stops[template], device=lm.device)
        for s in range(0, len(members), batch_size):
            idx = members[s:s + batch_size]
            ids, attn = left_padded([prompts[i] for i in idx], pad)
            new = greedy_decode(lm.model, ids.to(lm.device), attn.to(lm.device), max_new_tokens, stop)
            for i, seq in zip(idx, new.tolist()):
                hit = next((k for k, t in enumerate(seq) if t in stops[template]), None)
                body = seq if hit is None else seq[:hit]
                out[i] = {"row": i, "answer": tok.decode(body, skip_special_tokens=True).strip(),
                          "new_tokens": len(body), "stopped": hit is not None}
    return pd.DataFrame(out)


def left_padded(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences as one left-padded batch: (ids, attention mask), int64 [batch, longest]."""
    width = max(len(q) for q in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, q in enumerate(seqs):
        ids[b, width - len(q):] = torch.tensor(q, dtype=torch.long)
        attn[b, width - len(q):] = 1
    return ids, attn


def greedy_decode(model, ids: torch.Tensor, attn: torch.Tensor, max_new_tokens: int, stop: torch.Tensor) -> torch.Tensor:
    """Greedy decoding with the KV cache for a left-padded batch; [batch, new tokens]
    (after a row's stop token the row keeps decoding but its tokens are ignored). The output layer
    runs on the last position only (``logits_to_keep=1`` where the model takes it: on the prompt
    pass of Gemma 3 270M, whose 262k-word output layer is most of a forward pass, that is several
    times less work)."""
    import inspect

    params = inspect.signature(model.forward).parameters
    # transformers >= 5.2x names the KV cache argument and output `cache` (earlier: past_key_values)
    name = "cache" if "cache" in params else "past_key_values"
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **last_only)
    last = pos[:, -1:]
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new = []
    nxt = out.logits[:, -1].argmax(-1)
    for _ in range(max_new_tokens):
        new.append(nxt)
        done |= torch.isin(nxt, stop)
        if bool(done.all()) or len(new) == max_new_tokens:
            break
        past = out.get("cache", None) if name == "cache" else out.get("past_key_values", None)
        attn = torch.cat([attn, torch.ones_like(attn[:, :1])], 1)
        last = last + 1
        out = model(input_ids=nxt[:, None], attention_mask=attn, position_ids=last, use_cache=True,
                    **{name: past}, **last_only)
        nxt = out.logits[:, -1].argmax(-1)
    return torch.stack(new, 1)


# ---------------------------------------------------------------------------- answer checks
_SCRIPT_ALIASES = {"Hans": "Han", "Hant": "Han", "Hani": "Han", "Jpan": ("Han", "Hira", "Kana"),
                   "Kore": ("Hang", "Han")}


def script_share(text: str, script: str) -> float | None:
    """Fraction of the letters of ``text`` (Unicode category L) written in ``script`` (ISO 15924,
    e.g. 'Latn', 'Deva', 'Hans'). None when the script is unknown to the ``regex`` module or the
    text has no letters."""
    import regex

    letters = regex.findall(r"\p{L}", text)
    if not letters:
        return None
    names = _SCRIPT_ALIASES.get(script, script)
    names = names if isinstance(names, tuple) else (names,)
    try:
        pattern = regex.compile("|".join(rf"\p{{Script={n}}}" for n in names))
    except regex.error:
        return None
    return sum(1 for ch in letters if pattern.match(ch)) / len(letters)


def _ngrams(text: str, n_max: int) -> Counter:
    t = " " + " ".join(text.lower().split()) + " "
    c = Counter()
    for n in range(1, n_max + 1):
        c.update(t[i:i + n] for i in range(len(t) - n + 1))
    return c


class LanguageIdentifier:
    """A cheap language identifier: character 1-3-gram count vectors of each candidate language's
    UDHR calibration text; a text is assigned the candidate of highest cosine similarity. It knows
    only the candidates (the languages of the instruction set and the source language)."""

    def __init__(self, languages, split: str = "calibration", n_max: int = 3):
        self.languages = corpus.resolve_languages(languages)
        self.n_max = n_max
        self.profiles = {}
        for lang in self.languages:
            c = _ngrams("\n".join(corpus.texts(lang, split)), n_max)
            norm = math.sqrt(sum(v * v for v in c.values()))
            self.profiles[lang] = (c, norm)

    def scores(self, text: str) -> dict[str, float]:
        c = _ngrams(text, self.n_max)
        norm = math.sqrt(sum(v * v for v in c.values())) or 1.0
        return {lang: sum(v * prof.get(g, 0) for g, v in c.items()) / (norm * pnorm)
                for lang, (prof, pnorm) in self.profiles.items()}

    def identify(self, text: str) -> str | None:
        if not text.strip():
            return None
        s = self.scores(text)
        return max(s, key=s.get)


_CHRF = None


def chrf(hypothesis: str, reference: str) -> float:
    """Sentence-level chrF (Popovic 2015), 0-100, as computed by sacrebleu (``sacrebleu.metrics.CHRF``
    with its defaults, so figures compare with published ones): chrF2 (recall weighted by beta = 2),
    character n-grams of orders 1-6, word order 0 (chrF, not chrF++), whitespace removed, case kept,
    sacrebleu's effective-order averaging (orders absent from either side are left out)."""
    global _CHRF
    if _CHRF is None:
        from sacrebleu.metrics import CHRF

        _CHRF = CHRF(char_order=6, word_order=0, beta=2)
    return float(_CHRF.sentence_score(hypothesis, [reference]).score)


def _is_echo(answer: str, given: str) -> bool:
    """The answer mostly copies ``given``: a common substring of at least max(20, half the answer) characters."""
    import difflib

    a, g = " ".join(answer.split()), " ".join(given.split())
    if not a or not g:
        return False
    m = difflib.SequenceMatcher(None, a, g, autojunk=False).find_longest_match(0, len(a), 0, len(g))
    return m.size >= max(20, len(a) // 2) or (len(a) < 20 and a in g and len(a) >= 0.8 * len(g))


def _loops(answer: str, n: int = 8) -> bool:
    """Degenerate repetition: over 60 characters and fewer than half of its character 8-grams distinct."""
    t = " ".join(answer.split())
    if len(t) <= 60:
        return False
    grams = [t[i:i + n] for i in range(len(t) - n + 1)]
    return len(set(grams)) < 0.5 * len(grams)


def score_answers(dataset, answers: pd.DataFrame, identifier: LanguageIdentifier | None = None,
                  script_threshold: float = 0.5) -> pd.DataFrame:
    """Judge generated answers with cheap, documented checks. One row per answer with:

    - ``nonempty``: the answer has at least one letter;
    - ``echo``: it mostly copies the instruction line, or (translation and continuation tasks) the
      given input text (a common substring of at least max(20, half the answer) characters);
    - ``loops``: degenerate repetition (over 60 characters, fewer than half its character 8-grams distinct);
    - ``runaway``: the answer writes the template's turn markers itself (plain template: '### Instruction'
      or '### Response'), i.e. it goes on to invent the next turn instead of answering;
    - ``well_formed`` = nonempty and not echo and not loops and not runaway;
    - ``script_share``: fraction of its letters in the target language's script (ISO 15924 code
      from corpus.language_table());
    - ``identified``: the language a character 1-3-gram identifier picks among the candidates
      (:class:`LanguageIdentifier`);
    - ``right_language`` = script_share >= script_threshold and identified == target language;
    - ``ok`` = well_formed and right_language;
    - ``chrf``: sacrebleu's chrF2 against the reference (:func:`chrf`; translation quality; for
      'repeat', copying fidelity; for 'continue', overlap with the true continuation, a weak signal);
    - ``stopped``: the model ended its answer itself before the token limit.
    """
    frame = dataset.to_pandas().reset_index(drop=True)
    merged = answers.merge(frame, left_on="row", right_index=True, how="left")
    table = corpus.language_table()
    if identifier is None:
        identifier = LanguageIdentifier(sorted(set(frame["lang"]) | set(frame["source_lang"])))
    rows = []
    for _, r in merged.iterrows():
        ans = r["answer"] or ""
        nonempty = any(ch.isalpha() for ch in ans)
        echo = _is_echo(ans, r["head"]) or (r["task"] != "repeat" and _is_echo(ans, r["input"]))
        loops = _loops(ans)
        runaway = r["template"] == "plain" and any(m in ans for m in PLAIN_MARKERS)
        share = script_share(ans, table.loc[r["lang"], "script"]) if nonempty else None
        ident = identifier.identify(ans) if nonempty else None
        right = bool(share is not None and share >= script_threshold and ident == r["lang"])
        formed = nonempty and not echo and not loops and not runaway
        rows.append({"row": r["row"], "task": r["task"], "lang": r["lang"], "nonempty": nonempty, "echo": echo,
                     "loops": loops, "runaway": runaway, "well_formed": formed,
                     "script_share": np.nan if share is None else share, "identified": ident,
                     "right_language": right, "ok": formed and right,
                     "chrf": chrf(ans, r["reference"]), "stopped": bool(r["stopped"]),
                     "new_tokens": int(r["new_tokens"]), "answer": ans})
    return pd.DataFrame(rows)
