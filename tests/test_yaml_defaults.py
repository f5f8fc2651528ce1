"""Each setting declared once: a ``conf/<group>/*.yaml`` value never restates, nor contradicts, its schema's default.

Every group YAML is merged into one dataclass (``delift.config.loader`` types it): the fixed groups into their
schema (``data`` -> ``DataConfig``, ...), ``selector``/``evaluation``/``metric`` into the ``Config`` of the class
their ``_target_`` names, ``judge`` into its backend's settings. A value equal to the default is a second
declaration of it (it goes stale when the code changes); nested dataclass fields are compared field by field.

A value that differs is the YAML's reason to exist, except where the YAML is the only one its schema has (one
selector's YAML, the kernel's ``default.yaml``): then it and the dataclass are two declarations of the same
default, disagreeing (the ICL generation batch size was one).

``selector``, ``evaluation`` and ``judge`` are no exception: they are open nodes while Hydra composes
(``delift.config.schema.open_node``), so ``selector.batch_size=4`` works for a key the chosen YAML does not list, and
the loader's typed merge rejects a key the part's ``Config`` does not declare. A YAML built on another one of its group
(``defaults: [qlora@_here_]``) is compared with that one merged into the schema: it states what differs from it.
Interpolations (``${...}``) are links to the run's config, not declarations; ``_target_`` and the judge's
``backend`` choose the schema.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from delift.config.loader import CONFIG_DIR
from delift.config.schema import LoggerConfig, MetricsConfig, UsecaseConfig
from delift.data.config import DataConfig
from delift.evaluation.judge.config import SETTINGS
from delift.kernel.config import KernelConfig
from delift.models.config import ModelConfig

FIXED = {"data": DataConfig, "model": ModelConfig, "kernel": KernelConfig, "usecase": UsecaseConfig,
         "metrics": MetricsConfig, "logger": LoggerConfig}
BY_TARGET = ("selector", "evaluation", "metric")
NOT_DECLARATIONS = {"_target_", "defaults"}
CHOOSERS = {("judge", "backend")}  # the option's identity: the loader reads it to choose the schema
OTHER_GROUPS = {"experiment", "hydra", "plan", "survey"}  # not merged into one schema (see below)


def _base(path: Path) -> Path | None:
    """The group YAML that ``path`` builds on (``defaults: [<option>@_here_, _self_]``), if any."""
    for entry in OmegaConf.load(path).get("defaults", []):
        if isinstance(entry, str) and entry.endswith("@_here_"):
            return path.parent / f"{entry.split('@', 1)[0]}.yaml"
    return None


def schema_of(group: str, path: Path) -> type:
    """The dataclass ``conf/<group>/<path>`` is merged into."""
    if group in FIXED:
        return FIXED[group]
    node, base = OmegaConf.load(path), _base(path)
    if group == "judge":
        return SETTINGS[node.backend]
    if group in BY_TARGET:
        target = node.get("_target_") or (OmegaConf.load(base).get("_target_") if base else None)
        assert target, f"{path}: no _target_ (nor a base YAML with one)"
        return get_class(target).Config
    raise AssertionError(f"conf/{group}: no schema known for this group; add it to FIXED or BY_TARGET")


def _default(schema: type, base: Path | None) -> Any:
    """The values ``path`` is merged over: the schema's defaults, or its base YAML merged into them."""
    if base is None:
        return schema()
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.load(base)))


