"""The GPU install path, the paper-scale model configs and the scale bench (run on the tiny model here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from delift.config.loader import compose_config
from delift.models.loading import load_tokenizer, model_identity, resolve_model_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,hub_id", [("phi3_mini", "microsoft/Phi-3-mini-4k-instruct"),
                                         ("qwen2_7b", "Qwen/Qwen2-7B-Instruct"),
                                         ("llama3_8b", "meta-llama/Meta-Llama-3-8B-Instruct")])
def test_paper_scale_model_configs_load_from_the_hub(name, hub_id):
    cfg = compose_config([f"model={name}", "evaluation=qlora"])
    assert (cfg.model.source, cfg.model.hub_id, cfg.model.dtype) == ("hub", hub_id, "auto")
    assert cfg.evaluation["qlora"].train.method == "qlora"


def test_paper_scale_model_offline_names_the_missing_download(tmp_path):
    from delift.run.pipeline import build_parts

    cfg = compose_config(["model=qwen2_7b", f"paths.cache_dir={tmp_path}"])
    spec = build_parts(cfg).model_spec
    assert resolve_model_path(spec) == "Qwen/Qwen2-7B-Instruct"
    with pytest.raises(OSError, match="(?s)qwen2-7b-instruct.*Qwen2-7B-Instruct.*model.local_path"):  # offline here
        load_tokenizer(spec)
    with pytest.raises(OSError, match="(?s)qwen2-7b-instruct.*model.local_path"):  # the run record's identity
        model_identity(spec)


def test_setup_rejects_an_unknown_torch_choice_before_installing_anything():
    env = {**os.environ, "DELIFT_TORCH": "cuda12"}
    out = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert "DELIFT_TORCH=cuda12" in out.stderr and "keep" in out.stderr


@pytest.mark.slow
def test_bench_scale_runs_and_prints_its_last_line(tmp_path):
    data = tmp_path / "alpaca.jsonl"
    words = ["red", "green", "blue", "cyan", "black", "white", "amber", "olive", "pink", "grey", "gold", "teal",
             "navy", "plum", "rust", "sand"]
    data.write_text("".join(json.dumps({"instruction": f"Name a colour like {w}.", "input": "",
                                        "output": f"{w} and {words[(k + 3) % len(words)]}"}) + "\n"
                            for k, w in enumerate(words)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DELIFT_CACHE_DIR": str(tmp_path / "models")}
    command = [sys.executable, str(ROOT / "experiments" / "bench_scale.py"), "--model", "tiny_llama",
               "--n-exact", "10", "--fractions", "0.5", "--neighbors", "3", "--scale-sizes", "14",
               "--scale-sample", "6", "--threads", "1", "--data", str(data), "--cache-dir", str(tmp_path / "cache")]
    out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    rows = {line.split()[0]: line for line in lines if line.startswith(("exact ", "learned f=", "knn m="))}
    assert set(rows) == {"exact", "learned", "knn"}
    assert "10 zero-shot + 100 pairs" in rows["exact"]
    assert "10 zero-shot + 40 pairs" in rows["knn"]  # 10 targets x (3 neighbours + itself), exact
    last = re.fullmatch(r"n14 learned: (\d+)s fl_ratio@10: ([0-9.]+)", lines[-1])
    assert last, lines[-1]
    assert 0 < float(last.group(2)) <= 1.5
    # predicted self-pairs: a part-1 row of its own (5 sampled examples: 5 zero-shot, 25 pairs), which the
    # last line's ratio is then taken from
    out = subprocess.run(command + ["--scale-diagonal", "predicted", "--scale-sizes", ""], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    (row,) = [line for line in lines if line.startswith("learned f=0.5 pred-diag")]
    assert "5 zero-shot + 25 pairs" in row
    assert lines[-1] == f"fl_ratio@10 learned: {float(row.split()[10]):.4f}"


def test_gpu_check_stops_at_its_first_check_naming_the_missing_device(tmp_path):
    """On this CPU-only machine the script's first check fails and nothing after it runs (exit 1)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the script would go on to run the GPU checks")
    out = subprocess.run(["bash", str(ROOT / "experiments" / "gpu_check.sh"), str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 1
    assert out.stdout.startswith("cuda: FAILED") and "torch sees no CUDA device" in out.stdout
    assert sorted(p.name for p in tmp_path.glob("*.log")) == ["cuda.log"]  # stopped at the first failure
