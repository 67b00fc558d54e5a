"""The instruction set: multilingual instructions built from the parallel UDHR, their formatting,
and their encoding as model input with the response positions marked.

No base/instruct pair of one model ships offline, so the project makes one (:mod:`babel_lib.interventions.tune`
trains it, :mod:`babel_lib.interventions.answers` measures it); this module makes the data. Everything here is
our choice (the paper does not say how its instruct models were made; they are the publishers'
releases).

**The instruction set** (:func:`instruction_set`). Instructions are written in English (our
choice: one instruction language, so that only the response language varies); the responses are
in the target languages. Four task types (:data:`TASKS`), each built from the parallel text:

- ``translate``: "Translate this paragraph from English into X" + an English paragraph; the
  reference is the parallel paragraph in X (paragraphs are paired by article and position, only in
  articles where both texts have the same number of paragraphs);
- ``to_english``: the reverse direction, a paragraph in X to translate into English;
- ``continue``: "Continue this text in X" + the first half of a paragraph in X (cut at the word
  boundary nearest the middle; at the middle character for scripts without spaces,
  :func:`split_for_continuation`); the reference is the second half;
- ``repeat``: "Repeat the following X text exactly" + a paragraph in X; the reference is the same
  paragraph (a copying task: easy, but it teaches the format and to stop).

The training set uses the corpus' calibration split, the held-out set its evaluation split
(disjoint by article, see ``babel_lib.data.corpus.EVALUATION_RULE``), so no paragraph of an evaluation
article is ever trained on. The wording of each instruction is drawn from a few English phrasings
per task (:data:`PHRASINGS`) by a seeded generator: the set is deterministic for a seed.

**Formatting** (:func:`format_example`). With a tokenizer that has a chat template, an example is
the template rendered for ``[user: instruction, assistant: reference]``; the loss covers the
assistant part including the template's end-of-turn marker. Without one (Gemma 3 270M base: its
GGUF tokenizer carries no chat template; the tiny test tokenizer) the documented plain template
:data:`PLAIN_TEMPLATE` is used::

    <bos>### Instruction:
    {instruction}

    ### Response:
    {reference}<eos>

and a model tuned on it is saved with the same format as a jinja chat template
(:data:`PLAIN_CHAT_TEMPLATE`), so the tuned folder formats its own prompts.

**Encoding** (:func:`encode_example`, :func:`encode_all`, :func:`collate`,
:func:`response_logits`): prompt and response token ids; right-padded batches whose targets mark
the positions that predict response tokens; the logits at those positions only (the LM head, 70%
of a Gemma forward pass, is applied there alone). Training and measurement share these, so the
training objective and the held-out loss are the same quantity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from babel_lib.core.adapters import backbone
from babel_lib.core.cache import cache_key
from babel_lib.data import corpus

TASKS = ("translate", "to_english", "continue", "repeat")

#: English phrasings of each task's instruction; {target} / {source} are English language names.
PHRASINGS: dict[str, tuple[str, ...]] = {
    "translate": (
        "Translate this paragraph from {source} into {target}.",
        "Translate the following text from {source} to {target}.",
        "Render this {source} paragraph in {target}.",
    ),
    "to_english": (
        "Translate this paragraph from {source} into {target}.",
        "Translate the following {source} text into {target}.",
        "What does this {source} paragraph say? Answer with its translation into {target}.",
    ),
    "continue": (
        "Continue this text in {target}.",
        "Here is the beginning of a paragraph in {target}. Write how it continues, in {target}.",
        "Complete the following {target} text.",
    ),
    "repeat": (
        "Repeat the following {target} text exactly.",
        "Copy this text in {target} word for word.",
        "Write out this {target} paragraph again, unchanged.",
    ),
}

#: The plain template (used when the tokenizer has no chat template): prompt part, then the response.
PLAIN_TEMPLATE = "### Instruction:\n{instruction}\n\n### Response:\n"
#: The same format as a jinja chat template (saved with a model tuned on the plain template).
PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'user' %}### Instruction:\n{{ message['content'] }}\n\n### Response:\n"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}{% endif %}"
    "{% endfor %}"
)
#: The turn markers of the plain template (an answer that writes them runs on into a new turn).
PLAIN_MARKERS = ("### Instruction", "### Response")
MIN_CONTINUE_CHARS = 40
#: Target of the positions that predict no response token (torch's cross-entropy ignore index).
IGNORE = -100

language_name = corpus.language_name  # re-exported: the instruction set's wording uses it


# ---------------------------------------------------------------------------- building the set
def _pairs(source: str, target: str, split: str) -> list[tuple[int, int, str, str]]:
    """(article, paragraph, source text, target text) for paragraphs paired by position, in
    articles where both texts have the same number of paragraphs."""
    frame = corpus.load_corpus([source, target], split).to_pandas()
    a, b = frame[frame["lang"] == source], frame[frame["lang"] == target]
    out = []
    for article, rows_a in a.groupby("article", sort=True):
        rows_b = b[b["article"] == article]
        if len(rows_a) != len(rows_b) or rows_a.empty:
            continue
        for (_, ra), (_, rb) in zip(rows_a.sort_values("paragraph").iterrows(), rows_b.sort_values("paragraph").iterrows()):
            if ra["text"].strip() and rb["text"].strip():
                out.append((int(article), int(ra["paragraph"]), ra["text"].strip(), rb["text"].strip()))
    return out


def split_for_continuation(text: str) -> tuple[str, str] | None:
    """(beginning, rest) of a paragraph cut near its middle: at the word boundary closest to the
    middle character when the text has at least 4 words, else at the middle character. None when
    the text is shorter than MIN_CONTINUE_CHARS."""
    text = text.strip()
    if len(text) < MIN_CONTINUE_CHARS:
        return None
    mid = len(text) // 2
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if len(spaces) >= 3:
        cut = min(spaces, key=lambda i: abs(i - mid))
        head, tail = text[:cut], text[cut + 1:]
    else:
        head, tail = text[:mid], text[mid:]
    if not head.strip() or not tail.strip():
        return None
    return head.strip(), tail.strip()


def has_chat_template(tokenizer) -> bool:
    """The tokenizer carries a chat template it can apply."""
    return bool(getattr(tokenizer, "chat_template", None)) and hasattr(tokenizer, "apply_chat_template")


def format_example(tokenizer, instruction: str, reference: str, template: str = "auto") -> tuple[str, str, str]:
    """(template used, prompt text, response text) of one example.

    template: 'auto' (the tokenizer's chat template when it has one, else 'plain'), 'chat' or
    'plain'. For 'chat' the response text includes the template's end-of-turn marker; for 'plain'
    it is the bare reference (the EOS token is appended at encoding, :func:`encode_example`).
    """
    if template == "auto":
        template = "chat" if has_chat_template(tokenizer) else "plain"
    if template == "plain":
        return "plain", PLAIN_TEMPLATE.format(instruction=instruction), reference
    if template != "chat":
        raise ValueError(f"template must be 'auto', 'chat' or 'plain', got {template!r}")
    if not has_chat_template(tokenizer):
        raise ValueError("template='chat' needs a tokenizer with a chat template; use 'plain' or 'auto'")
    user = [{"role": "user", "content": instruction}]
    prompt = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(user + [{"role": "assistant", "content": reference}], tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template does not render the conversation as prompt + response; "
                         "use template='plain'")
    return "chat", prompt, full[len(prompt):]


def instruction_set(
    languages="paper",
    split: str = "calibration",
    tasks=TASKS,
    tokenizer=None,
    template: str = "auto",
    source_language: str = "eng",
    seed: int = 0,
):
    """The multilingual instruction set as a ``datasets.Dataset``, deterministic for ``seed``.

    languages: any selection understood by ``corpus.resolve_languages`` (default: the paper's
    nine; more with e.g. 'wide:30'). split: 'calibration' (training) or 'evaluation' (held out).
    tasks: a subset of :data:`TASKS`. tokenizer: decides the formatting (see
    :func:`format_example`); None formats with the plain template. source_language: the other
    side of the translation tasks (languages equal to it get no translation examples).

    Columns: task, lang (the response's language), source_lang, article, paragraph, split, head
    (the instruction line alone), instruction (the English instruction with its input text), input
    (the input text alone), reference (the expected answer), template ('plain' or 'chat'), prompt,
    response (formatted).
    """
    import datasets

    if split not in ("calibration", "evaluation"):
        raise ValueError(f"split must be 'calibration' or 'evaluation', got {split!r}")
    unknown = set(tasks) - set(TASKS)
    if unknown or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {tasks!r}")
    langs = corpus.resolve_languages(languages)
    source = corpus.resolve_languages([source_language])[0]
    rng = np.random.default_rng(seed)
    rows = []

    def add(task, lang, src_lang, article, paragraph, given, reference, names):
        phrasing = PHRASINGS[task][int(rng.integers(len(PHRASINGS[task])))]
        head = phrasing.format(**names)
        instruction = f"{head}\n\n{given}"
        used, prompt, response = format_example(tokenizer, instruction, reference, template) if tokenizer is not None \
            else ("plain", PLAIN_TEMPLATE.format(instruction=instruction), reference)
        rows.append({"task": task, "lang": lang, "source_lang": src_lang, "article": article, "paragraph": paragraph,
                     "split": split, "head": head, "instruction": instruction, "input": given, "reference": reference,
                     "template": used, "prompt": prompt, "response": response})

    for lang in langs:
        own = corpus.load_corpus([lang], split).to_pandas().sort_values(["article", "paragraph"], kind="stable")
        for task in tasks:  # task order fixed, so the seeded draws are reproducible
            if task in ("translate", "to_english"):
                if lang == source:
                    continue
                for article, paragraph, src_text, tgt_text in _pairs(source, lang, split):
                    if task == "translate":
                        add(task, lang, source, article, paragraph, src_text, tgt_text,
                            {"source": language_name(source), "target": language_name(lang)})
                    else:
                        add(task, source, lang, article, paragraph, tgt_text, src_text,
                            {"source": language_name(lang), "target": language_name(source)})
            elif task == "continue":
                for _, r in own.iterrows():
                    cut = split_for_continuation(r["text"])
                    if cut:
                        add(task, lang, lang, int(r["article"]), int(r["paragraph"]), cut[0], cut[1],
                            {"target": language_name(lang)})
            else:
                for _, r in own.iterrows():
                    if r["text"].strip():
                        add(task, lang, lang, int(r["article"]), int(r["paragraph"]), r["text"].strip(),
                            r["text"].strip(), {"target": language_name(lang)})
    return datasets.Dataset.from_pandas(pd.DataFrame(rows), preserve_index=False)


def continuation_set(languages="paper", split: str = "calibration", seed: int = 0):
    """The placebo of the instruction set: the same languages' paragraphs as plain text to continue,
    with no instruction and no template (prompt: the first half of a paragraph, response: the rest,
    :func:`split_for_continuation`), every paragraph once, in a seeded order. Columns as
    :func:`instruction_set` (task 'plain text', template 'plain': BOS before, EOS after, as
    :func:`encode_example` writes it). Tuned with the same recipe, it shows how far any fine-tune of
    this size moves a profile."""
    import datasets

    if split not in ("calibration", "evaluation"):
        raise ValueError(f"split must be 'calibration' or 'evaluation', got {split!r}")
    rows = []
    for lang in corpus.resolve_languages(languages):
        own = corpus.load_corpus([lang], split).to_pandas().sort_values(["article", "paragraph"], kind="stable")
        for _, r in own.iterrows():
            cut = split_for_continuation(r["text"])
            if cut:
                rows.append({"task": "plain text", "lang": lang, "source_lang": lang, "article": int(r["article"]),
                             "paragraph": int(r["paragraph"]), "split": split, "head": "", "instruction": "",
                             "input": cut[0], "reference": cut[1], "template": "plain", "prompt": cut[0],
                             "response": cut[1]})
    order = np.random.default_rng(seed).permutation(len(rows))
    return datasets.Dataset.from_pandas(pd.DataFrame([rows[i] for i in order]), preserve_index=False)


def dataset_hash(dataset) -> str:
    """Content hash (16 hex chars) of an instruction set's prompts, responses, tasks and languages."""
    cols = {c: list(dataset[c]) for c in ("task", "lang", "template", "prompt", "response")}
    return cache_key(cols)[:16]


# ---------------------------------------------------------------------------- encoding
def encode_example(tokenizer, prompt: str, response: str, template: str) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids). Plain: BOS + prompt, response + EOS. Chat: the rendered texts
    tokenised without added special tokens (the template writes its own)."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    r = tokenizer(response, add_special_tokens=False)["input_ids"]
    if template == "plain":
        if tokenizer.bos_token_id is not None:
            p = [tokenizer.bos_token_id] + p
        r = r + [tokenizer.eos_token_id]
    return list(p), list(r)


def stop_token_ids(tokenizer, template: str) -> list[int]:
    """Token ids that end an answer: EOS, and for a chat template the first token of its end-of-turn marker."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    if template == "chat":
        _, _, resp = format_example(tokenizer, "x", "y", "chat")
        tail = resp[resp.index("y") + 1:] if "y" in resp else ""
        toks = tokenizer(tail, add_special_tokens=False)["input_ids"] if tail.strip() else []
        if toks:
            ids.add(toks[0])
    return sorted(i for i in ids if i is not None)


def encode_all(tokenizer, dataset, max_length: int) -> tuple[list[tuple[list[int], list[int]]], np.ndarray]:
    """Encoded (prompt ids, response ids) of the examples that fit in max_length tokens, and the
    indices of the rows kept (examples with an empty response are left out too)."""
    out, kept = [], []
    for i, row in enumerate(dataset):
        p, r = encode_example(tokenizer, row["prompt"], row["response"], row["template"])
        if len(p) + len(r) <= max_length and r:
            out.append((p, r))
            kept.append(i)
    return out, np.array(kept, dtype=np.int64)


def collate(batch, pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded input ids, attention mask, and per-position targets (:data:`IGNORE` outside
    responses). targets[b, t] is the token that position t must predict (ids[b, t + 1])."""
    width = max(len(p) + len(r) for p, r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    targets = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    for b, (p, r) in enumerate(batch):
        seq = p + r
        ids[b, : len(seq)] = torch.tensor(seq)
        attn[b, : len(seq)] = 1
        targets[b, len(p) - 1: len(seq) - 1] = torch.tensor(r)
    return ids.to(device), attn.to(device), targets.to(device)


def response_logits(model, ids, attn, targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (fp32) at the positions that predict response tokens, and those tokens.
    The LM head runs on those positions only (final-logit soft-capping applied as the model does)."""
    hidden = backbone(model)(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
    sel = targets != IGNORE
    logits = model.get_output_embeddings()(hidden[sel]).float()
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits, targets[sel]
