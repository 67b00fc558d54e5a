"""The Pages workflow's steps (.github/workflows/book.yml) work in its environment: the book
toolchain without torch, transformers, scipy, scikit-learn, accelerate or datasets."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"

#: Packages the workflow does not install (the model and statistics stack).
ABSENT = ("torch", "transformers", "scipy", "sklearn", "accelerate", "datasets", "safetensors", "gguf")

STEPS = """
import sys
for name in {absent!r}:
    sys.modules[name] = None  # `import name` now raises ImportError, as in the workflow's environment
from babel_lib.__main__ import main
rc = main(["check-fresh"])
print("check-fresh rc", rc, flush=True)
rc = main(["build", "--output", {out!r}])
print("build rc", rc, flush=True)
"""


def test_workflow_installs_what_the_light_commands_import():
    text = WORKFLOW.read_text(encoding="utf-8")
    for name in ("jupyter-book", "altair", "vl-convert-python", "papermill", "nbformat", "pandas", "networkx"):
        assert name in text, f"the Pages workflow does not install {name}"
    assert "check-fresh" in text and "make book-html" in text


@pytest.mark.slow
def test_check_fresh_and_build_without_the_model_stack(tmp_path):
    code = STEPS.format(absent=ABSENT, out=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert "check-fresh rc 0" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]
    assert "build rc 0" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]
    assert (tmp_path / "_build" / "html" / "index.html").exists()


def _published_config(tmp_path, server="https://github.com", repository="someone/babel-book") -> Path:
    """_config.yml after the workflow's step that points the repository button (its `run:` lines,
    with GitHub's expressions filled in, run on a copy)."""
    import yaml

    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    step = next(s for s in workflow["jobs"]["build"]["steps"] if "repository" in s.get("name", "").lower()
                and "run" in s)
    script = (step["run"].replace("${{ github.server_url }}", server)
              .replace("${{ github.repository }}", repository))
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text(encoding="utf-8"), encoding="utf-8")
    subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, check=True)
    return tmp_path / "_config.yml"


def test_the_workflow_step_gives_the_theme_a_repository_link(tmp_path):
    """Jupyter Book turns `repository.url` and `html.use_repository_button` into theme options; an
    `html_theme_options` under `sphinx.config` replaces them unless `recursive_update` merges."""
    import yaml
    from jupyter_book.config import get_final_config

    config = _published_config(tmp_path)
    final, _ = get_final_config(user_yaml=yaml.safe_load(config.read_text(encoding="utf-8")),
                                cli_config={"latex_individualpages": False}, sourcedir=str(ROOT / "book"))
    options = final["html_theme_options"]
    assert options.get("repository_url") == "https://github.com/someone/babel-book", options
    assert options.get("use_repository_button") is True, options
    assert options.get("search_bar_text"), "the book's own theme options were lost"


@pytest.mark.slow
def test_the_published_book_links_to_its_repository(tmp_path, monkeypatch):
    from babel_lib.book import runner as book

    monkeypatch.setattr(book, "CONFIG", _published_config(tmp_path))
    html = book.build_book(strict=True, path_output=tmp_path / "site")
    page = (html / "intro.html").read_text(encoding="utf-8")
    assert 'href="https://github.com/someone/babel-book"' in page, "no link to the repository on the first page"
