"""How well the house is kept (issue 28), measured from the source: ``python experiments/house.py [root] [--verbose]``.

Nothing is imported from the tree measured (no torch): every count is read with :mod:`ast` and PyYAML by
:mod:`house_source` (:class:`~house_source.Index`: names, constants and dataclass defaults followed through
imports). The last line printed is always
``settings declared twice: <a>; yaml restating defaults: <b>; shadow name lists: <c>; import cycles: <d>``;
``--verbose`` prints every finding as ``file:line`` first, ``--fail`` exits 1 when a count is not 0 and
``--layout`` prints the package map instead (``docs/layout.md``). The four counts:

1. **Settings declared twice** (:func:`declared_twice`): one per (class, knob) where a class has a nested
   ``Config`` dataclass and its ``__init__`` also takes a parameter *with a default* named like a field of that
   Config. Reported beside it, not counted: *conflicts*, such a knob whose two code defaults differ (both values
   static; ``None`` in ``__init__`` for a nested-dataclass field means "its default" and is no conflict), and
   knobs *validated twice*: read in ``Config.problems()`` (``self.<knob>`` or its name as a string) and tested
   in ``__init__`` by an ``assert`` or an ``if`` that raises (or iterated by a ``for`` around such an ``if``).
2. **YAML restating defaults** (:func:`yaml_restating`): one per leaf of ``conf/config.yaml`` and of every
   ``conf/<group>/<option>.yaml`` whose value equals the default of the field it is merged into. Left out:
   ``_target_``, ``defaults``, interpolations and the key that picks a :data:`DISCRIMINATED` schema. ``3``
   equals ``3.0``, ``true`` only a bool, a null block a null default. The schema of a file: the ``Config`` of
   the class its ``_target_`` names (followed through ``<option>@_here_`` defaults, as the loader does); for a
   group in :data:`DISCRIMINATED`, the settings class its key picks; else the dataclass of the top-level
   schema's field named after the group. Nested dataclass fields are followed, and a block of an open schema
   (``KernelConfig``) is read with the ``Config`` of the part whose ``name`` is the block's key. Files of other
   groups (``experiment`` presets, ``plan``, ``survey``) are listed as not checked. Reported beside it, not
   counted: values that differ from the default inside a block whose other values mostly restate it.
3. **Shadow name lists** (:mod:`house_shadow`): places that know parts by name outside the part's own package.
4. **Import cycles** (:func:`import_cycles`): strongly connected components of more than one module among
   module-level imports of the package (``if TYPE_CHECKING`` and function-level imports listed apart).
"""

from __future__ import annotations

import argparse
import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from house_shadow import kinds_report, shadow_lists
from house_source import MISSING, UNKNOWN, ClassRef, Index, Schema, load_yaml_nodes, module_level, scalar

TOP_SCHEMA = "delift.config.schema.ExperimentConfig"  # conf/config.yaml's schema
DISCRIMINATED = {"judge": ("delift.evaluation.judge.config.SETTINGS", "backend")}  # group -> (registry, key)
LAYOUT_COMMAND = "python experiments/house.py --layout > docs/layout.md"


@dataclass
class Finding:
    where: str  # file:line
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def same(a: Any, b: Any) -> bool:
    """Equal as a config value: numbers by value (bools apart), containers item by item; UNKNOWN is never equal."""
    if any(x is UNKNOWN or x is MISSING for x in (a, b)):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------------------------ 1. declared twice
def _member(cls: ast.ClassDef, kind: type, name: str) -> Any:
    return next((n for n in cls.body if isinstance(n, kind) and n.name == name), None)


