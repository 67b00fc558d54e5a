"""Chapter-2 statistics on constructed frequencies with known answers, and the chapter's one call."""

from types import SimpleNamespace

import numpy as np
import pytest

from babel_lib import patterns
from babel_lib.profile import Profile


def profile_from(counts, tokens, languages):
    counts = np.asarray(counts, dtype=np.int32)
    n, P = counts.shape[:2]
    return Profile(list(languages), [f"p{i}" for i in range(P)], counts, np.asarray(tokens, dtype=np.int64),
                   np.full((n, P), 100, dtype=np.int64), "m", "fp", "key", 4, "test", {"top_k_fraction": 0.25,
                   "activation": "topk", "score": "abs", "threshold": None}, {"split": "calibration"}, "float32")


def test_rank_within_layer():
    values = np.array([[0.1, 0.5, 0.3, 0.5]])
    assert patterns.rank_within_layer(values).tolist() == [[3, 0, 2, 1]]  # ties by expert id


def test_departure_and_concentration_known_values():
    freq = np.array([[[0.5, 0.5, 0.0, 0.0]], [[0.0, 0.0, 0.5, 0.5]]])  # 2 languages, 1 layer, 4 experts
    np.testing.assert_allclose(patterns.departure(freq), [[0.25], [0.25]])
    same = np.repeat(freq[:1], 2, axis=0)
    np.testing.assert_allclose(patterns.departure(same), 0.0)
    np.testing.assert_allclose(patterns.concentration(freq, top_fraction=0.25), 0.5)  # top 1 of 4 carries half
    assert patterns.uniform_share(64, 0.1) == 6 / 64
    flat = np.full((1, 1, 64), 0.2)
    assert patterns.concentration(flat, 0.1)[0, 0] == pytest.approx(6 / 64)
    # leading (resample) axes are kept
    assert patterns.departure(np.stack([freq, freq])).shape == (2, 2, 1)


def test_by_third():
    values = np.arange(6.0)
    np.testing.assert_allclose(patterns.by_third(values), [0.5, 2.5, 4.5])


def test_departure_floor_tracks_sampling_noise():
    rng = np.random.default_rng(0)
    P, L, E = 40, 2, 8
    p = rng.dirichlet(np.ones(E), size=L) * 2  # expected activations per token
    def sample(tokens_per_passage):
        tokens = np.full((1, P), tokens_per_passage)
        counts = rng.binomial(tokens[..., None, None].repeat(L, 2).repeat(E, 3), np.clip(p, 0, 1)[None, None])
        return counts, tokens
    big = patterns.departure_floor(*sample(2000), n_splits=30)
    small = patterns.departure_floor(*sample(20), n_splits=30)
    assert big.shape == (1, L) and (small > 3 * big).all()
    assert np.isnan(patterns.departure_floor(np.zeros((1, 1, L, E)), np.ones((1, 1)))).all()


def test_heatmap_results_on_constructed_profiles():
    rng = np.random.default_rng(1)
    P, L, E = 30, 3, 8
    base = np.full((L, E), 0.25)
    base[:, 0] = 0.9  # one dominant expert a layer: a common map
    langs = ["eng", "fra", "spa"]
    shift = {"eng": 0.0, "fra": 0.0, "spa": 0.3}  # Spanish departs on purpose
    counts, tokens = [], []
    for lang in langs:
        q = base.copy()
        q[:, 1] = np.clip(q[:, 1] + shift[lang], 0, 1)
        t = np.full(P, 400)
        counts.append(rng.binomial(t[:, None, None].repeat(L, 1).repeat(E, 2), q[None]))
        tokens.append(t)
    prof = profile_from(counts, tokens, langs)
    other = profile_from(np.asarray(counts)[:, ::-1], tokens, langs)  # same data, passages reordered
    out = patterns.heatmap_results({"main": prof, "other": other}, n_resamples=200, n_splits=20)
    facts = out["facts"]
    assert facts["most_departing"] == "Spanish" and facts["top_separated"]
    assert facts["concentration_above_uniform"] and facts["robust_concentration"]
    row = out["by_language"].set_index("language").loc["spa"]
    assert row["low"] - 1e-12 <= row["departure"] <= row["high"] + 1e-12 and row["beyond_noise"]
    assert list(out["by_third"]["third"]) == ["early", "middle", "late"]
    assert out["robustness"]["spearman_with_main"].tolist() == [1.0, 1.0]
    verdict = patterns.heatmap_verdicts(facts)[0]
    assert verdict["verdict"] in ("reproduced", "partly reproduced")
