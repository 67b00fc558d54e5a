"""Every command the README shows works: each line of its bash blocks is run here, smoke-sized where
the real command takes long (extra arguments that shrink it are appended, never changing what it
does), dry-run where it would run a whole chapter or book (`make -n`, `babel run --dry-run`; the
chapters themselves run in test_notebooks.py, the build in test_browser.py), and read as a synopsis
(every subcommand and option it names exists) in the command-line summary."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from babel_lib.book import runner as book

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Appended to commands that profile real text, so that they take seconds (argparse keeps the last value).
SMALL = ["--languages", "eng,fra", "--max-tokens", "64", "--max-length", "32", "--batch-size", "4"]


def commands() -> list[str]:
    """Every command line of the README's bash blocks (comments and blank lines dropped)."""
    text = README.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        block = re.sub(r"\\\n\s*", "", block)  # continued lines
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def is_synopsis(line: str) -> bool:
    """A usage line ([optional] parts, a|b choices or ...) rather than a command to paste."""
    def placeholder(word):
        if word == "..." or ("|" in word and not word.startswith(("[", "{"))):
            return True
        if word.startswith("["):
            try:
                json.loads(word)
            except ValueError:
                return True
        return False
    return any(placeholder(w) for w in shlex.split(line))


def babel_args(line: str) -> list[str] | None:
    """The arguments after the babel program name, or None when the line is not a babel command."""
    words = shlex.split(line)
    for prefix in (["babel"], [".venv/bin/babel"], [".venv/bin/python", "-m", "babel_lib"],
                   ["python", "-m", "babel_lib"]):
        if words[:len(prefix)] == prefix:
            return words[len(prefix):]
    return None


def cli(args, tmp_path, timeout=600):
    env = {**os.environ, "BABEL_CACHE": os.environ.get("BABEL_CACHE", str(Path.home() / ".cache" / "babel"))}
    return subprocess.run([sys.executable, "-m", "babel_lib", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_the_readme_has_its_commands():
    lines = commands()
    assert any(line == "make book" for line in lines) and any(line == "make test" for line in lines)
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1].strip() == "make test"


@pytest.mark.parametrize("line", [c for c in commands() if c.startswith("make ")])
def test_make_targets_exist(line):
    res = subprocess.run(["make", "-n", *shlex.split(line)[1:]], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("line", [c for c in commands() if babel_args(c) is not None and is_synopsis(c)])
def test_synopsis_lines_name_real_subcommands_and_options(line):
    args = [a for a in babel_args(line) if a != "--hub"]
    sub = args[0]
    res = subprocess.run([sys.executable, "-m", "babel_lib", sub, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    options = set(re.findall(r"--[a-z][a-z-]*", " ".join(args[1:])))
    missing = [o for o in options if o not in res.stdout]
    assert not missing, f"babel {sub} has no {missing}"
    if sub == "cache":
        for word in re.findall(r"\b(list|clear|path)\b", line):
            assert cli(["cache", word, "--help"], ROOT).returncode == 0


@pytest.mark.parametrize("line", [c for c in commands() if babel_args(c) is not None and not is_synopsis(c)])
def test_babel_commands_run(line, tmp_path):
    args = babel_args(line)
    sub = next(a for a in args if not a.startswith("--"))
    if sub == "run":
        extra = ["--dry-run", "--output", str(tmp_path / "out")]
        if "paper" in args and not _has_cuda():  # the paper profile names a GPU, which the dry run checks
            extra += ["-p", "device", "cpu"]
        res = cli(args + extra, ROOT)
    elif sub in ("profile", "prune"):
        if "--device" in args and "cuda" in args or "--hub" in args:
            pytest.skip("needs the Hugging Face hub or a GPU: the same command without them is tested")
        output = args[args.index("--output") + 1]
        args[args.index("--output") + 1] = str(tmp_path / output)
        res = cli(args + SMALL, tmp_path)
        assert (tmp_path / output).exists(), res.stderr
    elif sub in ("build", "verify"):
        pytest.skip(f"babel {sub} runs in test_browser.py / test_reproduce.py")
    else:
        res = cli(args, ROOT)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.real_model
@pytest.mark.notebook
@pytest.mark.parametrize("line", [c for c in commands() if c.split()[0].endswith("papermill")])
def test_papermill_commands_run(line, tmp_path):
    """The README's papermill line, with the smoke profile's small budgets added (its own -p values win)."""
    words = shlex.split(line)
    notebook = ROOT / words[1]
    given = dict(zip(words[4::3], words[5::3])) if len(words) > 3 else {}
    small = {k: v for k, v in book.resolve_parameters(notebook, "smoke").items() if k not in given}
    extra = ["-y", json.dumps(small)] if small else []  # JSON is YAML
    out = tmp_path / Path(words[2]).name
    res = subprocess.run([str(Path(sys.executable).parent / "papermill"), str(notebook), str(out), *words[3:], *extra,
                          "--cwd", str(ROOT), "--no-progress-bar"], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "BABEL_BOOK_DIR": str(tmp_path)})  # its tables: here, not in runs/
    assert res.returncode == 0, res.stderr[-3000:]
    assert out.exists()


def test_setup_pins_every_package():
    """make setup installs each package at a pinned version (name==version, or requirements.txt), so a setup
    months later gets the same code."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    for line in re.findall(r"pip install ([^;&\n]*)", text):
        names = [w for w in shlex.split(line) if not w.startswith(("-", "$(", ".")) and w != "requirements.txt"]
        assert all("==" in w for w in names), f"unpinned in the Makefile: pip install {line}"


def test_bad_input_rows_name_tests_that_exist():
    """Every test the README's bad-input table names (``file.py`` or ``file.py::test``) exists."""
    text = README.read_text(encoding="utf-8").split("## Bad input", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(test_\w+\.py)(?:::(\w+))?`", text)
    assert len(named) > 20
    for file, test in named:
        source = (ROOT / "tests" / file).read_text(encoding="utf-8")
        assert not test or re.search(rf"^def {test}\(", source, re.M), f"README names {file}::{test}, not found"
