"""The cost plan's kernel counts against what the engine executes: its BlockStats and its forward calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_examples

from delift.data.prompts import PromptTemplate
from delift.kernel.blocks import iter_blocks
from delift.kernel.cache import KernelCache
from delift.kernel.config import KernelConfig
from delift.kernel.engine import BlockStats, ScoringSetup, score_one_shot, score_zero_shot
from delift.kernel.front import Kernels
from delift.kernel.probabilities import decoder_and_head
from delift.kernel.provider import KernelProvider
from delift.kernel.tokens import tokenize_examples
from delift.plan.kernel import Schedule, exact_kernel, kernel_work, one_shot

TEMPLATE = PromptTemplate()


@pytest.fixture(scope="module")
def counted(tiny_spec):
    """The tiny model with a counter of its decoder body's forward calls."""
    from delift.models.loading import load_model

    model = load_model(tiny_spec)
    calls = []
    decoder_and_head(model)[0].register_forward_pre_hook(lambda *_: calls.append(1))
    return model, calls


def _setup(model, tokenizer, config, workers):
    return ScoringSetup(model, tokenizer.eos_token_id, tokenizer.pad_token_id, config.eos_after_prompt,
                        config.max_length, config.batch_size, config.tokens_per_batch, workers=workers)


# max_length 1024: every pair on the prefix path; 185: about half the pairs truncated; 90: all of them
@pytest.mark.parametrize("max_length,tokens_per_batch,block_size,threads", [
    (1024, 8192, 4, 1), (1024, 300, 5, 2), (185, 8192, 4, 2), (185, 300, 9, 1), (90, 8192, 4, 1)])
def test_planned_kernel_equals_the_engine_block_by_block(counted, tiny_tokenizer, max_length, tokens_per_batch,
                                                          block_size, threads):
    model, calls = counted
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        config = KernelConfig(max_length=max_length, batch_size=3, tokens_per_batch=tokens_per_batch,
                              block_size=block_size)
        targets = tokenize_examples(make_examples(9), tiny_tokenizer, TEMPLATE, config)
        candidates = tokenize_examples(make_examples(7, "c"), tiny_tokenizer, TEMPLATE, config)
        setup = _setup(model, tiny_tokenizer, config, config.workers)
        stats, zero_tokens = BlockStats(), 0
        calls.clear()
        b = block_size
        for block in iter_blocks(len(targets), len(candidates), b):
            rows = targets[block.row * b:(block.row + 1) * b]
            if block.col is None:
                zero_tokens += score_zero_shot(setup, rows)[1].tokens
            else:
                stats.add(score_one_shot(setup, rows, candidates[block.col * b:(block.col + 1) * b])[1])
        work = exact_kernel(Schedule.of(config, setup.workers), targets, candidates, b)
    finally:
        torch.set_num_threads(before)
    assert setup.workers == threads  # one pass per thread: the prefix chunks depend on it
    assert work.pairs == stats.pairs == 63 and work.sequences == 63 + 9
    assert work.tokens == stats.tokens + zero_tokens
    assert work.per_sequence == stats.per_sequence
    assert work.passes == len(calls)
    if max_length == 185:
        assert 0 < work.per_sequence < 63
    if max_length == 90:
        assert work.per_sequence == 63


def test_planned_pairs_of_a_wanted_mask_equal_the_engine(counted, tiny_tokenizer):
    """A mask of wanted pairs (the knn approximation's engine path): only their continuations and the prefixes
    some target wants run."""
    model, calls = counted
    config = KernelConfig(max_length=185, batch_size=3, tokens_per_batch=300)
    targets = tokenize_examples(make_examples(7), tiny_tokenizer, TEMPLATE, config)
    candidates = tokenize_examples(make_examples(9, "c")[2:], tiny_tokenizer, TEMPLATE, config)
    wanted = np.random.default_rng(3).random((7, 7)) < 0.3
    wanted[:, 4] = False
    setup = _setup(model, tiny_tokenizer, config, 1)
    calls.clear()
    _, stats = score_one_shot(setup, targets, candidates, wanted)
    schedule = Schedule.of(config, 1)
    shown = np.array([len(c.shown) for c in candidates])
    cont = np.array([len(t.query) + 1 + len(t.response) + 1 for t in targets])  # [query] EOS [response] EOS
    work = one_shot(schedule, shown, cont, np.array([len(t.response) + 1 for t in targets]), wanted)
    assert (work.pairs, work.tokens, work.per_sequence, work.passes) == (stats.pairs, stats.tokens,
                                                                          stats.per_sequence, len(calls))


def test_planned_learned_kernel_runs_the_engine_passes_of_the_real_one(counted, tiny_spec, tiny_tokenizer, tmp_path,
                                                                       monkeypatch):
    """kernel.approximation=learned: the sample kernel, the zero-shot rows and the exact self-pairs, as forward calls
    of a real learned kernel (a fake embedder: the network's fit runs no language model)."""
    model, calls = counted
    examples = make_examples(12)
    config = KernelConfig(approximation="learned", max_length=185, batch_size=3, block_size=4)
    config.learned.sample_fraction, config.learned.epochs = 0.4, 1
    monkeypatch.setattr("delift.kernel.provider.load_model", lambda spec: model)  # the counted instance
    provider = KernelProvider(tiny_spec, TEMPLATE, config, KernelCache(tmp_path), progress=False)
    embed = lambda exs: np.eye(len(exs), 16)[:, :16].astype(np.float32)  # noqa: E731
    calls.clear()
    kernel = Kernels(provider, embed=embed).utility(examples, examples)
    tokens = tokenize_examples(examples, tiny_tokenizer, TEMPLATE, config)
    work, exact = kernel_work(Schedule.of(config, provider.scoring_setup().workers), config, tokens, tokens)
    assert exact and kernel.meta["diagonal_exact"]
    assert work.passes == len(calls) - 2  # the provider checks its head against the model's forward: 2 calls
    assert work.pairs == kernel.meta["exact_pairs"]


def test_the_engine_and_the_plan_resolve_kernel_workers_by_one_rule():
    from delift.kernel.schedule import resolve_workers

    assert [resolve_workers(0, True, t) for t in (1, 2, 8)] == [1, 2, 4]  # auto: a pass per thread, at most 4
    assert resolve_workers(3, True, 16) == 3 and resolve_workers(3, False, 16) == 1  # one pass at a time on a GPU
