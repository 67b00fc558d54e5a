"""Instruction tuning: a few steps lower the training and held-out loss, the base model is left
untouched, the saved model reloads with the same logits, the cache key follows the
hyperparameters, data, model and recipe, and the weight change is measured per layer and part."""

import dataclasses

import numpy as np
import pytest
import torch

from babel_lib.core.errors import ModelFolderError
from babel_lib.interventions import answers, tune
from babel_lib.testing import tiny_model

pytestmark = pytest.mark.usefixtures("isolated_cache", "one_thread")



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
    base_loss = answers.loss_summary(answers.response_loss(lm, held, max_length=512), by=())["loss"][0]
    tuned_loss = answers.loss_summary(answers.response_loss(tuned.lm, held, max_length=512), by=())["loss"][0]
    assert tuned_loss < base_loss
    # the embedding (tied LM head) is frozen by default; the blocks moved
    sd = tuned.lm.model.state_dict()
    emb = "model.embed_tokens.weight"
    assert torch.equal(sd[emb], before[emb])
    assert not torch.equal(sd["model.layers.0.mlp.gate_proj.weight"], before["model.layers.0.mlp.gate_proj.weight"])
    assert tuned.meta["trainable_parameters"] < tuned.meta["total_parameters"]
    assert tuned.meta["recipe"] == tune.RECIPE_VERSION and "10 steps of 4 examples" in tuned.describe()
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
    assert tune.load_tuned(tuned.meta["key"], dtype="float32", device="cpu", tokenizer=lm.tokenizer).path == tuned.path
    # no temporary folders left behind
    assert not [p for p in tuned.path.parent.iterdir() if p.name.startswith(".")]


def _damage(path, how):
    """Damage a file as a full disk or a killed write would: truncated, or emptied."""
    path.write_bytes(path.read_bytes()[:-16] if how == "truncated" else b"")


@pytest.mark.parametrize("file, how", [("model.safetensors", "truncated"), (tune.META_FILE, "truncated"),
                                       (tune.LOG_FILE, "emptied")])
def test_damaged_tuned_folder_is_retrained_or_named(file, how, train_set):
    """Every file of a tuned folder that is read back is checked: a damaged one retrains (with a warning) instead
    of failing on every run."""
    lm = tiny_model("llama")
    data = small_set(train_set, 4)
    cfg = tune.TuneConfig(steps=2, batch_size=2, max_length=512, learning_rate=3e-3, warmup_fraction=0.0)
    tuned = tune.instruction_tune(lm, data, cfg, progress=False)
    _damage(tuned.path / file, how)
    with pytest.raises(ModelFolderError, match=f"damaged.*{file}"):
        tune.load_tuned(tuned.path, dtype="float32", device="cpu", tokenizer=lm.tokenizer)
    with pytest.warns(UserWarning, match="damaged"):
        again = tune.instruction_tune(lm, data, cfg, progress=False)
    assert not again.cached and tune.load_tuned(again.path, dtype="float32", device="cpu",
                                                tokenizer=lm.tokenizer).path == tuned.path


def test_bf16_tuning_keeps_fp32_masters(train_set):
    lm = tiny_model("llama", dtype=torch.bfloat16)
    cfg = tune.TuneConfig(steps=3, batch_size=2, max_length=512, learning_rate=3e-3, warmup_fraction=0.0)
    tuned = tune.instruction_tune(lm, small_set(train_set, 6), cfg, progress=False)
    assert tuned.lm.model.dtype == torch.bfloat16 and tuned.meta["compute_dtype"] == "bfloat16"
    assert np.isfinite(tuned.log["loss"]).all()


def test_keyword_hyperparameters_and_errors(train_set):
    lm = tiny_model("llama")
    data = small_set(train_set, 4)
    with pytest.raises(ValueError, match="either config"):
        tune.instruction_tune(lm, data, tune.TuneConfig(steps=1), steps=2, progress=False)
    with pytest.raises(ValueError, match="no example fits"):
        tune.instruction_tune(lm, data, steps=1, max_length=8, progress=False)


