"""Pruning, slicing, reloading, routers and the perplexity harness, on tiny random models."""

import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from babel_lib.core.adapters import ffn_layers
from babel_lib.core.cache import Store
from babel_lib.core.errors import BabelError
from babel_lib.core.hooks import experts_contiguous
from babel_lib.data import corpus
from babel_lib.experts.moefy import build_partition, moe_view
from babel_lib.experts.profile import Definitions, profile_passages
from babel_lib.interventions import evaluate, prune, routing, timing
from babel_lib.testing import tiny_model

TEXTS = {
    "aaa": ["The quick brown fox jumps over the lazy dog.", "A second paragraph, somewhat longer than the first one.",
            "Third: short."],
    "bbb": ["Ein zweiter Text auf Deutsch, mit Umlauten: äöü ß.", "Noch ein Absatz.", "人人生而自由，在尊严和权利上一律平等。"],
}
SLICE_TYPES = ["llama", "gemma3_text", "gemma2", "phi3", "gpt2", "opt", "bloom", "gpt_neox"]


def texts_fn(lang, split):
    return TEXTS[lang]


PASSAGES = corpus.Passages("udhr", "calibration", ["p0", "p1", "p2"], ["aaa", "bbb"], TEXTS)


def setup(model_type, tmp_path, expert_size=16):
    lm = tiny_model(model_type)
    store = Store(tmp_path / "cache")
    part = build_partition(lm, expert_size=expert_size, method="random", seed=1, store=store)
    prof = profile_passages(lm, part, PASSAGES, max_length=32, batch_size=2,
                            definitions=Definitions(top_k_fraction=0.25), store=store, progress=False)
    return lm, part, prof, store


def ids_batch():
    torch.manual_seed(0)
    ids = torch.randint(4, 260, (2, 17))
    ids[:, 0] = 1
    return ids


# ------------------------------------------------------------------------------ slicing
@pytest.mark.parametrize("model_type", SLICE_TYPES)
@pytest.mark.parametrize("allocation", ["uniform", "layerwise"])
def test_sliced_model_equals_masked_dense_model(model_type, allocation, tmp_path):
    lm, part, prof, _ = setup(model_type, tmp_path)
    plan = prune.prune_plan(prune.rank_experts(prof, "multilingual"), 0.4, allocation=allocation,
                            max_deviation=None)
    assert 0 < plan.sparsity < 1
    ids = ids_batch()
    with torch.no_grad():
        dense = lm.model(input_ids=ids).logits
        with moe_view(lm.model, part, experts=plan.keep):
            masked = lm.model(input_ids=ids).logits
        small = prune.prune_model(lm, part, plan)
        sliced = small.model(input_ids=ids).logits
    assert not torch.allclose(dense, masked, atol=1e-3)  # the pruning does something
    torch.testing.assert_close(sliced, masked, rtol=1e-4, atol=1e-4)
    widths = [l.n_neurons for l in ffn_layers(small.model)]
    assert widths == [part.n_neurons - len(d) * part.expert_size for d in plan.drop]
    assert small.fingerprint != lm.fingerprint
    # the dense model is untouched
    assert [l.n_neurons for l in ffn_layers(lm.model)] == [part.n_neurons] * part.n_layers
    report = prune.size_report(lm, small)
    assert report["ffn_params_removed"] == pytest.approx(plan.sparsity, rel=0.02)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "phi3", "gpt2", "opt", "gpt_neox"])
