"""Chapter 7's steps (babel_lib.chapters.instruction_tuning): distances and retention on constructed profiles with
known answers, the halves and their bootstrap, the sign-flip test over languages, paired intervals
over held-out paragraphs, and the whole chain (make, measure, profile, compare) on tiny models."""

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import torch

from babel_lib import stats
from babel_lib.chapters import families, instruction_tuning as te, instruction_tuning as tp
from babel_lib.core.definitions import Definitions
from babel_lib.data import instructions
from babel_lib.experts.profile import Profile
from babel_lib.stats import compare
from babel_lib.testing import tiny_model

pytestmark = pytest.mark.usefixtures("isolated_cache", "one_thread")

LANGS = ["eng", "fra", "cmn_hans"]
KEYS = ["eng", "fra", "spa", "rus", "hin", "arb"]


def profile(counts: np.ndarray, tokens: np.ndarray, languages=None) -> Profile:
    """A Profile from per-passage counts [n, P, L, E] and tokens [n, P] (top 20% of the experts)."""
    n, P = tokens.shape
    return Profile(languages=list(languages or KEYS[:n]), passage_ids=[f"p{i}" for i in range(P)],
                   passage_counts=counts.astype(np.int32), passage_tokens=tokens.astype(np.int64),
                   passage_characters=(tokens * 4).astype(np.int64), model_name="m", model_fingerprint="f",
                   partition_key="p", expert_size=4, view="test", definitions=asdict(Definitions()),
                   corpus={"corpus": "test", "split": "evaluation"}, dtype="float32")


def simulated(n=4, P=8, L=3, E=10, tokens=60, seed=0):
    """Base counts drawn around language-specific expert probabilities (2 of 10 experts a token)."""
    rng = np.random.default_rng(seed)
    prob = rng.dirichlet(np.ones(E) * 2, size=(n, L)) * 2
    prob = np.clip(prob, 0, 0.95)
    counts = rng.binomial(tokens, np.broadcast_to(prob[:, None], (n, P, L, E)))
    return counts, np.full((n, P), tokens)


def shifted(counts: np.ndarray, amount: int) -> np.ndarray:
    """The same tokens, with up to ``amount`` activations a passage moved from expert 0 to expert 1."""
    out = counts.copy()
    d = np.minimum(out[..., 0], amount)
    out[..., 0] -= d
    out[..., 1] += d
    return out


# ---------------------------------------------------------------------------- distances and retention
def test_aligned_distance_known_values():
    p = np.zeros((1, 2, 4))
    p[0, 0] = [1, 1, 0, 0]
    p[0, 1] = [1, 0, 1, 0]
    q = p.copy()
    assert te.aligned_distance(p, q)[0] == pytest.approx(0, abs=1e-7)
    r = np.zeros((1, 2, 4))
    r[0, 0] = [0, 0, 1, 1]
    r[0, 1] = [0, 1, 0, 1]
    # no common support in either layer: distance 1
    assert te.aligned_distance(p, r)[0] == pytest.approx(1)
    np.testing.assert_allclose(te.aligned_distance(p, r, per_layer=True), [[1, 1]])
    # one layer the same, one disjoint: whole-profile BC = 1/2, H = sqrt(1/2)
    s = r.copy()
    s[0, 0] = p[0, 0]
    assert te.aligned_distance(p, s)[0] == pytest.approx(np.sqrt(0.5))
    np.testing.assert_allclose(te.aligned_distance(p, s, per_layer=True), [[0, 1]], atol=1e-7)


def test_language_distances_match_the_chapters_hellinger():
    counts, tokens = simulated()
    f = counts.sum(1) / tokens.sum(1)[:, None, None]
    np.testing.assert_allclose(te.language_distances(f), families.profile_distances(f), atol=1e-9)
    np.testing.assert_allclose(te.language_distances(f, per_layer=True), families.layer_distances(f), atol=1e-9)
    # aligned distances are the diagonal blocks of the same distance
    g = f[::-1].copy()
    both = families.profile_distances(np.concatenate([f, g]))
    np.testing.assert_allclose(te.aligned_distance(f, g), both[np.arange(4), 4 + np.arange(4)], atol=1e-9)
    # leading axes are kept
    assert te.language_distances(np.stack([f, g]), per_layer=True).shape == (2, 3, 4, 4)


