"""Tests of babel_lib.stats: passage bootstrap, permutation tests, corrections, noise floor, prose."""

import inspect

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from babel_lib import stats as S
from babel_lib.core import claims
from babel_lib.stats import analysis as A


def profile(n=3, P=40, L=2, E=5, rate=0.3, tokens=(20, 80), seed=0):
    """Per-passage counts [n, P, L, E] ~ Binomial(tokens, rate) and tokens [n, P]."""
    rng = np.random.default_rng(seed)
    tok = rng.integers(tokens[0], tokens[1], (n, P))
    counts = rng.binomial(tok[:, :, None, None], rate, (n, P, L, E))
    return counts, tok


# ---------------------------------------------------------------------------- resampling
def test_resamples_and_frequencies():
    idx = S.passage_resamples(7, 50, seed=3)
    assert idx.shape == (50, 7) and idx.min() >= 0 and idx.max() < 7
    np.testing.assert_array_equal(idx, S.passage_resamples(7, 50, seed=3))
    assert not np.array_equal(idx, S.passage_resamples(7, 50, seed=4))
    W = S.multiplicities(idx, 7)
    assert W.shape == (50, 7) and (W.sum(axis=1) == 7).all()
    np.testing.assert_array_equal(W[5], np.bincount(idx[5], minlength=7))

    counts, tok = profile(P=7)
    F = S.resampled_frequencies(counts, tok, idx)
    assert F.shape == (50, 3, 2, 5)
    for b in (0, 17, 49):  # direct: sum over the drawn passages (with repeats) / their tokens
        direct = counts[:, idx[b]].sum(axis=1) / tok[:, idx[b]].sum(axis=1)[:, None, None]
        np.testing.assert_allclose(F[b], direct)


def test_bootstrap_uses_the_documented_resamples():
    counts, tok = profile(P=30)
    res = S.bootstrap(lambda f: f[1, 0, 2], counts, tok, n_resamples=300, seed=11)
    F = S.resampled_frequencies(counts, tok, S.passage_resamples(30, 300, seed=11))
    np.testing.assert_allclose(res.samples, F[:, 1, 0, 2])
    assert res.estimate == pytest.approx(counts[1, :, 0, 2].sum() / tok[1].sum())
    # percentile interval: the 2.5% and 97.5% quantiles of the samples
    assert (res.low, res.high) == pytest.approx(tuple(np.quantile(res.samples, [0.025, 0.975])))
    res90 = S.bootstrap(lambda f: f[1, 0, 2], counts, tok, n_resamples=300, seed=11, level=0.9)
    assert (res90.low, res90.high) == pytest.approx(tuple(np.quantile(res.samples, [0.05, 0.95])))


def test_same_resample_for_every_language():
    counts, tok = profile(n=2, P=25)
    counts[1], tok[1] = counts[0], tok[0]  # two identical languages
    res = S.bootstrap(lambda f: f[0] - f[1], counts, tok, n_resamples=200)
    assert np.all(res.samples == 0) and np.all(res.low == 0) and np.all(res.high == 0)
    # independent resamples per language would not cancel: the check above can fail
    F = S.resampled_frequencies(counts, tok, S.passage_resamples(25, 200, seed=1))
    G = S.resampled_frequencies(counts, tok, S.passage_resamples(25, 200, seed=2))
    assert np.abs(F[:, 0] - G[:, 1]).max() > 0


def test_pool_passages_keeps_frequencies():
    counts, tok = profile(P=10)
    c, t = S.pool_passages(counts, tok, 3)
    assert c.shape == (3, 4, 2, 5) and t.shape == (3, 4)
    np.testing.assert_array_equal(c.sum(axis=1), counts.sum(axis=1))
    np.testing.assert_array_equal(t[:, -1], tok[:, 9])