def test_uniform_plan_reloads_with_plain_from_pretrained(model_type, tmp_path):
    lm, part, prof, _ = setup(model_type, tmp_path)
    plan = prune.prune_plan(prune.rank_experts(prof, "language", "aaa"), 0.5)
    small = prune.prune_model(lm, part, plan)
    folder = prune.save_pruned(small, tmp_path / "pruned")
    again = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = ids_batch()
    with torch.no_grad():
        torch.testing.assert_close(again(input_ids=ids).logits, small.model(input_ids=ids).logits, rtol=0, atol=0)
    assert again.config.babel_pruned_ffn["widths"] == [part.n_neurons // 2] * part.n_layers
    again2 = prune.load_pruned(folder, tokenizer=lm.tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(again2.model(input_ids=ids).logits, small.model(input_ids=ids).logits,
                                   rtol=0, atol=0)


@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "phi3", "gpt2", "bloom", "opt"])
def test_unequal_widths_reload_with_load_pruned(model_type, tmp_path):
    lm, part, prof, _ = setup(model_type, tmp_path)
    rates = [0.25, 0.625]
    plan = prune.prune_plan(prune.rank_experts(prof, "multilingual"), rates)
    assert plan.allocation == "given" and len(set(plan.dropped_per_layer)) == 2
    small = prune.prune_model(lm, part, plan)
    folder = prune.save_pruned(small, tmp_path / "pruned")
    again = prune.load_pruned(folder, tokenizer=lm.tokenizer)
    ids = ids_batch()
    with torch.no_grad():
        torch.testing.assert_close(again.model(input_ids=ids).logits, small.model(input_ids=ids).logits,
                                   rtol=0, atol=0)
    assert [l.n_neurons for l in ffn_layers(again.model)] == [l.n_neurons for l in ffn_layers(small.model)]
    assert again.fingerprint == small.fingerprint
    if model_type != "bloom":  # the config's single width cannot describe the model: loud failure, no silent reinit
        with pytest.raises(Exception):
            AutoModelForCausalLM.from_pretrained(folder)


# ------------------------------------------------------------------------------ plans
def test_random_rankings_depend_on_seed_only(tmp_path):
    _, _, prof, _ = setup("llama", tmp_path)
    plans = {s: prune.prune_plan(prune.rank_experts(prof, "random", seed=s), 0.5) for s in (0, 1, 2)}
    again = prune.prune_plan(prune.rank_experts(prof, "random", seed=0), 0.5)
    assert all(np.array_equal(a, b) for a, b in zip(plans[0].drop, again.drop))
    assert plans[0].key == again.key
    assert len({p.key for p in plans.values()}) == 3


def test_frequency_ranking_drops_least_frequent(tmp_path):
    _, _, prof, _ = setup("llama", tmp_path)
    plan = prune.prune_plan(prune.rank_experts(prof, "language", "bbb"), 0.25)
    f = prof.frequencies()[prof.languages.index("bbb")]
    for layer, dropped in enumerate(plan.drop):
        kept = plan.keep[layer]
        assert f[layer, dropped].max() <= f[layer, kept].min()
    assert plan.sparsity == 0.25


BAD_RATES = [-0.1, 1.0, 1.5, float("nan"), float("inf"), "0.3", None, True, [0.1], 0.97]


@pytest.mark.parametrize("rate", BAD_RATES, ids=[repr(r) for r in BAD_RATES])
@pytest.mark.parametrize("allocation", ["uniform", "layerwise", "entropy"])
def test_bad_rates_rejected_with_clear_error(rate, allocation, tmp_path):
    _, _, prof, _ = setup("llama", tmp_path)  # 8 experts a layer: 0.97 drops all 8
    ranking = prune.rank_experts(prof, "multilingual")
    with pytest.raises(prune.PruneRateError) as err:
        prune.prune_plan(ranking, rate, allocation=allocation)
    assert isinstance(err.value, BabelError) and isinstance(err.value, ValueError)
    assert "rate" in str(err.value)


@pytest.mark.parametrize("rates", [[0.5, 1.0], [0.5, -0.1], [0.5, float("nan")], [0.2, "x"], [0.5, 0.99]])
def test_bad_per_layer_rates_rejected(rates, tmp_path):
    _, _, prof, _ = setup("llama", tmp_path)
    with pytest.raises(prune.PruneRateError, match="layer 1"):
        prune.prune_plan(prune.rank_experts(prof, "multilingual"), rates)


def _levels(L=18, E=64, seed=7):
    rng = np.random.default_rng(seed)
    # layers of different concentration: the first layers use few experts a lot
    return rng.gamma(shape=np.linspace(0.2, 5, L)[:, None], size=(L, E))


@pytest.mark.parametrize("rate", [0.1, 0.2, 0.3, 0.45, 0.5, 0.6, 0.8])
@pytest.mark.parametrize("allocation,max_deviation", [("layerwise", None), ("layerwise", 0.1), ("layerwise", 0.2),
                                                      ("entropy", 0.1), ("entropy", 0.2), ("entropy", 0.5)])
