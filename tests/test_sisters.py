"""Sister languages (chapter 5): the selection, the trio statistic and its test, on constructed profiles."""

import numpy as np
import pytest

from babel_lib.chapters import families as F
from babel_lib.data import corpus
from babel_lib.data.corpus import UnknownLanguageError
from babel_lib.stats import family_tests as FT

from test_families import profile_from


def test_sister_pairs_share_the_parent_clade_and_not_the_language():
    pairs = corpus.sister_pairs(["bos_latn", "srp_latn", "hin", "urd", "eng", "fra"])
    assert pairs == [("bos_latn", "srp_latn")]  # Hindi and Urdu: one language in two scripts, not sisters
    assert corpus.sister_pairs(["eng", "fra", "spa"]) == []
    assert corpus.describe_sisters(["eng", "fra"]).startswith("No two of these 2 languages")
    assert corpus.describe_sisters(["bos_latn", "srp_latn", "eng"]).startswith("1 sister pairs")


def test_sister_trios_are_sisters_and_a_nearest_cousin():
    table = corpus.language_table()
    trios = corpus.sister_trios(20)
    assert trios == corpus.sister_trios(20) and corpus.sister_trios(30)[:20] == trios  # deterministic prefixes
    keys = [k for t in trios for k in t]
    assert len(set(keys)) == len(keys)
    assert len({table.loc[k, "iso639_3"] for k in keys}) == len(keys)  # one text per language
    for a, b, c in trios:
        assert corpus.sister_pairs([a, b]) == [(a, b)]
        assert corpus.sister_pairs([a, c]) == [] and corpus.sister_pairs([b, c]) == []
        assert table.loc[a, "family"] == table.loc[c, "family"] and table.loc[a, "script"] == table.loc[c, "script"]
        assert table.loc[a, "script"] == table.loc[b, "script"]
        # no other candidate of the family and script shares more clades with the sisters than the cousin
        path = corpus.clade_path(a)
        depth = lambda k: next((i for i, (x, y) in enumerate(zip(corpus.clade_path(k), path)) if x != y),  # noqa: E731
                               min(len(corpus.clade_path(k)), len(path)))
        assert depth(c) < len(path)
    assert len({table.loc[t[0], "family"] for t in trios}) >= 10  # spread over families
    assert corpus.resolve_languages("sisters:4") == [k for t in corpus.sister_trios(4) for k in t]
    for bad in ("sisters:0", "sisters:x", "sisters:100000"):
        with pytest.raises(UnknownLanguageError, match="sisters:N"):
            corpus.resolve_languages(bad)


def test_sister_scores_known_values():
    D = np.array([[0, 1, 3], [1, 0, 2], [3, 2, 0]], float)
    assert FT.sister_scores(D, np.array([[0, 1, 2]]))[0] == 1.0  # sisters nearest: both cousin pairs farther
    assert FT.sister_scores(D, np.array([[0, 2, 1]]))[0] == 0.0  # the "sisters" are the farthest pair
    assert FT.sister_scores(D, np.array([[1, 2, 0]]))[0] == 0.5  # one cousin pair nearer, one farther
    assert FT.sister_ratios(D, np.array([[0, 1, 2]]))[0] == pytest.approx(1 / 2.5)
    tie = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]], float)
    assert FT.sister_scores(tie, np.array([[0, 1, 2]]))[0] == 0.5


def sister_profile(trios, sister_shift, P=12, L=3, E=8, tokens=400, seed=0):
    """Binomial counts around a family base, plus a component shared by each trio, plus (sister_shift) one
    shared by its two sisters only."""
    rng = np.random.default_rng(seed)
    keys, counts, toks = [], [], []
    for a, b, c in trios:
        trio = rng.uniform(-1, 1, (L, E))
        sis = rng.uniform(-1, 1, (L, E))
        for k in (a, b, c):
            q = 0.25 + 0.15 * trio + (sister_shift * sis if k != c else 0) + 0.03 * rng.normal(size=(L, E))
            q = np.clip(q, 0.01, 0.99)
            t = np.full(P, tokens)
            counts.append(rng.binomial(t[:, None, None].repeat(L, 1).repeat(E, 2), q[None]))
            toks.append(t)
            keys.append(k)
    return profile_from(counts, toks, keys)


def test_sister_test_finds_built_in_sisters_and_not_absent_ones():
    trios = corpus.sister_trios(12)
    found = FT.sister_test(sister_profile(trios, 0.12), trios, permutations=999, n_resamples=200)
    assert found["score"] > 0.9 and found["p_value"] < 0.01 and found["low"] > 0.5
    assert found["ratio"] < 1 and found["ratio_high"] < 1
    assert found["interval"] == "families and passages resampled together" and found["trios"] == 12
    assert abs(found["null_mean"] - 0.5) < 0.02
    none = FT.sister_test(sister_profile(trios, 0.0), trios, permutations=999, n_resamples=200)
    assert none["p_value"] > 0.05 and none["low"] < 0.5 < none["high"]
    with pytest.raises(ValueError, match="two trios"):
        FT.sister_test(sister_profile(trios[:2], 0.1), [trios[0], (trios[0][0], trios[1][1], trios[1][2])])


def test_sister_results_and_verdicts():
    trios = corpus.sister_trios(10)
    views = {"main": sister_profile(trios, 0.12), "other": sister_profile(trios, 0.12, seed=1)}
    out = F.sister_results(views, trios, permutations=499, n_resamples=100)
    assert len(out["trios"]) == 10 and list(out["views"]["view"]) == ["main", "other"]
    assert (out["trios"]["sister_distance"] < out["trios"]["cousin_distance"]).mean() > 0.8
    f = out["facts"]
    assert f["holds"] and f["robust"] and f["closer"] >= 8
    assert F.sister_verdicts(f)[0]["verdict"] == "reproduced"
    assert "Sisters are closer" in F.sister_text(f)
    flat = {"main": sister_profile(trios, 0.0), "other": sister_profile(trios, 0.0, seed=1)}
    g = F.sister_results(flat, trios, permutations=499, n_resamples=100)["facts"]
    assert not g["holds"] and F.sister_verdicts(g)[0]["verdict"] == "not reproduced"
    assert "cannot tell sisters from cousins" in F.sister_text({**g, "ratio_high": 1.2})
    assert "pointing the tree's way" in F.sister_text({**g, "ratio_high": 0.95})
