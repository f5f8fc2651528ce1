"""delift-report: run or multirun folders -> tables, survey metrics, figures and a report.

    delift -m experiment=smoke selector=random,delift budget_fraction=0.25,0.5 seed=0,1
    delift-report multirun/smoke/<date>                    # -> results/smoke/
    delift-report multirun/a multirun/b --name ab --baseline delift_se --out /tmp/ab

writes into ``results/<name>/`` (``--out`` overrides; name = the experiment name):
``table.md`` / ``table.csv`` (rows = method x varying setting, columns = protocol x metric, seed
means with std, t-interval and paired-bootstrap markers), ``survey.md`` / ``survey.csv`` (SDF, PIR,
efficiency and feasibility), ``jobs.csv`` (one row per job), ``figures/*.png`` and ``report.md`` (all
of it, with the caveats the runs recorded in run.json).
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path
from typing import Any

from delift.report import figures, kernel_figures, listing, survey, tables
from delift.report.frame import build_frame, columns
from delift.report.jobs import Group, Job, display_keys, group_jobs, load_jobs
from delift.report.labels import method_label, setting_label
from delift.report.stats import BOOTSTRAP_RESAMPLES


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "all"


def caveats_of(jobs: list[Job]) -> list[str]:
    return list(dict.fromkeys(c for job in jobs for c in job.run.get("caveats", [])))


def experiment_name(jobs: list[Job], name: str | None) -> str:
    names = sorted({str(job.run.get("name", "run")) for job in jobs})
    if name:
        return name
    if len(names) > 1:
        raise SystemExit(f"the folders mix experiments {names}; pass --name (or --out)")
    return names[0]


def reference_notes(frame: list[dict]) -> list[str]:
    """Where Full Data / Initial came from another budget (they ignore it)."""
    by_row = {e["row"]: e for e in frame}
    notes = []
    for e in by_row.values():
        for selector, row in e["ref_rows"].items():
            ref = by_row.get(row)
            if ref is not None and ref["setting_label"] != e["setting_label"]:
                notes.append(f"{method_label(selector)} for {e['setting_label']} is the run at {ref['setting_label']} "
                             "(it ignores the budget)")
    return list(dict.fromkeys(notes))


def cached_kernel_notes(groups: list[Group], shown: list[str]) -> list[str]:
    """Selection times that exclude the kernel: the job read it from the cache."""
    notes = []
    for group in groups:
        cached = [job for job in group.jobs if (job.subset.get("info") or {}).get("kernel_cached")]
        if cached:
            label = method_label(group.selector, group.variant)
            where = f" at {setting_label({k: group.setting[k] for k in shown})}" if shown else ""
            notes.append(f"{label}{where}: {len(cached)} of {len(group.jobs)} seeds read a cached kernel; their "
                         "time/selection_s excludes computing it")
    return notes


def draw_figures(frame: list[dict], rows: list[dict], groups: list[Group], spec: dict[str, Any], out: Path,
                 cache_dir: str | None, shown: list[str] = ()) -> tuple[list[Path], list[str]]:
    """Every figure the results allow; returns the files written and notes (e.g. kernel files not found).
    A kernel or gains figure names its setting by the ``shown`` keys (those the tables tell settings apart by)."""
    written, notes = [], []
    folder = out / "figures"

    def keep(fig: Any, path: Path) -> None:
        if fig is not None:
            written.append(path)

    settings = list(dict.fromkeys(e["setting_label"] for e in frame))
    panels = list(dict.fromkeys(e["panel"] for e in frame))
    for evaluation in dict.fromkeys(e["evaluation"] for e in frame):
        for i, setting in enumerate(settings):
            path = folder / f"bars_{evaluation}_s{i + 1}.png"
            keep(figures.method_bars(frame, path, evaluation, setting=setting), path)
        for i, panel in enumerate(panels):
            path = folder / f"budget_{evaluation}_p{i + 1}.png"
            keep(figures.budget_curves(frame, path, evaluation, panel=panel), path)
        for metric in dict.fromkeys(e["metric"] for e in frame if e["split"] == "existing" and e["evaluation"] == evaluation):
            path = folder / f"forgetting_{evaluation}_{metric}.png"
            keep(figures.forgetting(frame, path, evaluation, metric), path)
        path = folder / f"survey_{evaluation}.png"
        keep(figures.survey_scatter(rows, spec, path, evaluation), path)
    for i, group in enumerate(g for g in groups if g.jobs[0].subset.get("kernel_hash") or any(
            v is not None for v in g.jobs[0].subset.get("gains") or [])):  # selectors with a kernel or gains
        job = group.jobs[0]
        stem = f"{group.selector}_{i + 1}_seed{job.seed}"
        label = setting_label({k: group.setting[k] for k in shown})  # which setting the numbered figure shows
        if job.subset.get("kernel_hash"):
            path = folder / f"kernel_{stem}.png"
            fig = kernel_figures.kernel_heatmap(job.path, path, cache_dir, label)
            keep(fig, path)
            if fig is None:
                notes.append(f"kernel {job.subset['kernel_hash'][:12]} of {job.path} not found under "
                             "paths.cache_dir (pass --cache-dir): no heatmap")
        path = folder / f"gains_{stem}.png"
        keep(kernel_figures.gain_curve(job.path, path, label), path)
    return written, notes


def write_survey_csv(rows: list[dict], path: Path) -> Path:
    fields = ["setting_label", "method", "selector", "evaluation", "sdf", "pir", "pir_metrics", "r", "efficiency_rank",
              "r_random", "simplicity", "flexibility", "simplicity_rank", "flexibility_rank", "feasibility_rank",
              "selection_s"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**r, "pir_metrics": " ".join(r["pir_metrics"])} for r in rows)
    return path


def build_report(roots: list[Path], out: Path | None = None, name: str | None = None, baselines: tuple[str, ...] = (),
                 ignore: tuple[str, ...] = (), pir_metrics: list[str] | None = None,
                 methods_yaml: str | Path | None = None, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES,
                 cache_dir: str | None = None, draw: bool = True) -> dict[str, Any]:
    """Read the jobs under ``roots`` and write every report file; returns the paths and the frames."""
    jobs = load_jobs([Path(r) for r in roots])
    title = experiment_name(jobs, name)
    out = Path(out) if out else Path("results") / slug(title)
    baselines = tuple(dict.fromkeys(("random", *baselines)))
    keys, groups = group_jobs(jobs, tuple(ignore))
    shown = display_keys(groups, keys)
    frame = build_frame(groups, keys, columns(jobs), baselines, seed=seed, resamples=resamples)
    spec = survey.load_survey(methods_yaml)
    rows = survey.survey_rows(frame, spec, pir_metrics)
    caveats = caveats_of(jobs)
    out.mkdir(parents=True, exist_ok=True)
    table = tables.to_markdown(frame, shown, baselines, title, caveats)
    (out / "table.md").write_text(table)
    tables.write_csv(frame, shown, baselines, out / "table.csv")
    (out / "survey.md").write_text(survey.to_markdown(rows, spec))
    write_survey_csv(rows, out / "survey.csv")
    listing.write_csv([row for root in roots for row in listing.collect(Path(root))], out / "jobs.csv")
    written, notes = draw_figures(frame, rows, groups, spec, out, cache_dir, shown) if draw else ([], [])
    notes = [*reference_notes(frame), *cached_kernel_notes(groups, shown), *notes,
             *(f"{p}: a second job of the same setting, method and seed; left out" for g in groups for p in g.duplicates)]
    report = [f"# {title}", ""] + [f"> caveat: {c}" for c in caveats] + ([""] if caveats else [])
    hidden = f"; {len(keys) - len(shown)} more keys vary with them: {', '.join(k for k in keys if k not in shown)}"
    report += [f"{len(jobs)} jobs from {', '.join(str(r) for r in roots)}; settings told apart by "
               f"{', '.join(shown) or 'nothing (one setting)'}{hidden if len(keys) > len(shown) else ''} "
               "(seeds averaged, never settings).", ""]
    report += [tables.body(frame, shown, baselines), survey.to_markdown(rows, spec), "## Figures", ""]
    report += [f"![{p.stem}](figures/{p.name})" for p in written] + [""]
    report += (["## Notes", ""] + [f"- {n}" for n in notes]) if notes else []
    (out / "report.md").write_text("\n".join(report).rstrip("\n") + "\n")
    return {"out": out, "table": out / "table.md", "report": out / "report.md", "figures": written, "frame": frame,
            "survey": rows, "keys": keys, "shown": shown, "groups": groups, "notes": notes}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="delift-report", description=__doc__.splitlines()[0])
    p.add_argument("roots", nargs="+", type=Path, help="run or multirun folders (every job below them is read)")
    p.add_argument("--out", type=Path, help="output folder (default: results/<name>)")
    p.add_argument("--name", help="report name (default: the experiment name; needed when folders mix experiments)")
    p.add_argument("--baseline", action="append", default=[], help="another reference selector beside random "
                   "(repeatable): paired differences and a marker against it")
    p.add_argument("--ignore", action="append", default=[], help="a config key (fnmatch pattern) that does not "
                   "change results, so it does not split groups (repeatable)")
    p.add_argument("--pir-metrics", nargs="+", help="metrics PIR averages (default: every metric Full Data has)")
    p.add_argument("--methods-yaml", type=Path, help="survey descriptors (default: conf/survey/methods.yaml)")
    p.add_argument("--seed", type=int, default=0, help="seed of the paired bootstrap (numpy default_rng)")
    p.add_argument("--resamples", type=int, default=BOOTSTRAP_RESAMPLES, help="bootstrap resamples")
    p.add_argument("--cache-dir", help="paths.cache_dir holding the kernels (default: each run's own)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    return p


def run(argv: list[str] | None = None) -> Path:
    """Build the report of the command line ``argv``, print its table; returns the output folder."""
    args = parser().parse_args(argv)
    done = build_report(args.roots, args.out, args.name, tuple(args.baseline), tuple(args.ignore), args.pir_metrics,
                        args.methods_yaml, args.seed, args.resamples, args.cache_dir, not args.no_figures)
    print(done["table"].read_text(), end="")
    print(f"\nwrote {done['out']}/ (table.md, table.csv, survey.md, survey.csv, jobs.csv, report.md, "
          f"{len(done['figures'])} figures)")
    return done["out"]


def main(argv: list[str] | None = None) -> int:
    """The ``delift-report`` console script: exit status 0 (a returned path would make ``sys.exit`` fail with 1)."""
    run(argv)
    return 0


if __name__ == "__main__":
    main()
