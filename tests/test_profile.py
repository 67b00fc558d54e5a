"""The profiler counts exactly what the definitions say, caches per language, and survives bad cache files."""

import numpy as np
import pytest
import torch

from babel_lib.adapters import ffn_layers
from babel_lib.cache import Store
from babel_lib.hooks import ffn_pre_hooks
from babel_lib.moefy import build_partition
from babel_lib.profile import Definitions, build_sequences, count_sequences, profile_languages
from babel_lib.testing import tiny_model

TEXTS = {
    "aaa": ["The quick brown fox jumps over the lazy dog.", "A second paragraph, somewhat longer than the first."],
    "bbb": ["Ein zweiter Text auf Deutsch, mit Umlauten: äöü.", "Noch ein Absatz."],
}


def texts_fn(lang, split):
    return TEXTS[lang]


def manual_counts(lm, partition, seqs, definitions):
    """Reference: plain hooks (no permutation), per-token loops over experts by label."""
    values = {}
    counts = np.zeros((partition.n_layers, partition.n_experts), dtype=np.int64)
    for seq in seqs:
        with ffn_pre_hooks(lm.model, lambda i, a: values.__setitem__(i, a.detach().double().reshape(-1, a.shape[-1]))):
            lm.model.base_model(input_ids=torch.tensor([seq]))
        for layer in range(partition.n_layers):
            a = values[layer][1:]  # drop BOS
            for t in range(a.shape[0]):
                scores = np.array([a[t, partition.members(layer, e)].abs().sum().item()
                                   for e in range(partition.n_experts)])
                k = definitions.k(partition.n_experts)
                counts[layer, np.argsort(-scores)[:k]] += 1
    return counts


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2", "opt", "phi3"])
def test_counts_equal_manual_computation(model_type, tmp_path):
    lm = tiny_model(model_type)
    part = build_partition(lm, expert_size=16, method="random", seed=3, store=Store(tmp_path))
    defs = Definitions(top_k_fraction=0.25)
    seqs = build_sequences(lm.tokenizer, TEXTS["aaa"], max_tokens=60, max_length=24).input_ids
    got = count_sequences(lm, part, seqs, defs, batch_size=3)
    assert int(got["tokens"]) == sum(len(s) - 1 for s in seqs)
    assert (got["counts"].sum(axis=1) == int(got["tokens"]) * defs.k(part.n_experts)).all()
    np.testing.assert_array_equal(got["counts"], manual_counts(lm, part, seqs, defs))


def test_model_weights_restored_after_profiling(tmp_path):
    lm = tiny_model("llama")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    part = build_partition(lm, expert_size=16, method="random", store=Store(tmp_path))
    count_sequences(lm, part, [[1, 50, 60, 70]], Definitions())
    for k, v in lm.model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(not layer.down._forward_pre_hooks for layer in ffn_layers(lm.model))


def test_sequences_budget_windows_and_empty_text():
    tok = tiny_model("llama").tokenizer
    s = build_sequences(tok, ["x" * 50, "y" * 50], max_tokens=70, max_length=21)
    assert s.counted_tokens == 70
    assert all(len(q) <= 21 and q[0] == tok.bos_token_id for q in s.input_ids)
    assert s.characters == 70
    with pytest.raises(ValueError, match="no text"):
        build_sequences(tok, ["", "   "], max_tokens=10, max_length=8)


def test_coactivation_counts(tmp_path):
    lm = tiny_model("llama")
    part = build_partition(lm, expert_size=16, method="random", store=Store(tmp_path))
    seqs = build_sequences(lm.tokenizer, TEXTS["bbb"], 40, 16).input_ids
    out = count_sequences(lm, part, seqs, Definitions(), coactivation=True)
    co = out["coactivation"]
    # the diagonal of the co-activation matrix is the activation count itself
    np.testing.assert_array_equal(np.diagonal(co, axis1=1, axis2=2), out["counts"])
    np.testing.assert_array_equal(co, np.transpose(co, (0, 2, 1)))


