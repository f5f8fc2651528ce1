"""LESS warm-up: the plan, the schedule against transformers', Adam moments by hand, resume after a kill."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from delift.data.prompts import PromptTemplate
from delift.scoring.layout import training_items
from delift.selection.less import LESSSelector
from delift.selection.less import warmup as warmup_module
from delift.selection.less.gradients import lora_parameters, reference_gradients
from delift.selection.less.warmup import WarmupPlan, build_lora_model, linear_lr, warm_up
from tests.conftest import make_examples

TEMPLATE = PromptTemplate()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_plan_takes_the_fraction_with_a_floor_of_steps():
    large = WarmupPlan.build(1000, LESSSelector.Config(warmup_fraction=0.05, min_warmup_steps=20, epochs=4, batch_size=8), seed=0)
    assert len(large.indices) == 50 and large.steps_per_epoch == 7 and large.total_steps == 28
    assert large.indices == sorted(set(large.indices))
    small = WarmupPlan.build(100, LESSSelector.Config(warmup_fraction=0.05, min_warmup_steps=20, epochs=4, batch_size=8), seed=0)
    assert len(small.indices) == 40 and small.steps_per_epoch == 5  # grown from 5 to 8 * ceil(20 / 4)
    other_seed = WarmupPlan.build(1000, LESSSelector.Config(), seed=1)
    assert other_seed.indices != large.indices


def test_a_tiny_pool_cycles_through_reshuffled_passes():
    plan = WarmupPlan.build(6, LESSSelector.Config(warmup_fraction=0.05, min_warmup_steps=8, epochs=2, batch_size=4), seed=3)
    assert plan.indices == list(range(6)) and plan.steps_per_epoch == 4
    batches = plan.epoch_batches(seed=3, epoch=1)
    stream = [i for batch in batches for i in batch]
    assert [len(b) for b in batches] == [4, 4, 4, 4]
    assert sorted(stream[:6]) == list(range(6)) and sorted(stream[6:12]) == list(range(6))
    assert plan.epoch_batches(seed=3, epoch=1) == batches and plan.epoch_batches(seed=3, epoch=2) != batches
    one_pass = WarmupPlan.build(10, LESSSelector.Config(warmup_fraction=1.0, min_warmup_steps=1, epochs=1, batch_size=4), seed=0)
    assert [len(b) for b in one_pass.epoch_batches(0, 1)] == [4, 4, 2]


def test_schedule_equals_transformers_linear_schedule_with_warmup():
    from transformers import get_linear_schedule_with_warmup

    total = 20
    warm = warmup_module.warmup_step_count(total, 0.03)
    assert warm == 1
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    scheduler = get_linear_schedule_with_warmup(optimizer, warm, total)
    theirs = []
    for _ in range(total):
        theirs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    ours = [linear_lr(step, total, warm, 2e-4) for step in range(total)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    # the epochs' mean learning rates (4 epochs of 5 steps) by hand: lr * (0 + 1 + 18/19 + 17/19 + 16/19) / 5, ...
    means = [np.mean(ours[5 * e:5 * e + 5]) for e in range(4)]
    assert means[0] == pytest.approx(2e-4 * (1 + (18 + 17 + 16) / 19) / 5)
    assert means[3] == pytest.approx(2e-4 * (5 + 4 + 3 + 2 + 1) / 19 / 5)  # steps 15..19: (20 - s) / 19


def test_saved_moments_and_update_equal_one_clipped_adam_step_by_hand(tiny_spec, tiny_tokenizer, tmp_path):
    pool = make_examples(3)
    settings = LESSSelector.Config(warmup_fraction=1.0, min_warmup_steps=1, epochs=1, batch_size=3, lr=1e-3, warmup_ratio=0.0,
                              lora_dropout=0.0, lora_r=4, lora_alpha=8, max_grad_norm=0.01)
    (checkpoint,) = warm_up(tiny_spec, TEMPLATE, pool, settings, seed=0, folder=tmp_path, progress=False)
    assert checkpoint.step == 1 and checkpoint.lrs == [1e-3]
    # the same seeded initial LoRA weights; the step's gradient = mean over examples of their own gradients
    model = build_lora_model(tiny_spec, settings, seed=0).eval()
    before = torch.cat([p.detach().reshape(-1) for _, p in lora_parameters(model)])
    items = training_items(pool, tiny_tokenizer, TEMPLATE, settings.max_length)
    g = reference_gradients(model, items, int(tiny_tokenizer.pad_token_id)).mean(dim=0)
    assert g.norm() > 0.01  # clipped as torch does: g * max_norm / (||g|| + 1e-6)
    g = g * 0.01 / (g.norm() + 1e-6)
    m, v = checkpoint.flat_moments(model)
    torch.testing.assert_close(m, 0.1 * g, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(v, 0.001 * g * g, rtol=1e-5, atol=1e-14)
    # AdamW's first step with bias correction: w - lr * g / (|g| + eps)
    checkpoint.load_into(model)
    after = torch.cat([p.detach().reshape(-1) for _, p in lora_parameters(model)])
    torch.testing.assert_close(after, before - 1e-3 * g / (g.abs() + 1e-8), rtol=1e-4, atol=1e-7)


class Killed(Exception):
    pass


def test_a_killed_warmup_resumes_bit_identically(tiny_spec, tmp_path, monkeypatch):
    pool = make_examples(8)
    settings = LESSSelector.Config(warmup_fraction=0.5, min_warmup_steps=4, epochs=2, batch_size=2, lora_r=4, lora_alpha=8)
    whole = warm_up(tiny_spec, TEMPLATE, pool, settings, seed=2, folder=tmp_path / "whole", progress=False)

    def kill_after_first(checkpoint):
        if checkpoint.epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        warm_up(tiny_spec, TEMPLATE, pool, settings, seed=2, folder=tmp_path / "killed", progress=False,
                on_epoch_end=kill_after_first)
    assert not (tmp_path / "killed" / "epoch2").exists()
    resumed = warm_up(tiny_spec, TEMPLATE, pool, settings, seed=2, folder=tmp_path / "killed", progress=False)
    for a, b in zip(whole, resumed):
        assert (a.step, a.lrs) == (b.step, b.lrs)
        for ours, theirs in ((a.lora_state(), b.lora_state()), (a.adam_state(), b.adam_state())):
            assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    # complete: a third call loads the checkpoints without building a model
    monkeypatch.setattr(warmup_module, "build_lora_model", lambda *a, **k: pytest.fail("retrained"))
    again = warm_up(tiny_spec, TEMPLATE, pool, settings, seed=2, folder=tmp_path / "whole", progress=False)
    assert [c.epoch for c in again] == [1, 2]
