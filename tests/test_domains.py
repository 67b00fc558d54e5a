"""Chapter-11 statistics (language or text?) on constructed profiles with known answers."""

import numpy as np
import pandas as pd
import pytest

from babel_lib import stats
from babel_lib.chapters import language_or_text as domains
from babel_lib.experts.profile import Profile


def profile_from(counts, tokens, languages, corpus="udhr"):
    counts = np.asarray(counts, dtype=np.int32)
    n, P = counts.shape[:2]
    return Profile(list(languages), [f"p{i}" for i in range(P)], counts, np.asarray(tokens, dtype=np.int64),
                   np.full((n, P), 100, dtype=np.int64), "m", "fp", "key", 4, "test",
                   {"top_k_fraction": 0.125, "activation": "topk", "score": "abs", "threshold": None},
                   {"split": "all", "corpus": corpus}, "float32")


def two_corpora(language_effect, domain_effect, n=6, L=3, E=8, P=(12, 6), tokens=(300, 900), seed=0):
    """Profiles of n languages on two corpora: each language has its own frequency signature (scaled
    by language_effect), each corpus shifts every language the same way (domain_effect), then
    binomial sampling per passage."""
    rng = np.random.default_rng(seed)
    base = np.full((L, E), 0.15)  # high-frequency: >= 2 x k/E = 0.25
    lang = rng.normal(size=(n, L, E))
    dom = rng.normal(size=(L, E))
    out = []
    for c, (p, t) in enumerate(zip(P, tokens)):
        q = np.clip(base[None] + language_effect * lang + (domain_effect * dom if c else -domain_effect * dom)[None],
                    0.01, 0.99)
        tok = np.full((n, p), t)
        counts = rng.binomial(tok[..., None, None].repeat(L, 2).repeat(E, 3), q[:, None])
        out.append((counts, tok))
    langs = ["eng", "fra", "spa", "ita", "rus", "hin", "arb", "jpn"][:n]
    return (profile_from(*out[0], langs, "udhr"), profile_from(*out[1], langs, "bible"))


# ---------------------------------------------------------------------------- pieces
def test_nearest_other_and_identification():
    D = np.array([[0.0, 0.2, 0.5], [0.2, 0.0, 0.1], [0.5, 0.1, 0.0]])
    idx, dist = domains.nearest_other(D)
    assert idx.tolist() == [1, 2, 1] and dist.tolist() == [0.2, 0.1, 0.1]
    D_ub = np.array([[0.1, 0.3, 0.4], [0.3, 0.2, 0.1], [0.4, 0.3, 0.2]])  # language 1's UDHR row is nearest Bible 2
    ident = domains.identification(D_ub)
    assert ident["nearest_ub"].tolist() == [0, 2, 2] and ident["nearest_bu"].tolist() == [0, 1, 1]
    assert ident["identified_ub"].tolist() == [True, False, True]
    assert ident["identified_bu"].tolist() == [True, True, False]
    assert ident["share"] == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        domains.nearest_other(np.zeros((1, 1)))


def test_distance_blocks_diagonal_is_self_distance():
    rng = np.random.default_rng(0)
    fu = rng.uniform(0.1, 0.5, size=(3, 2, 4))
    D_uu, D_bb, D_ub = domains.distance_blocks(fu, fu)  # identical profiles on both corpora
    np.testing.assert_allclose(np.diag(D_ub), 0.0, atol=1e-7)
    np.testing.assert_allclose(D_uu, D_bb)
    np.testing.assert_allclose(D_ub, D_uu, atol=1e-7)
    with pytest.raises(ValueError):
        domains.distance_blocks(fu, fu[:2])