# ---------------------------------------------------------------------------- bootstrap intervals
def test_bootstrap_coverage_on_a_known_model():
    """Passages differ in their rate (Beta around 0.3): a passage bootstrap keeps that extra
    variance, a token-level binomial interval would miss it. 300 datasets of 50 passages, 95%
    intervals (their coverage in this design, from 1,000 datasets: 0.94)."""
    rng = np.random.default_rng(0)
    true, P, B = 0.3, 50, 500
    hits = {"percentile": 0, "bca": 0}
    token_level = 0
    datasets = 300
    for d in range(datasets):
        tok = rng.integers(40, 60, (1, P))
        rates = rng.beta(6, 14, (1, P))  # mean 0.3
        counts = rng.binomial(tok, rates)[:, :, None]
        for method in hits:
            res = S.bootstrap(lambda F: F[:, 0, 0], counts, tok, B, seed=d, method=method, batched=True)
            hits[method] += res.low <= true <= res.high
        f = counts.sum() / tok.sum()
        half = 1.96 * np.sqrt(f * (1 - f) / tok.sum())
        token_level += f - half <= true <= f + half
    print({m: h / datasets for m, h in hits.items()}, "token-level", token_level / datasets)
    for method, h in hits.items():
        assert 0.90 <= h / datasets <= 0.99, (method, h / datasets)
    assert token_level / datasets < 0.85  # the naive interval really is too narrow here


def test_bca_close_to_percentile_on_symmetric_data():
    counts, tok = profile(n=1, P=200, L=1, E=1, rate=0.5, tokens=(50, 51), seed=2)
    pct = S.bootstrap(lambda f: f[0, 0, 0], counts, tok, 2000, seed=1)
    bca = S.bootstrap(lambda f: f[0, 0, 0], counts, tok, 2000, seed=1, method="bca")
    width = pct.high - pct.low
    assert abs(bca.low - pct.low) < 0.1 * width and abs(bca.high - pct.high) < 0.1 * width
    assert pct.method == "percentile" and bca.method == "bca" and bca.n_resamples == 2000
    assert pct.low < pct.estimate < pct.high


def test_bca_shifts_with_a_biased_statistic():
    # the JS distance between two identically distributed languages is biased upwards:
    # BCa's bias correction moves the interval down relative to the percentile interval
    counts, tok = profile(n=2, P=60, seed=4)
    stat = lambda f: A.js_distances(f)[0, 1]  # noqa: E731
    pct = S.bootstrap(stat, counts, tok, 400, seed=0)
    bca = S.bootstrap(stat, counts, tok, 400, seed=0, method="bca")
    assert bca.low < pct.low and bca.high < pct.high


def test_array_valued_statistics_and_seeds():
    counts, tok = profile(n=4, P=30, L=3, E=6)
    dist = S.bootstrap(A.js_distances, counts, tok, 200, method="bca")
    assert dist.estimate.shape == dist.low.shape == dist.high.shape == (4, 4)
    assert dist.samples.shape == (200, 4, 4)
    iu = np.triu_indices(4, 1)
    assert (dist.low[iu] <= dist.high[iu]).all()
    np.testing.assert_allclose(np.diag(dist.high), 0)
    per_layer = S.bootstrap(lambda f: A.layer_entropy(f).mean(axis=0), counts, tok, 200)
    assert per_layer.estimate.shape == (3,) and per_layer.samples.shape == (200, 3)
    assert per_layer.se.shape == (3,) and (per_layer.se > 0).all()
    batched = S.bootstrap(lambda F: A.layer_entropy(F.reshape(-1, 3, 6)).reshape(len(F), 4, 3).mean(axis=1),
                          counts, tok, 200, batched=True)
    np.testing.assert_allclose(batched.samples, per_layer.samples)
    np.testing.assert_allclose(batched.estimate, per_layer.estimate)
    again = S.bootstrap(A.js_distances, counts, tok, 200, method="bca")
    np.testing.assert_array_equal(again.low, dist.low)
    np.testing.assert_array_equal(again.high, dist.high)
    other = S.bootstrap(A.js_distances, counts, tok, 200, method="bca", seed=1)
    assert not np.array_equal(other.low, dist.low)
    assert "samples" not in dist.as_dict()
    with pytest.raises(ValueError):
        S.bootstrap(A.js_distances, counts, tok, 200, method="normal")


