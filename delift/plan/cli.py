"""``delift-plan [-m] <overrides>``: what ``delift [-m] <overrides>`` will cost, before it runs.

Prints per job and stage the sequences, pairs, real tokens, FLOPs, projected seconds here and hours on one
accelerator, and each kernel's disk and dense memory and the job's selection memory; then the sums over the
sweep with what the cache shares counted once (by stage kind, with hours on every accelerator of
``conf/plan/accelerators.yaml``), and, for scripts, the last line
``plan total: <pairs> pairs <sequences> sequences <tokens> tokens <seconds>s here``.
A stage marked ``~`` is an estimate; the others are the counts the run executes.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from delift.config.checks import ConfigError
from delift.config.loader import CONFIG_DIR, check_group_choices
from delift.models.config import ModelConfig
from delift.plan.jobs import JobPlan, plan_jobs
from delift.plan.stages import Stage, prompt_template
from delift.plan.timing import Rates, cached_calibration, calibrate, identity_key, load_rates
from delift.plan.work import Work

# Seconds of these kinds are FLOP-bound lower bounds: on a CPU their per-step overhead dominates (the quickstart
# measured 6-12x the FLOP figure); the kernel engine and scoring passes run large batches and are near it.
LOWER_BOUND = ("fine-tuning", "generation")


def kind_of(stage: Stage) -> str:
    """The stage's kind in the totals, as the stage builder declared it (:attr:`Stage.kind`)."""
    return stage.kind


def human_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""


def model_config(name: str, cache_dir: str) -> ModelConfig:
    """``conf/model/<name>.yaml`` as a typed ModelConfig (the stand-in tokenizer's model)."""
    node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{name}.yaml"))
    spec = OmegaConf.to_object(node)
    spec.cache_dir = spec.cache_dir or cache_dir
    return spec


@dataclass
class Totals:
    """Sums over planned stages; a stage whose share key was seen before adds nothing (the cache has it)."""

    rates: Rates
    seen: set[str] = field(default_factory=set)
    work: dict[str, Work] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    shared: int = 0
    disk: int = 0

    def add(self, stage: Stage) -> bool:
        """Count the stage unless the cache already shares it; True when it was counted."""
        if stage.share is not None and stage.share in self.seen:
            self.shared += 1
            return False
        if stage.share is not None:
            self.seen.add(stage.share)
        kind = kind_of(stage)
        self.work.setdefault(kind, Work()).add(stage.work)
        self.flops[kind] = self.flops.get(kind, 0.0) + stage.flops
        self.seconds[kind] = self.seconds.get(kind, 0.0) + self.rates.seconds_here(stage.model, stage.flops)
        self.disk += stage.disk
        return True

    def total(self) -> tuple[Work, float, float]:
        work = Work()
        for part in self.work.values():
            work.add(part)
        return work, sum(self.flops.values()), sum(self.seconds.values())


HEADER = (f"  {'stage':<28}{'model':<26}{'sequences':>11}{'pairs':>12}{'tokens':>15}{'FLOPs':>10}{'s here':>10}"
          f"{'{acc} h':>12}{'disk':>11}{'dense':>11}")


def _seconds(seconds: float, kind: str, width: int) -> str:
    """Right-aligned in ``width`` + 1 columns, fewer digits rather than a cut-off ``>=``."""
    mark = ">=" if kind in LOWER_BOUND else ""
    text = next((t for digits in (4, 3, 2, 1) if len(t := f"{mark}{seconds:.{digits}g}") <= width), f"{mark}{seconds:.0e}")
    return text.rjust(width + 1)


def stage_line(stage: Stage, rates: Rates, accelerator, counted: bool) -> str:
    w = stage.work
    name = ("" if stage.exact else "~ ") + stage.name
    extra = "" if counted else "  (shared: counted above)"
    return (f"  {name:<28}{stage.model.name[:25]:<26}{w.sequences:>11,}{w.pairs:>12,}{w.tokens:>15,}"
            f"{stage.flops:>10.2e}{_seconds(rates.seconds_here(stage.model, stage.flops), kind_of(stage), 10)}"
            f"{rates.hours(accelerator, stage.flops):>12.4g}{human_bytes(stage.disk) if stage.disk else '':>11}"
            f"{human_bytes(stage.dense) if stage.dense else '':>11}"
            f"{'  ' + stage.note if stage.note else ''}{extra}")


