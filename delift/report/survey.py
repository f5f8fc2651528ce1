"""The survey's unified metrics (Liu et al. 2024, "Take the essence and discard the dross").

- SDF (selected data fraction) = subset size / pool size (``subset/size`` / ``pool/size``, seed mean);
- PIR (performance improvement ratio), per evaluation protocol = mean over the chosen metrics of
  method's score / Full Data's score (same setting and protocol, both seed means);
- efficiency: ``r = PIR - [pir0 + slope (SDF - sdf0)]``, the signed position against the survey's line
  through Instruction-Mining (0.025, 1.400) and InstructionGPT-4 (0.058, 1.443); higher is better.
  ``r_random`` is the same residual against the least-squares line through this run's Random points
  (two or more budgets of one otherwise equal setting);
- feasibility: simplicity penalty = 2 llms_trained + pipeline_steps + (no public code), flexibility
  penalty = 3 (not model-free) + 2 (not dataset-free) + (not GPT-free); each dense-ranked, smaller
  first; feasibility rank = dense rank of the sum of the two ranks.

Descriptors, the line and the published points live in ``conf/survey/methods.yaml``, each value with
its source.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

METHODS_YAML = "survey/methods.yaml"


def default_methods_path() -> Path:
    """``conf/survey/methods.yaml`` of the installed package (or of the repository in editable mode)."""
    package = Path(__file__).resolve().parents[1]
    for conf in (package / "conf", package.parent / "conf"):
        if (conf / METHODS_YAML).exists():
            return conf / METHODS_YAML
    raise FileNotFoundError(f"{METHODS_YAML} not found beside the delift package")


def unwrap(entry: Any) -> Any:
    """``{value: x, source: s}`` -> x; a bare value stays as it is."""
    return entry["value"] if isinstance(entry, dict) and "value" in entry else entry


def load_survey(path: str | Path | None = None) -> dict[str, Any]:
    """The YAML with every ``{value, source}`` unwrapped: ``line``, ``points``, ``methods``, ``sources``."""
    raw = yaml.safe_load(Path(path or default_methods_path()).read_text())
    line = {k: float(unwrap(v)) for k, v in raw["reference_line"].items()}
    points = {name: (float(p["sdf"]), float(p["pir"])) for name, p in raw.get("literature_points", {}).items()}
    methods = {name: {k: unwrap(v) for k, v in entry.items()} for name, entry in raw["methods"].items()}
    return {"line": line, "points": points, "methods": methods, "sources": raw.get("sources", {}), "raw": raw}


def reference_pir(sdf: float, line: dict[str, float]) -> float:
    """The survey line's PIR at ``sdf``."""
    return line["pir0"] + line["slope"] * (sdf - line["sdf0"])


def pir(scores: dict[str, float | None], full: dict[str, float | None], metrics: list[str]) -> float | None:
    """Mean over ``metrics`` of score / Full's score; None when any is missing or Full's is 0."""
    ratios = []
    for metric in metrics:
        value, base = scores.get(metric), full.get(metric)
        if value is None or base is None or base == 0:
            return None
        ratios.append(value / base)
    return math.fsum(ratios) / len(ratios) if ratios else None


def simplicity_penalty(d: dict[str, Any]) -> int:
    return 2 * int(d["llms_trained"]) + int(d["pipeline_steps"]) + (0 if d["public_code"] else 1)


def flexibility_penalty(d: dict[str, Any]) -> int:
    return 3 * (not d["model_free"]) + 2 * (not d["dataset_free"]) + 1 * (not d["gpt_free"])


def dense_rank(values: dict[str, float], higher_first: bool = False) -> dict[str, int]:
    """1 for the best value, equal values share a rank, the next value takes the next integer."""
    distinct = sorted(set(values.values()), reverse=higher_first)
    return {name: distinct.index(v) + 1 for name, v in values.items()}


