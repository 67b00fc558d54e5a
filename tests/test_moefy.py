"""Partitions: every method, persistence, refusal of a model they do not fit; the MoE view."""

import numpy as np
import pandas as pd
import pytest
import torch

from babel_lib.core.cache import Store
from babel_lib.core.errors import PartitionMismatchError
from babel_lib.experts.moefy import Partition, build_partition, moe_view
from babel_lib.experts.profile import neuron_coactivation, passage_windows
from babel_lib.experts.quality import moe_agreement, partition_quality
from babel_lib.testing import TINY_TYPES, tiny_model


@pytest.mark.parametrize("method", ["kmeans", "random", "coactivation"])
def test_each_method_gives_equal_experts_deterministically(method, tmp_path):
    lm = tiny_model("llama")
    co = None
    if method == "coactivation":
        seqs = passage_windows(lm.tokenizer, ["Some text to measure co-activation on, twice over."] * 4, 32)
        co, tokens = neuron_coactivation(lm, seqs.input_ids, top_k_fraction=0.2)
        assert co.shape == (2, 128, 128) and tokens == seqs.tokens.sum()
    a = build_partition(lm, expert_size=16, method=method, seed=1, coactivation=co, store=Store(tmp_path / "a"))
    b = build_partition(lm, expert_size=16, method=method, seed=1, coactivation=co, store=Store(tmp_path / "b"))
    assert a.labels.shape == (2, 128) and a.n_experts == 8
    for layer in range(2):
        assert (np.bincount(a.labels[layer], minlength=8) == 16).all()
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.key == b.key


@pytest.mark.parametrize("features", ["gate", "up", "both"])
def test_kmeans_features(features, tmp_path):
    lm = tiny_model("gemma3_text")
    p = build_partition(lm, expert_size=32, features=features, store=Store(tmp_path))
    assert p.features == features and p.n_experts == 4


def test_save_load_roundtrip_and_mismatch(tmp_path):
    lm = tiny_model("llama")
    p = build_partition(lm, expert_size=16, method="random", store=Store(tmp_path))
    q = Partition.load(p.save(tmp_path / "p.npz"))
    np.testing.assert_array_equal(p.labels, q.labels)
    assert q.key == p.key and q.model_fingerprint == lm.fingerprint
    q.check_fits(lm)
    other = tiny_model("bloom")  # 256 neurons
    with pytest.raises(PartitionMismatchError, match="does not fit model"):
        q.check_fits(other)
    same_shape = tiny_model("llama", seed=5)  # same shape, other weights
    with pytest.raises(PartitionMismatchError, match="different weights"):
        q.check_fits(same_shape)


@pytest.mark.parametrize("size", [0, 3, 100, 7.5])
def test_expert_size_must_divide_width(size, tmp_path):
    with pytest.raises(PartitionMismatchError, match="does not divide the FFN width 128"):
        build_partition(tiny_model("llama"), expert_size=size, store=Store(tmp_path))


def test_bad_method_and_missing_coactivation(tmp_path):
    lm = tiny_model("llama")
    with pytest.raises(ValueError, match="method must be"):
        build_partition(lm, method="metis", store=Store(tmp_path))
    with pytest.raises(ValueError, match="needs coactivation"):
        build_partition(lm, method="coactivation", store=Store(tmp_path))


