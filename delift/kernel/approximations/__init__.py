"""Kernel approximation strategies, found by module: ``kernel.approximation=<name>``.

- ``exact`` (default, :mod:`.exact`): every entry computed by the engine.
- ``learned`` (:mod:`.learned`, after NN-CIFT): exact UF on a seeded sample, a pair network predicts the rest.
- ``knn`` (:mod:`.knn`): each target scored exactly against its nearest candidates only; UF = 0 elsewhere.

Adding one is one module here with an ``APPROXIMATION`` (a :class:`~.base.Approximation`) and, when it has
settings, its YAML block ``<name>:`` in ``conf/kernel/default.yaml`` (README, "Extending").

An approximation outside this package (a project's own, or a test's in a temporary folder) is chosen by its
module path: ``kernel.approximation=my_package.my_approx`` imports that module (it must be importable, e.g.
on ``PYTHONPATH``) and uses its ``APPROXIMATION``, whose ``name`` must be that path; its settings are its
``Config``'s defaults (a block under ``kernel.`` exists only for the strategies of this package). Everything
else asks the strategy (:func:`find`): the engine its ``utility`` / ``fill`` / ``key``, the cost plan its
``plan`` / ``stored_entries`` / ``block_bytes``, the cache its ``layout`` (dense or CSR).
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil

from delift.kernel.approximations.base import Approximation
from delift.kernel.settings import EXACT


def discover() -> dict[str, Approximation]:
    """Every strategy of this package by name: ``exact`` first, then the others by name."""
    found: dict[str, Approximation] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        strategy = getattr(module, "APPROXIMATION", None)
        if strategy is None:
            continue  # base and helper modules
        if not isinstance(strategy, Approximation):
            raise TypeError(f"{module.__name__}.APPROXIMATION is a {type(strategy).__name__}, not an Approximation")
        if strategy.name in found:
            raise ValueError(f"kernel approximation {strategy.name!r} is defined twice ({module.__name__})")
        found[strategy.name] = strategy
    if EXACT not in found:
        raise RuntimeError(f"no {EXACT!r} kernel strategy in {__name__}")
    return {name: found[name] for name in sorted(found, key=lambda name: (name != EXACT, name))}


STRATEGIES = discover()


def find(name: str) -> Approximation:
    """The strategy ``kernel.approximation=name`` chooses: one of this package's, else the ``APPROXIMATION`` of the
    module ``name`` (imported once). An unknown name is a ValueError naming the choices (and the closest one)."""
    if name in STRATEGIES:
        return STRATEGIES[name]
    known = ", ".join(STRATEGIES)
    close = difflib.get_close_matches(name, list(STRATEGIES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if "." not in name:
        raise ValueError(f"kernel.approximation={name!r}: expected one of {known}{hint}, or the module path of a "
                         "strategy outside delift (my_package.my_approx)")
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"kernel.approximation={name!r}: not one of {known}{hint}, and the module cannot be "
                         f"imported ({exc})") from None
    strategy = getattr(module, "APPROXIMATION", None)
    if not isinstance(strategy, Approximation):
        raise ValueError(f"kernel.approximation={name!r}: module {name} has no APPROXIMATION (an Approximation)")
    if strategy.name != name:
        raise ValueError(f"kernel.approximation={name!r}: {name}.APPROXIMATION is named {strategy.name!r}; a strategy "
                         "outside delift is named by its module path")
    return strategy
