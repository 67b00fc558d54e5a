"""Measuring a tuned model: the held-out loss is the response tokens' cross-entropy, greedy answers
equal token-by-token decoding (also in left-padded batches), results are cached, and the answer
checks and sacrebleu's chrF compute what they say."""

import numpy as np
import pandas as pd
import pytest
import torch

from babel_lib.data import instructions
from babel_lib.interventions import answers
from babel_lib.testing import tiny_model

pytestmark = pytest.mark.usefixtures("isolated_cache", "one_thread")

from conftest import INSTRUCTION_LANGS as LANGS  # noqa: E402 (the fixtures' languages)


def test_response_loss_is_the_response_cross_entropy(eval_set):
    lm = tiny_model("llama")
    rows = eval_set.select([0, 7])
    frame = answers.response_loss(lm, rows, max_length=512, cache=False)
    assert frame["row"].tolist() == [0, 1] and frame["task"].tolist() == list(rows["task"])
    for i, r in enumerate(rows):
        p, resp = instructions.encode_example(lm.tokenizer, r["prompt"], r["response"], r["template"])
        ids = torch.tensor([p + resp])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0].float(), -1)
        want = -sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(resp))
        assert frame.loc[i, "tokens"] == len(resp)
        assert frame.loc[i, "nll"] == pytest.approx(want, rel=1e-4)
    # examples longer than max_length are skipped
    short = answers.response_loss(lm, rows, max_length=int(frame["tokens"].min()) + 1, cache=False)
    assert len(short) < len(frame)


def test_loss_summary_weights_by_tokens():
    frame = pd.DataFrame({"task": ["a", "a", "b"], "lang": ["x", "y", "x"], "nll": [2.0, 4.0, 3.0],
                          "tokens": [1, 3, 3]})
    by_task = answers.loss_summary(frame).set_index("task")
    assert by_task.loc["a", "loss"] == pytest.approx(6 / 4) and by_task.loc["b", "loss"] == pytest.approx(1.0)
    assert by_task.loc["b", "perplexity"] == pytest.approx(np.e)
    overall = answers.loss_summary(frame, by=())
    assert overall["loss"][0] == pytest.approx(9 / 7) and overall["tokens"][0] == 7


def test_sample_prompts_is_deterministic_per_task_and_language(eval_set):
    a = answers.sample_prompts(eval_set, 2, seed=0)
    assert a.to_list() == answers.sample_prompts(eval_set, 2, seed=0).to_list()
    keys = ["lang", "source_lang", "task"]
    counts = a.to_pandas().groupby(keys).size()
    assert (counts <= 2).all() and len(counts) == eval_set.to_pandas().groupby(keys).ngroups
    # translation into English is sampled for every source language, not once for English
    to_english = a.to_pandas().query("task == 'to_english'")
    assert set(to_english["source_lang"]) == set(LANGS) - {"eng"} and len(to_english) == 2 * (len(LANGS) - 1)


def test_greedy_generation_matches_stepwise_argmax(eval_set):
    lm = tiny_model("gemma3_text")
    rows = eval_set.select(range(3))
    ans = answers.generate_answers(lm, rows, max_new_tokens=5, batch_size=2)
    assert len(ans) == 3 and (ans["new_tokens"] <= 5).all()
    # reference: recompute without the KV cache, token by token
    p, _ = instructions.encode_example(lm.tokenizer, rows[0]["prompt"], "", "plain")
    ids = torch.tensor([p])
    new = []
    with torch.no_grad():
        for _ in range(5):
            nxt = int(lm.model(input_ids=ids).logits[0, -1].argmax())
            new.append(nxt)
            if nxt == lm.tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    body = new[:-1] if new[-1] == lm.tokenizer.eos_token_id else new
    assert ans.loc[0, "answer"] == lm.tokenizer.decode(body).strip()


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_left_padded_batches_give_the_unbatched_answers(model_type, eval_set):
    lm = tiny_model(model_type)
    rows = eval_set.select([0, 7, 20, 33])  # prompts of different lengths
    alone = answers.generate_answers(lm, rows, max_new_tokens=6, batch_size=1, cache=False)
    batched = answers.generate_answers(lm, rows, max_new_tokens=6, batch_size=4)
    assert alone["answer"].tolist() == batched["answer"].tolist()
    # a second call reads the cache and returns the same table
    again = answers.generate_answers(lm, rows, max_new_tokens=6, batch_size=4)
    pd.testing.assert_frame_equal(again, batched)
    loss = answers.response_loss(lm, rows, max_length=512)
    pd.testing.assert_frame_equal(loss, answers.response_loss(lm, rows, max_length=512, cache=False))


