"""``KernelConfig``: the ``kernel`` config group's one dataclass, schema and runtime settings alike.

It is :class:`~delift.kernel.settings.BaseKernelConfig` (the exact kernel's settings, the approximation's
name, the embedder) plus one block per approximation strategy that has settings, named after it
(``kernel.learned``, ``kernel.knn``, ...): the blocks come from the strategies found in
:mod:`delift.kernel.approximations`, so a new strategy adds its block without an edit here.
"""

from __future__ import annotations

from dataclasses import field, make_dataclass

from delift.kernel.approximations import STRATEGIES, Approximation, find
from delift.kernel.settings import BaseKernelConfig


def _strategy(self: BaseKernelConfig) -> Approximation:
    """The strategy ``kernel.approximation`` chooses (:func:`~delift.kernel.approximations.find`)."""
    return find(self.approximation)


def _assemble() -> type:
    blocks = [(name, strategy.Config, field(default_factory=strategy.Config))
              for name, strategy in STRATEGIES.items() if strategy.Config is not None]
    cls = make_dataclass("KernelConfig", blocks, bases=(BaseKernelConfig,),
                         namespace={"APPROXIMATIONS": tuple(STRATEGIES), "strategy": _strategy,
                                    "__doc__": "The DELIFT utility kernel (see conf/kernel/default.yaml for each key)."})
    cls.__module__ = __name__  # pickles (Hydra launchers) and reads as delift.kernel.config.KernelConfig
    return cls


KernelConfig = _assemble()
