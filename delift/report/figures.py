"""Figures from the tidy results frame (matplotlib, Agg canvas; no pyplot, so no global backend state).

Each function takes the frame (:func:`delift.report.frame.build_frame`) or the survey rows, draws one
figure, writes it as PNG to ``path`` and returns the :class:`~matplotlib.figure.Figure` (tests read
its axes). Full Data and Initial, which select no subset, are horizontal lines where the x axis is
a budget or SDF.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from delift.report.labels import REFERENCE_METHODS, metric_label, protocol_label

REFERENCE_STYLE = {"full": ("black", "--"), "initial": ("grey", ":")}


def new_figure(panels: int, width: float = 4.2, height: float = 3.4, per_row: int = 4) -> tuple[Figure, list]:
    """A figure on an Agg canvas with ``panels`` axes, at most ``per_row`` side by side."""
    panels = max(panels, 1)
    cols, rows = min(panels, per_row), math.ceil(panels / per_row)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(panels)]


def save(fig: Figure, path: str | Path) -> Figure:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return fig


def pick(frame: list[dict], **match: Any) -> list[dict]:
    """Frame entries whose fields equal ``match``."""
    return [e for e in frame if all(e.get(k) == v for k, v in match.items())]


def metrics_of(entries: list[dict]) -> list[str]:
    return list(dict.fromkeys(e["metric"] for e in entries))


def budget_curves(frame: list[dict], path: str | Path, evaluation: str, split: str = "",
                  panel: str | None = None) -> Figure | None:
    """Score vs ``budget_fraction`` per method (mean line, ± std band over seeds), one axes per metric;
    Full Data and Initial as horizontal lines. ``panel``: the setting apart from the budget (default:
    the first). None when fewer than two budgets ran."""
    entries = pick(frame, evaluation=evaluation, split=split)
    panel = entries[0]["panel"] if panel is None and entries else panel
    entries = [e for e in entries if e["panel"] == panel and e["budget_fraction"] is not None]
    if len({e["budget_fraction"] for e in entries if e["selector"] not in REFERENCE_METHODS}) < 2:
        return None
    metrics = metrics_of(entries)
    fig, axes = new_figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        rows = [e for e in entries if e["metric"] == metric and e["mean"] is not None]
        for method in dict.fromkeys(e["method"] for e in rows if e["selector"] not in REFERENCE_METHODS):
            line = sorted((e for e in rows if e["method"] == method), key=lambda e: e["budget_fraction"])
            xs = [e["budget_fraction"] for e in line]
            drawn = ax.plot(xs, [e["mean"] for e in line], marker="o", label=method)[0]
            low = [e["mean"] - (e["std"] or 0) for e in line]
            high = [e["mean"] + (e["std"] or 0) for e in line]
            ax.fill_between(xs, low, high, color=drawn.get_color(), alpha=0.2, linewidth=0)
        for selector, (colour, style) in REFERENCE_STYLE.items():
            ref = sorted((e for e in rows if e["selector"] == selector), key=lambda e: e["budget_fraction"])
            if ref:
                ax.axhline(ref[0]["mean"], color=colour, linestyle=style, label=ref[0]["method"])
        ax.set_xlabel("budget fraction (subset / pool)")
        ax.set_ylabel(f"{protocol_label(evaluation)} {metric_label(metric)}")
        ax.set_title(metric_label(metric))
        ax.legend(fontsize="small")
    if panel:
        fig.suptitle(panel, fontsize="small")
    return save(fig, path)


def method_bars(frame: list[dict], path: str | Path, evaluation: str, split: str = "",
                setting: str | None = None) -> Figure | None:
    """One bar per method (seed mean) with its 95 % t-interval as whiskers, one axes per metric, for one
    setting (default: the first)."""
    entries = pick(frame, evaluation=evaluation, split=split)
    if not entries:
        return None
    setting = entries[0]["setting_label"] if setting is None else setting
    entries = [e for e in entries if e["setting_label"] == setting]
    metrics = metrics_of(entries)
    fig, axes = new_figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        rows = [e for e in entries if e["metric"] == metric]
        means = [e["mean"] if e["mean"] is not None else math.nan for e in rows]
        errors = [[(e["mean"] - e["ci_low"]) if e["ci_low"] is not None else 0 for e in rows],
                  [(e["ci_high"] - e["mean"]) if e["ci_high"] is not None else 0 for e in rows]]
        ax.bar(range(len(rows)), means, yerr=errors, capsize=4, color=[f"C{i}" for i in range(len(rows))])
        ax.set_xticks(range(len(rows)), [e["method"] for e in rows], rotation=30, ha="right", fontsize="small")
        ax.set_xlabel("method")
        ax.set_ylabel(f"{protocol_label(evaluation)} {metric_label(metric)}")
        ax.set_title(metric_label(metric))
    fig.suptitle(f"{protocol_label(evaluation)}{', ' + setting if setting else ''}; whiskers: 95 % t-interval "
                 "over seeds", fontsize="small")
    return save(fig, path)


def forgetting(frame: list[dict], path: str | Path, evaluation: str, metric: str,
               setting: str | None = None) -> Figure | None:
    """Use case 3: new-task score (y) against the existing task's score (x, forgetting), one point per
    method with ± std whiskers. None without ``<evaluation>/existing/<metric>``."""
    new = pick(frame, evaluation=evaluation, split="", metric=metric)
    old = {e["row"]: e for e in pick(frame, evaluation=evaluation, split="existing", metric=metric)}
    if setting is not None:
        new = [e for e in new if e["setting_label"] == setting]
    points = [(e, old[e["row"]]) for e in new if e["row"] in old and e["mean"] is not None
              and old[e["row"]]["mean"] is not None]
    if not points:
        return None
    fig, (ax,) = new_figure(1, width=5.2, height=4.2)
    for i, (e, o) in enumerate(points):
        label = e["method"] + (f" ({e['setting_label']})" if e["setting_label"] and setting is None else "")
        ax.errorbar(o["mean"], e["mean"], xerr=o["std"] or 0, yerr=e["std"] or 0, fmt="o", capsize=3,
                    color=f"C{i}", label=label)
    ax.set_xlabel(f"existing task {metric_label(metric)} ({protocol_label(evaluation)}; right = less forgetting)")
    ax.set_ylabel(f"new task {metric_label(metric)} ({protocol_label(evaluation)})")
    ax.legend(fontsize="small")
    return save(fig, path)


def survey_scatter(rows: list[dict], survey: dict[str, Any], path: str | Path, evaluation: str) -> Figure | None:
    """SDF vs PIR of this report's methods, with the survey's reference line and its published points
    (labelled as literature values: other models and data)."""
    mine = [r for r in rows if r["evaluation"] == evaluation and r["pir"] is not None and r["sdf"] is not None]
    if not mine:
        return None
    fig, (ax,) = new_figure(1, width=6.0, height=4.6)
    line = survey["line"]
    right = max([0.3, *(r["sdf"] for r in mine if r["selector"] != "full")]) * 1.05
    xs = [0.0, right]
    ax.plot(xs, [line["pir0"] + line["slope"] * (x - line["sdf0"]) for x in xs], color="black", linestyle="--",
            label="survey line (Instruction-Mining - InstructionGPT-4)")
    points = survey["points"]
    for name, (sdf, value) in points.items():
        crowded = any(abs(s - sdf) < 0.01 and 0 < v - value < 0.05 for s, v in points.values())  # label below
        ax.scatter(sdf, value, marker="x", color="grey")
        ax.annotate(f"{name} (lit.)", (sdf, value), fontsize="x-small", color="grey",
                    xytext=(3, -9 if crowded else 3), textcoords="offset points")
    for i, method in enumerate(dict.fromkeys(r["method"] for r in mine if r["selector"] != "full")):
        pts = [r for r in mine if r["method"] == method]
        ax.scatter([r["sdf"] for r in pts], [r["pir"] for r in pts], color=f"C{i}", label=f"{method} (this run)")
    ax.axhline(1.0, color="black", linewidth=0.8, label="Full Data (PIR = 1)")
    ax.set_xlim(-0.01, right)
    ax.set_xlabel("SDF (selected data fraction)")
    ax.set_ylabel(f"PIR ({protocol_label(evaluation)} score / Full Data's)")
    ax.set_title("SDF-PIR; grey x: literature values (Liu et al. 2024), not comparable runs", fontsize="small")
    ax.legend(fontsize="x-small")
    return save(fig, path)
