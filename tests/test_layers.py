"""The package's shape: no import cycle between delift's modules.

Every ``import`` and ``from ... import`` in every module counts, wherever it stands (module level,
inside a function, under ``if TYPE_CHECKING``): a cycle that only a lazy import hides is still a
cycle for the reader. Edges go to the module imported (``from delift.a import b`` counts ``delift.a.b``
when ``b`` is a module, else ``delift.a``); a package's ``__init__`` is the package's own node, and
importing a module from outside its package also runs (so depends on) the package's ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import delift

ROOT = Path(delift.__file__).resolve().parent


def module_names() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The delift modules that ``name`` (at ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from .x import y
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    targets = {target for target in found if target in known}
    for target in list(targets):  # the packages around the target that the importer is not inside of
        parts = target.split(".")
        for depth in range(2, len(parts)):
            package = ".".join(parts[:depth])
            if package in known and not (name + ".").startswith(package + "."):
                targets.add(package)
    return targets - {name}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            step = next(stack[-1], None)
            if step is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(step) == 1:
                return path[path.index(step):] + [step]
            elif not state.get(step):
                state[step] = 1
                path.append(step)
                stack.append(iter(sorted(graph[step])))
    return None


def test_find_cycle_on_hand_made_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "d"}, "b": set(), "d": {"d2"}, "d2": {"d"}}) == ["d", "d2", "d"]


def test_imports_of_reads_every_kind_of_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import delift.x\nfrom delift.y import z\nfrom typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    from delift.w import V\n"
                      "def f():\n    from . import sibling\n")
    known = {"delift.x", "delift.y", "delift.y.z", "delift.w", "delift.pkg", "delift.pkg.sibling", "delift.pkg.m"}
    # delift.y.z from outside package delift.y also runs delift/y/__init__; the own package's does not count
    assert imports_of("delift.pkg.m", source, known) == {"delift.x", "delift.y", "delift.y.z", "delift.w",
                                                         "delift.pkg.sibling"}


def test_delift_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_composing_a_config_loads_no_torch():
    """The entry point types and checks a config before anything heavy loads (a bad value fails in a blink)."""
    import subprocess
    import sys

    code = "import sys, delift.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert out.stdout.strip() == "[]"
