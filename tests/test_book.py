"""The book runner on throwaway notebooks (standard library only): profiles, declared
parameters, stamps and freshness, atomic output, the generated toc, the command line."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

from babel_lib.__main__ import build_parser, main, parse_value
from babel_lib.book import runner as book

REPORT = """import json, os, sys
print(json.dumps({"seed": seed, "languages": languages, "has_model": "model" in dir(),
                  "executable": sys.executable, "cwd": os.getcwd(),
                  "chapter": os.environ.get("BABEL_CHAPTER"), "render": os.environ.get("BABEL_RENDER")}))"""


def write_notebook(path: Path, *cells: str, parameters: str = "seed = 1\nlanguages = ['xx']") -> Path:
    """A chapter notebook: a `parameters` cell, then *cells* (code)."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def report(executed: Path) -> dict:
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("name") == "stdout" and out["text"].startswith("{"):
                return json.loads(out["text"])
    raise AssertionError("no report in the executed notebook")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """One smoke run of a throwaway chapter with an override."""
    root = tmp_path_factory.mktemp("runner")
    source = write_notebook(root / "notebooks" / "01_tiny.ipynb", REPORT)
    out = book.run_chapter(source, "smoke", {"seed": 7}, root / "book", progress_bar=False)
    return {"root": root, "source": source, "out": out}


# ---------------------------------------------------------------------------- profiles
def test_profiles_are_well_formed():
    assert set(book.PROFILES) == {"smoke", "default", "paper"}
    declared = set().union(*(book.declared_parameters(s) for s in book.chapters()))
    for name, params in book.PROFILES.items():
        assert set(params) <= declared, (name, set(params) - declared)  # every key reaches some chapter
        assert {"model", "models", "seed", "dtype", "device"} <= set(params), name  # what every run must pin
        json.dumps(params)  # plain values papermill can inject
    assert book.PROFILES["default"]["model"] == "gemma-3-270m"
    assert 2 <= len(book.PROFILES["smoke"]["languages"]) <= 3
    assert book.PROFILES["smoke"]["max_passages"] <= 4 and book.PROFILES["smoke"]["min_tokens"] <= 128
    from babel_lib.data import corpus

    assert len(corpus.resolve_languages(book.PROFILES["paper"]["languages"])) == 9
    assert book.PROFILES["paper"]["min_tokens"] > book.PROFILES["smoke"]["min_tokens"]


def test_paper_languages_are_in_the_corpus_metadata():
    table = Path(book.__file__).parent / "data" / "languages.csv"
    if not table.exists():
        pytest.skip("babel_lib/data/languages.csv not present")
    codes = {line.split(",")[0] for line in table.read_text(encoding="utf-8").splitlines()[1:]}
    from babel_lib.data import corpus

    assert set(corpus.PAPER_LANGUAGES) <= codes
    assert set(book.PROFILES["smoke"]["languages"]) <= codes


def test_unknown_profile_and_chapter_are_clear_errors(tmp_path):
    source = write_notebook(tmp_path / "01_tiny.ipynb")
    with pytest.raises(ValueError, match="profiles: smoke, default, paper"):
        book.resolve_parameters(source, "fast")
    with pytest.raises(ValueError, match="chapters in"):
        book.find_chapter("99_nothing", tmp_path)


# ---------------------------------------------------------------------------- running
@pytest.mark.notebook
def test_runner_passes_only_declared_parameters(executed):
    got = report(executed["out"])
    assert got["seed"] == 7  # the override
    assert got["languages"] == book.PROFILES["smoke"]["languages"]  # the profile
    assert got["has_model"] is False  # in the profile, not declared: not passed
    stamp = nbformat.read(executed["out"], as_version=4).metadata["babel"]
    assert set(stamp["parameters"]) == {"seed", "languages"}


@pytest.mark.notebook
def test_kernel_is_this_interpreter_at_the_repository_root(executed):
    got = report(executed["out"])
    assert Path(got["executable"]).resolve() == Path(sys.executable).resolve()
    assert Path(got["cwd"]).resolve() == book.ROOT.resolve()
    assert got["chapter"] == "01_tiny" and got["render"] == "book"


