"""The chapters' notebooks show short calls of library functions: no definitions, lambdas or loops, no
chart built inline, each chapter's code in the chapter module of its name, and at most 1,000 code lines
in all (non-blank lines of code cells that are not comments)."""

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHAPTERS = ROOT / "babel_lib" / "chapters"
#: The notebooks' code lines in all, at most.
CODE_LINE_BUDGET = 1000


def _code(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def code_lines(path: Path) -> int:
    return sum(1 for source in _code(path) for line in source.splitlines()
               if line.strip() and not line.strip().startswith("#"))


def rule_breaks(path: Path) -> list[str]:
    """What a notebook's code does that belongs in a library module."""
    out = []
    for i, source in enumerate(_code(path)):
        tree = ast.parse(source)
        for node in ast.walk(tree):
            kind = {ast.FunctionDef: "a function definition", ast.AsyncFunctionDef: "a function definition",
                    ast.ClassDef: "a class definition", ast.Lambda: "a lambda", ast.For: "a loop",
                    ast.While: "a loop"}.get(type(node))
            if kind:
                out.append(f"code cell {i}, line {node.lineno}: {kind}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n.split(".")[0] == "altair" for n in names):
                    out.append(f"code cell {i}: imports altair (charts are made by the chapter module)")
    return out


def chapter_module(path: Path) -> str:
    return path.stem.split("_", 1)[1]


def test_the_notebooks_stay_within_their_code_budget():
    lines = {p.stem: code_lines(p) for p in NOTEBOOKS}
    assert sum(lines.values()) <= CODE_LINE_BUDGET, lines


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_holds_calls_not_logic(path):
    assert rule_breaks(path) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_chapter_has_its_module_and_imports_it(path):
    module = chapter_module(path)
    assert (CHAPTERS / f"{module}.py").is_file(), f"no babel_lib/chapters/{module}.py for {path.name}"
    imports = [node for source in _code(path) for node in ast.walk(ast.parse(source))
               if isinstance(node, ast.ImportFrom) and node.module == "babel_lib.chapters"]
    assert any(a.name == module for node in imports for a in node.names), \
        f"{path.name} does not import babel_lib.chapters.{module}"


def test_the_rules_catch_what_they_guard_against(tmp_path):
    cells = [{"cell_type": "code", "source": "import altair as alt\nf = lambda x: x\nfor i in range(3):\n    pass\n",
              "metadata": {}}, {"cell_type": "code", "source": "def g():\n    # a comment\n    return 1\n",
                                "metadata": {}}]
    bad = tmp_path / "99_bad.ipynb"
    bad.write_text(json.dumps({"cells": cells}))
    assert len(rule_breaks(bad)) == 4 and code_lines(bad) == 6
