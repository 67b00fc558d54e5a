"""Chapter 5 and 6 steps (babel_lib.chapters.families) on constructed data with known answers."""

import numpy as np
import pytest

from babel_lib import stats as S
from babel_lib.chapters import families as F, model_families as MF
from babel_lib.experts.profile import Profile
from babel_lib.stats import distances as DI, family_tests as FT

# real language keys (the design reads their Glottolog metadata): three families, two scripts
# inside Indo-European, and Serbian in two scripts
GERMANIC = ["eng", "deu_1996", "nld", "dan"]
ROMANCE = ["fra", "spa", "ita", "por_pt"]
SLAVIC_CYRL = ["rus", "ukr", "bul"]
TURKIC = ["tur", "azj_latn", "uzn_latn", "kaz"]
KEYS = GERMANIC + ROMANCE + SLAVIC_CYRL + TURKIC + ["srp_cyrl", "srp_latn"]


def profile_from(counts, tokens, languages, characters=None, model="m"):
    counts = np.asarray(counts, dtype=np.int32)
    n, P = counts.shape[:2]
    tokens = np.asarray(tokens, dtype=np.int64)
    characters = np.asarray(characters if characters is not None else tokens * 4, dtype=np.int64)
    return Profile(list(languages), [f"p{i}" for i in range(P)], counts, tokens, characters, model, "fp", "key", 4,
                   "test", {"top_k_fraction": 0.25, "activation": "topk", "score": "abs", "threshold": None},
                   {"split": "calibration"}, "float32")


def family_profile(keys=KEYS, P=12, L=3, E=8, family_shift=0.25, script_shift=0.0, tokens=400, seed=0,
                   granularity=None):
    """Binomial counts around a family base profile (+ a script shift, + a little per language)."""
    from babel_lib.data import corpus

    rng = np.random.default_rng(seed)
    table = corpus.language_table().loc[keys]
    fams = {f: rng.uniform(0.1, 0.4, (L, E)) for f in table["family"].unique()}
    scripts = {s: rng.uniform(-1, 1, (L, E)) for s in table["script"].unique()}
    base = np.full((L, E), 0.25)
    counts, toks, chars = [], [], []
    for i, k in enumerate(keys):
        q = base + family_shift * (fams[table.loc[k, "family"]] - 0.25) \
            + script_shift * scripts[table.loc[k, "script"]] + 0.02 * rng.normal(size=(L, E))
        q = np.clip(q, 0.01, 0.99)
        t = np.full(P, tokens)
        counts.append(rng.binomial(t[:, None, None].repeat(L, 1).repeat(E, 2), q[None]))
        toks.append(t)
        g = 0.25 if granularity is None else granularity[i]
        chars.append(np.round(t / g).astype(int))
    return profile_from(counts, toks, keys, chars)


# ---------------------------------------------------------------------------- distances
def test_hellinger_known_values_and_batches():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [2.0, 2.0]])
    D = DI.hellinger_distances(X)
    assert D[0, 1] == pytest.approx(1.0)  # no common support
    assert D[2, 3] == pytest.approx(0.0, abs=1e-7)  # the same after normalising
    assert D[0, 2] == pytest.approx(np.sqrt(1 - np.sqrt(0.5)))
    assert np.allclose(D, D.T) and np.allclose(np.diag(D), 0)
    rng = np.random.default_rng(0)
    B = rng.random((5, 4, 6))
    batch = DI.hellinger_distances(B)
    assert batch.shape == (5, 4, 4)
    assert np.allclose(batch[3], DI.hellinger_distances(B[3]))
    freq = rng.random((2, 4, 3, 5))  # resamples, languages, layers, experts
    assert DI.profile_distances(freq).shape == (2, 4, 4)
    assert np.allclose(DI.profile_distances(freq)[1], DI.hellinger_distances(freq[1].reshape(4, -1)))
    per = DI.layer_distances(freq)
    assert per.shape == (2, 3, 4, 4) and np.allclose(per[0, 2], DI.hellinger_distances(freq[0][:, 2]))
    with pytest.raises(ValueError):
        DI.hellinger_distances(-X)
    with pytest.raises(ValueError):
        DI.profile_distances(freq, "euclid")


