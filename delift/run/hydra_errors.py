"""Hydra's own errors on a ``delift`` command line, said as delift says a config error: the key, what is wrong
and the fix, in one or a few lines (exit status 2, no traceback; ``HYDRA_FULL_ERROR=1`` shows Hydra's)."""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from typing import Any

# Hydra plugins a launcher or sweeper preset needs, by the config Hydra could not load (hydra/<kind>/<name>)
PLUGINS = {"joblib": "hydra-joblib-launcher", "ray": "hydra-ray-launcher", "ray_aws": "hydra-ray-launcher",
           "submitit_local": "hydra-submitit-launcher", "submitit_slurm": "hydra-submitit-launcher",
           "rq": "hydra-rq-launcher", "optuna": "hydra-optuna-sweeper", "ax": "hydra-ax-sweeper",
           "nevergrad": "hydra-nevergrad-sweeper"}
_TYPES = {"Float": "a number", "Integer": "a whole number", "Boolean": "true or false"}


def _schema_node(path: list[str]) -> Any:
    """The dataclass (or field type) at ``path`` below the top-level schema; None where the schema is open."""
    from delift.config.schema import ExperimentConfig

    node: Any = ExperimentConfig
    for part in path:
        if not dataclasses.is_dataclass(node):
            return None
        hints = typing.get_type_hints(node)
        if part not in hints:
            return None
        node = hints[part]
        args = [a for a in typing.get_args(node) if a is not type(None)]
        if typing.get_origin(node) is typing.Union and len(args) == 1:  # Optional[X]
            node = args[0]
    return node


def _schema_keys(path: list[str]) -> list[str]:
    node = _schema_node(path)
    return [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []


def _default(path: list[str]) -> str | None:
    parent = _schema_node(path[:-1])
    if not dataclasses.is_dataclass(parent):
        return None
    for f in dataclasses.fields(parent):
        if f.name == path[-1] and f.default is not dataclasses.MISSING:
            return str(f.default).lower() if isinstance(f.default, bool) else str(f.default)
    return None


def _unknown_key(key: str, arguments: list[str]) -> str:
    parts = key.split(".")
    if parts[0] == "scorer" and len(parts) > 1:
        chosen = [a.split("=", 1)[1] for a in arguments if a.startswith("scorer=")]
        name = chosen[-1] if chosen else "<name>"
        given = [a for a in arguments if a.lstrip("+").startswith(f"{key}=")]
        return (f"{key}: scorer={name} names a model config, whose keys cannot be set on the command line; choose it "
                f"as a block to set them: +model@scorer={name} {given[-1] if given else key + '=...'}")
    known = _schema_keys(parts[:-1])
    close = difflib.get_close_matches(parts[-1], known, n=1)
    if close:
        return f"{key}: unknown config key. Did you mean {'.'.join([*parts[:-1], close[0]])}?"
    where = ".".join(parts[:-1])
    listed = f" Known keys of {where}: {', '.join(known)}" if known and where else ""
    return f"{key}: unknown config key; check the spelling against conf/ (docs/configuration.md).{listed}"


def _bad_value(override: str, cause: str) -> str:
    key, _, value = override.partition("=")
    key = key.lstrip("+~")
    wanted = re.search(r"could not be converted to (\w+)", cause)
    expected = _TYPES.get(wanted.group(1), wanted.group(1)) if wanted else None
    default = _default(key.split("."))
    what = f"expected {expected}" if expected else cause
    return f"{key}={value}: {what}{f' (default {default})' if default is not None else ''}"


def _missing_config(message: str, arguments: list[str]) -> str | None:
    loading = re.search(r"Could not load '(hydra/(?:launcher|sweeper)/([\w-]+))'", message)
    if loading:
        kind = loading.group(1).split("/")[1]
        chosen = [a for a in arguments if a.lstrip("+").startswith(f"hydra/{kind}=")]
        package = PLUGINS.get(loading.group(2))
        fix = f"pip install {package}" if package else f"install the Hydra plugin that provides {loading.group(1)}"
        return (f"{chosen[-1] if chosen else loading.group(1)}: the Hydra {kind} plugin it needs is not installed; "
                f"{fix}")
    finding = re.search(r"Could not find '([^']+)/([^'/]+)'", message)
    if finding:
        group, option = finding.groups()
        listed = message.split("Available options", 1)[-1].split("Config search path", 1)[0]
        options = re.findall(r"^\t(\S+)", listed, re.M) if "Available options" in message else []
        close = difflib.get_close_matches(option, options, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        known = f" Known: {', '.join(options)}" if options else ""
        return f"{group}: unknown {group} option {option!r}.{hint}{known}"
    return None


def _parses(argument: str) -> bool:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        OverridesParser.create().parse_override(argument)
    except Exception:  # noqa: BLE001 - any parse error
        return False
    return True


def translate(error: BaseException, arguments: list[str]) -> str | None:
    """The one-paragraph message for a Hydra composition or override error; None for any other error."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    message = str(error)
    cause = str(getattr(error.__cause__, "msg", error.__cause__ or "")).splitlines()
    cause_line = cause[0] if cause else ""
    if isinstance(error, MissingConfigException):
        return _missing_config(message, arguments) or message.splitlines()[0]
    if isinstance(error, OverrideParseException):
        bad = next((a for a in arguments if "=" in a and not a.startswith("-") and not _parses(a)), None)
        detail = message.splitlines()[0]
        return (f"cannot parse the override{f' {bad!r}' if bad else ''}: {detail.strip()} (the override grammar: "
                "https://hydra.cc/docs/advanced/override_grammar/basic/)")
    if isinstance(error, ConfigCompositionException):
        missing = re.match(r"Could not override '([^']+)'", message)
        if missing and re.search(r"not in|Key '", cause_line):
            return _unknown_key(missing.group(1), arguments)
        merging = re.match(r"Error merging override (\S+)", message)
        if merging:
            return _bad_value(merging.group(1), cause_line)
        if re.search(r"Could not (find|load)", message):
            return _missing_config(message, arguments)
        return " ".join(line.strip() for line in [*message.splitlines(), cause_line] if line.strip())
    return None