def test_grouped_jackknife_matches_for_many_passages():
    counts, tok = profile(n=1, P=120, L=1, E=1)
    exact = S.bootstrap(lambda f: f[0, 0, 0], counts, tok, 300, method="bca")
    grouped = S.bootstrap(lambda f: f[0, 0, 0], counts, tok, 300, method="bca", jackknife_max=30)
    assert grouped.low == pytest.approx(exact.low, abs=0.2 * (exact.high - exact.low))


def test_exceeds():
    rng = np.random.default_rng(0)
    samples = 0.3 + 0.01 * rng.standard_normal((1000, 3))
    samples[:, 2] = np.nan
    np.testing.assert_array_equal(S.exceeds(samples, 0.25), [True, True, False])
    np.testing.assert_array_equal(S.exceeds(samples, [0.25, 0.3, 0.0]), [True, False, False])
    # the one-sided bound (5% quantile) is higher than the two-sided one (2.5%)
    t = np.quantile(samples[:, 0], 0.04)
    assert S.exceeds(samples[:, :1], t, one_sided=True)[0] and not S.exceeds(samples[:, :1], t)[0]


# ---------------------------------------------------------------------------- paired perplexity
def test_paired_ratio():
    rng = np.random.default_rng(0)
    P = 80
    tok = rng.integers(10, 200, P)
    nll = tok * rng.gamma(4, 0.5, P)  # passages of very different difficulty
    same = S.paired_ratio_interval(nll, tok, nll, tok, n_resamples=500)
    assert same.estimate == 1.0 and same.low <= 1 <= same.high
    assert S.ratio_decision(same) == "indistinguishable"

    delta = 0.05  # b costs 0.05 nats more on every token: ratio exp(0.05) on every resample
    shifted = S.paired_ratio_interval(nll, tok, nll + delta * tok, tok, n_resamples=500)
    assert shifted.estimate == pytest.approx(np.exp(delta))
    assert shifted.low == pytest.approx(np.exp(delta)) and shifted.high == pytest.approx(np.exp(delta))
    assert S.ratio_decision(shifted, "dense", "pruned") == "dense better"

    noisy = nll - delta * tok + rng.normal(0, 1.0, P)
    better = S.paired_ratio_interval(nll, tok, noisy, tok, n_resamples=500)
    assert better.low < np.exp(-delta) < better.high < 1
    assert S.ratio_decision(better) == "b better"
    assert S.ratio_decision((0.9, 1.1)) == "indistinguishable"

    # pairing matters: resampling the two conditions independently gives a far wider interval
    def ppl(n):
        return lambda w: np.exp((w @ n) / (w @ tok))
    a = S.bootstrap_units(ppl(nll), P, 500, seed=1).samples
    b = S.bootstrap_units(ppl(noisy), P, 500, seed=2).samples
    unpaired = np.quantile(b / a, [0.025, 0.975])
    assert better.high - better.low < 0.5 * (unpaired[1] - unpaired[0])
    with pytest.raises(ValueError):
        S.paired_ratio_interval(nll, tok, nll[:-1], tok[:-1])


# ---------------------------------------------------------------------------- Mantel
def points_distance(X):
    X = np.asarray(X, dtype=float).reshape(len(X), -1)
    return np.linalg.norm(X[:, None] - X[None], axis=-1)


def test_mantel_moved_with_headline_default():
    assert S.mantel is S.mantel and S.partial_mantel is S.partial_mantel and S.report is S.report
    assert S.MantelResult is S.MantelResult and S.EFFECT_WORDS is S.EFFECT_WORDS
    for fn in (S.mantel, S.partial_mantel, S.mantel_table, S.stratified_permutation_test,
               S.permutation_test_over_languages, S.partial_correlation):
        assert inspect.signature(fn).parameters["permutations"].default == 9999