# ---------------------------------------------------------------------------- the languages
def test_one_text_per_language_and_twins():
    keys = ["eng", "srp_cyrl", "srp_latn", "hin", "urd", "por_pt", "por_br"]
    assert FT.twin_pairs(keys) == [("hin", "urd"), ("srp_cyrl", "srp_latn")]
    assert FT.one_text_per_language(keys) == ["eng", "srp_cyrl", "hin", "por_pt"]
    labels = FT.family_labels(["eng", "fra", "epo", "tur"])
    assert labels[0] == labels[1] == "Indo-European" and labels[2] == "epo"


def test_design():
    d = FT.design(["eng", "deu_1996", "fra", "rus", "tur", "epo"])
    assert d.same_family[0, 1] and d.same_family[0, 3] and not d.same_family[0, 4]
    assert not d.same_family[5, 0] and d.shared[5, 0] == 0
    assert d.shared[0, 1] > d.shared[0, 2] > 0  # English-German share more clades than English-French
    assert d.tree[0, 1] < d.tree[0, 2] < d.tree[0, 4]
    assert d.script_difference[0, 3] == 1 and d.script_difference[0, 2] == 0
    G = FT.granularity_difference(np.array([0.2, 0.5, 0.3]))
    assert G[0, 1] == pytest.approx(0.3) and G[1, 2] == pytest.approx(0.2) and G[0, 0] == 0
    assert FT.granularity_difference(np.ones((4, 3))).shape == (4, 3, 3)


# ---------------------------------------------------------------------------- batched statistics
def test_family_auc_matches_the_stratified_test():
    rng = np.random.default_rng(1)
    n = 16
    fam = np.arange(n) % 4
    script = np.arange(n) // 6
    X = rng.random((n, 5)) + 0.4 * np.eye(4)[fam] @ rng.random((4, 5))
    D = DI.hellinger_distances(X)
    res = S.stratified_permutation_test(D, fam, script, permutations=0)
    auc = FT.family_auc(D, S.same_label(fam), S.same_label(script))
    assert np.allclose(auc[:2], res.auc) and auc[2] == pytest.approx(res.auc_overall)
    batch = FT.family_auc(np.stack([D, D]), S.same_label(fam), S.same_label(script))
    assert batch.shape == (2, 3) and np.allclose(batch[1], auc)
    # a class without same-family pairs is NaN; the overall keeps the other class
    one = FT.family_auc(D, S.same_label(fam), np.ones((n, n), bool))
    assert np.isnan(one[1]) and one[2] == pytest.approx(one[0])


def test_residual_correlation_matches_the_mantel_statistic():
    rng = np.random.default_rng(2)
    n = 12

    def dist(k):
        X = rng.normal(size=(n, k))
        return np.linalg.norm(X[:, None] - X[None], axis=-1)

    x, y, z1, z2 = dist(2), dist(2), dist(1), dist(3)
    want = S.partial_mantel_covariates(x, y, [z1, z2], permutations=0).r
    assert FT.residual_correlation(x, y, [z1, z2]) == pytest.approx(want)
    assert FT.residual_correlation(x, y) == pytest.approx(S.mantel(x, y, permutations=0).r)
    # a batch with a covariate that changes per resample
    xs = np.stack([x, y])
    zs = np.stack([z1, z2])
    got = FT.residual_correlation(xs, y, [zs])
    assert got[0] == pytest.approx(S.partial_mantel_covariates(x, y, [z1], permutations=0).r)
    assert got[1] == pytest.approx(1.0)
    # nothing left to correlate, or too few pairs
    assert np.isnan(FT.residual_correlation(x, y, [y]))
    assert np.isnan(FT.residual_correlation(x[:3, :3], y[:3, :3], [z1[:3, :3], z2[:3, :3]]))


def test_class_and_clade_means():
    D = np.array([[0, 1, 2, 3], [1, 0, 4, 5], [2, 4, 0, 6], [3, 5, 6, 0]], dtype=float)
    fam = S.same_label(["a", "a", "b", "b"])
    scr = S.same_label(["x", "y", "x", "y"])
    # pairs: (0,1) fam diff-script 1; (2,3) fam diff-script 6; (0,2) other fam same script 2;
    # (1,3) other fam same script 5; (0,3) 3 and (1,2) 4 other fam other script
    got = FT.class_means(D, fam, scr)
    assert np.isnan(got[0]) and got[1] == pytest.approx(3.5) and got[2] == pytest.approx(3.5)
    assert got[3] == pytest.approx(3.5)
    shared = np.array([[9, 2, 0, 0], [2, 9, 0, 0], [0, 0, 9, 5], [0, 0, 5, 9]])
    cm = FT.clade_means(D, shared, scr)
    assert cm[0, 0] == pytest.approx(3.5) and cm[2, 1] == pytest.approx(1) and cm[5, 1] == pytest.approx(6)
    assert np.isnan(cm[1]).all()
    assert FT.clade_counts(shared, scr)[0].tolist() == [2, 2]
    assert FT.clade_bin(np.array([0, 1, 4, 5, 11])).tolist() == [0, 1, 4, 5, 5]