@pytest.mark.notebook
def test_stamp_and_freshness(executed, tmp_path):
    root, source = executed["root"], executed["source"]
    stamp = nbformat.read(executed["out"], as_version=4).metadata["babel"]
    assert stamp["source_sha256"] == book.source_sha256(source)
    assert stamp["profile"] == "smoke" and stamp["executed_at"]
    check = dict(notebooks_dir=root / "notebooks", profile=None)
    assert book.check_fresh(root / "book", **check) == []
    # run with an override: not what the smoke profile alone gives
    assert any("parameters differ" in p for p in
               book.check_fresh(root / "book", notebooks_dir=root / "notebooks", profile="smoke"))

    # metadata and outputs of the source do not count, its cells do
    copy = tmp_path / "notebooks"
    copy.mkdir()
    nb = nbformat.read(source, as_version=4)
    nb.metadata["foo"] = "bar"
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="x")]
    nbformat.write(nb, copy / source.name)
    assert book.source_sha256(copy / source.name) == book.source_sha256(source)
    nb.cells[-1].source += "\n# edited"
    nbformat.write(nb, copy / source.name)
    problems = book.check_fresh(root / "book", notebooks_dir=copy, profile=None)
    assert len(problems) == 1 and "source changed" in problems[0]

    # a source without an executed copy, and an executed copy without a source
    write_notebook(copy / "02_new.ipynb")
    (copy / source.name).unlink()
    problems = book.check_fresh(root / "book", notebooks_dir=copy, profile=None)
    assert any(p.startswith("02_new: no executed copy") for p in problems)
    assert any(p.startswith("01_tiny: executed copy without a source") for p in problems)


SAVE = """import pandas as pd
from babel_lib.report import plots
plots.setup()
plots.save_table(pd.DataFrame({"x": [1]}), None, name)"""


@pytest.mark.notebook
def test_failed_run_keeps_the_previous_copy_and_results(tmp_path):
    source = write_notebook(tmp_path / "notebooks" / "01_fail.ipynb", SAVE, parameters="name = 'a'")
    out = book.run_chapter(source, "smoke", output_dir=tmp_path / "book", progress_bar=False)
    results = tmp_path / "book" / "results" / "01_fail"
    assert [p.name for p in results.iterdir()] == ["a.csv"]
    before = out.read_bytes()
    write_notebook(source, SAVE, "raise RuntimeError('boom in the chapter')", parameters="name = 'b'")
    with pytest.raises(book.ChapterError, match="boom in the chapter"):
        book.run_chapter(source, "smoke", output_dir=tmp_path / "book", progress_bar=False)
    assert out.read_bytes() == before
    assert [p.name for p in results.iterdir()] == ["a.csv"]  # b.csv of the failed run not kept
    assert sorted(p.name for p in (tmp_path / "book").iterdir()) == ["01_fail.ipynb", "results"]  # no temp left
    assert (book.FAILED_DIR / "01_fail.ipynb").exists()
    # a successful run replaces the chapter's results: no stale a.csv
    write_notebook(source, SAVE, parameters="name = 'b'")
    book.run_chapter(source, "smoke", output_dir=tmp_path / "book", progress_bar=False)
    assert [p.name for p in results.iterdir()] == ["b.csv"]


# ---------------------------------------------------------------------------- toc
def test_toc_lists_the_notebooks_present_in_order(tmp_path):
    nbs, out = tmp_path / "notebooks", tmp_path / "book"
    out.mkdir()
    for name in ("03_c", "01_a", "10_j", "02_b", "scratch", "1_bad"):
        write_notebook(nbs / f"{name}.ipynb")
    toc = book.write_toc(out, nbs).read_text()
    assert "root: intro" in toc
    files = [line.split(": ")[1] for line in toc.splitlines() if line.startswith("- file:")]
    assert files == ["01_a", "02_b", "03_c", "10_j"]
    (nbs / "02_b.ipynb").unlink()
    toc = book.write_toc(out, nbs).read_text()
    assert "02_b" not in toc and "03_c" in toc
    for p in nbs.iterdir():
        p.unlink()
    assert "chapters" not in book.write_toc(out, nbs).read_text()  # intro only


def test_repository_toc_matches_its_notebooks():
    toc = book.BOOK_DIR / "_toc.yml"
    assert toc.exists(), "book/_toc.yml missing: run `python -m babel_lib build`"
    assert toc.read_text(encoding="utf-8") == book.toc_text(), "book/_toc.yml is stale: run `babel build`"


