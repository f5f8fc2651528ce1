"""delift-report: run or multirun folders -> tables, survey metrics, figures and a report.

    delift -m experiment=smoke selector=random,delift budget_fraction=0.25,0.5 seed=0,1
    delift-report multirun/smoke/<date>                    # -> results/smoke/
    delift-report multirun/a multirun/b --name ab --baseline delift_se --out /tmp/ab

writes into ``results/<name>/`` (``--out`` overrides; name = the experiment name):
``table.md`` / ``table.csv`` (rows = method x varying setting, columns = protocol x metric, seed
means with std, t-interval and paired-bootstrap markers), ``survey.md`` / ``survey.csv`` (SDF, PIR,
efficiency and feasibility), ``jobs.csv`` (one row per job), ``figures/*.png`` and ``report.md`` (all
of it, with the caveats the runs recorded in run.json, figure captions and notes), and ``report.html`` (the
same as one self-contained page, tables sortable, with a browser of each job's picks: :mod:`delift.report.html`). The folder is written
atomically (:mod:`delift.report.folder`). A job whose result file cannot be read is skipped with a
warning naming the file and counted in report.md; ``--strict`` stops at it instead.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from delift.report import figures, folder, html, kernel_figures, listing, survey, tables
from delift.report.folder import slug
from delift.report.frame import build_frame, columns, sort_groups
from delift.report.jobs import BadJob, Group, Job, cache_reads, display_keys, group_jobs, load_jobs, result_folders
from delift.report.labels import setting_label
from delift.report.parts import Parts
from delift.report.stats import BOOTSTRAP_RESAMPLES


def caveats_of(jobs: list[Job]) -> list[str]:
    return list(dict.fromkeys(c for job in jobs for c in job.run.get("caveats", [])))


def experiment_name(jobs: list[Job], name: str | None) -> str:
    names = sorted({str(job.run.get("name", "run")) for job in jobs})
    if name:
        return name
    if len(names) > 1:
        raise SystemExit(f"the folders mix experiments {names}; pass --name (or --out)")
    return names[0]


def reference_notes(frame: list[dict], parts: Parts) -> list[str]:
    """Where Full Data / Initial came from another budget (they ignore it)."""
    by_row = {e["row"]: e for e in frame}
    notes = []
    for e in by_row.values():
        for selector, row in e["ref_rows"].items():
            ref = by_row.get(row)
            if ref is not None and ref["setting_label"] != e["setting_label"]:
                notes.append(f"{parts.method_label(selector)} for {e['setting_label']} is the run at {ref['setting_label']} "
                             "(it ignores the budget)")
    return list(dict.fromkeys(notes))


def cached_selection_notes(groups: list[Group], shown: list[str], parts: Parts) -> list[str]:
    """Selection times that leave out computing what the job read from a cache (kernel, scores)."""
    notes = []
    for group in sort_groups(groups, list(shown), parts):
        reads = {str(job.seed): cache_reads(job.subset.get("info")) for job in group.jobs}
        cached = {seed: found for seed, found in reads.items() if found}
        if cached:
            label = parts.method_label(group.selector, group.variant)
            where = f" at {setting_label({k: group.setting[k] for k in shown})}" if shown else ""
            what = "; ".join(f"seed {seed}: {', '.join(found)}" for seed, found in cached.items())
            notes.append(f"{label}{where}: {len(cached)} of {len(group.jobs)} seeds read from the cache ({what}); "
                         "their time/selection_s leaves out computing it")
    return notes


class Figures:
    """The figures written and their captions; a file name is made unique within the report."""

    def __init__(self, folder_: Path):
        self.folder, self.written, self.captions = folder_, [], {}

    def path(self, *parts: str) -> Path:
        stem = "_".join(slug(p)[:80] for p in parts if p)
        path, n = self.folder / f"{stem}.png", 2
        while path in self.captions or path in self.written:
            path, n = self.folder / f"{stem}_{n}.png", n + 1
        return path

    def keep(self, fig: Any, path: Path, caption: str) -> Any:
        if fig is not None:
            self.written.append(path)
            self.captions[path] = caption
        return fig


def draw_figures(frame: list[dict], rows: list[dict], groups: list[Group], spec: dict[str, Any], out: Path,
                 cache_dir: str | None, shown: list[str] = (), parts: Parts | None = None) -> tuple[Figures, list[str]]:
    """Every figure the results allow; returns them (files and captions) and notes (e.g. kernel files not
    found). File names and titles say the protocol and setting (bars, curves) or the method, setting and seed
    (kernel, gains), the setting by the ``shown`` keys (those the tables tell settings apart by)."""
    drawn, notes, parts = Figures(out / "figures"), [], parts or Parts.of([j for g in groups for j in g.jobs])
    interval = f"seed mean, {figures.INTERVAL} (clipped to the metric's range)"
    settings = list(dict.fromkeys(e["setting_label"] for e in frame))
    ran = list(dict.fromkeys(e["selector_label"] for e in sorted((e for e in frame if e["reference"]),  # Full Data first
                                                         key=lambda e: bool(e["skip_training"]))))
    references = f"; {' and '.join(ran)} (no budget) as horizontal lines" if ran else ""
    panels = list(dict.fromkeys(e["panel"] for e in frame))
    for evaluation in dict.fromkeys(e["evaluation"] for e in frame):
        name = parts.protocol(evaluation).label
        for setting in settings:
            path = drawn.path("bars", evaluation, setting)
            drawn.keep(figures.method_bars(frame, path, evaluation, setting=setting), path,
                       f"{name} scores per method{' at ' + setting if setting else ''}: {interval} as whiskers; "
                       "y-ranges shared with the other settings' bars.")
        for panel in panels:
            path = drawn.path("budget", evaluation, panel)
            drawn.keep(figures.budget_curves(frame, path, evaluation, panel=panel), path,
                       f"{name} score against the budget fraction{' at ' + panel if panel else ''}: {interval} as "
                       f"bands{references}.")
        for metric in dict.fromkeys(e["metric"] for e in frame if e["split"] == "existing" and e["evaluation"] == evaluation):
            path = drawn.path("forgetting", evaluation, metric)
            drawn.keep(figures.forgetting(frame, path, evaluation, metric), path,
                       f"{name} {parts.metric(metric).label}: new task against the existing task (forgetting), {interval} "
                       "as whiskers.")
        path = drawn.path("survey", evaluation)
        drawn.keep(figures.survey_scatter(rows, spec, path, evaluation), path,
                   f"{name}: SDF against PIR of this report's methods, with the survey's line and its literature "
                   "values (other models and data: not comparable runs).")
    for group in sort_groups(groups, list(shown), parts):  # the tables' row order
        job = group.jobs[0]  # the first seed's selection
        if not job.subset.get("kernel_hash") and not any(v is not None for v in job.subset.get("gains") or []):
            continue  # a selector with neither a kernel nor gains (Random, Full, Initial)
        setting = setting_label({k: group.setting[k] for k in shown})
        method = parts.method_label(group.selector, group.variant)
        variant = setting_label(group.variant)
        what = f"{method}{', ' + setting if setting else ''}, seed {job.seed}"
        if job.subset.get("kernel_hash"):
            path = drawn.path("kernel", group.selector, variant, setting, f"seed{job.seed}")
            fig = drawn.keep(kernel_figures.kernel_heatmap(job, path, cache_dir, setting, method), path,
                             f"{what}: the utility kernel, candidates in selection order (a line ends the subset).")
            if fig is None:
                notes.append(f"{what}: kernel {job.subset['kernel_hash'][:12]} of {job.path} not found under "
                             "paths.cache_dir (pass --cache-dir): no heatmap")
        path = drawn.path("gains", group.selector, variant, setting, f"seed{job.seed}")
        greedy = "scores" not in (job.subset.get("info") or {})
        drawn.keep(kernel_figures.gain_curve(job, path, setting, method), path,
                   f"{what}: " + ("the marginal gain of each greedy pick." if greedy
                                  else "the score of each pick (top-k selection)."))
    return drawn, notes


def write_survey_csv(rows: list[dict], path: Path) -> Path:
    fields = ["setting_label", "method", "selector", "evaluation", "sdf", "pir", "pir_metrics", "r", "efficiency_rank",
              "r_random", "simplicity", "flexibility", "simplicity_rank", "flexibility_rank", "feasibility_rank",
              "selection_s", "selection_cached"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({**r, "pir_metrics": " ".join(r["pir_metrics"])} for r in rows)
    return path


def build_report(roots: list[Path], out: Path | None = None, name: str | None = None, baselines: tuple[str, ...] = (),
                 ignore: tuple[str, ...] = (), pir_metrics: list[str] | None = None,
                 methods_yaml: str | Path | None = None, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES,
                 cache_dir: str | None = None, draw: bool = True, strict: bool = False) -> dict[str, Any]:
    """Read the jobs under ``roots`` and write every report file; returns the paths and the frames."""
    skipped: list[BadJob] = []
    found = result_folders([Path(r) for r in roots])  # the one walk of the trees
    jobs = load_jobs([Path(r) for r in roots], strict=strict, skipped=skipped, found=found)
    title = experiment_name(jobs, name)
    out = Path(out) if out else Path("results") / slug(title)
    building = folder.start(out)
    try:
        done = write_report(jobs, skipped, roots, building, title, baselines, ignore, pir_metrics, methods_yaml, seed,
                            resamples, cache_dir, draw, found)
        folder.finish(building, out)
    except BaseException:
        folder.abandon(building)
        raise
    moved = {key: out / value.relative_to(building) for key, value in done.items() if isinstance(value, Path)}
    return {**done, **moved, "out": out, "figures": [out / p.relative_to(building) for p in done["figures"]]}


def write_report(jobs: list[Job], skipped: list[BadJob], roots: list[Path], out: Path, title: str,
                 baselines: tuple[str, ...], ignore: tuple[str, ...], pir_metrics: list[str] | None,
                 methods_yaml: str | Path | None, seed: int, resamples: int, cache_dir: str | None,
                 draw: bool, found: dict[Path, list[Path]] | None = None) -> dict[str, Any]:
    """Every report file of ``jobs`` into the folder ``out`` (``found``: the folders holding a metrics.json
    under each root, as walked once; default: walked here for jobs.csv)."""
    baselines = tuple(dict.fromkeys(("random", *baselines)))
    parts = Parts.of(jobs)  # the classes behind the results, asked for labels, orders and bounds
    keys, groups = group_jobs(jobs, tuple(ignore))
    shown = display_keys(groups, keys)
    frame = build_frame(groups, keys, columns(jobs, parts), baselines, seed=seed, resamples=resamples, parts=parts)
    spec = survey.load_survey(methods_yaml)
    rows = survey.survey_rows(frame, spec, pir_metrics)
    caveats = caveats_of(jobs)
    table = tables.to_markdown(frame, shown, baselines, title, caveats)
    (out / "table.md").write_text(table)
    tables.write_csv(frame, shown, baselines, out / "table.csv")
    (out / "survey.md").write_text(survey.to_markdown(rows, spec))
    write_survey_csv(rows, out / "survey.csv")
    bad = [b.path.parent for b in skipped]
    found = result_folders([Path(r) for r in roots]) if found is None else found
    loaded = {job.path: job for job in jobs}  # resolved folders, as load_jobs read them
    listing.write_csv([row for root in roots for row in listing.collect(Path(root), skip=bad, folders=found[Path(root)],
                                                                        jobs=loaded)], out / "jobs.csv")
    drawn, notes = draw_figures(frame, rows, groups, spec, out, cache_dir, shown, parts) if draw else (Figures(out), [])
    notes = [*reference_notes(frame, parts), *cached_selection_notes(groups, shown, parts), *notes,
             *(f"{p}: a second job of the same setting, method and seed; left out" for g in groups for p in g.duplicates),
             *(f"skipped, unreadable: {b}" for b in skipped), *(f"part not importable: {w}" for w in parts.warnings)]
    report = [f"# {title}", ""] + [f"> caveat: {c}" for c in caveats] + ([""] if caveats else [])
    hidden = f"; {len(keys) - len(shown)} more keys vary with them: {', '.join(k for k in keys if k not in shown)}"
    lost = f"; {len(skipped)} skipped (unreadable result files, see the notes)" if skipped else ""
    lost += (f"; {len(parts.warnings)} part warnings (a recorded class not importable: labels, orders or bounds "
             "from the package or the recorded name, see the notes)" if parts.warnings else "")
    report += [f"{len(jobs)} jobs{lost} from {', '.join(str(r) for r in roots)}; settings told apart by "
               f"{', '.join(shown) or 'nothing (one setting)'}{hidden if len(keys) > len(shown) else ''} "
               "(seeds averaged, never settings).", ""]
    report += [tables.body(frame, shown, baselines), survey.to_markdown(rows, spec), "## Figures", ""]
    if drawn.written:
        report += [f"Uncertainty in every figure: the {figures.INTERVAL}, clipped to the range of a bounded metric "
                   "(ROUGE, BGE, EM in [0, 1]); no interval with one seed.", ""]
    for i, path in enumerate(drawn.written, 1):
        report += [f"![{path.stem}](figures/{path.name})", "",
                   f"*Figure {i} (`{path.name}`): {drawn.captions[path]}*", ""]
    report += (["## Notes", ""] + [f"- {n}" for n in notes]) if notes else []
    (out / "report.md").write_text("\n".join(report).rstrip("\n") + "\n")
    page = html.write_page(out, groups, shown, parts)
    return {"table": out / "table.md", "report": out / "report.md", "html": page, "figures": drawn.written,
            "captions": {p.name: c for p, c in drawn.captions.items()}, "frame": frame, "survey": rows, "keys": keys,
            "shown": shown, "groups": groups, "notes": notes, "skipped": [str(b.path) for b in skipped]}


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
    p.add_argument("--strict", action="store_true", help="stop at a job with an unreadable result file (default: "
                   "skip it with a warning naming the file, and count it in report.md)")
    return p


def run(argv: list[str] | None = None) -> Path:
    """Build the report of the command line ``argv``, print its table; returns the output folder."""
    args = parser().parse_args(argv)
    done = build_report(args.roots, args.out, args.name, tuple(args.baseline), tuple(args.ignore), args.pir_metrics,
                        args.methods_yaml, args.seed, args.resamples, args.cache_dir, not args.no_figures, args.strict)
    print(done["table"].read_text(), end="")
    lost = f"; {len(done['skipped'])} jobs skipped, see report.md" if done["skipped"] else ""
    print(f"\nwrote {done['out']}/ (table.md, table.csv, survey.md, survey.csv, jobs.csv, report.md, report.html, "
          f"{len(done['figures'])} figures{lost})")
    return done["out"]


def main(argv: list[str] | None = None) -> int:
    """The ``delift-report`` console script: exit status 0 (a returned path would make ``sys.exit`` fail with 1)."""
    run(argv)
    return 0


if __name__ == "__main__":
    main()