def test_retention_fractions_are_compare_expert_retention_pooled():
    a_counts, tokens = simulated(seed=1)
    b_counts, _ = simulated(seed=2)
    fa = a_counts.sum(1) / tokens.sum(1)[:, None, None]
    fb = b_counts.sum(1) / tokens.sum(1)[:, None, None]
    rate = 0.2
    table = compare.expert_retention(fa, fb, [f"l{i}" for i in range(4)], rate)
    got = te.retention_fractions(fa, fb, 2 * rate)
    for j, kind in enumerate(te.RETENTION_KINDS):
        t = table[table["kind"] == kind]
        want = t["kept"].sum() / t["n_base"].sum() if t["n_base"].sum() else np.nan
        assert got[j] == pytest.approx(want, nan_ok=True)
    np.testing.assert_allclose(te.retention_fractions(fa, fa, 2 * rate)[~np.isnan(got)], 1)
    # leading axes
    assert te.retention_fractions(np.stack([fa, fb]), np.stack([fb, fa]), 0.4).shape == (2, 3)


def test_shift_statistics_known_cases():
    counts, tokens = simulated()
    f = lambda c: c.sum(1) / tokens.sum(1)[:, None, None]  # noqa: E731
    A, B = f(counts[:, ::2]), f(counts[:, 1::2])
    # the tuned model equals the base: no shift, full retention
    same = te.shift_statistics(np.stack([A, B, A, B]), threshold=0.4)
    np.testing.assert_allclose(same["shift"], 0, atol=1e-7)
    np.testing.assert_allclose(same["excess"], -same["resample"])
    assert same["resample"].shape == (4,) and same["shift_layer"].shape == (4, 3)
    assert same["by_layer_shift"].shape == (3,) and same["by_third"].shape == (3,)
    assert np.all(same["resample"] > 0) and np.all(same["language"] > same["resample"])
    kept = same["retention_tuning"]
    np.testing.assert_allclose(kept[np.isfinite(kept)], 1)
    # the two halves are the same text: no resampling distance
    flat = te.shift_statistics(np.stack([A, A, A, A]), threshold=0.4)
    np.testing.assert_allclose(flat["resample"], 0, atol=1e-7)
    # one change shared by every language: all of the squared change is common
    moved = A.copy()
    delta = A[..., 0].min(axis=0) / 2  # [L], the same for every language
    moved[..., 0] -= delta
    moved[..., 1] += delta
    common = te.shift_statistics(np.stack([A, A, moved, moved]), threshold=0.4)
    assert common["common_share"] == pytest.approx(1)
    assert common["mean_shift"] > 0 and common["ratio_resample"] == np.inf
    # the language reference is the mean distance to the other languages, averaged over the halves
    D = (te.language_distances(A) + te.language_distances(B)) / 2
    np.testing.assert_allclose(same["language"], D.sum(1) / 3)
    with pytest.raises(ValueError, match="4, n, L, E"):
        te.shift_statistics(np.stack([A, B, A]), 0.4)


def test_half_counts_pair_passages():
    counts, tokens = simulated(P=9)
    base = profile(counts, tokens)
    tuned = profile(shifted(counts, 3), tokens)
    c, t = te.half_counts(base, tuned)
    assert c.shape == (16, 4, 3, 10) and t.shape == (16, 4)  # the 9th passage has no partner
    np.testing.assert_array_equal(c[:4], counts[:, 0:8:2])
    np.testing.assert_array_equal(c[4:8], counts[:, 1:8:2])
    np.testing.assert_array_equal(c[8:12], shifted(counts, 3)[:, 0:8:2])
    with pytest.raises(ValueError, match="same passages"):
        te.half_counts(base, profile(counts, tokens + 1))
    small = profile(counts[:, :3], tokens[:, :3])
    with pytest.raises(ValueError, match="at least 4"):
        te.half_counts(small, small)


# ---------------------------------------------------------------------------- tests over languages
def test_sign_flip_exact_and_random():
    # all 5 differences positive: only the identity pattern is as extreme: p = 1 / 32
    stat, p, used = stats.sign_flip(np.array([1.0, 2, 3, 4, 5]), permutations=999, alternative="greater")
    assert stat == pytest.approx(3) and p == pytest.approx(1 / 32) and used == 32
    _, p_less, _ = stats.sign_flip(np.array([1.0, 2, 3, 4, 5]), permutations=999, alternative="less")
    assert p_less == pytest.approx(1.0)
    _, p_two, _ = stats.sign_flip(np.array([1.0, 2, 3, 4, 5]), permutations=999, alternative="two-sided")
    assert p_two == pytest.approx(2 / 32)
    # random flips when 2^n exceeds the permutations: p never below 1 / (permutations + 1)
    d = np.arange(1.0, 13)
    _, p_random, used = stats.sign_flip(d, permutations=99, seed=3, alternative="greater")
    assert used == 99 and p_random == pytest.approx(1 / 100)
    # columns share the patterns and equal single calls
    D = np.stack([d[:5], -d[:5], np.array([1.0, -1, 1, -1, 0.5])], axis=1)
    _, ps, _ = stats.sign_flip(D, permutations=999, alternative="greater")
    for j in range(3):
        assert ps[j] == pytest.approx(stats.sign_flip(D[:, j], permutations=999, alternative="greater")[1])
    assert ps[1] == pytest.approx(1.0)
    # under the null (symmetric differences) p is roughly uniform
    rng = np.random.default_rng(0)
    nulls = [stats.sign_flip(rng.normal(size=8), permutations=999, alternative="greater")[1] for _ in range(200)]
    assert 0.02 < np.mean(np.array(nulls) < 0.1) < 0.2
    with pytest.raises(ValueError, match="alternative"):
        stats.sign_flip(d, alternative="bigger")