def test_offline_check_finds_external_scripts(tmp_path):
    (tmp_path / "a.html").write_text('<script src="https://cdn.example.org/x.js"></script>'
                                     '<link rel="stylesheet" href="_static/local.css">'
                                     '<a href="https://example.org">a plain link is fine</a>')
    assert book.external_resources(tmp_path) == ["a.html: https://cdn.example.org/x.js"]


# ---------------------------------------------------------------------------- command line
def test_cli_parses_overrides():
    args = build_parser().parse_args(["run", "01", "--profile", "smoke", "-p", "seed", "3",
                                      "-p", "languages", '["eng", "fra"]', "-p", "model", "my/model"])
    assert args.chapters == ["01"] and args.profile == "smoke"
    assert {k: parse_value(v) for k, v in args.parameter} == {
        "seed": 3, "languages": ["eng", "fra"], "model": "my/model"}
    assert parse_value("null") is None and parse_value("0.2") == 0.2 and parse_value("eng") == "eng"


def test_cli_profiles_and_errors(capsys):
    assert main(["profiles"]) == 0
    assert "paper:" in capsys.readouterr().out
    assert main(["run", "99_no_such_chapter"]) == 1
    assert "unknown chapter" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--profile", "huge"])


# ---------------------------------------------------------------------------- plots
def _frame(layers, experts):
    import pandas as pd

    return pd.DataFrame([(l, e, (l * e) % 7 / 7) for l in range(layers) for e in range(experts)],
                        columns=["layer", "expert", "frequency"])


def test_renderer_modes(plots_env, monkeypatch):
    plots = plots_env
    spec = plots.heatmap(_frame(4, 8), "expert", "layer", "frequency").to_dict()
    assert set(plots.render(spec)) == {plots.VEGALITE_MIME, "text/plain"}  # JupyterLab
    monkeypatch.setenv("BABEL_RENDER", "book")
    html = plots.render(spec)["text/html"]
    assert 'class="babel-vega"' in html and "_static/babel-vega.js" in html
    assert "data:image/png;base64," in html  # fallback where the bundle is missing
    assert "http" not in html.replace("https://vega.github.io/schema/", "")  # no CDN


def test_heatmap_schemes_and_facets(plots_env):
    plots = plots_env
    df = _frame(3, 64).assign(language="eng")
    seq = plots.heatmap(df, "expert", "layer", "frequency").to_dict()
    assert seq["encoding"]["color"]["scale"] == {"scheme": plots.SEQUENTIAL}
    div = plots.heatmap(df, "expert", "layer", "frequency", diverging=True, facet="language").to_dict()
    assert div["spec"]["encoding"]["color"]["scale"] == {"scheme": plots.DIVERGING, "domainMid": 0}
    assert div["facet"]["field"] == "language" and div["columns"] == 3
    labels = seq["encoding"]["x"]["axis"]["values"]  # 64 experts on a 560 px panel: labels >= ~24 px apart
    assert len(labels) <= 560 // 24 and labels[:2] == [0, 3]


def test_depth_curves_render_a_band_and_a_line_per_model_and_the_floor_only_when_given(plots_env):
    import pandas as pd

    plots = plots_env
    rows = [{"model": m, "statistic": s, "layer": l, "relative_depth": (l + 0.5) / L, "value": 0.1 * l,
             "low": 0.1 * l - 0.05, "high": 0.1 * l + 0.05} for m, L in (("a", 4), ("b", 6))
            for s in ("entropy", "departure") for l in range(L)]
    df = pd.DataFrame(rows)
    spec = plots.depth_curves(df, "Depth", order=["departure", "entropy"]).to_dict()
    marks = [layer["mark"]["type"] for layer in spec["spec"]["layer"]]
    assert marks == ["area", "line"] and spec["facet"]["sort"] == ["departure", "entropy"]
    assert spec["resolve"]["scale"]["y"] == "independent" and spec["title"] == "Depth"
    with_floor = plots.depth_curves(df.assign(floor=0.01), "Depth").to_dict()
    assert [layer["mark"]["type"] for layer in with_floor["spec"]["layer"]] == ["area", "line", "line"]
    plots.show(plots.depth_curves(df, "Depth"), "depth")  # renders (the width check runs vl-convert)