# ---------------------------------------------------------------------------- resampling and noise
def test_bootstrap_profiles_uses_the_library_resamples():
    prof = family_profile(P=10)
    freq_stat = lambda f: f[..., 0, 0, :].mean(axis=-1)  # noqa: E731
    want = S.bootstrap(lambda fr: freq_stat(fr), prof.passage_counts, prof.passage_tokens, 100, seed=3,
                       method="percentile", batched=True)
    got = DI.bootstrap_profiles(lambda fs, ts: freq_stat(fs[0]), prof, 100, seed=3, method="percentile")
    assert np.allclose(got.samples, want.samples) and np.allclose(got.low, want.low)
    two = DI.bootstrap_profiles(lambda fs, ts: np.stack([freq_stat(fs[0]), freq_stat(fs[1])], -1), [prof, prof],
                               100, seed=3, method="percentile")
    assert np.allclose(two.samples[:, 0], two.samples[:, 1])
    f, t = DI.weighted_profile(prof, np.ones((1, 10)))
    assert np.allclose(f[0], prof.frequencies()) and np.allclose(t[0], prof.tokens / prof.characters)
    other = profile_from(prof.passage_counts[:, :5], prof.passage_tokens[:, :5], prof.languages)
    with pytest.raises(ValueError, match="same languages and passages"):
        DI.bootstrap_profiles(lambda fs, ts: fs[0][..., 0, 0, 0], [prof, other], 10)


def test_split_half_floor():
    prof = family_profile(P=12)
    mine = DI.split_half_floor(prof, n_splits=20, seed=4)
    lib = S.split_half_distance(prof.passage_counts, prof.passage_tokens,
                                distance=lambda X: DI.profile_distances(X), n_splits=20, seed=4)
    assert np.allclose(mine, lib.per_language)
    assert DI.split_half_floor(prof, per_layer=True, n_splits=5).shape == (len(KEYS), 3)
    small = DI.split_half_floor(family_profile(P=12, tokens=40), n_splits=20)
    assert (small > 2 * mine).all()  # fewer tokens, more noise
    assert np.isnan(DI.split_half_floor(profile_from(prof.passage_counts[:, :1], prof.passage_tokens[:, :1],
                                                    prof.languages))).all()


# ---------------------------------------------------------------------------- twins
def test_twin_table():
    keys = ["srp_cyrl", "srp_latn", "rus", "hrv", "eng"]
    D = np.array([[0, 1, 3, 5, 6],
                  [1, 0, 4, 2, 6],
                  [3, 4, 0, 5, 6],
                  [5, 2, 5, 0, 6],
                  [6, 6, 6, 6, 0]], dtype=float)
    t = FT.twin_table(D, keys).set_index("language")
    cyr, lat = t.loc["srp_cyrl"], t.loc["srp_latn"]
    assert cyr["nearest_same_script"] == "rus" and cyr["nearest_distance"] == 3 and cyr["twin_rank"] == 1
    assert lat["nearest_same_script"] == "hrv" and lat["mean_same_script"] == pytest.approx(4)  # hrv 2, eng 6
    assert lat["nearest_same_group"] and not cyr["nearest_same_group"]  # Croatian: the same Glottolog clade
    st = FT.twin_statistics(np.stack([D, D]), FT.twin_table(D, keys))
    assert st.shape == (2, 2, 5) and st[0, 0].tolist() == [1, 3, 3, -2, -2] and st[1, 1].tolist() == [1, 2, 4, -1, -3]


