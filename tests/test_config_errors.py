"""Every bad value of a run in one message, and the selectors' choices checked before any work (exit code 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from delift.config.checks import ConfigError
from delift.config.loader import compose_config

ROOT = Path(__file__).resolve().parents[1]


def config_error(*overrides: str) -> str:
    with pytest.raises(ConfigError) as caught:
        compose_config(["experiment=smoke", *overrides])
    return str(caught.value)


def test_one_error_lists_every_bad_key_metric_names_included():
    message = config_error("metrics.names=[rouge,foo]", "evaluation.qlora.train.lr=-1", "kernel.max_length=-5")
    assert message.startswith("invalid config values (3 problems):")
    assert "metrics.names[1]: unknown metric 'foo'" in message
    assert "evaluation.qlora.train.lr: -1.0: must be > 0.0" in message
    assert "kernel.max_length: -5: must be >= 4" in message


def test_keys_added_by_mistake_do_not_hide_the_other_problems():
    message = config_error("+foo=1", "seed=-1", "selector.objective=x", "metrics.names=[rouge,rouge]")
    assert "(4 problems)" in message and "unknown config key foo" in message and "seed: -1: must be >= 0" in message
    assert "selector.objective: 'x': expected one of auto" in message and "named twice" in message


def test_a_single_problem_keeps_its_own_message():
    assert config_error("seed=-1") == "invalid config value:\n  seed: -1: must be >= 0"


SELECTOR_CHOICES = [
    (["selector=lobass", "selector.mode=bogus"], "selector.mode: 'bogus': expected one of normalized, raw"),
    (["selector=delift_se", "selector.text=bogus"], "selector.text: 'bogus': expected one of fields, template"),
    (["selector.postprocess=bogus"], "selector.postprocess: 'bogus': expected one of clip, minmax"),
    (["selector=delift_se", "selector.postprocess=bogus"], "selector.postprocess: 'bogus': expected one of clip, "
                                                           "minmax, none"),
    (["selector.objective=bogus"], "selector.objective: 'bogus': expected one of auto, facility_location"),
    (["selector=selectit", "selector.normalise=bogus"], "selector.normalise: 'bogus': expected one of softmax, sum"),
    (["selector=selectit", "selector.alpha=-1"], "selector.alpha: -1.0: must be >= 0.0"),
    (["selector=ifd", "selector.form=bogus"], "selector.form: 'bogus': expected one of loss, ppl"),
    (["selector=lobass", "selector.batch_size=0"], "selector.batch_size: 0: must be >= 1"),
]


@pytest.mark.parametrize("overrides,message", SELECTOR_CHOICES, ids=[o[-1] for o, _ in SELECTOR_CHOICES])
def test_selector_choices_are_checked_with_the_config(overrides, message):
    assert message in config_error(*overrides)


@pytest.mark.parametrize("overrides,message", SELECTOR_CHOICES[:3], ids=["lobass", "delift_se", "delift"])
def test_a_bad_selector_choice_exits_2_without_a_traceback(tmp_path, overrides, message):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([sys.executable, "-m", "delift.cli", "experiment=smoke", *overrides,
                           f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    output = done.stdout + done.stderr  # Hydra logs to stdout
    assert message in output and "Traceback" not in output
