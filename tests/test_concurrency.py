"""Two runs sharing one cache at the same moment (a sweep on a cluster) end with the subset a clean run picks.

The score caches (SelectIT, IFD), LESS's warm-up and feature caches and the kernel blocks are written by whichever
process gets there first and read by the other: each file is written atomically, so the second writer never reads
half a file, and both runs agree with a run on a cache of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # three CLI runs per case


def _command(run_dir: Path, selector: str) -> list[str]:
    return [sys.executable, "-m", "delift", "experiment=smoke", f"selector={selector}", "evaluation=icl",
            "progress=false", f"hydra.run.dir={run_dir}"]


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ, DELIFT_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", WANDB_MODE="disabled",
               OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env.pop("WANDB_DIR", None)
    return env


def _subset(run_dir: Path) -> dict:
    return json.loads((run_dir / "subset.json").read_text())


@pytest.mark.parametrize("selector", ["selectit", "less", "delift"])
def test_concurrent_runs_on_one_cache_pick_what_a_clean_run_picks(selector, tmp_path):
    shared = tmp_path / "shared_cache"
    runs = [subprocess.Popen(_command(tmp_path / f"run{k}", selector), cwd=tmp_path, env=_env(shared),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for k in range(2)]
    errors = [run.communicate(timeout=900)[1] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(e[-2000:] for e in errors)
    clean = subprocess.run(_command(tmp_path / "clean", selector), cwd=tmp_path, env=_env(tmp_path / "own_cache"),
                           capture_output=True, text=True, timeout=900)
    assert clean.returncode == 0, clean.stderr[-2000:]
    expected = _subset(tmp_path / "clean")
    for k in range(2):
        found = _subset(tmp_path / f"run{k}")
        assert found["selected_ids"] == expected["selected_ids"]
        assert found["gains"] == pytest.approx(expected["gains"], rel=1e-6, abs=1e-9)
    # atomic_write's files end in .tmp, atomic_folder's folders hold .tmp- in their name; LESS scratch is .bin
    leftovers = [p for p in shared.rglob("*") if ".tmp" in p.name or p.suffix == ".bin"]
    assert not leftovers, f"temporary files outlived both runs: {leftovers}"
