"""Figures from the tidy results frame (matplotlib, Agg canvas; no pyplot, so no global backend state).

Each function takes the frame (:func:`delift.report.frame.build_frame`) or the survey rows, draws one
figure, writes it as PNG to ``path`` and returns the :class:`~matplotlib.figure.Figure` (tests read
its axes). Full Data and Initial, which select no subset, are horizontal lines where the x axis is
a budget or SDF. Uncertainty is always the :data:`INTERVAL` (the tables' too), clipped to the range of
a bounded metric (the ``bounds`` its class declares, carried by each frame entry); a metric's y-range is shared by every figure
of one protocol, so budgets compare by eye. A method keeps its colour, marker and line style in every
figure of a report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from delift.report.parts import packaged

REFERENCE_STYLE = {False: ("black", "--"), True: ("grey", ":")}  # by skip_training: Full Data, Initial
REFERENCE_BARS = {False: "dimgrey", True: "silver"}  # light enough for the black whiskers to show
INTERVAL = "95 % t-interval over seeds"  # the one uncertainty convention of every figure (none with one seed)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")


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


def bounds_of(entry: dict) -> tuple[float, float] | None:
    """The bounds the entry's metric declares (as the frame carries them; else the package's metric's)."""
    return entry["bounds"] if "bounds" in entry else packaged().metric(entry["metric"]).bounds


def protocol_label(entries: list[dict], evaluation: str) -> str:
    """The label ``evaluation``'s protocol declares, as the frame (or survey) entries carry it."""
    return next((e["evaluation_label"] for e in entries if e["evaluation"] == evaluation), evaluation)


def metric_label(entries: list[dict], metric: str) -> str:
    return next((e["metric_label"] for e in entries if e.get("metric") == metric), metric)


def colour(styles: dict[str, dict[str, Any]], entry: dict) -> str:
    """A method's colour in every figure (the budget-independent Full Data and Initial: their greys)."""
    if entry["method"] in styles:
        return styles[entry["method"]]["color"]
    return REFERENCE_BARS[bool(entry.get("skip_training"))] if entry.get("reference") else "black"


def method_styles(frame: list[dict]) -> dict[str, dict[str, Any]]:
    """Method label -> plot style (colour, marker, line style, marker size), in the frame's method order;
    shrinking markers and changing dashes keep equal lines visible on top of each other."""
    methods = list(dict.fromkeys(e["method"] for e in frame if not e["reference"]))
    return {m: {"color": f"C{i % 10}", "marker": MARKERS[i % len(MARKERS)], "linestyle": LINESTYLES[i % len(LINESTYLES)],
                "markersize": max(4.0, 10.0 - 1.5 * i)} for i, m in enumerate(methods)}


def interval(entry: dict) -> tuple[float, float] | None:
    """The entry's t-interval clipped to its metric's bounds (None with fewer than two seeds)."""
    if entry["ci_low"] is None or entry["mean"] is None:
        return None
    bounds = bounds_of(entry)
    low, high = entry["ci_low"], entry["ci_high"]
    return (max(low, bounds[0]), min(high, bounds[1])) if bounds else (low, high)


def y_range(entries: list[dict], metric: str, from_zero: bool) -> tuple[float, float]:
    """The y-limits of ``metric`` over ``entries`` (means and clipped intervals): never outside a bounded
    metric's range, never empty (all zero: the whole range); ``from_zero`` for bars."""
    bounds = next((bounds_of(e) for e in entries if e["metric"] == metric), None)
    values = [v for e in entries if e["metric"] == metric and e["mean"] is not None
              for v in (e["mean"], *(interval(e) or ()))]
    low, high = (min(values), max(values)) if values else (0.0, 0.0)
    floor = bounds[0] if bounds else None
    if from_zero:
        low, floor = min(low, 0.0), (min(floor, 0.0) if bounds else None)
    if high - low < 1e-12:  # a flat panel (e.g. every ROUGE 0): the metric's whole range
        return (floor, bounds[1]) if bounds else (low - 0.5, high + 0.5)
    pad = 0.08 * (high - low)
    low, high = (low if from_zero else low - pad), high + pad
    if bounds:
        low, high = max(low, floor), min(high, bounds[1] + 0.02 * (bounds[1] - bounds[0]))
    return low, high