# ---------------------------------------------------------------------------- tests on constructed profiles
def test_family_tests_find_a_constructed_family_effect():
    prof = family_profile(family_shift=0.6)
    t = FT.family_tests(prof, permutations=199, n_resamples=60).set_index("test")
    assert t.loc["auc", "statistic"] > 0.9 and t.loc["auc", "p_value"] <= 0.01
    assert t.loc["auc", "low"] <= t.loc["auc", "statistic"] <= t.loc["auc", "high"]
    assert t.loc["partial_tree", "statistic"] > 0.3 and t.loc["partial_tree", "p_value"] <= 0.02
    assert (t["n"] == len(KEYS) - 1).all()  # Serbian in Latin script is left out of the family tests
    assert list(t.index) == [x[0] for x in FT.FAMILY_TESTS]


def test_family_tests_script_only():
    """Distances follow script only: the family effect within script strata is not significant
    (mostly), script beyond the tree is."""
    ps, script_ps = [], []
    for seed in range(4):
        prof = family_profile(family_shift=0.0, script_shift=0.2, seed=seed)
        t = FT.family_tests(prof, permutations=99, seed=seed, tests=["auc", "partial_script"]).set_index("test")
        ps.append(t.loc["auc", "p_value"])
        script_ps.append(t.loc["partial_script", "p_value"])
    assert np.mean(np.array(ps) < 0.05) <= 0.5 and max(script_ps) <= 0.05


def test_family_tests_on_three_languages_are_not_testable():
    prof = family_profile(keys=["eng", "fra", "cmn_hans"], P=4)
    t = FT.family_tests(prof, permutations=9, n_resamples=10).set_index("test")
    undefined = t.drop(index="mantel_tree")  # a plain Mantel r exists on 3 pairs; nothing else does
    assert undefined["statistic"].isna().all() and undefined["p_value"].isna().all()
    assert (undefined["note"] != "").all()


def test_layer_family_tests():
    prof = family_profile(family_shift=0.6, L=3)
    t = FT.layer_family_tests(prof, permutations=99, n_resamples=30)
    assert list(t["layer"]) == [0, 1, 2] and (t["auc"] > 0.8).all()
    assert (t["auc_q"] >= t["auc_p"] - 1e-12).all() and (t["auc_q"] < 0.05).all()
    assert (t["auc_low"] <= t["auc"] + 1e-9).all() and (t["auc"] <= t["auc_high"] + 1e-9).all()


def test_cluster_agreement():
    rng = np.random.default_rng(5)
    fam = np.repeat(["a", "b", "c"], 4)
    X = np.eye(3)[np.repeat([0, 1, 2], 4)] * 3 + 0.1 * rng.random((12, 3))
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    res = FT.cluster_agreement(D, fam, np.zeros(12), permutations=99)
    assert res["ari"] == pytest.approx(1.0) and res["p_value"] == pytest.approx(0.01) and res["k"] == 3
    assert np.isnan(FT.cluster_agreement(D[:2, :2], fam[:2], np.zeros(2), 9)["ari"])


def test_family_results_and_verdicts():
    prof = family_profile(family_shift=0.6)
    other = family_profile(family_shift=0.6, seed=1)
    out = F.family_results({"main": prof, "other": other}, n_resamples=40, permutations=199, n_splits=10)
    f = out["facts"]
    assert f["testable"] and f["auc_holds"] and f["robust_auc"]
    assert f["twins"] == 2 and f["languages"] == len(KEYS) and f["family_languages"] == len(KEYS) - 1
    assert set(out["tests"]["test"]) >= {"auc", "partial_tree", "clusters"}
    tested = out["tests"].dropna(subset=["p_value"])
    assert (tested["p_holm"] >= tested["p_value"] - 1e-12).all()
    assert len(out["pairs"]) == len(KEYS) * (len(KEYS) - 1) // 2
    assert len(out["matrix"]) == len(KEYS) ** 2
    diag = out["matrix"][out["matrix"]["diagonal"]]
    assert np.allclose(np.sort(diag["distance"]), np.sort(out["languages"]["floor"]))
    assert list(out["robustness"]["view"]) == ["main", "other", "main, Jensen-Shannon distance"]
    c = out["classes"].set_index("pairs_class")
    assert c.loc["same family, same script", "mean_distance"] < c.loc["different families, same script",
                                                                      "mean_distance"]
    rows = F.family_verdicts(f)
    assert [r["verdict"] for r in rows][0] in ("reproduced", "partly reproduced")
    assert "Hellinger" not in rows[0]["result"]


