"""The command line: fast help, one-line errors, inputs checked before any heavy work, outputs never clobbered."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from babel_lib.__main__ import main
from babel_lib.core.cache import Store
from babel_lib.core.errors import CacheCorruptError, InputError, OutputPathError
from babel_lib.data.corpus import UnknownLanguageError

HEAVY = ("torch", "transformers", "pandas", "babel_lib.interventions.prune")


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


# ------------------------------------------------------------------------------ help and version
def test_building_the_parser_imports_nothing_heavy():
    code = ("import sys; from babel_lib.__main__ import build_parser; build_parser(); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_help_has_a_description_and_examples():
    result = subprocess.run([sys.executable, "-m", "babel_lib", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    out = result.stdout
    assert "examples:" in out and "babel run" in out and "babel profile" in out
    assert "--hub" in out and "BABEL_ALLOW_HUB" in out and "--version" in out


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"babel {version('babel_lib')}"


def test_run_help_lists_the_chapters(capsys):
    from babel_lib.book import runner as book

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    names = [p.stem for p in book.chapters()]
    assert names and all(name in out for name in names)
    assert "writes the executed copies and results into --output" in " ".join(out.split())


def test_prune_choices_equal_the_library_constants():
    from babel_lib import __main__ as cli
    from babel_lib.interventions import prune

    assert tuple(cli.RANKINGS) == tuple(prune.RANKINGS)
    assert tuple(cli.ALLOCATIONS) == tuple(a for a in prune.ALLOCATIONS if a not in prune.SCORED_ALLOCATIONS)


TORCH_BLOCKED = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
from babel_lib.__main__ import main
for argv in {argvs!r}:
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    print("rc", argv[0], rc, flush=True)
import babel_lib.book.runner as book
import babel_lib.report.plots as plots
print("imports ok")
"""


