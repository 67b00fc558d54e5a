"""Instruction tuning: the instruction set is deterministic and held out by article, a few steps
lower the loss, the saved model reloads with the same logits, the cache key follows the
hyperparameters, and the answer checks and profile comparisons compute what they say."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from babel_lib import tune
from babel_lib.cache import Store
from babel_lib.moefy import build_partition
from babel_lib.profile import profile_languages
from babel_lib.testing import tiny_model

LANGS = ["eng", "fra", "cmn_hans"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BABEL_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run many tiny ops: one thread avoids OpenMP barrier stalls on a busy machine
    (measured: 10 tuning steps 85 s with 2 threads under load, 2.4 s with 1)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def train_set():
    return tune.instruction_set(LANGS, "calibration", seed=0)


@pytest.fixture(scope="module")
def eval_set():
    return tune.instruction_set(LANGS, "evaluation", seed=0)


def test_instruction_set_is_deterministic_and_held_out(train_set, eval_set):
    again = tune.instruction_set(LANGS, "calibration", seed=0)
    assert again.to_list() == train_set.to_list()
    other_seed = tune.instruction_set(LANGS, "calibration", seed=1)
    assert list(other_seed["prompt"]) != list(train_set["prompt"])  # phrasings drawn by the seed
    assert set(train_set["task"]) == set(tune.TASKS) == set(eval_set["task"])
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
    assert row["prompt"] == tune.PLAIN_TEMPLATE.format(instruction=row["instruction"])
    assert row["instruction"].endswith(row["input"])


def test_translation_pairs_the_parallel_paragraph(train_set):
    from babel_lib import corpus

    frame = corpus.load_corpus(["eng", "fra"], "all").to_pandas()
    row = next(r for r in train_set if r["task"] == "translate" and r["lang"] == "fra")
    ref = frame[(frame.lang == "fra") & (frame.article == row["article"]) & (frame.paragraph == row["paragraph"])]
    src = frame[(frame.lang == "eng") & (frame.article == row["article"]) & (frame.paragraph == row["paragraph"])]
    assert row["reference"] == ref["text"].iloc[0].strip()
    assert row["input"] == src["text"].iloc[0].strip()
    assert "French" in row["head"] and "English" in row["head"]


def test_continuation_split():
    head, tail = tune.split_for_continuation("one two three four five six seven eight nine ten eleven twelve")
    assert head.split() + tail.split() == "one two three four five six seven eight nine ten eleven twelve".split()
    head, tail = tune.split_for_continuation("人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。")
    assert head and tail and abs(len(head) - len(tail)) <= 1
    assert tune.split_for_continuation("short") is None


def test_encoding_marks_the_response(train_set):
    lm = tiny_model("llama")
    row = train_set[0]
    p, r = tune.encode_example(lm.tokenizer, row["prompt"], row["response"], "plain")
    assert p[0] == lm.tokenizer.bos_token_id and r[-1] == lm.tokenizer.eos_token_id
    ids, attn, targets = tune._collate([(p, r)], 0, "cpu")
    assert (targets != -100).sum() == len(r)
    # position t predicts token t + 1
    sel = (targets[0] != -100).nonzero().squeeze(1)
    assert torch.equal(ids[0, sel + 1], targets[0, sel])


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text"])
def test_response_logits_equal_full_forward(model_type, train_set):
    lm = tiny_model(model_type)
    enc = [tune.encode_example(lm.tokenizer, r["prompt"], r["response"], "plain") for r in train_set.select([0, 5])]
    ids, attn, targets = tune._collate(enc, 0, "cpu")
    with torch.no_grad():
        logits, gold = tune._response_logits(lm.model, ids, attn, targets)
        full = lm.model(input_ids=ids, attention_mask=attn).logits
    torch.testing.assert_close(logits, full[targets != -100].float(), rtol=1e-4, atol=1e-4)


def small_set(ds, n=16):
    """The n shortest examples (the byte tokenizer makes long sequences)."""
    sizes = [len((p + r).encode()) for p, r in zip(ds["prompt"], ds["response"])]
    return ds.select(sorted(np.argsort(sizes, kind="stable")[:n].tolist()))


def test_tuning_lowers_loss_reloads_and_caches(train_set, eval_set):
    lm = tiny_model("gemma3_text")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    data = small_set(train_set)
    cfg = tune.TuneConfig(steps=10, batch_size=4, max_length=512, learning_rate=3e-3, warmup_fraction=0.0)
    tuned = tune.instruction_tune(lm, data, cfg, progress=False)
    # the base model is untouched
    assert all(torch.equal(before[k], v) for k, v in lm.model.state_dict().items())
    assert not tuned.cached and len(tuned.log) == 10
    assert tuned.log["loss"].tail(3).mean() < tuned.log["loss"].head(3).mean()
    # held-out response loss drops too (the format and the end marker are learnt)
    held = small_set(eval_set, 8)
    base_loss = tune.loss_summary(tune.response_loss(lm, held, max_length=512), by=())["loss"][0]
    tuned_loss = tune.loss_summary(tune.response_loss(tuned.lm, held, max_length=512), by=())["loss"][0]
    assert tuned_loss < base_loss
    # the embedding (tied LM head) is frozen by default; the blocks moved
    sd = tuned.lm.model.state_dict()
    emb = "model.embed_tokens.weight"
    assert torch.equal(sd[emb], before[emb])
    assert not torch.equal(sd["model.layers.0.mlp.gate_proj.weight"], before["model.layers.0.mlp.gate_proj.weight"])
    assert tuned.meta["trainable_parameters"] < tuned.meta["total_parameters"]
    # the saved folder reloads with from_pretrained and gives the same logits
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tuned.path, dtype=torch.float32).eval()
    ids = torch.tensor([[1, 40, 50, 60, 70, 80]])
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids).logits, tuned.lm.model(input_ids=ids).logits)
    assert (tuned.path / tune.LOG_FILE).exists()
    # a rerun loads it from the cache
    again = tune.instruction_tune(lm, data, cfg, progress=False)
    assert again.cached and again.path == tuned.path
    assert again.lm.fingerprint == tuned.lm.fingerprint
    # no temporary folders left behind
    assert not [p for p in tuned.path.parent.iterdir() if p.name.startswith(".")]


def test_cache_key_follows_hyperparameters_data_and_model(train_set):
    lm = tiny_model("llama")
    cfg = tune.TuneConfig(steps=5)
    key = tune.tuned_key(lm, train_set, cfg)
    assert key == tune.tuned_key(lm, train_set, tune.TuneConfig(steps=5))
    for change in ({"steps": 6}, {"learning_rate": 1e-4}, {"batch_size": 2}, {"max_length": 64},
                   {"train": "ffn_attention"}, {"seed": 1}):
        assert tune.tuned_key(lm, train_set, dataclasses.replace(cfg, **change)) != key, change
    assert tune.tuned_key(lm, train_set.select(range(10)), cfg) != key
    assert tune.tuned_key(tiny_model("llama", seed=1), train_set, cfg) != key


def test_trainable_choices():
    lm = tiny_model("llama")
    total = sum(p.numel() for p in lm.model.parameters())
    sizes = {c: sum(p.numel() for _, p in tune.trainable_parameters(lm.model, c)) for c in tune.TRAIN_CHOICES}
    assert sizes["all"] == total
    assert sizes["ffn_attention"] < sizes["all_but_embeddings"] < sizes["all"]
    with pytest.raises(ValueError):
        tune.TuneConfig(train="everything")


def test_greedy_generation_matches_stepwise_argmax(eval_set):
    lm = tiny_model("gemma3_text")
    rows = eval_set.select(range(3))
    ans = tune.generate_answers(lm, rows, max_new_tokens=5, batch_size=2)
    assert len(ans) == 3 and (ans["new_tokens"] <= 5).all()
    # reference: recompute without the KV cache, token by token
    p, _ = tune.encode_example(lm.tokenizer, rows[0]["prompt"], "", "plain")
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
    alone = tune.generate_answers(lm, rows, max_new_tokens=6, batch_size=1, cache=False)
    batched = tune.generate_answers(lm, rows, max_new_tokens=6, batch_size=4)
    assert alone["answer"].tolist() == batched["answer"].tolist()
    # a second call reads the cache and returns the same table
    again = tune.generate_answers(lm, rows, max_new_tokens=6, batch_size=4)
    pd.testing.assert_frame_equal(again, batched)
    loss = tune.response_loss(lm, rows, max_length=512)
    pd.testing.assert_frame_equal(loss, tune.response_loss(lm, rows, max_length=512, cache=False))


def test_answer_checks(eval_set):
    rows = eval_set.filter(lambda r: r["task"] == "translate" and r["lang"] == "fra").select([0])
    ref, given = rows[0]["reference"], rows[0]["input"]

    answers = pd.DataFrame([
        {"row": 0, "answer": ref, "new_tokens": 10, "stopped": True},        # perfect
        {"row": 0, "answer": given, "new_tokens": 10, "stopped": False},     # copies the English source
        {"row": 0, "answer": "", "new_tokens": 0, "stopped": True},          # empty
        {"row": 0, "answer": "la la la la " * 20, "new_tokens": 64, "stopped": False},  # loops
        {"row": 0, "answer": ref + "\n\n### Instruction:\nTranslate", "new_tokens": 64, "stopped": False},  # runs on
    ])
    ident = tune.LanguageIdentifier(LANGS)
    scored = tune.score_answers(rows, answers, ident)
    assert scored["ok"].tolist() == [True, False, False, False, False]
    assert scored.loc[4, "runaway"] and scored.loc[4, "right_language"]
    assert scored.loc[1, "echo"] and not scored.loc[1, "right_language"]
    assert not scored.loc[2, "nonempty"] and scored.loc[3, "loops"]
    assert scored.loc[0, "chrf"] == pytest.approx(100.0)
    assert tune.script_share("人人生而自由", "Hans") == 1.0
    assert tune.script_share("abc人", "Latn") == 0.75
    assert ident.identify("Tous les êtres humains naissent libres et égaux en dignité et en droits.") == "fra"
    assert tune.chrf("abc", "xyz") == 0.0


def test_profile_comparisons_and_partition_overlap(tmp_path):
    lm = tiny_model("llama")
    other = tiny_model("llama", seed=1)
    store = Store(tmp_path / "s")
    part = build_partition(lm, expert_size=16, method="random", seed=0, store=store)
    texts = {"aaa": ["The quick brown fox jumps over the lazy dog."], "bbb": ["Ein zweiter Text auf Deutsch."]}
    fn = lambda lang, split: texts[lang]  # noqa: E731
    pa = profile_languages(lm, part, ["aaa", "bbb"], texts_fn=fn, store=store, progress=False, max_tokens_per_language=64)
    from babel_lib.errors import PartitionMismatchError

    with pytest.raises(PartitionMismatchError):
        profile_languages(other, part, ["aaa"], texts_fn=fn, store=store, progress=False)
    pb = profile_languages(other, part, ["aaa", "bbb"], texts_fn=fn, store=store, progress=False,
                           max_tokens_per_language=64, allow_other_model=True)
    assert pb.model_fingerprint == other.fingerprint and pb.partition_key == part.key
    same = tune.compare_profiles(pa, pa)
    assert np.allclose(same["cosine"], 1) and np.allclose(same["js"], 0, atol=1e-12)
    diff = tune.compare_profiles(pa, pb)
    assert (diff["js"] >= 0).all() and (diff["js"] <= 1).all() and (diff["cosine"] <= 1 + 1e-12).all()
    assert len(diff) == 2 * part.n_layers
    ret = tune.expert_retention(pa.frequencies(), pa.frequencies(), pa.languages, 0.4)
    assert (ret["kept_fraction"].dropna() == 1).all() and (ret["n_base"] == ret["n_tuned"]).all()
    fb = pa.frequencies()
    shared, specific = tune.shared_and_specific(fb, 0.4)
    hf = fb >= 0.4
    assert (shared == (hf[0] & hf[1])).all() and (specific[0] == (hf[0] & ~hf[1])).all()
    # partition overlap: identical = 1, relabelled = 1, random pairs near the chance level
    assert np.allclose(tune.partition_overlap(part, part), 1)
    relabel = dataclasses.replace(part, labels=(part.labels + 1) % part.n_experts)
    assert np.allclose(tune.partition_overlap(part, relabel), 1)
    rand = build_partition(lm, expert_size=16, method="random", seed=7, store=store)
    chance = tune.chance_overlap(part.n_neurons, part.n_experts)
    assert abs(tune.partition_overlap(part, rand).mean() - chance) < 0.1 and chance < 0.5


def test_weight_change_is_zero_for_the_same_model():
    lm = tiny_model("llama")
    wc = tune.weight_change(lm.model, lm.model)
    assert set(wc["part"]) == {"ffn", "attention"} and (wc["relative_change"] == 0).all()
