"""What the validity experiments need from the lower layers: exact match of the structured tasks, and a split
fixed by ``data.split_seed`` (the pool, so its kernels and scores, the same at every run seed)."""

from __future__ import annotations

import math

from delift.config.loader import compose_config
from delift.data.loading import load_splits
from delift.data.records import Example
from delift.evaluation.exact_match import ExactMatch, exact_match


def structured(output: str, task: str = "add") -> Example:
    return Example("structured-0001", "Add the two numbers.", "3+4", output, "structured", {"task": task})


def test_structured_exact_match_is_the_first_generated_line_against_the_answer():
    assert exact_match("3+4=7", structured("3+4=7")) == 1.0
    assert exact_match("  3+4=7\n\n### Instruction: more", structured("3+4=7")) == 1.0
    assert exact_match("3+4=7.", structured("3+4=7")) == 0.0
    assert exact_match("The answer: 3+4=7", structured("3+4=7")) == 0.0
    assert math.isnan(exact_match("x", structured("x", task="mix")))  # a real row mixed in: no answer key
    assert math.isnan(exact_match("x", Example("a1", "q", "", "x", "alpaca", {})))  # other sources unchanged
    scores = ExactMatch().score(["3+4=7", "1"], [structured("3+4=7"), structured("3+4=7")])
    assert scores.columns["exact_match"] == [1.0, 0.0] and scores.summary["exact_match_n"] == 2.0


def test_split_seed_fixes_the_split_whatever_the_run_seed():
    def pool(seed: int, *overrides: str) -> list[str]:
        cfg = compose_config(["data=structured", "data.sizes.train=20", "data.sizes.test=10", *overrides])
        return [ex.id for ex in load_splits(cfg.data, seed).train]

    assert pool(0, "data.split_seed=5") == pool(3, "data.split_seed=5")
    assert pool(0) != pool(3)  # default: the run seed splits, as before
    assert pool(5) == pool(0, "data.split_seed=5")


def test_a_negative_split_seed_is_a_config_error_naming_the_key():
    from delift.config.checks import collect_problems
    from delift.data.config import DataConfig

    found = collect_problems(DataConfig(name="q", format="synthetic", split_seed=-1), "data")
    assert found["data.split_seed"] == "-1: must be >= 0"
    assert "data.split_seed" not in collect_problems(DataConfig(name="q", format="synthetic", split_seed=0), "data")
