"""The smoke experiment on every tiny model family: the runs of experiments/family_matrix.py's ``RUNS`` (every
selector under [icl,lora,qlora], QLoRA on a 4-bit CPU base, in fp32 and bf16), one training step each."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from delift.config.loader import compose_config
from delift.models.config import TINY_FAMILIES
from delift.run.pipeline import run_experiment

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "family_matrix.py"
spec = importlib.util.spec_from_file_location("family_matrix", SCRIPT)
matrix = importlib.util.module_from_spec(spec)
spec.loader.exec_module(matrix)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
CASES = [(family, dtype, protocols, selector) for family in TINY_FAMILIES
         for dtype, protocols, selectors in matrix.RUNS for selector in selectors]


def test_the_script_plans_every_family_and_selector():
    assert matrix.FAMILIES == TINY_FAMILIES
    every = {p.stem for p in (SCRIPT.parents[1] / "conf" / "selector").glob("*.yaml")}
    for dtype in ("float32", "bfloat16"):
        ran = {s for d, p, selectors in matrix.RUNS if d == dtype and {"icl", "lora", "qlora"} <= set(p)
               for s in selectors}
        assert ran == set(matrix.SELECTORS) == every, dtype


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("family-matrix-cache")  # one tiny model per family and dtype, shared kernels


@pytest.mark.parametrize("family,dtype,protocols,selector", CASES,
                         ids=[f"{f}-{d}-{'+'.join(p)}-{s}" for f, d, p, s in CASES])
def test_smoke_runs_on_every_family(cache_dir, tmp_path, family, dtype, protocols, selector):
    cfg = compose_config(matrix.smoke_overrides(family, selector, dtype, protocols, cache_dir))
    metrics = run_experiment(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert matrix.run_problems(metrics, record, family, dtype, protocols) == []
    expected = {"initial": 0, "full": metrics["pool/size"]}.get(selector, metrics["subset/budget"])
    subset = json.loads((tmp_path / "run" / "subset.json").read_text())
    assert metrics["subset/size"] == len(subset["selected_ids"]) == expected
    assert expected > 0 or selector == "initial"
