"""Evaluation protocols (METHOD.md section 5): each a class named by ``_target_`` in ``conf/evaluation/``.

- :class:`~delift.protocols.finetune.FinetuneProtocol` (``evaluation=qlora`` / ``lora``);
- :class:`~delift.protocols.icl.IclProtocol` (``evaluation=icl``).

Both can run in one job (``evaluation=[icl,qlora]``); metrics are ``<name>/<metric>`` on the headline
test split and ``<name>/<split>/<metric>`` on the others (``existing`` in use case 3).
"""

from delift.protocols.base import EvalContext, Protocol, Timer, score_generations

__all__ = ["EvalContext", "Protocol", "Timer", "score_generations"]