def test_per_layer_rules_drop_exactly_the_uniform_total(rate, allocation, max_deviation):
    levels = _levels()
    L, E = levels.shape
    ranking = prune.Ranking("levels", levels, np.argsort(-levels, axis=1, kind="stable"), {"t": 1}, True)
    plan = prune.prune_plan(ranking, rate, allocation=allocation, max_deviation=max_deviation)
    uniform = prune.prune_plan(ranking, rate)
    assert plan.dropped_per_layer.sum() == uniform.dropped_per_layer.sum() == L * math.floor(rate * E + 0.5)
    assert plan.sparsity == uniform.sparsity and abs(plan.sparsity - rate) <= 0.5 / E
    assert (plan.dropped_per_layer <= E - 1).all() and (plan.dropped_per_layer >= 0).all()
    if max_deviation is not None:
        assert (np.abs(plan.layer_rates - rate) <= max_deviation + 1e-9).all()
    # at moderate rates, concentrated layers (low gamma shape, low entropy) give up more experts than even ones
    if rate <= 0.6:
        assert plan.dropped_per_layer[:6].mean() > plan.dropped_per_layer[-6:].mean()
    assert plan.spec["allocation"] == allocation and plan.allocation == allocation


def test_entropy_rule_follows_the_formula():
    levels = _levels()
    L, E = levels.shape
    share = levels / levels.sum(1, keepdims=True)
    h = -(share * np.log(share)).sum(1) / np.log(E)
    np.testing.assert_allclose(prune.layer_entropy(levels), h)
    assert np.all(np.diff(h[::3]) > 0)  # the gamma shapes make later layers more even
    rate, dev = 0.3, 0.15
    n = prune.entropy_counts(levels, rate, dev)
    target = (rate + dev * (h.mean() - h) / np.abs(h.mean() - h).max()) * E
    # the common shift only absorbs rounding and clipping: every count within 1 of its target
    assert np.abs(n - target).max() < 1 + 1e-9
    assert n[np.argmin(h)] == math.floor((rate + dev) * E + 1e-9)  # the most concentrated layer: p + deviation
    # equal entropies: the uniform plan
    flat = np.ones((4, 8))
    np.testing.assert_array_equal(prune.entropy_counts(flat, 0.25, 0.2), [2, 2, 2, 2])
    with pytest.raises(prune.PruneRateError, match="max_deviation"):
        prune.entropy_counts(levels, 0.3, None)


def test_per_layer_rules_need_levels_for_other_rankings(tmp_path):
    _, _, prof, _ = setup("llama", tmp_path)
    ranking = prune.rank_experts(prof, "random", seed=0)
    with pytest.raises(ValueError, match="levels="):
        prune.prune_plan(ranking, 0.25, allocation="entropy")
    plan = prune.prune_plan(ranking, 0.25, allocation="entropy", levels=prof.frequencies().mean(0))
    assert plan.sparsity == 0.25
    with pytest.raises(ValueError, match="allocation"):
        prune.prune_plan(ranking, 0.25, allocation="bogus")


def test_plan_reports_measured_sparsity(tmp_path):
    _, _, prof, _ = setup("llama", tmp_path)  # 8 experts: 0.3 -> round(2.4) = 2 dropped = 25%
    plan = prune.prune_plan(prune.rank_experts(prof, "multilingual"), 0.3)
    assert plan.requested_rate == 0.3 and plan.sparsity == 0.25
    assert "measured 25.00%" in plan.describe()
    assert prune.prune_plan(prune.rank_experts(prof, "multilingual"), 0).sparsity == 0


