"""Languages written mainly in byte-fallback tokens: the rule, the per-language table, the views
without them, and the verdict comparison that reports which findings change (chapters 03-05)."""

import pandas as pd
import pytest

from babel_lib.core.cache import Store
from babel_lib.core.definitions import BYTE_FALLBACK_SHARE, Definitions, byte_token_counts
from babel_lib.data import corpus
from babel_lib.experts import pipeline
from babel_lib.experts.moefy import build_partition
from babel_lib.experts.profile import profile_passages
from babel_lib.report import verdicts
from babel_lib.testing import ByteTokenizer, tiny_model

TEXTS = {
    "eng": ["All human beings are born free.", "Everyone has the right to life."],
    "fra": ["Tous les etres humains naissent libres.", "Tout individu a droit a la vie."],
    "ell_monotonic": ["Όλοι οι άνθρωποι γεννιούνται ελεύθεροι.", "Καθένας έχει δικαίωμα στη ζωή."],
    "rus": ["Все люди рождаются свободными.", "Каждый человек имеет право на жизнь."],
}


def test_byte_token_counts_counts_raw_byte_pieces_only():
    tok = ByteTokenizer()
    assert byte_token_counts(tok, ["abc"]) == (0, 3)
    assert byte_token_counts(tok, ["é"]) == (2, 2)  # two UTF-8 bytes, no piece of its own
    assert byte_token_counts(tok, ["ab", "é"]) == (2, 4)
    assert byte_token_counts(tok, []) == (0, 0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    lm = tiny_model("llama")
    store = Store(tmp_path_factory.mktemp("cache"))
    text = corpus.Passages("udhr", "calibration", ["p0", "p1"], list(TEXTS), TEXTS)
    part = build_partition(lm, expert_size=16, method="random", seed=1, store=store)
    prof = profile_passages(lm, part, text, max_length=64, batch_size=2, definitions=Definitions(top_k_fraction=0.25),
                            store=store, progress=False)
    return pipeline.Study(lm, text, [part], [prof], Definitions(top_k_fraction=0.25), ["main"])


def test_byte_fallback_table_flags_the_scripts_without_pieces(study):
    table = study.byte_fallback_table().set_index("language")
    # Greek and Cyrillic letters are two UTF-8 bytes each, none a piece of this vocabulary; spaces and
    # punctuation are, so the share is high but below 1
    assert table.loc[["ell_monotonic", "rus"], "byte_fallback"].all() and not table.loc[["eng", "fra"], "byte_fallback"].any()
    assert (table.loc[["eng", "fra"], "byte_share"] == 0).all()
    assert (table.loc[["ell_monotonic", "rus"], "byte_share"] > BYTE_FALLBACK_SHARE).all()
    assert (table["byte_tokens"] <= table["tokens"]).all() and (table["tokens"] > 0).all()
    assert not study.byte_fallback_table(share=0.95)["byte_fallback"].any()  # the rule's bar is a parameter
    with pytest.raises(ValueError, match="share"):
        study.byte_fallback_table(share=1.5)


def test_views_without_drops_only_the_named_languages(study):
    views = study.views_without(["ell_monotonic"])
    assert list(views) == ["main"] and views["main"].languages == ["eng", "fra", "rus"]
    full = study.profile
    assert (views["main"].counts == full.counts[[0, 1, 3]]).all()
    with pytest.raises(ValueError, match="not languages"):
        study.views_without(["deu"])
    with pytest.raises(ValueError, match="fewer than 3"):
        study.views_without(["ell_monotonic", "rus"])


def _rows(words):
    claims = ["high_frequency", "shared", "specific_neurons"]
    return [verdicts.row(c, f"result {i}", "evidence", w) for i, (c, w) in enumerate(zip(claims, words))]


def test_sensitivity_names_the_verdicts_that_change():
    full = _rows(["reproduced", "not reproduced", "partly reproduced"])
    table = verdicts.sensitivity(full, _rows(["reproduced", "not reproduced", "not reproduced"]))
    assert list(table["change"]) == ["same", "same", "changed"]
    text = verdicts.sensitivity_text(table, "without the 2 byte-fallback languages")
    assert text.startswith("Without the 2 byte-fallback languages, 2 of 3 verdicts stay the same")
    assert "partly reproduced -> not reproduced" in text
    same = verdicts.sensitivity(full, full)
    assert "every verdict of this chapter stays the same (3 of 3)" in verdicts.sensitivity_text(same, "without x")
    with pytest.raises(ValueError, match="same claims"):
        verdicts.sensitivity(full, full[:2])


def test_show_sensitivity_saves_its_own_table_not_the_verdicts(tmp_path, monkeypatch):
    from babel_lib.report import plots

    monkeypatch.setenv("BABEL_BOOK_DIR", str(tmp_path))
    monkeypatch.setenv("BABEL_CHAPTER", "03_test")
    full = _rows(["reproduced", "not reproduced", "partly reproduced"])
    verdicts.show_sensitivity(full, full, "without the 2 languages", "without_byte_fallback")
    folder = tmp_path / "results" / "03_test"
    assert (folder / "without_byte_fallback.csv").exists() and not (folder / "verdicts.csv").exists()
    table = pd.DataFrame({"language": ["eng", "rus"], "name": ["English", "Russian"], "script": ["Latn", "Cyrl"],
                          "tokens": [10, 12], "byte_tokens": [0, 11], "byte_share": [0.0, 11 / 12],
                          "byte_fallback": [False, True]})
    plots.show_byte_fallback(table)
    assert (folder / "byte_fallback_languages.csv").read_text().count("\n") == 2  # header + Russian
    plots.show_byte_fallback(table.assign(byte_fallback=False))  # none flagged: a sentence, no table