def test_cache_key_follows_hyperparameters_data_model_and_recipe(train_set, monkeypatch):
    lm = tiny_model("llama")
    cfg = tune.TuneConfig(steps=5)
    key = tune.tuned_key(lm, train_set, cfg)
    assert key == tune.tuned_key(lm, train_set, tune.TuneConfig(steps=5))
    for change in ({"steps": 6}, {"learning_rate": 1e-4}, {"batch_size": 2}, {"max_length": 64},
                   {"train": "ffn_attention"}, {"seed": 1}, {"warmup_fraction": 0.0}, {"grad_clip": 0.5}):
        assert tune.tuned_key(lm, train_set, dataclasses.replace(cfg, **change)) != key, change
    assert tune.tuned_key(lm, train_set.select(range(10)), cfg) != key
    assert tune.tuned_key(tiny_model("llama", seed=1), train_set, cfg) != key
    monkeypatch.setattr(tune, "RECIPE_VERSION", tune.RECIPE_VERSION + 1)
    assert tune.tuned_key(lm, train_set, cfg) != key
    assert tune.tuned_folder(key).name == key[:16]


def test_default_recipe():
    cfg = tune.TuneConfig()
    assert (cfg.steps, cfg.batch_size, cfg.max_length, cfg.learning_rate, cfg.train) == \
        (50, 4, 128, 5e-5, "all_but_embeddings")
    assert [tune._lr_at(s, cfg) for s in (0, 4)] == pytest.approx([cfg.learning_rate / 5, cfg.learning_rate])
    assert tune._lr_at(cfg.steps - 1, cfg) > 0 and tune._lr_at(cfg.steps, cfg) == 0


def test_batches_are_seeded_and_cover_an_epoch():
    cfg = tune.TuneConfig(steps=7, batch_size=3)
    lengths = np.arange(20)
    b = tune._batches(20, cfg, lengths)
    assert b == tune._batches(20, cfg, lengths) and len(b) == 7
    # an epoch of 20 examples: six batches of 3, then the 2 left over, each example once
    assert [len(x) for x in b] == [3] * 6 + [2] and sorted(i for x in b for i in x) == list(range(20))
    # within a window of 16 batches, longest first (less padding)
    assert b[0] == [19, 18, 17]
    many = np.arange(200)
    assert tune._batches(200, cfg, many) != tune._batches(200, dataclasses.replace(cfg, seed=1), many)


def test_trainable_choices():
    lm = tiny_model("llama")
    total = sum(p.numel() for p in lm.model.parameters())
    sizes = {c: sum(p.numel() for _, p in tune.trainable_parameters(lm.model, c)) for c in tune.TRAIN_CHOICES}
    assert sizes["all"] == total
    assert sizes["ffn_attention"] < sizes["all_but_embeddings"] < sizes["all"]
    with pytest.raises(ValueError):
        tune.TuneConfig(train="everything")
    with pytest.raises(ValueError):
        tune.trainable_parameters(lm.model, "everything")


def test_fused_adamw_where_available():
    p = [torch.nn.Parameter(torch.zeros(3))]
    opt = tune._adamw(p, tune.TuneConfig())
    assert opt.defaults["fused"] is True  # CPU has a fused AdamW in the supported torch versions


def test_threads_are_restored(monkeypatch):
    before = torch.get_num_threads()
    with tune._threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with tune._threads(None):
        assert torch.get_num_threads() == before
    monkeypatch.setattr(tune.os, "getloadavg", lambda: (1e6, 0, 0))
    assert tune.auto_threads() == 1
    monkeypatch.setattr(tune.os, "getloadavg", lambda: (0.0, 0, 0))
    assert tune.auto_threads() is None


def test_weight_change_is_zero_for_the_same_model_and_sees_a_change():
    lm = tiny_model("llama")
    wc = tune.weight_change(lm.model, lm.model)
    assert set(wc["part"]) == {"ffn", "attention"} and (wc["relative_change"] == 0).all()
    other = tiny_model("llama")
    with torch.no_grad():
        w = other.model.model.layers[1].mlp.down_proj.weight
        w.mul_(1.5)
    wc = tune.weight_change(lm.model, other.model).set_index(["layer", "part"])["relative_change"]
    assert wc[(0, "ffn")] == 0 and wc[(1, "attention")] == 0 and wc[(1, "ffn")] > 0


def test_health_check_names_the_tuned_folders_files():
    from babel_lib.core import validate

    assert (validate.TUNING_META, validate.TUNING_LOG) == (tune.META_FILE, tune.LOG_FILE)