def print_plan(plans: list[JobPlan], rates: Rates, accelerator_name: str) -> Totals:
    accelerator = next(a for a in rates.accelerators if a.name == accelerator_name)
    totals = Totals(rates)
    for record in rates.calibrated.values():
        print(f"here, {record['name']}: calibrated {record['flops_per_second'] / 1e9:.3g} GFLOP/s, "
              f"{record['tokens_per_second']:.0f} tokens/s (kernel engine, {record['examples']} examples)")
    print(f"here, other models: stated {rates.here / 1e9:.0f} GFLOP/s ({rates.here_source})")
    print("accelerators: " + ", ".join(f"{a.name} {a.flops_per_second / 1e12:g} TFLOPS" for a in rates.accelerators)
          + f"; efficiency {rates.efficiency:g} (conf/plan/accelerators.yaml has the sources)")
    for plan in plans:
        spec = plan.spec
        print(f"\njob {spec.number}: {' '.join(spec.overrides) or '(defaults)'}")
        if plan.skipped:
            print(f"  no work: {plan.skipped}")
            continue
        cfg = spec.cfg
        print(f"  pool {plan.pool}, budget {plan.budget}; scorer {cfg.scoring_model.name}, model {cfg.model.name}, "
              f"selector {cfg.selector._target_.rsplit('.', 1)[-1]}")
        print(HEADER.replace("{acc}", accelerator.name))
        for stage in plan.stages:
            print(stage_line(stage, rates, accelerator, totals.add(stage)))
        if plan.selection_bytes:
            print(f"  selection memory {human_bytes(plan.selection_bytes)} (kernels, post-processed copies, "
                  "submodlib's float32 copy)")
        for note in plan.notes:
            print(f"  note: {note}")
    return totals


def print_totals(plans: list[JobPlan], totals: Totals) -> None:
    rates = totals.rates
    planned = sum(1 for p in plans if not p.skipped)
    print(f"\ntotal over {len(plans)} job(s), {planned} with work; {totals.shared} stage(s) shared through the cache "
          "counted once; '>=': a FLOP-bound lower bound (per-step overhead dominates on a CPU)")
    names = [a.name for a in rates.accelerators]
    print(f"  {'kind':<14}{'sequences':>13}{'pairs':>14}{'tokens':>17}{'FLOPs':>11}{'s here':>12}"
          + "".join(f"{n + ' h':>13}" for n in names))
    rows = [(kind, totals.work[kind], totals.flops[kind], totals.seconds[kind]) for kind in totals.work]
    rows.append(("all", *totals.total()))
    bound = any(kind in LOWER_BOUND for kind in totals.work)
    for kind, work, flop_count, seconds in rows:
        print(f"  {kind:<14}{work.sequences:>13,}{work.pairs:>14,}{work.tokens:>17,}{flop_count:>11.2e}"
              f"{_seconds(seconds, LOWER_BOUND[0] if kind == 'all' and bound else kind, 12)}"
              + "".join(f"{rates.hours(a, flop_count):>13.4g}" for a in rates.accelerators))
    most = max((p.selection_bytes for p in plans), default=0)
    print(f"  kernel disk (each kernel once): {human_bytes(totals.disk)}; "
          f"largest selection memory of one job: {human_bytes(most)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="delift-plan", description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, as for delift")
    parser.add_argument("-m", "--multirun", action="store_true", help="plan the sweep delift -m would run")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure each scoring model's throughput here once (loads its weights; cached)")
    parser.add_argument("--efficiency", type=float, default=None, help="share of the accelerators' peak reached")
    parser.add_argument("--accelerator", default="H100-SXM", help="the accelerator of the per-stage column")
    parser.add_argument("--stand-in", default="smollm2_135m",
                        help="conf/model whose tokenizer counts tokens for a model whose own is not at hand offline")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    rates = load_rates(efficiency=args.efficiency)
    names = [accelerator.name for accelerator in rates.accelerators]
    if args.accelerator not in names:
        parser.error(f"--accelerator {args.accelerator!r}: expected one of {', '.join(names)} "
                     "(conf/plan/accelerators.yaml)")
    if not 0.0 < rates.efficiency <= 1.0:
        parser.error(f"--efficiency {rates.efficiency!r}: a share of the peak, in (0, 1]")
    try:
        check_group_choices(args.overrides)  # a misspelt group option gets a did-you-mean, as in delift
        cache_dir = os.environ.get("DELIFT_CACHE_DIR", ".cache/delift")
        plans = plan_jobs(args.overrides, args.multirun, model_config(args.stand_in, cache_dir))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    except RuntimeError as exc:  # a job that cannot be planned, named
        print(f"delift-plan: {exc}", file=sys.stderr)
        return 1
    for plan in plans:
        for stage in plan.stages:
            model, key = stage.model, identity_key(stage.model)
            record = rates.calibrated.get(key) or cached_calibration(plan.spec.cfg.paths.cache_dir, model)
            if record is None and args.calibrate and kind_of(stage) == "kernels" and plan.examples:
                record = calibrate(plan.spec.cfg.paths.cache_dir, model, plan.examples,
                                   prompt_template(plan.spec.cfg), plan.spec.cfg.kernel)
            if record is not None:
                rates.calibrated[key] = record
    totals = print_plan(plans, rates, args.accelerator)
    print_totals(plans, totals)
    work, _, seconds = totals.total()
    print(f"plan total: {work.pairs} pairs {work.sequences} sequences {work.tokens} tokens {seconds:.3f}s here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