def test_mantel_self_and_noise():
    rng = np.random.default_rng(0)
    D = points_distance(rng.normal(size=(12, 3)))
    res = S.mantel(D, D, permutations=199)
    assert res.r == pytest.approx(1.0) and res.p_value == pytest.approx(1 / 200)
    ps = np.array([S.mantel(points_distance(rng.normal(size=(10, 2))), D[:10, :10], permutations=99, seed=s).p_value
                   for s in range(50)])
    assert 0.3 < ps.mean() < 0.7
    assert (ps < 0.05).mean() <= 0.16


def test_partial_mantel_removes_a_constructed_confound():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(20, 2))
    Dz = points_distance(z)
    Dx = points_distance(z + 0.3 * rng.normal(size=(20, 2)))
    Dy = points_distance(z + 0.3 * rng.normal(size=(20, 2)))
    plain = S.mantel(Dx, Dy, permutations=199)
    partial = S.partial_mantel(Dx, Dy, Dz, permutations=199)
    assert plain.r > 0.6 and plain.p_value <= 0.01
    assert abs(partial.r) < 0.2 and partial.p_value > 0.05


# ---------------------------------------------------------------------------- pair AUC, stratified test
def test_pair_auc_by_hand():
    D = np.zeros((4, 4))
    for (i, j), d in {(0, 1): 1, (2, 3): 3, (0, 2): 2, (0, 3): 4, (1, 2): 3, (1, 3): 5}.items():
        D[i, j] = D[j, i] = d
    same = S.same_label(["a", "a", "b", "b"])
    # same {1, 3} vs different {2, 4, 3, 5}: (4 + 2 + 0.5) / 8
    assert S.pair_auc(D, same) == pytest.approx(6.5 / 8)
    only = np.zeros((4, 4), bool)
    only[0, 1] = only[0, 2] = True
    assert S.pair_auc(D, same, only) == 1.0
    assert np.isnan(S.pair_auc(D, same, same))  # no different-label pair left
    single = S.stratified_permutation_test(D, ["a", "a", "b", "b"], [0, 0, 0, 0], permutations=0)
    assert single.auc_overall == pytest.approx(6.5 / 8) and np.isnan(single.auc[1])


def test_within_strata_permutations_keep_strata():
    strata = np.array([0, 1, 0, 2, 1, 0, 2, 2])
    perms = S.within_strata_permutations(strata, 50, seed=0)
    assert (strata[perms] == strata).all()
    assert all(sorted(p) == list(range(8)) for p in perms)
    assert len({tuple(p) for p in perms}) > 10


def test_stratified_detects_labels_within_strata():
    rng = np.random.default_rng(0)
    n = 24
    labels, strata = np.arange(n) % 4, np.arange(n) // 8
    D = 1 + (labels[:, None] != labels[None]) + 0.3 * rng.random((n, n))
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0)
    res = S.stratified_permutation_test(D, labels, strata, permutations=199)
    assert res.auc_overall > 0.9 and (res.auc > 0.9).all() and res.p_value == pytest.approx(1 / 200)
    assert (res.n_same + res.n_different).sum() == n * (n - 1) // 2
    table = res.table()
    assert list(table.pairs_class) == ["same stratum", "different strata", "overall"]
    w = res.n_same * res.n_different
    assert res.auc_overall == pytest.approx((res.auc * w).sum() / w.sum())


