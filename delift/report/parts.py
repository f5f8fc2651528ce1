"""What the parts behind a report's results declare, asked of their classes: no name lists here.

A job's ``run.json`` records its resolved config: the selector's ``_target_``, each ``metric_library``
entry's and each evaluation block's. The class named there is imported (``hydra.utils.get_class``) and
asked: a selector for its ``label``, ``row_order``, ``budget_independent``, ``skip_training`` and
``reference_baseline``; a metric
for the labels, ``bounds`` and ``column_order`` of its score keys; a protocol for its column
(``Protocol.column``). A job that records no class for a part (run folders from before the config held
them) is resolved by the package's own config group of that name (``conf/<group>/<name>.yaml``).
A recorded class that cannot be imported (a foreign or removed part) falls back to the package's part
of the same name, else to the recorded name (unbounded, unordered); either way with a warning, which
the report counts and lists in its notes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)


def conf_dir() -> Path | None:
    """``conf/`` of the installed package (or of the repository in editable mode)."""
    package = Path(__file__).resolve().parents[1]
    return next((conf for conf in (package / "conf", package.parent / "conf") if conf.is_dir()), None)


@cache
def import_class(target: str) -> type | None:
    """The class ``target`` names, or None when it cannot be imported."""
    from hydra.utils import get_class

    try:
        return get_class(target)
    except Exception:  # noqa: BLE001 - any failure to import is "not importable", reported by the caller
        return None


@cache
def packaged_block(group: str, name: str) -> dict[str, Any]:
    """``conf/<group>/<name>.yaml`` as a dict, its ``<other>@_here_`` defaults merged under it ({} if absent)."""
    conf = conf_dir()
    path = conf / group / f"{name}.yaml" if conf else None
    if path is None or not path.is_file():
        return {}
    found = yaml.safe_load(path.read_text()) or {}
    out: dict[str, Any] = {}
    for entry in found.pop("defaults", None) or []:
        if isinstance(entry, str) and entry.endswith("@_here_"):
            out = merge(out, packaged_block(group, entry.removesuffix("@_here_")))
    return merge(out, found)


def packaged_names(group: str) -> list[str]:
    """The config names of a group of the package (``conf/metric/*.yaml``), sorted."""
    conf = conf_dir()
    return sorted(p.stem for p in (conf / group).glob("*.yaml")) if conf and (conf / group).is_dir() else []


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@dataclass(frozen=True)
class SelectorPart:
    name: str
    label: str
    row_order: int | None = None
    reference: bool = False  # budget-independent (Initial, Full): not ranked, drawn as horizontal lines
    skip_training: bool = False  # evaluates the untouched base model (Initial)
    baseline: bool = False  # the baseline the report compares against (Random: reference_baseline)

    @property
    def whole_pool(self) -> bool:
        """Full Data: budget-independent and trained (the PIR reference's kind)."""
        return self.reference and not self.skip_training

    @property
    def order(self) -> tuple:
        """Sort key: the declared row order, then the others by label."""
        return (0, self.row_order, self.name) if self.row_order is not None else (1, self.label, self.name)


@dataclass(frozen=True)
class MetricPart:
    key: str
    label: str
    bounds: tuple[float, float] | None = None
    order: tuple = ()


@dataclass(frozen=True)
class ProtocolPart:
    name: str
    label: str
    column_order: int | None = None

    @property
    def order(self) -> tuple:
        return (0, self.column_order, self.name) if self.column_order is not None else (1, self.name, "")


@dataclass
class Parts:
    """The selectors, metrics and protocols of a report's jobs, as their classes declare them."""

    selectors: dict[str, SelectorPart] = field(default_factory=dict)
    metrics: dict[str, MetricPart] = field(default_factory=dict)
    protocols: dict[str, ProtocolPart] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, jobs: list[Any]) -> Parts:
        """Every part the jobs recorded (each job's run.json config read once, when it was loaded)."""
        parts = cls()
        for metric in packaged_names("metric"):  # the package's own library: known keys, labels, bounds
            parts.add_metric_class(metric, packaged_block("metric", metric).get("_target_"), quiet=True)
        for job in jobs:
            config = job.run.get("config") or {}
            selector = config.get("selector") if isinstance(config.get("selector"), dict) else {}
            recorded = selector.get("_target_") or (job.subset.get("selector_config") or {}).get("_target_")
            parts.add_selector(job.selector, recorded, job.path)
            library = config.get("metric_library") if isinstance(config.get("metric_library"), dict) else {}
            for name, block in library.items():
                parts.add_metric_class(str(name), (block or {}).get("_target_"), job.path)
            evaluation = config.get("evaluation") if isinstance(config.get("evaluation"), dict) else {}
            for name, block in evaluation.items():
                parts.add_protocol(str(name), block if isinstance(block, dict) else {}, job.path)
        return parts

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            log.warning("%s", message)
            self.warnings.append(message)

    def resolve(self, group: str, name: str, recorded: str | None, where: Any) -> type | None:
        """The class of part ``name``: the recorded one, else the package's of that name (warned when a
        recorded class was not importable), else None (warned)."""
        found = import_class(recorded) if recorded else None
        if found is not None:
            return found
        packaged = packaged_block(group, name).get("_target_")
        fallback = import_class(packaged) if packaged else None
        if recorded and fallback is not None:
            self.warn(f"{where}: {group} {name}'s recorded class {recorded} cannot be imported; described by the "
                      f"package's {name} ({packaged})")
        elif fallback is None:
            what = f"recorded class {recorded} cannot be imported" if recorded else "no class recorded or packaged"
            self.warn(f"{where}: {group} {name}: {what}; shown by its recorded name")
        return fallback

    def add_selector(self, name: str, recorded: str | None, where: Any = "") -> None:
        if name in self.selectors:
            return
        found = self.resolve("selector", name, recorded, where)
        if found is not None and not isinstance(getattr(found, "label", None), str):
            self.warn(f"{where}: selector {name} ({found.__module__}.{found.__qualname__}) declares no label; "
                      "shown by its name")
        self.selectors[name] = SelectorPart(
            name, label=getattr(found, "label", name) if found is not None else name,
            row_order=getattr(found, "row_order", None), reference=bool(getattr(found, "budget_independent", False)),
            skip_training=bool(getattr(found, "skip_training", False)),
            baseline=bool(getattr(found, "reference_baseline", False)))

    def add_metric_class(self, name: str, recorded: str | None, where: Any = "", quiet: bool = False) -> None:
        found = import_class(recorded) if recorded else None
        if found is None and not quiet:
            found = self.resolve("metric", name, recorded, where)
        if found is None or not hasattr(found, "score_labels"):
            return
        for index, (key, label) in enumerate(found.score_labels().items()):
            order = found.column_order
            self.metrics[key] = MetricPart(key, label, tuple(found.bounds) if found.bounds is not None else None,
                                           (0, order, index, key) if order is not None else (1, key, index, key))

    def add_protocol(self, name: str, block: dict[str, Any], where: Any = "") -> None:
        if name in self.protocols:
            return
        block = merge(packaged_block("evaluation", name), block) if not block.get("_target_") else block
        found = self.resolve("evaluation", name, block.get("_target_"), where)
        if found is None or not hasattr(found, "column"):
            self.protocols[name] = ProtocolPart(name, name)
            return
        order, label = found.column(block)
        self.protocols[name] = ProtocolPart(name, label, order)

    def selector(self, name: str) -> SelectorPart:
        """A selector of the jobs, or one they did not run (a ``--baseline``): the package's of that name."""
        if name not in self.selectors:
            self.add_selector(name, None, "a selector not in the jobs")
        return self.selectors[name]

    def metric(self, key: str) -> MetricPart:
        return self.metrics.get(key) or MetricPart(key, key, None, (1, key, 0, key))

    def protocol(self, name: str) -> ProtocolPart:
        if name not in self.protocols:
            self.add_protocol(name, {}, "an evaluation")
        return self.protocols[name]

    def method_label(self, selector: str, variant: dict[str, Any] | None = None) -> str:
        """``DELIFT`` or, for a variant, ``DELIFT (postprocess=minmax)``."""
        from delift.report.labels import show

        label = self.selector(selector).label
        if variant:
            label += " (" + ", ".join(f"{k.removeprefix('selector.')}={show(v)}" for k, v in variant.items()) + ")"
        return label

    def references(self) -> list[str]:
        """The budget-independent selectors the jobs ran (Initial, Full), in row order."""
        return sorted((n for n, p in self.selectors.items() if p.reference), key=lambda n: self.selectors[n].order)


@cache
def packaged() -> Parts:
    """The package's own parts only (conf/ groups): for entries built without a report's jobs."""
    return Parts.of([])