# ---------------------------------------------------------------------------- paired summaries
def test_paired_summary_means_and_units():
    units = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    base = np.array([1.0, 3, 2, 2, 4, 0, 1, 1])
    tuned = base + 1
    s = tp.paired_summary(units, base, tuned, n_resamples=200)
    assert s["base"] == pytest.approx(base.mean()) and s["tuned"] == pytest.approx(tuned.mean())
    # a constant paired difference has a degenerate interval: the same resample for both models
    assert s["difference"] == pytest.approx(1) and s["low"] == pytest.approx(1) and s["high"] == pytest.approx(1)
    assert s["units"] == 4 and s["examples"] == 8
    assert s["base_low"] <= s["base"] <= s["base_high"]
    # ratio of sums (loss per token)
    w = tp.paired_summary(units, base, tuned, np.full(8, 2.0), np.full(8, 4.0), n_resamples=50)
    assert w["base"] == pytest.approx(base.sum() / 16) and w["tuned"] == pytest.approx(tuned.sum() / 32)
    with pytest.raises(ValueError, match="2 units"):
        tp.paired_summary(np.zeros(3), np.ones(3), np.ones(3))


def test_example_language_and_paragraph_units():
    frame = pd.DataFrame({"task": ["translate", "to_english", "repeat", "repeat"], "lang": ["fra", "eng", "eng", "fra"],
                          "source_lang": ["eng", "fra", "eng", "fra"], "article": [3, 3, 3, 6],
                          "paragraph": [0, 0, 1, 0]})
    assert tp.example_language(frame).tolist() == ["fra", "fra", "eng", "fra"]
    assert tp.paragraph_units(frame).tolist() == [0, 0, 1, 2]


# ---------------------------------------------------------------------------- the chapter's results
def test_shift_results_find_a_shift_beyond_noise():
    counts, tokens = simulated(n=6, P=12, tokens=400)
    base = profile(counts, tokens)
    big = profile(shifted(counts, 60), tokens)
    views = {"main": (base, big), "other": (base, profile(shifted(counts, 40), tokens))}
    res = te.shift_results(views, n_resamples=200, permutations=999)
    f = res["facts"]
    assert f["beyond_noise"] == 6 and f["holds"] and f["robust"]
    assert f["p_resample"] == pytest.approx(1 / 64) and f["exact"]  # 2^6 sign patterns
    assert f["ratio_resample"][1] > 1
    by_language = res["by_language"]
    for col in ("shift", "resample", "language_distance", "excess"):  # centred intervals hold the estimate
        assert (by_language[f"{col}_low"] <= by_language[col] + 1e-12).all()
        assert (by_language[col] <= by_language[f"{col}_high"] + 1e-12).all()
    assert set(res["by_language_long"]["comparison"]) == set(te.COMPARISONS.values())
    assert len(res["by_layer"]) == 3 and res["by_layer"]["p_bh"].between(0, 1).all()
    assert len(res["robustness"]) == 2 and list(res["tests"]["p_holm"]) >= list(res["tests"]["p_value"])
    assert len(res["by_language_layer"]) == 6 * 3
    row = te.verdict_rows(f, {"made_here": True, "steps": 50, "batch_size": 4})[0]
    assert row["verdict"] == "partly reproduced" and "made here" in row["evidence"]
    published = te.verdict_rows(f, {"made_here": False, "base": "a", "tuned": "b"})[0]
    assert published["verdict"] == "reproduced"
    # no change at all: nothing beyond noise
    none = te.shift_results({"main": (base, base)}, n_resamples=100, permutations=999)["facts"]
    assert none["beyond_noise"] == 0 and not none["holds"] and none["p_resample"] == pytest.approx(1.0)
    assert te.verdict_rows(none, {"made_here": True})[0]["verdict"] == "not reproduced"


