"""Comparing two profiles of the same languages (babel_lib.stats.compare) on constructed profiles with
known answers and on real profiles of two tiny models; the overlap of two partitions
(babel_lib.experts.quality.partition_overlap, chance_overlap)."""

import dataclasses
from dataclasses import asdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from babel_lib.core.cache import Store
from babel_lib.core.definitions import Definitions
from babel_lib.experts import quality
from babel_lib.experts.moefy import build_partition
from babel_lib.experts.profile import Profile, profile_passages
from babel_lib.stats import analysis, compare
from babel_lib.testing import tiny_model

E, TOKENS = 10, 10  # top 20% of 10 experts: k = 2, base rate 0.2, high-frequency at f >= 0.4


def constructed(layer0: dict, languages=("aaa", "bbb")) -> Profile:
    """A profile of 2 layers x 10 experts over one passage of 10 tokens a language: in layer 0 the
    experts listed in ``layer0[lang]`` fire on every token (the others never); in layer 1 every
    expert fires on 2 of the 10 tokens (frequency 0.2 each, none high-frequency)."""
    counts = np.zeros((len(languages), 1, 2, E), dtype=np.int32)
    for i, lang in enumerate(languages):
        assert len(layer0[lang]) == 2  # k experts on every token
        counts[i, 0, 0, list(layer0[lang])] = TOKENS
        counts[i, 0, 1, :] = 2
    n = len(languages)
    return Profile(languages=list(languages), passage_ids=["p0"], passage_counts=counts,
                   passage_tokens=np.full((n, 1), TOKENS, dtype=np.int64),
                   passage_characters=np.full((n, 1), 40, dtype=np.int64), model_name="m", model_fingerprint="f",
                   partition_key="p", expert_size=4, view="test", definitions=asdict(Definitions()),
                   corpus={"corpus": "test", "split": "calibration"}, dtype="float32")


BASE = constructed({"aaa": (0, 1), "bbb": (0, 2)})
TUNED = constructed({"aaa": (0, 3), "bbb": (0, 2)})


def test_identical_profiles_are_identical():
    same = compare.compare_profiles(BASE, BASE)
    assert len(same) == 2 * 2 and list(same.columns[:2]) == ["language", "layer"]
    assert np.allclose(same["cosine"], 1) and np.allclose(same["js"], 0, atol=1e-12)
    assert np.allclose(same["js_distance"], 0, atol=1e-6)
    assert (same["mean_abs_diff"] == 0).all() and (same["max_abs_diff"] == 0).all()


def test_similarity_known_values():
    sim = compare.compare_profiles(BASE, TUNED).set_index(["language", "layer"])
    # aaa layer 0: {0, 1} vs {0, 3}: p = (.5, .5, 0, 0), q = (.5, 0, 0, .5): JSD = 0.5 bit, cosine 1/2
    row = sim.loc[("aaa", 0)]
    assert row["js"] == pytest.approx(0.5) and row["js_distance"] == pytest.approx(np.sqrt(0.5))
    assert row["cosine"] == pytest.approx(0.5)
    assert row["mean_abs_diff"] == pytest.approx(2 / E) and row["max_abs_diff"] == pytest.approx(1.0)
    # Pearson of (1, 1, 0, 0, ...) and (1, 0, 0, 1, 0, ...): (1 - 0.4) / (2 - 0.4) = 0.375
    a, b = BASE.frequencies()[0, 0], TUNED.frequencies()[0, 0]
    assert row["pearson"] == pytest.approx(0.375) == pytest.approx(np.corrcoef(a, b)[0, 1])
    # bbb unchanged; layer 1 constant and unchanged: Pearson undefined
    assert sim.loc[("bbb", 0), "js"] == pytest.approx(0, abs=1e-12)
    assert np.isnan(sim.loc[("aaa", 1), "pearson"]) and sim.loc[("aaa", 1), "cosine"] == pytest.approx(1)
    # disjoint supports: 1 bit, cosine 0
    far = compare.compare_profiles(constructed({"aaa": (0, 1), "bbb": (0, 1)}),
                                   constructed({"aaa": (2, 3), "bbb": (0, 1)})).set_index(["language", "layer"])
    assert far.loc[("aaa", 0), "js"] == pytest.approx(1.0) and far.loc[("aaa", 0), "cosine"] == pytest.approx(0)


def test_similarity_of_arrays_matches_analysis_distances():
    rng = np.random.default_rng(0)
    fa, fb = rng.random((3, 4, 8)), rng.random((3, 4, 8))
    sim = compare.frequency_similarity(fa, fb, ["x", "y", "z"])
    for _, r in sim.iterrows():
        i, l = ["x", "y", "z"].index(r["language"]), r["layer"]
        pair = np.stack([fa[i, l], fb[i, l]])
        assert r["js_distance"] == pytest.approx(analysis.js_distances(pair)[0, 1])
        assert r["cosine"] == pytest.approx(1 - analysis.cosine_distances(pair)[0, 1])
    with pytest.raises(ValueError):
        compare.frequency_similarity(fa, fb[:2], ["x", "y", "z"])
    with pytest.raises(ValueError):
        compare.frequency_similarity(fa, fb, ["x", "y"])


def test_difference_frame():
    diff = compare.difference_frame(BASE, TUNED)
    assert len(diff) == 2 * 2 * E
    aaa0 = diff[(diff.language == "aaa") & (diff.layer == 0)].set_index("expert")["difference"]
    assert aaa0[1] == -1 and aaa0[3] == 1 and aaa0.drop([1, 3]).abs().sum() == 0
    assert (diff[diff.language == "bbb"]["difference"] == 0).all()


