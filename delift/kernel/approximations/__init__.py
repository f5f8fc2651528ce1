"""Kernel approximation strategies, found by module: ``kernel.approximation=<name>``.

- ``exact`` (default, :mod:`.exact`): every entry computed by the engine.
- ``learned`` (:mod:`.learned`, after NN-CIFT): exact UF on a seeded sample, a pair network predicts the rest.
- ``knn`` (:mod:`.knn`): each target scored exactly against its nearest candidates only; UF = 0 elsewhere.

Adding one is one module here with an ``APPROXIMATION`` (a :class:`~.base.Approximation`) and, when it has
settings, its YAML block ``<name>:`` in ``conf/kernel/default.yaml`` (README, "Extending").
"""

from __future__ import annotations

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