def figure_legend(fig: Figure, axes: list) -> None:
    """One legend for the whole figure, right of the panels (never over the bands), each label once."""
    found: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    if found:
        fig.legend(list(found.values()), list(found), loc="outside right upper", fontsize="small")


def budget_curves(frame: list[dict], path: str | Path, evaluation: str, split: str = "",
                  panel: str | None = None) -> Figure | None:
    """Score vs ``budget_fraction`` per method (seed mean with the :data:`INTERVAL` as a band), one axes per
    metric, one legend; Full Data and Initial as horizontal lines. ``panel``: the setting apart from the
    budget (default: the first). None when fewer than two budgets ran."""
    protocol = pick(frame, evaluation=evaluation, split=split)
    panel = protocol[0]["panel"] if panel is None and protocol else panel
    entries = [e for e in protocol if e["panel"] == panel and e["budget_fraction"] is not None]
    if len({e["budget_fraction"] for e in entries if not e["reference"]}) < 2:
        return None
    styles = method_styles(frame)
    metrics = metrics_of(entries)
    fig, axes = new_figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        rows = [e for e in entries if e["metric"] == metric and e["mean"] is not None]
        for method in dict.fromkeys(e["method"] for e in rows if not e["reference"]):
            line = sorted((e for e in rows if e["method"] == method), key=lambda e: e["budget_fraction"])
            xs = [e["budget_fraction"] for e in line]
            ax.plot(xs, [e["mean"] for e in line], label=method, markerfacecolor="none", clip_on=False,  # a mark at 0 whole
                    **styles[method])
            bands = [interval(e) or (e["mean"], e["mean"]) for e in line]
            ax.fill_between(xs, [b[0] for b in bands], [b[1] for b in bands], color=styles[method]["color"], alpha=0.15,
                            linewidth=0)
        references = dict.fromkeys(e["selector"] for e in rows if e["reference"])
        for selector in sorted(references, key=lambda s: next(bool(e.get("skip_training")) for e in rows
                                                               if e["selector"] == s)):  # Full Data, then Initial
            ref = sorted((e for e in rows if e["selector"] == selector), key=lambda e: e["budget_fraction"])
            ref_colour, style = REFERENCE_STYLE[bool(ref[0].get("skip_training"))]  # not `colour`: a function here
            ax.axhline(ref[0]["mean"], color=ref_colour, linestyle=style, label=ref[0]["method"])
        ax.set_ylim(*y_range(protocol, metric, from_zero=False))
        ax.set_xlabel("budget fraction (subset / pool)")
        ax.set_ylabel(f"{protocol_label(protocol, evaluation)} {metric_label(protocol, metric)}")
        ax.set_title(metric_label(protocol, metric))
    figure_legend(fig, axes)
    fig.suptitle(f"{protocol_label(protocol, evaluation)}{', ' + panel if panel else ''}: seed mean, band: {INTERVAL} "
                 "(clipped to the metric's range)", fontsize="small")
    return save(fig, path)


def method_bars(frame: list[dict], path: str | Path, evaluation: str, split: str = "",
                setting: str | None = None) -> Figure | None:
    """One bar per method (seed mean) with the :data:`INTERVAL` as whiskers, one axes per metric, for one
    setting (default: the first); each metric's y-range is shared with the other settings' bars."""
    protocol = pick(frame, evaluation=evaluation, split=split)
    if not protocol:
        return None
    setting = protocol[0]["setting_label"] if setting is None else setting
    entries = [e for e in protocol if e["setting_label"] == setting]
    styles = method_styles(frame)
    metrics = metrics_of(entries)
    fig, axes = new_figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        rows = [e for e in entries if e["metric"] == metric]
        means = [e["mean"] if e["mean"] is not None else math.nan for e in rows]
        spans = [interval(e) for e in rows]
        errors = [[e["mean"] - s[0] if s else 0 for e, s in zip(rows, spans)],
                  [s[1] - e["mean"] if s else 0 for e, s in zip(rows, spans)]]
        colours = [colour(styles, e) for e in rows]
        ax.bar(range(len(rows)), means, yerr=errors, capsize=4, color=colours)
        ax.set_xticks(range(len(rows)), [e["method"] for e in rows], rotation=30, ha="right", fontsize="small")
        ax.set_ylim(*y_range(protocol, metric, from_zero=True))
        ax.set_xlabel("method")
        ax.set_ylabel(f"{protocol_label(protocol, evaluation)} {metric_label(protocol, metric)}")
        ax.set_title(metric_label(protocol, metric))
    seeds = sorted({len(e["seeds"]) for e in entries})
    fig.suptitle(f"{protocol_label(protocol, evaluation)}{', ' + setting if setting else ''}: seed mean (n = "
                 f"{'/'.join(map(str, seeds))}), whiskers: {INTERVAL} (clipped to the metric's range)", fontsize="small")
    return save(fig, path)