def test_interval_chart_draws_a_point_and_a_rule_per_row_and_its_reference(plots_env):
    import pandas as pd

    plots = plots_env
    df = pd.DataFrame({"name": ["Hindi", "French", "Urdu"], "d": [0.1, 0.2, 0.15], "low": [0.05, 0.1, 0.1],
                       "high": [0.2, 0.3, 0.2], "floor": [0.01, 0.02, 0.02], "family": ["IE", "IE", "IE"]})
    spec = plots.interval_chart(df, "d", "name", reference="floor", value_title="Departure").to_dict()
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["rule", "point", "tick"]
    rule = spec["layer"][0]["encoding"]
    assert rule["x"]["field"] == "low" and rule["x2"]["field"] == "high" and rule["x"]["title"] == "Departure"
    assert spec["layer"][1]["encoding"]["x"]["field"] == "d" and spec["height"] == 80  # 3 rows, at least 80 px
    assert spec["layer"][1]["encoding"]["y"]["sort"] == ["Hindi", "French", "Urdu"]  # the data's order by default
    up = plots.interval_chart(df, "d", "name", horizontal=False, color="family", offset=True, reference=0.1).to_dict()
    assert up["layer"][0]["encoding"]["y"]["field"] == "low" and "xOffset" in up["layer"][1]["encoding"]
    assert up["layer"][2]["mark"]["type"] == "rule" and "data" in up["layer"][2]
    plots.show(plots.interval_chart(df, "d", "name"), "intervals")  # renders (the width check runs vl-convert)


def test_layer_bands_draw_band_line_points_and_mark_significant_layers(plots_env):
    import pandas as pd

    plots = plots_env
    df = pd.DataFrame({"layer": range(4), "auc": [0.5, 0.6, 0.7, 0.55], "low": [0.4, 0.5, 0.6, 0.45],
                       "high": [0.6, 0.7, 0.8, 0.65], "q": [0.2, 0.01, 0.001, 0.5]})
    spec = plots.layer_bands(df, "auc", significant="q", reference=0.5, y_title="AUC").to_dict()
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["area", "line", "point", "rule"]
    assert "datum['q'] < 0.05" in spec["layer"][2]["encoding"]["fill"]["condition"]["test"]
    assert spec["layer"][0]["encoding"]["y"]["title"] == "AUC"
    grouped = plots.layer_bands(df.assign(model="a", floor=0.45), "auc", color="model", reference="floor").to_dict()
    assert grouped["layer"][3]["mark"]["type"] == "line" and grouped["layer"][1]["encoding"]["color"]["field"] == "model"
    one = plots.layer_bands(df, "auc", colour="#e45756", reference=0.5).to_dict()
    assert all(layer["mark"].get("color") == "#e45756" for layer in one["layer"][:3])
    plots.show(plots.layer_bands(df, "auc"), "bands")


def test_show_writes_results_and_limits_inline_data(plots_env, tmp_path):
    plots = plots_env
    small = _frame(4, 8)
    plots.show(plots.heatmap(small, "expert", "layer", "frequency"), "small", table=small)
    folder = tmp_path / "results" / "01_test"
    assert (folder / "small.vl.json").exists() and (folder / "small.csv").exists()
    big = _frame(24, 512)  # 12,288 rows > MAX_ROWS
    with pytest.raises(ValueError, match="image=True"):
        plots.show(plots.heatmap(big, "expert", "layer", "frequency"), "big")
    plots.show(plots.heatmap(big, "expert", "layer", "frequency"), "big", image=True)
    assert (folder / "big.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in folder.iterdir()) == ["big.png", "small.csv", "small.vl.json"]


def test_save_table_is_atomic_and_linkable(plots_env, tmp_path):
    plots = plots_env
    path = plots.save_table(_frame(2, 2), "01_test", "tiny table")
    assert path == tmp_path / "results" / "01_test" / "tiny_table.csv"
    assert path.read_text().splitlines()[0] == "layer,expert,frequency"
    assert 'href="results/01_test/tiny_table.csv"' in plots.download_link(path).data


def test_a_notebook_run_by_hand_never_writes_into_the_book(tmp_path, monkeypatch):
    from babel_lib.core import paths
    from babel_lib.report import plots

    monkeypatch.delenv("BABEL_BOOK_DIR", raising=False)
    monkeypatch.delenv("BABEL_CHAPTER", raising=False)
    monkeypatch.setattr(paths, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    plots.setup("02_heatmaps")  # a notebook names its chapter: one folder a chapter under runs/interactive/
    path = plots.save_table(_frame(2, 2), None, "t")
    assert path == tmp_path / "runs" / "interactive" / "02_heatmaps" / "t.csv" and path.exists()
    plots.setup(None)  # JupyterLab tells the kernel its notebook
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "notebooks" / "05_families.ipynb"))
    assert plots.save_table(_frame(2, 2), None, "t") == tmp_path / "runs" / "interactive" / "05_families" / "t.csv"