def test_expert_retention_known_sets():
    ret = compare.expert_retention(BASE, TUNED).set_index(["kind", "language"])
    # high-frequency (f >= 2 x 0.2): aaa {0,1} -> {0,3}; bbb {0,2} -> {0,2}
    assert ret.loc[("high-frequency", "aaa"), ["n_base", "n_tuned", "kept"]].tolist() == [2, 2, 1]
    assert ret.loc[("high-frequency", "aaa"), "jaccard"] == pytest.approx(1 / 3)
    assert ret.loc[("high-frequency", "bbb"), "kept_fraction"] == 1.0
    # shared by both languages: expert 0 in both profiles
    assert ret.loc[("shared", "all"), ["n_base", "n_tuned", "kept", "jaccard"]].tolist() == [1, 1, 1, 1.0]
    # specific: aaa {1} -> {3} lost; bbb {2} -> {2} kept
    assert ret.loc[("specific", "aaa"), ["n_base", "kept", "kept_fraction", "jaccard"]].tolist() == [1, 0, 0.0, 0.0]
    assert ret.loc[("specific", "bbb"), "kept"] == 1
    # arrays with the base rate give the same table; a profile with itself keeps everything
    arrays = compare.expert_retention(BASE.frequencies(), TUNED.frequencies(), BASE.languages,
                                      rate=analysis.base_rate(BASE))
    assert arrays.equals(ret.reset_index()[arrays.columns])
    self_ret = compare.expert_retention(BASE, BASE)
    assert (self_ret["kept_fraction"] == 1).all() and (self_ret["jaccard"] == 1).all()
    # a stricter ratio finds nothing; both sets empty count as identical (analysis.jaccard_matrix)
    none = compare.expert_retention(BASE, TUNED, hf_ratio=10.0)
    assert (none["n_base"] == 0).all() and none["kept_fraction"].isna().all() and (none["jaccard"] == 1).all()
    with pytest.raises(ValueError, match="languages"):
        compare.expert_retention(BASE.frequencies(), TUNED.frequencies())


def test_profiles_must_match():
    other = constructed({"aaa": (0, 1), "ccc": (0, 2)}, languages=("aaa", "ccc"))
    with pytest.raises(ValueError, match="same languages"):
        compare.compare_profiles(BASE, other)
    with pytest.raises(ValueError, match="same languages"):
        compare.difference_frame(BASE, other)
    relaxed = dataclasses.replace(TUNED, definitions=asdict(Definitions(top_k_fraction=0.3)))
    with pytest.raises(ValueError, match="definitions"):
        compare.expert_retention(BASE, relaxed)


def test_real_profiles_of_two_models(tmp_path):
    """A base model's partition on another model of the same shape (as for a tuned model)."""
    torch.set_num_threads(1)
    lm, other = tiny_model("llama"), tiny_model("llama", seed=1)
    store = Store(tmp_path / "s")
    part = build_partition(lm, expert_size=16, method="random", seed=0, store=store)
    passages = SimpleNamespace(corpus="test", split="calibration", ids=["p0", "p1"], languages=["aaa", "bbb"],
                               text={"aaa": ["The quick brown fox jumps over the lazy dog.", "A second one."],
                                     "bbb": ["Ein zweiter Text auf Deutsch.", "Noch ein Satz hier."]})
    kw = dict(max_length=32, batch_size=2, store=store, progress=False)
    pa = profile_passages(lm, part, passages, **kw)
    from babel_lib.core.errors import PartitionMismatchError

    with pytest.raises(PartitionMismatchError):
        profile_passages(other, part, passages, **kw)
    pb = profile_passages(other, part, passages, allow_other_model=True, **kw)
    assert pb.model_fingerprint == other.fingerprint and pb.partition_key == part.key
    same = compare.compare_profiles(pa, pa)
    assert np.allclose(same["cosine"], 1) and np.allclose(same["js"], 0, atol=1e-12)
    diff = compare.compare_profiles(pa, pb)
    assert len(diff) == 2 * part.n_layers
    assert (diff["js"] > 0).any() and (diff["js"] <= 1).all() and (diff["cosine"] <= 1 + 1e-12).all()
    ret = compare.expert_retention(pa, pb)
    assert set(ret["kind"]) == {"high-frequency", "shared", "specific"}
    assert (ret["kept"] <= ret["n_base"]).all()


# ---------------------------------------------------------------------------- partitions
def test_partition_overlap_and_chance(tmp_path):
    lm = tiny_model("llama")
    store = Store(tmp_path / "s")
    part = build_partition(lm, expert_size=16, method="random", seed=0, store=store)
    # identical = 1, relabelled = 1, random pairs near the chance level
    assert np.allclose(quality.partition_overlap(part, part), 1)
    relabel = SimpleNamespace(labels=(part.labels + 1) % part.n_experts)
    assert np.allclose(quality.partition_overlap(part, relabel), 1)
    rand = build_partition(lm, expert_size=16, method="random", seed=7, store=store)
    chance = quality.chance_overlap(part.n_neurons, part.n_experts)
    assert abs(quality.partition_overlap(part, rand).mean() - chance) < 0.1 and chance < 0.5
    assert chance == quality.chance_overlap(part.n_neurons, part.n_experts)  # seeded
    # a known case: 4 neurons, 2 experts {0,1},{2,3} vs {0,2},{1,3}: every best Jaccard is 1/3
    a = SimpleNamespace(labels=np.array([[0, 0, 1, 1]]))
    b = SimpleNamespace(labels=np.array([[0, 1, 0, 1]]))
    assert quality.partition_overlap(a, b) == pytest.approx([1 / 3])
    with pytest.raises(ValueError, match="shape"):
        quality.partition_overlap(a, SimpleNamespace(labels=np.array([[0, 1]])))