def feasibility(methods: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Penalties and ranks of every described method (ranked among ``methods`` only)."""
    simple = {m: simplicity_penalty(d) for m, d in methods.items()}
    flexible = {m: flexibility_penalty(d) for m, d in methods.items()}
    simple_rank, flexible_rank = dense_rank(simple), dense_rank(flexible)
    overall = dense_rank({m: simple_rank[m] + flexible_rank[m] for m in methods})
    return {m: {"simplicity": simple[m], "flexibility": flexible[m], "simplicity_rank": simple_rank[m],
                "flexibility_rank": flexible_rank[m], "feasibility_rank": overall[m]} for m in methods}


def least_squares_line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """(intercept, slope) through the points; None with fewer than two distinct x."""
    xs = [p[0] for p in points]
    if len(set(xs)) < 2:
        return None
    mx, my = math.fsum(xs) / len(xs), math.fsum(p[1] for p in points) / len(points)
    slope = math.fsum((x - mx) * (y - my) for x, y in points) / math.fsum((x - mx) ** 2 for x in xs)
    return my - slope * mx, slope


def survey_rows(frame: list[dict], survey: dict[str, Any], metrics: list[str] | None = None) -> list[dict]:
    """One row per (table row, evaluation protocol) on the headline test split; see the module docstring."""
    by_row: dict[tuple[int, str], dict[str, Any]] = {}
    labels = {e["metric"]: e["metric_label"] for e in frame}
    for e in frame:
        if e["split"] == "":
            by_row.setdefault((e["row"], e["evaluation"]), {"first": e, "scores": {}})["scores"][e["metric"]] = e["mean"]
    feasible = feasibility(survey["methods"])
    whole_pool = {e["selector"] for e in frame if e["whole_pool"]}  # Full Data: the PIR reference
    rows = []
    for (row, evaluation), found in by_row.items():
        first = found["first"]
        full_row = next((ref for name, ref in first["ref_rows"].items() if name in whole_pool and ref is not None),
                        None)
        full = by_row.get((full_row, evaluation), {}).get("scores", {}) if full_row is not None else {}
        chosen = metrics or [m for m, v in full.items() if v not in (None, 0)]
        value = pir(found["scores"], full, chosen)
        sdf = first["sdf"]
        r = value - reference_pir(sdf, survey["line"]) if value is not None and sdf is not None else None
        rows.append({"row": row, "panel": first["panel"], "setting_label": first["setting_label"],
                     "method": first["method"], "selector": first["selector"], "evaluation": evaluation,
                     "evaluation_label": first["evaluation_label"], "reference": first["reference"],
                     "whole_pool": first["whole_pool"], "reference_baseline": first["reference_baseline"],
                     "pir_labels": [labels.get(m, m) for m in chosen],
                     "sdf": sdf, "pir": value, "pir_metrics": chosen, "r": r, "selection_s": first["selection_s"],
                     "seeds": first["seeds"], "selection_cached": first.get("selection_cached", 0),
                     **feasible.get(first["selector"], {})})
    for evaluation in {r["evaluation"] for r in rows}:
        for panel in {r["panel"] for r in rows}:
            block = [r for r in rows if r["evaluation"] == evaluation and r["panel"] == panel]
            ranked = {id(r): r["r"] for r in block if r["r"] is not None and not r["reference"]}
            ranks = dense_rank(ranked, higher_first=True)
            fit = least_squares_line([(r["sdf"], r["pir"]) for r in block
                                      if r["reference_baseline"] and r["pir"] is not None and r["sdf"] is not None])
            for r in block:
                r["efficiency_rank"] = ranks.get(id(r))
                r["r_random"] = (r["pir"] - (fit[0] + fit[1] * r["sdf"])
                                 if fit and r["pir"] is not None and r["sdf"] is not None else None)
    return sorted(rows, key=lambda r: (r["evaluation"], r["row"]))


def _num(value: Any, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def selection_cell(row: dict) -> str:
    """Selection seconds, flagged when some seeds read a cache instead of computing."""
    cached = row.get("selection_cached") or 0
    seeds = len(row.get("seeds") or [])
    return _num(row["selection_s"], 2) + (f" (cache {cached}/{seeds})" if cached else "")


def to_markdown(rows: list[dict], survey: dict[str, Any]) -> str:
    """The survey table per protocol, the feasibility table of every described method, and the sources."""
    lines = ["## Survey metrics (Liu et al. 2024)", "",
             "SDF = subset / pool; PIR = mean over the metrics named of score / Full Data's score (same setting and "
             f"protocol); r = PIR - [{survey['line']['pir0']:g} + {survey['line']['slope']:g} (SDF - "
             f"{survey['line']['sdf0']:g})], the survey's line (higher is better; efficiency rank by r among "
             "selection methods of one setting); r (Random line) = the residual against the line through this "
             "run's Random points at two or more budgets. Penalties and feasibility rank from "
             "`conf/survey/methods.yaml` (ranked over every method described there); selection s = "
             "`time/selection_s`, seed mean; (cache k/n): k of the n seeds read their kernel or scores from the cache, "
             "so their time leaves out computing them (see the notes).", ""]
    for evaluation in dict.fromkeys(r["evaluation"] for r in rows):
        block = [r for r in rows if r["evaluation"] == evaluation]
        names = ", ".join(block[0]["pir_labels"]) if block else ""
        lines += [f"### {block[0]['evaluation_label']} (PIR over {names or 'no metric: no Full Data run'})", "",
                  "| setting | method | SDF | PIR | r | efficiency rank | r (Random line) | simplicity penalty | "
                  "flexibility penalty | feasibility rank | selection s |", "|" + "---|" * 11]
        for r in block:
            lines.append("| " + " | ".join([
                r["setting_label"] or "–", r["method"], _num(r["sdf"]), _num(r["pir"]), _num(r["r"], signed=True),
                str(r["efficiency_rank"] or "–"), _num(r["r_random"], signed=True), str(r.get("simplicity", "–")),
                str(r.get("flexibility", "–")), str(r.get("feasibility_rank", "–")), selection_cell(r)]) + " |")
        lines.append("")
    feasible = feasibility(survey["methods"])
    lines += ["### Feasibility of every described method", "",
              "| method | LLMs trained | pipeline steps | public code | model-free | dataset-free | GPT-free | "
              "simplicity penalty (rank) | flexibility penalty (rank) | feasibility rank | source |", "|" + "---|" * 11]
    for name, d in survey["methods"].items():
        f = feasible[name]
        sources = sorted({v.get("source", "") for v in survey["raw"]["methods"][name].values() if isinstance(v, dict)})
        lines.append("| " + " | ".join([
            d.get("label", name), str(d["llms_trained"]), str(d["pipeline_steps"]),
            *("yes" if d[k] else "no" for k in ("public_code", "model_free", "dataset_free", "gpt_free")),
            f"{f['simplicity']} ({f['simplicity_rank']})", f"{f['flexibility']} ({f['flexibility_rank']})",
            str(f["feasibility_rank"]), "; ".join(survey["sources"].get(s, s) for s in sources)]) + " |")
    return "\n".join(lines) + "\n"
