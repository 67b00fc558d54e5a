"""Tests of babel_lib.experts.clustering: equal sizes, determinism, quality, planted structure, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from babel_lib.experts.clustering import balanced_kmeans, coactivation_partition, inertia, random_partition


def _ari(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (1.0 = identical up to renaming)."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1)
    comb = lambda v: (v * (v - 1) / 2).sum()  # noqa: E731
    sum_ij, sum_a, sum_b = comb(table), comb(table.sum(1)), comb(table.sum(0))
    expected = sum_a * sum_b / comb(np.array([len(a)]))
    return float((sum_ij - expected) / ((sum_a + sum_b) / 2 - expected))


def _unit_rows(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _planted(k: int, s: int, d: int, seed: int, spread: float = 0.05):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 3.0
    truth = rng.permutation(np.repeat(np.arange(k), s))
    x = centers[truth] + spread * rng.standard_normal((k * s, d))
    return x.astype(np.float32), truth


# ---------------------------------------------------------------- sizes and determinism
@pytest.mark.parametrize("n,k", [(256, 8), (96, 3), (64, 64), (50, 1)])
def test_balanced_kmeans_exact_sizes(n, k):
    labels = balanced_kmeans(_unit_rows(n, 16, 0), k, seed=0)
    assert labels.dtype == np.int64 and labels.shape == (n,)
    assert np.array_equal(np.bincount(labels, minlength=k), np.full(k, n // k))


def test_balanced_kmeans_accepts_torch_and_is_deterministic():
    x = _unit_rows(256, 32, 1)
    a = balanced_kmeans(x, 8, seed=3)
    b = balanced_kmeans(torch.from_numpy(x), 8, seed=3)
    c = balanced_kmeans(torch.from_numpy(x).requires_grad_(), 8, seed=3)
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_different_seeds_can_differ():
    x = _unit_rows(256, 32, 2)
    runs = {balanced_kmeans(x, 8, seed=s).tobytes() for s in range(4)}
    assert len(runs) > 1
    parts = {random_partition(256, 8, seed=s).tobytes() for s in range(4)}
    assert len(parts) == 4


def test_random_partition_sizes_and_determinism():
    a = random_partition(2048, 64, seed=5)
    assert a.dtype == np.int64
    assert np.array_equal(np.bincount(a), np.full(64, 32))
    assert np.array_equal(a, random_partition(2048, 64, seed=5))


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 12), s=st.integers(1, 10), d=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_property_exact_sizes_any_seed(k, s, d, seed):
    x = np.random.default_rng(seed).standard_normal((k * s, d)).astype(np.float32)
    labels = balanced_kmeans(x, k, seed=seed)
    assert labels.min() >= 0 and labels.max() < k
    assert np.array_equal(np.bincount(labels, minlength=k), np.full(k, s))
    rand = random_partition(k * s, k, seed)
    assert np.array_equal(np.bincount(rand, minlength=k), np.full(k, s))


def test_duplicate_rows_still_balanced():
    x = np.repeat(np.eye(4, dtype=np.float32), 8, axis=0)[:, :3]  # 4 distinct rows, 8 copies each
    labels = balanced_kmeans(x, 8, seed=0)
    assert np.array_equal(np.bincount(labels), np.full(8, 4))


# ---------------------------------------------------------------- quality
def test_recovers_planted_clusters_exactly():
    x, truth = _planted(k=16, s=16, d=24, seed=4)
    labels = balanced_kmeans(x, 16, seed=0)
    assert _ari(labels, truth) == pytest.approx(1.0)


def test_inertia_better_than_random_and_close_to_k_means_constrained():
    kmc = pytest.importorskip("k_means_constrained")
    x = _unit_rows(256, 32, 6)
    ours = inertia(x, balanced_kmeans(x, 8, seed=0))
    rand = inertia(x, random_partition(256, 8, seed=0))
    ref = kmc.KMeansConstrained(8, size_min=32, size_max=32, random_state=0).fit(x)
    reference = inertia(x, ref.labels_)
    assert ours < rand
    assert ours <= 1.01 * reference


def test_refinement_and_restarts_never_hurt():
    x = _unit_rows(512, 24, 10)
    lloyd_only = inertia(x, balanced_kmeans(x, 16, seed=1, refine=False))
    refined = inertia(x, balanced_kmeans(x, 16, seed=1))
    restarts = inertia(x, balanced_kmeans(x, 16, seed=1, n_init=3))
    assert refined <= lloyd_only + 1e-9
    assert restarts <= refined + 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_assignment_step_is_exact(seed):
    """The cycle-cancelling assignment equals the optimum of the linear assignment problem."""
    from scipy.optimize import linear_sum_assignment

    from babel_lib.experts.clustering import _optimal_assignment

    rng = np.random.default_rng(seed)
    k, s = 6, 8
    d = rng.random((k * s, k))
    start = random_partition(k * s, k, seed)
    labels = _optimal_assignment(d, start, k, s, tol=1e-12)
    assert np.array_equal(np.bincount(labels), np.full(k, s))
    rows, cols = linear_sum_assignment(np.repeat(d, s, axis=1))
    assert d[np.arange(k * s), labels].sum() == pytest.approx(d[rows, cols // s].sum(), abs=1e-9)


def test_no_single_swap_improves_the_result():
    x = _unit_rows(48, 6, 11).astype(np.float64)
    labels = balanced_kmeans(x, 4, seed=0)
    base = inertia(x, labels)
    for i in range(48):
        for j in range(i + 1, 48):
            if labels[i] != labels[j]:
                swapped = labels.copy()
                swapped[i], swapped[j] = labels[j], labels[i]
                assert inertia(x, swapped) >= base - 1e-9


def test_inertia_matches_direct_formula():
    x = _unit_rows(40, 5, 7).astype(np.float64)
    labels = random_partition(40, 4, 1)
    direct = sum(((x[labels == c] - x[labels == c].mean(0)) ** 2).sum() for c in range(4))
    assert inertia(x, labels) == pytest.approx(direct, rel=1e-12)
    assert inertia(torch.from_numpy(x), torch.from_numpy(labels)) == pytest.approx(direct, rel=1e-12)


# ---------------------------------------------------------------- co-activation
@pytest.mark.parametrize("k,s", [(8, 16), (10, 64)])  # dense eigensolver; Lanczos (N > 512)
def test_coactivation_recovers_planted_blocks(k, s):
    rng = np.random.default_rng(8)
    truth = rng.permutation(np.repeat(np.arange(k), s))
    same = truth[:, None] == truth[None, :]
    counts = rng.poisson(np.where(same, 40.0, 3.0)).astype(np.float64)
    counts = np.triu(counts, 1)
    counts = counts + counts.T
    labels = coactivation_partition(counts, k, seed=0)
    assert np.array_equal(np.bincount(labels), np.full(k, s))
    assert _ari(labels, truth) == pytest.approx(1.0)
    assert np.array_equal(labels, coactivation_partition(torch.from_numpy(counts), k, seed=0))


def test_coactivation_with_silent_neurons_still_balanced():
    counts = np.zeros((32, 32))
    counts[:8, :8] = 5.0
    labels = coactivation_partition(counts, 4, seed=1)
    assert np.array_equal(np.bincount(labels), np.full(4, 8))


# ---------------------------------------------------------------- errors
def test_clear_errors():
    x = _unit_rows(30, 4, 0)
    with pytest.raises(ValueError, match="not divisible"):
        balanced_kmeans(x, 7)
    with pytest.raises(ValueError, match="at least 1"):
        balanced_kmeans(x, 0)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        balanced_kmeans(bad, 3)
    with pytest.raises(ValueError, match="empty"):
        balanced_kmeans(np.zeros((0, 4), np.float32), 1)
    with pytest.raises(ValueError, match="2-D"):
        balanced_kmeans(np.zeros(12, np.float32), 3)
    with pytest.raises(ValueError, match="not divisible"):
        random_partition(10, 3, 0)
    with pytest.raises(ValueError, match="at least 1"):
        random_partition(10, 0, 0)
    with pytest.raises(ValueError, match="square"):
        coactivation_partition(np.ones((4, 5)), 2)
    with pytest.raises(ValueError, match="non-negative"):
        coactivation_partition(-np.ones((4, 4)), 2)
    with pytest.raises(ValueError, match="not divisible"):
        coactivation_partition(np.ones((9, 9)), 2)
