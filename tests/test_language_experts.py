"""Chapter 12's library (babel_lib.chapters.language_experts) on a tiny model wired so that the right answer is known:
in layer 0, expert 0 predicts the next letter of lower-case runs ("language" A) and expert 1 that of
upper-case runs ("language" B); nothing else in the model predicts anything. Switching expert 0 off must
harm A and only A."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from babel_lib import stats, testing
from babel_lib.chapters import language_experts as lx
from babel_lib.core.definitions import Definitions
from babel_lib.core.models import LoadedModel, model_fingerprint
from babel_lib.experts.moefy import Partition, moe_view
from babel_lib.experts.profile import profile_passages
from babel_lib.interventions.applications import Experiment
from babel_lib.interventions.evaluate import EvalSet

LOWER = "abcdefghijklmnopqrst"
UPPER = LOWER.upper()


def _wired():
    lm = testing.tiny_model("llama", seed=0)
    m = lm.model
    with torch.no_grad():
        emb = m.model.embed_tokens.weight
        emb.zero_()
        for i, ch in enumerate(LOWER):
            emb[ord(ch) + 4, i] = 1.0
        for i, ch in enumerate(UPPER):
            emb[ord(ch) + 4, 20 + i] = 1.0
        emb[1, 40] = 1.0  # BOS
        for j in range(4, 260):  # every other byte: a direction of its own, never predicted by the experts
            if not emb[j].any():
                emb[j, 41 + j % 23] = 1.0
        m.lm_head.weight.copy_(2.0 * emb)
        for layer in m.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            for p in (layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj):
                p.weight.zero_()
        mlp = m.model.layers[0].mlp
        for i in range(20):  # expert 0 = neurons 0-31 (A), expert 1 = neurons 32-63 (B)
            mlp.gate_proj.weight[i, i] = mlp.up_proj.weight[i, i] = 1.0
            mlp.down_proj.weight[(i + 1) % 20, i] = 0.1
            mlp.gate_proj.weight[32 + i, 20 + i] = mlp.up_proj.weight[32 + i, 20 + i] = 1.0
            mlp.down_proj.weight[20 + (i + 1) % 20, 32 + i] = 0.1
    lm = LoadedModel(m, lm.tokenizer, "tiny-wired", "tiny wired llama", model_fingerprint(m))
    labels = np.tile(np.arange(testing.TINY_FFN) // 32, (2, 1))
    part = Partition(labels, 32, "random", "", 0, lm.name, lm.fingerprint)
    return lm, part


def _runs(alphabet, n, length, seed):
    rng = np.random.default_rng(seed)
    return ["".join(alphabet[(s + k) % 20] for k in range(length)) for s in rng.integers(0, 20, n)]


@pytest.fixture(scope="module")
def wired(tmp_path_factory):
    import os

    old = os.environ.get("BABEL_CACHE")
    os.environ["BABEL_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    torch.set_num_threads(1)
    lm, part = _wired()
    cal = testing.passages({"A": _runs(LOWER, 12, 30, 0), "B": _runs(UPPER, 12, 30, 1)})
    prof = profile_passages(lm, part, cal, Definitions(top_k_fraction=0.25), max_length=64, batch_size=4,
                            progress=False)
    texts = {"A": _runs(LOWER, 10, 25, 2), "B": _runs(UPPER, 10, 25, 3)}
    ids = {k: [f"p{i}" for i in range(10)] for k in texts}
    chars = {k: sum(len(t) for t in v) for k, v in texts.items()}
    evalset = EvalSet(["A", "B"], texts, ids, {"A": "custom", "B": "custom"}, {"A": "A", "B": "B"}, chars, chars,
                      {"custom": 10}, {"custom": "runs"}, 10, 64, 0, None)
    exp = Experiment(lm, part, prof, evalset, batch_size=4, n_resamples=200, seed=0)
    yield lm, part, prof, exp
    if old is None:
        os.environ.pop("BABEL_CACHE", None)
    else:
        os.environ["BABEL_CACHE"] = old


def test_specific_sets_find_the_wired_experts(wired):
    _, _, prof, _ = wired
    sets = lx.specific_sets(prof, m=1, n_resamples=200)
    assert sets.cells["A"].tolist() == [[0, 0]]
    assert sets.cells["B"].tolist() == [[0, 1]]
    assert sets.table["robust"].all()
    # the score is chapter 04's robust definition: positive exactly for the wired experts
    assert (sets.specificity > 0).sum() == 2


def test_matched_controls_keep_layer_and_busyness():
    rng = np.random.default_rng(0)
    pooled = rng.random((3, 40))
    cells = np.array([[0, 5], [1, 7], [1, 8], [2, 39]])
    dec = lx.frequency_deciles(pooled)
    sets = lx.matched_controls(cells, pooled, n_sets=20, seed=1)
    assert len(sets) == 20
    for c in sets:
        assert (c[:, 0] == cells[:, 0]).all()  # same layers
        assert (dec[c[:, 0], c[:, 1]] == dec[cells[:, 0], cells[:, 1]]).all()  # same deciles
        assert not {tuple(x) for x in c} & {tuple(x) for x in cells}  # never the language's own experts
        assert len({tuple(x) for x in c}) == len(c)
    assert not all((a == sets[0]).all() for a in sets[1:])  # random
    again = lx.matched_controls(cells, pooled, n_sets=20, seed=1)
    assert all((a == b).all() for a, b in zip(sets, again))  # seeded


def test_ablation_harms_the_target_language_only(wired):
    _, _, prof, exp = wired
    sets = lx.specific_sets(prof, m=1, n_resamples=200)
    controls = lx.control_sets(sets, n_sets=2, seed=0)
    res = lx.ablation_results(exp, sets, controls, permutations=99)
    m = res["matrix"].set_index(["switched_off", "evaluated_on"])
    assert m.loc[("A", "A"), "damage"] > 1.0 and m.loc[("B", "B"), "damage"] > 1.0  # bits more than double
    assert abs(m.loc[("A", "B"), "damage"]) < 1e-6 and abs(m.loc[("B", "A"), "damage"]) < 1e-6
    s = res["selectivity"].set_index("language")
    assert (s["selectivity_low"] > 0.5).all()
    assert (s["control"].abs() < 1e-6).all()  # matched controls do nothing here
    assert (s["excess_low"] > 0.5).all()
    assert (res["tests"]["observed"] > 0.5).all()
    assert set(res["tests"]["key"]) == {"selectivity", "excess", "own_vs_other_sets"}
    f = res["facts"]  # the mean own damage that the verdict quotes has an interval around it
    assert np.isfinite([f["mean_target_low"], f["mean_target_high"]]).all()
    assert f["mean_target_low"] <= f["mean_target"] <= f["mean_target_high"] and f["mean_target_low"] > 1.0


def test_generation_under_ablation_follows_the_wiring(wired):
    lm, part, prof, _ = wired
    sets = lx.specific_sets(prof, m=1, n_resamples=200)
    dense = lx.cached_generate(lm, ["abcde", "ABCDE"], {"kind": "dense"}, None, max_new_tokens=4)
    assert dense == ["fghi", "FGHI"]
    off = lx.cached_generate(lm, ["abcde", "ABCDE"], {"kind": "mask", "cells": sets.cells["A"].tolist()},
                             lx._mask_context(lm, part, sets.cells["A"]), max_new_tokens=4)
    assert off == ["eeee", "FGHI"]  # without its expert, A only repeats; B is untouched


def test_steering_interventions(wired):
    lm, part, _, _ = wired
    ids = torch.tensor([[1] + [ord(c) + 4 for c in "abcABC"]])
    with torch.no_grad():
        base = lm.model(input_ids=ids).logits
        with lx.scaled_experts(lm.model, part, np.array([[0, 0]]), 1.0):
            assert torch.allclose(lm.model(input_ids=ids).logits, base)
        with lx.scaled_experts(lm.model, part, np.array([[0, 0]]), 0.0):
            off = lm.model(input_ids=ids).logits
        with moe_view(lm.model, part, experts={0: np.array([1, 2, 3])}):
            assert torch.allclose(lm.model(input_ids=ids).logits, off, atol=1e-5)
        vec = torch.zeros(64)
        vec[50] = 1.0
        with lx.added_vector(lm.model, 0, vec, 0.0):
            assert torch.allclose(lm.model(input_ids=ids).logits, base)
    target = 0.5
    states = lx.FinalStates(lm, ["abcde", "ABCDE"])
    assert states.change(lambda: lx.added_vector(lm.model, 0, vec, 0.0)) == 0
    coef, got = lx.match_strength(lm, states, target, 0, vec)
    assert coef > 0 and abs(got - target) < 0.05 * target
    means = lx.mean_residuals(lm, {"A": ["abcd"], "B": ["ABCD"]}, 0)
    assert means["A"].shape == (64,) and means["A"][:20].sum() > 0 and means["A"][20:40].abs().sum() == 0


def test_language_identifier_knows_the_held_out_text():
    """A known-answer check on the corpus (not on model output): every held-out prompt and reference of the
    nine languages is identified as its language."""
    nine = ["eng", "fra", "spa", "por_pt", "ben", "urd", "hin", "arb", "cmn_hans"]
    lid = lx.LanguageID(nine)
    prompts = lx.continuation_prompts(nine, n_prompts=30, seed=0, aliases={"por_pt": "por"})
    assert set(prompts.language) == set(nine)
    for lang, g in prompts.groupby("language"):
        got = [lid.identify(t) for t in pd.concat([g.prompt, g.reference])]
        assert sum(x == lang for x in got) / len(got) >= 0.95, (lang, got)
        assert lid.identify(" ".join(g.reference)) == lang
    assert lid.identify("1234 !!") is None


def test_routing_competence_recovers_a_planted_relation():
    from babel_lib.data import corpus
    from babel_lib.experts.profile import Profile

    langs = list(corpus.resolve_languages("wide:14"))
    if "eng" not in langs:
        langs = ["eng"] + langs[:13]
    n, P, L, E = len(langs), 6, 2, 8
    rng = np.random.default_rng(0)
    drift = np.linspace(0, 1, n)
    base = rng.random((L, E)) + 0.5
    counts = np.zeros((n, P, L, E), dtype=np.int64)
    for i in range(n):
        shape = base * np.exp(drift[i] * rng.normal(size=(L, E)))
        counts[i] = rng.poisson(200 * shape / shape.sum(-1, keepdims=True), size=(P, L, E))
    prof = Profile(langs, [f"p{j}" for j in range(P)], counts, np.full((n, P), 100), np.full((n, P), 400), "x",
                   "f", "k", 1, "v", {}, {}, "float32")
    texts = {l: ["x" * 100] * 5 for l in langs}
    results = {}
    for i, l in enumerate(langs):
        results[l] = {"window_nll": 60.0 * (1 + drift[i]) + rng.normal(0, 1, 5), "window_tokens": np.full(5, 30),
                      "window_passage": np.arange(5)}
    evalset = type("E", (), {"texts": texts})()
    res = lx.routing_competence(prof, results, evalset, n_resamples=200, permutations=999)
    t = res["tests"].set_index("key")
    assert t.loc["rho_reference", "observed"] > 0.6 and t.loc["rho_reference", "p_value"] < 0.05
    assert t.loc["rho_reference", "low"] > 0
    assert len(res["table"]) == n
    # under a per-language token cap the languages read nested prefixes of the passages: the same
    # relation is found, each language's bits per character from its own passages
    capped = {l: {k: v[:3 + i % 3] for k, v in r.items()} for i, (l, r) in enumerate(results.items())}
    res2 = lx.routing_competence(prof, capped, evalset, n_resamples=200, permutations=999)
    t2 = res2["tests"].set_index("key")
    assert t2.loc["rho_reference", "low"] > 0 and t2.loc["rho_reference", "p_value"] < 0.05
    assert res2["facts"]["wide_eval_passages_min"] == 3 and res2["facts"]["wide_eval_passages"] == 5
    i = 4  # a language with 3 + 4 % 3 = 4 passages
    want = capped[langs[i]]["window_nll"].sum() / math.log(2) / (100 * 4)
    assert res2["table"].loc[i, "bits_per_char"] == pytest.approx(want)