def declarations(node: DictConfig, default: Any, key: str = "", skip: tuple = ()) -> list[tuple[str, Any, Any]]:
    """``(key, yaml value, default)`` for every value ``node`` sets, nested dataclass fields walked into
    (``skip``: top-level keys left out)."""
    found = []
    for name in node.keys():
        if name in NOT_DECLARATIONS or (key == "" and name in skip):
            continue
        full = f"{key}{name}"
        child = node._get_node(name)
        fallback = getattr(default, name, dataclasses.MISSING)
        assert fallback is not dataclasses.MISSING, f"{full}: not a field of {type(default).__name__}"
        if isinstance(child, DictConfig) and dataclasses.is_dataclass(fallback) and not child._is_none():
            found.extend(declarations(child, fallback, f"{full}."))
            continue
        if isinstance(child, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(child) if not child._is_none() else None
        else:
            value = child._value()
        if isinstance(value, str) and "${" in value:
            continue  # an interpolation: a link to the run's config
        found.append((full, value, dataclasses.asdict(fallback) if dataclasses.is_dataclass(fallback) else fallback))
    return found


def check_yaml(path: Path, schema: type, only_one: bool, base: Path | None = None, skip: tuple = ()) -> list[str]:
    """Every problem of one YAML: values restating the default; when ``only_one`` (no other YAML has this schema
    and this one builds on none), values contradicting it."""
    node = OmegaConf.load(path)
    problems = []
    for key, value, default in declarations(node, _default(schema, base), skip=skip):
        if value == default:
            problems.append(f"{path.name}: {key}: {value!r} restates the default of {schema.__qualname__}")
        elif only_one:
            problems.append(f"{path.name}: {key}: {value!r} conflicts with {schema.__qualname__}'s default "
                            f"{default!r}: declare it once (change the dataclass or drop the value)")
    return problems


def group_yamls() -> list[tuple[str, Path]]:
    conf = Path(CONFIG_DIR)
    return [(folder.name, path) for folder in sorted(conf.iterdir()) if folder.is_dir()
            and folder.name not in OTHER_GROUPS for path in sorted(folder.glob("*.yaml"))]


def test_every_group_yaml_sets_only_what_differs() -> None:
    yamls = group_yamls()
    assert {group for group, _ in yamls} >= set(FIXED) | set(BY_TARGET) | {"judge"}
    schemas = {path: schema_of(group, path) for group, path in yamls}
    uses = Counter(schemas.values())
    problems = []
    for group, path in yamls:
        base = _base(path)
        only_one = uses[schemas[path]] == 1 and base is None
        skip = tuple(name for chooser_group, name in CHOOSERS if chooser_group == group)
        problems += [f"conf/{group}/{line}" for line in check_yaml(path, schemas[path], only_one, base, skip=skip)]
    assert not problems, "\n".join(problems)


def test_the_check_walks_nested_dataclasses_and_derived_yamls() -> None:
    """The walk reaches nested blocks (qlora's train and generation, the kernel's learned block)."""
    conf = Path(CONFIG_DIR)
    qlora = get_class("delift.protocols.finetune.FinetuneProtocol").Config
    node = OmegaConf.create({"train": {"r": 16, "lr": 1.0e-3}, "generation": {"max_new_tokens": 3}})
    keys = [key for key, _, _ in declarations(node, qlora())]
    assert keys == ["train.r", "train.lr", "generation.max_new_tokens"]
    learned = OmegaConf.create({"learned": {"hidden": 100}})
    assert declarations(learned, KernelConfig()) == [("learned.hidden", 100, 100)]
    # lora.yaml is compared with qlora.yaml merged into the schema: its method differs from qlora's
    lora = conf / "evaluation" / "lora.yaml"
    assert _base(lora) == conf / "evaluation" / "qlora.yaml"
    assert check_yaml(lora, qlora, only_one=False, base=_base(lora)) == []


@dataclasses.dataclass
class _Inner:
    size: int = 3
    name: str = "x"


@dataclasses.dataclass
class _Made:
    _target_: str = "made.Made"
    rate: float = 0.5
    tags: list = dataclasses.field(default_factory=list)
    inner: _Inner = dataclasses.field(default_factory=_Inner)


def test_a_hand_made_yaml_restating_or_contradicting_a_default_is_caught(tmp_path) -> None:
    path = tmp_path / "made.yaml"
    path.write_text("_target_: made.Made\nrate: 0.25\ntags: []\ninner:\n  size: 3\n  name: y\nlink: ${x}\n")
    with pytest.raises(AssertionError, match="link: not a field of _Made"):
        check_yaml(path, _Made, only_one=False)
    path.write_text("_target_: made.Made\nrate: 0.25\ntags: []\ninner:\n  size: 3\n  name: y\n")
    assert check_yaml(path, _Made, only_one=False) == [
        "made.yaml: tags: [] restates the default of _Made",
        "made.yaml: inner.size: 3 restates the default of _Made"]
    conflicts = [line for line in check_yaml(path, _Made, only_one=True) if "conflicts" in line]
    assert conflicts == ["made.yaml: rate: 0.25 conflicts with _Made's default 0.5: declare it once (change the "
                         "dataclass or drop the value)",
                         "made.yaml: inner.name: 'y' conflicts with _Made's default 'x': declare it once (change "
                         "the dataclass or drop the value)"]
    path.write_text("_target_: made.Made\nrate: ${oc.env:RATE,0.1}\n")  # an interpolation declares nothing
    assert check_yaml(path, _Made, only_one=True) == []
