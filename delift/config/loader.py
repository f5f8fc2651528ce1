"""From a composed Hydra config to a checked, typed :class:`~delift.config.schema.ExperimentConfig`.

Hydra types the fixed groups while it composes (the top-level schema, :func:`register`). The
polymorphic nodes are typed here, each by the ``Config`` dataclass of the class its ``_target_``
names (selector, evaluation protocols, metrics) or by the judge backend's settings class; then every
value is range-checked. A metric is found by its name: ``metrics.names=[rouge,bge]`` reads
``conf/metric/rouge.yaml`` and ``conf/metric/bge.yaml`` (:func:`_add_metrics`), as an unchosen
evaluation block finds ``conf/evaluation/<name>.yaml``; ``scorer=smollm2_135m`` reads
``conf/model/smollm2_135m.yaml`` (:func:`_add_scorer`). All of it runs before any data or model is loaded, and every
error names its key. Only the entry point (and tests) handle a ``DictConfig``; everything below gets the typed
objects this returns. Every problem found is reported at once, in one :class:`ConfigError` (a step whose input
is broken is skipped, so one mistake is not reported twice).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, fields, is_dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Iterable

from hydra.core.config_store import ConfigStore
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from delift.config.checks import ConfigError, raise_problems
from delift.config.schema import ExperimentConfig
from delift.models.config import ModelConfig

SCHEMA_NAME = "delift_schema"  # conf/config.yaml's first default
_PACKAGED = Path(__file__).resolve().parent.parent / "conf"
CONFIG_DIR = str(_PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parent.parent.parent / "conf")
JUDGE_SETTINGS = "delift.evaluation.judge.config.SETTINGS"  # backend name -> settings dataclass


def register() -> None:
    """Put the top-level schema into Hydra's ConfigStore (idempotent); call before composing."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=ExperimentConfig)


def _schema_of(target: Any, key: str) -> type:
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{key}._target_: missing; it names the class to build (e.g. delift.selection.delift."
                          "DeliftSelector)")
    try:
        cls = get_class(target)
    except Exception as exc:  # ImportError, AttributeError, ValueError from Hydra
        raise ConfigError(f"{key}._target_={target!r}: cannot import it ({exc})") from exc
    schema = getattr(cls, "Config", None)
    if schema is None:
        raise ConfigError(f"{key}._target_={target!r}: the class has no Config dataclass (its config schema)")
    return schema


def _typed(node: Any, schema: type, key: str) -> DictConfig:
    """``node`` merged into ``schema``: unknown keys and wrong types are errors naming ``key``; an unknown key
    gets the closest setting of its dataclass as a did-you-mean."""
    try:
        return OmegaConf.merge(OmegaConf.structured(schema), node)
    except OmegaConfBaseException as exc:
        where = getattr(exc, "full_key", "") or ""
        message = str(getattr(exc, "msg", exc)).splitlines()[0]
        owner = getattr(exc, "object_type", None)
        if isinstance(exc, ConfigKeyError) and where and is_dataclass(owner):
            message = _not_a_setting(where.rsplit(".", 1)[-1], owner)
        raise ConfigError(f"{key}{'.' + where if where else ''}: {message}") from None


