"""Plan against run: delift-plan's kernel counts for an Alpaca pool against the engine's own, and the seconds.

    python experiments/plan_vs_run.py [--pool 1000] [--model smollm2_135m] [--out plan_run]

Plans ``data=alpaca data.sizes.train=<pool>`` with DELIFT (no weights loaded), calibrates the scoring model on
this machine (cached under the cache folder), then computes the pool x pool kernel as a run does
(``delift.run.pipeline``: data, overflow drop, kernel provider) and compares pairs, sequences, tokens and
per-sequence pairs with what the engine recorded in the kernel's metadata. Exits 1 on any difference. Last line:
``plan_vs_run: pool <n> <pairs> pairs <tokens> tokens equal; kernel <s>s, planned <s>s here``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=1000, help="Alpaca training examples (pool x pool pairs)")
    parser.add_argument("--model", default="smollm2_135m", help="conf/model option that scores")
    parser.add_argument("--out", default="plan_run", help="folder of the result JSON (and the cache by default)")
    parser.add_argument("--cache-dir", default=None, help="paths.cache_dir (default: $DELIFT_CACHE_DIR or <out>/cache)")
    args = parser.parse_args()
    out = Path(args.out)
    cache = args.cache_dir or os.environ.get("DELIFT_CACHE_DIR") or str(out / "cache")
    overrides = ["data=alpaca", f"data.sizes.train={args.pool}", "data.sizes.valid=0", "data.sizes.test=10",
                 f"model={args.model}", "selector=delift", "evaluation=icl", "kernel.on_overflow=skip", "progress=false",
                 f"paths.cache_dir={cache}"]

    from delift.config.loader import compose_config
    from delift.plan.jobs import plan_jobs
    from delift.plan.stages import prompt_template
    from delift.plan.timing import cached_calibration, calibrate, load_rates
    from delift.run.pipeline import build_parts, drop_overflowing_targets, kernel_provider
    from delift.run.usecases import load_usecase_data

    (plan,) = plan_jobs(overrides, multirun=False)
    (stage,) = [s for s in plan.stages if s.name.startswith("kernel")]
    cfg = compose_config(overrides)
    rates = load_rates()
    record = cached_calibration(cache, stage.model) or calibrate(cache, stage.model, plan.examples,
                                                                 prompt_template(cfg), cfg.kernel)
    planned_seconds = stage.flops / record["flops_per_second"]

    kernels = kernel_provider(cfg, build_parts(cfg))
    data = load_usecase_data(cfg.usecase, cfg.data, cfg.seed, cfg.paths.shared_datasets, cfg.decontaminate)
    drop_overflowing_targets(data, kernels)
    started = time.perf_counter()
    kernel = kernels.utility(data.pool, data.pool)
    seconds = time.perf_counter() - started
    fields = ("pairs", "sequences", "tokens", "per_sequence")
    planned = {name: getattr(stage.work, name) for name in fields}
    actual = {name: int(kernel.meta[name]) for name in fields}
    result = {"pool": len(data.pool), "planned": planned, "actual": actual, "kernel_seconds": seconds,
              "kernel_seconds_recorded": kernel.meta.get("seconds"), "planned_seconds_here": planned_seconds,
              "calibration": {k: record[k] for k in ("flops_per_second", "tokens_per_second", "machine")},
              "flops": stage.flops, "h100_hours": rates.hours(rates.accelerators[0], stage.flops),
              "cached": bool(kernel.meta.get("cached")), "key": kernel.meta.get("key")}
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan_vs_run.json").write_text(json.dumps(result, indent=1, default=str))
    for name in fields:
        print(f"{name:>13}: planned {planned[name]:>14,}  run {actual[name]:>14,}")
    if planned != actual:
        print(f"plan_vs_run: MISMATCH for pool {len(data.pool)}: planned {planned}, run {actual}")
        return 1
    ran = kernel.meta.get("seconds") if kernel.meta.get("cached") else seconds
    print(f"plan_vs_run: pool {len(data.pool)} {actual['pairs']} pairs {actual['tokens']} tokens equal; "
          f"kernel {float(ran or 0):.1f}s, planned {planned_seconds:.1f}s here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
