"""Range and choice checks over a typed config tree, reported with full key paths.

Every settings dataclass (the config package's, the model's, the kernel's) may define
``problems() -> {local key: message}``; :func:`collect_problems` walks a tree of dataclasses, dicts
and lists and prefixes each key with its path, so one error lists every bad value at once (``evaluation.qlora.train.lr=-1.0: must be > 0.0``).
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

Problems = dict  # {local key: message}, what a schema's ``problems()`` returns


def choice(problems: Problems, key: str, value: Any, allowed: tuple) -> None:
    """Record a problem when ``value`` is not one of ``allowed``."""
    if value not in allowed:
        problems[key] = f"{value!r}: expected one of {', '.join(map(str, allowed))}"


def at_least(problems: Problems, key: str, value: Any, low: float, *, strict: bool = False) -> None:
    """Record a problem when ``value`` (if set) is below ``low`` (or not above it, ``strict``)."""
    if value is not None and (value <= low if strict else value < low):
        problems[key] = f"{value!r}: must be {'>' if strict else '>='} {low}"


EXTRA_CHECKS: dict[type, list] = {}  # class -> checks beyond its own problems() (each: instance -> Problems)


def add_check(cls: type, check) -> None:
    """Run ``check(node) -> {local key: message}`` beside ``cls.problems()`` for every ``cls`` node: how a
    registry below the class (``model.source``: :mod:`delift.models.sources`) checks a field the class cannot
    import the choices of."""
    if check not in EXTRA_CHECKS.setdefault(cls, []):
        EXTRA_CHECKS[cls].append(check)


class ConfigError(ValueError):
    """A config value that is missing, of the wrong type, unknown or out of range; names the key."""


def collect_problems(node: Any, prefix: str = "") -> dict[str, str]:
    """``{full.key: message}`` for every problem in ``node`` and below it."""
    found: dict[str, str] = {}
    join = (lambda key: f"{prefix}.{key}") if prefix else (lambda key: str(key))
    if is_dataclass(node) and not isinstance(node, type):
        check = getattr(node, "problems", None)
        if check is not None:
            found.update({join(key): message for key, message in check().items()})
        for extra in EXTRA_CHECKS.get(type(node), ()):
            found.update({join(key): message for key, message in extra(node).items()})
        for item in fields(node):
            found.update(collect_problems(getattr(node, item.name), join(item.name)))
    elif isinstance(node, dict):
        for key, value in node.items():
            found.update(collect_problems(value, join(key)))
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            found.update(collect_problems(value, f"{prefix}[{index}]"))
    return found


def raise_problems(node: Any, prefix: str = "") -> None:
    """Raise one :class:`ConfigError` listing every problem under ``node`` (nothing when all is well)."""
    found = collect_problems(node, prefix)
    if found:
        lines = "\n".join(f"  {key}: {message}" for key, message in sorted(found.items()))
        raise ConfigError(f"invalid config value{'s' if len(found) > 1 else ''}:\n{lines}")
