"""Paper-style names and orders of methods, evaluation protocols and metrics."""

from __future__ import annotations

import json
from typing import Any

METHODS = {  # selector name -> the paper's row label, in the paper's row order; others follow, sorted
    "initial": "Initial", "random": "Random", "selectit": "SelectIT", "less": "LESS", "delift_se": "DELIFT (SE)",
    "delift": "DELIFT", "full": "Full Data",
}
OTHER_METHODS = {"lobass": "LoBaSS", "ifd": "IFD", "nuggets": "Nuggets"}
REFERENCE_METHODS = ("initial", "full")  # no subset is selected: not ranked, drawn as horizontal lines
PROTOCOLS = {"icl": "ICL", "qlora": "QLoRA", "lora": "LoRA"}  # in the paper's column order; others follow
METRICS = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L", "bge": "BGE", "judge": "LAJ",
           "exact_match": "EM"}  # known per-example scores, in column order; others follow, sorted
SPLITS = {"": "test", "existing": "existing task's test (forgetting)"}
BOUNDS = {"rouge1": (0.0, 1.0), "rouge2": (0.0, 1.0), "rougeL": (0.0, 1.0), "bge": (0.0, 1.0), "exact_match": (0.0, 1.0),
          "judge": (1.0, 5.0)}  # the range a metric's score lives in (the judge grades 1-5); others unbounded


def ordered(names: set[str] | list[str], known: dict[str, str]) -> list[str]:
    """``names`` with the known ones first in ``known``'s order, then the rest sorted."""
    names = set(names)
    return [n for n in known if n in names] + sorted(names - set(known))


def method_order(selector: str) -> tuple[int, str]:
    """Sort key of a selector: the paper's order, then alphabetical."""
    order = list(METHODS)
    return (order.index(selector), "") if selector in METHODS else (len(order), selector)


def method_label(selector: str, variant: dict[str, Any] | None = None) -> str:
    """``DELIFT`` or, for a variant, ``DELIFT (postprocess=minmax)``."""
    label = METHODS.get(selector) or OTHER_METHODS.get(selector) or selector
    if variant:
        label += " (" + ", ".join(f"{k.removeprefix('selector.')}={show(v)}" for k, v in variant.items()) + ")"
    return label


def protocol_label(name: str) -> str:
    return PROTOCOLS.get(name, name)


def metric_label(name: str) -> str:
    return METRICS.get(name, name)


def metric_bounds(name: str) -> tuple[float, float] | None:
    """(lowest, highest) score of a known bounded metric, None for others."""
    return BOUNDS.get(name)


def show(value: Any) -> str:
    """A config value as a table shows it (floats without trailing noise, None as null)."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (str, int)):
        return str(value)
    return json.dumps(value)


def setting_label(setting: dict[str, Any]) -> str:
    """``budget_fraction=0.25, data.name=alpaca`` ('' when nothing varies)."""
    return ", ".join(f"{k}={show(v)}" for k, v in setting.items())