# ---------------------------------------------------------------------------- the whole chain on tiny models
def tiny_pair(seed=1) -> tp.Pair:
    """A tiny base model and a 'tuned' copy whose FFN weights moved."""
    base = tiny_model("gemma3_text")
    tuned = tiny_model("gemma3_text")
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for layer in tuned.model.model.layers:
            layer.mlp.gate_proj.weight.add_(0.1 * torch.randn(layer.mlp.gate_proj.weight.shape, generator=g))
    from babel_lib.core.models import model_fingerprint

    tuned.fingerprint = model_fingerprint(tuned.model)
    return tp.Pair(base, tuned, "tiny", "tiny-tuned", "float32", "cpu", None, base.tokenizer, "plain", LANGS,
                   list(instructions.TASKS), 0.0)


def test_make_pair_tunes_and_caches(monkeypatch):
    from babel_lib.experts import pipeline

    lm = tiny_model("gemma3_text")
    monkeypatch.setattr(pipeline, "get_model", lambda spec, dtype="float32", device="auto", device_map=None: lm)
    pair = tp.make_pair("tiny", languages=LANGS, tasks=["repeat"], steps=2, max_length=512, dtype="float32",
                        device="cpu")
    assert pair.made_here and not pair.run.cached and pair.run.meta["hyperparameters"]["steps"] == 2
    assert pair.template == "plain" and pair.tasks == ["repeat"]
    assert len(pair.training_curve()) == 2 and "Trained in this run" in pair.describe()
    assert pair.facts()["steps"] == 2
    again = tp.make_pair("tiny", languages=LANGS, tasks=["repeat"], steps=2, max_length=512)
    assert again.run.cached and "Loaded from the cache" in again.describe()
    given = tp.make_pair("tiny", tuned_model="other")
    assert not given.made_here and given.training_curve() is None and given.template == "auto"


def test_heldout_loss_and_answers_on_tiny_models():
    pair = tiny_pair()
    held = tp.heldout_set(pair, tasks=["repeat", "to_english"])
    assert set(held["split"]) == {"evaluation"}
    loss = tp.heldout_loss(pair, held, examples=2, max_length=512, batch_size=4, n_resamples=50)
    table = loss["table"]
    assert table.iloc[0]["kind"] == "all" and set(table["kind"]) == {"all", "task", "language"}
    assert set(loss["by_task"]["model"]) == {"base", "tuned"}
    ex = loss["examples"]
    assert table.iloc[0]["base"] == pytest.approx(ex["nll_base"].sum() / ex["tokens_base"].sum())
    assert loss["facts"]["examples"] == len(ex)
    # every source language gets translation-into-English prompts
    assert set(ex[ex["task"] == "to_english"]["language"]) == {"fra", "cmn_hans"}
    checks = tp.answer_checks(pair, held, examples=1, max_new_tokens=4, batch_size=4, n_resamples=50)
    rates = checks["rates"].set_index("check")
    assert set(rates.index) == set(tp.CHECKS) | {"chrf"} and rates["base"].between(0, 100).all()
    assert checks["facts"]["prompts"] == len(checks["answers"]) // 2
    side = tp.answer_examples(checks)
    assert len(side) == 2 and {"base", "tuned", "reference"} <= set(side.columns)


def test_profile_pair_and_results_on_tiny_models(monkeypatch):
    from babel_lib.experts import pipeline

    pair = tiny_pair()
    monkeypatch.setattr(pipeline, "get_model", lambda spec, dtype="float32", device="auto", device_map=None: pair.base)
    prof = te.profile_pair(pair, languages=LANGS, max_passages=6, expert_size=32, seeds=[0, 1], neurons=True,
                           max_length=64, batch_size=4)
    views = prof.views
    assert len(views) == 3 and list(views)[-1] == "neurons"
    b, t = prof.main
    assert b.passage_ids == t.passage_ids and np.array_equal(b.passage_tokens, t.passage_tokens)
    assert "Halves: 3 passages each" in prof.describe()
    res = te.shift_results(views, n_resamples=50, permutations=99)
    assert len(res["robustness"]) == 3 and np.isfinite(res["facts"]["mean_shift"][0])
    diff = te.difference_map(b, t)
    assert len(diff) == 3 * b.n_layers * b.n_experts and diff["rank"].between(0, b.n_experts - 1).all()
    weights = te.weight_change(pair, res["by_layer"])
    assert set(weights["table"].columns) >= {"layer", "ffn", "attention", "profile_shift"}
    assert weights["facts"]["ffn_mean"] > 0 and weights["facts"]["attention_mean"] == pytest.approx(0)