def test_family_results_on_three_languages():
    prof = family_profile(keys=["eng", "fra", "cmn_hans"], P=4)
    out = F.family_results({"main": prof}, n_resamples=10, permutations=9, n_splits=4)
    assert not out["facts"]["testable"]
    assert {r["verdict"] for r in F.family_verdicts(out["facts"])} == {"not testable here"}


# ---------------------------------------------------------------------------- chapter 6
def test_depth_statistics_known_values():
    freq = np.array([[[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]],
                     [[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.25, 0.25]]])  # 2 languages, 2 layers, 4 experts
    out = MF.depth_statistics(freq, rate=0.25, hf_ratio=2.0)
    assert out.shape == (4, 2)
    assert out[0].tolist() == [0.25, 0.0]  # departure
    assert out[1].tolist() == [0.5, 0.0]  # high-frequency share (f >= 0.5)
    assert out[2][1] == pytest.approx(1.0) and out[2][0] == pytest.approx(0.5)  # entropy: 2 of 4 experts
    assert out[3][0] == pytest.approx(1.0) and out[3][1] == pytest.approx(0.0)  # no common support / identical
    assert MF.depth_statistics(np.stack([freq] * 3), 0.25).shape == (3, 4, 2)


def test_depth_trend_and_curve_correlation():
    assert MF.depth_trend(np.array([1.0, 2.0, 5.0, 9.0])) == pytest.approx(1.0)
    assert MF.depth_trend(np.array([[3.0, 2.0, 1.0]]))[0] == pytest.approx(-1.0)
    assert np.isnan(MF.depth_trend(np.ones(4)))
    a = np.linspace(0, 1, 18) ** 2
    b = np.linspace(0, 1, 30) ** 2
    assert MF.curve_correlation(a, b) > 0.99 and MF.curve_correlation(a, -b) < -0.99
    assert MF.curve_correlation(np.stack([a, a]), b).shape == (2,)
    assert np.isnan(MF.curve_correlation(np.ones(18), b))


def test_model_results_on_two_constructed_models():
    a = family_profile(family_shift=0.6, L=3, E=8, seed=0)
    b = family_profile(family_shift=0.6, L=5, E=6, seed=0)  # another "architecture", same families
    b_other = family_profile(family_shift=0.6, L=5, E=6, seed=2)
    out = MF.model_results({"A": {"main": a, "other": a}, "B": {"main": b, "other": b_other}},
                          n_resamples=30, permutations=999, n_splits=5)
    f = out["facts"]
    assert f["models"] == ["A", "B"] and f["layers"] == {"A": 3, "B": 5}
    assert f["mantel"][0] > 0.5 and f["mantel_holds"]
    assert f["holds_in"]["auc"] == "every model" and f["robust"]["A"]["auc"]
    by_layer = out["by_layer"]
    assert set(by_layer["model"]) == {"A", "B"} and len(by_layer) == 4 * (3 + 5)
    dist = by_layer[by_layer["statistic"] == "distance between languages"]
    assert dist["floor"].notna().all() and (dist["value"] > dist["floor"]).all()
    assert list(out["agreement"]["statistic"]) == list(MF.DEPTH_STATISTICS)
    assert len(out["robustness"]) == 2 and set(out["tokenisation"].columns) >= {"A", "B", "name"}
    tests = out["tests"]
    assert set(tests["model"]) == {"A", "B", "A and B"}
    assert (tests.dropna(subset=["p_value"])["p_holm"] >= tests.dropna(subset=["p_value"])["p_value"] - 1e-12).all()
    rows = MF.model_verdicts(f)
    assert rows[0]["verdict"] in ("reproduced", "partly reproduced") and rows[1]["verdict"] == "not testable here"


def test_model_results_need_the_same_passages_and_two_models():
    a = family_profile(P=6)
    b = profile_from(a.passage_counts[:, :3], a.passage_tokens[:, :3], a.languages)
    with pytest.raises(ValueError, match="same languages and passages"):
        MF.model_results({"A": {"v": a}, "B": {"v": b}}, n_resamples=0, permutations=0)
    with pytest.raises(ValueError, match="two models"):
        MF.model_results({"A": {"v": a}}, n_resamples=0, permutations=0)


