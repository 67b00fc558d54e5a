"""Chapter 6's size comparison (babel_lib.chapters.model_families): weighted statistics against their unweighted
definitions, the crossed bootstrap of many statistics against the library's one, constructed profiles
where the size pair shares the language structure and the other family does not, and the whole path on
tiny random qwen2 models (offline GGUF entries, studies one model at a time, bits per character)."""

from __future__ import annotations

import numpy as np
import pytest

from babel_lib import stats as S
from babel_lib.chapters import model_families as MF, model_families as MS
from babel_lib.experts.profile import Profile
from babel_lib.stats import analysis
from babel_lib.stats.distances import hellinger_distances, profile_distances, upper

KEYS = ["eng", "deu_1996", "fra", "spa", "rus", "ukr", "tur", "arb", "hin", "cmn_hans"]


def profile_from(counts, tokens, languages, model="m"):
    counts = np.asarray(counts, dtype=np.int32)
    tokens = np.asarray(tokens, dtype=np.int64)
    return Profile(list(languages), [f"p{i}" for i in range(counts.shape[1])], counts, tokens, tokens * 4, model,
                   "fp", "key", 4, "test", {"top_k_fraction": 0.25, "activation": "topk", "score": "abs",
                                            "threshold": None}, {"split": "calibration"}, "float32")


def structured(language_shift, L, E, P=8, tokens=300, seed=0, spread=1.0):
    """Binomial counts: each language's profile = a common base + spread x its own direction (from
    ``language_shift``, [n, L, E] in [-1, 1]) + noise."""
    rng = np.random.default_rng(seed)
    n = len(language_shift)
    q = np.clip(0.3 + spread * 0.25 * language_shift + 0.02 * rng.normal(size=(n, L, E)), 0.01, 0.99)
    t = np.full((n, P), tokens)
    counts = rng.binomial(np.broadcast_to(t[:, :, None, None], (n, P, L, E)), q[:, None])
    return profile_from(counts, t, KEYS[:n])


