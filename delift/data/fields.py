"""Reading one field of a raw row, with errors that name the row's location and the field."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from delift.data.errors import DataFormatError
from delift.data.readers import row_index

HUB_CONFIG_FIELD = "hub_config"
"""Added by the loader to rows of a hub source read with a LIST of configs (e.g. P3 templates)."""


def required_field(row: dict[str, Any], location: str, name: str) -> Any:
    """The field's value, of any type; a missing field is an error naming the row's location."""
    if name not in row:
        raise DataFormatError(location, name, f"missing required field (row has {sorted(row)})")
    return row[name]


def text_field(row: dict[str, Any], location: str, name: str, *, required: bool = False) -> str:
    """A string field; ``required`` also rejects empty or whitespace-only text."""
    value = required_field(row, location, name)
    if not isinstance(value, str):
        raise DataFormatError(location, name, f"expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise DataFormatError(location, name, "must not be empty")
    return value


def optional_text(row: dict[str, Any], location: str, name: str) -> str | None:
    """A string field that may be absent or null (then ``None``)."""
    if row.get(name) is None:
        return None
    return text_field(row, location, name)


def row_id(row: dict[str, Any], location: str, dataset: str, id_field: str | None) -> str:
    """The dataset's own id when it has one, else ``f"{dataset}-{row}"``."""
    if id_field is None:
        return f"{dataset}-{row_index(location)}"
    value = required_field(row, location, id_field)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value) == "":
        raise DataFormatError(location, id_field, f"expected a non-empty id, got {value!r}")
    return str(value)


FORMATTERS: dict[str, Callable[[dict[str, Any], str], Any]] = {}  # data.format -> (row, location) -> Example


@dataclass(frozen=True)
class GeneratedFormat:
    """A ``data.format`` generated in code, not read from rows (``synthetic``, ``structured``)."""

    name: str
    load: Callable[..., tuple[list, dict[str, Any]]]  # (data config, max_rows, shared datasets folder) -> (examples, record)
    needs: str | None  # the problem when its settings block data.<name> is null (None: it has none)
    caveat: str  # the label run.json and the report carry beside results on it


GENERATED: dict[str, GeneratedFormat] = {}  # data.format -> its generator (registered by its own module)


def register_generated(name: str, needs: str | None, caveat: str) -> Callable:
    """Decorator: the generator ``(data config, max_rows, shared datasets folder) -> (examples, record)`` of
    ``data.format=name``, with the problem a null ``data.<name>`` block gets and its results' caveat."""
    def register(function: Callable) -> Callable:
        if name in GENERATED or name in FORMATTERS:
            raise ValueError(f"data.format {name!r} is registered twice ({function.__module__}.{function.__name__})")
        GENERATED[name] = GeneratedFormat(name, function, needs, caveat)
        return function
    return register


def generated_format(name: Any) -> GeneratedFormat | None:
    """The generator of ``data.format=name``, or None when the format is read from rows."""
    return GENERATED.get(name) if isinstance(name, str) else None


def register_format(name: str) -> Callable:
    """Decorator: the row formatter ``(row, location) -> Example`` of ``data.format=name``. delift's own live in
    :mod:`delift.data.formatters` (and ``formatters_qa``); another package's module registers under its module
    path (``@register_format(__name__)``) and is chosen by ``data.format=<that path>`` (imported on first use)."""
    def register(function: Callable) -> Callable:
        if name in FORMATTERS and FORMATTERS[name] is not function:
            raise ValueError(f"data.format {name!r} is registered twice ({function.__module__}.{function.__name__})")
        FORMATTERS[name] = function
        return function
    return register
