"""Intervals for claims over languages (stats.crossed_bootstrap): languages and passages are both
sources of variance. On simulated crossed data with known language and passage variance, the
crossed interval covers the truth in about 95% of simulations and the passage-only interval,
which holds the languages fixed, does not."""

import numpy as np
import pytest

from babel_lib import stats


def _mean(Y):
    def statistic(LW, PW):  # weighted grand mean, batched
        return np.einsum("ml,lp,mp->m", LW, Y, PW) / (LW.sum(1) * PW.sum(1))
    return statistic


def _simulate(rng, L=20, P=30, sd_language=1.0, sd_passage=0.5, sd_noise=1.0):
    return (rng.normal(0, sd_language, (L, 1)) + rng.normal(0, sd_passage, (1, P))
            + rng.normal(0, sd_noise, (L, P)))  # the truth (population mean) is 0


def test_crossed_interval_covers_and_passage_only_does_not():
    rng = np.random.default_rng(0)
    crossed = passages_only = 0
    sims = 400
    for i in range(sims):
        Y = _simulate(rng)
        res = stats.crossed_bootstrap(_mean(Y), *Y.shape, n_resamples=400, seed=i, batched=True)
        crossed += res.low <= 0 <= res.high
        fixed = stats.bootstrap_units(lambda w: (Y.mean(0) @ w) / w.sum(), Y.shape[1], n_resamples=400, seed=i)
        passages_only += fixed.low <= 0 <= fixed.high
    assert 0.92 <= crossed / sims <= 0.98, crossed / sims
    assert passages_only / sims < 0.75, passages_only / sims  # languages held fixed: far too narrow (0.58)


def test_few_languages_use_the_jackknife_and_cover():
    rng = np.random.default_rng(1)
    covered = 0
    sims = 300
    for i in range(sims):
        Y = _simulate(rng, L=6)
        res = stats.crossed_bootstrap(_mean(Y), *Y.shape, n_resamples=300, seed=i, batched=True)
        assert res.method == "jackknife+passages" and res.n_units == 6
        covered += res.low <= 0 <= res.high
    assert 0.92 <= covered / sims <= 0.995, covered / sims


def test_groups_are_resampled_whole_and_unbatched_calls_agree():
    rng = np.random.default_rng(2)
    Y = _simulate(rng, L=12, P=10)
    families = np.repeat(np.arange(6), 2)
    seen = []

    def statistic(lw, pw):
        seen.append(lw.copy())
        return float(lw @ Y @ pw / (lw.sum() * pw.sum()))

    res = stats.crossed_bootstrap(statistic, 12, 10, n_resamples=50, seed=0, groups=families)
    assert res.method == "jackknife+passages" and res.n_units == 6  # 6 families < 8
    batched = stats.crossed_bootstrap(_mean(Y), 12, 10, n_resamples=50, seed=0, groups=families, batched=True)
    assert res.low == pytest.approx(batched.low) and res.high == pytest.approx(batched.high)
    res = stats.crossed_bootstrap(statistic, 12, 10, n_resamples=50, seed=0, groups=families, min_units=2)
    assert all((lw[0::2] == lw[1::2]).all() for lw in seen[-50:])  # both members of a family drawn together
    with pytest.raises(ValueError, match="one label per language"):
        stats.crossed_bootstrap(statistic, 12, 10, groups=[0, 1])