def test_model_results_on_three_languages():
    a = family_profile(keys=["eng", "fra", "cmn_hans"], P=4, L=2)
    b = family_profile(keys=["eng", "fra", "cmn_hans"], P=4, L=3, seed=1)
    out = MF.model_results({"A": {"v": a}, "B": {"v": b}}, n_resamples=10, permutations=9, n_splits=3)
    assert not out["facts"]["testable"]
    assert [r["verdict"] for r in MF.model_verdicts(out["facts"])] == ["not testable here"] * 2


def test_text_tables_and_studies_as_input():
    from types import SimpleNamespace

    a = family_profile(keys=["eng", "fra", "rus", "tur"], P=4, L=2)
    b = family_profile(keys=["eng", "fra", "rus", "tur"], P=4, L=3, seed=1,
                       granularity=[0.2, 0.25, 0.3, 0.4])

    def fake(prof):
        def text_table():
            t = prof.text_table()
            t.insert(1, "name", t["language"])
            t.insert(2, "script", "Latn")
            t.insert(3, "family", "f")
            return t
        return SimpleNamespace(views={"v": prof}, text_table=text_table)

    studies = {"A": fake(a), "B": fake(b)}
    t = MF.text_tables(studies)
    assert list(t["language"]) == ["eng", "fra", "rus", "tur"]
    assert np.allclose(t["tokens per character: B"], [0.2, 0.25, 0.3, 0.4], atol=0.01)
    assert (t["tokens: A"] == a.tokens).all()
    out = MF.model_results(studies, n_resamples=0, permutations=0, n_splits=2)
    assert np.allclose(out["tokenisation"]["B"], t["tokens per character: B"])
    assert len(out["pairs"]) == 6 and {"A", "B", "scripts"} <= set(out["pairs"].columns)


# ---------------------------------------------------------------------------- batched permutation tests
def _random_dist(rng, n, k=3):
    X = rng.normal(size=(n, k))
    return np.linalg.norm(X[:, None] - X[None], axis=-1)


def test_mantel_many_equals_the_library_test():
    rng = np.random.default_rng(6)
    n = 14
    X = np.stack([_random_dist(rng, n) for _ in range(3)])
    y, z1, z2 = _random_dist(rng, n), _random_dist(rng, n), (rng.random((n, n)) > 0.5).astype(float)
    z2 = np.triu(z2, 1) + np.triu(z2, 1).T
    X[1] = X[1] + 2 * y  # one matrix follows y
    r, p = FT.mantel_many(X, y, [z1, z2], permutations=199, seed=3)
    for v in range(3):
        want = S.partial_mantel_covariates(y, X[v], [z1, z2], permutations=199, seed=3, permute="residuals")
        assert r[v] == pytest.approx(want.r) and p[v] == pytest.approx(want.p_value)
    assert p[1] == pytest.approx(1 / 200)
    r0, p0 = FT.mantel_many(X, y, [], permutations=99, seed=1)
    plain = S.mantel(y, X[2], permutations=99, seed=1)
    assert r0[2] == pytest.approx(plain.r) and p0[2] == pytest.approx(plain.p_value)
    nan_r, nan_p = FT.mantel_many(X[:, :3, :3], y[:3, :3], [z1[:3, :3]], permutations=9)
    assert np.isnan(nan_r).all() and np.isnan(nan_p).all()


def test_stratified_many_equals_the_library_test():
    rng = np.random.default_rng(7)
    n = 18
    fam, script = np.arange(n) % 4, np.arange(n) // 7
    X = np.stack([_random_dist(rng, n) for _ in range(2)])
    X[0] = X[0] + 1.5 * (fam[:, None] != fam[None])
    auc, p = FT.stratified_many(X, fam, script, permutations=99, seed=2)
    for v in range(2):
        want = S.stratified_permutation_test(X[v], fam, script, permutations=99, seed=2)
        assert np.allclose(auc[v, :2], want.auc) and auc[v, 2] == pytest.approx(want.auc_overall)
        assert np.allclose(p[v, :2], want.p_values) and p[v, 2] == pytest.approx(want.p_value)
    assert p[0, 2] == pytest.approx(0.01) and auc[0, 2] > 0.9


def test_permuted_ari_equals_scikit_learn():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(8)
    clusters, labels = rng.integers(0, 4, 30), rng.integers(0, 6, 30)
    perms = np.stack([rng.permutation(30) for _ in range(20)])
    got = FT.permuted_ari(clusters, labels, perms)
    want = [adjusted_rand_score(labels[p], clusters) for p in perms]
    assert np.allclose(got, want)


