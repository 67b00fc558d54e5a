"""Tests of babel_lib.corpus: the committed UDHR corpus and language metadata (no network)."""

import networkx as nx
import numpy as np
import pytest

from babel_lib import corpus
from babel_lib.corpus import (PAPER_LANGUAGES, UnknownLanguageError, family_graph,
                              language_table, load_corpus, resolve_languages, texts,
                              tree_distance)


def test_breadth_of_languages():
    table = language_table()
    assert len(table) >= 60
    assert table.index.is_unique
    assert table.loc[table.family != "Unclassified", "family"].nunique() >= 12
    assert table.script.nunique() >= 8
    assert set(PAPER_LANGUAGES) <= set(table.index)
    assert len(PAPER_LANGUAGES) == 9
    assert (table.n_paragraphs > 0).all() and (table.n_chars > 1000).all()


def test_language_table_is_a_copy():
    table = language_table()
    table.loc["eng", "name"] = "changed"
    assert language_table().loc["eng", "name"] == "English"


@pytest.mark.parametrize("lang, script", [("eng", "Latn"), ("arb", "Arab"), ("hin", "Deva"),
                                          ("cmn_hans", "Hans"), ("cmn_hant", "Hant"),
                                          ("ben", "Beng"), ("rus", "Cyrl"), ("urd", "Arab"),
                                          ("jpn", "Jpan"), ("kor", "Hang")])
def test_scripts(lang, script):
    assert language_table().loc[lang, "script"] == script


def test_families_and_paths():
    table = language_table()
    assert table.loc["eng", "family"] == "Indo-European"
    assert table.loc["arb", "family"] == "Afro-Asiatic"
    assert table.loc["cmn_hans", "family"] == "Sino-Tibetan"
    path = {k: table.loc[k, "glottolog_path"].split("|") for k in ["spa", "por_pt", "hin", "urd", "eng", "cmn_hans"]}
    assert path["hin"] == path["urd"]
    assert path["spa"][:-1] == path["por_pt"]
    assert not set(path["eng"]) & set(path["cmn_hans"])
    assert table.loc["eus", "family"] == "Unclassified"  # no clade in URIEL, still exported


def test_splits_disjoint_and_covering():
    for lang in ["eng", "cmn_hans", "arb"]:
        cal = load_corpus([lang], "calibration").to_pandas()
        ev = load_corpus([lang], "evaluation").to_pandas()
        full = load_corpus([lang], "all").to_pandas()
        assert set(cal.article).isdisjoint(ev.article)
        assert set(ev.article) == set(range(3, 31, 3))
        assert 0 in set(cal.article)
        assert set(cal.article) | set(ev.article) == set(range(0, 31))
        assert len(cal) + len(ev) == len(full)
        assert sorted(texts(lang, "calibration") + texts(lang, "evaluation")) == sorted(texts(lang, "all"))
    assert corpus.split_of(0) == "calibration" and corpus.split_of(30) == "evaluation"


def test_dataset_columns_and_order():
    ds = load_corpus("paper", split="evaluation")
    assert ds.column_names == ["lang", "article", "paragraph", "text", "split"]
    frame = ds.to_pandas()
    assert list(dict.fromkeys(frame.lang)) == list(PAPER_LANGUAGES)
    assert set(frame.split) == {"evaluation"}
    eng = frame[frame.lang == "eng"]
    assert list(zip(eng.article, eng.paragraph)) == sorted(zip(eng.article, eng.paragraph))
    assert eng.text.iloc[0].startswith("Everyone has the right to life")


def test_texts_document_order():
    paragraphs = texts("eng", "all")
    assert paragraphs[0].startswith("Whereas recognition of the inherent dignity")
    assert all(p and p == p.strip() for p in paragraphs)
    assert texts("English", "evaluation") == texts("eng", "evaluation")
    with pytest.raises(ValueError, match="split"):
        texts("eng", "test")


def test_empty_text_raises_naming_language_and_split(monkeypatch):
    frame = corpus._corpus()
    without_eval = frame[~((frame.lang == "hin") & (frame.split == "evaluation"))]
    monkeypatch.setattr(corpus, "_corpus", lambda: without_eval)
    with pytest.raises(ValueError, match="'hin'.*'evaluation'"):
        texts("hin", "evaluation")
    with pytest.raises(ValueError, match="'hin'.*'evaluation'"):
        load_corpus(["eng", "hin"], "evaluation")
    assert texts("hin", "calibration")


