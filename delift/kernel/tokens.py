"""Token ids of examples as the kernel sees them, and the targets whose response cannot fit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.kernel.sequences import response_fits
from delift.kernel.settings import BaseKernelConfig


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of one example's parts (``shown`` = how it appears as the in-context example)."""

    query: list[int]
    response: list[int]
    shown: list[int]
    id: str = "?"  # the example's id, for error messages


def tokenize_examples(examples: Sequence[Example], tokenizer, template: PromptTemplate,
                      config: BaseKernelConfig) -> list[TokenizedExample]:
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    out = []
    for ex in examples:
        prompt = template.render(ex)
        shown = config.shown_example.format(prompt=prompt, response=ex.output)
        out.append(TokenizedExample(query=ids(prompt), response=ids(ex.output), shown=ids(shown), id=ex.id))
    return out


def overflowing_targets(examples: Sequence[Example], tokenizer, template: PromptTemplate,
                        config: BaseKernelConfig) -> list[str]:
    """Ids of examples whose response cannot fit in ``config.max_length``."""
    eos = tokenizer.eos_token_id
    return [ex.id for ex, tok in zip(examples, tokenize_examples(examples, tokenizer, template, config))
            if not response_fits(tok.response, eos, config.eos_after_prompt, config.max_length)]