def test_stratified_null_and_confound():
    rng = np.random.default_rng(3)
    n = 24
    strata = np.arange(n) // 8
    # labels mostly follow strata: 6 of each stratum's 8 items have "its" label, 2 the next one
    labels = np.where(np.arange(n) % 8 < 6, strata, (strata + 1) % 3)
    naive_p, strat_p, null_p = [], [], []
    for s in range(20):
        noise = rng.random((n, n))
        noise = (noise + noise.T) / 2
        D = 1 + 2 * (strata[:, None] != strata[None]) + noise  # distance follows strata only
        np.fill_diagonal(D, 0)
        naive_p.append(S.stratified_permutation_test(D, labels, np.zeros(n), permutations=199, seed=s).p_value)
        strat_p.append(S.stratified_permutation_test(D, labels, strata, permutations=199, seed=s).p_value)
        null_p.append(S.stratified_permutation_test(noise, rng.permutation(labels), strata, 199, seed=s).p_value)
    assert max(naive_p) <= 0.01  # a test that ignores script finds a "family" effect
    assert np.mean(np.array(strat_p) < 0.05) <= 0.2 and np.mean(strat_p) > 0.25
    assert np.mean(np.array(null_p) < 0.05) <= 0.2 and np.mean(null_p) > 0.25
    # strata 0 and 1 are close, 2 is far; the labels crossing strata only join 0 and 1: across
    # strata, same-label pairs are closer because of their strata alone. Permuting labels within
    # strata keeps that composition (not significant); permuting them freely would not.
    labels = np.array(["A"] * 6 + ["B"] * 2 + ["B"] * 6 + ["A"] * 2 + ["C"] * 8)
    far = np.array([[0, 1, 3], [1, 0, 3], [3, 3, 0]])[strata[:, None], strata[None]]
    cross_p = []
    for s in range(10):
        noise = rng.random((n, n))
        D = far + (noise + noise.T) / 2
        np.fill_diagonal(D, 0)
        res = S.stratified_permutation_test(D, labels, strata, permutations=199, seed=s)
        assert res.auc[1] > 0.75  # the confounded class AUC is high ...
        cross_p.append(res.p_values[1])
    assert np.mean(np.array(cross_p) < 0.05) <= 0.2  # ... and rightly not significant
    # labels identical to strata: nothing is left to compare within a class
    res = S.stratified_permutation_test(D, strata, strata, permutations=99)
    assert np.isnan(res.auc).all() and np.isnan(res.p_value)


def test_pair_auc_can_be_bootstrapped():
    counts, tok = profile(n=6, P=30, L=2, E=6)
    counts[3:] = counts[:3]  # languages 3..5 copy 0..2 with other token noise: same labels closer
    same = S.same_label([0, 1, 2, 0, 1, 2])
    res = S.bootstrap(lambda f: S.pair_auc(A.js_distances(f), same), counts, tok, 200)
    assert res.estimate == 1.0 and 0 <= res.low <= res.high <= 1


# ---------------------------------------------------------------------------- correlations
def test_permutation_test_over_languages():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    mono = S.permutation_test_over_languages(x, np.exp(x), permutations=499)
    assert mono.statistic == pytest.approx(1.0) and mono.p_value == pytest.approx(1 / 500)
    neg = S.permutation_test_over_languages(x, -x, permutations=499)
    assert neg.statistic == pytest.approx(-1.0) and neg.p_value == pytest.approx(1 / 500)
    assert S.permutation_test_over_languages(x, -x, permutations=499, alternative="greater").p_value == 1.0
    y = x + rng.normal(size=30)
    res = S.permutation_test_over_languages(x, y, permutations=499)
    assert res.statistic == pytest.approx(spearmanr(x, y).statistic)
    assert S.permutation_test_over_languages(x, y, "pearson", 99).statistic == pytest.approx(np.corrcoef(x, y)[0, 1])
    custom = S.permutation_test_over_languages(x, y, lambda a, b: np.corrcoef(a, b)[0, 1], 99)
    assert custom.p_value == S.permutation_test_over_languages(x, y, "pearson", 99).p_value
    ps = np.array([S.permutation_test_over_languages(rng.normal(size=15), rng.normal(size=15), permutations=99,
                                                      seed=s).p_value for s in range(40)])
    assert 0.3 < ps.mean() < 0.7 and (ps < 0.05).mean() <= 0.15
    with_nan = S.permutation_test_over_languages(np.append(x, np.nan), np.append(y, 1.0), permutations=9)
    assert with_nan.n == 30


