"""Formatters for the two evaluation sets with nested schemas: HotpotQA and MT-Bench.

``hotpotqa`` reads four schemas, detected per row:

- official distractor file (``_id``, ``question``, ``answer``, ``type``, ``level``,
  ``supporting_facts`` = ``[[title, sentence index], ...]``, ``context`` = ``[[title,
  [sentences]], ...]``, 10 paragraphs of which 2 are gold);
- hub ``hotpotqa/hotpot_qa`` (``id``; ``supporting_facts`` = ``{title: [...], sent_id: [...]}``;
  ``context`` = ``{title: [...], sentences: [[...], ...]}``);
- the HotpotQA website explorer (``_id``, ``title_a``/``para_a``, ``title_b``/``para_b`` = the two
  gold paragraphs as sentence lists, ``distractors``);
- the simplified question list (``question``, ``answer``, ``type`` only).

Choice: ``input`` holds the GOLD paragraphs only (those named in ``supporting_facts``, in context
order; ``para_a`` then ``para_b`` on the website schema), each as ``"<title>: <sentences joined by
spaces>"``, separated by blank lines. The 8 distractors would multiply prompt length by ~5 (most
would be truncated at CPU sequence lengths) for a reading-comprehension signal the kernel does
not need; this is HotpotQA's "gold paragraphs" setting, easier than the distractor setting. The
simplified schema has no paragraphs, so ``input`` is empty (closed-book). ``output`` = ``answer``.

``mt_bench`` reads the FastChat ``question.jsonl`` (``question_id``, ``category``, ``turns``,
optional ``reference``) and the hub copy ``HuggingFaceH4/mt_bench_prompts`` (``prompt_id``,
``category``, ``prompt``, ``reference`` = ``[]`` when absent). ``instruction`` = the first user
turn, ``output`` = the first reference answer. A question without a reference raises a
``DataFormatError`` on field ``reference`` (the kernel and the metrics need a response), so data
configs set ``on_bad_row: skip`` and the loader logs how many were skipped and why. The second
turn and all references are kept in metadata.
"""

from __future__ import annotations

from typing import Any

from delift.data.records import (
    DataFormatError,
    Example,
    optional_text,
    register_format,
    required_field,
    row_id,
    text_field,
)


