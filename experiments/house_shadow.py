"""Shadow name lists for ``experiments/house.py``: code that knows parts by name outside the part's own package.

A *kind* of part (:data:`KINDS`) has a home package and names: the option stems of its config group, the
``name = "<str>"`` class attributes of the classes under its ``names_in`` folder, the keys of its registry dict
and the strings of its name lists kept at home. Its *part classes* are those classes and the classes the group's
``_target_`` values name; a part's *knobs* are its ``Config`` fields that its base class's ``Config`` lacks; its
*own modules* are the home modules that define a part class and no base (a class whose ``Config`` has an empty
``_target_``, or a class, not a dataclass, that annotates ``name``), and every module of a subpackage that holds
one part only (``selection/less``).

One finding per site, each of one of these forms (modules of the kind's home package are exempt, except from
the hand copies):

- **name list**: a container literal (dict keys, or tuple / list / set items) in a module-level or class-level
  statement with at least 2 names of one kind (``PLANNERS``, ``report.labels.METHODS``); a dataclass field's
  default is a setting, not a list, and is left out;
- **comparison**: ``==``, ``!=``, ``in``, ``not in`` or a ``match`` case of a string (a literal, a constant
  naming one string, or a literal container of them) that is a name of the kind, against a value named like
  one (its last identifier is one of the kind's ``subjects``, or starts or ends with one and ``_``);
- **name list use**: an import of a home module's tuple / list / set of the kind's names (``GENERATED_FORMATS``);
- **part module import**: an import (at any level) of a part's own module;
- **knob probe**: ``getattr(x, "<knob>")`` / ``hasattr`` of a knob of some part, outside the home of every kind
  whose parts declare that knob (duck typing a part by its settings);
- **hand copy**: a module-level tuple / list / set or dict (not itself a registry) with at least 2 strings, all
  of them keys of a registry (a module-level dict literal, string keys, code values) of another module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import yaml
from house_source import ClassRef, Index, Module, assigned, is_dataclass_node, module_level


@dataclass(frozen=True)
class Kind:
    label: str
    home: str  # the part's own package, relative to the root
    subjects: tuple[str, ...]  # what a value holding such a name is called
    conf: str | None = None  # conf/<conf>/*.yaml: the option stems are names, their _target_ part classes
    names_in: str | None = None  # where classes' ``name`` attributes are names (default: home)
    registry: str | None = None  # a dict whose keys are names
    lists: tuple[str, ...] = ()  # home tuples of names


KINDS = (
    Kind("selectors", "delift/selection", ("selector", "name", "method"), conf="selector"),
    Kind("metrics", "delift/evaluation", ("metric", "name", "key", "score"), conf="metric"),
    Kind("evaluation protocols", "delift/protocols", ("protocol", "evaluation", "name"), conf="evaluation"),
    Kind("kernel approximations", "delift/kernel", ("approximation", "method", "strategy", "name"),
         names_in="delift/kernel/approximations"),
    Kind("model sources", "delift/models", ("source", "model_source"), registry="delift.models.loading.SOURCES"),
    Kind("dataset formats", "delift/data", ("format", "fmt", "mix_format"), registry="delift.data.records.FORMATTERS",
         lists=("delift.data.records.GENERATED",)),
)


class Parts:
    """Names, part classes, knobs and own modules of one kind in one tree."""

    def __init__(self, index: Index, kind: Kind) -> None:
        self.index, self.kind = index, kind
        self.names: set[str] = set()
        self.classes: list[ClassRef] = []
        conf = index.root / "conf" / kind.conf if kind.conf else None
        for path in sorted(conf.glob("*.yaml")) if conf and conf.is_dir() else ():
            self.names.add(path.stem)
            target = (yaml.safe_load(path.read_text()) or {}).get("_target_")
            found = index.target(target) if isinstance(target, str) else None
            if isinstance(found, ClassRef):
                self.classes.append(found)
        for module in self.modules_under(kind.names_in or kind.home):
            for cls in module.nodes:
                name = self.class_name(module, cls) if isinstance(cls, ast.ClassDef) else None
                if name is not None:
                    self.names.add(name)
                    self.classes.append(ClassRef(module.name, cls, cls.name))
        for dotted in ((kind.registry,) if kind.registry else ()) + kind.lists:
            module, _, name = dotted.rpartition(".")
            bound = index.bindings(module).get(name) if module in index.modules else None
            node = bound[1] if bound and bound[0] == "value" else None
            items = node.keys if isinstance(node, ast.Dict) else [node] if node is not None else []
            for item in items:  # a registry's keys, not its (code) values
                value = index.value(module, item)
                self.names |= {v for v in (value if isinstance(value, (tuple, list, set)) else [value])
                               if isinstance(v, str)}
        self.knobs = self._knobs()
        self.own = self._own_modules()

    def modules_under(self, folder: str) -> list[Module]:
        return [m for m in self.index.modules.values() if m.rel.startswith(folder.rstrip("/") + "/")]

    def at_home(self, module: Module) -> bool:
        return module.rel.startswith(self.kind.home.rstrip("/") + "/")

    def class_name(self, module: Module, cls: ast.ClassDef) -> str | None:
        for node in cls.body:
            for target, value in assigned(node) if isinstance(node, ast.Assign) else ():
                if target == "name":
                    value = self.index.value(module.name, value)
                    return value if isinstance(value, str) else None
        return None

    def fields_of_dataclasses(self, module: Module) -> list[ast.AST]:
        return [n for cls in module.nodes if isinstance(cls, ast.ClassDef) and is_dataclass_node(cls)
                for n in cls.body if isinstance(n, ast.AnnAssign)]

    def _config_fields(self, ref: ClassRef) -> set[str]:
        schema = self.index.schema_of(self.index.member(ref, "Config", 0))
        return set(schema.fields) if schema else set()

    def _knobs(self) -> dict[str, set[str]]:
        """knob -> the part classes declaring it (base classes' fields left out)."""
        knobs: dict[str, set[str]] = {}
        for ref in self.classes:
            base = set()
            for node in ref.node.bases:
                found = self.index.value(ref.module, node)
                base |= self._config_fields(found) if isinstance(found, ClassRef) else set()
            for knob in self._config_fields(ref) - base - {"_target_"}:
                knobs.setdefault(knob, set()).add(ref.node.name)
        return knobs

    def _is_base(self, module: Module) -> bool:
        for cls in module.nodes:
            if isinstance(cls, ast.ClassDef):
                schema = self.index.schema_of(self.index.member(ClassRef(module.name, cls, cls.name), "Config", 0))
                if schema and "_target_" in schema.fields and schema.fields["_target_"].default == "":
                    return True
                if not is_dataclass_node(cls) and any(isinstance(n, ast.AnnAssign) and ast.unparse(n.target) == "name"
                                                      for n in cls.body):
                    return True
        return False

    def _own_modules(self) -> set[str]:
        defining: dict[str, set[str]] = {}
        for ref in self.classes:
            defining.setdefault(ref.module, set()).add(ref.node.name)
        own = {name for name in defining if not self._is_base(self.index.modules[name])}
        for name in list(own):
            package = name.rpartition(".")[0]
            home = self.kind.home.replace("/", ".")
            inside = [m for m in defining if m.startswith(package + ".") or m == package]
            if package != home and package.startswith(home + ".") and len({c for m in inside for c in defining[m]}) == 1:
                own |= {m for m in self.index.modules if m == package or m.startswith(package + ".")}
        return own

    def strings(self, module: Module, node: ast.AST) -> list[str]:
        """The part names among the string values of a literal container or a constant."""
        if isinstance(node, ast.Dict):
            items = node.keys
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        else:
            items = [node]
        values = [self.index.value(module.name, item) for item in items if item is not None]
        return sorted({v for v in values if isinstance(v, str) and v in self.names})


def _word(node: ast.AST) -> str | None:
    """What a compared value is called: its last identifier (``cfg.kernel.approximation`` -> approximation)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return str(node.slice.value)
    if isinstance(node, ast.Call) and node.args:
        probe = node.args[1] if ast.unparse(node.func) in ("getattr", "hasattr") and len(node.args) > 1 else \
            node.args[0] if isinstance(node.func, ast.Attribute) and node.func.attr == "get" else None
        if isinstance(probe, ast.Constant) and isinstance(probe.value, str):
            return probe.value
    return None


def _named_like(node: ast.AST, subjects: tuple[str, ...]) -> bool:
    word = (_word(node) or "").lower()
    return any(word == s or word.startswith(s + "_") or word.endswith("_" + s) for s in subjects)


def _registries(index: Index) -> dict[str, set[str]]:
    """'module.NAME' -> its keys, for every module-level dict literal of string keys and code values."""
    found = {}
    for module in index.modules.values():
        for node in module_level(module.tree):
            for target, value in assigned(node):
                if isinstance(value, ast.Dict) and len(value.keys) >= 2 and all(
                        isinstance(k, ast.Constant) and isinstance(k.value, str) for k in value.keys) and all(
                        isinstance(v, (ast.Name, ast.Attribute, ast.Lambda, ast.Call)) for v in value.values):
                    found[f"{module.name}.{target}"] = {k.value for k in value.keys}
    return found


def _statements(module: Module):
    """Module-level statements and the statements of module-level class bodies (nested classes too)."""
    stack = list(module_level(module.tree))
    while stack:
        node = stack.pop(0)
        yield node
        if isinstance(node, ast.ClassDef):
            stack.extend(node.body)


def _where(module: Module, node: ast.AST) -> str:
    return f"{module.rel}:{node.lineno}"


def shadow_lists(index: Index, kinds: tuple[Kind, ...] = KINDS) -> list[str]:
    """Every finding (``file:line: form: what``), sorted; see the module docstring."""
    found: dict[str, str] = {}
    every = [Parts(index, kind) for kind in kinds]
    for parts in every:
        for module in index.modules.values():
            if not parts.at_home(module):
                _downstream(parts, module, found)
    for module in index.modules.values():
        _probes(every, module, found)
    registries = _registries(index)
    for module in index.modules.values():  # hand copies of other modules' registry keys (not registries)
        for node in module_level(module.tree):
            for target, value in assigned(node):
                if f"{module.name}.{target}" in registries:
                    continue
                items = value.keys if isinstance(value, ast.Dict) else value.elts if isinstance(
                    value, (ast.Tuple, ast.List, ast.Set)) else []
                strings = {index.value(module.name, k) for k in items if k is not None}
                if len(strings) < 2 or not all(isinstance(s, str) for s in strings):
                    continue
                for registry, keys in sorted(registries.items()):
                    if not registry.startswith(module.name + ".") and strings <= keys:
                        found.setdefault(_where(module, node),
                                         f"hand copy: {target} {sorted(strings)} (keys of {registry})")
    return [f"{where.partition('#')[0]}: {what}" for where, what in sorted(found.items(),
                                                                          key=lambda item: _sort_key(item[0]))]


def _sort_key(where: str) -> tuple[str, int, str]:
    path, _, line = where.rpartition(":")
    line, _, tail = line.partition("#")
    return path, int(line), tail


def _downstream(parts: Parts, module: Module, found: dict[str, str]) -> None:
    index, label = parts.index, parts.kind.label
    settings = {id(n) for n in parts.fields_of_dataclasses(module)}
    for node in _statements(module):  # name lists (a dataclass field's default is a setting, not a list)
        if id(node) in settings:
            continue
        for target, value in assigned(node):
            for sub in ast.walk(value):
                names = parts.strings(module, sub) if isinstance(sub, (ast.Dict, ast.Tuple, ast.List, ast.Set)) \
                    else []
                if len(names) >= 2:
                    found.setdefault(_where(module, node), f"name list of {label}: {target} {names}")
                    break
    for node in module.nodes:
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands, operands[1:]):
                if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                    continue
                for subject, other in ((left, right), (right, left)):
                    names = [] if isinstance(other, (ast.Name, ast.Attribute)) and isinstance(
                        index.value(module.name, other), (tuple, list, set)) else parts.strings(module, other)
                    if names and _named_like(subject, parts.kind.subjects):
                        found.setdefault(_where(module, node), f"comparison with {label}: "
                                                               f"{ast.unparse(node)[:80]}")
        elif isinstance(node, ast.Match) and _named_like(node.subject, parts.kind.subjects):
            for case in node.cases:
                values = [p.value for p in ast.walk(case.pattern) if isinstance(p, ast.MatchValue)]
                if any(parts.strings(module, v) for v in values):
                    found.setdefault(_where(module, case.pattern), f"match case on {label}: "
                                                                   f"{ast.unparse(case.pattern)}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            _imports(parts, module, node, found)


def _probes(every: list[Parts], module: Module, found: dict[str, str]) -> None:
    """Knob probes: ``getattr`` / ``hasattr`` of a knob, outside the home of every kind whose parts declare it."""
    for node in module.nodes:
        if not (isinstance(node, ast.Call) and ast.unparse(node.func) in ("getattr", "hasattr") and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
            continue
        knob = node.args[1].value
        declaring = [parts for parts in every if knob in parts.knobs]
        if declaring and not any(parts.at_home(module) for parts in declaring):
            owners = ", ".join(sorted(c for parts in declaring for c in parts.knobs[knob]))
            found.setdefault(f"{_where(module, node)}#{knob}", f"knob probe: {ast.unparse(node)[:70]} "
                                                               f"(a knob of {owners})")


def _imports(parts: Parts, module: Module, node: ast.AST, found: dict[str, str]) -> None:
    index, label = parts.index, parts.kind.label
    if isinstance(node, ast.Import):
        targets = [(alias.name, None) for alias in node.names]
    else:
        source = index.absolute(module, node)
        targets = [(source, alias.name) for alias in node.names]
    for source, name in targets:
        dotted = f"{source}.{name}" if name and f"{source}.{name}" in index.modules else source
        if dotted in parts.own:
            found.setdefault(_where(module, node), f"part module import ({label}): {dotted}")
            return
        bound = index.lookup(source, name) if name and source in index.modules else None
        if isinstance(bound, tuple) and bound[0] == "value" and bound[1] in index.modules and \
                parts.at_home(index.modules[bound[1]]):
            value = index.value(bound[1], bound[2])
            if isinstance(value, (tuple, list, set)) and any(isinstance(v, str) and v in parts.names for v in value):
                found.setdefault(_where(module, node), f"name list use ({label}): {name} from {bound[1]}")


def kinds_report(index: Index, kinds: tuple[Kind, ...] = KINDS) -> list[str]:
    """One line per kind: its names and own modules (for --verbose)."""
    lines = []
    for kind in kinds:
        parts = Parts(index, kind)
        lines.append(f"{kind.label} (home {kind.home}): {', '.join(sorted(parts.names)) or '(none found)'}; "
                     f"own modules: {', '.join(sorted(Path(*m.split('.')).as_posix() for m in parts.own)) or '-'}")
    return lines
