"""Reading a source tree without importing it, for ``experiments/house.py``: modules, names, constant values,
dataclass defaults and YAML nodes with their line numbers.

:class:`Index` parses every ``.py`` file of one package under a root (``<root>/delift`` by default) with
:mod:`ast`. :meth:`Index.value` evaluates a module-level expression statically: literals, containers, names
and attributes followed through ``import`` / ``from ... import`` to the module that binds them, simple
arithmetic, ``lambda: <expr>``; anything else is :data:`UNKNOWN`. :meth:`Index.schema` reads a dataclass's
fields (bases first, ``ClassVar`` left out) with their default values; a field typed by another dataclass (or
built by ``field(default_factory=<dataclass>)``) carries that class as its nested schema. A class built by
``make_dataclass(..., bases=(Base,))`` inside a function is read as ``Base`` marked *open*: its other blocks are
unknown here (the caller may find them, e.g. by the part that declares them).
"""

from __future__ import annotations

import ast
import functools
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


UNKNOWN = _Sentinel("UNKNOWN")  # a value this static reading cannot tell
MISSING = _Sentinel("MISSING")  # a field with no default (or omegaconf's MISSING)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow, ast.Mod: operator.mod}
_BUILTIN_FACTORIES = {"list": list, "dict": dict, "set": set, "tuple": tuple}


@dataclass
class Module:
    name: str  # dotted, e.g. delift.selection.ifd
    path: Path
    rel: str  # relative to the root, e.g. delift/selection/ifd.py
    tree: ast.Module
    is_package: bool

    @functools.cached_property
    def nodes(self) -> list[ast.AST]:
        """Every node of the tree (``ast.walk``), walked once."""
        return list(ast.walk(self.tree))


@dataclass(frozen=True)
class ClassRef:
    module: str
    node: ast.ClassDef = field(compare=False, hash=False)
    qualname: str = ""


@dataclass
class Field:
    name: str
    default: Any  # a value, MISSING or UNKNOWN; a nested dataclass default is its defaults as a dict
    nested: Schema | None
    line: int
    node: ast.AST | None = None  # the default's expression


@dataclass
class Schema:
    ref: ClassRef
    fields: dict[str, Field]
    open: bool = False  # built by make_dataclass: blocks beyond these fields are not known statically

    def defaults(self) -> dict[str, Any]:
        return {name: f.default for name, f in self.fields.items()}


def is_dataclass_node(node: ast.ClassDef) -> bool:
    for deco in node.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if (isinstance(target, ast.Name) and target.id == "dataclass") or (
                isinstance(target, ast.Attribute) and target.attr == "dataclass"):
            return True
    return False


def module_level(tree: ast.Module):
    """Statements run at import: the module body, with ``if`` (but not ``if TYPE_CHECKING``) and ``try`` opened."""
    stack = list(reversed(tree.body))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" in ast.unparse(node.test):
                stack.extend(reversed(node.orelse))
                continue
            stack.extend(reversed(node.body + node.orelse))
        elif isinstance(node, ast.Try):
            stack.extend(reversed(node.body + node.orelse + node.finalbody
                                  + [s for h in node.handlers for s in h.body]))
        else:
            yield node


