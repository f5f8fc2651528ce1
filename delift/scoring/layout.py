"""What a scoring pass sees: context tokens, then the scored tokens (the training layout).

``training_items``: context = ``tok(prefix + prompt)``, scored = ``tok(response) + [EOS]``, each part
tokenised on its own with no special tokens, exactly as :func:`delift.training.finetune.tokenize_for_training`
lays out a training example; a context that does not fit ``max_length`` loses tokens from the left,
a response that cannot fit with its EOS is an error naming the example.
``answer_items``: the answer alone after a fixed header (IFD's unconditioned score): context =
``tok(header)``, or one EOS when the header is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from delift.data.prompts import PromptTemplate
from delift.data.records import Example


@dataclass(frozen=True)
class ScoringItem:
    """One sequence to score: ``context + scored``; only ``scored`` tokens are predicted and counted."""

    id: str
    context: tuple[int, ...]
    scored: tuple[int, ...]


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _eos(tokenizer: Any) -> int:
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; scoring appends EOS to every response")
    return int(tokenizer.eos_token_id)


def _fit(example_id: str, context: list[int], scored: list[int], max_length: int) -> ScoringItem:
    if len(scored) >= max_length:
        raise ValueError(f"example {example_id!r}: response + EOS is {len(scored)} tokens; it cannot be scored "
                         f"within max_length={max_length} with any context")
    room = max_length - len(scored)
    return ScoringItem(example_id, tuple(context[-room:]), tuple(scored))


def training_items(examples: Sequence[Example], tokenizer: Any, template: PromptTemplate, max_length: int,
                   prefix: str = "") -> list[ScoringItem]:
    """Response + EOS scored after ``prefix + template.render(example)``."""
    eos = _eos(tokenizer)
    return [_fit(ex.id, _ids(tokenizer, prefix + template.render(ex)), _ids(tokenizer, ex.output) + [eos], max_length)
            for ex in examples]


def answer_items(examples: Sequence[Example], tokenizer: Any, header: str, max_length: int) -> list[ScoringItem]:
    """Response + EOS scored after ``header`` alone (one EOS when the header is empty)."""
    eos = _eos(tokenizer)
    context = _ids(tokenizer, header) or [eos]
    return [_fit(ex.id, context, _ids(tokenizer, ex.output) + [eos], max_length) for ex in examples]
