"""Map each dataset's ORIGINAL row schema to an ``Example``; one code path for hub and local rows.

A formatter is ``(row, location) -> Example``. ``location`` comes from
:func:`delift.data.readers.iter_rows`; it appears in every error message and, for datasets
without an id field, gives the id ``f"{dataset}-{row}"`` (``row`` = 0-based row ordinal, see
:func:`delift.data.records.row_index`). ``source`` is the formatter's dataset name.

Choices worth knowing:
- A required text field that is missing, not a string, or (for instruction/output) empty or
  whitespace-only raises :class:`DataFormatError` naming the location and the field.
- ``mmlu``: ``input`` lists the choices as ``"A. ...\\nB. ..."``; ``output`` is the answer letter
  followed by the choice text (``"B. 4"``), so exact match and letter scoring both work.
- ``mixinstruct``: many rows have an empty ``instruction`` and the task in ``input``; the input is
  then promoted to the instruction (and ``input`` left empty) so prompts never show an empty
  instruction section. ``candidates`` (other systems' generations) are checked to be a list of
  objects and counted, never used as references.
- ``p3``: the literal ``<|endoftext|>`` that ends every completion of the shared sample is removed.
- ``hotpotqa`` and ``mt_bench``: see :mod:`delift.data.formatters_qa`.
"""

from __future__ import annotations

from typing import Any

from delift.data.records import (
    HUB_CONFIG_FIELD,
    DataFormatError,
    Example,
    optional_text,
    register_format,
    required_field,
    row_id,
    text_field,
)

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
P3_END = "<|endoftext|>"  # every completion of the shared P3 sample ends with this literal


@register_format("alpaca")
def format_alpaca(row: dict[str, Any], location: str) -> Example:
    """tatsu-lab/alpaca: ``instruction, input, output`` (hub rows also carry ``text``, ignored).

    The release's placeholder output ``<nooutput>`` is rejected like an empty one."""
    output = text_field(row, location, "output", required=True)
    if output.strip() == "<nooutput>":
        raise DataFormatError(location, "output", "placeholder '<nooutput>' instead of a response")
    return Example(
        id=row_id(row, location, "alpaca", None),
        instruction=text_field(row, location, "instruction", required=True),
        input=text_field(row, location, "input"),
        output=output,
        source="alpaca",
    )


@register_format("dolly")
def format_dolly(row: dict[str, Any], location: str) -> Example:
    """databricks-dolly-15k: ``instruction, context, response, category``."""
    category = optional_text(row, location, "category")
    return Example(
        id=row_id(row, location, "dolly", None),
        instruction=text_field(row, location, "instruction", required=True),
        input=text_field(row, location, "context"),
        output=text_field(row, location, "response", required=True),
        source="dolly",
        metadata={"category": category} if category is not None else {},
    )


@register_format("mixinstruct")
def format_mixinstruct(row: dict[str, Any], location: str) -> Example:
    """llm-blender/mix-instruct: ``id, instruction, input, output, candidates`` (texts dropped)."""
    instruction = text_field(row, location, "instruction")
    input_text = text_field(row, location, "input")
    if not instruction.strip():
        if not input_text.strip():
            raise DataFormatError(location, "instruction", "instruction and input are both empty")
        instruction, input_text = input_text, ""
    candidates = row.get("candidates")
    if candidates is not None and not isinstance(candidates, list):
        raise DataFormatError(
            location, "candidates", f"expected a list, got {type(candidates).__name__}"
        )
    for index, candidate in enumerate(candidates or []):
        if not isinstance(candidate, dict):
            raise DataFormatError(location, f"candidates[{index}]",
                                  f"expected an object, got {type(candidate).__name__}")
    return Example(
        id=row_id(row, location, "mixinstruct", "id"),
        instruction=instruction,
        input=input_text,
        output=text_field(row, location, "output", required=True),
        source="mixinstruct",
        metadata={"num_candidates": len(candidates or [])},
    )


@register_format("gsm8k")
def format_gsm8k(row: dict[str, Any], location: str) -> Example:
    """openai/gsm8k: ``question, answer``; the final answer follows the last ``####``."""
    answer = text_field(row, location, "answer", required=True)
    if "####" not in answer:
        raise DataFormatError(location, "answer", "no '####' final-answer marker")
    final = answer.rsplit("####", 1)[1].strip()
    if not final:
        raise DataFormatError(location, "answer", "empty final answer after '####'")
    return Example(
        id=row_id(row, location, "gsm8k", None),
        instruction=text_field(row, location, "question", required=True),
        input="",
        output=answer,
        source="gsm8k",
        metadata={"final_answer": final},
    )


