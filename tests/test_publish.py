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
