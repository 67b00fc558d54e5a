"""Chapter 13's robustness map (babel_lib.chapters.robustness_map): the grid changes one definition at a time,
every cell's counts come from the same forward passes and equal a study made with that cell's
definitions alone, and each cell is decided by the chapters' own verdict functions."""

from __future__ import annotations

import numpy as np
import pytest

from babel_lib.chapters import robustness_map as RM
from babel_lib.experts import pipeline
from babel_lib.testing import tiny_model

LANGS = ["eng", "fra", "deu_1996", "spa", "rus", "ukr", "tur", "cmn_hans"]


def test_grid_changes_one_setting_at_a_time():
    cells = RM.grid()
    assert cells[0].name == "default" and cells[-1].name == "neurons"
    assert [c.name for c in cells[1:-1]] == ["top-k fraction 0.1", "top-k fraction 0.3", "expert size 16",
                                             "expert size 64", "high-frequency ratio 1.5", "high-frequency ratio 3",
                                             "partition seed 1", "partition seed 2"]
    for c in cells[1:-1]:
        differs = [k for k, v in RM.DEFAULT.items() if getattr(c, k) != v]
        assert differs == [c.changed]
    # the high-frequency cells share the default's counts; everything else needs its own count
    assert len({c.count_key for c in cells}) == len(cells) - 2
    assert [c.name for c in RM.grid({"expert_size": (16, 32)}, neurons=False)] == ["default", "expert size 16"]
    with pytest.raises(ValueError, match="unknown setting"):
        RM.grid({"top_k": (0.1,)})


@pytest.fixture
def tiny_study(tmp_path, monkeypatch):
    monkeypatch.setenv("BABEL_CACHE", str(tmp_path / "cache"))
    lm = tiny_model("gemma3_text")
    monkeypatch.setitem(pipeline._LOADED, ("tiny-map", "float32", "cpu", "None"), lm)
    cells = RM.grid({"top_k_fraction": (0.3,), "expert_size": (8,), "hf_ratio": (3.0,)}, neurons=True,
                    default={"expert_size": 16})
    return RM.map_study("tiny-map", LANGS, max_passages=3, cells=cells, max_length=32, batch_size=4, progress=False)


def test_every_cell_counts_what_a_study_with_its_definitions_alone_counts(tiny_study):
    st = tiny_study
    assert list(st.profiles) == ["default", "top-k fraction 0.3", "expert size 8", "high-frequency ratio 3", "neurons"]
    assert st.profiles["high-frequency ratio 3"] is st.profiles["default"]
    assert st.profiles["top-k fraction 0.3"].definitions["top_k_fraction"] == 0.3
    assert st.profiles["neurons"].expert_size == 1 and st.profiles["expert size 8"].expert_size == 8
    for name in ("default", "top-k fraction 0.3", "expert size 8"):
        c = next(c for c in st.cells if c.name == name)
        alone = pipeline.study("tiny-map", LANGS, max_passages=3, expert_size=c.expert_size,
                               top_k_fraction=c.top_k_fraction, seeds=[c.seed], max_length=32, batch_size=4,
                               dtype="float32", device="cpu", progress=False)
        np.testing.assert_array_equal(st.profiles[name].passage_counts, alone.profile.passage_counts)


def test_cell_verdicts_decide_each_cell_with_the_chapters_rules(tiny_study):
    st = tiny_study
    controls = st.controls(batch_size=4)
    assert set(controls) == {"shuffled", "random"} and set(controls["random"]) == set(st.profiles)
    table = RM.cell_verdicts(st, controls, n_resamples=20, permutations=19, null_draws=10)
    assert len(table) == len(st.cells) * len(RM.MAPPED_CLAIMS)
    assert set(table["claim"]) == set(RM.MAPPED_CLAIMS)
    from babel_lib.core.claims import VERDICTS
    assert set(table["verdict"]) <= set(VERDICTS)
    # chapter 5's analysis ignores the high-frequency ratio: the same words in the cells that share counts
    fam = table[table["claim"] == "families"].set_index("cell")["result"]
    assert fam["default"] == fam["high-frequency ratio 3"]
    wide = RM.verdict_grid(table)
    assert list(wide.columns) == ["name", *st.profiles, "same_as_default"]
    assert (wide["same_as_default"] >= 1).all()
    facts = RM.map_facts(table)
    assert facts["cells"] == len(st.cells)
    for claim, f in facts["claims"].items():
        assert f["same"] + len(f["changes"]) == len(st.cells) and "default" not in f["changes"]


def _table(words: dict) -> "pd.DataFrame":
    """A cell_verdicts-like table from {claim: [word per cell]} (the first cell is the default)."""
    import pandas as pd

    cells = ["default", "top-k fraction 0.1", "expert size 16"]
    return pd.DataFrame([{"cell": c, "claim": k, "name": RM.CLAIM_NAMES[k], "verdict": w, "number": "",
                          "result": ""} for k, ws in words.items() for c, w in zip(cells, ws)])


def test_map_verdict_counts_only_claims_the_default_cell_can_test():
    same = ["partly reproduced"] * 3
    untestable = ["not testable here"] * 3
    v = RM.map_verdict(_table({"shared": same, "specific_neurons": same, "families": untestable,
                               "families_v1": untestable}))
    assert v["verdict"] == "reproduced" and v["result"].startswith("2 of 2 testable verdicts")
    v = RM.map_verdict(_table({"shared": same, "specific_neurons": ["reproduced", "reproduced", "not reproduced"],
                               "families": untestable, "families_v1": untestable}))
    assert v["verdict"] == "partly reproduced" and "not reproduced with expert size 16" in v["result"]
    v = RM.map_verdict(_table({k: untestable for k in RM.MAPPED_CLAIMS}))
    assert v["verdict"] == "not testable here"
