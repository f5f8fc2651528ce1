"""Rendering an example's prompt. Training, inference and the kernel all use this one function."""

from __future__ import annotations

from dataclasses import dataclass

from delift.data.records import Example

DEFAULT_WITH_INPUT = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
DEFAULT_WITHOUT_INPUT = "### Instruction:\n{instruction}\n\n### Response:\n"


@dataclass(frozen=True)
class PromptTemplate:
    """Two format strings: one for examples with an ``input`` field, one for those without."""

    with_input: str = DEFAULT_WITH_INPUT
    without_input: str = DEFAULT_WITHOUT_INPUT

    def render(self, example: Example) -> str:
        if example.input.strip():
            return self.with_input.format(instruction=example.instruction, input=example.input)
        return self.without_input.format(instruction=example.instruction)