def test_resolve_names_codes_and_keywords():
    assert resolve_languages("paper") == list(PAPER_LANGUAGES)
    assert resolve_languages(["English", "FRA", "es", "Standard Arabic", "Mandarin", "Urdu",
                              "hindi", "Bengali", "Portuguese"]) == [
        "eng", "fra", "spa", "arb", "cmn_hans", "urd", "hin", "ben", "por_pt"]
    assert resolve_languages("eng, hin,eng") == ["eng", "hin"]
    assert resolve_languages("ALL") == list(language_table().index)
    assert resolve_languages(["Malayalam"]) == ["mal"]  # two texts: the one keyed by ISO code


def test_unknown_language_lists_close_matches():
    with pytest.raises(UnknownLanguageError) as err:
        resolve_languages(["eng", "Portugese"])
    message = str(err.value)
    assert "Portugese" in message and "por_pt" in message and "por_br" in message
    assert "babel_lib.corpus.language_table()" in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnknownLanguageError, match="ambiguous"):
        resolve_languages(["Chinese, Mandarin"])


def test_empty_and_bad_specs():
    with pytest.raises(ValueError, match="No languages"):
        resolve_languages([])
    with pytest.raises(ValueError, match="No languages"):
        resolve_languages("")
    with pytest.raises(ValueError):
        resolve_languages("wide:x")
    with pytest.raises(ValueError):
        resolve_languages("wide:100000")


def test_wide_selection():
    wide = resolve_languages("wide:100")
    assert len(wide) == len(set(wide)) == 100
    assert wide[:9] == list(PAPER_LANGUAGES)
    assert wide == resolve_languages("wide:100")  # deterministic
    table = language_table().loc[wide]
    assert table.family.nunique() >= 40
    assert table.script.nunique() >= 20
    assert table.iso639_3.nunique() >= 95
    assert resolve_languages("wide:5") == list(PAPER_LANGUAGES[:5])
    assert resolve_languages("wide:120")[:100] == wide


def test_tree_distance_orders_relatedness():
    keys = ["hin", "urd", "eng", "cmn_hans", "spa", "por_pt", "fra", "ben", "arb"]
    d = tree_distance(keys)
    i = {k: n for n, k in enumerate(keys)}
    assert d.shape == (9, 9) and (d == d.T).all() and (np.diag(d) == 0).all()
    assert d[i["hin"], i["urd"]] < d[i["hin"], i["ben"]] < d[i["hin"], i["eng"]] < d[i["hin"], i["cmn_hans"]]
    assert d[i["hin"], i["urd"]] == 2
    row = d[i["spa"]].astype(float)
    row[i["spa"]] = np.inf
    assert keys[int(row.argmin())] == "por_pt"
    # different families: the same (largest) distance
    assert d[i["hin"], i["cmn_hans"]] == d[i["arb"], i["cmn_hans"]] == d.max()


def test_family_graph_matches_tree_distance_within_families():
    keys = resolve_languages("wide:40")
    graph = family_graph(keys)
    assert nx.is_tree(graph) and graph.in_degree(corpus.ROOT) == 0
    kinds = nx.get_node_attributes(graph, "kind")
    assert {k for k, v in kinds.items() if v == "language"} == set(keys)
    assert all(graph.out_degree(k) == 0 for k in keys)
    assert set(kinds.values()) == {"clade", "language"}
    undirected = graph.to_undirected()
    d = tree_distance(keys)
    family = language_table().loc[keys, "family"]
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            length = nx.shortest_path_length(undirected, keys[a], keys[b])
            if family.iloc[a] == family.iloc[b] != "Unclassified":
                assert d[a, b] == length
            else:
                assert d[a, b] >= length
    assert list(graph.successors(corpus.ROOT))  # families hang off the root
    assert "Indo-European" in graph.successors(corpus.ROOT)


def test_data_files_agree():
    table = language_table()
    frame = corpus._corpus()
    assert set(frame.lang) == set(table.index)
    per_lang = frame.groupby("lang")
    assert (per_lang.size() == table.n_paragraphs.loc[per_lang.size().index]).all()
    chars = per_lang.text.apply(lambda s: s.str.len().sum())
    assert (chars == table.n_chars.loc[chars.index]).all()
    articles = frame[frame.article > 0].groupby("lang").article.nunique()
    assert (articles == 30).all()  # every exported text is complete
    assert not frame.duplicated(["lang", "article", "paragraph"]).any()
