"""The one error raised for bad data rows, so a user can jump straight to the offending record."""

from __future__ import annotations

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
