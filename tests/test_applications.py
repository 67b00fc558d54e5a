"""The experiments of chapters 08-10 on a tiny random model: grid, tests over languages, the
cross-language matrix, per-layer rules, sparse activation, speed and findings."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from babel_lib import stats
from babel_lib.chapters import layerwise_pruning, pruning, sparse_activation as sparse
from babel_lib.core.cache import Store
from babel_lib.data import corpus
from babel_lib.experts.moefy import build_partition
from babel_lib.experts.profile import Definitions, profile_passages
from babel_lib.interventions import applications as app, evaluate, prune, timing
from babel_lib.testing import tiny_model

LANGS = ["aaa", "bbb", "ccc"]
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def _text(seed, n):
    return " ".join(np.random.default_rng(seed).choice(WORDS, n))


def _evalset(langs=LANGS, n=10):
    texts = {l: [_text(100 + 10 * i + j, 8) + " " + l for j in range(n)] for i, l in enumerate(langs)}
    return evaluate.EvalSet(
        list(langs), texts, {l: [f"e{j}" for j in range(n)] for l in langs}, {l: "udhr" for l in langs},
        {l: l for l in langs}, {l: sum(len(t.encode()) for t in v) for l, v in texts.items()},
        {l: sum(len(t) for t in v) for l, v in texts.items()}, {"udhr": n}, {"udhr": "paragraphs"}, 100, 32, 0, None)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices: one thread avoids thread-pool stalls on a busy machine (20x faster here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def exp(tmp_path_factory, one_thread):
    store = Store(tmp_path_factory.mktemp("cache"))
    lm = tiny_model("llama")
    cal = {l: [_text(10 * i + j, 12) + " " + l for j in range(5)] for i, l in enumerate(LANGS)}
    passages = corpus.Passages("udhr", "calibration", [f"c{j}" for j in range(5)], LANGS, cal)
    part = build_partition(lm, expert_size=16, method="random", seed=1, store=store)
    prof = profile_passages(lm, part, passages, max_length=32, batch_size=4,
                            definitions=Definitions(top_k_fraction=0.25), store=store, progress=False)
    imp = app.calibration_importance(lm, prof, passages, batch_size=4, store=store)
    return app.Experiment(lm, part, prof, _evalset(), imp, store, batch_size=4)


GRID = app.Grid(rates=(0.25, 0.5), seeds=(0, 1), allocations=("uniform", "layerwise", "entropy"))


@pytest.fixture(scope="module")
def grid(exp):
    return app.run_grid(exp, GRID)


# ------------------------------------------------------------------------------ statistics
def test_sign_flip_test_is_exact_for_few_languages():
    d = np.array([0.3, 0.1, 0.2, 0.05, 0.4])
    res = stats.sign_flip_test(d)
    assert res.p_value == pytest.approx(2 / 32) and res.permutations == 32 and res.method == "sign-flip (exact)"
    brute = np.mean([abs(np.mean(np.array(s) * d)) >= abs(d.mean()) - 1e-12
                     for s in itertools.product([-1, 1], repeat=5)])
    assert res.p_value == pytest.approx(brute)
    assert stats.sign_flip_test(d, alternative="less").p_value == 1.0
    assert stats.sign_flip_test(-d, alternative="less").p_value == pytest.approx(1 / 32)
    mixed = stats.sign_flip_test(np.array([0.3, -0.3, 0.1, -0.1]))
    assert mixed.p_value == 1.0
    many = stats.sign_flip_test(np.full(20, 0.1), permutations=999, seed=1)
    assert many.method == "sign-flip (random)" and many.p_value == pytest.approx(1 / 1000, abs=3 / 1000)
    assert stats.sign_flip_test(np.full(20, 0.1), permutations=999, seed=1).p_value == many.p_value


def test_paired_ratio_matches_paired_comparison_and_averages_seeds_geometrically():
    rng = np.random.default_rng(2)
    passage = np.repeat(np.arange(20), 3)
    tokens = rng.integers(4, 30, size=60)

    def result(shift):
        return {"window_nll": tokens * (2.0 + shift) + rng.normal(0, 0.5, 60), "window_tokens": tokens,
                "window_passage": passage}

    a, b, c = result(0.0), result(0.1), result(0.3)
    one = app.paired_ratio(a, b, n_resamples=1000, seed=3, names=("dense", "x"))
    ref = evaluate.paired_comparison(a, b, n_resamples=1000, seed=3)
    assert (one["ratio"], one["low"], one["high"]) == pytest.approx((ref["ratio"], ref["low"], ref["high"]))
    assert one["decision"] == {"dense better": "worse than dense", "other better": "beats dense"}.get(
        ref["decision"], ref["decision"])
    two = app.paired_ratio([b, c], a)
    lp = [r["window_nll"].sum() / tokens.sum() for r in (a, b, c)]
    assert two["ratio"] == pytest.approx(math.exp(lp[0] - (lp[1] + lp[2]) / 2))
    assert two["decision"] == "beats reference" and two["high"] < 1
    assert app.decision(0.9, 0.95, "random") == "beats random"
    assert app.decision(1.01, 1.2, "random") == "worse than random"
    assert app.decision(0.9, 1.2, "random") == "indistinguishable"


def test_grid_validates_and_lists_conditions():
    g = app.Grid(rates=(0.2,), methods=("language", "random"), seeds=(0, 1, 2))
    assert g.conditions() == [("language", 0.2, "uniform", None)] + [("random", 0.2, "uniform", s) for s in (0, 1, 2)]
    assert g.evaluations(9) == 9 * 5
    for bad in ({"methods": ("bogus",)}, {"allocations": ("bogus",)}, {"rates": (1.0,)},
                {"methods": ("language",), "baseline": "random"}):
        with pytest.raises(ValueError):
            app.Grid(**bad)


# ------------------------------------------------------------------------------ the grid
def test_grid_table(exp, grid):
    dense = grid[grid.method == "dense"]
    assert list(dense.language) == LANGS and (dense.ratio == 1).all()
    rows = grid[grid.method != "dense"]
    per = len(GRID.allocations) * len(GRID.rates) * (len(app.METHODS) - 1 + len(GRID.seeds)) * len(LANGS)
    assert len(rows) == per
    assert set(rows.method) == set(app.METHODS)
    for col in ("language", "corpus", "method", "rate", "allocation", "seed", "sparsity", "perplexity",
                "bits_per_char", "ratio", "low", "high", "decision", "baseline_ratio", "baseline_decision"):
        assert col in grid.columns
    assert (rows.low <= rows.ratio + 1e-12).all() and (rows.ratio <= rows.high + 1e-12).all()
    assert set(rows.decision) <= {"beats dense", "worse than dense", "indistinguishable"}
    assert ((rows.decision == "beats dense") == (rows.high < 1)).all()
    # every plan drops the same overall fraction as the uniform plan of its rate
    for rate, g in rows.groupby("rate"):
        assert g.sparsity.nunique() == 1
    # the seed matters only for random plans
    assert rows[rows.method != "random"].seed.isna().all() and set(rows[rows.method == "random"].seed) == {0, 1}
    assert rows[rows.method == "random"].baseline_ratio.isna().all()
    assert rows[rows.method != "random"].baseline_ratio.notna().all()
    r = rows[(rows.method == "language") & (rows.language == "bbb") & (rows.rate == 0.5) & (rows.allocation == "uniform")]
    plan = exp.plan("language", 0.5, language="bbb")
    assert r.plan.iloc[0] == plan.key
    ppl = evaluate.summarize(exp.results(exp.condition(plan), ["bbb"])["bbb"], "x", "bbb", exp.lm)["perplexity"]
    assert r.perplexity.iloc[0] == pytest.approx(ppl)


def test_grid_results_are_cached_across_experiments(exp, grid, monkeypatch):
    again = app.Experiment(exp.lm, exp.partition, exp.profile, exp.evalset, exp.importance, exp.store, batch_size=4)
    monkeypatch.setattr(evaluate, "window_nll", lambda *a, **k: pytest.fail("evaluated again"))
    table = app.run_grid(again, GRID)
    np.testing.assert_allclose(table.perplexity, grid.perplexity)
    # a language's static set at keep 1 - p is its target-language plan at rate p: the same cache entry
    assert sparse.static_plan(again, "aaa", 0.5).key == again.plan("language", 0.5, language="aaa").key
    again.results(again.condition(sparse.static_plan(again, "aaa", 0.75)), ["aaa"])


def test_language_tests(exp, grid):
    tests = app.language_tests(exp, grid, permutations=999)
    assert set(tests.against) == {"best agnostic", "random"} and set(tests.rate) == {0.25, 0.5}
    assert set(tests[tests.against == "best agnostic"].against_method) <= set(app.AGNOSTIC)
    assert (tests.p_adjusted >= tests.p_value - 1e-12).all()
    np.testing.assert_allclose(tests.p_adjusted, stats.holm(tests.p_value))
    assert (tests.languages == 3).all() and (tests.p_value >= 0.25 - 1e-12).all()  # 3 languages: p >= 2 / 8
    row = tests[(tests.against == "random") & (tests.rate == 0.5)].iloc[0]
    g = grid[(grid.rate == 0.5) & (grid.allocation == "uniform")]
    lang = g[g.method == "language"].set_index("language").perplexity
    med = app.median_seed(grid, 0.5)
    rnd = g[(g.method == "random") & (g.seed == med)].set_index("language").perplexity  # the median seed
    assert row.ratio == pytest.approx(np.exp(np.mean(np.log(lang / rnd))))
    assert row.low <= row.ratio <= row.high
    best = app.best_agnostic(grid, 0.5)
    assert best in app.AGNOSTIC


def test_cross_language_matrix(exp):
    cells, summary = app.cross_language_matrix(exp, 0.5)
    assert len(cells) == 9 and cells[cells.own].ratio_own.eq(1).all()
    off = cells[~cells.own]
    assert ((off.low > 1) == (off.decision == "worse than own")).all()
    for b in LANGS:
        col = cells[cells.evaluated_on == b]
        assert (col.pruned_for.iloc[col.perplexity.argmin()] == b) == (b in summary["own_best_languages"])
        assert ((col[~col.own].low > 1).all()) == (b in summary["own_best_beyond_noise_languages"])
    assert summary["own_best_beyond_noise"] <= summary["own_best"] <= 3
    assert summary["cells_off"] == 6


def test_allocation_comparison_and_layer_rates(exp, grid):
    cells, tests = app.allocation_comparison(exp, grid, permutations=999)
    assert set(cells.rule) == {"layerwise", "entropy"} and set(tests.rate) == {0.25, 0.5}
    assert len(cells) == 2 * 2 * len(app.METHODS) * 3
    assert (tests.p_adjusted >= tests.p_value - 1e-12).all()
    rates = app.layer_rates(exp, [0.25, 0.5])
    assert set(rates.rule) == {"uniform", "layerwise", "entropy", "owl", "crosslingual"}
    assert rates.groupby(["rule", "rate"]).measured_sparsity.first().unstack("rule").nunique(axis=1).eq(1).all()
    u = rates[rates.rule == "uniform"]
    assert (u.layer_rate == u.rate).all()


def test_sparse_activation_at_equal_compute(exp):
    sp = sparse.sparse_activation(exp, keep_fractions=(1.0, 0.5), oracle=True)
    E = exp.partition.n_experts
    assert set(sp.selector) == {"static", "router", "oracle"}
    full = sp[sp.keep == 1.0]
    np.testing.assert_allclose(full.ratio, 1.0, rtol=1e-6)  # every expert: the dense model
    half = sp[sp.keep == 0.5]
    assert (half.experts == E // 2).all()
    st = half[half.selector == "static"].set_index("language")
    for l in LANGS:  # the static set is the target-language plan at rate 0.5
        res = exp.results(exp.condition(exp.plan("language", 0.5, language=l)), [l])[l]
        assert st.loc[l, "perplexity"] == pytest.approx(evaluate.summarize(res, "", l, exp.lm)["perplexity"])
    assert half[half.selector != "static"].vs_static_ratio.notna().all()


def test_make_batch_and_speed_table(exp):
    ids = timing.make_batch(exp.lm, 3, 17)
    assert ids.shape == (3, 17) and (ids[:, 0] == exp.lm.tokenizer.bos_token_id).all()
    assert ids.device == exp.lm.device and ids.dtype == torch.long
    speed, times = sparse.speed_table(exp, keep_fractions=(0.5,), batch=2, length=16, rounds=1, warmup=0)
    row = speed.iloc[0]
    assert row.experts == exp.partition.n_experts // 2 and row.computed == 0.5
    assert row.ffn_speedup_low <= row.ffn_speedup <= row.ffn_speedup_high and row.backbone_speedup > 0
    assert set(times.name) == {"dense | FFN", "dense | backbone", "keep 0.5 | FFN", "keep 0.5 | backbone"}
    # the dense model is intact afterwards
    assert all(l.n_neurons == exp.partition.n_neurons for l in prune.ffn_layers(exp.lm.model))


def _plain(value):
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return isinstance(value, (int, float, str, bool, np.integer, np.floating))


def test_findings_are_plain_values(exp, grid):
    tests = app.language_tests(exp, grid, permutations=99)
    _, summary = app.cross_language_matrix(exp, 0.5)
    f = pruning.findings_pruning(grid, tests, summary)
    assert all(_plain(v) for v in f.values())
    assert f["languages"] == 3 and f["cells_language"] == 6
    assert f["verdict_beats_random"] in ("reproduced", "partly reproduced", "not reproduced")
    cells, t = app.allocation_comparison(exp, grid, permutations=99)
    f9 = layerwise_pruning.findings_layerwise(t, cells, app.layer_rates(exp, [0.25, 0.5]))
    assert all(_plain(v) for v in f9.values()) and f9["sparsity_gap"] == 0.0
    sp = sparse.sparse_activation(exp, keep_fractions=(0.5,))
    speed, _ = sparse.speed_table(exp, keep_fractions=(0.5,), batch=1, length=8, rounds=1, warmup=0)
    q = sparse.quality_vs_speed(sp, speed)
    f10 = sparse.findings_sparse(q, sp, speed)
    assert all(_plain(v) for v in f10.values())
    assert "static_0.5" in f10 and "speed_0.5" in f10 and f10["languages"] == 3


def test_importance_needed_for_agnostic_methods(exp):
    bare = app.Experiment(exp.lm, exp.partition, exp.profile, exp.evalset, None, exp.store)
    with pytest.raises(ValueError, match="importance"):
        bare.plan("wanda", 0.25)
    # fewer resamples than the design's minimum: a test run (the smoke profile), said in the protocol
    quick = app.Experiment(exp.lm, exp.partition, exp.profile, exp.evalset, None, exp.store, n_resamples=100)
    assert quick.test_run and not exp.test_run
    assert "Test run" in quick.describe() and "Test run" not in exp.describe()
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="n_resamples"):
            app.Experiment(exp.lm, exp.partition, exp.profile, exp.evalset, None, exp.store, n_resamples=bad)


# ------------------------------------------------------------------------------ additions for the chapters
def test_comparison_cells_match_the_tests_over_languages(exp, grid):
    comparisons = (("language", "best agnostic"), ("language", "random"))
    cells = app.comparison_cells(exp, grid, comparisons)
    tests = app.language_tests(exp, grid, comparisons, permutations=99)
    assert len(cells) == 2 * 2 * len(LANGS)
    assert ((cells.low <= cells.ratio + 1e-12) & (cells.ratio <= cells.high + 1e-12)).all()
    assert set(cells.decision) <= {"beats best agnostic", "worse than best agnostic", "beats random",
                                   "worse than random", "indistinguishable"}
    for t in tests.itertuples():
        c = cells[(cells.against == t.against) & (cells.rate == t.rate)]
        assert (c.against_method == t.against_method).all()
        # the test's effect is the geometric mean of the per-language ratios
        assert t.ratio == pytest.approx(float(np.exp(np.log(c.ratio).mean())))
        assert t.wins_beyond_noise == int(c.decision.str.startswith("beats").sum())
        assert t.losses_beyond_noise == int(c.decision.str.startswith("worse").sum())
    # random: against the median seed, as in the grid's baseline columns
    g = grid[(grid.method == "language") & (grid.allocation == "uniform")].set_index(["rate", "language"])
    r = cells[cells.against == "random"].set_index(["rate", "language"])
    np.testing.assert_allclose(r.ratio, g.loc[r.index, "baseline_ratio"])


def test_findings_and_verdicts_of_the_three_chapters(exp, grid):
    from babel_lib.report import verdicts

    comparisons = (("language", "best agnostic"), ("language", "random"), ("language", "multilingual"))
    tests = app.language_tests(exp, grid, comparisons, permutations=99)
    cells = app.comparison_cells(exp, grid, comparisons)
    cells_m, summary = app.cross_language_matrix(exp, 0.5)
    f = pruning.findings_pruning(grid, tests, summary, cells=cells)
    assert all(_plain(v) for v in f.values())
    assert f["n_tests"] == 6 and f["random_seeds"] == 2 and f["udhr_languages"] == ", ".join(LANGS)
    assert "tests_multilingual" in f and f["tests_multilingual_rates"] == 2
    assert f["vs_best_agnostic_cells"] == 6 and f["vs_random_cells"] == 6
    assert f["vs_random_better"] == int(cells[cells.against == "random"].decision.str.startswith("beats").sum())
    assert f["best_cell"].startswith(tuple(LANGS)) and f["matrix_names"] == ", ".join(LANGS)
    rows = pruning.verdicts_pruning(f)
    assert [r["claim"] for r in rows] == [verdicts.table([verdicts.row(c, "", "", "reproduced")]).claim[0]
                                          for c in ("beats_random", "beats_dense")]
    assert all(r["verdict"] in verdicts.VERDICTS for r in rows)
    assert f["tests_random"] in rows[0]["result"]

    ac, at = app.allocation_comparison(exp, grid, methods=("language", "multilingual"), permutations=99)
    f9 = layerwise_pruning.findings_layerwise(at, ac, app.layer_rates(exp, [0.25, 0.5]))
    assert f9["methods"] == ["language", "multilingual"] and f9["rules"] == ["layerwise", "entropy"]
    assert f9["rates"] == [0.25, 0.5] and "entropy_range" in f9 and "layerwise_language_cells_text" in f9
    (row9,) = layerwise_pruning.verdicts_layerwise(f9)
    assert row9["verdict"] == f9["verdict_layerwise"] and f9["entropy_language_text"] in row9["result"]

    sp = sparse.sparse_activation(exp, keep_fractions=(0.75, 0.5), oracle=True)
    st = sparse.sparse_tests(sp)
    assert len(st) == 2 * 3 and set(st.against) == {"dense", "static"}
    np.testing.assert_allclose(st.p_adjusted, stats.holm(st.p_value))
    router = sp[(sp.selector == "router") & (sp.keep == 0.5)]
    row = st[(st.selector == "router") & (st.keep == 0.5)].iloc[0]
    assert row.ratio == pytest.approx(float(np.exp(np.log(router.vs_static_ratio).mean())))
    assert (st.p_value >= 0.25 - 1e-12).all()  # 3 languages: the exact test cannot go below 2 / 8
    speed, times = sparse.speed_table(exp, keep_fractions=(0.75, 0.5), batch=1, length=8, rounds=1, warmup=0,
                                   whole_model=True)
    assert {"dense | model", "keep 0.5 | model"} <= set(times.name)
    assert speed.model_speedup.notna().all() and (speed.dense_tokens_per_second > 0).all()
    q = sparse.quality_vs_speed(sp, speed)
    assert q[q.selector == "static"].model_speedup.notna().all()
    recall = sparse.recall_summary(sparse.router_recall(exp, keep_fractions=(0.75, 0.5)))
    assert set(recall.selector) == {"centroid router", "static 0.75", "static 0.5"}
    assert ((recall.lowest_layer <= recall.recall + 1e-12) & (recall.recall <= recall.highest_layer + 1e-12)).all()
    f10 = sparse.findings_sparse(q, sp, speed, tests=st, recall=recall)
    assert all(_plain(v) for v in f10.values())
    assert f10["keeps"] == [0.75, 0.5] and f10["n_tests"] == 6 and "whole model" in f10["speed_0.5"]
    assert "test_router_static_0.5" in f10 and "recall_router_0.25" in f10 and "recall_static_0.5_0.5" in f10
    (row10,) = sparse.verdicts_sparse(f10)
    assert row10["verdict"] == f10["verdict_sparse_activation"] and "target-language pruning" in row10["result"]


def test_sparse_verdict_rule():
    def quality(ratio, high, model_speedup_low):
        return pd.DataFrame([{"selector": "static", "keep": 0.9, "experts": 58, "languages": 9, "ratio": ratio,
                              "low": ratio * 0.98, "high": high, "best": ratio, "worst": ratio,
                              "worse_than_dense": 0, "beats_dense": 0, "ffn_speedup": 1.1, "ffn_speedup_low": 1.05,
                              "ffn_speedup_high": 1.2, "backbone_speedup": 1.05, "backbone_speedup_low": 1.01,
                              "backbone_speedup_high": 1.1, "model_speedup": 1.02, "model_speedup_low": model_speedup_low,
                              "model_speedup_high": 1.04, "speed_noisy": False}])

    assert sparse.findings_sparse(quality(1.02, 1.04, 1.01))["verdict_sparse_activation"] == "reproduced"
    assert sparse.findings_sparse(quality(1.04, 1.07, 1.01))["verdict_sparse_activation"] == "partly reproduced"
    assert sparse.findings_sparse(quality(1.24, 1.3, 1.01))["verdict_sparse_activation"] == "not reproduced"
    # not measurably faster (a round in which the whole sliced model was slower): not reproduced
    f = sparse.findings_sparse(quality(1.02, 1.04, 0.99))
    assert f["verdict_sparse_activation"] == "not reproduced" and f["faster_keeps"] == 0


def test_sparse_text_follows_the_timing_table():
    """The evidence sentence names the parts that were faster in every round (a FFN faster in every
    round is not 'no static set faster'), and per-token selection is judged by the oracle too."""
    q = pd.DataFrame([{"selector": "static", "keep": 0.7, "experts": 45, "languages": 9, "ratio": 2.48, "low": 2.37,
                       "high": 2.62, "best": 2.3, "worst": 2.7, "worse_than_dense": 9, "beats_dense": 0,
                       "ffn_speedup": 1.43, "ffn_speedup_low": 1.26, "ffn_speedup_high": 1.50,
                       "backbone_speedup": 1.22, "backbone_speedup_low": 1.15, "backbone_speedup_high": 1.25,
                       "model_speedup": 1.09, "model_speedup_low": 0.81, "model_speedup_high": 1.13,
                       "speed_noisy": False}])
    tests = pd.DataFrame([{"selector": s, "against": a, "keep": 0.7, "ratio": r, "low": r * 0.9, "high": r * 1.1,
                           "p_value": 0.004, "p_adjusted": 0.02} for s, a, r in
                          (("static", "dense", 2.48), ("router", "static", 4.39), ("oracle", "static", 0.57))])
    f = sparse.findings_sparse(q, tests=tests)
    assert f["faster_parts_0.7"] == ["FFN", "backbone"] and f["faster_keeps"] == 0
    assert f["router_worse_keeps"] == 1 and f["oracle_better_keeps"] == 1
    speed = sparse.speed_sentence(f)
    assert "the FFN and the backbone at keep 0.7" in speed and "No part" not in speed
    assert "whole model" in speed and f["verdict_sparse_activation"] == "not reproduced"
    per_token = sparse.per_token_sentence(f)
    assert "oracle is better at 1" in per_token and "can beat the static set" in per_token
    (row,) = sparse.verdicts_sparse(dict(f, languages=9))
    assert "No static set" not in row["evidence"] and speed in row["evidence"]
    # nothing faster anywhere: said so
    slow = sparse.findings_sparse(q.assign(ffn_speedup_low=0.9, backbone_speedup_low=0.95))
    assert sparse.speed_sentence(slow).startswith("No part of the sliced model")


def test_readable_tables_and_numbers(exp, grid):
    rows = app.labelled(grid[grid.method != "dense"])
    assert set(rows.ranking) == {app.METHOD_LABELS[m] for m in app.METHODS}
    assert (rows.name == rows.language).all()  # the tiny languages have no names: their keys stay
    assert set(rows[rows.method == "random"].seed_name) == {"seed 0", "seed 1"}
    assert (rows[rows.method != "random"].seed_name == "").all()
    cells = app.labelled(app.comparison_cells(exp, grid, (("language", "best agnostic"), ("language", "random"))))
    best = cells[cells.against == "best agnostic"]
    assert (best.against_label == "best agnostic (" + best.against_name + ")").all()
    assert (cells[cells.against == "random"].against_label == "random").all()
    text = exp.text_table()
    assert list(text.language) == LANGS and {"name", "corpus", "text", "tokens"} <= set(text.columns)
    assert app.number_text(1.04321) == "1.04" and app.number_text(0.00153) == "0.00153" and app.number_text(4031.2) == "4,031"
    assert app.number_text(12.345) == "12.3" and app.number_text(float("nan")) == "n/a"
    assert app.ratio_interval_text(0.5, 0.25, 1.5) == "x0.500 [0.250, 1.50]"


# ------------------------------------------------------------------------------ in-domain calibration at equal budgets
def test_in_domain_calibration_gives_every_ranking_the_same_budget(tmp_path, one_thread):
    store = Store(tmp_path)
    lm = tiny_model("llama")
    part = build_partition(lm, expert_size=16, method="random", seed=1, store=store)
    langs = ["eng", "fra", "deu_1996"]
    cal = app.in_domain_calibration(lm, part, langs, budget=900, top_k_fraction=0.25, prefer=("udhr",),
                                    max_length=64, batch_size=4, store=store)
    calibration_ids = set(corpus.passages(langs, corpus="udhr", split="calibration").ids)
    assert cal.profile.languages == cal.multilingual.languages == langs
    for i, l in enumerate(langs):
        assert set(cal.text.ids[l]) <= calibration_ids  # calibration split, never the evaluation one
        assert set(cal.pooled_text.ids[l]) <= set(cal.text.ids[l])  # the pooled share is part of the same text
        assert cal.text.tokens[l] >= 900 and cal.pooled_text.tokens[l] >= 300
    own, pooled = cal.profile.tokens, cal.multilingual.tokens
    # the target-language ranking of one language and the pooled rankings see about the same number of tokens
    # (up to one passage a language: UDHR paragraphs are long here; pooling all of it would be 3 times as many)
    assert 0.7 < pooled.sum() / own.mean() < 1.7
    assert cal.importance.tokens == pooled.sum()  # importances on exactly the pooled tokens
    exp = app.Experiment(lm, part, cal.profile, _evalset(langs, 3), cal.importance, store, batch_size=4,
                         multilingual=cal.multilingual)
    multi = exp.ranking("multilingual")
    assert np.array_equal(multi.scores, cal.multilingual.frequencies().mean(axis=0))
    assert not np.array_equal(multi.scores, cal.profile.frequencies().mean(axis=0))
    assert np.array_equal(exp.ranking("language", "fra").scores, cal.profile.frequencies()[1])
    assert np.array_equal(exp.levels(), cal.multilingual.frequencies().mean(axis=0))
    table = cal.table()
    assert list(table["tokens"]) == [cal.text.tokens[l] for l in langs]
    assert list(table["pooled_tokens"]) == [cal.pooled_text.tokens[l] for l in langs]
    text = cal.describe()
    assert "equal budgets" in text and f"{int(pooled.sum()):,} tokens in all" in text
    with pytest.raises(ValueError, match="budget"):
        app.in_domain_calibration(lm, part, langs, budget=0, prefer=("udhr",), store=store)


def test_the_fields_per_layer_rules_run_in_the_experiment_at_the_uniform_budget(exp):
    uniform = exp.plan("multilingual", 0.5)
    for rule in ("owl", "crosslingual"):
        plan = exp.plan("multilingual", 0.5, rule)
        assert plan.dropped_per_layer.sum() == uniform.dropped_per_layer.sum() and plan.allocation == rule
        assert np.abs(plan.layer_rates - 0.5).max() <= exp.max_deviation + 1e-9
    assert exp.layer_scores("owl").shape == (exp.partition.n_layers,)
    np.testing.assert_allclose(exp.layer_scores("crosslingual"),
                               prune.crosslingual_correlation(exp.profile.frequencies()))
    cells, tests = app.allocation_comparison(exp, app.run_grid(exp, app.Grid(rates=(0.5,), methods=("multilingual",),
                                                                              allocations=("uniform", "owl"),
                                                                              baseline=None)),
                                             rules=("owl",), methods=("multilingual",), permutations=99)
    assert set(cells["rule"]) == {"owl"} and len(tests) == 1


def test_median_seed_and_band_known_answer():
    rows = []
    for seed, r in zip(range(4), (8.0, 2.0, 32.0, 4.0)):  # geometric means over the two languages: 8, 2, 32, 4
        rows += [{"method": "random", "rate": 0.3, "allocation": "uniform", "seed": seed, "language": l,
                  "ratio": r * f} for l, f in (("a", 2.0), ("b", 0.5))]
    table = pd.DataFrame(rows)
    assert app.median_seed(table, 0.3) == 3  # sorted 2 (seed 1), 4 (seed 3), 8 (seed 0), 32: the lower median
    assert app.median_seed(table[table.seed != 2], 0.3) == 3  # 2, 4, 8: the middle one
    assert app.median_seed(table, 0.1) is None
    band = app.random_band(table).iloc[0]
    assert (band.seeds, band.median_seed) == (4, 3)
    assert (band["lowest"], band["median"], band["highest"]) == pytest.approx((2.0, 4.0, 32.0))


def test_combined_tests_correct_one_family_per_claim():
    a = pd.DataFrame({"against": ["x", "y"], "p_value": [0.01, 0.04], "p_adjusted": [0.02, 0.04]})
    b = pd.DataFrame({"against": ["x"], "p_value": [0.03], "p_adjusted": [0.03]})
    both = app.combined_tests(a, b, by=None)
    np.testing.assert_allclose(both.p_adjusted, stats.holm(np.array([0.01, 0.04, 0.03])))
    per = app.combined_tests(a, b)  # claim x: two tests (0.01, 0.03); claim y: one
    np.testing.assert_allclose(per.p_adjusted, [*stats.holm(np.array([0.01, 0.03]))[:1], 0.04,
                                                stats.holm(np.array([0.01, 0.03]))[1]])
