"""The library's shape, read from its imports: layers that import only downward, no import cycles, no
reach into another module's private names, and no module directly under ``babel_lib/`` but the package's
own two."""

import ast
from pathlib import Path

import pytest

LIBRARY = Path(__file__).resolve().parents[1] / "babel_lib"
#: Bottom to top: a module may import its own layer and the layers before it (chapters may import each
#: other; the cycle test keeps that honest).
LAYERS = ["core", "data", "stats", "experts", "interventions", "report", "chapters", "book", "testing"]


def _module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    parts = parts[len(parts) - 1 - parts[::-1].index("babel_lib"):]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(library=LIBRARY) -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(library.rglob("*.py")) if "__pycache__" not in p.parts}


def _imports(path: Path, modules: dict) -> list[tuple[str, list[str], int]]:
    """(imported babel_lib module, names taken from it, line) for every import in the file, function-level
    ones included; ``from pkg import sub`` resolves to the submodule."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "babel_lib"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "babel_lib":
                continue
            plain = []
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    out.append((f"{base}.{alias.name}", [], node.lineno))
                else:
                    plain.append(alias.name)
            if plain:
                out.append((base, plain, node.lineno))
    return out


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_violations(library=LIBRARY) -> list[str]:
    modules = _modules(library)
    bad = []
    for name, path in modules.items():
        own = _layer(name)
        if own is None or own == "__main__":
            continue
        for target, _, line in _imports(path, modules):
            other = _layer(target)
            if other is None or other == "__main__":
                bad.append(f"{name}:{line} imports {target} (the package itself)")
            elif LAYERS.index(other) > LAYERS.index(own):
                bad.append(f"{name}:{line} imports {target}: layer {other!r} is above {own!r}")
    return bad


def import_cycles(library=LIBRARY) -> list[list[str]]:
    modules = _modules(library)
    graph = {name: sorted({t for t, _, _ in _imports(path, modules) if t in modules and t != name})
             for name, path in modules.items()}
    cycles, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node)
    return cycles


def private_reach_ins(library=LIBRARY) -> list[str]:
    """``from babel_lib.x import _name`` and ``x._name`` on an imported babel_lib module, across modules."""
    modules = _modules(library)
    bad = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for target, names, line in _imports_of_node(node, path, modules):
                    bad += [f"{name}:{line} imports {target}.{n}" for n in names
                            if n.startswith("_") and not n.startswith("__") and target != name]
                for alias in node.names:
                    full = f"{_resolved_base(node, path)}.{alias.name}"
                    if full in modules:
                        aliases[alias.asname or alias.name] = full
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return bad


def _resolved_base(node: ast.ImportFrom, path: Path) -> str:
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    base = node.module or ""
    if node.level:
        parts = package.split(".")
        base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
    return base


def _imports_of_node(node, path, modules):
    base = _resolved_base(node, path)
    if base.split(".")[0] != "babel_lib":
        return []
    return [(base, [a.name for a in node.names if f"{base}.{a.name}" not in modules], node.lineno)]


def test_only_the_package_files_sit_directly_under_the_library():
    assert sorted(p.name for p in LIBRARY.glob("*.py")) == ["__init__.py", "__main__.py"]
    assert sorted(p.name for p in LIBRARY.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(LAYERS)


def test_imports_only_go_down_the_layers():
    assert layer_violations() == []


def test_no_import_cycles():
    assert import_cycles() == []


def test_no_module_reaches_into_another_modules_private_names():
    assert private_reach_ins() == []


def _write(root: Path, files: dict) -> Path:
    lib = root / "babel_lib"
    for rel, text in files.items():
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        (lib / rel).write_text(text)
    return lib


@pytest.mark.parametrize("files, check, expected", [
    ({"core/__init__.py": "", "core/a.py": "from babel_lib.chapters import x\n", "chapters/__init__.py": "",
      "chapters/x.py": ""}, layer_violations, 1),
    ({"core/__init__.py": "", "core/a.py": "def f():\n    from babel_lib.report.plots import show\n",
      "report/__init__.py": "", "report/plots.py": ""}, layer_violations, 1),
    ({"stats/__init__.py": "", "stats/a.py": "from babel_lib.stats import b\n",
      "stats/b.py": "def f():\n    from babel_lib.stats.a import g\n"}, import_cycles, 1),
    ({"core/__init__.py": "", "core/a.py": "from babel_lib.core.b import _hidden\n", "core/b.py": "_hidden = 1\n"},
     private_reach_ins, 1),
    ({"core/__init__.py": "", "core/a.py": "from babel_lib.core import b\nb._hidden()\n", "core/b.py": ""},
     private_reach_ins, 1),
    ({"core/__init__.py": "", "core/a.py": "from babel_lib.core import b\n", "chapters/__init__.py": "",
      "chapters/x.py": "from babel_lib.core.a import thing\nfrom babel_lib.chapters import y\n", "chapters/y.py": "",
      "core/b.py": ""}, layer_violations, 0),
])
def test_the_rules_catch_what_they_guard_against(tmp_path, files, check, expected):
    lib = _write(tmp_path, files)
    assert len(check(lib)) == expected