# ------------------------------------------------------------------------------ importance baselines
@pytest.mark.parametrize("model_type", ["llama", "gpt2"])
def test_importance_scores_equal_a_manual_computation(model_type, tmp_path, monkeypatch):
    from babel_lib.experts.profile import pooled_windows

    lm, part, _, store = setup(model_type, tmp_path)
    imp = prune.neuron_importance(lm, PASSAGES, max_length=32, batch_size=2, store=store)
    layers = ffn_layers(lm.model)
    L, N = len(layers), layers[0].n_neurons
    abs_sum, sq_sum, tokens = np.zeros((L, N)), np.zeros((L, N)), 0
    for seq in pooled_windows(lm.tokenizer, PASSAGES, 32)[0]:  # one window at a time, no padding
        got = {}
        handles = [l.down.register_forward_pre_hook(lambda m, a, i=l.index: got.__setitem__(i, a[0][0, 1:].double()))
                   for l in layers]
        with torch.no_grad():
            lm.model(input_ids=torch.tensor([seq]))
        for h in handles:
            h.remove()
        for i in range(L):  # every token but BOS
            abs_sum[i] += got[i].abs().sum(0).numpy()
            sq_sum[i] += got[i].square().sum(0).numpy()
        tokens += len(seq) - 1
    assert imp.tokens == tokens
    np.testing.assert_allclose(imp.magnitude(), abs_sum / tokens, rtol=1e-4, atol=1e-7)
    norms = np.stack([(l.down.weight.detach().double().norm(dim=1) if model_type == "gpt2"
                       else l.down.weight.detach().double().norm(dim=0)).numpy() for l in layers])
    np.testing.assert_allclose(imp.wanda(), norms * np.sqrt(sq_sum), rtol=1e-4)
    for by, neuron in (("magnitude", abs_sum / tokens), ("wanda", norms * np.sqrt(sq_sum))):
        ranking = prune.importance_ranking(imp, part, by)
        assert not ranking.frequency_based and ranking.spec["by"] == by
        for layer, expert in [(0, 0), (1, 3), (1, part.n_experts - 1)]:
            assert ranking.scores[layer, expert] == pytest.approx(neuron[layer, part.members(layer, expert)].sum(),
                                                                  rel=1e-4)
        assert all(np.all(np.diff(ranking.scores[l, ranking.order[l]]) <= 0) for l in range(L))
        again = prune.importance_ranking(imp, part, by)
        np.testing.assert_array_equal(again.order, ranking.order)
        assert prune.prune_plan(again, 0.5).key == prune.prune_plan(ranking, 0.5).key
    # cached: the second call runs no forward pass
    monkeypatch.setattr(prune, "run_all", lambda *a, **k: pytest.fail("recomputed"))
    cached = prune.neuron_importance(lm, PASSAGES, max_length=32, batch_size=2, store=store)
    np.testing.assert_array_equal(cached.sq_sum, imp.sq_sum)
    assert cached.key == imp.key
    with pytest.raises(ValueError, match="by must be"):
        prune.importance_ranking(imp, part, "bogus")


# ------------------------------------------------------------------------------ perplexity harness
@pytest.mark.parametrize("max_length,stride", [(8, None), (16, None), (200, None), (8, 3), (16, 1)])
def test_windows_count_tokens_and_characters(max_length, stride):
    lm = tiny_model("llama")
    paragraphs = TEXTS["bbb"] + ["", "   "]
    w = evaluate.make_windows(lm.tokenizer, paragraphs, max_length=max_length, stride=stride)
    n_bytes = [len(p.encode("utf-8")) for p in TEXTS["bbb"]]  # byte tokenizer: one token a byte
    assert w.tokens == sum(n_bytes)  # every token scored exactly once, whatever the stride
    assert w.characters == sum(len(p) for p in TEXTS["bbb"]) and w.bytes == sum(n_bytes)
    assert w.characters < w.bytes  # non-ASCII text: characters are not bytes
    assert w.passages == 3
    assert w.passage == sorted(w.passage) and set(w.passage) == {0, 1, 2}  # each window knows its passage
    assert all(len(ids) <= max_length and ids[0] == 1 for ids in w.input_ids)
    if stride is None:
        assert w.n_windows == sum(math.ceil(n / (max_length - 1)) for n in n_bytes)
        assert set(w.score_from) == {1}
    assert w.scored_per_window().sum() == w.tokens


def test_window_budget_takes_whole_paragraphs():
    lm = tiny_model("llama")
    w = evaluate.make_windows(lm.tokenizer, TEXTS["aaa"], max_length=16, max_tokens=50)
    n = [len(p.encode()) for p in TEXTS["aaa"]]
    assert n[0] < 50 <= n[0] + n[1]
    assert w.tokens == n[0] + n[1] and w.characters == len(TEXTS["aaa"][0]) + len(TEXTS["aaa"][1])


@pytest.mark.parametrize("model_type", ["llama", "gemma2", "gemma3_text", "gpt2", "opt", "bloom"])
def test_nll_equals_transformers_loss(model_type):
    lm = tiny_model(model_type)
    w = evaluate.make_windows(lm.tokenizer, TEXTS["aaa"], max_length=24)
    got = evaluate.window_nll(lm, w, batch_size=3)
    with torch.no_grad():
        for ids, nll in zip(w.input_ids, got):
            t = torch.tensor([ids])
            ref = lm.model(input_ids=t, labels=t).loss.item() * (len(ids) - 1)
            assert nll == pytest.approx(ref, rel=1e-4)