def test_scorecard_gathers_the_chapters_verdicts_only(tmp_path):
    import pandas as pd

    from babel_lib.report import verdicts

    rows = [verdicts.row("heatmaps", "a result", "some evidence", "reproduced")]
    for folder in ("02_heatmaps", "scratch", "03_orphan"):  # only 02 has an executed chapter beside it
        (tmp_path / "results" / folder).mkdir(parents=True)
        verdicts.table(rows).to_csv(tmp_path / "results" / folder / "verdicts.csv", index=False)
    write_notebook(tmp_path / "02_heatmaps.ipynb")
    card = verdicts.scorecard(tmp_path)
    assert card["chapter"].tolist() == ["02_heatmaps"] and card["title"].tolist() == ["2. 02_heatmaps"]
    text = verdicts.write_scorecard(tmp_path).read_text()
    assert "1 verdicts from 1 chapters: 1 reproduced; and 0 descriptive statements counted apart." in text
    assert "scratch" not in text
    assert isinstance(card, pd.DataFrame)


def test_scorecard_links_the_robustness_map_with_its_counts(tmp_path):
    import pandas as pd

    from babel_lib.report import verdicts

    (tmp_path / "results" / "02_heatmaps").mkdir(parents=True)
    verdicts.table([verdicts.row("heatmaps", "r", "e", "reproduced")]).to_csv(
        tmp_path / "results" / "02_heatmaps" / "verdicts.csv", index=False)
    write_notebook(tmp_path / "02_heatmaps.ipynb")
    assert "robustness map" not in verdicts.scorecard_markdown(tmp_path)  # no map run: no line
    (tmp_path / "results" / "13_robustness_map").mkdir(parents=True)
    pd.DataFrame({"name": ["shared experts (ch. 4)"], "default": ["not reproduced"], "top-k fraction 0.1": ["reproduced"],
                  "same_as_default": [1]}).to_csv(tmp_path / "results" / "13_robustness_map" / "robustness_grid.csv",
                                                  index=False)
    text = verdicts.scorecard_markdown(tmp_path)
    assert "[robustness map](13_robustness_map.ipynb)" in text
    assert "in 2 cells: shared experts (ch. 4): not reproduced in 1 of 2." in text


@pytest.mark.parametrize("source", book.chapters(), ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_of_every_chapter(source):
    """A parameter papermill cannot parse (e.g. a comment it trips on) is silently not declared, and
    a preset's value for it is then never injected."""
    nb = nbformat.read(source, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = {m.group(1) for m in re.finditer(r"^([A-Za-z_]\w*)\s*=", cell.source, re.MULTILINE)}
    assert assigned and assigned <= set(book.declared_parameters(source)), assigned - set(book.declared_parameters(source))


def test_a_killed_chapters_stage_folder_is_cleaned_by_a_later_run(tmp_path):
    """kill -9 during a chapter leaves its hidden .stage folder; the next run of that chapter removes it, and
    never a stage of a run in progress or of another chapter."""
    import subprocess
    import sys

    code = ("import os, signal, sys; from pathlib import Path; from babel_lib import book; "
            "s = book.stage_folder(Path(sys.argv[1]), '02_heatmaps'); (s / 'partial.ipynb').write_text('x'); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], timeout=120)
    killed = [p for p in tmp_path.iterdir() if p.name.endswith(".stage")]
    assert len(killed) == 1 and killed[0].name.startswith(".02_heatmaps.")
    other = book.stage_folder(tmp_path, "03_high_frequency")  # another chapter's run in progress (this process)
    mine = book.stage_folder(tmp_path, "02_heatmaps")
    assert not killed[0].exists() and other.is_dir() and mine.is_dir()
    again = book.stage_folder(tmp_path, "02_heatmaps")
    assert mine.is_dir() and again.is_dir()  # a run in progress (a live process) is never cleaned
