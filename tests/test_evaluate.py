"""Evaluation text (EvalSet), perplexity with an evaluation set, passage losses and paired comparisons."""

import math
import sqlite3

import numpy as np
import pytest

from babel_lib import stats
from babel_lib.core.cache import Store
from babel_lib.data import bible, corpus
from babel_lib.interventions import evaluate
from babel_lib.testing import ByteTokenizer, tiny_model

TOK = ByteTokenizer()  # one token a UTF-8 byte


def n_tokens(text):
    return len(text.encode("utf-8"))


# ------------------------------------------------------------------------------ UDHR selection
def test_udhr_selection_is_the_shortest_seeded_prefix_shared_by_all_languages():
    langs = ["eng", "fra", "deu_1996"]
    es = evaluate.evaluation_set(TOK, langs, min_tokens=1500, prefer=("udhr",), seed=3)
    assert es.languages == langs and set(es.source.values()) == {"udhr"}
    assert es.ids["eng"] == es.ids["fra"] == es.ids["deu_1996"]  # the same passages in every language
    for l in langs:
        assert es.tokens[l] == sum(n_tokens(t) for t in es.texts[l]) >= 1500
        assert es.characters[l] == sum(len(t) for t in es.texts[l])
        assert es(l) == es.texts[l]
    full = corpus.passages(langs, corpus="udhr", split="evaluation")
    assert es.available["udhr"] == len(full)
    order = np.random.default_rng(3).permutation(len(full))
    n = len(es.ids["eng"])
    assert sorted(es.ids["eng"]) == sorted(full.ids[i] for i in order[:n])
    assert es.ids["eng"] == [full.ids[i] for i in sorted(order[:n])]  # kept in document order
    # one passage fewer and some language falls short: the prefix is the shortest
    assert min(sum(n_tokens(full.text[l][i]) for i in order[:n - 1]) for l in langs) < 1500
    again = evaluate.evaluation_set(TOK, langs, min_tokens=1500, prefer=("udhr",), seed=3)
    assert again.ids == es.ids and again.key == es.key
    other = evaluate.evaluation_set(TOK, langs, min_tokens=1500, prefer=("udhr",), seed=4)
    assert other.ids != es.ids


def test_a_token_cap_keeps_nested_prefixes_of_one_random_order():
    langs = ["eng", "cmn_hans", "hin"]  # bytes per passage differ by a factor of about 2-3
    free = evaluate.evaluation_set(TOK, langs, min_tokens=800, prefer=("udhr",), seed=1)
    capped = evaluate.evaluation_set(TOK, langs, min_tokens=800, prefer=("udhr",), seed=1, max_tokens=1000)
    full = corpus.passages(langs, corpus="udhr", split="evaluation")
    order = [full.ids[i] for i in np.random.default_rng(1).permutation(len(full))]
    sizes = []
    for l in langs:
        ids = capped.ids[l]
        assert set(ids) <= set(free.ids[l]) and ids == sorted(ids, key=free.ids[l].index)
        m = len(ids)
        assert set(ids) == set(order[:m])  # a prefix of the one random order
        assert capped.tokens[l] >= 800 and capped.tokens[l] == sum(n_tokens(t) for t in capped.texts[l])
        # the shortest such prefix: one passage fewer is below the cap
        assert m == 1 or sum(n_tokens(full.text[l][full.ids.index(i)]) for i in order[:m - 1]) < 1000
        sizes.append(m)
    assert max(capped.tokens.values()) < max(free.tokens.values())  # the verbose language reads less
    assert len(set(sizes)) > 1 and "our cap" in capped.describe() and "same passages" not in capped.describe()
    assert capped.key != free.key and capped.max_tokens == 1000 and free.max_tokens is None
    with pytest.raises(ValueError, match="max_tokens"):
        evaluate.evaluation_set(TOK, langs, min_tokens=800, prefer=("udhr",), max_tokens=799)


def test_a_short_split_is_kept_whole_and_said_so():
    es = evaluate.evaluation_set(TOK, ["eng", "urd"], min_tokens=10 ** 6, prefer=("udhr",))
    assert es.short == ["eng", "urd"]
    assert len(es.ids["eng"]) == es.available["udhr"]
    text = es.describe()
    assert "all " in text and "shorter than 1,000,000 tokens" in text and "UDHR" in text
    with pytest.raises(ValueError, match="evaluation split only"):
        es("eng", "calibration")