def test_perplexity_table_and_cache(tmp_path, monkeypatch):
    lm = tiny_model("llama")
    store = Store(tmp_path)
    df = evaluate.perplexity(lm, ["aaa", "bbb"], max_length=16, batch_size=2, store=store, texts_fn=texts_fn)
    row = df.set_index("language").loc["bbb"]
    assert row["tokens"] == sum(len(p.encode()) for p in TEXTS["bbb"])
    assert row["characters"] == sum(len(p) for p in TEXTS["bbb"])
    assert row["perplexity"] == pytest.approx(math.exp(row["nll"] / row["tokens"]))
    assert row["bits_per_char"] == pytest.approx(row["nll"] / math.log(2) / row["characters"])
    assert row["max_length"] == 16 and row["split"] == "evaluation"
    assert "windows of at most 16 tokens" in evaluate.describe(df)
    monkeypatch.setattr(evaluate, "window_nll", lambda *a, **k: pytest.fail("not cached"))
    again = evaluate.perplexity(lm, ["aaa", "bbb"], max_length=16, batch_size=2, store=store, texts_fn=texts_fn)
    assert again["nll"].tolist() == df["nll"].tolist()


def test_rate_zero_and_conditions_share_the_protocol(tmp_path):
    lm, part, prof, store = setup("llama", tmp_path)
    zero = prune.prune_plan(prune.rank_experts(prof, "multilingual"), 0.0)
    half = prune.prune_plan(prune.rank_experts(prof, "multilingual"), 0.5)
    df = evaluate.compare(lm, ["aaa", "bbb"], [prune.masked_condition(lm, part, zero, "p0"),
                                               prune.masked_condition(lm, part, half, "p50")],
                          max_length=16, batch_size=2, store=store, texts_fn=texts_fn)
    wide = df.pivot(index="language", columns="condition", values="nll")
    np.testing.assert_allclose(wide["p0"], wide["dense"], rtol=1e-5)
    assert (wide["p50"] != wide["dense"]).all()
    assert df.groupby("language")["tokens"].nunique().eq(1).all()
    # the physically pruned model gives the masked perplexity
    small = prune.prune_model(lm, part, half)
    phys = evaluate.perplexity(small, ["aaa", "bbb"], max_length=16, batch_size=2, store=store, texts_fn=texts_fn)
    np.testing.assert_allclose(phys["nll"].to_numpy(), wide.loc[["aaa", "bbb"], "p50"].to_numpy(), rtol=1e-4)


# ------------------------------------------------------------------------------ routers and sparse activation
@pytest.mark.parametrize("model_type", ["llama", "gemma3_text", "phi3", "gpt2"])
def test_router_recall_is_one_with_all_experts(model_type, tmp_path):
    lm, part, prof, _ = setup(model_type, tmp_path)
    router = routing.CentroidRouter.build(lm.model, part)
    seqs = evaluate.make_windows(lm.tokenizer, TEXTS["aaa"], max_length=32).input_ids
    full = routing.router_recall(lm, part, router, seqs, top_k_fraction=1.0, batch_size=2)
    assert (full["recall"] == 1.0).all() and (full["k"] == part.n_experts).all()
    static = prune.high_frequency_plan(prof, "aaa", 0.5)
    some = routing.router_recall(lm, part, router, seqs, top_k_fraction=[0.25, 1.0], batch_size=2,
                               static={"static 50%": static})
    assert some["recall"].between(0, 1).all()
    assert set(some["selector"]) == {"centroid router", "static 50%"}
    assert some["tokens"].iloc[0] == sum(len(s) - 1 for s in seqs)
    everything = some[some.top_k_fraction == 1.0]
    assert (everything.loc[everything.selector == "centroid router", "recall"] == 1.0).all()
    # a static half of the experts holds exactly half of all experts
    assert np.allclose(everything.loc[everything.selector == "static 50%", "recall"], 0.5)
    alone = routing.router_recall(lm, part, router, seqs, top_k_fraction=0.25, batch_size=2)
    np.testing.assert_allclose(some[(some.top_k_fraction == 0.25) & (some.selector == "centroid router")]["recall"],
                               alone["recall"])


