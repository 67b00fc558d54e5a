"""The analysis functions find what was planted in small synthetic arrays."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.spatial.distance import jensenshannon

from babel_lib.core.definitions import Definitions
from babel_lib.experts.profile import Profile
from babel_lib import stats as S
from babel_lib.stats import analysis as A


def make_profile(counts, tokens, top_k_fraction=0.25):
    """A profile whose text is one passage per language."""
    counts = np.asarray(counts)
    n = counts.shape[0]
    tokens = np.asarray(tokens)
    return Profile([f"l{i}" for i in range(n)], ["all"], counts[:, None], tokens[:, None], tokens[:, None], "m", "fp",
                   "pk", 4, "test", {"score": "abs", "activation": "topk", "top_k_fraction": top_k_fraction,
                                     "threshold": None}, {}, "float32")


# ---------------------------------------------------------------------------- frequency code (properties)
@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 3), L=st.integers(1, 4), E=st.integers(2, 12), T=st.integers(1, 30),
       frac=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
def test_topk_counts_give_valid_frequencies(n, L, E, T, frac, seed):
    defs = Definitions(top_k_fraction=frac)
    k = defs.k(E)
    g = torch.Generator().manual_seed(seed)
    counts = np.zeros((n, L, E), dtype=np.int64)
    for i in range(n):
        for l in range(L):
            scores = torch.rand(T, E, generator=g)
            counts[i, l] = np.bincount(scores.topk(k, dim=1).indices.reshape(-1).numpy(), minlength=E)
    tokens = np.full(n, T)
    assert (counts.sum(axis=2) == T * k).all()  # counts sum to tokens * k per layer
    f = A.frequencies(counts, tokens)
    assert ((f >= 0) & (f <= 1)).all()
    np.testing.assert_allclose(f.sum(axis=2), k)
    prof = make_profile(counts, tokens, frac)
    np.testing.assert_allclose(A.base_rate(prof), k / E)
    np.testing.assert_allclose(prof.frequencies(), f)
    h = A.layer_entropy(f)
    assert h.shape == (n, L)
    assert ((h >= 0) & (h <= 1 + 1e-12)).all()
    # top-k with k experts: entropy at least that of k equally used experts
    assert (h >= np.log(k) / np.log(E) - 1e-9).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=20))
def test_entropy_bounds(values):
    f = np.array(values)[None, None, :]
    h = A.layer_entropy(f)[0, 0]
    if f.sum() == 0:
        assert np.isnan(h)
    else:
        assert -1e-12 <= h <= 1 + 1e-12


def test_entropy_extremes():
    E = 8
    uniform = np.full((1, 1, E), 0.3)
    single = np.zeros((1, 1, E))
    single[0, 0, 3] = 0.9
    assert A.layer_entropy(uniform)[0, 0] == pytest.approx(1.0)
    assert A.layer_entropy(single)[0, 0] == pytest.approx(0.0)
    assert A.layer_entropy(uniform, normalise=False)[0, 0] == pytest.approx(np.log(E))


def test_frequencies_rejects_bad_counts():
    with pytest.raises(ValueError):
        A.frequencies(np.full((1, 1, 2), 5), np.array([4]))
    with pytest.raises(ValueError):
        A.frequencies(np.zeros((1, 1, 2)), np.array([0]))


# ---------------------------------------------------------------------------- high-frequency, depth
def planted():
    """4 languages x 3 layers x 10 experts, k/E = 0.2: expert 0 hot everywhere (shared),
    expert 1+i hot only in language i (specific), the rest at the base rate."""
    n, L, E = 4, 3, 10
    f = np.full((n, L, E), 0.1)
    f[:, :, 0] = 0.9
    for i in range(n):
        f[i, :, 1 + i] = 0.7
    f[0, 2, 9] = 0.5  # one extra high-frequency expert in the last layer for language 0
    return f


def test_high_frequency_ratio_and_quantile():
    f = planted()
    hf = A.high_frequency(f, 0.2, hf_ratio=2.0)
    assert hf.sum() == 4 * 3 * 2 + 1
    assert hf[:, :, 0].all()
    assert not A.high_frequency(f, 0.2, hf_ratio=5.0).any()
    q = A.high_frequency(f, rule="quantile", quantile=0.9)
    assert q.shape == f.shape and q[:, :, 0].all()
    with pytest.raises(ValueError):
        A.high_frequency(f)  # ratio rule without a base rate


def test_depth_helpers():
    assert list(A.depth_third(6)) == ["early"] * 2 + ["middle"] * 2 + ["late"] * 2
    assert (A.depth_third(18) == "late").sum() == 6
    np.testing.assert_allclose(A.relative_depth(4), [0.125, 0.375, 0.625, 0.875])
    hf = A.high_frequency(planted(), 0.2)
    table = A.high_frequency_table(hf, ["a", "b", "c", "d"])
    assert len(table) == 12
    assert table.query("language == 'a' and layer == 2")["n_high"].item() == 3
    summary = A.depth_summary(hf, ["a", "b", "c", "d"])
    a = summary[summary.language == "a"].set_index("third")
    assert a.loc["late", "n_high"] == 3 and a["share"].sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------- shared / specific
def test_planted_shared_and_specific_experts_are_found():
    f = planted()
    hf = A.high_frequency(f, 0.2)
    shared = A.shared_experts(hf)
    assert shared[:, 0].all() and shared.sum() == 3
    owner = A.specific_experts(hf)
    for i in range(4):
        assert (owner[:, 1 + i] == i).all()
    assert owner[2, 9] == 0
    assert (owner[:, 0] == -1).all() and (owner[:, 5:9] == -1).all()
    by_layer = A.shared_specific_by_layer(hf)
    assert list(by_layer["shared_all"]) == [1, 1, 1]
    assert list(by_layer["specific"]) == [4, 4, 5]
    by_lang = A.specific_by_language(hf, list("abcd"))
    assert list(by_lang["specific"]) == [4, 3, 3, 3]
    assert A.shared_experts(hf, min_languages=1).sum() == hf.any(axis=0).sum()
    with pytest.raises(ValueError):
        A.shared_experts(hf, min_languages=5)


def test_jaccard():
    hf = np.zeros((3, 1, 4), dtype=bool)
    hf[0, 0, :2] = True
    hf[1, 0, 1:3] = True
    J = A.jaccard_matrix(hf)
    assert J[0, 1] == pytest.approx(1 / 3)
    assert J[0, 2] == 0 and J[2, 2] == 1 and J[0, 0] == 1
    np.testing.assert_allclose(J, J.T)


def test_lape_ranks_planted_specific_experts_first():
    f = planted()
    # bars: the median (0.1) to be eligible, the 80% quantile (0.18) to be assigned
    table = A.lape(f, list("abcd"), top_rate=0.2, filter_quantile=0.5, assign_quantile=0.8)
    assert len(table) == 6
    # the planted specific experts (1..4 in every layer) have the lowest entropy
    assert all(1 <= e <= 4 for e in table.expert)
    assert (table.entropy.diff().dropna() >= 0).all()
    for row in table.itertuples():
        assert row.top_language == "abcd"[row.expert - 1] == row.languages and row.n_languages == 1
    everything = A.lape(f, list("abcd"), top_rate=1.0, filter_quantile=0.5, assign_quantile=0.8)
    assert len(everything) == 3 * 5 + 1  # only experts above the filter bar: 0, 1..4 and (2, 9)
    assert (everything.tail(3).expert == 0).all()  # the shared expert: maximal entropy, ranked last
    assert everything.tail(1).entropy.item() == pytest.approx(1.0)
    strict = A.lape(f, list("abcd"), top_rate=1.0, min_probability=0.8)
    assert set(strict.expert) == {0}


# ---------------------------------------------------------------------------- distances
def test_js_distance_properties():
    rng = np.random.default_rng(0)
    X = rng.random((6, 15))
    D = A.js_distances(X)
    np.testing.assert_allclose(D, D.T)
    np.testing.assert_allclose(np.diag(D), 0)
    assert ((D >= 0) & (D <= 1)).all()
    for i in range(6):
        for j in range(6):
            assert D[i, j] == pytest.approx(jensenshannon(X[i], X[j], base=2), abs=1e-9)
            for k in range(6):  # a metric: triangle inequality
                assert D[i, j] <= D[i, k] + D[k, j] + 1e-12
    disjoint = np.array([[1.0, 0, 0], [0, 0, 1.0]])
    assert A.js_distances(disjoint)[0, 1] == pytest.approx(1.0)
    assert A.js_distances(np.array([[1.0, 2], [2.0, 4]]))[0, 1] == pytest.approx(0.0, abs=1e-7)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_js_scale_invariant_and_bounded(seed):
    rng = np.random.default_rng(seed)
    X = rng.random((4, 7)) * (rng.random((4, 7)) > 0.3) + 1e-9
    D = A.js_distances(X)
    np.testing.assert_allclose(D, A.js_distances(X * 3.7), atol=1e-9)
    assert ((D >= 0) & (D <= 1)).all()


def test_cosine_and_profile_distances():
    f = planted()
    Dc = A.profile_distances(f, "cosine")
    assert Dc.shape == (4, 4) and np.allclose(np.diag(Dc), 0)
    per = A.profile_distances(f, "js", per_layer=True)
    assert per.shape == (3, 4, 4)
    assert A.cosine_distances(np.array([[1.0, 0], [2.0, 0]]))[0, 1] == pytest.approx(0)
    assert A.cosine_distances(np.array([[1.0, 0], [0, 1.0]]))[0, 1] == pytest.approx(1)
    with pytest.raises(ValueError):
        A.profile_distances(f, "euclid")
    assert A.mean_offdiagonal(np.array([[0, 1, 2], [1, 0, 3], [2, 3, 0.0]])) == pytest.approx(2.0)


def tree_structured(n_groups=4, per_group=5, noise=0.0, seed=0):
    """Points in tight groups: distances between groups large, within small."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_groups), per_group)
    centres = rng.normal(size=(n_groups, 8)) * 5
    X = centres[labels] + rng.normal(size=(len(labels), 8)) * (0.3 + noise)
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    tree = np.where(labels[:, None] == labels[None], 2.0, 6.0)
    np.fill_diagonal(tree, 0)
    return D, tree, labels