@pytest.mark.parametrize("kwargs,match", [({"min_tokens": 0}, "min_tokens"), ({"prefer": ("wiki",)}, "prefer"),
                                          ({"verses_per_passage": 0}, "verses_per_passage"),
                                          ({"languages": ["eng", "eng"]}, "repeat")])
def test_bad_arguments(kwargs, match):
    args = {"languages": ["eng"], **kwargs}
    with pytest.raises(ValueError, match=match):
        evaluate.evaluation_set(TOK, **args)


# ------------------------------------------------------------------------------ Bible selection (a small database)
VERSES = {  # (book, chapter) -> verse count; JOS, LUK are evaluation books, GEN calibration
    (1, 1): 4, (6, 1): 5, (42, 1): 6, (42, 2): 3,
}


@pytest.fixture
def small_bible(tmp_path, monkeypatch):
    db = tmp_path / "bible.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE bible (bbName TEXT, bNumber INT, cNumber INT, vNumber INT, vText TEXT)")
    for bb, word in (("4", "Word"), ("l", "Mot")):
        for (b, c), n in VERSES.items():
            for v in range(1, n + 1):
                text = f"{word} {b} {c} {v} " + "abc " * (v + 2)
                if bb == "l" and (b, c, v) == (42, 1, 3):
                    text = "-"  # French translates Luke 1:2-3 as one verse: both left out
                if bb == "4" and (b, c, v) == (6, 1, 5):
                    text = ""  # English lacks Joshua 1:5: left out
                con.execute("INSERT INTO bible VALUES (?, ?, ?, ?, ?)", (bb, b, c, v, text))
    con.commit()
    con.close()
    monkeypatch.setattr(bible, "BIBLE_DB", str(db))
    return db


def test_bible_verse_passages_are_aligned_and_skip_merged_and_missing_verses(small_bible):
    es = evaluate.evaluation_set(TOK, ["eng", "fra", "urd"], min_tokens=10 ** 6, verses_per_passage=2)
    assert es.source == {"eng": "bible", "fra": "bible", "urd": "udhr"}
    ids = es.ids["eng"]
    assert ids == es.ids["fra"]
    # JOS 1: verses 1-4 (5 missing in English); LUK 1: 1, then 2-3 merged in French, then 4-6; LUK 2: 1-3
    assert ids == ["JOS.1.1-2", "JOS.1.3-4", "LUK.1.1", "LUK.1.4-5", "LUK.1.6", "LUK.2.1-2", "LUK.2.3"]
    assert not any(i.startswith("GEN") for i in ids)  # calibration book
    assert es.texts["eng"][0].startswith("Word 6 1 1 ") and " Word 6 1 2 " in es.texts["eng"][0]
    assert es.texts["fra"][3].startswith("Mot 42 1 4 ")
    assert "verses" in es.unit["bible"] and es.unit["udhr"].startswith("paragraphs")
    single = evaluate.evaluation_set(TOK, ["eng", "fra"], min_tokens=10 ** 6, verses_per_passage=1)
    assert len(single.ids["eng"]) == 4 + 1 + 3 + 3
    chapters = evaluate.evaluation_set(TOK, ["eng", "fra"], min_tokens=10 ** 6, verses_per_passage=None)
    assert chapters.ids["eng"] == ["JOS.1", "LUK.1", "LUK.2"]
    text = es.describe()
    assert "Bible evaluation split" in text and "UDHR evaluation split" in text and "Urdu" in text


def test_aliases_choose_another_text_and_say_so(small_bible):
    es = evaluate.evaluation_set(TOK, ["por_pt"], min_tokens=10, aliases={"por_pt": "eng"}, verses_per_passage=1)
    assert es.source["por_pt"] == "bible" and es.text_key["por_pt"] == "eng"
    assert es.texts["por_pt"][0].startswith("Word")
    assert "on the English text" in es.describe()
    plain = evaluate.evaluation_set(TOK, ["por_pt"], min_tokens=10)
    assert plain.source["por_pt"] == "udhr"  # no European Portuguese Bible


