"""In-context learning evaluation (METHOD.md section 5): retrieve, build the prompt, generate.

For each test example, the ``k`` training examples whose prompt text is most similar to the test
prompt's (cosine of L2-normalised sentence embeddings of ``instruction + input``; the test
response is unknown at inference, so responses take no part in retrieval) are shown before it,
each rendered exactly as the kernel shows a candidate (``shown_example``, e.g.
``"{prompt}{response}\\n\\n"``). The most similar example is placed last, next to the query.
When the prompt would exceed ``max_prompt_length`` tokens, the least similar examples are dropped
first, so no shown example is ever cut in the middle; a test prompt that is too long by itself is
shortened from the left by :func:`delift.evaluation.generation.generate`, as in training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from delift.data.prompts import PromptTemplate
from delift.data.records import Example

log = logging.getLogger(__name__)


def retrieval_text(example: Example) -> str:
    """What retrieval compares: the instruction and, when present, the input."""
    return f"{example.instruction}\n{example.input}".strip()


def nearest_examples(query_vectors: np.ndarray, example_vectors: np.ndarray, k: int) -> list[list[int]]:
    """For each query row, the indices of the ``k`` most similar example rows, most similar first.

    Rows are L2-normalised, so cosine = dot product; ties go to the lower example index.
    """
    if k < 0:
        raise ValueError(f"evaluation.icl.k must be >= 0, got {k}")
    k = min(k, example_vectors.shape[0])
    if k == 0:
        return [[] for _ in range(query_vectors.shape[0])]
    similarity = query_vectors @ example_vectors.T
    return [list(np.argsort(-row, kind="stable")[:k]) for row in similarity]


@dataclass
class IclPrompts:
    """The assembled prompts and, per test example, the ids actually shown (least similar first)."""

    prompts: list[str]
    shown_ids: list[list[str]]
    dropped_for_length: int  # shown examples removed because the prompt was too long


def build_icl_prompts(tests: Sequence[Example], shown_pool: Sequence[Example], neighbours: list[list[int]],
                      template: PromptTemplate, shown_example: str, count_tokens: Any,
                      max_prompt_length: int) -> IclPrompts:
    """``[shown_1] ... [shown_k] [test prompt]`` with shown_k the most similar example.

    ``count_tokens(text) -> int`` measures each part the way generation tokenises it (parts are
    tokenised separately, so the sum is exact for the byte-level and BPE tokenizers used here up to
    merges across a boundary; the shown format ends with a blank line, which no BPE merge crosses).
    """
    shown_texts: dict[int, str] = {}
    shown_lengths: dict[int, int] = {}
    prompts, shown_ids, dropped = [], [], 0
    for test, picks in zip(tests, neighbours):
        query = template.render(test)
        budget = max_prompt_length - count_tokens(query)
        chosen = list(picks)  # most similar first
        for j in chosen:
            if j not in shown_texts:
                shown_texts[j] = shown_example.format(prompt=template.render(shown_pool[j]),
                                                      response=shown_pool[j].output)
                shown_lengths[j] = count_tokens(shown_texts[j])
        while chosen and sum(shown_lengths[j] for j in chosen) > budget:
            chosen.pop()  # the least similar goes first
            dropped += 1
        ordered = chosen[::-1]  # least similar first, most similar next to the query
        prompts.append("".join(shown_texts[j] for j in ordered) + query)
        shown_ids.append([shown_pool[j].id for j in ordered])
    if dropped:
        log.warning("ICL: dropped %d shown examples to keep prompts within %d tokens", dropped, max_prompt_length)
    return IclPrompts(prompts=prompts, shown_ids=shown_ids, dropped_for_length=dropped)


def icl_prompts(tests: Sequence[Example], shown_pool: Sequence[Example], k: int, embedder: Any,
                tokenizer: Any, template: PromptTemplate, shown_example: str, max_prompt_length: int,
                pool_vectors: np.ndarray | None = None) -> IclPrompts:
    """Retrieve the ``k`` nearest ``shown_pool`` examples for every test example and build prompts.

    ``pool_vectors`` (the embeddings of ``shown_pool``'s retrieval texts) may be passed in, so several
    test splits share one embedding pass over the pool.
    """
    from delift.models.embeddings import embed

    if k == 0 or not shown_pool:
        neighbours = [[] for _ in tests]
    else:
        query_vectors = embed([retrieval_text(ex) for ex in tests], embedder)
        if pool_vectors is None:
            pool_vectors = embed([retrieval_text(ex) for ex in shown_pool], embedder)
        neighbours = nearest_examples(query_vectors, pool_vectors, k)

    def count_tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return build_icl_prompts(tests, shown_pool, neighbours, template, shown_example, count_tokens,
                             max_prompt_length)
