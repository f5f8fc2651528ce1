"""Run (``--run``) or read a validity sweep on the structured tasks and print exact match per selector.

    python experiments/validity.py --usecase uc2 --seeds 3 [--selectors random,delift,rds,less] [--run]
        [--dir multirun/validity_uc2/<date>]

Target exact match per use case (lora protocol, ``predictions.jsonl``; the first generated line equals the
answer): uc1 the data's test split (all tasks; per task too), uc2 the target task's test split, uc3 the new
task's test split (and, as ``old_em``, the existing tasks' test split: forgetting). The last lines, one per
selector:

    validity uc2 <selector>: target_em <mean> [<lo>, <hi>] vs random <diff> [<lo>, <hi>]

``target_em``: mean over seeds with its 95 % t-interval over seeds (clipped to [0, 1]); ``vs random``: the mean paired difference
(same seed) with its 95 % paired t-interval over seeds. The detail table above also gives the paired bootstrap
over seeds x test examples (10,000 resamples; the test set is fixed, so it measures test-sampling noise).
SmolLM2-135M on synthetic tasks: a validity check of the framework, not evidence about paper-scale models.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validity_stats import paired_bootstrap, paired_t, read_sweep, seed_means, t_interval  # noqa: E402

ALL = ("initial", "random", "full", "delift", "delift_se", "selectit", "less", "lobass", "ifd", "nuggets", "rds")
SPLITS = {"uc1": ("test", None), "uc2": ("test", None), "uc3": ("test", "existing")}
LABEL = "SmolLM2-135M on synthetic tasks: a validity check of the framework, not evidence about paper-scale models"


def latest(usecase: str) -> Path:
    runs = sorted(Path("multirun", f"validity_{usecase}").glob("*"))
    if not runs:
        raise SystemExit(f"no multirun/validity_{usecase}/<date> folder: pass --dir or --run")
    return runs[-1]


def run_sweep(usecase: str, selectors: list[str], seeds: int, folder: Path) -> None:
    cmd = [sys.executable, "-m", "delift", "-m", f"experiment=validity_{usecase}", f"selector={','.join(selectors)}",
           f"seed={','.join(str(s) for s in range(seeds))}", f"hydra.sweep.dir={folder}"]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def fmt(value: float) -> str:
    return f"{value:.3f}"


def lines_for(usecase: str, jobs, selectors: list[str], seeds: int, split: str, what: str) -> list[str]:
    by = defaultdict(list)
    for job in jobs:
        if job.seed < seeds:
            by[job.selector].append(job)
    base = seed_means(by.get("random", []), split)
    out = []
    for name in selectors:
        runs = by.get(name, [])
        means = seed_means(runs, split)
        if not means:
            out.append(f"validity {usecase} {name}: {what} n/a (no finished job)")
            continue
        mean, lo, hi = t_interval(list(means.values()))
        lo, hi = max(lo, 0.0), min(hi, 1.0)  # exact match lies in [0, 1]: the interval is clipped to it
        line = f"validity {usecase} {name}: {what} {fmt(mean)} [{fmt(lo)}, {fmt(hi)}]"
        diff = paired_t(means, base) if name != "random" else None
        if diff:
            diff = (diff[0], max(diff[1], -1.0), min(diff[2], 1.0))  # a difference of two rates lies in [-1, 1]
        line += (f" vs random {diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]" if diff else " vs random n/a")
        out.append(line + f" (seeds {len(means)})")
    return out


def detail(usecase: str, jobs, selectors: list[str], seeds: int, split: str) -> None:
    by = defaultdict(list)
    for job in jobs:
        if job.seed < seeds:
            by[job.selector].append(job)
    print(f"\n{usecase} split {split!r}: per seed exact match; paired bootstrap vs random over seeds x examples")
    for name in selectors:
        means = seed_means(by.get(name, []), split)
        boot = paired_bootstrap(by.get(name, []), by.get("random", []), split) if name != "random" else None
        seeds_text = " ".join(f"s{s}={v:.2f}" for s, v in sorted(means.items()))
        boot_text = f"  bootstrap {boot[0]:+.3f} [{boot[1]:+.3f}, {boot[2]:+.3f}]" if boot else ""
        print(f"  {name:10s} {seeds_text}{boot_text}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--usecase", choices=sorted(SPLITS), required=True)
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--selectors", default=",".join(ALL), help="comma list (default: every selector)")
    parser.add_argument("--run", action="store_true", help="run the sweep first (delift -m ...)")
    parser.add_argument("--dir", type=Path, nargs="*", help="multirun folder(s) to read (default: the latest)")
    args = parser.parse_args(argv)
    selectors = [s for s in args.selectors.split(",") if s]
    roots = args.dir or []
    if args.run:
        folder = roots[0] if roots else Path("multirun", f"validity_{args.usecase}", "validity_py")
        run_sweep(args.usecase, selectors, args.seeds, folder)
        roots = roots or [folder]
    roots = roots or [latest(args.usecase)]
    jobs = read_sweep(roots)
    new_split, old_split = SPLITS[args.usecase]
    print(LABEL)
    detail(args.usecase, jobs, selectors, args.seeds, new_split)
    if old_split:
        detail(args.usecase, jobs, selectors, args.seeds, old_split)
        print()
        print("\n".join(lines_for(args.usecase, jobs, selectors, args.seeds, old_split, "old_em")))
    print()
    print("\n".join(lines_for(args.usecase, jobs, selectors, args.seeds, new_split, "target_em")))


if __name__ == "__main__":
    main()
