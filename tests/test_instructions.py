"""The instruction set: deterministic for a seed, held out by article, translation paired with the
parallel paragraph, continuation cut at a word boundary, the plain and chat formats, and the
encoding that marks exactly the response tokens as targets."""

import numpy as np
import pytest
import torch
from conftest import INSTRUCTION_LANGS as LANGS  # noqa: E402 (the fixtures' languages)

from babel_lib.data import instructions
from babel_lib.testing import ByteTokenizer, tiny_model


def test_instruction_set_is_deterministic_and_held_out(train_set, eval_set):
    again = instructions.instruction_set(LANGS, "calibration", seed=0)
    assert again.to_list() == train_set.to_list()
    assert instructions.dataset_hash(again) == instructions.dataset_hash(train_set)
    other_seed = instructions.instruction_set(LANGS, "calibration", seed=1)
    assert list(other_seed["prompt"]) != list(train_set["prompt"])  # phrasings drawn by the seed
    assert instructions.dataset_hash(other_seed) != instructions.dataset_hash(train_set)
    assert set(train_set["task"]) == set(instructions.TASKS) == set(eval_set["task"])
    # English gets no translation into itself; the other languages get both directions
    assert not any(t == "translate" and l == "eng" for t, l in zip(train_set["task"], train_set["lang"]))
    assert {l for t, l in zip(train_set["task"], train_set["lang"]) if t == "to_english"} == {"eng"}
    # held out by article: no article, and no reference text, in both
    assert set(train_set["article"]).isdisjoint(eval_set["article"])
    assert set(train_set["reference"]).isdisjoint(eval_set["reference"])
    assert all(a % 3 == 0 and a > 0 for a in eval_set["article"])
    # the byte tokenizer has no chat template: the plain template is used
    row = train_set[0]
    assert row["template"] == "plain"
    assert row["prompt"] == instructions.PLAIN_TEMPLATE.format(instruction=row["instruction"])
    assert row["instruction"].endswith(row["input"]) and row["instruction"].startswith(row["head"])


def test_instruction_set_rejects_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        instructions.instruction_set(LANGS, "train")
    with pytest.raises(ValueError, match="tasks"):
        instructions.instruction_set(LANGS, tasks=("summarise",))


def test_tasks_subset(train_set):
    only = instructions.instruction_set(["eng", "fra"], "calibration", tasks=("repeat",), seed=0)
    assert set(only["task"]) == {"repeat"} and all(r == i for r, i in zip(only["reference"], only["input"]))


def test_translation_pairs_the_parallel_paragraph(train_set):
    from babel_lib.data import corpus

    frame = corpus.load_corpus(["eng", "fra"], "all").to_pandas()
    row = next(r for r in train_set if r["task"] == "translate" and r["lang"] == "fra")
    ref = frame[(frame.lang == "fra") & (frame.article == row["article"]) & (frame.paragraph == row["paragraph"])]
    src = frame[(frame.lang == "eng") & (frame.article == row["article"]) & (frame.paragraph == row["paragraph"])]
    assert row["reference"] == ref["text"].iloc[0].strip()
    assert row["input"] == src["text"].iloc[0].strip()
    assert "French" in row["head"] and "English" in row["head"]


def test_continuation_split():
    text = "one two three four five six seven eight nine ten eleven twelve"
    head, tail = instructions.split_for_continuation(text)
    assert head.split() + tail.split() == text.split()
    head, tail = instructions.split_for_continuation("人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。")
    assert head and tail and abs(len(head) - len(tail)) <= 1
    assert instructions.split_for_continuation("short") is None


class ChatTokenizer(ByteTokenizer):
    """The byte tokenizer with a toy chat template: <u>...</u><a>...</a>."""

    chat_template = "toy"

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=False):
        out = "".join(f"<u>{m['content']}</u>" if m["role"] == "user" else f"<a>{m['content']}</a>" for m in messages)
        return out + ("<a>" if add_generation_prompt else "")


def test_plain_and_chat_formats():
    plain = ByteTokenizer()
    assert instructions.format_example(plain, "Do it.", "Done.") == \
        ("plain", instructions.PLAIN_TEMPLATE.format(instruction="Do it."), "Done.")
    with pytest.raises(ValueError, match="chat template"):
        instructions.format_example(plain, "Do it.", "Done.", "chat")
    with pytest.raises(ValueError, match="template must be"):
        instructions.format_example(plain, "Do it.", "Done.", "fancy")
    chat = ChatTokenizer()
    assert instructions.has_chat_template(chat) and not instructions.has_chat_template(plain)
    assert instructions.format_example(chat, "Do it.", "Done.") == ("chat", "<u>Do it.</u><a>", "Done.</a>")
    # the chat response carries its end-of-turn marker; plain responses get EOS at encoding
    p, r = instructions.encode_example(chat, "<u>Do it.</u><a>", "Done.</a>", "chat")
    assert p == chat("<u>Do it.</u><a>", add_special_tokens=False)["input_ids"] and r[-1] != chat.eos_token_id
    assert instructions.stop_token_ids(plain, "plain") == [plain.eos_token_id]
    assert instructions.stop_token_ids(chat, "chat") == sorted({chat.eos_token_id, ord("<") + 4})


def test_encoding_marks_the_response(train_set):
    tok = ByteTokenizer()
    row = train_set[0]
    p, r = instructions.encode_example(tok, row["prompt"], row["response"], "plain")
    assert p[0] == tok.bos_token_id and r[-1] == tok.eos_token_id
    ids, attn, targets = instructions.collate([(p, r), (p[:5], r[:3])], 0, "cpu")
    assert ids.shape == attn.shape == targets.shape == (2, len(p) + len(r))
    assert (targets[0] != instructions.IGNORE).sum() == len(r) and (targets[1] != instructions.IGNORE).sum() == 3
    assert int(attn[1].sum()) == 8 and (ids[1, 8:] == 0).all()
    # position t predicts token t + 1
    sel = (targets[0] != instructions.IGNORE).nonzero().squeeze(1)
    assert torch.equal(ids[0, sel + 1], targets[0, sel])


def test_encode_all_keeps_what_fits(train_set):
    tok = ByteTokenizer()
    rows = train_set.select(range(20))
    sizes = [sum(map(len, instructions.encode_example(tok, r["prompt"], r["response"], r["template"]))) for r in rows]
    limit = int(np.median(sizes))
    encoded, kept = instructions.encode_all(tok, rows, limit)
    assert kept.tolist() == [i for i, s in enumerate(sizes) if s <= limit]
    assert all(len(p) + len(r) <= limit for p, r in encoded)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_response_logits_equal_full_forward(model_type, train_set):
    lm = tiny_model(model_type)
    enc = [instructions.encode_example(lm.tokenizer, r["prompt"], r["response"], "plain")
           for r in train_set.select([0, 5])]
    ids, attn, targets = instructions.collate(enc, 0, "cpu")
    with torch.no_grad():
        logits, gold = instructions.response_logits(lm.model, ids, attn, targets)
        full = lm.model(input_ids=ids, attention_mask=attn).logits
    torch.testing.assert_close(logits, full[targets != instructions.IGNORE].float(), rtol=1e-4, atol=1e-4)
    assert torch.equal(gold, targets[targets != instructions.IGNORE])
