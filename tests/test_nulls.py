"""Nulls that keep each expert's language-independent busyness (stats.pooled_null,
stats.label_permutation_null): unlike a uniform null, they can fail. On simulated counts where every
language uses the same (unequal) expert frequencies, the observed spread between languages lies
inside both nulls; where one language differs, it lies beyond them. A uniform null rejects both."""

import numpy as np

from babel_lib import stats


def _counts(rng, shift=0.0, n=6, P=12, E=40, tokens=150):
    busy = np.linspace(0.02, 0.6, E)  # experts differ in busyness, whatever the language
    f = np.tile(busy, (n, 1))
    f[0] = np.clip(f[0][::-1] * (1 - shift) + f[0] * shift if shift else f[0], 0, 1) if shift else f[0]
    T = np.full((n, P), tokens)
    C = rng.binomial(T[:, :, None], f[:, None, :])
    return C, T


def _spread(F):
    """Mean absolute departure of each language's map from the mean map."""
    return float(np.abs(F - F.mean(axis=0)).mean())


def test_same_languages_sit_inside_both_nulls_and_a_different_one_does_not():
    rejected = {"pooled": 0, "permutation": 0}
    sims = 30
    for i in range(sims):  # identical languages: each null rejects at about its nominal 5%
        C, T = _counts(np.random.default_rng(100 + i))
        observed = _spread(C.sum(1) / T.sum(1)[:, None])
        rejected["pooled"] += stats.versus_null(observed, stats.pooled_null(_spread, C, T, 200, seed=i))["p"] < 0.05
        rejected["permutation"] += stats.versus_null(
            observed, stats.label_permutation_null(_spread, C, T, 200, seed=i))["p"] < 0.05
    assert max(rejected.values()) <= 0.2 * sims, rejected
    C2, T2 = _counts(np.random.default_rng(0), shift=0.5)  # one language uses other experts
    observed2 = _spread(C2.sum(1) / T2.sum(1)[:, None])
    for null in (stats.pooled_null(_spread, C2, T2, 300, seed=1),
                 stats.label_permutation_null(_spread, C2, T2, 300, seed=1)):
        summary = stats.versus_null(observed2, null)
        assert summary["p"] < 0.01 and summary["effect"] > 0


def test_a_uniform_null_rejects_even_identical_languages():
    rng = np.random.default_rng(0)
    C, T = _counts(rng)
    F = C.sum(1) / T.sum(1)[:, None]
    top_share = np.sort(F.mean(0))[-4:].sum() / F.mean(0).sum()  # share of the 10% busiest experts
    assert top_share > 1.5 * 0.1  # far above uniform use, though no language differs: that null cannot fail
    pooled = stats.pooled_null(lambda G: np.sort(G.mean(0))[-4:].sum() / G.mean(0).sum(), C, T, 200, seed=2)
    assert stats.versus_null(top_share, pooled)["null_low"] <= top_share <= stats.versus_null(top_share, pooled)["null_high"]


def test_label_permutation_keeps_passages_and_the_pool():
    rng = np.random.default_rng(3)
    C, T = _counts(rng, n=4, P=5, E=6)
    seen = []
    stats.label_permutation_null(lambda F: seen.append(F) or 0.0, C, T, 20, seed=0)
    pooled = stats.pooled_frequencies(C, T)
    for F in seen:  # every permutation redistributes the same passages: the token-weighted pool is unchanged
        assert np.allclose((F * T.sum(1)[:, None]).sum(0) / T.sum(), pooled)