def assigned(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(name, value) of a plain or annotated assignment to names."""
    if isinstance(node, ast.Assign):
        return [(t.id, node.value) for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        return [(node.target.id, node.value)]
    return []


class Index:
    """Every module of ``package`` under ``root``, parsed."""

    def __init__(self, root: Path | str, package: str = "delift") -> None:
        self.root, self.package = Path(root).resolve(), package
        self.modules: dict[str, Module] = {}
        base = self.root / package
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(self.root).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            rel = path.relative_to(self.root).as_posix()
            self.modules[name] = Module(name, path, rel, ast.parse(path.read_text(), str(path)), is_package)
        self._bindings: dict[str, dict[str, Any]] = {}
        self._schemas: dict[tuple[str, int], Schema] = {}

    # ------------------------------------------------------------------------------------------------- names
    def absolute(self, module: Module, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        parts = module.name.split(".")
        base = parts if module.is_package else parts[:-1]
        base = base[:len(base) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))

    def bindings(self, name: str) -> dict[str, Any]:
        """Module-level name -> ('class', ClassDef) | ('value', expr) | ('import', module, attribute or None)."""
        if name in self._bindings:
            return self._bindings[name]
        found: dict[str, Any] = {}
        module = self.modules[name]
        for node in module_level(module.tree):
            if isinstance(node, ast.ClassDef):
                found[node.name] = ("class", node)
            elif isinstance(node, ast.ImportFrom):
                source = self.absolute(module, node)
                for alias in node.names:
                    found[alias.asname or alias.name] = ("import", source, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    found[alias.asname or alias.name.split(".")[0]] = (
                        ("import", alias.name, None) if alias.asname else ("import", alias.name.split(".")[0], None))
            for target, value in assigned(node):
                found[target] = ("value", value)
        self._bindings[name] = found
        return found

    def lookup(self, module: str, dotted: str, depth: int = 0) -> Any:
        """What ``dotted`` names in ``module``: a :class:`ClassRef`, ('module', name), ('value', module, expr)
        or None (outside the index, or not statically known)."""
        if depth > 20 or module not in self.modules:
            return None
        head, _, rest = dotted.partition(".")
        bound = self.bindings(module).get(head)
        if bound is None:
            sub = f"{module}.{head}"
            found = ("module", sub) if self.modules.get(module) and self.modules[module].is_package and \
                sub in self.modules else None
        elif bound[0] == "class":
            found = ClassRef(module, bound[1], head)
        elif bound[0] == "value":
            found = ("value", module, bound[1])
        else:
            _, source, attribute = bound
            if attribute is None:
                found = ("module", source) if source in self.modules else None
            elif f"{source}.{attribute}" in self.modules:
                found = ("module", f"{source}.{attribute}")
            else:
                found = self.lookup(source, attribute, depth + 1)
        return self.member(found, rest, depth) if rest and found is not None else found

    def member(self, found: Any, rest: str, depth: int) -> Any:
        if isinstance(found, tuple) and found[0] == "module":
            return self.lookup(found[1], rest, depth + 1)
        if isinstance(found, tuple) and found[0] == "value":
            found = self.value(found[1], found[2])
        if isinstance(found, ClassRef):
            head, _, tail = rest.partition(".")
            for node in found.node.body:
                if isinstance(node, ast.ClassDef) and node.name == head:
                    inner = ClassRef(found.module, node, f"{found.qualname}.{head}")
                    return self.member(inner, tail, depth) if tail else inner
                for target, value in assigned(node):
                    if target == head:
                        inner = self.value(found.module, value)
                        return self.member(inner, tail, depth) if tail and inner is not UNKNOWN else inner
        return None

    def target(self, dotted: str) -> Any:
        """A fully qualified name (a Hydra ``_target_``): the longest module prefix, then attributes."""
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module = ".".join(parts[:cut])
            if module in self.modules:
                return self.lookup(module, ".".join(parts[cut:]))
        return None

    # ------------------------------------------------------------------------------------------------ values
    def value(self, module: str, node: ast.AST | None, depth: int = 0) -> Any:
        """The static value of ``node`` in ``module`` (a :class:`ClassRef` for a class), or UNKNOWN."""
        if node is None or depth > 30:
            return UNKNOWN
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = [self.value(module, e, depth + 1) for e in node.elts]
            if any(v is UNKNOWN for v in items):
                return UNKNOWN
            return tuple(items) if isinstance(node, ast.Tuple) else list(items) if isinstance(node, ast.List) \
                else set(items)
        if isinstance(node, ast.Dict):
            keys = [self.value(module, k, depth + 1) for k in node.keys]
            values = [self.value(module, v, depth + 1) for v in node.values]
            if any(k is UNKNOWN or k is None for k in keys) or any(v is UNKNOWN for v in values):
                return UNKNOWN
            return dict(zip(keys, values))
        if isinstance(node, (ast.Name, ast.Attribute)):
            text = ast.unparse(node)
            if text.split(".")[-1] == "MISSING":
                return MISSING
            found = self.lookup(module, text)
            if isinstance(found, tuple) and found[0] == "value":
                return self.value(found[1], found[2], depth + 1)
            return found if isinstance(found, ClassRef) else UNKNOWN
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = self.value(module, node.left, depth + 1), self.value(module, node.right, depth + 1)
            try:
                return UNKNOWN if UNKNOWN in (left, right) else _OPS[type(node.op)](left, right)
            except Exception:  # noqa: BLE001 - not a constant expression after all
                return UNKNOWN
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self.value(module, node.operand, depth + 1)
            return -inner if isinstance(inner, (int, float)) and not isinstance(inner, bool) else UNKNOWN
        if isinstance(node, ast.Lambda):
            return self.value(module, node.body, depth + 1)
        if isinstance(node, ast.Call) and not node.args and not node.keywords:
            made = self.value(module, node.func, depth + 1)
            if isinstance(made, ClassRef) and is_dataclass_node(made.node):
                return self.schema(made).defaults()
        return UNKNOWN

    # ----------------------------------------------------------------------------------------------- schemas
    def schema(self, ref: ClassRef, depth: int = 0) -> Schema:
        """The dataclass ``ref``'s fields with their defaults (see the module docstring)."""
        key = (ref.module, ref.node.lineno)
        if key in self._schemas:
            return self._schemas[key]
        fields: dict[str, Field] = {}
        for base in ref.node.bases:
            found = self.value(ref.module, base)
            if isinstance(found, ClassRef) and depth < 10:
                fields.update(self.schema(found, depth + 1).fields)
        for node in ref.node.body:
            if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
                continue
            if "ClassVar" in ast.unparse(node.annotation):
                continue
            fields[node.target.id] = self._field(ref.module, node, depth)
        self._schemas[key] = Schema(ref, fields)
        return self._schemas[key]

    def _field(self, module: str, node: ast.AnnAssign, depth: int) -> Field:
        name, value = node.target.id, node.value
        nested = None
        for sub in ast.walk(node.annotation):
            text = sub.value.split("[")[0].split("|")[0].strip() if isinstance(sub, ast.Constant) and \
                isinstance(sub.value, str) else ast.unparse(sub) if isinstance(sub, (ast.Name, ast.Attribute)) else None
            nested = self.dataclass_named(module, text, depth) if text else None
            if nested is not None:
                break
        if value is None:
            return Field(name, MISSING, nested, node.lineno)
        if isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] == "field":
            keywords = {k.arg: k.value for k in value.keywords}
            if "default" in keywords:
                return Field(name, self.value(module, keywords["default"]), nested, node.lineno, keywords["default"])
            factory = keywords.get("default_factory")
            if isinstance(factory, ast.Name) and factory.id in _BUILTIN_FACTORIES:
                return Field(name, _BUILTIN_FACTORIES[factory.id](), nested, node.lineno, factory)
            made = self.dataclass_named(module, ast.unparse(factory), depth) if isinstance(
                factory, (ast.Name, ast.Attribute)) else None
            if made is not None:
                return Field(name, made.defaults(), made, node.lineno, factory)
            return Field(name, self.value(module, factory), nested, node.lineno, factory)
        return Field(name, self.value(module, value), nested, node.lineno, value)

    def dataclass_named(self, module: str, dotted: str, depth: int = 0) -> Schema | None:
        """:meth:`schema_of` what ``dotted`` names in ``module``."""
        return self.schema_of(self.lookup(module, dotted), depth) if depth < 10 else None

    def schema_of(self, found: Any, depth: int = 0) -> Schema | None:
        """:meth:`schema` of a dataclass, or of a ``make_dataclass(..., bases=(Base,))`` result (open)."""
        if isinstance(found, ClassRef):
            return self.schema(found, depth + 1) if is_dataclass_node(found.node) else None
        if not (isinstance(found, tuple) and found[0] == "value" and isinstance(found[2], ast.Call)):
            return None
        called = ast.unparse(found[2].func)
        for function in self.modules[found[1]].tree.body:  # a function of the same module that builds it
            if not (isinstance(function, ast.FunctionDef) and function.name == called):
                continue
            for call in ast.walk(function):
                if isinstance(call, ast.Call) and ast.unparse(call.func).endswith("make_dataclass"):
                    for keyword in call.keywords:
                        if keyword.arg == "bases" and isinstance(keyword.value, ast.Tuple) and keyword.value.elts:
                            base = self.value(found[1], keyword.value.elts[0])
                            if isinstance(base, ClassRef):
                                return Schema(base, self.schema(base, depth + 1).fields, open=True)
        return None


# ---------------------------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with OmegaConf's float rule (``2.0e-4`` and ``1e-8`` are floats, not strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    __import__("re").compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""", __import__("re").X),
    list("-+0123456789."))


def load_yaml_nodes(path: Path) -> tuple[ast.AST | None, _Loader]:
    """The composed node tree of a YAML file (keeps line numbers) and the loader that constructs values."""
    loader = _Loader(path.read_text())
    try:
        return loader.get_single_node(), loader
    finally:
        loader.dispose()


def scalar(loader: _Loader, node: Any) -> Any:
    """The Python value of a YAML node (a scalar, or a whole sequence / mapping)."""
    return loader.construct_object(node, deep=True)
