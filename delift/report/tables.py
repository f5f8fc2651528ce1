"""The results table from the tidy frame: markdown (one table per test split) and one CSV.

A row is one method of one setting; its setting keys come first (one column per key, or one
``setting`` column when more than :data:`MAX_KEY_COLUMNS` keys vary). A cell is
``mean ± std [ci_low, ci_high]`` over seeds (std and the t-interval need two seeds), followed by
``(n=k)`` when fewer seeds than the row's had the score, and by a marker per baseline (``†`` Random,
then ``‡``, ``§``, ``¶`` for ``--baseline`` names) when the paired bootstrap interval of the
difference to that baseline excludes 0. A last column ``s/job`` gives the row's mean wall seconds per
job (``time/total_s``: selection, training, generation, scoring) when the runs recorded it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from delift.report.labels import SPLITS, show
from delift.report.parts import packaged

MARKS = ("†", "‡", "§", "¶")
MAX_KEY_COLUMNS = 3


def fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def marks(baselines: tuple[str, ...]) -> dict[str, str]:
    """Baseline selector -> its marker, in the order given (Random first by default)."""
    return dict(zip(baselines, MARKS))


def selector_label(frame: list[dict], selector: str) -> str:
    """The label ``selector`` declares, as the frame carries it (a baseline the jobs lack: the package's)."""
    found = next((e["selector_label"] for e in frame if e["selector"] == selector), None)
    return found if found is not None else packaged().selector(selector).label


def legend(baselines: tuple[str, ...], frame: list[dict]) -> str:
    names = ", ".join(f"{mark} {selector_label(frame, b)}" for b, mark in marks(baselines).items())
    return ("Cells: mean ± sample std over seeds [95 % t-interval over seeds], n = seeds; (n=k) when only k seeds "
            f"have the score. Marker ({names}): the paired bootstrap 95 % interval of the per-example difference "
            "to that baseline (same setting and seed; 10,000 resamples of test examples within seeds) excludes 0. "
            "s/job: mean wall seconds per job (time/total_s), when recorded.")


def cell(entry: dict[str, Any], row_n: int, baseline_marks: dict[str, str]) -> str:
    if entry["mean"] is None:
        return "–"
    text = fmt(entry["mean"])
    if entry["std"] is not None:
        text += f" ± {fmt(entry['std'])}"
    if entry["ci_low"] is not None:
        text += f" [{fmt(entry['ci_low'])}, {fmt(entry['ci_high'])}]"
    if entry["n"] < row_n:
        text += f" (n={entry['n']})"
    flags = "".join(mark for name, mark in baseline_marks.items()
                    if name in entry["vs"] and entry["vs"][name].significant)
    return f"{text} {flags}" if flags else text


def rows_of(frame: list[dict], split: str | None = None) -> dict[int, list[dict]]:
    """Frame entries per table row, in row order (only ``split``'s when given)."""
    out: dict[int, list[dict]] = {}
    for entry in frame:
        if split is None or entry["split"] == split:
            out.setdefault(entry["row"], []).append(entry)
    return out


def key_cells(first: dict, keys: list[str], settings: list[str]) -> list[str]:
    if len(keys) > MAX_KEY_COLUMNS:
        return [f"S{settings.index(first['setting_label']) + 1}"]
    return [show(first["setting"][k]) for k in keys]


def markdown_rows(header: list[str], body: Iterable[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in body)]


def split_table(frame: list[dict], keys: list[str], split: str, baselines: tuple[str, ...]) -> list[str]:
    """The markdown lines of one split's table, plus its paired-difference table."""
    rows = rows_of(frame, split)
    if not rows:
        return []
    settings = list(dict.fromkeys(entries[0]["setting_label"] for entries in rows.values()))
    first_row = next(iter(rows.values()))
    col_labels = [f"{e['evaluation_label']} {e['metric_label']}" for e in first_row]
    key_header = ["setting"] if len(keys) > MAX_KEY_COLUMNS else list(keys)
    baseline_marks = marks(baselines)
    timed = any(entries[0].get("total_s") is not None for entries in rows.values())
    body = []
    for entries in rows.values():
        row_n = len(entries[0]["seeds"])
        seconds = entries[0].get("total_s")
        body.append([*key_cells(entries[0], keys, settings), entries[0]["method"], str(row_n),
                     *(cell(e, row_n, baseline_marks) for e in entries),
                     *([f"{seconds:.0f}" if seconds is not None else "–"] if timed else [])])
    lines = [f"## {SPLITS.get(split, split)}", ""]
    if len(keys) > MAX_KEY_COLUMNS:
        lines += [f"- S{i + 1}: {label}" for i, label in enumerate(settings)] + [""]
    lines += markdown_rows([*key_header, "method", "n", *col_labels, *(["s/job"] if timed else [])], body) + [""]
    diff_body = []
    for entries in rows.values():
        for name, mark in baseline_marks.items():
            found = [e["vs"].get(name) for e in entries]
            if any(found):
                diff_body.append([*key_cells(entries[0], keys, settings), entries[0]["method"], selector_label(frame, name),
                                  *("–" if c is None else f"{fmt(c.diff, True)} [{fmt(c.low, True)}, "
                                    f"{fmt(c.high, True)}]{' ' + mark if c.significant else ''}" for c in found)])
    if diff_body:
        lines += [f"Paired differences, method - baseline, per test example ({SPLITS.get(split, split)}): mean "
                  "[paired bootstrap 95 % interval].", ""]
        lines += markdown_rows([*key_header, "method", "baseline", *col_labels], diff_body) + [""]
    return lines


def body(frame: list[dict], keys: list[str], baselines: tuple[str, ...], split: str | None = None) -> str:
    """The legend, then every split's table (or only ``split``'s)."""
    lines = [legend(baselines, frame), ""]
    for name in [split] if split is not None else list(dict.fromkeys(e["split"] for e in frame)):
        lines += split_table(frame, keys, name, baselines)
    return "\n".join(lines).rstrip("\n") + "\n"


def to_markdown(frame: list[dict], keys: list[str], baselines: tuple[str, ...], title: str,
                caveats: list[str], split: str | None = None) -> str:
    """:func:`body` under the title and the caveats."""
    head = [f"# {title}", ""] + [f"> caveat: {c}" for c in caveats] + ([""] if caveats else [])
    return "\n".join(head) + "\n" + body(frame, keys, baselines, split)


def write_csv(frame: list[dict], keys: list[str], baselines: tuple[str, ...], path: Path) -> Path:
    """One CSV row per table row: setting keys, method, seeds, SDF, selection seconds, then per score key
    ``_mean``, ``_std``, ``_n``, ``_ci_low``, ``_ci_high`` and per baseline ``_diff_vs_<b>`` (+ ``_low``,
    ``_high``, ``_pairs``); empty = missing."""
    rows = rows_of(frame)
    fields = [*keys, "method", "selector", "n", "seeds", "sdf", "selection_s", "total_s"]
    score_keys = list(dict.fromkeys(e["key"] for e in frame))
    for key in score_keys:
        fields += [f"{key}_{s}" for s in ("mean", "std", "n", "ci_low", "ci_high")]
        for b in baselines:
            fields += [f"{key}_diff_vs_{b}", f"{key}_diff_vs_{b}_low", f"{key}_diff_vs_{b}_high",
                       f"{key}_diff_vs_{b}_pairs"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for entries in rows.values():
            first = entries[0]
            out: dict[str, Any] = {k: show(first["setting"][k]) for k in keys}
            out.update(method=first["method"], selector=first["selector"], n=len(first["seeds"]),
                       seeds=" ".join(map(str, first["seeds"])), sdf=first["sdf"], selection_s=first["selection_s"],
                       total_s=first.get("total_s"))
            for e in entries:
                key = e["key"]
                out.update({f"{key}_mean": e["mean"], f"{key}_std": e["std"], f"{key}_n": e["n"],
                            f"{key}_ci_low": e["ci_low"], f"{key}_ci_high": e["ci_high"]})
                for b, c in e["vs"].items():
                    out.update({f"{key}_diff_vs_{b}": c.diff, f"{key}_diff_vs_{b}_low": c.low,
                                f"{key}_diff_vs_{b}_high": c.high, f"{key}_diff_vs_{b}_pairs": c.pairs})
            writer.writerow(out)
    return path
