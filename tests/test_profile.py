"""The profiler counts exactly what the definitions say, per passage and per view, caches per
language and view, and leaves the model as it found it."""

import numpy as np
import pytest
import torch

from babel_lib.core.adapters import ffn_layers
from babel_lib.core.cache import Store
from babel_lib.core.definitions import Definitions, active_count
from babel_lib.core.hooks import ffn_pre_hooks
from babel_lib.experts.moefy import Partition, build_partition
from babel_lib.experts.profile import common_passages, count_windows, passage_windows, profile_passages
from babel_lib.testing import passages as make_passages, tiny_model

TEXTS = {
    "aaa": ["The quick brown fox jumps over the lazy dog.", "A second paragraph, somewhat longer than the first.",
            "Third."],
    "bbb": ["Ein zweiter Text auf Deutsch, mit Umlauten: äöü.", "Noch ein Absatz.", "Drei."],
}


def passages(texts=TEXTS):
    return make_passages(texts)


def manual_counts(lm, partition, windows, definitions):
    """Reference: one window at a time, per-token loops over experts by label: [P, L, E]."""
    values = {}
    counts = np.zeros((windows.n_passages, partition.n_layers, partition.n_experts), dtype=np.int64)
    for seq, p in zip(windows.input_ids, windows.passage):
        with ffn_pre_hooks(lm.model, lambda i, a: values.__setitem__(i, a.detach().double().reshape(-1, a.shape[-1]))):
            lm.model.base_model(input_ids=torch.tensor([seq]))
        for layer in range(partition.n_layers):
            a = values[layer][1:]  # drop BOS
            for t in range(a.shape[0]):
                scores = np.array([a[t, partition.members(layer, e)].abs().sum().item()
                                   for e in range(partition.n_experts)])
                k = definitions.k(partition.n_experts)
                counts[p, layer, np.argsort(-scores)[:k]] += 1
    return counts


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "gpt2", "opt", "phi3"])
def test_counts_equal_manual_computation(model_type, tmp_path):
    lm = tiny_model(model_type)
    part = build_partition(lm, expert_size=16, method="random", seed=3, store=Store(tmp_path))
    defs = Definitions(top_k_fraction=0.25)
    win = passage_windows(lm.tokenizer, TEXTS["aaa"], max_length=24)
    (got,) = count_windows(lm, [part], win, defs, batch_size=3)
    assert got.shape == (3, 2, 8)
    assert (got.sum(axis=2) == win.tokens[:, None] * defs.k(part.n_experts)).all()
    np.testing.assert_array_equal(got, manual_counts(lm, part, win, defs))


def test_views_are_counted_independently_of_each_other(tmp_path):
    """A view's counts are the same whether it is counted alone or beside other views."""
    lm = tiny_model("llama")
    a = build_partition(lm, expert_size=16, seed=0, store=Store(tmp_path))
    b = build_partition(lm, expert_size=16, seed=1, store=Store(tmp_path))
    neurons = Partition.neurons(lm)
    win = passage_windows(lm.tokenizer, TEXTS["bbb"], max_length=16)
    together = count_windows(lm, [a, b, neurons], win, Definitions(), batch_size=2)
    for view, got in zip([a, b, neurons], together):
        (alone,) = count_windows(lm, [view], win, Definitions(), batch_size=2)
        np.testing.assert_array_equal(got, alone)
    # the neuron view counts the top 20% of the 128 neurons of each layer on every token
    assert together[2].shape == (3, 2, 128)
    assert (together[2].sum(axis=2) == win.tokens[:, None] * active_count(0.2, 128)).all()


