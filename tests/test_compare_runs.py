"""experiments/compare_runs.py: same results modulo wall seconds and each root's own path; anything else differs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "compare_runs.py"
spec = importlib.util.spec_from_file_location("compare_runs", SCRIPT)
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)


def write_run(root: Path, gains: list[float], seconds: float, predictions: str = '{"id": "a"}\n') -> Path:
    run = root / "instruction_tuning-delift"
    run.mkdir(parents=True)
    (run / "subset.json").write_text(json.dumps({"gains": gains, "info": {
        "kernel_seconds": seconds, "cache": str(root / "cache" / "less"), "kernels": {"pool": {"seconds": seconds}}}}))
    (run / "metrics.json").write_text(json.dumps({"icl/rouge1": 0.5, "time/total_s": seconds}))
    (run / "predictions.jsonl").write_text(predictions)
    return run


def test_wall_seconds_and_the_roots_own_paths_do_not_count(tmp_path, capsys):
    write_run(tmp_path / "before", [1.0, 0.5], seconds=3.0)
    write_run(tmp_path / "after", [1.0, 0.5], seconds=9.5)
    assert compare_runs.main([str(tmp_path / "before"), str(tmp_path / "after")]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 identical, 0 different"


def test_a_changed_gain_a_changed_prediction_and_a_missing_file_are_reported(tmp_path, capsys):
    write_run(tmp_path / "before", [1.0, 0.5], seconds=3.0)
    after = write_run(tmp_path / "after", [1.0, 0.4], seconds=3.0, predictions='{"id": "b"}\n')
    (after / "metrics.json").unlink()
    assert compare_runs.main([str(tmp_path / "before"), str(tmp_path / "after")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["instruction_tuning-delift/subset.json: differs",
                     f"instruction_tuning-delift/metrics.json: missing under {tmp_path / 'after'}",
                     "instruction_tuning-delift/predictions.jsonl: differs", "0 identical, 3 different"]