def test_light_commands_never_import_torch(tmp_path):
    argvs = [["profiles"], ["check-fresh", "--output", str(tmp_path)], ["build", "--help"], ["cache", "path"],
             ["cache", "list"], ["run", "--help"], ["--help"]]
    result = _python(TORCH_BLOCKED.format(argvs=argvs), BABEL_CACHE=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imports ok" in result.stdout
    assert "ModuleNotFoundError" not in result.stderr and "import of torch" not in result.stderr


# ------------------------------------------------------------------------------ one line per user error
@pytest.mark.parametrize("exc", [
    CacheCorruptError("the cache file is damaged"), OutputPathError("output exists"), InputError("bad value"),
    FileNotFoundError("no such file"), FileExistsError("exists"), PermissionError("denied"),
    UnknownLanguageError("no language"), OSError(28, "No space left on device"),
])
def test_user_errors_print_one_line(exc, monkeypatch, capsys):
    from babel_lib.book import runner as book

    monkeypatch.setattr(book, "PROFILES", type("Broken", (), {"items": lambda self: (_ for _ in ()).throw(exc)})())
    assert main(["profiles"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(exc) in err


def test_chapter_error_prints_one_line(monkeypatch, capsys):
    from babel_lib.book import runner as book

    def fail(*a, **k):
        raise book.ChapterError("1 chapter(s) failed:\n02_heatmaps: see artifacts/failed")

    monkeypatch.setattr(book, "run_all", fail)
    assert main(["run", "02"]) == 1
    assert capsys.readouterr().err.startswith("error: 1 chapter(s) failed")


@pytest.mark.parametrize("exc", [ZeroDivisionError("bug"), ValueError("a bug's ValueError"), OSError(5, "I/O")])
def test_bugs_keep_their_traceback(exc, monkeypatch):
    """Only the project's own errors (and a missing file, a full disk) are user input: a ValueError of a bug
    keeps its traceback."""
    from babel_lib.book import runner as book

    monkeypatch.setattr(book, "PROFILES", type("Broken", (), {"items": lambda self: (_ for _ in ()).throw(exc)})())
    with pytest.raises(type(exc)):
        main(["profiles"])


def test_hub_flag_opts_in_for_the_run(monkeypatch):
    monkeypatch.setenv("BABEL_ALLOW_HUB", "0")  # recorded: the test's end restores the environment
    assert main(["profiles"]) == 0 and os.environ["BABEL_ALLOW_HUB"] == "0"
    assert main(["--hub", "profiles"]) == 0 and os.environ["BABEL_ALLOW_HUB"] == "1"


# ------------------------------------------------------------------------------ cache clear
def _cache_with_user_files(root: Path):
    store = Store(root)
    entry = store.save("counts", {"x": 1}, {"a": np.arange(3)})
    (root / "notes.txt").write_text("mine")
    return entry


@pytest.mark.parametrize("kind", ["..", "../..", "/", "counts/.."])
def test_cache_clear_refuses_paths(kind, tmp_path, monkeypatch, capsys):
    root = tmp_path / "cache"
    entry = _cache_with_user_files(root)
    (tmp_path / "sibling.txt").write_text("keep")
    monkeypatch.setenv("BABEL_CACHE", str(root))
    assert main(["cache", "clear", "--kind", kind, "--yes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "kind" in err
    assert entry.exists() and (root / "notes.txt").exists() and (tmp_path / "sibling.txt").exists()


def test_cache_clear_refuses_an_absolute_folder(tmp_path, monkeypatch, capsys):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "file.txt").write_text("keep")
    monkeypatch.setenv("BABEL_CACHE", str(tmp_path / "cache"))
    assert main(["cache", "clear", "--kind", str(victim), "--yes"]) == 1
    assert (victim / "file.txt").exists()


def test_cache_clear_all_needs_confirmation(tmp_path, monkeypatch, capsys):
    import io

    root = tmp_path / "cache"
    entry = _cache_with_user_files(root)
    monkeypatch.setenv("BABEL_CACHE", str(root))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not interactive
    assert main(["cache", "clear"]) == 1
    assert "--yes" in capsys.readouterr().err and entry.exists()
    assert main(["cache", "clear", "--yes"]) == 0
    assert not entry.exists() and (root / "notes.txt").read_text() == "mine"  # the user's file stays


def test_cache_clear_asks_on_a_terminal(tmp_path, monkeypatch, capsys):
    root = tmp_path / "cache"
    entry = _cache_with_user_files(root)
    monkeypatch.setenv("BABEL_CACHE", str(root))

    class Tty:
        def __init__(self, answer):
            self.answer = answer

        def isatty(self):
            return True

        def readline(self):
            return self.answer

    monkeypatch.setattr(sys, "stdin", Tty("n\n"))
    assert main(["cache", "clear"]) == 1 and entry.exists()
    monkeypatch.setattr(sys, "stdin", Tty("y\n"))
    assert main(["cache", "clear"]) == 0 and not entry.exists()
    monkeypatch.setattr(sys, "stdin", Tty("\n"))
    assert main(["cache", "clear", "--kind", "counts"]) == 0  # one kind: no question


# ------------------------------------------------------------------------------ checked before the work
def _stand_in_pipeline(monkeypatch, study):
    """Replace babel_lib.experts.pipeline by a module whose study() is ``study`` (the command line's only entry)."""
    import types

    import babel_lib.experts

    fake = types.ModuleType("babel_lib.experts.pipeline")
    fake.study = study
    monkeypatch.setitem(sys.modules, "babel_lib.experts.pipeline", fake)
    monkeypatch.setattr(babel_lib.experts, "pipeline", fake, raising=False)


@pytest.fixture
def no_study(monkeypatch):
    """pipeline.study that fails the test when reached (nothing heavy may start before the checks)."""
    calls = []

    def study(**kw):
        calls.append(kw)
        raise AssertionError("the model was loaded before the arguments were checked")

    _stand_in_pipeline(monkeypatch, study)
    return calls


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "-1"], "--batch-size must be a positive integer, got -1"),
    (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["--max-tokens", "0"], "--max-tokens must be a positive integer, got 0"),
    (["--max-length", "1"], "--max-length must be an integer >= 2, got 1"),
    (["--expert-size", "0"], "--expert-size must be a positive integer, got 0"),
    (["--top-k-fraction", "0"], "--top-k-fraction must be a number in (0, 1], got 0.0"),
    (["--languages", "xx_nope"], "Unknown language 'xx_nope'"),
    (["--languages", ","], "No languages given"),
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["--dtype", "float64"], "--dtype must be one of bfloat16"),
    (["--device", "meta"], "device 'meta': a meta device cannot run a model"),
    (["--languages", "[" * 100_000], "Cannot read the language list"),
])
@pytest.mark.parametrize("command", ["profile", "prune"])
def test_bad_numbers_and_languages_fail_before_loading(command, args, message, tmp_path, no_study, fake_prune,
                                                     capsys):
    extra = ["--rate", "0.5", "--output", str(tmp_path / "out")] if command == "prune" else \
        ["--output", str(tmp_path / "p.csv")]
    assert main([command, *args, *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not no_study and not list(tmp_path.iterdir())


def test_device_without_gpu_fails_before_loading(tmp_path, no_study, monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["profile", "--device", "cuda", "--output", str(tmp_path / "p.csv")]) == 1
    assert "no CUDA GPU" in capsys.readouterr().err and not no_study


@pytest.mark.parametrize("layout, message", [
    ("file", "already exists; pass --force"),
    ("folder", "is a folder"),
    ("under_file", "is a file, not a folder"),
])
def test_profile_output_is_checked_first(layout, message, tmp_path, no_study, capsys):
    target = tmp_path / "p.csv"
    if layout == "file":
        target.write_text("user data")
    elif layout == "folder":
        target.mkdir()
    else:
        (tmp_path / "f").write_text("a file")
        target = tmp_path / "f" / "p.csv"
    assert main(["profile", "--languages", "eng", "--output", str(target)]) == 1
    assert message in capsys.readouterr().err and not no_study
    if layout == "file":
        assert target.read_text() == "user data"


def test_prune_output_existing_folder_is_kept(tmp_path, no_study, fake_prune, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main(["prune", "--rate", "0.5", "--languages", "eng", "--output", str(out)]) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "years of work" and not no_study


def test_prune_never_replaces_a_file_by_a_folder(tmp_path, no_study, fake_prune, capsys):
    out = tmp_path / "model.bin"
    out.write_text("user data")
    for force in ([], ["--force"]):
        assert main(["prune", "--rate", "0.5", "--languages", "eng", "--output", str(out), *force]) == 1
        assert "is a file" in capsys.readouterr().err
    assert out.read_text() == "user data" and not no_study


# ------------------------------------------------------------------------------ runs that reach the work
class FakeProfile:
    def __init__(self, languages):
        self.languages = list(languages)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame({"language": self.languages, "layer": 0, "expert": 0, "count": 1})

    def describe(self):
        return f"{len(self.languages)} languages"


@pytest.fixture
def fake_study(monkeypatch):
    """pipeline.study returning a stand-in profile of the languages asked for (records its arguments): these
    tests check the command line, not the engine."""
    from types import SimpleNamespace

    calls = []

    def study(**kw):
        calls.append(kw)
        return SimpleNamespace(profile=FakeProfile(kw["languages"]), lm=SimpleNamespace(description="a model"),
                               partition=None)

    _stand_in_pipeline(monkeypatch, study)
    return calls


@pytest.fixture
def fake_prune(monkeypatch):
    """A stand-in for babel_lib.interventions.prune that records the ranking language; the folder is written by
    the real save_pruned (atomic, never over what it may not replace)."""
    return _install_fake_prune(monkeypatch)


def _install_fake_prune(monkeypatch):
    import types
    from types import SimpleNamespace

    import babel_lib.interventions
    from babel_lib.interventions.prune import save_pruned as real_save_pruned

    class Writer:  # a stand-in model whose save_pretrained writes a config.json
        def save_pretrained(self, folder):
            (Path(folder) / "config.json").write_text('{"model_type": "llama"}')

    seen = []
    fake = types.ModuleType("babel_lib.interventions.prune")
    fake.check_rate = lambda rate: rate
    fake.rank_experts = lambda profile, by, language=None, seed=0: seen.append((by, language)) or "ranking"

    class Plan:
        def describe(self):
            return "plan"

    fake.prune_plan = lambda ranking, rate, allocation="uniform": Plan()
    fake.prune_model = lambda lm, partition, plan: "small"

    fake.save_pruned = lambda small, folder, force=False: real_save_pruned(
        SimpleNamespace(model=Writer(), tokenizer=None), folder, force=force)
    fake.size_report = lambda lm, small: {"params_dense": 2, "params_pruned": 1, "params_removed": 0.5,
                                          "ffn_params_removed": 0.5}
    monkeypatch.setitem(sys.modules, "babel_lib.interventions.prune", fake)
    monkeypatch.setattr(babel_lib.interventions, "prune", fake, raising=False)
    return seen


def test_empty_language_entries_are_dropped(tmp_path, fake_study):
    assert main(["profile", "--languages", "eng,", "--output", str(tmp_path / "p.csv")]) == 0
    assert fake_study[0]["languages"] == ["eng"]
    assert (tmp_path / "p.csv").read_text().startswith("language,layer")


def test_profile_force_replaces_a_file(tmp_path, fake_study):
    target = tmp_path / "p.csv"
    target.write_text("old")
    assert main(["profile", "--languages", "eng,fra", "--output", str(target)]) == 1
    assert target.read_text() == "old" and not fake_study
    assert main(["profile", "--languages", "eng,fra", "--output", str(target), "--force"]) == 0
    assert target.read_text().startswith("language,layer")


def test_prune_language_by_name(tmp_path, fake_study, fake_prune, capsys):
    out = tmp_path / "pruned"
    assert main(["prune", "--rate", "0.5", "--languages", "eng", "--by", "language", "--language", "French",
                 "--output", str(out)]) == 0, capsys.readouterr().err
    assert fake_prune == [("language", "fra")] and fake_study[0]["languages"] == ["eng", "fra"]
    assert (out / "config.json").exists()
    assert main(["prune", "--rate", "0.5", "--languages", "eng", "--output", str(out)]) == 1  # exists now
    assert "already exists; pass --force" in capsys.readouterr().err
    assert main(["prune", "--rate", "0.5", "--languages", "eng", "--output", str(out), "--force"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["pruned"]  # replaced in place, nothing left beside it


def test_prune_unknown_language_fails_before_loading(tmp_path, no_study, fake_prune, capsys):
    assert main(["prune", "--rate", "0.5", "--by", "language", "--language", "Klingon",
                 "--output", str(tmp_path / "o")]) == 1
    assert "Unknown language 'Klingon'" in capsys.readouterr().err and not no_study


def test_study_keywords_fit_the_pipeline(tmp_path, monkeypatch):
    """The keywords the command line passes are ones pipeline.study accepts."""
    import inspect
    from types import SimpleNamespace

    from babel_lib.experts import pipeline

    signature, seen = inspect.signature(pipeline.study), []

    def study(**kw):
        seen.append(kw)
        return SimpleNamespace(profile=FakeProfile(kw["languages"]), lm=SimpleNamespace(description="a model"))

    monkeypatch.setattr(pipeline, "study", study)
    assert main(["profile", "--languages", "eng", "--seed", "3", "--output", str(tmp_path / "p.csv")]) == 0
    bound = signature.bind(**seen[0]).arguments
    assert bound["languages"] == ["eng"] and bound["seeds"] == (3,)


def test_run_dry_run_checks_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", "02", "-p", "languages", '["eng","deu"]', "--output", str(out), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out / "02_heatmaps.ipynb")
    assert '"languages": ["eng", "deu"]' in captured.err
    assert not out.exists()
    assert main(["run", "02", "-p", "expert_size", '"abc"', "--output", str(out), "--dry-run"]) == 1
    assert "expert_size must be an integer" in capsys.readouterr().err


# ------------------------------------------------------------------------------ outputs never lost
def _appearing_study(target, layout):
    """A pipeline.study during which something appears at ``target`` (another process, the user)."""
    from types import SimpleNamespace

    def study(**kw):
        if layout == "file":
            target.write_text("user data")
        else:
            target.mkdir()
            if layout == "folder":
                (target / "thesis.tex").write_text("years of work")
        return SimpleNamespace(profile=FakeProfile(kw["languages"]), lm=SimpleNamespace(description="a model"),
                               partition=None)

    return study


@pytest.mark.parametrize("layout", ["file", "folder", "empty_folder"])
@pytest.mark.parametrize("command", ["profile", "prune"])
def test_an_output_that_appears_during_the_run_is_kept(command, layout, tmp_path, monkeypatch, fake_prune, capsys):
    target = tmp_path / ("out" if command == "prune" else "p.csv")
    if command == "profile" and layout != "file":
        pytest.skip("a folder at a file's path is refused at commit as well as at start")
    _stand_in_pipeline(monkeypatch, _appearing_study(target, layout))
    extra = ["--rate", "0.5"] if command == "prune" else []
    assert main([command, "--languages", "eng", *extra, "--output", str(target)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "appeared" in err and "--force" in err
    if layout == "file":
        assert target.read_text() == "user data"
    else:
        assert [p.name for p in target.iterdir()] == (["thesis.tex"] if layout == "folder" else [])
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file or folder left


def test_prune_force_replaces_only_a_model_folder(tmp_path, no_study, fake_prune, capsys):
    out = tmp_path / "documents"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    assert main(["prune", "--rate", "0.5", "--languages", "eng", "--output", str(out), "--force"]) == 1
    err = capsys.readouterr().err
    assert "not a model folder" in err and not no_study
    assert (out / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("node", ["fifo", "device"])
def test_profile_force_never_replaces_a_special_file(node, tmp_path, no_study, capsys):
    target = tmp_path / "p.csv"
    if node == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/null")  # a character device (through a link: a test never touches /dev)
    assert main(["profile", "--languages", "eng", "--output", str(target), "--force"]) == 1
    assert "not a regular file" in capsys.readouterr().err and not no_study
    assert target.is_fifo() if node == "fifo" else target.is_symlink() and target.is_char_device()


@pytest.fixture
def no_chapter(monkeypatch):
    """book.run_chapter that fails the test when reached."""
    from babel_lib.book import runner as book

    calls = []

    def run_chapter(*a, **k):
        calls.append(a)
        raise AssertionError("a chapter ran before the output was checked")

    monkeypatch.setattr(book, "run_chapter", run_chapter)
    return calls


def test_run_into_an_existing_output_needs_force(tmp_path, no_chapter, capsys):
    out = tmp_path / "mine"
    (out / "results" / "02_heatmaps").mkdir(parents=True)
    (out / "results" / "02_heatmaps" / "table.csv").write_text("mine")
    (out / "_toc.yml").write_text("mine")
    (out / "scorecard.md").write_text("mine")
    for dry in ([], ["--dry-run"]):
        assert main(["run", "02", "--output", str(out), *dry]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and "already exists; pass --force" in err
    assert not no_chapter
    assert all(p.read_text() == "mine" for p in out.rglob("*") if p.is_file())
    assert main(["run", "02", "--output", str(out), "--dry-run", "--force"]) == 0
    assert main(["run", "02", "--output", str(tmp_path / "new"), "--dry-run"]) == 0  # a new folder needs none


# ------------------------------------------------------------------------------ parameters checked before any kernel
@pytest.mark.parametrize("key, value, message", [
    ("expert_size", "0", "expert_size must be a positive integer, got 0"),
    ("top_k_fraction", "5", "top_k_fraction must be a number in (0, 1], got 5.0"),
    ("batch_size", "-4", "batch_size must be a positive integer, got -4"),
    ("rates", "[1.5]", "rates[0] must be a number in [0, 1), got 1.5"),
    ("device", "cuda", "device 'cuda': torch sees no CUDA GPU"),
    ("dtype", "float64", "dtype must be one of bfloat16"),
    ("corpus_name", "xyz", "corpus_name must be one of udhr, bible, got 'xyz'"),
    ("hf_ratio", "-1", "hf_ratio must be a positive number, got -1.0"),
    ("permutations", "1e12", "permutations must be at most 1,000,000"),
    ("seed", "-1", "seed must be an integer >= 0, got -1"),
    ("matrix_languages", '["eng", "Klingon"]', "Unknown language 'Klingon'"),
    ("bible_languages", '["eng", "Klingon"]', "Unknown language 'Klingon'"),
    ("wide_languages", "families:0", "families:N needs 1 <= N"),
    ("sister_trios", "1", "sister_trios must be an integer >= 2, got 1"),
    ("languages", "[" * 100 + "]" * 100, "nested more than"),
])
def test_dry_run_range_checks_every_parameter_in_one_line(key, value, message, tmp_path, no_chapter, monkeypatch,
                                                         capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["run", "-p", key, value, "--output", str(tmp_path / "out"), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not no_chapter and not (tmp_path / "out").exists()


def test_parameter_rules_cover_the_command_line_options_and_dtypes():
    """The command line checks its options with the chapters' rules, and the rule for dtype names what
    models.resolve_dtype loads."""
    from babel_lib.core import validate
    from babel_lib.core.models import resolve_dtype

    for dtype in validate.DTYPES:
        resolve_dtype(dtype)
    with pytest.raises(InputError):
        resolve_dtype("float64")
    for name in ("expert_size", "batch_size", "max_length", "top_k_fraction", "seed", "dtype", "max_passages"):
        assert name in validate.PARAMETER_RULES


def test_prune_language_only_with_by_language(tmp_path, no_study, fake_prune, capsys):
    """--language spa with --by multilingual would silently add spa to the ranked languages."""
    assert main(["prune", "--rate", "0.5", "--languages", "eng", "--by", "multilingual", "--language", "spa",
                 "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "--language ranks the experts only with --by language" in err and not no_study


def test_a_language_without_text_is_one_line(tmp_path, monkeypatch, capsys):
    """The corpus's own input errors (no text in a split, no passage shared by every language) are user input,
    not a bug: one line."""
    from babel_lib.data import corpus

    def study(**kw):
        corpus._rows("xx_none", "calibration")

    _stand_in_pipeline(monkeypatch, study)
    assert main(["profile", "--languages", "eng", "--output", str(tmp_path / "p.csv")]) == 1
    assert capsys.readouterr().err.startswith("error: No text for language 'xx_none'")


def test_a_full_disk_keeps_the_chapters_already_run(tmp_path, monkeypatch, capsys):
    """Each chapter is put in place as it completes: a full disk in a later chapter is one line, and the earlier
    chapters' notebooks and results stay."""
    import errno

    from babel_lib.book import runner as book

    def run_chapter(source, profile, overrides, output_dir, **kw):
        source = book.find_chapter(source)
        if source.stem.startswith("03"):
            raise OSError(errno.ENOSPC, "No space left on device")
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        target = Path(output_dir) / source.name
        target.write_text("executed")
        return target

    monkeypatch.setattr(book, "run_chapter", run_chapter)
    assert main(["run", "02", "03", "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "error: [Errno 28] No space left on device"
    assert (tmp_path / "out" / "02_heatmaps.ipynb").read_text() == "executed"


# ------------------------------------------------------------------------------ property: no byte lost without --force
def _tree(root: Path) -> dict:
    """Every path under root with its bytes (None for folders), FIFOs by name."""
    out = {}
    for path in sorted(root.rglob("*")):
        out[path.relative_to(root).as_posix()] = path.read_bytes() if path.is_file() else path.is_fifo()
    return out


def _plain_study(**kw):
    from types import SimpleNamespace

    return SimpleNamespace(profile=FakeProfile(kw["languages"]), lm=SimpleNamespace(description="a model"),
                           partition=None)


def _fake_chapter(source, profile, overrides, output_dir, **kw):
    """A stand-in chapter run: writes what run_chapter writes (a notebook, results/<chapter>/)."""
    from babel_lib.book import runner as book

    source = book.find_chapter(source)
    results = Path(output_dir) / "results" / source.stem
    results.mkdir(parents=True, exist_ok=True)
    (results / "table.csv").write_text("new")
    (Path(output_dir) / source.name).write_text("new")
    return Path(output_dir) / source.name


OUTPUT_ARGS = st.lists(st.sampled_from([
    ["--languages", "eng"], ["--languages", "eng,fra"], ["--languages", "xx_nope"], ["--seed", "1"], ["--seed", "-1"],
    ["--batch-size", "4"], ["--batch-size", "0"], ["--by", "random"], ["--by", "language", "--language", "fra"],
    ["--language", "spa"], ["--rate", "0.3"], ["--rate", "1.5"], ["--dry-run"], ["--stale"],
    ["-p", "expert_size", "16"], ["-p", "expert_size", "0"], ["--profile", "smoke"], ["--device", "meta"],
]), max_size=4)


@settings(max_examples=60, deadline=None)
@given(command=st.sampled_from(["profile", "prune", "run"]),
       layout=st.sampled_from(["file", "folder", "model_folder", "book_folder", "fifo"]), args=OUTPUT_ARGS)
def test_no_command_changes_an_existing_output_without_force(command, layout, args):
    """Any invocation of a command that writes an output, with any other arguments (valid or not), leaves every
    byte of an output that exists unchanged when --force is not given."""
    import tempfile

    from babel_lib.book import runner as book

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        root = Path(tmp)
        mp.setenv("BABEL_CACHE", str(root / "cache"))
        target = root / "out"
        if layout == "file":
            target.write_text("user data")
        elif layout == "fifo":
            os.mkfifo(target)
        else:
            target.mkdir()
            name = {"folder": "thesis.tex", "model_folder": "config.json", "book_folder": "_toc.yml"}[layout]
            (target / name).write_text('{"model_type": "llama"}' if layout == "model_folder" else "user data")
            (target / "results" / "02_heatmaps").mkdir(parents=True)
            (target / "results" / "02_heatmaps" / "table.csv").write_text("user table")
        _stand_in_pipeline(mp, _plain_study)
        _install_fake_prune(mp)
        mp.setattr(book, "run_chapter", _fake_chapter)
        argv = [command, *(a for pair in args for a in pair), "--output", str(target)]
        if command == "run":
            argv.insert(1, "02")
        if command == "prune" and "--rate" not in argv:
            argv += ["--rate", "0.5"]
        before = _tree(root)
        try:
            main(argv)
        except SystemExit:
            pass  # an option the command does not take: argparse's usage error
        assert {k: v for k, v in _tree(root).items() if k.startswith("out")} == \
            {k: v for k, v in before.items() if k.startswith("out")}
