"""What model work a selector's ``select`` will do, declared by the selector (:meth:`Selector.model_work`).

Plan-independent: each item names examples, settings and a layout, never a FLOP, a tokenizer or a plan
stage; ``delift-plan`` (:mod:`delift.plan.stages`) turns each item into a stage and counts it. Every
model-run item runs on the scoring model (``scorer``, else the run's model). An empty list is the explicit
"no model work" (Random, Full, Initial); a selector that does not declare at all fails ``delift-plan``
with an error naming it.

The kinds:

- :class:`KernelWork`: one utility-kernel request (exact, counted by the engine's rules), or an estimated
  stand-in for a request that cannot be known before the run (Nuggets' k-means golden set);
- :class:`ScoringPass`: per-example scoring passes (:mod:`delift.scoring`) over training items (prompt ->
  response), answer items (header -> answer) or rated texts after a shared prefix (next-token scores);
- :class:`ReferenceTraining`: a reference adapter fine-tuned on examples with the run's first fine-tuning
  protocol's settings (LoBaSS);
- :class:`GradientPasses`: forward and backward passes of training examples (LESS: warm-up, gradients), an
  estimate from the examples' mean training length;
- :class:`EmbeddingPass`: a sentence-embedder pass (not a language model: the plan lists it, counting no FLOPs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

from delift.data.records import Example
from delift.kernel.settings import KernelRequest


@dataclass(frozen=True)
class KernelWork:
    """One utility kernel ``request``. ``maximised``: the selection holds post-processed copies of it for a
    submodular maximisation (DELIFT); else only the kernel itself (Nuggets). ``stays_sparse``: a sparse
    (knn) kernel stays sparse at selection (clip); False: it is densified (minmax). ``estimate``: the
    request stands in for one only the run knows; its cache share is then keyed by ``share`` (parts the
    real request depends on, beside the scoring model and the kernel settings)."""

    name: str
    request: KernelRequest
    maximised: bool = False
    stays_sparse: bool = True
    estimate: bool = False
    share: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ScoringPass:
    """Every example scored once, ``batch_size`` a forward call, cached under ``kind`` (the scores cache's
    kind: ``nll``, ``rating``). ``layout``: ``training`` (prompt -> response, ``max_length``), ``answer``
    (``header`` -> answer, ``max_length``) or ``rated`` (``texts[i]`` after the shared ``prefix``, the next
    token scored). ``adapter`` names the adapter state the scores are taken with (part of the cache share)."""

    name: str
    examples: Sequence[Example]
    layout: str
    batch_size: int
    kind: str = "nll"
    max_length: int = 1024
    header: str = ""
    texts: Sequence[str] = ()
    prefix: str = ""
    adapter: str = ""
    note: str = ""


@dataclass(frozen=True)
class ReferenceTraining:
    """A reference LoRA of the scoring model on ``examples``, trained with the run's first fine-tuning
    protocol's settings and seed (skipped by the plan when no protocol fine-tunes)."""

    name: str
    examples: Sequence[Example]


@dataclass(frozen=True)
class GradientPasses:
    """``count`` forward and backward passes of training examples whose lengths ``examples`` stand for
    (prompt -> response, ``max_length``): an estimate."""

    name: str
    examples: Sequence[Example]
    count: int
    max_length: int
    note: str = ""


@dataclass(frozen=True)
class EmbeddingPass:
    """``examples`` through the sentence embedder ``embedder``, ``batch_size`` at a time."""

    name: str
    examples: Sequence[Example]
    embedder: str
    batch_size: int


ModelWork = Union[KernelWork, ScoringPass, ReferenceTraining, GradientPasses, EmbeddingPass]
WORK_KINDS = (KernelWork, ScoringPass, ReferenceTraining, GradientPasses, EmbeddingPass)
NO_MODEL_WORK: list[ModelWork] = []  # what Random, Full and Initial declare


class UndeclaredWork(TypeError):
    """A selector that does not say what model work its ``select`` does."""