def test_routed_view_all_experts_equals_dense(tmp_path):
    lm, part, _, _ = setup("llama", tmp_path)
    router = routing.CentroidRouter.build(lm.model, part)
    ids = ids_batch()
    with torch.no_grad():
        dense = lm.model(input_ids=ids).logits
        with routing.routed_view(lm.model, part, router, 1.0):
            same = lm.model(input_ids=ids).logits
        with routing.routed_view(lm.model, part, router, 0.25):
            routed = lm.model(input_ids=ids).logits
    torch.testing.assert_close(same, dense)
    assert not torch.allclose(routed, dense, atol=1e-3)
    torch.testing.assert_close(lm.model(input_ids=ids).logits, dense)  # hooks gone, order restored


def test_centroid_is_mean_of_normalised_rows(tmp_path):
    lm, part, _, _ = setup("llama", tmp_path)
    router = routing.CentroidRouter.build(lm.model, part)
    rows = torch.nn.functional.normalize(ffn_layers(lm.model)[1].input_rows("gate"), dim=1)
    torch.testing.assert_close(router.centroids[1][3], rows[part.members(1, 3)].mean(0))


def test_gathered_ffn_equals_masked_ffn(tmp_path):
    lm, part, _, _ = setup("llama", tmp_path)
    torch.manual_seed(0)
    x = torch.randn(10, 64)
    experts = torch.stack([torch.randperm(part.n_experts)[:3] for _ in range(10)])
    with experts_contiguous(lm.model, part), torch.no_grad():
        layer = ffn_layers(lm.model)[0]
        got = timing.gathered_ffn(layer, part, x, experts)
        mlp = layer.mlp
        a = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
        keep = torch.zeros(10, part.n_experts).scatter_(1, experts, 1.0)
        a = (a.reshape(10, part.n_experts, -1) * keep[..., None]).reshape(10, -1)
        torch.testing.assert_close(got, mlp.down_proj(a), rtol=1e-5, atol=1e-5)


def test_timing_helpers():
    calls = []
    times = timing.time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3)
    assert calls == ["a", "b", "a", "b", "b", "a", "a", "b"] and len(times) == 6  # warm-up, then alternating order
    assert timing.speedup(times, "a", "b") > 0
    median, low, high = timing.speedup(times, "a", "b", spread=True)
    assert low <= median <= high