@pytest.mark.parametrize("model_type", TINY_TYPES)
def test_moe_view_with_all_experts_equals_dense(model_type, tmp_path):
    lm = tiny_model(model_type)
    part = build_partition(lm, expert_size=16, method="kmeans", store=Store(tmp_path))
    ids = torch.randint(4, 260, (2, 10))
    with torch.no_grad():
        dense = lm.model(input_ids=ids).logits
        with moe_view(lm.model, part, top_k_fraction=1.0):
            all_topk = lm.model(input_ids=ids).logits
        with moe_view(lm.model, part, experts={l: np.arange(part.n_experts) for l in range(part.n_layers)}):
            all_fixed = lm.model(input_ids=ids).logits
        with moe_view(lm.model, part, top_k_fraction=0.25):
            sparse = lm.model(input_ids=ids).logits
        after = lm.model(input_ids=ids).logits
    torch.testing.assert_close(all_topk, dense, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(all_fixed, dense, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after, dense, rtol=0, atol=0)  # weights restored
    assert (sparse - dense).abs().max() > 1e-3  # dropping experts changes outputs


def test_moe_view_rejects_bad_input(tmp_path):
    lm = tiny_model("llama")
    part = build_partition(lm, expert_size=16, method="random", store=Store(tmp_path))
    with pytest.raises(ValueError, match="exactly one"):
        with moe_view(lm.model, part):
            pass
    with pytest.raises(ValueError, match="expert ids must be in"):
        with moe_view(lm.model, part, experts={0: [99]}):
            pass


def test_quality_kmeans_beats_random(tmp_path):
    lm = tiny_model("llama")
    store = Store(tmp_path)
    seqs = passage_windows(lm.tokenizer, ["A fairly long paragraph of English text used for quality checks."] * 6,
                           32).input_ids
    co, _ = neuron_coactivation(lm, seqs)
    parts = {"coactivation": build_partition(lm, expert_size=16, method="coactivation", coactivation=co, store=store),
             "random": build_partition(lm, expert_size=16, method="random", store=store)}
    q = partition_quality(lm, parts, seqs, coactivation=co)
    assert set(q.columns) >= {"partition", "layer", "mass_captured", "balance", "within_coactivation"}
    assert ((q.mass_captured > 0) & (q.mass_captured <= 1)).all() and ((q.balance > 0) & (q.balance <= 1)).all()
    by = q.groupby("partition").mean(numeric_only=True)
    assert by.loc["coactivation", "within_coactivation"] > by.loc["random", "within_coactivation"]
    eq = moe_agreement(lm, parts["random"], seqs, top_k_fraction=1.0)
    assert eq["max_abs_logit_diff"] < 1e-3 and eq["top1_agreement"] == 1.0


def test_agreements_share_the_dense_pass_and_cache(tmp_path):
    from babel_lib.experts.quality import moe_agreements

    lm = tiny_model("llama")
    store = Store(tmp_path)
    seqs = passage_windows(lm.tokenizer, ["Some text for the agreement of the MoE view with the dense model."] * 4,
                           24).input_ids
    parts = {m: build_partition(lm, expert_size=16, method=m, store=store) for m in ("kmeans", "random")}
    conditions = [("kmeans all", parts["kmeans"], 1.0), ("kmeans", parts["kmeans"], 0.25), ("random", parts["random"], 0.25)]
    table = moe_agreements(lm, conditions, seqs, batch_size=3, store=store)
    for (name, part, f), row in zip(conditions, table.itertuples()):
        one = moe_agreement(lm, part, seqs, f, batch_size=3)
        assert row.partition == name and row.tokens == one["tokens"]
        assert row.max_abs_logit_diff == pytest.approx(one["max_abs_logit_diff"])
        assert row.top1_agreement == pytest.approx(one["top1_agreement"])
    assert table.top1_agreement.iloc[0] == 1.0 and table.top1_agreement.iloc[2] < 1.0
    assert len(list(tmp_path.glob("agreement/*/*.npz"))) == 1
    again = moe_agreements(lm, conditions, seqs, batch_size=3, store=store)  # from the cache
    pd.testing.assert_frame_equal(again, table, check_dtype=False)


def test_pinned_partition_is_used_on_every_machine(tmp_path, monkeypatch):
    """A partition kept with the project wins over clustering; pinned=False clusters afresh."""
    import babel_lib.experts.moefy as moefy

    monkeypatch.setattr(moefy, "PINNED_DIR", tmp_path / "pinned")
    lm = tiny_model("llama")
    made = build_partition(lm, expert_size=16, seed=3, store=Store(tmp_path / "cache"))
    # a deliberately different (but valid) labelling stands in for "another machine's optimum"
    other = Partition(np.roll(made.labels, 1, axis=1), 16, "kmeans", "gate", 3, lm.name, lm.fingerprint)
    path = moefy.pin_partition(other)
    assert path == moefy.pinned_path(lm.fingerprint, 16, "kmeans", "gate", 3, tmp_path / "pinned")
    with pytest.raises(FileExistsError):
        moefy.pin_partition(other)
    got = build_partition(lm, expert_size=16, seed=3, store=Store(tmp_path / "cache"))
    np.testing.assert_array_equal(got.labels, other.labels)
    assert got.key == other.key and got.info["pinned"] == path.name
    fresh = build_partition(lm, expert_size=16, seed=3, store=Store(tmp_path / "cache"), pinned=False)
    np.testing.assert_array_equal(fresh.labels, made.labels)
    # other settings or another model never pick the pinned file up
    assert not np.array_equal(build_partition(lm, expert_size=16, seed=4, store=Store(tmp_path / "c2")).labels,
                              other.labels)
    assert build_partition(tiny_model("llama", seed=1), expert_size=16, seed=3,
                           store=Store(tmp_path / "c3")).info.get("pinned") is None


def test_pinned_file_that_does_not_match_is_ignored_with_a_warning(tmp_path, monkeypatch):
    import babel_lib.experts.moefy as moefy

    monkeypatch.setattr(moefy, "PINNED_DIR", tmp_path)
    lm = tiny_model("llama")
    path = moefy.pinned_path(lm.fingerprint, 16, "kmeans", "gate", 0)
    path.write_bytes(b"garbage")
    with pytest.warns(RuntimeWarning, match="unreadable"):
        part = build_partition(lm, expert_size=16, store=Store(tmp_path / "cache"))
    assert part.info.get("pinned") is None


def test_coactivation_partitions_cannot_be_pinned():
    lm = tiny_model("llama")
    part = Partition(np.zeros((2, 128), dtype=np.int64), 128, "coactivation", "", 0, lm.name, lm.fingerprint)
    import babel_lib.experts.moefy as moefy

    with pytest.raises(ValueError, match="cannot be pinned"):
        moefy.pin_partition(part)


def test_mass_comparison_is_paired_and_finds_the_better_partition():
    from babel_lib.chapters.moefication import mass_comparison

    rng = np.random.default_rng(0)
    U, L = 40, 3
    tokens = rng.integers(50, 100, U).astype(float)
    random_mass = tokens[:, None] * rng.uniform(0.30, 0.36, (U, L))
    better = random_mass + tokens[:, None] * 0.05  # every unit better by 0.05 a token
    table = mass_comparison({"k-means": (better, tokens), "random": (random_mass, tokens)}, n_resamples=300)
    row = table.set_index("partition").loc["k-means"]
    assert row["low"] <= row["mass_captured"] <= row["high"]
    assert row["difference"] == pytest.approx(0.05) and row["diff_low"] == pytest.approx(0.05)  # paired: no noise
    assert row["better_layers"] == L
    base = table.set_index("partition").loc["random"]
    assert base["difference"] == 0 and base["better_layers"] == 0
    from babel_lib.chapters.moefication import mass_texts

    texts = mass_texts(table)
    assert texts["k-means"]["difference"].endswith("more than random beyond noise")
    assert texts["random"]["difference"].endswith("not distinguishable from random")
    assert texts["k-means"]["mass"].startswith(f"{row['mass_captured']:.3g}"[:4])