def test_definitions_per_view_count_each_view_as_if_alone_and_cache_under_their_own_key(tmp_path):
    """Several top-k fractions and score rules in the same forward passes: each view's counts equal a
    count with its own definitions alone, and each is cached under its own definitions."""
    lm = tiny_model("llama")
    a = build_partition(lm, expert_size=16, seed=0, store=Store(tmp_path))
    b = build_partition(lm, expert_size=32, seed=0, store=Store(tmp_path))
    defs = [Definitions(top_k_fraction=0.1), Definitions(top_k_fraction=0.3), Definitions(score="relu")]
    win = passage_windows(lm.tokenizer, TEXTS["aaa"], max_length=16)
    together = count_windows(lm, [a, a, b], win, defs, batch_size=2)
    for view, d, got in zip([a, a, b], defs, together):
        (alone,) = count_windows(lm, [view], win, d, batch_size=2)
        np.testing.assert_array_equal(got, alone)
    assert (together[0].sum(axis=2) == win.tokens[:, None] * defs[0].k(a.n_experts)).all()
    assert not np.array_equal(together[0], together[1])
    with pytest.raises(ValueError, match="one per view"):
        count_windows(lm, [a, b], win, defs, batch_size=2)
    store = Store(tmp_path / "cache")
    first = profile_passages(lm, [a, a], passages(), definitions=defs[:2], max_length=16, store=store, progress=False)
    assert [p.definitions["top_k_fraction"] for p in first] == [0.1, 0.3]
    again = profile_passages(lm, a, passages(), definitions=defs[1], max_length=16, store=store, progress=False)
    np.testing.assert_array_equal(again.passage_counts, first[1].passage_counts)  # its own cache entry


def test_active_count_rounds_half_up():
    assert active_count(0.25, 10) == 3  # round() would give 2 (half to even)
    assert active_count(0.2, 64) == 13 and active_count(0.2, 2048) == 410
    assert active_count(0.001, 10) == 1 and active_count(1.0, 7) == 7
    for bad in (0, -0.1, 1.5, "0.2", True, float("nan")):
        with pytest.raises(ValueError, match="top_k_fraction"):
            active_count(bad, 10)


def test_profile_per_passage_cache_and_resume(tmp_path, monkeypatch):
    lm = tiny_model("llama")
    store = Store(tmp_path)
    part = build_partition(lm, expert_size=16, method="random", store=store)
    prof = profile_passages(lm, part, passages(), max_length=16, batch_size=2, store=store, progress=False)
    assert prof.passage_counts.shape == (2, 3, 2, 8) and prof.passage_ids == ["p0", "p1", "p2"]
    np.testing.assert_array_equal(prof.counts, prof.passage_counts.sum(axis=1))
    assert (prof.tokens == prof.passage_tokens.sum(axis=1)).all()
    assert prof.characters.tolist() == [sum(map(len, TEXTS[l])) for l in TEXTS]
    freq = prof.frequencies()
    assert np.allclose(freq.sum(axis=2), active_count(0.2, 8))  # every token activates k experts a layer
    table = prof.text_table()
    assert list(table.columns) == ["language", "passages", "characters", "tokens", "tokens_per_character"]
    assert "2 languages on the same 3 passages" in prof.describe()
    # a rerun reads the cache: no forward pass at all
    import babel_lib.experts.profile as module

    monkeypatch.setattr(module, "count_windows", lambda *a, **k: pytest.fail("recomputed a cached language"))
    again = profile_passages(lm, part, passages(), max_length=16, batch_size=2, store=store, progress=False)
    np.testing.assert_array_equal(again.passage_counts, prof.passage_counts)


def test_a_new_view_reuses_cached_views(tmp_path, monkeypatch):
    lm = tiny_model("llama")
    store = Store(tmp_path)
    a = build_partition(lm, expert_size=16, seed=0, store=store)
    b = build_partition(lm, expert_size=16, seed=1, store=store)
    first = profile_passages(lm, a, passages(), max_length=16, store=store, progress=False)
    import babel_lib.experts.profile as module

    seen = []
    real = module.count_windows
    monkeypatch.setattr(module, "count_windows", lambda lm_, views, *r, **k: seen.append(views) or real(lm_, views, *r, **k))
    both = profile_passages(lm, [a, b], passages(), max_length=16, store=store, progress=False,
                            keep_passages=[True, False])
    assert all(len(v) == 1 and v[0] is b for v in seen)  # only the new view was counted
    np.testing.assert_array_equal(both[0].passage_counts, first.passage_counts)
    assert both[1].passage_ids == ["all"] and both[1].extra["passages_summed"] == 3


def test_token_cap_keeps_leading_passages_in_every_language():
    tok = tiny_model("llama").tokenizer
    wins = {lang: passage_windows(tok, texts, 16) for lang, texts in TEXTS.items()}
    assert common_passages(wins, None) == 3
    first = min(int(w.tokens[0]) for w in wins.values())
    assert common_passages(wins, 10 ** 6) == 3
    assert common_passages(wins, max(int(w.tokens[:2].sum()) for w in wins.values())) == 2
    assert common_passages(wins, first) == 1  # never fewer than one passage
    with pytest.raises(ValueError, match="positive integer"):
        common_passages(wins, 0)


