"""The bottom of the data layer: the one record every dataset is mapped to (and its fingerprint), the errors
bad data raises, the row location every message names, reading one field of a raw row, and the ``data.format``
registry (row formatters and generated formats, each registered by its own module)."""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable


@dataclass(frozen=True)
class Example:
    """One instruction example. ``output`` is the reference response."""

    id: str
    instruction: str
    input: str
    output: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(examples: Iterable[Example]) -> str:
    """sha256 over the ids and texts of ``examples`` in order (metadata excluded)."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.id, ex.instruction, ex.input, ex.output]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


ROW = "<row>"
"""Pseudo field name used when the whole row is at fault (unparsable JSON, not an object)."""


class DataFormatError(ValueError):
    """A row that cannot be read or mapped to an ``Example``.

    The message always names the location (file and 1-based line for JSONL/CSV, ``#row`` index
    for JSON arrays, Parquet and hub datasets) and the field, e.g.
    ``data/alpaca.jsonl:17: field 'output': expected a string, got int``.
    """

    def __init__(self, location: str, field: str, problem: str) -> None:
        self.location = str(location)
        self.field = field
        self.problem = problem
        super().__init__(f"{self.location}: field '{field}': {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        """Keep the error picklable across worker processes despite the custom ``__init__``."""
        return (type(self), (self.location, self.field, self.problem))


class DataFileError(ValueError):
    """A data file that cannot be read as a whole, named with the real cause: empty, rows without data, another
    format than its suffix says (Parquet, gzip, a JSON array in a ``.jsonl``), a symlink loop, every row bad."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.path, self.problem))


class DataFileMissing(DataFileError, FileNotFoundError):
    """A data path that cannot be opened: absent, a dangling symlink or a symlink loop (``what`` names the setting,
    e.g. ``data.local_path``)."""

    def __init__(self, path: str, problem: str, what: str = "data file or folder") -> None:
        super().__init__(path, problem)
        self.what = what
        self.args = (f"{what} {self.path} {problem}",)

    def __str__(self) -> str:
        return self.args[0]

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.path, self.problem, self.what))


class RowLocation(str):
    """A location string that also remembers the row's 0-based ordinal in its source."""

    row: int

    def __new__(cls, text: str, row: int) -> RowLocation:
        obj = super().__new__(cls, text)
        obj.row = row
        return obj

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return (type(self), (str(self), self.row))


def row_index(location: str) -> int:
    """0-based row ordinal of ``location``: ``.row`` if present, else ``#N`` -> N, ``:N`` -> N-1."""
    row = getattr(location, "row", None)
    if isinstance(row, int):
        return row
    match = re.search(r"([#:])(\d+)$", str(location))
    if match is None:
        raise ValueError(f"cannot derive a row index from location {location!r}")
    number = int(match.group(2))
    return number if match.group(1) == "#" else number - 1


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


Formatter = Callable[[dict[str, Any], str], Example]


def get_formatter(name: str) -> Formatter:
    """The formatter called ``name``; a typo gets a did-you-mean instead of a bare KeyError."""
    if name in FORMATTERS:
        return FORMATTERS[name]
    if "." in str(name) and name not in GENERATED:  # another package's formatter module, by its path
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"data.format={name!r}: not a delift format, and the module cannot be imported "
                             f"({exc})") from None
        if name not in FORMATTERS:
            raise ValueError(f"data.format={name!r}: module {name} registers no formatter under its name "
                             "(@register_format(__name__))")
        return FORMATTERS[name]
    if name in GENERATED:
        raise ValueError(
            f"format '{name}' is generated in code, not read from rows; "
            f"use delift.data.{name}.generate_{name} or load_examples"
        )
    known = sorted([*FORMATTERS, *GENERATED])
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ";"
    raise ValueError(f"unknown format '{name}'{hint} known: {', '.join(known)}")