def forgetting(frame: list[dict], path: str | Path, evaluation: str, metric: str,
               setting: str | None = None) -> Figure | None:
    """Use case 3: new-task score (y) against the existing task's score (x, forgetting), one point per
    method with the :data:`INTERVAL` as whiskers. None without ``<evaluation>/existing/<metric>``."""
    new = pick(frame, evaluation=evaluation, split="", metric=metric)
    old = {e["row"]: e for e in pick(frame, evaluation=evaluation, split="existing", metric=metric)}
    if setting is not None:
        new = [e for e in new if e["setting_label"] == setting]
    points = [(e, old[e["row"]]) for e in new if e["row"] in old and e["mean"] is not None
              and old[e["row"]]["mean"] is not None]
    if not points:
        return None

    def whisker(e: dict) -> list[list[float]]:
        span = interval(e) or (e["mean"], e["mean"])
        return [[e["mean"] - span[0]], [span[1] - e["mean"]]]

    styles = method_styles(frame)
    fig, (ax,) = new_figure(1, width=5.2, height=4.2)
    for e, o in points:
        label = e["method"] + (f" ({e['setting_label']})" if e["setting_label"] and setting is None else "")
        ax.errorbar(o["mean"], e["mean"], xerr=whisker(o), yerr=whisker(e), fmt="o", capsize=3,
                    color=colour(styles, e), label=label)
    ax.set_xlabel(f"existing task {metric_label(new, metric)} ({protocol_label(new, evaluation)}; right = less forgetting)")
    ax.set_ylabel(f"new task {metric_label(new, metric)} ({protocol_label(new, evaluation)})")
    ax.set_title(f"{setting + ': ' if setting else ''}seed means, whiskers: {INTERVAL}", fontsize="small")
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
    right = max([0.3, *(r["sdf"] for r in mine if not r.get("whole_pool"))]) * 1.05
    xs = [0.0, right]
    ax.plot(xs, [line["pir0"] + line["slope"] * (x - line["sdf0"]) for x in xs], color="black", linestyle="--",
            label="survey line (Instruction-Mining - InstructionGPT-4)")
    points = survey["points"]
    for name, (sdf, value) in points.items():
        crowded = any(abs(s - sdf) < 0.01 and 0 < v - value < 0.05 for s, v in points.values())  # label below
        ax.scatter(sdf, value, marker="x", color="grey")
        ax.annotate(f"{name} (lit.)", (sdf, value), fontsize="x-small", color="grey",
                    xytext=(3, -9 if crowded else 3), textcoords="offset points")
    styles = method_styles(rows)  # every row, so a method has the colour it has in the other figures
    for method in dict.fromkeys(r["method"] for r in mine if not r.get("whole_pool")):
        pts = [r for r in mine if r["method"] == method]
        ax.scatter([r["sdf"] for r in pts], [r["pir"] for r in pts], color=colour(styles, pts[0]),
                   label=f"{method} (this run)")
    ax.axhline(1.0, color="black", linewidth=0.8, label="Full Data (PIR = 1)")
    ax.set_xlim(-0.01, right)
    ax.set_xlabel("SDF (selected data fraction)")
    ax.set_ylabel(f"PIR ({protocol_label(mine, evaluation)} score / Full Data's)")
    ax.set_title("SDF-PIR; grey x: literature values (Liu et al. 2024), not comparable runs", fontsize="small")
    ax.legend(fontsize="x-small")
    return save(fig, path)