def declared_twice(index: Index) -> tuple[list[Finding], list[Finding], list[Finding], list[Finding]]:
    """(declared twice, conflicts, validated twice, unverified pairs) over every class of the index."""
    twice, conflicts, validated, unverified = [], [], [], []
    for module in index.modules.values():
        for cls in [n for n in module.nodes if isinstance(n, ast.ClassDef)]:
            config, init = _member(cls, ast.ClassDef, "Config"), _member(cls, ast.FunctionDef, "__init__")
            if config is None or init is None:
                continue
            fields = index.schema(ClassRef(module.name, config, f"{cls.name}.Config")).fields
            args = init.args.posonlyargs + init.args.args
            params = dict(zip([a.arg for a in args[len(args) - len(init.args.defaults):]], init.args.defaults))
            params.update({a.arg: d for a, d in zip(init.args.kwonlyargs, init.args.kw_defaults) if d is not None})
            lines = {a.arg: a.lineno for a in args + init.args.kwonlyargs}
            checked = _problems_reads(config, set(fields)) & _raised_on(init)
            for knob in [name for name in params if name in fields]:
                where = f"{module.rel}:{lines[knob]}"
                twice.append(Finding(where, f"{cls.name}.{knob} (also {cls.name}.Config.{knob}, line "
                                            f"{fields[knob].line})"))
                field, given = fields[knob], index.value(module.name, params[knob])
                if field.nested is not None and given is None:
                    pass  # ``x or Default()``: the same default
                elif field.default is UNKNOWN or given is UNKNOWN:
                    if field.node is None or ast.unparse(field.node) != ast.unparse(params[knob]):
                        unverified.append(Finding(where, f"{cls.name}.{knob}: Config "
                                                         f"{ast.unparse(field.node) if field.node else '?'} vs "
                                                         f"__init__ {ast.unparse(params[knob])}"))
                elif not same(field.default, given):
                    conflicts.append(Finding(where, f"{cls.name}.{knob}: Config default {field.default!r}, "
                                                    f"__init__ default {given!r}"))
                if knob in checked:
                    validated.append(Finding(where, f"{cls.name}.{knob}: checked in Config.problems() and __init__"))
    return twice, conflicts, validated, unverified


def _problems_reads(config: ast.ClassDef, names: set[str]) -> set[str]:
    problems = _member(config, ast.FunctionDef, "problems")
    found: set[str] = set()
    for node in ast.walk(problems) if problems else ():
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            found.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
    return found & names


def _raised_on(init: ast.FunctionDef) -> set[str]:
    """Names tested by an ``assert`` or an ``if`` that raises, or iterated by a ``for`` around such an ``if``."""
    found: set[str] = set()

    def raises(node: ast.AST) -> bool:
        return isinstance(node, ast.Assert) or (
            isinstance(node, ast.If) and any(isinstance(s, ast.Raise) for b in node.body for s in ast.walk(b)))

    for node in ast.walk(init):
        if raises(node):
            found |= {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.For) and any(raises(n) for b in node.body for n in ast.walk(b)):
            found |= {n.id for n in ast.walk(node.iter) if isinstance(n, ast.Name)}
    return found


# -------------------------------------------------------------------------------- 2. yaml restating
def _part_config(index: Index, name: str) -> Schema | None:
    """The ``Config`` of the class whose class attribute ``name`` is ``name`` (a block of an open schema)."""
    for module in index.modules.values():
        for cls in [n for n in module.nodes if isinstance(n, ast.ClassDef)]:
            for node in cls.body:
                if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [
                        "name"] and index.value(module.name, node.value) == name:
                    found = index.member(ClassRef(module.name, cls, cls.name), "Config", 0)
                    return index.schema_of(found)
    return None


def _target_schema(index: Index, conf: Path, group: str, mapping: dict, seen: tuple = ()) -> Schema | None:
    if isinstance(mapping.get("_target_"), str):
        found = index.target(mapping["_target_"])
        return index.schema_of(index.member(found, "Config", 0)) if isinstance(found, ClassRef) else None
    for entry in mapping.get("defaults") or []:
        if isinstance(entry, str) and entry.endswith("@_here_") and entry not in seen:
            path = conf / group / f"{entry.split('@')[0]}.yaml"
            if path.is_file():
                return _target_schema(index, conf, group, yaml.safe_load(path.read_text()) or {}, (*seen, entry))
    return None


def schema_for(index: Index, conf: Path, group: str, mapping: dict) -> Schema | None:
    """The schema ``conf/<group>/<option>.yaml`` (parsed as ``mapping``) is merged into (module docstring)."""
    found = _target_schema(index, conf, group, mapping)
    if found is not None:
        return found
    if group in DISCRIMINATED:
        registry, key = DISCRIMINATED[group]
        module, _, name = registry.rpartition(".")
        classes = index.value(module, index.bindings(module).get(name, (None, None))[1]) \
            if module in index.modules else UNKNOWN
        picked = classes.get(mapping.get(key)) if isinstance(classes, dict) else None
        return index.schema_of(picked) if picked is not None else None
    top = index.schema_of(index.target(TOP_SCHEMA))
    field = top.fields.get(group) if top else None
    return field.nested if field else None