def test_view_tests_batch_views_and_distances():
    a = family_profile(family_shift=0.6)
    b = family_profile(family_shift=0.0, seed=3)
    t = FT.view_tests({"a": a, "b": b}, permutations=99, js=True)
    assert list(t["view"]) == ["a", "b", "a, Jensen-Shannon distance"]
    assert t.loc[0, "auc"] > 0.9 and t.loc[0, "auc_p"] <= 0.02 and t.loc[2, "auc"] > 0.9
    single = FT.family_tests(b, permutations=99, tests=["auc", "partial_tree"]).set_index("test")
    assert t.loc[1, "auc"] == pytest.approx(single.loc["auc", "statistic"])
    assert t.loc[1, "partial_tree_p"] == pytest.approx(single.loc["partial_tree", "p_value"])


def test_family_auc_with_ties_uses_average_ranks():
    D = np.array([[0, 1, 1, 2], [1, 0, 2, 1], [1, 2, 0, 1], [2, 1, 1, 0]], dtype=float)
    fam = ["a", "a", "b", "b"]
    want = S.stratified_permutation_test(D, fam, np.zeros(4), permutations=0).auc_overall
    got = FT.family_auc(np.stack([D, D + 0.0]), S.same_label(fam), np.ones((4, 4), bool))
    assert got[0, 2] == pytest.approx(want) and got[1, 0] == pytest.approx(want)


def test_family_tests_rows_match_the_stratified_test_by_class():
    prof = family_profile(family_shift=0.15, script_shift=0.1, seed=4)
    t = FT.family_tests(prof, permutations=49, n_resamples=20, tests=["auc", "auc_same_script",
                                                                    "auc_different_scripts"]).set_index("test")
    sub = prof.select(FT.one_text_per_language(prof.languages))
    dsg = FT.design(sub.languages)
    want = S.stratified_permutation_test(DI.profile_distances(sub.frequencies()), dsg.family, dsg.script,
                                         permutations=49)
    assert t.loc["auc", "statistic"] == pytest.approx(want.auc_overall)
    assert t.loc["auc_same_script", "statistic"] == pytest.approx(want.auc[0])
    assert t.loc["auc_different_scripts", "statistic"] == pytest.approx(want.auc[1])
    assert t.loc["auc_different_scripts", "p_value"] == pytest.approx(want.p_values[1])
    G = FT.granularity_difference(sub.tokens / sub.characters)
    point = FT._family_statistics(DI.profile_distances(sub.frequencies()), dsg, G)
    assert np.allclose(point[:3], t["statistic"].to_numpy())  # the bootstrap's statistic, in the table's order
    for test in t.index:  # the bootstrap estimates the same statistic as the test
        assert t.loc[test, "low"] - 0.05 <= t.loc[test, "statistic"] <= t.loc[test, "high"] + 0.05


def test_centred_interval_removes_a_shift():
    samples = np.random.default_rng(9).normal(1.1, 0.01, (2000, 2))  # resamples all above the estimate
    res = S.BootstrapResult(np.array([1.0, 1.0]), np.nan, np.nan, samples, "percentile", 2000, 0.95, 10)
    low, high, shift = DI.centred_interval(res)
    assert np.allclose(shift, 0.1, atol=0.002)
    assert (low < 1.0).all() and (high > 1.0).all() and np.allclose(high - low, 2 * 1.96 * 0.01, rtol=0.1)


# ---------------------------------------------------------------------------- claims over languages
def test_weighted_family_statistics_reduce_to_the_plain_ones():
    prof = family_profile(family_shift=0.6)
    sub, dsg, G = FT._subset(prof)
    D = DI.profile_distances(sub.frequencies())
    plain = FT._family_statistics(D, dsg, G)
    ones = FT.weighted_family_statistics(D, np.ones(len(dsg.languages)), dsg, G)
    np.testing.assert_allclose(ones, plain, atol=1e-10)
    # weight 0 drops a language: the same as the statistics of the others alone
    keep = np.arange(len(dsg.languages)) != 2
    dropped = FT.weighted_family_statistics(D, keep.astype(float), dsg, G)
    small = FT.design([k for k, ok in zip(dsg.languages, keep) if ok])
    np.testing.assert_allclose(dropped, FT._family_statistics(D[np.ix_(keep, keep)], small, G[np.ix_(keep, keep)]),
                               atol=1e-10)


