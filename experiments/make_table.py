"""A paper-style table from one multirun folder: rows = methods, columns = ICL / QLoRA x ROUGE, BGE, LAJ.

    delift -m experiment=uc1_dolly selector=initial,random,delift_se,delift,full seed=0,1,2
    python experiments/make_table.py multirun/uc1_dolly/<date>

writes results/<name>.md and results/<name>.csv (name = the experiment's ``name``) and prints the
markdown. Each cell is the mean over the seeds that ran, with the sample standard deviation
(ddof = 1) when there are several: ``0.412 ± 0.031``. ROUGE is rouge1 F-measure, BGE the embedding
cosine, LAJ the LLM judge's 1-5 score. ``--split existing`` tabulates P's test split (use case 3).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from collections import defaultdict
from pathlib import Path

from delift.outputs import metric_key

METHODS = {  # selector name -> the paper's row label, in the paper's row order
    "initial": "Initial", "random": "Random", "selectit": "SelectIT", "less": "LESS", "delift_se": "DELIFT (SE)",
    "delift": "DELIFT", "full": "Full Data",
}
PROTOCOLS = (("icl", "ICL"), ("qlora", "QLoRA"))
SCORES = (("rouge1", "ROUGE"), ("bge", "BGE"), ("judge", "LAJ"))


def load_jobs(root: Path) -> list[dict]:
    """One record per job folder under ``root`` holding metrics.json and subset.json."""
    jobs = []
    for metrics_path in sorted(root.rglob("metrics.json")):
        job = metrics_path.parent
        subset_path, run_path = job / "subset.json", job / "run.json"
        if not subset_path.exists() or not run_path.exists():
            raise SystemExit(f"{job}: metrics.json without subset.json/run.json; not a delift run folder")
        run = json.loads(run_path.read_text())
        jobs.append({"job": job, "selector": json.loads(subset_path.read_text())["selector"], "run": run,
                     "seed": run["config"]["seed"], "metrics": json.loads(metrics_path.read_text())})
    if not jobs:
        raise SystemExit(f"no metrics.json under {root}")
    return jobs


def mean_std(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def build_rows(jobs: list[dict], split: str = "") -> list[dict]:
    """Per method: seeds, and mean/std of every (protocol, score) the jobs reported."""
    by_method: dict[str, list[dict]] = defaultdict(list)
    for job in jobs:
        by_method[job["selector"]].append(job)
    order = [m for m in METHODS if m in by_method] + sorted(set(by_method) - set(METHODS))
    rows = []
    for method in order:
        group = by_method[method]
        row = {"method": METHODS.get(method, method), "selector": method,
               "seeds": sorted({job["seed"] for job in group}), "jobs": len(group)}
        for protocol, _ in PROTOCOLS:
            for score, _ in SCORES:
                key = metric_key(protocol, split, score)
                values = [job["metrics"][key] for job in group
                          if isinstance(job["metrics"].get(key), (int, float)) and not math.isnan(job["metrics"][key])]
                row[key] = mean_std(values) if values else None
        times = [job["metrics"].get("time/total_s") for job in group if job["metrics"].get("time/total_s")]
        row["time_s"] = sum(times) / len(times) if times else None
        rows.append(row)
    return rows


def cell(value: tuple[float, float | None] | None) -> str:
    if value is None:
        return "–"
    mean, std = value
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def to_markdown(rows: list[dict], jobs: list[dict], split: str) -> str:
    run = jobs[0]["run"]
    config = run["config"]
    caveats = sorted({c for job in jobs for c in job["run"].get("caveats", [])})
    lines = [f"# {run['name']}" + (f" ({split} test split)" if split else ""), ""]
    lines += [f"> caveat: {c}" for c in caveats] + ([""] if caveats else [])
    usecase = config["usecase"]
    nested = {"task_specific": "target", "continual": "existing"}.get(usecase["name"])
    extra = f" ({nested} `{usecase[nested]['name']}`)" if nested and isinstance(usecase.get(nested), dict) else ""
    lines += [f"use case `{usecase['name']}`{extra}, data `{config['data']['name']}`, model "
              f"`{run['model'].get('name', config['model']['name'])}`, budget {config['budget_fraction']:.0%} of the pool; "
              "ROUGE = rouge1 F, BGE = embedding cosine "
              f"({(run.get('embedder') or {}).get('name', config['metrics']['embedder'])}), LAJ = LLM judge 1-5; "
              "mean ± sample std over seeds.", ""]
    header = ["method", "seeds"] + [f"{p_label} {s_label}" for _, p_label in PROTOCOLS for _, s_label in SCORES]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["method"], ",".join(map(str, row["seeds"]))]
        cells += [cell(row[metric_key(p, split, s)]) for p, _ in PROTOCOLS for s, _ in SCORES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path, split: str) -> None:
    fields = ["method", "selector", "seeds", "jobs", "time_s"]
    for protocol, _ in PROTOCOLS:
        for score, _ in SCORES:
            fields += [f"{metric_key(protocol, split, score)}_mean", f"{metric_key(protocol, split, score)}_std"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            out = {"method": row["method"], "selector": row["selector"], "seeds": " ".join(map(str, row["seeds"])),
                   "jobs": row["jobs"], "time_s": row["time_s"]}
            for protocol, _ in PROTOCOLS:
                for score, _ in SCORES:
                    key = metric_key(protocol, split, score)
                    out[f"{key}_mean"], out[f"{key}_std"] = row[key] if row[key] else (None, None)
            writer.writerow(out)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a Hydra multirun folder (or any folder of delift runs)")
    parser.add_argument("--out-dir", type=Path, default=Path("results"))
    parser.add_argument("--name", help="file name stem (default: the experiment name)")
    parser.add_argument("--split", default="", help="'' = the headline test split; 'existing' = P's (use case 3)")
    args = parser.parse_args(argv)
    jobs = load_jobs(args.root)
    names = {job["run"]["name"] for job in jobs}
    if len(names) > 1 and not args.name:
        raise SystemExit(f"{args.root} mixes experiments {sorted(names)}; pass --name")
    stem = args.name or names.pop()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) + (f"_{args.split}" if args.split else "")
    rows = build_rows(jobs, args.split)
    table = to_markdown(rows, jobs, args.split)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.md").write_text(table)
    write_csv(rows, args.out_dir / f"{stem}.csv", args.split)
    print(table, end="")
    return args.out_dir / f"{stem}.md"


if __name__ == "__main__":
    main()