def test_mantel_detects_planted_structure():
    D, tree, _ = tree_structured()
    res = S.mantel(D, tree, permutations=499, seed=1)
    assert res.r > 0.5 and res.p_value <= 0.01
    assert res.p_value >= 1 / 500
    assert S.mantel(D, tree, permutations=99, seed=1, method="spearman").p_value <= 0.02
    # reproducible with the seed
    assert S.mantel(D, tree, permutations=99, seed=3).p_value == S.mantel(D, tree, permutations=99, seed=3).p_value


def test_mantel_p_is_roughly_uniform_on_noise():
    _, tree, _ = tree_structured()
    rng = np.random.default_rng(5)
    ps = []
    for rep in range(60):
        X = rng.normal(size=(len(tree), 3))
        D = np.linalg.norm(X[:, None] - X[None], axis=-1)
        ps.append(S.mantel(D, tree, permutations=99, seed=rep).p_value)
    ps = np.array(ps)
    assert 0.3 < ps.mean() < 0.7
    assert 0.0 < (ps <= 0.05).mean() < 0.2


def test_partial_mantel_separates_confounds():
    # profile distance follows script only; family and script agree partly
    n = 12
    script = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    family = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    rng = np.random.default_rng(0)
    D = A.different(script) * 3 + rng.random((n, n)) * 0.3
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0)
    fam, scr = A.different(family), A.different(script)
    assert S.mantel(D, scr, 499).p_value < 0.01
    given_script = S.partial_mantel(D, fam, scr, 499)
    given_family = S.partial_mantel(D, scr, fam, 499)
    assert given_family.p_value < 0.01 and given_family.r > 0.5
    assert given_script.p_value > 0.05
    with pytest.raises(ValueError):
        S.partial_mantel(D, scr, scr, 9)
    with pytest.raises(ValueError):
        S.mantel(D, np.ones((n, n)), 9)