def _sentences(value: Any, location: str, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise DataFormatError(location, name, f"expected a list of sentence strings, got {value!r:.80}")
    return value


def _paragraph(title: str, sentences: list[str]) -> str:
    return f"{title}: {' '.join(s.strip() for s in sentences if s.strip())}"


def _context(row: dict[str, Any], location: str) -> list[tuple[str, list[str]]]:
    """``(title, sentences)`` pairs from the official list or the hub dict-of-lists."""
    context = required_field(row, location, "context")
    if isinstance(context, dict):
        titles, sentences = context.get("title"), context.get("sentences")
        if not isinstance(titles, list) or not isinstance(sentences, list) or len(titles) != len(sentences):
            raise DataFormatError(location, "context", "expected {title: [...], sentences: [[...]]} of equal length")
        pairs = list(zip(titles, sentences))
    elif isinstance(context, list):
        if not all(isinstance(item, (list, tuple)) and len(item) == 2 for item in context):
            raise DataFormatError(location, "context", "expected a list of [title, [sentences]] pairs")
        pairs = [tuple(item) for item in context]
    else:
        raise DataFormatError(location, "context", f"expected a list or dict, got {type(context).__name__}")
    out = []
    for index, (title, sentences) in enumerate(pairs):
        if not isinstance(title, str):
            raise DataFormatError(location, f"context[{index}]", f"expected a title string, got {title!r:.80}")
        out.append((title, _sentences(sentences, location, f"context[{index}]")))
    return out


def _supporting_titles(row: dict[str, Any], location: str) -> list[str]:
    """Titles named in ``supporting_facts`` (official pairs or hub dict), first-seen order."""
    facts = required_field(row, location, "supporting_facts")
    if isinstance(facts, dict):
        titles = facts.get("title")
    elif isinstance(facts, list) and all(isinstance(f, (list, tuple)) and len(f) == 2 for f in facts):
        titles = [f[0] for f in facts]
    else:
        raise DataFormatError(location, "supporting_facts", "expected [[title, index], ...] or {title: [...]}")
    if not isinstance(titles, list) or not titles or not all(isinstance(t, str) for t in titles):
        raise DataFormatError(location, "supporting_facts", f"expected a non-empty list of titles, got {titles!r:.80}")
    return list(dict.fromkeys(titles))


def _gold_from_context(row: dict[str, Any], location: str) -> list[tuple[str, list[str]]]:
    context = _context(row, location)
    wanted = _supporting_titles(row, location)
    missing = [t for t in wanted if t not in {title for title, _ in context}]
    if missing:
        raise DataFormatError(location, "supporting_facts", f"title(s) {missing} not found in context")
    return [(title, sents) for title, sents in context if title in wanted]


def _gold_from_website(row: dict[str, Any], location: str) -> list[tuple[str, list[str]]]:
    return [(text_field(row, location, f"title_{side}", required=True),
             _sentences(required_field(row, location, f"para_{side}"), location, f"para_{side}")) for side in "ab"]


@register_format("hotpotqa")
def format_hotpotqa(row: dict[str, Any], location: str) -> Example:
    """HotpotQA (official, hub, website or simplified schema): question -> answer, gold paragraphs as input."""
    if "para_a" in row or "title_a" in row:
        gold, schema = _gold_from_website(row, location), "website"
    elif "context" in row or "supporting_facts" in row:
        gold, schema = _gold_from_context(row, location), "distractor"
    else:
        gold, schema = [], "simplified"
    id_field = "_id" if "_id" in row else "id" if "id" in row else None
    metadata: dict[str, Any] = {"schema": schema, "gold_titles": [title for title, _ in gold]}
    for name in ("type", "level"):
        value = optional_text(row, location, name)
        if value is not None:
            metadata[name] = value
    return Example(
        id=row_id(row, location, "hotpotqa", id_field),
        instruction=text_field(row, location, "question", required=True).strip(),
        input="\n\n".join(_paragraph(title, sents) for title, sents in gold),
        output=text_field(row, location, "answer", required=True).strip(),
        source="hotpotqa",
        metadata=metadata,
    )


def _turns(row: dict[str, Any], location: str) -> tuple[str, list[str]]:
    name = "turns" if "turns" in row or "prompt" not in row else "prompt"
    turns = required_field(row, location, name)
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
        raise DataFormatError(location, name, f"expected a non-empty list of strings, got {turns!r:.80}")
    if not turns[0].strip():
        raise DataFormatError(location, name, "the first turn is empty")
    return name, turns


@register_format("mt_bench")
def format_mt_bench(row: dict[str, Any], location: str) -> Example:
    """MT-Bench question (FastChat or hub schema): first turn -> first reference answer."""
    _, turns = _turns(row, location)
    category = text_field(row, location, "category", required=True)
    id_field = "question_id" if "question_id" in row or "prompt_id" not in row else "prompt_id"
    question_id = row_id(row, location, "mt_bench", id_field)
    references = row.get("reference")
    if references is None or references == []:
        raise DataFormatError(location, "reference",
                              f"no reference answer ('{category}' question {question_id}); "
                              "the kernel and metrics need one (on_bad_row: skip drops it)")
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise DataFormatError(location, "reference", f"expected a list of strings, got {references!r:.80}")
    if not references[0].strip():
        raise DataFormatError(location, "reference", "the first reference answer is empty")
    return Example(
        id=question_id,
        instruction=turns[0].strip(),
        input="",
        output=references[0].strip(),
        source="mt_bench",
        metadata={"question_id": row[id_field], "category": category,
                  "second_turn": turns[1] if len(turns) > 1 else None, "references": list(references)},
    )
