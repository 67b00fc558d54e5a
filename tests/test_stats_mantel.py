"""The Mantel test with several covariate matrices (stats.partial_mantel_covariates) on constructed
matrices with known answers."""

import numpy as np
import pytest

from babel_lib import stats as S


def points_distance(X):
    X = np.asarray(X, dtype=float).reshape(len(X), -1)
    return np.linalg.norm(X[:, None] - X[None], axis=-1)


def different(labels):
    labels = np.asarray(labels)
    return (labels[:, None] != labels[None]).astype(float)


def test_one_covariate_matches_the_first_order_partial():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(15, 2))
    x = points_distance(z + 0.5 * rng.normal(size=(15, 2)))
    y = points_distance(z + 0.5 * rng.normal(size=(15, 2)))
    cov = points_distance(z)
    one = S.partial_mantel(x, y, cov, permutations=0)
    several = S.partial_mantel_covariates(x, y, [cov], permutations=0)
    assert several.r == pytest.approx(one.r, abs=1e-12)
    assert S.partial_mantel_covariates(x, y, cov, permutations=0).r == pytest.approx(one.r, abs=1e-12)
    # no permutations: p is 1 / (0 + 1)
    assert several.p_value == 1.0 and several.permutations == 0


def test_two_confounds_are_both_removed():
    """x and y both follow two hidden structures (a script-like 0/1 matrix and a distance); x and y
    are unrelated beyond them. Holding one fixed leaves the other; holding both fixed leaves nothing."""
    rng = np.random.default_rng(1)
    n = 30
    script = different(np.arange(n) % 3)
    g = points_distance(rng.normal(size=(n, 1)))
    ps_both, rs_both = [], []
    for s in range(12):
        def noise():
            e = rng.normal(size=(n, n))
            return 0.3 * (e + e.T)
        x = 2 * script + g + noise()
        y = 2 * script + g + noise()
        plain = S.mantel(x, y, permutations=99, seed=s)
        one = S.partial_mantel_covariates(x, y, [script], permutations=99, seed=s)
        both = S.partial_mantel_covariates(x, y, [script, g], permutations=199, seed=s)
        assert plain.r > 0.8 and plain.p_value <= 0.01
        assert one.r > 0.3 and one.p_value <= 0.05  # the distance confound is still there
        rs_both.append(both.r)
        ps_both.append(both.p_value)
    assert np.abs(rs_both).max() < 0.15
    assert np.mean(np.array(ps_both) < 0.05) <= 0.25 and np.mean(ps_both) > 0.25


def test_a_real_association_survives_its_covariates():
    rng = np.random.default_rng(2)
    n = 25
    script = different(rng.integers(0, 3, n))
    tree = points_distance(rng.normal(size=(n, 2)))
    g = points_distance(rng.normal(size=(n, 1)))
    e = rng.normal(size=(n, n))
    x = 0.7 * tree + script + g + 0.2 * (e + e.T)
    for permute in ("raw", "residuals"):
        res = S.partial_mantel_covariates(x, tree, [script, g], permutations=199, permute=permute)
        assert res.r > 0.5 and res.p_value == pytest.approx(1 / 200)
        assert res.n == n and "2 covariates" in res.method
    spear = S.partial_mantel_covariates(x, tree, [script, g], permutations=99, method="spearman")
    assert spear.r > 0.4 and spear.p_value <= 0.02


def test_null_p_values_are_roughly_uniform():
    rng = np.random.default_rng(3)
    n = 14
    ps = []
    for s in range(60):
        x = points_distance(rng.normal(size=(n, 2)))
        y = points_distance(rng.normal(size=(n, 2)))
        z = points_distance(rng.normal(size=(n, 2)))
        ps.append(S.partial_mantel_covariates(x, y, [z, different(np.arange(n) % 2)], permutations=99,
                                              seed=s).p_value)
    ps = np.array(ps)
    assert 0.35 < ps.mean() < 0.65
    assert (ps < 0.05).mean() <= 0.15


def test_redundant_covariates_and_errors():
    rng = np.random.default_rng(4)
    n = 12
    x = points_distance(rng.normal(size=(n, 2)))
    y = points_distance(rng.normal(size=(n, 2)))
    z = points_distance(rng.normal(size=(n, 2)))
    base = S.partial_mantel_covariates(x, y, [z], permutations=0).r
    # a constant covariate and a duplicate add nothing
    assert S.partial_mantel_covariates(x, y, [z, np.ones((n, n)), 2 * z], permutations=0).r == pytest.approx(base)
    with pytest.raises(ValueError, match="fully explained"):
        S.partial_mantel_covariates(x, y, [y], permutations=9)
    with pytest.raises(ValueError, match="3 items"):
        S.partial_mantel_covariates(x[:2, :2], y[:2, :2], [z[:2, :2]])
    with pytest.raises(ValueError, match="same items"):
        S.partial_mantel_covariates(x, y, [z[:5, :5]])
    with pytest.raises(ValueError, match="permute"):
        S.partial_mantel_covariates(x, y, [z], permute="rows")
    # the same permutations as mantel: without covariates beyond a constant, the same p-value
    plain = S.mantel(x, y, permutations=99, seed=5)
    none = S.partial_mantel_covariates(x, y, [np.ones((n, n))], permutations=99, seed=5)
    assert none.r == pytest.approx(plain.r) and none.p_value == pytest.approx(plain.p_value)
