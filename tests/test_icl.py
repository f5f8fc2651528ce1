"""ICL evaluation: nearest-example retrieval and prompt assembly, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.evaluation.icl import build_icl_prompts, icl_prompts, nearest_examples, retrieval_text

TEMPLATE = PromptTemplate()
SHOWN = "{prompt}{response}\n\n"


def ex(i: int, instruction: str, output: str = "out", input_: str = "") -> Example:
    return Example(id=f"e{i}", instruction=instruction, input=input_, output=output, source="t")


def unit(*rows):
    m = np.array(rows, dtype=np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_nearest_examples_orders_by_cosine_with_ties_to_lower_index():
    queries = unit([1, 0], [0, 1])
    pool = unit([1, 0], [1, 1], [0, 1], [1, 0])
    # query 0: cos = 1, .707, 0, 1 -> ties 0 and 3 -> [0, 3, 1]; query 1: cos = 0, .707, 1, 0 -> [2, 1, 0]
    assert nearest_examples(queries, pool, 3) == [[0, 3, 1], [2, 1, 0]]
    assert nearest_examples(queries, pool, 0) == [[], []]
    assert nearest_examples(queries, pool, 10)[0] == [0, 3, 1, 2]  # k capped at the pool size
    with pytest.raises(ValueError, match="evaluation.icl.k"):
        nearest_examples(queries, pool, -1)


def test_prompt_puts_the_most_similar_example_last_and_drops_the_least_similar_first():
    pool = [ex(0, "alpha", "A"), ex(1, "beta", "B"), ex(2, "gamma", "G")]
    test = ex(9, "query")
    shown = [SHOWN.format(prompt=TEMPLATE.render(p), response=p.output) for p in pool]
    query = TEMPLATE.render(test)
    neighbours = [[2, 0, 1]]  # most similar first

    built = build_icl_prompts([test], pool, neighbours, TEMPLATE, SHOWN, len, max_prompt_length=10_000)
    assert built.prompts == [shown[1] + shown[0] + shown[2] + query]
    assert built.shown_ids == [["e1", "e0", "e2"]] and built.dropped_for_length == 0

    # room for exactly two shown examples (character counts): e1, the least similar, is dropped
    room = len(query) + len(shown[2]) + len(shown[0])
    built = build_icl_prompts([test], pool, neighbours, TEMPLATE, SHOWN, len, max_prompt_length=room)
    assert built.prompts == [shown[0] + shown[2] + query] and built.dropped_for_length == 1
    built = build_icl_prompts([test], pool, neighbours, TEMPLATE, SHOWN, len, max_prompt_length=room - 1)
    assert built.prompts == [shown[2] + query] and built.dropped_for_length == 2


def test_icl_prompts_retrieve_with_the_embedder(tiny_tokenizer):
    from delift.models.embeddings import embed, load_sentence_embedder

    embedder = load_sentence_embedder("all-MiniLM-L6-v2", "cpu")
    pool = [ex(0, "Translate 'cat' into French."), ex(1, "What is 12 times 3?"), ex(2, "Name a prime number above 10."),
            ex(3, "Translate 'dog' into Spanish.")]
    tests = [ex(10, "Translate 'house' into German."), ex(11, "What is 7 times 8?")]
    built = icl_prompts(tests, pool, 2, embedder, tiny_tokenizer, TEMPLATE, SHOWN, max_prompt_length=4096)
    # independent check: cosine of the normalised embeddings, computed here
    q = embed([retrieval_text(t) for t in tests], embedder)
    p = embed([retrieval_text(e) for e in pool], embedder)
    expected = [[pool[j].id for j in np.argsort(-row, kind="stable")[:2][::-1]] for row in q @ p.T]
    assert built.shown_ids == expected
    assert built.shown_ids[0][-1] in ("e0", "e3") and built.shown_ids[1][-1] == "e1"
    assert all(prompt.endswith(TEMPLATE.render(t)) for prompt, t in zip(built.prompts, tests))


def test_zero_shot_when_k_is_zero_or_the_pool_is_empty(tiny_tokenizer):
    tests = [ex(1, "question")]
    for k, pool in ((0, [ex(2, "other")]), (5, [])):
        built = icl_prompts(tests, pool, k, None, tiny_tokenizer, TEMPLATE, SHOWN, max_prompt_length=100)
        assert built.prompts == [TEMPLATE.render(tests[0])] and built.shown_ids == [[]]
