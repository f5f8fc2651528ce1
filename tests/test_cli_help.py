"""First contact: `delift --help` says what delift is and how to drive it; a misspelt group option gets a
did-you-mean and exit code 2 before Hydra composes anything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from delift.config.checks import ConfigError
from delift.config.loader import check_group_choices

ROOT = Path(__file__).resolve().parents[1]


def delift(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "delift", *arguments], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)


def test_help_says_what_delift_is_its_commands_outputs_and_groups(tmp_path):
    done = delift(tmp_path, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    text = done.stdout
    assert text.startswith("delift: data selection for instruction tuning") and "powered by Hydra" not in text
    assert len(text.splitlines()) < 60  # Hydra's stock help printed the whole config (233 lines)
    for needle in ("delift-plan [-m]", "delift-report <run or multirun folder>", "outputs/<name>/<date>_<time>/",
                   "multirun/<name>/<date>_<time>/<job>/", "DELIFT_CACHE_DIR", "delift --cfg job",
                   "delift --hydra-help"):
        assert needle in text, needle
    groups = dict(line.split(": ", 1) for line in text.split("== Config groups (group=option) ==\n")[1]
                  .split("\n\n")[0].splitlines())
    assert groups["selector"].split(", ") == sorted(p.stem for p in (ROOT / "conf" / "selector").glob("*.yaml"))
    assert "experiment" in groups and "model" in groups


def test_a_misspelt_option_exits_2_with_did_you_mean(tmp_path):
    done = delift(tmp_path, "selector=delfit")
    assert done.returncode == 2
    assert done.stderr.startswith("delift: selector: unknown selector option 'delfit'. Did you mean 'delift'?")
    assert "Traceback" not in done.stderr and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("arguments,messages", [
    (["-m", "selector=delift,lobas", "seed=0,1"], ["selector: unknown selector option 'lobas'. Did you mean 'lobass'?"]),
    (["data@usecase.target=alpacaa", "evaluation=[icl,qlor]"],
     ["data@usecase.target: unknown data option 'alpacaa'. Did you mean 'alpaca'?",
      "evaluation: unknown evaluation option 'qlor'. Did you mean 'qlora'?"]),
    (["+model@scorer=tiny_lama"], ["+model@scorer: unknown model option 'tiny_lama'. Did you mean 'tiny_llama'?"]),
    (["experiment=zzz"], ["experiment: unknown experiment option 'zzz'. Known: budget_curve, smoke"]),
])
def test_every_misspelt_group_option_is_listed(arguments, messages):
    with pytest.raises(ConfigError) as caught:
        check_group_choices(arguments)
    lines = str(caught.value).splitlines()
    assert len(lines) == len(messages) and all(line.startswith(m) for line, m in zip(lines, messages)), lines


def test_valid_arguments_and_non_group_keys_pass():
    check_group_choices(["-m", "--cfg", "job", "selector=delift,lobass", "evaluation=[icl,qlora]", "seed=1",
                         "data.local_path=x.jsonl", "hydra/launcher=joblib", "~logger", "experiment=null",
                         "scorer=smollm2_135m", "hydra.sweeper.params.selector=delift,full"])
