"""One rule set for every verdict word (verdicts.decide), "descriptive" for statements no outcome could
refute, and a scorecard whose first line counts each label with the descriptive ones apart."""

import pandas as pd
import pytest

from babel_lib.report import verdicts


def test_decide_follows_the_table():
    assert verdicts.decide([]) == "not testable here"
    assert verdicts.decide([True, True]) == "reproduced"
    assert verdicts.decide([True, True], robust=False) == "partly reproduced"
    assert verdicts.decide([True, False]) == "partly reproduced"
    assert verdicts.decide([False, False]) == "not reproduced"
    assert verdicts.decide(True) == "reproduced"


def test_a_test_whose_null_cannot_fail_never_counts():
    assert verdicts.decide([True], null_can_fail=False) == "not testable here"  # no test that could fail
    assert verdicts.decide([True, True], null_can_fail=[True, False]) == "partly reproduced"


def test_descriptive_rows_quote_the_paper_and_are_not_verdicts():
    r = verdicts.descriptive("moefication_design", "we converted Gemma 3 270M")
    assert r["verdict"] == "descriptive" and r["claim"].strip("“”").startswith("We designed")
    assert r["evidence"] == verdicts.DESCRIPTIVE_EVIDENCE and "descriptive" not in verdicts.TESTED_VERDICTS
    with pytest.raises(ValueError):
        verdicts.row("moefication", "r", "e", "confirmed")


def test_scorecard_counts_each_label_and_descriptive_apart(tmp_path):
    for chapter, rows in {"01_a": [verdicts.descriptive("moefication_design", "did it"),
                                   verdicts.row("moefication", "0.43 [0.42, 0.44]", "e", "reproduced")],
                          "02_b": [verdicts.row("heatmaps", "9 of 9", "e", "partly reproduced")]}.items():
        (tmp_path / "results" / chapter).mkdir(parents=True)
        pd.DataFrame(rows).to_csv(tmp_path / "results" / chapter / "verdicts.csv", index=False)
        (tmp_path / f"{chapter}.ipynb").write_text('{"cells": [{"cell_type": "markdown", "source": "# T"}]}')
    text = verdicts.scorecard_markdown(tmp_path)
    first = [line for line in text.splitlines() if line and not line.startswith("<!--")][0]
    assert first == ("2 verdicts from 2 chapters: 1 reproduced, 1 partly reproduced; and 1 descriptive statement "
                     "counted apart.")
    table = text.split("Descriptive statements")[0]
    assert "**descriptive**" not in table and "We designed" in text.split("Descriptive statements")[1]


def test_chapter_one_states_its_design_and_tests_against_a_random_grouping():
    from babel_lib.chapters import moefication

    mass = pd.DataFrame({"partition": ["kmeans"], "mass_captured": [0.43], "low": [0.42], "high": [0.44],
                         "difference": [0.10], "diff_low": [0.09], "diff_high": [0.11]})
    agreement = pd.DataFrame({"partition": ["kmeans", "kmeans"], "top_k_fraction": [1.0, 0.2],
                              "max_abs_logit_diff": [4e-4, 3.0], "top1_agreement": [1.0, 0.2], "tokens": [900, 900]})
    design, tested = moefication.moefication_verdicts(mass, agreement, "kmeans", 0.2)
    assert design["verdict"] == "descriptive" and tested["verdict"] == "reproduced"
    no_better = mass.assign(diff_low=[-0.01])  # the random grouping does as well: a test that can fail, failing
    assert moefication.moefication_verdicts(no_better, agreement, "kmeans", 0.2)[1]["verdict"] == "partly reproduced"


def test_every_tested_verdict_says_what_was_tested():
    """The Answer box reads "Tested: ..." from each verdict row: a row that decides a claim states the
    test in words (only descriptive statements, which nothing tests, go without)."""
    import glob

    import pandas as pd

    from babel_lib.book import runner as book

    missing = []
    for path in sorted(glob.glob(str(book.BOOK_DIR / "results" / "*" / "verdicts.csv"))):
        frame = pd.read_csv(path, keep_default_na=False)
        missing += [f"{path.split('/')[-2]}: {r.claim[:50]}" for r in frame.itertuples()
                    if r.verdict != "descriptive" and not str(r.tested).strip()]
    assert not missing, missing