def test_profile_cached_per_language_and_identical(tmp_path, monkeypatch):
    lm = tiny_model("llama")
    store = Store(tmp_path)
    part = build_partition(lm, expert_size=16, method="random", store=store)
    kw = dict(max_tokens_per_language=50, max_length=16, store=store, progress=False, texts_fn=texts_fn)
    p1 = profile_languages(lm, part, ["aaa", "bbb"], **kw)
    assert p1.counts.shape == (1 * 2, 2, 8) and (p1.tokens == 50).all()
    store2 = Store(tmp_path / "other")
    p_fresh = profile_languages(lm, part, ["aaa", "bbb"], **{**kw, "store": store2})
    np.testing.assert_array_equal(p1.counts, p_fresh.counts)  # same inputs, same counts

    import babel_lib.profile as prof

    monkeypatch.setattr(prof, "count_sequences", lambda *a, **k: pytest.fail("should come from the cache"))
    p2 = profile_languages(lm, part, ["bbb", "aaa"], **kw)
    np.testing.assert_array_equal(p2.counts[::-1], p1.counts)
    df = p2.to_frame()
    assert len(df) == 2 * 2 * 8 and set(df.columns) >= {"model", "language", "layer", "expert", "count", "tokens"}


@pytest.mark.parametrize("change", ["top_k", "split", "budget", "length", "partition", "weights", "score"])
def test_cache_invalidated_by_any_input(tmp_path, change):
    lm = tiny_model("llama")
    store = Store(tmp_path)
    part = build_partition(lm, expert_size=16, method="random", store=store)
    kw = dict(max_tokens_per_language=30, max_length=16, store=store, progress=False, texts_fn=texts_fn,
              split="calibration", definitions=Definitions())
    profile_languages(lm, part, ["aaa"], **kw)
    n_before = len(store.entries())
    if change == "top_k":
        kw["definitions"] = Definitions(top_k_fraction=0.5)
    elif change == "score":
        kw["definitions"] = Definitions(score="relu")
    elif change == "split":
        kw["split"] = "evaluation"
    elif change == "budget":
        kw["max_tokens_per_language"] = 31
    elif change == "length":
        kw["max_length"] = 17
    elif change == "partition":
        part = build_partition(lm, expert_size=16, method="random", seed=1, store=store)
        n_before = len(store.entries())
    elif change == "weights":
        with torch.no_grad():
            lm.model.base_model.layers[0].mlp.up_proj.weight[0, 0] += 1.0
        from babel_lib.models import model_fingerprint

        lm.fingerprint = model_fingerprint(lm.model)
        part.model_fingerprint = lm.fingerprint
    profile_languages(lm, part, ["aaa"], **kw)
    assert len(store.entries()) == n_before + 1


def test_corrupted_cache_file_recomputed(tmp_path):
    lm = tiny_model("llama")
    store = Store(tmp_path)
    part = build_partition(lm, expert_size=16, method="random", store=store)
    kw = dict(max_tokens_per_language=30, max_length=16, store=store, progress=False, texts_fn=texts_fn)
    p1 = profile_languages(lm, part, ["aaa"], **kw)
    files = [e["path"] for e in store.entries() if e["kind"] == "counts"]
    data = open(files[0], "rb").read()
    open(files[0], "wb").write(data[: len(data) // 2])  # truncated
    with pytest.warns(RuntimeWarning, match="unreadable"):
        p2 = profile_languages(lm, part, ["aaa"], **kw)
    np.testing.assert_array_equal(p1.counts, p2.counts)


def test_bad_definitions():
    with pytest.raises(ValueError, match="top_k_fraction"):
        Definitions(top_k_fraction=0)
    with pytest.raises(ValueError, match="threshold"):
        Definitions(activation="threshold")