def _mmlu_answer(value: Any, location: str, n_choices: int) -> int:
    """An int index (hub, local JSONL), a digit string (CSV) or a letter (official CSVs)."""
    index: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        index = value
    elif isinstance(value, str) and value.strip().isdigit():
        index = int(value.strip())
    elif isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS:
        index = LETTERS.index(value.strip().upper())
    if index is None or not 0 <= index < n_choices:
        raise DataFormatError(
            location, "answer", f"expected an index in 0..{n_choices - 1}, got {value!r}"
        )
    return index


@register_format("mmlu")
def format_mmlu(row: dict[str, Any], location: str) -> Example:
    """MMLU in the local schema (``choice0..choice3``) or hub cais/mmlu (``choices`` list)."""
    if "choices" in row:
        choices = row["choices"]
        if not isinstance(choices, list) or len(choices) < 2:
            raise DataFormatError(location, "choices", f"expected a list of >= 2, got {choices!r}")
        for choice in choices:
            if not isinstance(choice, str):
                raise DataFormatError(
                    location, "choices", f"expected strings, got {type(choice).__name__}"
                )
    else:
        choices = [text_field(row, location, f"choice{i}") for i in range(4)]
    answer = _mmlu_answer(required_field(row, location, "answer"), location, len(choices))
    letter = LETTERS[answer]
    metadata: dict[str, Any] = {"answer_index": answer, "answer_letter": letter,
                                "choices": list(choices)}
    subject = optional_text(row, location, "subject")
    if subject is not None:
        metadata["subject"] = subject
    return Example(
        id=row_id(row, location, "mmlu", None),
        instruction=text_field(row, location, "question", required=True),
        input="\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(choices)),
        output=f"{letter}. {choices[answer]}",
        source="mmlu",
        metadata=metadata,
    )


def _squad_answers(row: dict[str, Any], location: str) -> tuple[list[str], list[int] | None]:
    """Answer texts (and starts, hub only) from a list of ``{"text"}`` or a dict of lists."""
    answers = required_field(row, location, "answers")
    starts: list[int] | None = None
    if isinstance(answers, dict):
        texts = answers.get("text")
        starts = answers.get("answer_start")
    elif isinstance(answers, list):
        if not all(isinstance(item, dict) and "text" in item for item in answers):
            raise DataFormatError(location, "answers", "expected a list of {'text': ...} objects")
        texts = [item["text"] for item in answers]
    else:
        raise DataFormatError(
            location, "answers", f"expected a list or dict, got {type(answers).__name__}"
        )
    if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
        raise DataFormatError(location, "answers", "answer texts must be a list of strings")
    if not texts or not texts[0].strip():
        raise DataFormatError(location, "answers", "no answer text")
    return texts, list(starts) if isinstance(starts, list) else None


@register_format("squad")
def format_squad(row: dict[str, Any], location: str) -> Example:
    """SQuAD v1.1, local (``answers`` list of ``{"text"}``) or hub rajpurkar/squad schema."""
    texts, starts = _squad_answers(row, location)
    metadata: dict[str, Any] = {"answers": texts}
    title = optional_text(row, location, "title")
    if title is not None:
        metadata["title"] = title
    if starts is not None:
        metadata["answer_starts"] = starts
    return Example(
        id=row_id(row, location, "squad", "id"),
        instruction=text_field(row, location, "question", required=True),
        input=text_field(row, location, "context", required=True),
        output=texts[0],
        source="squad",
        metadata=metadata,
    )


@register_format("p3")
def format_p3(row: dict[str, Any], location: str) -> Example:
    """P3/T0 sample ``prompt, completion, template`` (trailing ``<|endoftext|>`` stripped), or hub
    bigscience/P3 ``inputs_pretokenized, targets_pretokenized`` (template = the hub config)."""
    hub = "prompt" not in row and "inputs_pretokenized" in row
    prompt_field, completion_field = (
        ("inputs_pretokenized", "targets_pretokenized") if hub else ("prompt", "completion"))
    completion = text_field(row, location, completion_field).strip()
    completion = completion.removesuffix(P3_END).strip()
    if not completion:
        raise DataFormatError(location, completion_field, "must not be empty")
    template = optional_text(row, location, "template")
    if template is None:
        template = optional_text(row, location, HUB_CONFIG_FIELD)
    return Example(
        id=row_id(row, location, "p3", None),
        instruction=text_field(row, location, prompt_field, required=True).strip(),
        input="",
        output=completion,
        source="p3",
        metadata={"template": template} if template is not None else {},
    )
