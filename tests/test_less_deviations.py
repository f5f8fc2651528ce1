"""LESS's recorded deviations follow the run's settings and its warm-up plan (issue 24.10)."""

from __future__ import annotations

from delift.selection.less import LESSSelector
from delift.selection.less.deviations import less_deviations
from delift.selection.less.warmup import WarmupPlan

FP32 = "features in fp32 (LESS projects fp16 gradients)"


def deviations(pool_size: int, **settings) -> list[str]:
    selector = LESSSelector(LESSSelector.Config(**settings))
    return less_deviations(selector.config, WarmupPlan.build(pool_size, selector.config, 0), pool_size)


def test_defaults_on_a_small_pool_name_the_floor_and_the_actual_batch():
    # 50 examples: 5 % is 3, but 20 steps over 4 epochs at batch 8 need 8 * 5 = 40 examples (80 %)
    assert deviations(50) == [
        "LoRA r=8, alpha=32 on all-linear (LESS: r=128, alpha=512 on k_proj, o_proj, q_proj, v_proj)",
        "lr=0.0002 (LESS: 2e-05)",
        "batch_size=8 (LESS: 32: batch 1 x 32 accumulation)",
        "the warm-up trained on 40 of the 50 pool examples (80%) instead of warmup_fraction=0.05 (3): "
        "the floor of min_warmup_steps=20 optimizer steps",
        "Rademacher matrix to 8192 from numpy Philox per 128-row unit (LESS: TRAK's projector to 8192; "
        "another random matrix)",
        FP32,
    ]


def test_a_pool_smaller_than_the_floor_cycles_and_says_so():
    # 16 examples, batch 4: 5 steps per epoch need 20 examples, so each epoch passes 20 / 16 = 1.25 times
    lines = deviations(16, batch_size=4)
    assert ("the warm-up trained on 16 of the 16 pool examples (100%) instead of warmup_fraction=0.05 (1): "
            "the floor of min_warmup_steps=20 optimizer steps, each epoch passing over them 1.25 times") in lines
    assert "batch_size=4 (LESS: 32: batch 1 x 32 accumulation)" in lines


def test_less_settings_on_a_large_pool_leave_only_the_projection_and_precision():
    less = dict(lr=2e-5, batch_size=32, lora_r=128, lora_alpha=512,
                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    assert deviations(10_000, **less) == [
        "Rademacher matrix to 8192 from numpy Philox per 128-row unit (LESS: TRAK's projector to 8192; "
        "another random matrix)", FP32]
    srht = deviations(10_000, **less, projection="srht", proj_dim=4096)
    assert srht[0].startswith("subsampled randomized Hadamard transform to 4096 (LESS: TRAK's dense Rademacher")
    exact = deviations(10_000, **less, proj_dim=None, epochs=2, max_grad_norm=None)
    assert exact == ["epochs=2 (LESS: 4)", "max_grad_norm=null (LESS: 1)",
                     "exact full-dimension cosines, no projection (LESS: TRAK's random projection to 8192)", FP32]
    assert not any("Rademacher" in line for line in exact)


def test_one_pass_with_a_partial_last_batch_is_not_called_a_cycle():
    # 5 examples, batch 2, 12 steps over 4 epochs: 3 steps an epoch = batches [2, 2, 1], one pass, not 6 / 5 = 1.2
    selector = LESSSelector(LESSSelector.Config(batch_size=2, min_warmup_steps=12, epochs=4))
    plan = WarmupPlan.build(5, selector.config, 0)
    assert [len(batch) for batch in plan.epoch_batches(0, 1)] == [2, 2, 1] and plan.examples_per_epoch == 5
    assert ("the warm-up trained on 5 of the 5 pool examples (100%) instead of warmup_fraction=0.05 (1): "
            "the floor of min_warmup_steps=12 optimizer steps") in less_deviations(selector.config, plan, 5)