def test_variance_partition_known_parts():
    n, cells = 4, 6
    rng = np.random.default_rng(1)
    lang = rng.normal(size=(n, cells))
    shift = rng.normal(size=cells)
    only_language = domains.variance_partition(0.3 + 0.01 * lang, 0.3 + 0.01 * lang)
    assert only_language == pytest.approx({"language": 1.0, "domain": 0.0, "interaction": 0.0}, abs=1e-12)
    only_domain = domains.variance_partition(np.tile(0.3 - 0.01 * shift, (n, 1)), np.tile(0.3 + 0.01 * shift, (n, 1)))
    assert only_domain == pytest.approx({"language": 0.0, "domain": 1.0, "interaction": 0.0}, abs=1e-12)
    inter = rng.normal(size=(n, cells))
    inter -= inter.mean(axis=0)  # a shift of opposite sign per language, no average language or domain effect
    only_interaction = domains.variance_partition(0.3 + 0.01 * inter, 0.3 - 0.01 * inter)
    assert only_interaction == pytest.approx({"language": 0.0, "domain": 0.0, "interaction": 1.0}, abs=1e-12)
    mixed = domains.variance_partition(0.3 + 0.02 * lang - 0.01 * shift, 0.3 + 0.02 * lang + 0.01 * shift)
    assert sum(mixed.values()) == pytest.approx(1.0)
    # SS_language = 2 * sum a^2 (a = 0.02 lang centred), SS_domain = n * 2 * sum (0.01 shift)^2
    a = 0.02 * (lang - lang.mean(axis=0))
    expected = 2 * (a ** 2).sum() / (2 * (a ** 2).sum() + n * 2 * ((0.01 * shift) ** 2).sum())
    assert mixed["language"] == pytest.approx(expected)
    assert np.isnan(domains.variance_partition(np.ones((2, 3)), np.ones((2, 3)))["language"])


def test_hf_overlap_and_jaccard():
    hu = np.zeros((2, 2, 4), dtype=bool)
    hb = np.zeros((2, 2, 4), dtype=bool)
    hu[0, 0, :2] = True        # language 0: UDHR {0, 1} in layer 0
    hb[0, 0, 1:3] = True       # Bible {1, 2}: one in both, one in each only
    hu[1, 1, 3] = hb[1, 1, 3] = True
    out = domains.hf_overlap(hu, hb)
    assert out["both"].tolist() == [[1, 0], [0, 1]]
    assert out["udhr_only"].tolist() == [[1, 0], [0, 0]] and out["bible_only"].tolist() == [[1, 0], [0, 0]]
    np.testing.assert_allclose(out["jaccard"], [1 / 3, 1.0])
    np.testing.assert_allclose(domains.set_jaccard(np.zeros((1, 3), bool), np.zeros((1, 3), bool)), [1.0])
    J_uu, J_bb, J_ub = domains.jaccard_blocks(hu, hb)
    np.testing.assert_allclose(np.diag(J_ub), out["jaccard"])
    assert J_uu[0, 1] == 0.0 and J_bb[0, 0] == 1.0


def test_token_matched_passages():
    tokens = np.array([[100, 100, 100, 100, 100, 100, 100, 100]] * 3)
    idx = domains.token_matched_passages(tokens, [250, 300, 280])  # median 280 -> 3 passages
    assert idx.tolist() == [1, 4, 6]  # the middles of 3 equal parts
    assert domains.token_matched_passages(tokens, [5000] * 3).tolist() == list(range(8))
    assert len(domains.token_matched_passages(tokens, [50, 60, 70])) == 1


def test_text_comparison_merges_corpora():
    u = pd.DataFrame({"language": ["eng", "fra"], "name": ["English", "French"], "script": ["Latn", "Latn"],
                      "passages": [10, 10], "characters": [1000, 1100], "tokens": [200, 300],
                      "tokens_per_character": [0.2, 0.27]})
    b = u.assign(passages=4, tokens=[800, 900])
    out = domains.text_comparison(u, b)
    assert out["tokens_ratio"].tolist() == [4.0, 3.0] and out["passages_bible"].tolist() == [4, 4]
    assert {"name", "script", "tokens_udhr", "tokens_per_character_bible"} <= set(out.columns)
    with pytest.raises(ValueError):
        domains.text_comparison(u, b.iloc[::-1])


def test_shared_languages_drops_what_one_corpus_lacks():
    keys = domains.shared_languages(["eng", "urd", "fra"])  # Urdu: UDHR only
    assert keys == ["eng", "fra"]
    everything = domains.shared_languages("all")
    assert "eng" in everything and "urd" not in everything and len(everything) >= 20
    with pytest.raises(ValueError):
        domains.shared_languages(["urd"])


# ---------------------------------------------------------------------------- tests over languages
def test_identification_test_separates_signal_from_noise():
    n = 8
    D = np.full((n, n), 0.5)
    np.fill_diagonal(D, 0.1)                   # every language nearest to itself
    res = domains.identification_test(D, permutations=999, seed=0)
    assert res.statistic == 1.0 and res.p_value == pytest.approx(1 / 1000)
    rng = np.random.default_rng(3)
    noise = domains.identification_test(rng.uniform(size=(n, n)), permutations=999, seed=0)
    assert noise.p_value > 0.05