def test_resample_depth():
    grid = A.depth_grid(4)
    np.testing.assert_allclose(A.resample_depth(np.arange(4.0), grid), np.arange(4.0))
    v = np.arange(8.0)
    out = A.resample_depth(v, grid)
    assert out.shape == (4,)
    np.testing.assert_allclose(out, [0.5, 2.5, 4.5, 6.5])  # grid depths fall between layer centres
    batch = A.resample_depth(np.stack([v, 2 * v]), grid)
    assert batch.shape == (2, 4) and np.allclose(batch[1], 2 * batch[0])
    const = A.resample_depth(np.full(30, 3.0), A.depth_grid(18))
    np.testing.assert_allclose(const, 3.0)
    frame = A.depth_frame({"a": {"s": np.arange(18.0)}, "b": {"s": np.arange(30.0)}})
    assert set(frame.model) == {"a", "b"} and len(frame) == 36
    assert A.depth_trend(np.arange(10.0)) == pytest.approx(1.0)
    assert A.depth_trend(-np.arange(10.0)) == pytest.approx(-1.0)


def test_shared_by_subset_size_shrinks():
    rng = np.random.default_rng(0)
    hf = rng.random((10, 4, 16)) < 0.6
    hf[:, 0, 0] = True
    t = A.shared_by_subset_size(hf, [1, 2, 5, 10, 99], draws=5, seed=0)
    assert sorted(t["size"].unique()) == [1, 2, 5, 10]
    means = t.groupby("size")["shared"].mean()
    assert means.is_monotonic_decreasing and means.loc[10] >= 1
    assert (t["size"] == 10).sum() == 1


def test_depth_agreement():
    a = np.sin(np.linspace(0, 3, 18))
    b = np.sin(np.linspace(0, 3, 30))
    assert A.depth_agreement(a, b) > 0.99
    assert A.depth_agreement(a, -b) < -0.99
    assert np.isnan(A.depth_agreement(a, np.ones(30)))