def directions(n, L, E, seed, coordinates=None):
    """Language directions [n, L, E]: each language's 2-d coordinates (random, or given) times two random
    expert patterns of this model: the languages' geometry is in the coordinates, the experts in the
    patterns."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, (n, 2)) if coordinates is None else coordinates
    U = rng.uniform(-1, 1, (2, L, E))
    return np.einsum("nk,kle->nle", c, U) / 2


def test_weighted_depth_statistics_equal_the_chapters_with_equal_weights():
    p = structured(directions(6, 3, 8, 1), 3, 8)
    freq = p.frequencies()
    rate = float(np.mean(analysis.base_rate(p)))
    got = MS.weighted_depth_statistics(freq[None], np.ones((1, 6)), rate)[0]
    assert np.allclose(got, MF.depth_statistics(freq, rate))


def test_weighted_depth_statistics_count_copies_but_never_pair_a_language_with_itself():
    p = structured(directions(4, 2, 8, 2), 2, 8)
    freq = p.frequencies()
    lw = np.array([2.0, 1.0, 0.0, 1.0])
    got = MS.weighted_depth_statistics(freq[None], lw[None], 0.25)[0]
    idx = np.repeat(np.arange(4), lw.astype(int))  # languages as drawn: 0, 0, 1, 3
    drawn = MF.depth_statistics(freq[idx], 0.25)
    assert np.allclose(got[:3], drawn[:3])  # departure, high-frequency share and entropy: copies count
    LD = np.stack([hellinger_distances(freq[:, l]) for l in range(2)])  # [L, n, n]
    pairs = [(i, j) for a, i in enumerate(idx) for b, j in enumerate(idx) if a < b and i != j]
    want = np.mean([[LD[l, i, j] for i, j in pairs] for l in range(2)], axis=1)
    assert np.allclose(got[3], want)  # the pair of language 0 with its copy is left out
    assert not np.allclose(got[3], drawn[3])


def test_weighted_pair_correlation_is_the_mantel_r_with_equal_weights():
    rng = np.random.default_rng(0)
    a, b = (hellinger_distances(rng.uniform(0, 1, (7, 5))) for _ in range(2))
    r = MS.weighted_pair_correlation(a[None], b[None], np.ones((1, 7)))[0]
    assert r == pytest.approx(np.corrcoef(upper(a), upper(b))[0, 1])
    # integer weights: the correlation over the drawn pairs (copies of a pair counted, self-pairs skipped)
    lw = np.array([[3.0, 1, 1, 0, 2, 1, 1]])
    idx = np.repeat(np.arange(7), lw[0].astype(int))
    pairs = [(i, j) for x, i in enumerate(idx) for y, j in enumerate(idx) if x < y and i != j]
    want = np.corrcoef([a[i, j] for i, j in pairs], [b[i, j] for i, j in pairs])[0, 1]
    assert MS.weighted_pair_correlation(a[None], b[None], lw)[0] == pytest.approx(want)


@pytest.mark.parametrize("n", [12, 5])  # crossed bootstrap; jackknife below 8 languages
def test_crossed_many_gives_the_library_interval_for_each_statistic(n):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(n, 9))

    def one(k):
        return lambda lw, pw: (lw[:, :, None] * pw[:, None, :] * X[None] ** (k + 1)).sum((1, 2)) / (
            lw.sum(1) * pw.sum(1))

    many = lambda LW, PW: np.stack([one(k)(LW, PW) for k in range(2)], axis=1)
    est, low, high, method, samples = MS.crossed_many(many, n, 9, 200, seed=4)
    for k in range(2):
        ref = S.crossed_bootstrap(one(k), n, 9, 200, seed=4, batched=True)
        assert (est[k], low[k], high[k]) == pytest.approx((ref.estimate, ref.low, ref.high))
        assert method == ref.method and samples.shape == (200, 2)


def _four_models(size_shares_structure: bool):
    """A1 and A2 (one family, 3 and 4 layers), B and C (two other families). A2 carries A1's language
    directions (resampled onto its depth) when ``size_shares_structure``, else directions of its own."""
    n, E = 8, 16
    coordinates = np.random.default_rng(20).uniform(-1, 1, (n, 2))
    base = directions(n, 3, E, 10, coordinates)
    a2_dirs = directions(n, 4, E, 11, coordinates if size_shares_structure else None)
    profiles = {"A1": structured(base, 3, E, seed=1), "A2": structured(a2_dirs, 4, E, seed=2),
                "B": structured(directions(n, 5, E, 12), 5, E, seed=3),
                "C": structured(directions(n, 3, E, 13), 3, E, seed=4)}
    return profiles, {"A1": "A", "A2": "A", "B": "B", "C": "C"}


def test_size_results_find_a_size_pair_that_shares_its_language_structure():
    profiles, fams = _four_models(True)
    out = MS.size_results(profiles, fams, n_resamples=200)
    pairs = out["pairs"].set_index(["a", "b"])
    assert pairs.loc[("A1", "A2"), "relation"] == "same family, other size"
    assert pairs.loc[("A1", "A2"), "mantel_r"] > 0.8 > pairs.loc[("A1", "B"), "mantel_r"]
    # the Mantel r of the whole profiles, as chapter 6 computes it
    D = {m: profile_distances(p.frequencies()) for m, p in profiles.items()}
    assert pairs.loc[("A1", "B"), "mantel_r"] == pytest.approx(np.corrcoef(upper(D["A1"]), upper(D["B"]))[0, 1])
    con = out["contrast"].set_index("measure")
    row = con.loc["language distances (Mantel r)"]
    assert row["low"] > 0 and row["reading"] == "size changes it less than family"
    within = pairs.loc[("A1", "A2"), "mantel_r"]
    between = pairs[pairs["relation"] == "different families"]["mantel_r"].mean()
    assert row["difference"] == pytest.approx(within - between)
    f = out["facts"]
    assert f["size_pairs"] == [("A1", "A2")] and f["n_families"] == 3 and f["interval_method"] == "crossed"
    assert f["size_mantel_holds"]
    # shared and specific counts equal chapter 4's definitions on the full data
    s = out["summary"].set_index("model")
    for m, p in profiles.items():
        hf = analysis.high_frequency(p.frequencies(), analysis.base_rate(p))
        assert s.loc[m, "shared_count"] == int(analysis.shared_experts(hf).sum())
        assert s.loc[m, "specific_count"] == int((analysis.specific_experts(hf) >= 0).sum())
        assert s.loc[m, "hf_share"] == pytest.approx(hf.mean())
        assert s.loc[m, "hf_low"] <= s.loc[m, "hf_share"] <= s.loc[m, "hf_high"]
    assert len(out["by_layer"]) == 4 * (3 + 4 + 5 + 3)
    row = MS.size_verdict(f, memorised=["English"])
    assert row["verdict"] in ("reproduced", "partly reproduced") and "English" in row["evidence"]
    assert "Variants" in row["result"] and "not testable" in row["result"]


def test_size_results_do_not_invent_agreement_when_the_sizes_differ():
    profiles, fams = _four_models(False)
    out = MS.size_results(profiles, fams, n_resamples=200)
    row = out["contrast"].set_index("measure").loc["language distances (Mantel r)"]
    assert row["reading"] != "size changes it less than family"
    assert not out["facts"]["size_mantel_holds"]
    assert MS.size_verdict(out["facts"])["verdict"] != "reproduced"


def test_size_verdict_is_partly_reproduced_when_the_check_corpus_breaks_a_passing_test():
    good = MS.size_results(*_four_models(True), n_resamples=200)["facts"]
    bad = MS.size_results(*_four_models(False), n_resamples=200)["facts"]
    alone = MS.size_verdict(good)
    assert MS._size_tests(good)[0] and not MS._size_tests(bad)[0]
    both = MS.size_verdict(good, ["English"], "corpus one", check=good, check_name="corpus two")
    assert both["verdict"] == alone["verdict"] and "on corpus two" in both["result"]
    assert "flags English on corpus two" in both["evidence"] and "robustness view" in both["evidence"]
    assert alone["verdict"] == "partly reproduced"  # the constructed depth curves differ in shape
    shaped = dict(good, size_same_shape=list(MF.DEPTH_STATISTICS))  # both tests pass on the main corpus
    assert MS.size_verdict(shaped)["verdict"] == "reproduced"
    assert MS.size_verdict(shaped, check=shaped)["verdict"] == "reproduced"
    assert MS.size_verdict(shaped, check=bad)["verdict"] == "partly reproduced"  # not robust on the check corpus
    assert MS.size_verdict(bad)["verdict"] == "not reproduced"


def test_size_tables_and_bits_table_keep_every_model_and_corpus():
    import pandas as pd

    results = {c: MS.size_results(*_four_models(True), n_resamples=50) for c in ("udhr", "bible")}
    t = MS.size_tables(results)
    assert len(t["summary"]) == 8 and list(t["summary"]["corpus"].unique()) == ["udhr", "bible"]
    assert t["summary"]["high_frequency"].str.match(r"^0\.\d{3} \[0\.\d{3}, 0\.\d{3}\]$").all()
    assert len(t["pairs"]) == 2 * 6 and set(MF.DEPTH_STATISTICS) <= set(t["pairs"].columns)
    assert len(t["contrast"]) == 2 * len(results["udhr"]["contrast"])
    bpc = pd.DataFrame([{"model": m, "corpus": c, "language": l, "name": l.upper(), "bits_per_char": b}
                        for m in ("s", "l") for c in ("udhr", "bible") for l, b in (("eng", 1.0), ("fra", 1.2))])
    bpc.loc[(bpc["model"] == "l") & (bpc["corpus"] == "bible") & (bpc["language"] == "eng"), "bits_per_char"] = 0.2
    wide = MS.bits_table(bpc, MS.memorisation_table(bpc))
    assert list(wide.columns) == ["language", "name", "udhr: s", "bible: s", "udhr: l", "bible: l", "memorised_by"]
    assert wide.set_index("language").loc["eng", "memorised_by"] == "l"
    assert wide.set_index("language").loc["fra", "memorised_by"] == ""
    assert wide.set_index("language").loc["eng", "bible: l"] == pytest.approx(0.2)


def test_size_results_need_a_size_pair_and_another_family():
    profiles, _ = _four_models(True)
    with pytest.raises(ValueError, match="size pair"):
        MS.size_results(profiles, {"A1": "A", "A2": "B", "B": "C", "C": "D"}, n_resamples=0)
    with pytest.raises(ValueError, match="at least one model of another family"):
        MS.size_results({"A1": profiles["A1"], "A2": profiles["A2"]}, {"A1": "A", "A2": "A"}, n_resamples=0)


def test_memorisation_table_flags_a_text_far_easier_than_the_models_others():
    import pandas as pd

    rows = []
    for m, eng_bible in (("small", 0.9), ("large", 0.25)):
        for lang, udhr, bible in (("eng", 1.0, eng_bible), ("fra", 1.1, 1.0), ("rus", 1.2, 1.1), ("hin", 1.5, 1.4)):
            rows += [{"model": m, "corpus": "udhr", "language": lang, "name": lang, "bits_per_char": udhr},
                     {"model": m, "corpus": "bible", "language": lang, "name": lang, "bits_per_char": bible}]
    table = MS.memorisation_table(pd.DataFrame(rows))
    assert len(table) == 8 and set(table["corpus"]) == {"bible"}
    assert MS.memorised_languages(table) == {"large": ["eng"]}
    r = table.set_index(["model", "language"]).loc[("large", "eng")]
    assert r["ratio"] == pytest.approx(0.25) and r["relative"] < MS.MEMORISED_SHARE


# ------------------------------------------------------------------------- tiny random qwen2 models, end to end
@pytest.fixture
def tiny_series(tmp_path, monkeypatch):
    """Three offline entries: tiny qwen2 models in two sizes and a third (named another family)."""
    from babel_lib.core import models
    from babel_lib.testing import tiny_qwen2_gguf

    monkeypatch.setenv("BABEL_CACHE", str(tmp_path / "cache"))
    names = []
    for name, layers, hidden, ffn, seed in (("tiny-qwen-s", 2, 64, 128, 0), ("tiny-qwen-l", 3, 96, 192, 1),
                                            ("tiny-other", 2, 64, 128, 2)):
        folder = tmp_path / name
        folder.mkdir()
        tiny_qwen2_gguf(folder / "model.gguf", layers, hidden, ffn, seed)

        class Entry(models.OfflineModel):
            def gguf_path(self, workdir, _f=folder):
                return _f / "model.gguf"

        monkeypatch.setitem(models.OFFLINE_MODELS, name, Entry(name, "test", f"tiny qwen2 {name}"))
        names.append(name)
    return names


def test_size_path_on_tiny_qwen2_models(tiny_series):
    from babel_lib.experts import pipeline

    langs = ["eng", "fra", "deu_1996", "rus", "cmn_hans"]
    studies = MS.size_studies(tiny_series, languages=langs, max_passages=3, max_tokens_per_language=96,
                              expert_size=16, seeds=[0],
                              max_length=32, batch_size=4, dtype="float32", device="cpu", progress=False)
    assert not [k for k in pipeline._LOADED if k[0] in tiny_series]  # weights released after each profile
    assert studies["tiny-qwen-l"].lm.model is None and studies["tiny-qwen-l"].lm.fingerprint
    info = studies["tiny-qwen-l"].lm.info
    assert (info["family"], info["layers"], info["ffn_neurons"]) == ("Qwen2", 3, 192)
    out = MS.size_results(studies, {"tiny-other": "Other"}, n_resamples=50)
    s = out["summary"].set_index("model")
    assert list(s.index) == tiny_series and list(s["family"]) == ["Qwen2", "Qwen2", "Other"]
    assert list(s["experts"]) == [8, 12, 8] and s.loc["tiny-qwen-l", "parameters"] == info["parameters"]
    assert out["facts"]["interval_method"] == "jackknife+passages"  # 5 languages: below 8
    p = studies["tiny-qwen-s"].profile
    hf = analysis.high_frequency(p.frequencies(), analysis.base_rate(p))
    assert s.loc["tiny-qwen-s", "shared_count"] == int(analysis.shared_experts(hf).sum())
    # bits per character on the same characters for every model, one model at a time
    texts = MS.evaluation_texts(studies["tiny-qwen-s"].lm.tokenizer, ["eng", "fra"], corpora=("udhr",),
                                min_tokens=60, max_length=32)
    bpc = MS.bits_per_character(tiny_series[:2], texts, batch_size=4)
    assert not [k for k in pipeline._LOADED if k[0] in tiny_series]
    assert len(bpc) == 4 and (bpc["bits_per_char"] > 0).all()
    chars = bpc.groupby("language")["characters"].nunique()
    assert (chars == 1).all()  # both models read the same characters
    assert (bpc.groupby("language")["bits_per_char"].nunique() == 2).all()


def test_chapter_six_verdicts_take_the_tested_size_row():
    """model_families.model_verdicts keeps 'not testable here' for sizes without a size series and
    takes size_verdict's row when there is one."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_families import family_profile

    a = family_profile(keys=["eng", "fra", "rus", "tur"], P=4, L=2)
    b = family_profile(keys=["eng", "fra", "rus", "tur"], P=4, L=3, seed=1)
    facts = MF.model_results({"A": {"v": a}, "B": {"v": b}}, n_resamples=0, permutations=0, n_splits=2)["facts"]
    untested = MF.model_verdicts(facts)
    assert untested[1]["verdict"] == "not testable here"
    profiles, fams = _four_models(True)
    size_row = MS.size_verdict(MS.size_results(profiles, fams, n_resamples=50)["facts"])
    rows = MF.model_verdicts(facts, sizes=size_row)
    assert rows[0] == untested[0] and rows[1] is size_row and rows[1]["verdict"] != "not testable here"


def test_size_language_sets_are_the_papers_nine_and_the_bibles_languages():
    from babel_lib.data import corpus

    sets = MS.size_language_sets()
    assert set(corpus.resolve_languages("paper")) <= set(sets["udhr"]) and set(sets["bible"]) <= set(sets["udhr"])
    assert len(sets["bible"]) == 22 and len(sets["udhr"]) == 24 and "urd" in sets["udhr"]


def test_corpus_studies_leave_out_a_corpus_with_no_budget(tiny_series):
    langs = ["eng", "fra", "rus"]
    runs = MS.corpus_studies(tiny_series, {"udhr": langs, "bible": langs}, {"udhr": 2, "bible": 0},
                             expert_size=16, seeds=[0], max_length=32, batch_size=4,
                             dtype="float32", device="cpu", progress=False)
    assert list(runs) == ["udhr"] and list(runs["udhr"]) == tiny_series
    assert runs["udhr"]["tiny-qwen-s"].profile.n_passages == 2