def test_family_intervals_resample_families_and_include_the_language_variance():
    """The claim is over languages: the crossed interval (families x passages) is wider than the
    passage-only one, which treats the languages as fixed; both contain the estimate."""
    prof = family_profile(family_shift=0.1, P=12)
    crossed = FT.family_tests(prof, permutations=99, n_resamples=200).set_index("test")
    passages = FT.family_tests(prof, permutations=99, n_resamples=200, interval="passages").set_index("test")
    assert crossed.loc["auc", "interval"].startswith("jackknife over families")  # 5 families < 8
    assert passages.loc["auc", "interval"] == "passages resampled, languages fixed"
    for t in ("auc", "partial_tree"):
        assert crossed.loc[t, "high"] - crossed.loc[t, "low"] > 2 * (passages.loc[t, "high"] - passages.loc[t, "low"])
        assert crossed.loc[t, "low"] <= crossed.loc[t, "statistic"] <= crossed.loc[t, "high"]
        assert -1 <= crossed.loc[t, "low"] and crossed.loc[t, "high"] <= 1  # within the statistic's range
    # the AUC's null is its permutation mean, not 0.5, and the effect is measured from it
    auc = crossed.loc["auc"]
    assert auc["null_mean"] != 0.5 and auc["effect"] == pytest.approx(auc["statistic"] - auc["null_mean"])
    with pytest.raises(ValueError, match="interval"):
        FT.family_tests(prof, permutations=9, interval="languages")


def test_one_holm_family_per_claim_across_chapters_5_and_6():
    """A model's family tests get the same adjusted p-values in chapter 5 and in chapter 6 (each
    model's tests one family, the two models' agreement another): the book cannot contradict itself."""
    a = family_profile(family_shift=0.6, L=3, E=8, seed=0)
    b = family_profile(family_shift=0.6, L=5, E=6, seed=0)
    five = F.family_results({"main": a}, n_resamples=20, permutations=199, n_splits=4)["tests"].set_index("test")
    six = MF.model_results({"A": {"main": a}, "B": {"main": b}}, n_resamples=20, permutations=199,
                           n_splits=4)["tests"]
    six_a = six[six["model"] == "A"].set_index("test")
    for t in FT.FAMILY_TESTS:
        assert six_a.loc[t[0], "p_holm"] == pytest.approx(five.loc[t[0], "p_holm"], nan_ok=True)
    assert set(six["family"]) == {"families: A", "families: B", "two models"}


def test_correct_by_family():
    import pandas as pd

    t = pd.DataFrame({"p_value": [0.01, 0.04, 0.03, 0.5], "family": ["x", "x", "y", "y"]})
    out = S.correct(t, "p_value", "holm", out="p_holm", by="family")
    np.testing.assert_allclose(out["p_holm"], [0.02, 0.04, 0.06, 0.5])
    np.testing.assert_allclose(S.correct(t, "p_value", "holm", out="p_holm")["p_holm"], [0.04, 0.09, 0.09, 0.5])


def test_model_agreement_interval_resamples_languages():
    """Two models' agreement on language distances is a claim over languages: its interval (languages
    and passages resampled) is not the degenerate passage-only one, and contains the estimate."""
    a = family_profile(family_shift=0.3, L=3, E=8, seed=0, P=8)
    b = family_profile(family_shift=0.3, L=5, E=6, seed=0, P=8)
    dsg = FT.design(list(a.languages))
    low, high = MF.crossed_agreement(a, b, dsg.script_difference, n_resamples=200, seed=0)
    out = MF.model_results({"A": {"main": a}, "B": {"main": b}}, n_resamples=200, permutations=99, n_splits=4)
    row = out["tests"].set_index("test").loc["models_mantel"]
    assert row["low"] == pytest.approx(low[0]) and row["high"] == pytest.approx(high[0])
    assert low[0] <= row["statistic"] <= high[0] and high[0] - low[0] > 0.02
    w = np.ones(len(a.languages))
    iu = np.triu_indices(len(w), 1)
    Da, Db = DI.profile_distances(a.frequencies()), DI.profile_distances(b.frequencies())
    assert FT.weighted_residual_correlation(DI.upper(Da), DI.upper(Db), [], w[iu[0]] * w[iu[1]]) == \
        pytest.approx(row["statistic"])
