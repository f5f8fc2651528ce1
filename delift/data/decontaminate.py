"""Drop training-side examples that contain an evaluation question.

An example is contaminated when the normalised prompt (``instruction`` + ``input``) of an
evaluation example equals, or occurs as a whole-word run inside, the normalised ``instruction``,
``input`` or whole prompt of the pool example. Whole prompts, not instructions alone: many datasets
repeat one instruction ("Rewrite the following sentence.") over different inputs, and sharing it
is not contamination. Normalising lower-cases and collapses every run of non-alphanumeric
characters (punctuation, whitespace) to one space, so "Who wrote  Hamlet?" and "who wrote hamlet"
match. Containment catches templated prompts (P3 wraps HotpotQA questions in instructions);
questions shorter than ``min_words`` (default 8) words are matched exactly only, so generic stems
("Which of the following is true?") never remove every pool example that quotes them. Word-run lookup is indexed on each question's first ``min_words`` words, so the cost
grows with the pool's length, not pool size x evaluation size.

The shared P3 sample's five ``kilt_tasks_hotpotqa_*`` templates hold HotpotQA (KILT) questions:
``conf/data/p3.yaml`` excludes them through ``row_filter.exclude`` (:data:`P3_HOTPOTQA_TEMPLATES`).
"""

from __future__ import annotations

import logging
import re
from typing import Iterable, Sequence

from delift.data.records import Example

log = logging.getLogger(__name__)

P3_HOTPOTQA_TEMPLATES = (
    "kilt_tasks_hotpotqa_combining_facts",
    "kilt_tasks_hotpotqa_complex_question",
    "kilt_tasks_hotpotqa_final_exam",
    "kilt_tasks_hotpotqa_formulate",
    "kilt_tasks_hotpotqa_straighforward_qa",
)
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise(text: str) -> str:
    """Lower-case; every run of characters other than a-z and 0-9 becomes one space; trimmed."""
    return _NON_ALNUM.sub(" ", text.lower()).strip()


class QuestionIndex:
    """Normalised evaluation questions, for exact and whole-word containment lookups."""

    def __init__(self, questions: Iterable[str], min_words: int = 8) -> None:
        if min_words < 1:
            raise ValueError(f"min_words must be >= 1, got {min_words}")
        self.min_words = min_words
        self.exact: set[str] = set()
        self.by_prefix: dict[tuple[str, ...], set[tuple[str, ...]]] = {}
        for question in questions:
            norm = normalise(question)
            if not norm:
                continue
            self.exact.add(norm)
            words = tuple(norm.split(" "))
            if len(words) >= min_words:
                self.by_prefix.setdefault(words[:min_words], set()).add(words)

    def __len__(self) -> int:
        return len(self.exact)

    def matches(self, text: str) -> bool:
        """True when ``text`` is, or contains as a whole-word run, an indexed question."""
        norm = normalise(text)
        if not norm:
            return False
        if norm in self.exact:
            return True
        words = norm.split(" ")
        k = self.min_words
        for start in range(len(words) - k + 1):
            for question in self.by_prefix.get(tuple(words[start:start + k]), ()):
                if tuple(words[start:start + len(question)]) == question:
                    return True
        return False


def prompt_text(example: Example) -> str:
    """Instruction and input, the part of an example a model is asked (the response excluded)."""
    return f"{example.instruction} {example.input}"


def decontaminate(
    pool: Sequence[Example], evaluation: Sequence[Example], *, min_words: int = 8, name: str = "pool"
) -> tuple[list[Example], int]:
    """``(kept, dropped)``: pool examples whose instruction, input or prompt holds no evaluation prompt."""
    index = QuestionIndex((prompt_text(ex) for ex in evaluation), min_words=min_words)
    kept = [ex for ex in pool
            if not any(index.matches(text) for text in (ex.instruction, ex.input, prompt_text(ex)))]
    dropped = len(pool) - len(kept)
    log.log(logging.WARNING if dropped else logging.INFO,
            "decontamination: dropped %d of %d %s examples containing one of %d evaluation questions",
            dropped, len(pool), name, len(index))
    return kept, dropped
