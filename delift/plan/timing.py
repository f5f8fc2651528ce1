"""Seconds here and hours on named accelerators, from FLOPs.

Here: a calibration measures one model's throughput on this machine once (the kernel engine on a few of the
job's own examples, FLOPs counted by the plan) and caches it under ``<paths.cache_dir>/plan/calibration/``,
keyed by the model's identity and the machine; without one, the stated figure of
``conf/plan/accelerators.yaml`` (``here``) is used. Accelerators: the YAML's peak dense bf16 throughputs
(each with its source) times a stated efficiency.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from omegaconf import OmegaConf

from delift.config.loader import CONFIG_DIR
from delift.data.records import Example
from delift.fsutil import atomic_write
from delift.kernel.settings import BaseKernelConfig
from delift.plan.kernel import Schedule, engine_workers, exact_kernel
from delift.plan.models import PlanModel, flops

ACCELERATORS = Path(CONFIG_DIR) / "plan" / "accelerators.yaml"
CALIBRATION_SIZE = 16  # targets = candidates: 256 pairs and 16 zero-shot sequences (one block)


@dataclass(frozen=True)
class Accelerator:
    name: str
    flops_per_second: float  # peak dense bf16
    source: str


@dataclass
class Rates:
    """What turns FLOPs into seconds: per-model calibrations here, the stated figure, the accelerators."""

    accelerators: list[Accelerator]
    efficiency: float
    here: float  # stated FLOP/s here when a model has no calibration
    here_source: str
    calibrated: dict[str, dict[str, Any]]  # model identity key -> calibration record

    def seconds_here(self, model: PlanModel, flop_count: float) -> float:
        record = self.calibrated.get(identity_key(model))
        return flop_count / (record["flops_per_second"] if record else self.here)

    def hours(self, accelerator: Accelerator, flop_count: float) -> float:
        return flop_count / (accelerator.flops_per_second * self.efficiency) / 3600.0


def load_rates(path: str | Path = ACCELERATORS, efficiency: float | None = None) -> Rates:
    table = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    accelerators = [Accelerator(name, float(entry["tflops"]) * 1e12, str(entry["source"]))
                    for name, entry in table["accelerators"].items()]
    return Rates(accelerators, float(efficiency if efficiency is not None else table["efficiency"]),
                 float(table["here"]["flops_per_second"]), str(table["here"]["source"]), {})


def machine() -> dict[str, Any]:
    """What makes a throughput this machine's: CPU model, cores, torch threads and version, GPU."""
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"machine": platform.machine(), "cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def identity_key(model: PlanModel) -> str:
    return hashlib.sha256(json.dumps(model.identity, sort_keys=True, default=str).encode()).hexdigest()


def calibration_path(cache_dir: str | Path, model: PlanModel) -> Path:
    key = hashlib.sha256(json.dumps({"model": model.identity, "machine": machine()}, sort_keys=True,
                                    default=str).encode()).hexdigest()
    return Path(cache_dir).expanduser() / "plan" / "calibration" / f"{key}.json"


def cached_calibration(cache_dir: str | Path, model: PlanModel) -> dict[str, Any] | None:
    path = calibration_path(cache_dir, model)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def calibrate(cache_dir: str | Path, model: PlanModel, examples: Sequence[Example], template: Any,
              config: BaseKernelConfig) -> dict[str, Any]:
    """Load ``model`` (the one place the plan loads weights), time the kernel engine on the first
    ``CALIBRATION_SIZE`` examples (one block, after a warm-up pass) and cache FLOP/s and tokens/s."""
    from delift.kernel.cache import KernelCache
    from delift.kernel.engine import score_one_shot, score_zero_shot
    from delift.kernel.provider import KernelProvider

    provider = KernelProvider(model.spec, template, config, KernelCache(Path(cache_dir) / "kernels"), progress=False)
    tokens = provider.tokens(list(examples)[:CALIBRATION_SIZE])
    setup = provider.scoring_setup()
    score_zero_shot(setup, tokens[:2])  # warm-up of both paths: first-call allocations
    score_one_shot(setup, tokens[:2], tokens[:2])
    started = time.perf_counter()
    score_zero_shot(setup, tokens)
    score_one_shot(setup, tokens, tokens)
    seconds = time.perf_counter() - started
    provider.release()
    work = exact_kernel(Schedule.of(config, engine_workers(config)), tokens, tokens, len(tokens))
    record = {"name": model.name, "model": model.identity, "machine": machine(), "seconds": seconds, "tokens": work.tokens,
              "flops": flops(model.shape, work), "flops_per_second": flops(model.shape, work) / seconds,
              "tokens_per_second": work.tokens / seconds, "examples": len(tokens)}
    path = calibration_path(cache_dir, model)
    text = json.dumps(record, indent=1, default=str).encode()
    atomic_write(path, lambda handle: handle.write(text))
    return record