def _not_a_setting(name: str, owner: type) -> str:
    """``name`` is no field of the dataclass ``owner``: say so, with the closest field names."""
    settings = [f.name for f in fields(owner) if not f.name.startswith("_")]
    close = difflib.get_close_matches(name, settings, n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; its settings: {', '.join(settings)}"
    return f"not a setting of {owner.__qualname__}{hint}"


def _yaml_target(group: str, option: str, seen: tuple = ()) -> str | None:
    """The ``_target_`` a group option's YAML sets, following ``<option>@_here_`` defaults (lora -> qlora)."""
    path = Path(CONFIG_DIR) / group / f"{option}.yaml"
    if not path.is_file() or option in seen:
        return None
    loaded = OmegaConf.load(path)
    if "_target_" in loaded:
        return str(loaded._target_)
    for entry in loaded.get("defaults", []):
        name = entry if isinstance(entry, str) else None
        if name and name.endswith("@_here_"):
            return _yaml_target(group, name.split("@", 1)[0], (*seen, option))
    return None


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def _unknown(key: str, value: str, known: Iterable[str], what: str) -> ConfigError:
    known = sorted(known)
    close = difflib.get_close_matches(value, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{key}: unknown {what} {value!r}.{hint} Known: {', '.join(known)}")


def check_group_choices(arguments: Iterable[str]) -> None:
    """ConfigError listing every ``group=option`` argument (``data@usecase.target=...``, sweeps ``a,b``, lists
    ``[a,b]``) that names no ``<group>/<option>.yaml`` in any folder Hydra will search (``conf/``, ``--config-dir``,
    ``hydra.searchpath``: :mod:`delift.config.searchpath`), each with a did-you-mean: called before Hydra
    composes, whose own error has none. Flags, plain keys and Hydra's groups (``hydra/...``) are left to Hydra."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from delift.config.searchpath import config_dirs, group_options

    arguments = list(arguments)
    dirs = config_dirs(arguments, CONFIG_DIR)
    parser, problems = OverridesParser.create(), []
    for argument in arguments:
        try:
            override = parser.parse_override(argument)
        except Exception:  # noqa: BLE001 - a flag or its value (--cfg job), or a syntax error Hydra reports
            continue
        group = override.key_or_group
        options = None if override.is_delete() or group.startswith("hydra") else group_options(dirs, group)
        if options is None:
            continue
        values = list(override.sweep_string_iterator()) if override.is_discrete_sweep() else override.value()
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str) and value not in options:
                problems.append(str(_unknown(f"{override.get_key_element()}", value, options, f"{group} option")))
    if problems:
        raise ConfigError("\n".join(problems))


def _type_evaluation(cfg: DictConfig) -> None:
    """Chosen blocks (with ``_target_``) are typed; a block an experiment pre-sets for a protocol that
    is not chosen is checked against that protocol's schema and dropped; anything else is an error."""
    chosen: dict[str, Any] = {}
    for name, block in cfg.evaluation.items():
        key = f"evaluation.{name}"
        if not isinstance(block, DictConfig):
            raise ConfigError(f"{key}={block!r}: expected a protocol block (choose with evaluation=[icl,qlora])")
        if "_target_" in block:
            typed = _typed(block, _schema_of(block._target_, key), key)
            if typed.name != name:
                raise ConfigError(f"{key}.name={typed.name!r}: must equal the block's key {name!r}")
            chosen[name] = typed
            continue
        target = _yaml_target("evaluation", str(name))
        if target is None:
            raise _unknown("evaluation", str(name), _options("evaluation"), "evaluation protocol")
        partial = _typed(block, _schema_of(target, key), key)
        del partial  # valid values for a protocol this run does not evaluate with
    if not chosen:
        raise ConfigError("evaluation: no protocol chosen; set evaluation=qlora, evaluation=icl or "
                          "evaluation=[icl,qlora]")
    cfg.evaluation = chosen


class _Problems(list):
    """The messages of every failed step, each starting with its key; raised together by :meth:`raise_all`."""

    def step(self, run, *args) -> bool:
        """``run(*args)``; a :class:`ConfigError` is recorded (False) instead of raised."""
        try:
            run(*args)
        except ConfigError as exc:
            self.append(str(exc))
            return False
        return True

    def raise_all(self) -> None:
        if len(self) == 1:
            raise ConfigError(self[0])
        if self:
            lines = "\n".join("  " + line.strip() for message in self for line in message.splitlines()
                              if not line.startswith("invalid config value"))  # raise_problems' own header
            raise ConfigError(f"invalid config values ({lines.count(chr(10)) + 1} problems):\n{lines}")


def _add_metrics(cfg: DictConfig, problems: list[str]) -> None:
    """One ``metric_library`` block per ``metrics.names`` entry (and per block the config already has):
    ``conf/metric/<name>.yaml`` with the config's own ``metric_library.<name>`` merged over it (e.g.
    ``+metric_library.bge.device=cuda``). Runs before interpolations are resolved, so a metric YAML's
    ``${metrics.embedder}`` or ``${judge}`` refers to the run's config. An unknown name is recorded in
    ``problems`` and left out."""
    given = cfg.metric_library
    keys = {str(name): f"metrics.names[{index}]" for index, name in reversed(list(enumerate(cfg.metrics.names)))}
    keys.update({str(name): f"metric_library.{name}" for name in given if str(name) not in keys})
    library = {}
    for name, key in keys.items():
        path = Path(CONFIG_DIR) / "metric" / f"{name}.yaml"
        block = given.get(name)
        if not path.is_file() and not (isinstance(block, DictConfig) and "_target_" in block):
            problems.append(str(_unknown(key, name, _options("metric"), "metric")))
            continue
        library[name] = OmegaConf.load(path) if block is None else (
            OmegaConf.merge(OmegaConf.load(path), block) if path.is_file() else block)
    cfg.metric_library = library


def _add_scorer(cfg: DictConfig) -> None:
    """``scorer=<name>`` becomes ``conf/model/<name>.yaml``'s block; a block (``+model@scorer=<name>
    scorer.dtype=float32``, or one an experiment writes) stays. Runs before interpolations are resolved, like
    :func:`_add_metrics`, so a model YAML's interpolations refer to the run's config."""
    scorer = cfg.scorer
    if isinstance(scorer, DictConfig) and not len(scorer):  # the open default node: no scorer
        cfg.scorer = scorer = None
    if scorer is None or isinstance(scorer, DictConfig):
        return
    if not isinstance(scorer, str) or not scorer:
        raise ConfigError(f"scorer={scorer!r}: expected a model config name (conf/model/<name>.yaml), a model "
                          "block or null (score with model)")
    if scorer not in _options("model"):
        raise _unknown("scorer", scorer, _options("model"), "model config")
    cfg.scorer = OmegaConf.load(Path(CONFIG_DIR) / "model" / f"{scorer}.yaml")


def _type_metrics(cfg: DictConfig, problems: _Problems) -> None:
    """Every block is typed by its class's ``Config``; only the chosen ones are kept (and built)."""
    library = {}
    for name, block in cfg.metric_library.items():
        key = f"metric_library.{name}"

        def typed(block=block, key=key, name=name) -> None:
            target = block.get("_target_") if isinstance(block, DictConfig) else None
            library[name] = _typed(block, _schema_of(target, key), key)
        problems.step(typed)
    if len(set(cfg.metrics.names)) != len(cfg.metrics.names):
        problems.append(f"metrics.names={list(cfg.metrics.names)}: a metric is named twice")
    # only what runs gets built (an unknown or broken one is already a problem)
    cfg.metric_library = {name: library[name] for name in cfg.metrics.names if name in library}


def _type_judge(cfg: DictConfig) -> None:
    module, attribute = JUDGE_SETTINGS.rsplit(".", 1)
    settings = getattr(import_module(module), attribute)
    backend = cfg.judge.get("backend") if isinstance(cfg.judge, DictConfig) else None
    if backend not in settings:
        raise _unknown("judge.backend", str(backend), settings, "judge backend")
    cfg.judge = _typed(cfg.judge, settings[backend], "judge")


def _undeclared(node: Any, key: str = "") -> list[str]:
    """Keys of typed nodes that their schema does not declare (added with ``+key=...``)."""
    if not isinstance(node, DictConfig):
        return []
    found = []
    schema = OmegaConf.get_type(node)
    declared = set(schema.__dataclass_fields__) if is_dataclass(schema) else None
    for name in node.keys():
        full = f"{key}.{name}" if key else str(name)
        if declared is not None and name not in declared:
            found.append(full)
        else:
            found.extend(_undeclared(node._get_node(name), full))
    return found


def load_config(cfg: DictConfig) -> ExperimentConfig:
    """Type, resolve and range-check a composed config; raises :class:`ConfigError` naming the key."""
    cfg = cfg.copy()
    if OmegaConf.get_type(cfg) is not ExperimentConfig:
        raise ConfigError(f"the config does not extend the {SCHEMA_NAME!r} schema: conf/config.yaml's defaults "
                          f"must start with {SCHEMA_NAME} (registered by importing delift.config)")
    problems = _Problems()
    try:
        _add_metrics(cfg, problems)
        if not problems.step(_add_scorer, cfg):
            cfg.scorer = None  # its error is recorded; nothing of it is left to type or check
        judge_typed = problems.step(_type_judge, cfg)  # before resolving: the judge metric's ${judge} gets every setting
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        problems.append(f"{getattr(exc, 'full_key', '')}: {exc}")
        problems.raise_all()  # an unresolved interpolation leaves nothing sound to check further
    extra = _undeclared(cfg)
    if extra:
        problems.append(f"unknown config key{'s' if len(extra) > 1 else ''} {', '.join(extra)} (added with "
                        "'+'?): no part of delift reads it; check the spelling against conf/")
        for key in extra:  # dropped, so the rest can still be typed and checked
            parent, _, name = key.rpartition(".")
            node = OmegaConf.select(cfg, parent) if parent else cfg
            with open_dict(node):
                node.pop(name)
    for key, reader in (("target", "task_specific"), ("existing", "continual")):
        if cfg.usecase.name != reader:
            cfg.usecase[key] = None  # a nested data config this use case never reads
    typed_parts = [problems.step(_type_selector, cfg), problems.step(_type_scorer, cfg),
                   problems.step(_type_evaluation, cfg), judge_typed]
    _type_metrics(cfg, problems)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        problems.append(f"missing config values: {', '.join(missing)}")
    if missing:
        problems.raise_all()  # a missing value does not convert to the typed objects
    typed = OmegaConf.to_object(cfg)
    for spec in (typed.model, typed.scorer):
        if isinstance(spec, ModelConfig) and spec.cache_dir is None:  # converted models are cached with the rest
            spec.cache_dir = typed.paths.cache_dir
    problems.step(raise_problems, typed)  # ranges and choices of every part that could be typed
    if all(typed_parts) and "judge" in typed.metrics.names:  # the backend's own checks (URLs, model sources...)
        try:
            import_module(JUDGE_SETTINGS.rsplit(".", 1)[0]).judge_settings(asdict(typed.judge))
        except ValueError as exc:
            problems.append(str(exc))
    problems.raise_all()
    return typed


def _type_selector(cfg: DictConfig) -> None:
    cfg.selector = _typed(cfg.selector, _schema_of(cfg.selector.get("_target_"), "selector"), "selector")


def _type_scorer(cfg: DictConfig) -> None:
    if cfg.scorer is not None:
        cfg.scorer = _typed(cfg.scorer, ModelConfig, "scorer")


def compose_config(overrides: Iterable[str] = (), config_name: str = "config") -> ExperimentConfig:
    """Compose ``conf/`` with ``overrides`` (as on the command line) and load it: for tests and notebooks."""
    from hydra import compose, initialize_config_dir

    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        composed = compose(config_name=config_name, overrides=list(overrides))
    return load_config(composed)


register()  # importing the loader registers the schema: Hydra's own compose API works after it alone