def _walk(index: Index, loader, node, schema: Schema, rel: str, path: str, out: dict, root: bool,
          keep: tuple[str, ...] = ()) -> None:
    restated, differing = [], []
    for key_node, value_node in node.value:
        key = key_node.value
        if key == "_target_" or (root and key in ("defaults", "hydra", *keep)):
            continue
        field = schema.fields.get(key)
        where, label = f"{rel}:{key_node.start_mark.line + 1}", f"{path}{key}"
        if field is None:
            block = _part_config(index, key) if schema.open else None
            if block is not None and isinstance(value_node, yaml.MappingNode):
                _walk(index, loader, value_node, block, rel, f"{label}.", out, False)
            else:
                out["unknown"].append(Finding(where, f"{label}: not a field of {schema.ref.qualname}"))
            continue
        if isinstance(value_node, yaml.MappingNode) and field.nested is not None:
            _walk(index, loader, value_node, field.nested, rel, f"{label}.", out, False)
            continue
        value = scalar(loader, value_node)
        if isinstance(value, str) and "${" in value:
            continue  # an interpolation: its value is another key's
        if field.default is UNKNOWN:
            out["unknown"].append(Finding(where, f"{label}: the default of {schema.ref.qualname}.{key} is not static"))
        elif same(value, field.default):
            restated.append(Finding(where, f"{label}: {value!r} is {schema.ref.qualname}.{key}'s default"))
        elif field.default is not MISSING:
            differing.append(Finding(where, f"{label}: {value!r}, default {field.default!r} "
                                            f"({schema.ref.qualname}.{key})"))
    out["restating"].extend(restated)
    if not root and differing and len(restated) > len(differing):
        out["overrides"].extend(differing)


def yaml_restating(index: Index, conf: Path | None = None) -> dict[str, list]:
    """{'restating', 'overrides' (differing values in mostly restated blocks), 'unknown', 'unchecked'}."""
    conf = Path(conf) if conf is not None else index.root / "conf"
    out: dict[str, list] = {"restating": [], "overrides": [], "unknown": [], "unchecked": []}
    files = [(conf / "config.yaml", None)] + [(p, p.parent.name) for p in sorted(conf.glob("*/*.yaml"))]
    for path, group in files:
        if not path.is_file():
            continue
        node, loader = load_yaml_nodes(path)
        rel = path.relative_to(index.root).as_posix() if path.is_relative_to(index.root) else str(path)
        if not isinstance(node, yaml.MappingNode):
            continue
        mapping = scalar(loader, node)
        schema = index.schema_of(index.target(TOP_SCHEMA)) if group is None else \
            schema_for(index, conf, group, mapping)
        if schema is None:
            out["unchecked"].append(rel)
            continue
        keep = (DISCRIMINATED[group][1],) if group in DISCRIMINATED else ()  # it picks the schema: not removable
        _walk(index, loader, node, schema, rel, "", out, root=True, keep=keep)
    for key in ("restating", "overrides", "unknown"):
        out[key].sort(key=lambda f: (f.where.rpartition(":")[0], int(f.where.rpartition(":")[2])))
    return out