def test_partial_correlation():
    rng = np.random.default_rng(2)
    n = 60
    z = rng.normal(size=n)
    x = z + 0.5 * rng.normal(size=n)
    y = z + 0.5 * rng.normal(size=n)
    confounded = S.partial_correlation(x, y, z, permutations=499)
    assert np.corrcoef(x, y)[0, 1] > 0.6
    assert abs(confounded.statistic) < 0.25 and confounded.p_value > 0.05
    r = np.corrcoef([x, y, z])
    formula = (r[0, 1] - r[0, 2] * r[1, 2]) / np.sqrt((1 - r[0, 2] ** 2) * (1 - r[1, 2] ** 2))
    assert confounded.statistic == pytest.approx(formula)
    direct = S.partial_correlation(x, x + 0.5 * rng.normal(size=n), z, permutations=499)
    assert direct.statistic > 0.5 and direct.p_value == pytest.approx(1 / 500)
    two = S.partial_correlation(x, y, np.column_stack([z, rng.normal(size=n)]), method="spearman", permutations=99)
    assert two.method == "partial spearman" and "Freedman-Lane" in two.note
    with pytest.raises(ValueError):
        S.partial_correlation(x[:3], y[:3], z[:3])


# ---------------------------------------------------------------------------- corrections
def test_holm_and_bh_known_values():
    p = [0.01, 0.04, 0.03, 0.005]
    # statsmodels multipletests(p, method='holm' / 'fdr_bh')
    np.testing.assert_allclose(S.holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(S.benjamini_hochberg(p), [0.02, 0.04, 0.04, 0.02])
    # Benjamini and Hochberg (1995), section 4: 15 p-values, FDR 0.05 rejects the four smallest
    bh95 = [0.0001, 0.0004, 0.0019, 0.0095, 0.0201, 0.0278, 0.0298, 0.0344, 0.0459, 0.3240, 0.4262, 0.5719,
            0.6528, 0.7590, 1.000]
    q = S.benjamini_hochberg(bh95)
    assert (q <= 0.05).sum() == 4
    assert q[3] == pytest.approx(0.0095 * 15 / 4) and q[4] == pytest.approx(0.0201 * 3)
    assert (S.holm(bh95) <= 0.05).sum() == 3  # Holm: 0.0095 * 12 > 0.05


def test_corrections_properties_and_nan():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.random(12) ** 3
        for fn in (S.holm, S.benjamini_hochberg):
            adj = fn(p)
            order = np.argsort(p)
            assert (np.diff(adj[order]) >= -1e-15).all()  # monotone in the raw p
            assert (adj >= p - 1e-15).all() and (adj <= 1).all()
        assert (S.benjamini_hochberg(p) <= S.holm(p) + 1e-15).all()
        assert (S.holm(p) <= np.minimum(1, 12 * p) + 1e-15).all()
    with_nan = [0.01, np.nan, 0.04, 0.03, 0.005]
    np.testing.assert_allclose(S.holm(with_nan), [0.03, np.nan, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(S.benjamini_hochberg(with_nan), [0.02, np.nan, 0.04, 0.04, 0.02])
    assert np.isnan(S.holm([np.nan, np.nan])).all() and S.holm([]).shape == (0,)
    with pytest.raises(ValueError):
        S.holm([0.5, 1.5])
    table = pd.DataFrame({"test": list("abcde"), "p_value": with_nan})
    out = S.correct(table, method="holm")
    assert "p_adjusted" not in table and list(out.columns) == ["test", "p_value", "p_adjusted"]
    np.testing.assert_allclose(out.p_adjusted, S.holm(with_nan))
    np.testing.assert_allclose(S.correct(table, method="bh", out="q").q, S.benjamini_hochberg(with_nan))
    with pytest.raises(ValueError):
        S.correct(table, method="bonferroni")


# ---------------------------------------------------------------------------- noise floor
def test_split_half_distance():
    rng = np.random.default_rng(0)
    P, L, E = 40, 2, 8
    rates = rng.uniform(0.05, 0.5, (L, E))
    tok = np.stack([np.full(P, 2000), np.full(P, 20)])  # many tokens / few tokens per passage
    counts = rng.binomial(tok[:, :, None, None], rates, (2, P, L, E))
    res = S.split_half_distance(counts, tok, "js", n_splits=30)
    assert res.samples.shape == (30, 2) and res.per_language.shape == (2,)
    assert res.per_language[0] < 0.02
    assert res.per_language[1] > 5 * res.per_language[0]
    assert res.overall == pytest.approx(res.per_language.mean())
    same = S.split_half_distance(counts, tok, A.js_distances, n_splits=30)
    np.testing.assert_allclose(same.samples, res.samples)
    # a language's split halves are closer to each other than two different languages
    other = rng.binomial(tok[:1, :, None, None], rng.uniform(0.05, 0.5, (L, E)), (1, P, L, E))
    between = A.js_distances(np.concatenate([counts[:1], other]).sum(axis=1))[0, 1]
    assert between > 5 * res.per_language[0]


# ---------------------------------------------------------------------------- prose and verdicts
def test_prose_helpers():
    assert S.interval_text(0.41234, 0.3501, 0.4702) == "0.412 [0.350, 0.470]"
    assert S.interval_text(1.5, 1.2, 1.9, digits=1) == "1.5 [1.2, 1.9]"
    assert S.interval_text(float("nan"), 0, 1) == "not estimable"
    assert S.interval_text(0.5, float("nan"), 1) == "0.500 [interval not estimable]"
    counts, tok = profile(P=10)
    res = S.bootstrap(lambda f: f[0, 0, 0], counts, tok, 50)
    assert res.text(2) == S.interval_text(res.estimate, res.low, res.high, 2) == S.interval_text(res, digits=2)
    assert S.p_text(0.003, 0.012) == "p = 0.003 (Holm-adjusted 0.012)"
    assert S.p_text(0.0001, 0.0004, "Benjamini-Hochberg") == "p < 0.001 (Benjamini-Hochberg-adjusted < 0.001)"
    assert S.p_text(0.21) == "p = 0.21" and S.p_text(float("nan")) == "p not available"
    assert S.evidence(0.01) == "p = 0.01, significant at 0.05"


def test_verdict_rows():
    row = claims.verdict("Activation patterns follow language families", "AUC 0.61 [0.55, 0.66]",
                    "p < 0.001 (Holm-adjusted < 0.001)", "partly reproduced")
    assert list(row) == ["claim", "result", "evidence", "verdict"]
    assert set(claims.VERDICTS) == {"reproduced", "not reproduced", "partly reproduced", "not testable here", "descriptive"}
    for word in claims.VERDICTS:
        assert claims.verdict("c", "r", "e", word)["verdict"] == word
    with pytest.raises(ValueError):
        claims.verdict("c", "r", "e", "confirmed")
    assert len(pd.DataFrame([row, row])) == 2


def test_sign_flip_interval_agrees_with_the_test():
    """The interval over languages excludes 0 exactly when the sign-flip test rejects at 5%: the
    percentile bootstrap it replaced gave [0.959, 0.997] for a ratio whose test gave p = 0.086."""
    rng = np.random.default_rng(3)
    disagreements = 0
    for trial in range(300):
        n = int(rng.integers(6, 12))
        d = rng.normal(rng.normal(0, 0.5), 1.0, n)
        mean, lo, hi = S.sign_flip_interval(d, permutations=9999, seed=trial)
        _, p, _ = S.sign_flip(d, 9999, trial)
        assert lo <= mean <= hi
        disagreements += (lo > 0 or hi < 0) != (p < 0.05)
    assert disagreements == 0
    # a shift at an edge of the interval is not rejected; a little beyond it, it is
    d = np.array([0.3, 0.1, 0.25, -0.05, 0.4, 0.2, 0.15, 0.35, 0.05])
    _, lo, hi = S.sign_flip_interval(d)
    assert S.sign_flip(d - lo)[1] >= 0.05 and S.sign_flip(d - hi)[1] >= 0.05
    span = hi - lo
    assert S.sign_flip(d - (lo - 0.01 * span))[1] < 0.05 and S.sign_flip(d - (hi + 0.01 * span))[1] < 0.05
    # too few languages to reject anything at 5% (smallest exact p = 2/32): an unbounded interval
    assert S.sign_flip_interval(d[:5])[1:] == (-np.inf, np.inf)
    assert np.isnan(S.sign_flip_interval([0.2])[1])