def test_greedy_decode_runs_the_output_layer_on_the_last_position_only(eval_set):
    lm = tiny_model("gemma3_text")
    widths = []
    handle = lm.model.register_forward_hook(lambda m, args, out: widths.append(out.logits.shape[1]))
    try:
        answers.generate_answers(lm, eval_set.select(range(2)), max_new_tokens=3, batch_size=2, cache=False)
    finally:
        handle.remove()
    assert widths and set(widths) == {1}


def test_greedy_decode_stops_when_every_row_stopped():
    lm = tiny_model("llama")
    ids = torch.tensor([[1, 40, 50], [0, 1, 60]])
    attn = torch.tensor([[1, 1, 1], [0, 1, 1]])
    with torch.no_grad():
        first = lm.model(input_ids=ids, attention_mask=attn,
                         position_ids=(attn.cumsum(-1) - 1).clamp(min=0)).logits[:, -1].argmax(-1)
        new = answers.greedy_decode(lm.model, ids, attn, 10, stop=first.unique())
    assert new.shape == (2, 1) and torch.equal(new[:, 0], first)


def test_chrf_is_sacrebleus_chrf2():
    # hand-checked: hypothesis "ab", reference "abc" (whitespace ignored). Orders 1 and 2 occur on
    # both sides: P1 = 2/2, R1 = 2/3; P2 = 1/1, R2 = 1/2; orders 3-6 are left out (effective order).
    # Mean P = 1, mean R = 7/12; chrF2 = 100 * 5 P R / (4 P + R) = 100 * 7/11.
    assert answers.chrf("ab", "abc") == pytest.approx(700 / 11)
    assert answers.chrf("a b", "abc") == pytest.approx(700 / 11)  # whitespace removed
    assert answers.chrf("same text", "same text") == pytest.approx(100.0)
    assert answers.chrf("abc", "xyz") == 0.0 and answers.chrf("", "abc") == 0.0
    from sacrebleu.metrics import CHRF

    pair = ("Tous les êtres humains naissent libres.", "Tous les êtres humains naissent libres et égaux.")
    assert answers.chrf(*pair) == pytest.approx(CHRF().sentence_score(pair[0], [pair[1]]).score)


def test_script_share_and_language_identifier():
    assert answers.script_share("人人生而自由", "Hans") == 1.0
    assert answers.script_share("abc人", "Latn") == 0.75
    assert answers.script_share("123 !", "Latn") is None
    assert answers.script_share("abc", "Zzzz_not_a_script") is None
    ident = answers.LanguageIdentifier(LANGS)
    assert ident.identify("Tous les êtres humains naissent libres et égaux en dignité et en droits.") == "fra"
    assert ident.identify("人人生而自由，在尊严和权利上一律平等。") == "cmn_hans"
    assert ident.identify("   ") is None
    assert set(ident.scores("All human beings are born free.")) == set(LANGS)


def test_answer_checks(eval_set):
    rows = eval_set.filter(lambda r: r["task"] == "translate" and r["lang"] == "fra").select([0])
    ref, given = rows[0]["reference"], rows[0]["input"]

    table = pd.DataFrame([
        {"row": 0, "answer": ref, "new_tokens": 10, "stopped": True},        # perfect
        {"row": 0, "answer": given, "new_tokens": 10, "stopped": False},     # copies the English source
        {"row": 0, "answer": "", "new_tokens": 0, "stopped": True},          # empty
        {"row": 0, "answer": "la la la la " * 20, "new_tokens": 64, "stopped": False},  # loops
        {"row": 0, "answer": ref + "\n\n### Instruction:\nTranslate", "new_tokens": 64, "stopped": False},  # runs on
    ])
    ident = answers.LanguageIdentifier(LANGS)
    scored = answers.score_answers(rows, table, ident)
    assert scored["ok"].tolist() == [True, False, False, False, False]
    assert scored.loc[4, "runaway"] and scored.loc[4, "right_language"]
    assert scored.loc[1, "echo"] and not scored.loc[1, "right_language"]
    assert not scored.loc[2, "nonempty"] and scored.loc[3, "loops"]
    assert scored.loc[0, "chrf"] == pytest.approx(100.0)
    assert scored["stopped"].tolist() == [True, False, True, False, False]