# ------------------------------------------------------------------------------------ 4. import cycles
def import_graph(index: Index) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module-level import edges, deferred ones: function-level or under ``if TYPE_CHECKING``) between modules."""
    eager: dict[str, set[str]] = {name: set() for name in index.modules}
    deferred: dict[str, set[str]] = {name: set() for name in index.modules}
    for name, module in index.modules.items():
        at_import = {id(n) for n in module_level(module.tree)}
        at_import |= {id(n) for top in module_level(module.tree) if isinstance(top, ast.ClassDef)
                      for n in ast.walk(top) if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for node in module.nodes:
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = index.absolute(module, node)
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in index.modules else source
                           for a in node.names]
            for target in targets:
                if target in index.modules and target != name:
                    (eager if id(node) in at_import else deferred)[name].add(target)
    return eager, deferred


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one node (each sorted), in a stable order."""
    indices, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        indices[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in indices:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], indices[nxt])
        if low[node] == indices[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for node in sorted(graph):
        if node not in indices:
            visit(node)
    return sorted(found)


def import_cycles(index: Index) -> tuple[list[list[str]], list[list[str]]]:
    """(cycles among module-level imports, cycles that the deferred imports would add)."""
    eager, deferred = import_graph(index)
    counted = strongly_connected(eager)
    both = {name: eager[name] | deferred[name] for name in eager}
    return counted, [c for c in strongly_connected(both) if c not in counted]


# ----------------------------------------------------------------------------------------------- layout
def first_line(tree: ast.Module) -> str | None:
    doc = ast.get_docstring(tree)
    lines = [line.strip() for line in (doc or "").splitlines() if line.strip()]
    return lines[0] if lines else None


def layout(index: Index) -> tuple[str, int]:
    """The Markdown map of the package (each package, then its modules, with their docstrings' first line)
    and how many modules have no docstring."""
    missing, out = 0, ["# Layout of delift/", "",
                       f"Generated by `{LAYOUT_COMMAND}`; tests/test_house.py checks it is current.", ""]
    packages = sorted(name for name, m in index.modules.items() if m.is_package)
    for package in packages:
        module = index.modules[package]
        line = first_line(module.tree)
        missing += line is None
        out += [f"## {Path(module.rel).parent.as_posix()}/", "", line or "(no docstring)", ""]
        for name in sorted(n for n, m in index.modules.items() if not m.is_package and n.rpartition(".")[0] == package):
            line = first_line(index.modules[name].tree)
            missing += line is None
            out.append(f"- `{Path(index.modules[name].rel).as_posix()}`: {line or '(no docstring)'}")
        out.append("")
    out.append(f"{len(packages)} packages, {len(index.modules) - len(packages)} modules; "
               f"without a docstring: {missing}.")
    return "\n".join(out) + "\n", missing


# ---------------------------------------------------------------------------------------------------- CLI
def measure(root: Path | str) -> dict[str, Any]:
    """Every finding under ``root`` (a checkout: ``<root>/delift`` and ``<root>/conf``) and the four counts."""
    index = Index(root)
    twice, conflicts, validated, unverified = declared_twice(index)
    yamls = yaml_restating(index)
    shadows, kinds = shadow_lists(index), kinds_report(index)
    cycles, deferred = import_cycles(index)
    counts = {"settings declared twice": len(twice), "yaml restating defaults": len(yamls["restating"]),
              "shadow name lists": len(shadows), "import cycles": len(cycles)}
    return {"counts": counts, "twice": twice, "conflicts": conflicts, "validated": validated,
            "unverified": unverified, "yaml": yamls, "shadows": shadows, "kinds": kinds, "cycles": cycles, "deferred": deferred}


def summary(counts: dict[str, int]) -> str:
    return "; ".join(f"{name}: {value}" for name, value in counts.items())


def report(found: dict[str, Any]) -> str:
    def section(title: str, items: list) -> list[str]:
        return [f"== {title}: {len(items)}"] + [f"  {item}" for item in items]

    twice = found["twice"]
    classes = len({f.what.split(".")[0] + f.where.split(":")[0] for f in twice})
    lines = section(f"settings declared twice ({classes} classes)", twice)
    lines += section("conflicts: one knob, two different code defaults (not in the total)", found["conflicts"])
    lines += section("validated twice: Config.problems() and __init__ (not in the total)", found["validated"])
    lines += section("Config vs __init__ defaults not comparable statically (not in the total)", found["unverified"])
    yamls = found["yaml"]
    lines += section("yaml restating defaults", yamls["restating"])
    lines += section("yaml values differing from the default in blocks that mostly restate it (check which is "
                     "meant; not in the total)", yamls["overrides"])
    lines += section("yaml keys not checked (no field, or a default not static)", yamls["unknown"])
    lines += section("yaml files not checked (no schema: presets and non-schema groups)", yamls["unchecked"])
    groups: dict[str, list[int]] = {}
    for item in yamls["restating"]:
        group = item.where.split("/")[1] if item.where.count("/") > 1 else "config.yaml"
        groups.setdefault(group, [0, 0])[": None is " in item.what] += 1
    lines.append("   by group (non-null + null): " + ", ".join(f"{g} {a}+{b}" for g, (a, b) in sorted(groups.items())))
    lines += section("shadow name lists", found["shadows"])
    lines += ["   part names: " + line for line in found["kinds"]]
    lines += section("import cycles (module-level imports)", [" <-> ".join(c) for c in found["cycles"]])
    lines += section("cycles through deferred imports (function-level or TYPE_CHECKING; not counted)",
                     [" <-> ".join(c) for c in found["deferred"]])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1]),
                        help="a checkout with delift/ and conf/ (default: this one)")
    parser.add_argument("--verbose", action="store_true", help="every finding as file:line before the counts")
    parser.add_argument("--fail", action="store_true", help="exit 1 when any count is not 0")
    parser.add_argument("--layout", action="store_true", help="print the Markdown layout map (docs/layout.md)")
    args = parser.parse_args(argv)
    if args.layout:
        print(layout(Index(args.root))[0], end="")
        return 0
    found = measure(args.root)
    if args.verbose:
        print(report(found))
    print(summary(found["counts"]))
    return 1 if args.fail and any(found["counts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