def test_matched_pairs_test():
    n = 7
    S = np.full((n, n), 0.2)
    np.fill_diagonal(S, 0.6)
    assert domains.matched_pairs_test(S, permutations=499).p_value == pytest.approx(1 / 500)
    assert domains.matched_pairs_test(-S, permutations=499, alternative="less").p_value == pytest.approx(1 / 500)
    assert domains.matched_pairs_test(np.full((n, n), 0.3), permutations=99).p_value == 1.0
    with pytest.raises(ValueError):
        domains.matched_pairs_test(S, alternative="two-sided")


# ---------------------------------------------------------------------------- bootstrap
def test_joint_bootstrap_resamples_within_each_stratum():
    sizes = [5, 3]
    seen = []

    def statistic(weights):
        seen.append([w.sum() for w in weights])
        return np.array([weights[0].sum(), weights[1].sum()])

    res = domains.joint_bootstrap(statistic, sizes, n_resamples=40, seed=2, method="bca")
    np.testing.assert_allclose(res.samples, np.tile([5.0, 3.0], (40, 1)))  # every resample keeps 5 + 3
    assert res.n_units == 8 and res.method == "bca"
    # stratum s draws row b of passage_resamples(size_s, B, seed + s)
    w = stats.multiplicities(stats.passage_resamples(3, 40, 3), 3)
    res2 = domains.joint_bootstrap(lambda ws: ws[1] @ np.arange(3.0), sizes, n_resamples=40, seed=2,
                                   method="percentile")
    np.testing.assert_allclose(res2.samples, w @ np.arange(3.0))


def test_joint_bootstrap_interval_covers_a_known_mean():
    rng = np.random.default_rng(0)
    hits = 0
    for rep in range(40):
        a, b = rng.normal(1.0, 1.0, 30), rng.normal(2.0, 1.0, 20)
        res = domains.joint_bootstrap(lambda ws: (ws[1] @ b) / ws[1].sum() - (ws[0] @ a) / ws[0].sum(),
                                      [30, 20], n_resamples=300, seed=rep, method="percentile")
        hits += res.low <= 1.0 <= res.high
    assert hits >= 34  # about 95% of 40


def test_weighted_frequencies():
    counts = np.array([[[[1]], [[3]]]])    # 1 language, 2 passages, 1 layer, 1 expert
    tokens = np.array([[10, 10]])
    np.testing.assert_allclose(stats.weighted_frequencies(counts, tokens, np.array([1.0, 1.0]))[0], [[[0.2]]])
    np.testing.assert_allclose(stats.weighted_frequencies(counts, tokens, np.array([0.0, 2.0]))[0], [[[0.3]]])


# ---------------------------------------------------------------------------- the chapter's statistics
def test_statistics_when_the_language_dominates():
    pu, pb = two_corpora(language_effect=0.08, domain_effect=0.01)
    s = domains.cross_domain_statistics(pu.frequencies(), pb.frequencies(), 0.125)
    assert s["identification"] == 1.0 and s["closer"] == 1.0
    assert s["ratio"] < 0.5 and s["mantel_r"] > 0.8
    assert s["language"] > 0.8 and s["language"] + s["domain"] + s["interaction"] == pytest.approx(1.0)
    assert s["jaccard_self_mean"] > s["jaccard_within_mean"]
    assert s["self"].shape == (6,) and s["hf_both_layer"].shape == (3,)


def test_statistics_when_the_text_dominates():
    pu, pb = two_corpora(language_effect=0.005, domain_effect=0.1)
    s = domains.cross_domain_statistics(pu.frequencies(), pb.frequencies(), 0.125)
    assert s["closer"] == 0.0 and s["ratio"] > 2
    assert s["domain"] > 0.8


def test_cross_domain_results_end_to_end():
    pu, pb = two_corpora(language_effect=0.08, domain_effect=0.02)
    qu, qb = two_corpora(language_effect=0.08, domain_effect=0.02, seed=1)
    out = domains.cross_domain_results({"main": pu, "other": qu}, {"main": pb, "other": qb}, n_resamples=60,
                                       permutations=999, n_splits=10)
    f = out["facts"]
    assert f["identified_both"] == 6 and f["strict"] and f["holds"] and f["robust"]
    assert f["p_identification"] < 0.01 and f["p_holm_identification"] >= f["p_identification"]
    lo, est, hi = f["ratio"][1], f["ratio"][0], f["ratio"][2]
    assert lo <= est <= hi < 1
    tests = out["tests"]
    assert tests["test"].tolist() == ["identification", "mantel", "high_frequency"] and tests["words"].notna().all()
    assert (tests["p_holm"] >= tests["p_value"]).all()
    bl = out["by_language"]
    assert (bl["self_low"] <= bl["self"] + 1e-12).all() and (bl["self"] <= bl["self_high"] + 1e-12).all()
    assert (bl["self"] > bl["floor_udhr"]).all()        # the domain shift is beyond sampling noise
    assert len(out["cross"]) == 36 and out["cross"]["own"].sum() == 6 and len(out["pairs"]) == 15
    assert set(out["ladder"]["measure"]) == {w for _, w in domains.LADDER}
    assert out["robustness"]["view"].tolist() == ["main", "other", "main"]
    assert "Bible cut" in out["robustness"]["note"].iloc[-1]
    assert list(out["by_third"]["third"]) == ["early", "middle", "late"]
    assert (bl["rival"] == "").all() and f["not_closer"] == [] and f["misidentified"] == []
    verdict = domains.cross_domain_verdicts(f)[0]
    assert verdict["verdict"] == "reproduced"