# ------------------------------------------------------------------------------ perplexity on an evaluation set
def small_evalset():
    texts = {"aaa": ["The first passage, a little longer than the others.", "Second.", "A third passage here."],
             "bbb": ["Ein erster Absatz mit Umlauten: äöü.", "Zweiter.", "人人生而自由。"]}
    return evaluate.EvalSet(
        ["aaa", "bbb"], texts, {l: ["p0", "p1", "p2"] for l in texts}, {"aaa": "bible", "bbb": "udhr"},
        {l: l for l in texts}, {l: sum(n_tokens(t) for t in v) for l, v in texts.items()},
        {l: sum(len(t) for t in v) for l, v in texts.items()}, {"bible": 3, "udhr": 3},
        {"bible": "groups of up to 2 consecutive verses of one chapter", "udhr": "paragraphs"}, 10, 16, 0, 2)


def test_perplexity_on_an_evalset_names_the_corpus_and_equals_the_texts_fn_route(tmp_path):
    lm = tiny_model("llama")
    es = small_evalset()
    store = Store(tmp_path)
    df = evaluate.perplexity(lm, evalset=es, batch_size=2, store=store)
    assert list(df["language"]) == ["aaa", "bbb"] and list(df["corpus"]) == ["bible", "udhr"]
    assert (df["max_length"] == 16).all()  # the evaluation set's max_length
    assert df.set_index("language").loc["aaa", "tokens"] == es.tokens["aaa"]
    same = evaluate.perplexity(lm, ["aaa", "bbb"], texts_fn=es, max_length=16, batch_size=2, store=Store(tmp_path / "b"))
    np.testing.assert_allclose(same["nll"], df["nll"])
    text = evaluate.describe(df)
    for needed in ("Bible evaluation split for aaa", "UDHR evaluation split for bbb", "3 passages",
                   "windows of at most 16 tokens", "float32", lm.name):
        assert needed in text
    both = evaluate.compare(lm, None, [], evalset=es, batch_size=2, store=store)
    np.testing.assert_allclose(both["nll"], df["nll"])
    with pytest.raises(ValueError, match="max_tokens"):
        evaluate.perplexity(lm, evalset=es, max_tokens=5, store=store)
    with pytest.raises(ValueError, match="not both"):
        evaluate.perplexity(lm, evalset=es, texts_fn=es, store=store)
    with pytest.raises(ValueError, match="not in the evaluation set"):
        evaluate.perplexity(lm, ["ccc"], evalset=es, store=store)


def test_passage_losses_sum_windows_per_passage(tmp_path):
    lm = tiny_model("llama")
    es = small_evalset()
    res = evaluate.window_results(lm, evalset=es, max_length=8, batch_size=2, store=Store(tmp_path))["bbb"]
    assert len(res["window_nll"]) > 3  # passages span several windows
    nll, tokens = evaluate.passage_losses(res)
    assert tokens.tolist() == [n_tokens(t) for t in es.texts["bbb"]]
    assert nll.sum() == pytest.approx(res["window_nll"].sum())
    for p in range(3):
        assert nll[p] == pytest.approx(res["window_nll"][res["window_passage"] == p].sum())


def test_paired_comparison_is_the_paired_passage_bootstrap():
    rng = np.random.default_rng(0)
    passage = np.repeat(np.arange(30), 2)
    tokens = rng.integers(5, 40, size=60)
    dense = {"window_nll": tokens * rng.uniform(1.5, 2.5, size=60), "window_tokens": tokens, "window_passage": passage}
    worse = dict(dense, window_nll=dense["window_nll"] + 0.1 * tokens)  # 0.1 nats a token more everywhere
    same = evaluate.paired_comparison(dense, dict(dense))
    assert same["ratio"] == pytest.approx(1.0) and same["decision"] == "indistinguishable"
    c = evaluate.paired_comparison(dense, worse, n_resamples=1000, seed=5, names=("dense", "pruned"))
    assert c["ratio"] == pytest.approx(math.exp(0.1))
    assert c["low"] > 1 and c["decision"] == "dense better" and c["passages"] == 30
    nll_a, tok_a = evaluate.passage_losses(dense)
    nll_b, tok_b = evaluate.passage_losses(worse)
    ref = stats.paired_ratio_interval(nll_a, tok_a, nll_b, tok_b, n_resamples=1000, seed=5)
    assert (c["low"], c["high"]) == (pytest.approx(ref.low), pytest.approx(ref.high))
    better = evaluate.paired_comparison(worse, dense, names=("dense", "pruned"))
    assert better["decision"] == "pruned better"
    with pytest.raises(ValueError, match="same windows"):
        evaluate.paired_comparison(dense, dict(dense, window_passage=np.roll(passage, 1)))