# ---------------------------------------------------------------------------- placebos
def test_placebo_results_compare_the_tuning_shift_with_each_placebo():
    """A placebo that moves the profiles as far as the tuning fails the test; a smaller one passes."""
    counts, tokens = simulated(n=6, P=12, tokens=400)
    base = profile(counts, tokens)
    tuned = profile(shifted(counts, 60), tokens)
    views = {"main": (base, tuned), "other": (base, tuned)}
    placebos = {"plain text": [profile(shifted(counts, 60), tokens)] * 2,  # as far as the tuning
                "noise": [profile(shifted(counts, 5), tokens)] * 2}        # much less far
    res = te.placebo_results(views, placebos, n_resamples=200, permutations=999)
    t = res["table"].set_index("placebo")
    assert t.loc["plain text", "ratio"] == pytest.approx(1.0) and not t.loc["plain text", "passes"]
    assert t.loc["noise", "ratio"] > 2 and t.loc["noise", "passes"] and t.loc["noise", "robust"]
    assert t.loc["noise", "languages_larger"] == 6 and t.loc["noise", "p_value"] == pytest.approx(1 / 64)
    assert (t["p_holm"] >= t["p_value"]).all()
    assert ((t["ratio_low"] <= t["ratio"] + 1e-12) & (t["ratio"] <= t["ratio_high"] + 1e-12)).all()  # centred
    f = res["facts"]
    (row,) = te.placebo_verdict(f)
    assert row["verdict"] == "partly reproduced" and "plain text" in row["result"]
    both = te.placebo_results(views, {"noise": placebos["noise"]}, n_resamples=200, permutations=999)["facts"]
    assert te.placebo_verdict(both)[0]["verdict"] == "reproduced"
    assert list(res["by_language"].columns) == ["language", "name", "tuning", "plain text", "noise"]


def test_random_perturbation_matches_the_tuning_norm():
    pair = tiny_pair()
    noise = tp.placebo_models(pair, kinds=["noise"])["noise"]
    base_state, tuned_state = pair.base.model.state_dict(), pair.tuned.model.state_dict()
    for name, p in noise.model.state_dict().items():
        tuned_norm = float((tuned_state[name].float() - base_state[name].float()).norm())
        assert float((p.float() - base_state[name].float()).norm()) == pytest.approx(tuned_norm, rel=1e-4, abs=1e-6)
    assert noise.fingerprint not in (pair.base.fingerprint, pair.tuned.fingerprint)
    # not the tuning's direction: the noise is nearly orthogonal to the tuning's change
    g = pair.tuned.model.model.layers[0].mlp.gate_proj.weight - pair.base.model.model.layers[0].mlp.gate_proj.weight
    h = noise.model.model.layers[0].mlp.gate_proj.weight - pair.base.model.model.layers[0].mlp.gate_proj.weight
    assert abs(float(torch.nn.functional.cosine_similarity(g.detach().flatten(), h.detach().flatten(), dim=0))) < 0.2
    with pytest.raises(ValueError, match="equals the base"):
        tp.placebo_models(tp.Pair(pair.base, pair.base, "tiny", "tiny", "float32", "cpu", None, pair.base.tokenizer,
                                  "plain", LANGS, [], 0.0), kinds=["noise"])


def test_continuation_set_is_plain_text_of_the_same_languages():
    plain = instructions.continuation_set(LANGS, "calibration")
    assert set(plain["template"]) == {"plain"} and set(plain["lang"]) == set(LANGS)
    assert all("###" not in p for p in plain["prompt"]) and all(r for r in plain["response"])
    assert instructions.continuation_set(LANGS, "calibration")["prompt"] == plain["prompt"]  # seeded


def test_placebo_ratio_interval_holds_its_estimate_for_a_noisy_small_placebo():
    """A placebo whose shift is small and mostly noise: resampling inflates its distance far more than
    the tuning's, so a plain percentile interval of the ratio misses the estimate; the centred one not."""
    counts, tokens = simulated(n=6, P=12, tokens=400)
    base, tuned = profile(counts, tokens), profile(shifted(counts, 60), tokens)
    thinned = np.random.default_rng(1).binomial(counts, 0.97)  # a few activations dropped at random
    res = te.placebo_results({"main": (base, tuned)}, {"noise": [profile(thinned, tokens)]}, n_resamples=200,
                             permutations=999)
    r = res["table"].iloc[0]
    assert r["ratio"] > 10 and r["ratio_low"] <= r["ratio"] <= r["ratio_high"]