@pytest.mark.parametrize("model_type", ["llama", "gpt2", "phi3"])
def test_sliced_view_is_the_pruned_model_and_restores(model_type, tmp_path):
    lm, part, prof, _ = setup(model_type, tmp_path)
    plan = prune.prune_plan(prune.rank_experts(prof, "multilingual"), 0.5)
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    ids = ids_batch()
    with torch.no_grad():
        copy_logits = prune.prune_model(lm, part, plan).model(input_ids=ids).logits
        with prune.sliced_view(lm.model, part, plan):
            assert [l.n_neurons for l in ffn_layers(lm.model)] == [part.n_neurons // 2] * part.n_layers
            view_logits = lm.model(input_ids=ids).logits
    torch.testing.assert_close(view_logits, copy_logits, rtol=0, atol=0)
    for k, v in lm.model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert [l.n_neurons for l in ffn_layers(lm.model)] == [part.n_neurons] * part.n_layers


def test_shared_copy_leaves_dense_model_intact(tmp_path):
    lm, part, prof, _ = setup("gemma3_text", tmp_path)
    plan = prune.prune_plan(prune.rank_experts(prof, "multilingual"), 0.5)
    ids = ids_batch()
    with torch.no_grad():
        dense = lm.model(input_ids=ids).logits
        full = prune.prune_model(lm, part, plan)
        shared = prune.prune_model(lm, part, plan, share=True)
        torch.testing.assert_close(shared.model(input_ids=ids).logits, full.model(input_ids=ids).logits)
        torch.testing.assert_close(lm.model(input_ids=ids).logits, dense, rtol=0, atol=0)
    assert shared.model.get_input_embeddings().weight is lm.model.get_input_embeddings().weight
    assert [l.n_neurons for l in ffn_layers(lm.model)] == [part.n_neurons] * part.n_layers


# ------------------------------------------------------------------------------ command line
def test_cli_prune_saves_a_smaller_model(tmp_path, monkeypatch, capsys):
    """`babel prune` ranks, slices and saves atomically; bad rates fail before any profiling."""
    from babel_lib.__main__ import main
    from babel_lib.experts import pipeline

    lm, part, prof, _ = setup("llama", tmp_path)
    calls = []
    study = pipeline.Study(lm, PASSAGES, [part], [prof], Definitions(top_k_fraction=0.25))
    monkeypatch.setattr(pipeline, "study", lambda **kw: calls.append(kw) or study)
    out = tmp_path / "pruned"
    assert main(["prune", "--rate", "0.5", "--languages", "eng,fra", "--output", str(out)]) == 0
    assert calls[0]["languages"] == ["eng", "fra"]
    small = prune.load_pruned(out, tokenizer=lm.tokenizer)
    assert [l.n_neurons for l in ffn_layers(small.model)] == [part.n_neurons // 2] * part.n_layers
    assert "FFN 50.0%" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pruned")]  # no temporary folder left
    calls.clear()
    for bad in (["--rate", "1.0"], ["--rate", "-0.1"], ["--rate", "0.3", "--by", "language"]):
        assert main(["prune", *bad, "--output", str(tmp_path / "x")]) == 1
        assert "error:" in capsys.readouterr().err
    assert not calls and not (tmp_path / "x").exists()


# ------------------------------------------------------------------------------ the field's per-layer rules (OWL, cross-lingual)
def test_scored_counts_meet_the_budget_exactly_within_bounds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        L, E = int(rng.integers(2, 30)), int(rng.integers(4, 128))
        rate = float(rng.choice([0.05, 0.1, 0.2, 0.3, 0.5]))
        dev = float(rng.choice([0.05, 0.1, 0.2]))
        score = rng.normal(size=L)
        n = prune.scored_counts(score, rate, E, dev)
        total = L * math.floor(rate * E + 0.5)  # the uniform plan: p x E rounded half up
        assert n.sum() == total
        assert (n >= np.ceil((rate - dev) * E - 1e-9)).all() and (n <= np.floor((rate + dev) * E + 1e-9)).all()
        # the order follows the score (up to rounding: a higher score never drops 2+ fewer experts)
        order = np.argsort(score)
        assert (np.diff(n[order]) >= -1).all()
    assert (prune.scored_counts(np.ones(5), 0.3, 64) == round(0.3 * 64)).all()  # all equal: the uniform plan


def test_outlier_ratios_and_crosslingual_correlation_known_answers():
    scores = np.ones((2, 100))
    scores[0, :7] = 10.0  # 7 neurons of layer 0 above 5 x its mean (mean 1.63); layer 1 has none
    assert prune.outlier_ratios(scores).tolist() == [0.07, 0.0]
    f = np.zeros((3, 2, 6))
    f[:, 0] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]  # layer 0: every language uses the experts alike
    f[0, 1], f[1, 1], f[2, 1] = [1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 1, 0]  # layer 1: each its own
    c = prune.crosslingual_correlation(f)
    assert c[0] == pytest.approx(1.0) and c[1] == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="two languages"):
        prune.crosslingual_correlation(f[:1])


def test_owl_prunes_the_outlier_layer_less_and_crosslingual_the_shared_layer_more():
    L, E = 4, 16
    ranking = prune.random_ranking(L, E, seed=0)
    owl = prune.prune_plan(ranking, 0.25, "owl", layer_scores=np.array([0.0, 0.1, 0.0, 0.0]), max_deviation=0.2)
    cross = prune.prune_plan(ranking, 0.25, "crosslingual", layer_scores=np.array([0.9, 0.1, 0.1, 0.1]),
                             max_deviation=0.2)
    for plan in (owl, cross):
        assert plan.dropped_per_layer.sum() == L * round(0.25 * E)
    assert owl.dropped_per_layer[1] == owl.dropped_per_layer.min() < owl.dropped_per_layer[0]
    assert cross.dropped_per_layer[0] == cross.dropped_per_layer.max() > cross.dropped_per_layer[1]
    assert owl.spec["layer_scores"] != cross.spec["layer_scores"]
    with pytest.raises(ValueError, match="layer_scores"):
        prune.prune_plan(ranking, 0.25, "owl")