def test_cross_domain_verdict_when_the_text_dominates():
    pu, pb = two_corpora(language_effect=0.005, domain_effect=0.1)
    out = domains.cross_domain_results({"main": pu}, {"main": pb}, n_resamples=30, permutations=99, n_splits=5)
    assert not out["facts"]["holds"]
    bl = out["by_language"]
    assert (bl["rival"] != "").all() and set(bl["rival_corpus"]) <= {"UDHR", "Bible"}
    assert len(out["facts"]["not_closer"]) == 6
    assert domains.cross_domain_verdicts(out["facts"])[0]["verdict"] == "not reproduced"
    with pytest.raises(ValueError):
        domains.cross_domain_results({"main": pu}, {"other": pb})


def test_how_a_language_fails_identification():
    row = {"name": "Vietnamese", "identified_ub": True, "identified_bu": False, "udhr_matches": "Vietnamese",
           "bible_matches": "Indonesian"}
    assert domains._miss_text(row) == "Vietnamese (its Bible profile is nearest to the UDHR's Indonesian)"
    both = {**row, "identified_ub": False, "udhr_matches": "Tagalog"}
    assert "UDHR profile is nearest to the Bible's Tagalog and its Bible profile" in domains._miss_text(both)


# ---------------------------------------------------------------------------- claims over languages
def test_claim_statistics_reduce_to_the_plain_ones_and_skip_copies():
    pu, pb = two_corpora(language_effect=0.03, domain_effect=0.02)
    fu, fb = pu.frequencies(), pb.frequencies()
    plain = domains.cross_domain_statistics(fu, fb, 0.125)
    ones = domains.claim_statistics(fu, fb, np.ones(6), 0.125)
    for k in domains.CLAIM_STATISTICS:
        assert ones[k] == pytest.approx(plain[k]), k
    # weight 0 drops a language: the same as the statistics of the other five alone
    keep = np.arange(6) != 1
    dropped = domains.claim_statistics(fu, fb, keep.astype(float), 0.125)
    alone = domains.cross_domain_statistics(fu[keep], fb[keep], 0.125)
    for k in domains.CLAIM_STATISTICS:
        assert dropped[k] == pytest.approx(alone[k]), k
    # a language drawn twice is not its own rival: identification is unchanged by duplication
    twice = domains.claim_statistics(fu, fb, np.array([2.0, 1, 1, 1, 1, 0]), 0.125)
    assert twice["identification"] == pytest.approx(domains.claim_statistics(fu, fb, np.array([1.0, 1, 1, 1, 1, 0]),
                                                                            0.125)["identification"])


def test_claim_intervals_resample_languages():
    """The distance ratio is a claim over languages: with languages resampled its interval is wider
    than with the languages fixed, and the summary says which interval each statistic has."""
    pu, pb = two_corpora(language_effect=0.03, domain_effect=0.02, n=8)
    low, high = domains.crossed_claim_intervals(pu, pb, n_resamples=200, seed=0)
    fixed = domains.bootstrap_statistics(pu, pb, n_resamples=200, seed=0, method="percentile")
    assert high["ratio"] - low["ratio"] > fixed["high"]["ratio"] - fixed["low"]["ratio"]
    out = domains.cross_domain_results({"main": pu}, {"main": pb}, n_resamples=200, permutations=99, n_splits=5)
    s = out["summary"].set_index("statistic")
    assert s.loc["ratio", "low"] == pytest.approx(low["ratio"]) and s.loc["ratio", "high"] == pytest.approx(high["ratio"])
    assert s.loc["ratio", "interval"] == "languages and passages resampled"
    assert out["facts"]["ratio"][1] == pytest.approx(low["ratio"])