def test_cap_is_reported_when_it_bites(tmp_path):
    lm = tiny_model("llama")
    part = build_partition(lm, expert_size=16, method="random", store=Store(tmp_path))
    prof = profile_passages(lm, part, passages(), max_length=16, max_tokens_per_language=100,
                            store=Store(tmp_path), progress=False)
    assert prof.n_passages == 2 and "kept 2 of 3 passages" in prof.describe()


def test_windows_start_with_bos_and_empty_text_is_refused():
    tok = tiny_model("llama").tokenizer
    win = passage_windows(tok, ["x" * 50, "", "y" * 10], max_length=21)
    assert all(len(q) <= 21 and q[0] == tok.bos_token_id for q in win.input_ids)
    assert win.tokens.tolist() == [50, 0, 10] and win.characters.tolist() == [50, 0, 10]
    assert win.passage == [0, 0, 0, 2]
    with pytest.raises(ValueError, match="no text to profile"):
        passage_windows(tok, ["", "   "], max_length=8)
    with pytest.raises(ValueError, match="max_length"):
        passage_windows(tok, ["x"], max_length=1)


def test_bad_batch_size_is_refused_before_any_work(tmp_path):
    lm = tiny_model("llama")
    part = build_partition(lm, expert_size=16, method="random", store=Store(tmp_path))
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="batch_size must be a positive integer"):
            profile_passages(lm, part, passages(), batch_size=bad, store=Store(tmp_path), progress=False)


def test_model_weights_restored_and_hooks_removed(tmp_path):
    lm = tiny_model("llama")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    part = build_partition(lm, expert_size=16, method="random", store=Store(tmp_path))
    count_windows(lm, [part], passage_windows(lm.tokenizer, ["abc def"], 8), Definitions())
    for k, v in lm.model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(not layer.down._forward_pre_hooks for layer in ffn_layers(lm.model))


# ---------------------------------------------------------------------------- control inputs
def test_control_windows_keep_lengths_and_break_order():
    from babel_lib.experts.profile import control_windows

    lm = tiny_model("llama")
    text = passages()
    plain = {k: passage_windows(lm.tokenizer, TEXTS[k], max_length=24) for k in TEXTS}
    shuffled = control_windows(lm.tokenizer, text, "shuffled", max_length=24, seed=0)
    # passage p comes from language (p + seed) mod n: aaa, bbb, aaa; same tokens, other order
    for p, lang in enumerate(["aaa", "bbb", "aaa"]):
        assert shuffled.tokens[p] == plain[lang].tokens[p]
        mine = [t for s, o in zip(shuffled.input_ids, shuffled.passage) if o == p for t in s[1:]]
        theirs = [t for s, o in zip(plain[lang].input_ids, plain[lang].passage) if o == p for t in s[1:]]
        assert sorted(mine) == sorted(theirs)
    assert all(s[0] == lm.tokenizer.bos_token_id for s in shuffled.input_ids)
    random = control_windows(lm.tokenizer, text, "random", max_length=24, seed=0)
    used = {t for w in plain.values() for s in w.input_ids for t in s[1:]}
    drawn = [t for s in random.input_ids for t in s[1:]]
    assert (random.tokens == shuffled.tokens).all() and set(drawn) <= used
    with pytest.raises(Exception, match="unknown control input"):
        control_windows(lm.tokenizer, text, "reversed")


def test_control_profile_counts_like_a_language_and_is_cached(tmp_path):
    from babel_lib.experts.profile import control_windows, profile_control

    lm = tiny_model("llama")
    part = build_partition(lm, expert_size=16, method="random", seed=3, store=Store(tmp_path))
    defs = Definitions(top_k_fraction=0.25)
    store = Store(tmp_path)
    prof = profile_control(lm, part, passages(), "shuffled", defs, max_length=24, store=store)
    win = control_windows(lm.tokenizer, passages(), "shuffled", max_length=24)
    np.testing.assert_array_equal(prof.passage_counts[0], manual_counts(lm, part, win, defs))
    assert prof.languages == ["control:shuffled"] and (prof.passage_tokens[0] == win.tokens).all()
    again = profile_control(lm, [part], passages(), "shuffled", defs, max_length=24, store=store)[0]
    np.testing.assert_array_equal(again.passage_counts, prof.passage_counts)
    assert len(list((tmp_path / "counts").rglob("*.npz"))) == 1
