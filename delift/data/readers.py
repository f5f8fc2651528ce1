"""Raw rows from local files or the HF hub through one interface, each tagged with its location.

Every row is yielded as ``(location, row)``. ``location`` is a :class:`RowLocation`: a plain
``str`` for messages (``path/to/file.jsonl:17``, ``data.parquet#16``,
``tatsu-lab/alpaca[train]#16``, ``cais/mmlu[all:test]#16``) that also carries ``.row``, the
0-based ordinal of the row among the rows read. Formatters build fallback ids from ``.row`` so
the same data gives the same ids whatever the file format (JSONL line numbers skip blank lines,
CSV records can span lines).
"""

from __future__ import annotations

import csv
import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Union

from delift.data.records import ROW, DataFileError, DataFileMissing, DataFormatError, RowLocation

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
# What a binary file starts with, for text files that are not text: (magic bytes, what it is, what to do).
MAGIC = ((b"PAR1", "a Parquet file", "rename it to .parquet"),
         (b"\x1f\x8b", "gzip-compressed", "decompress it (gunzip) first"),
         (b"PK\x03\x04", "a zip archive", "unpack it first"))


@dataclass(frozen=True)
class HubSource:
    """A dataset on the HF hub, loaded with ``datasets.load_dataset``."""

    hub_id: str
    split: str = "train"
    config: str | None = None
    revision: str | None = None

    def describe(self) -> str:
        split = f"{self.config}:{self.split}" if self.config else self.split
        return f"{self.hub_id}[{split}]"


Source = Union[str, os.PathLike, HubSource]


def iter_rows(
    source: Source, max_rows: int | None = None, split: str | None = None
) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """Yield ``(location, row)`` for the first ``max_rows`` rows (all when ``None``) of ``source``.

    ``source`` is a :class:`HubSource` or a local path: ``.jsonl``, ``.json`` (array or JSONL
    content), ``.csv``, ``.parquet``, or a folder written by ``Dataset.save_to_disk`` (``split``
    picks the split of a saved ``DatasetDict``).
    """
    if max_rows is not None and max_rows < 0:
        raise ValueError(f"max_rows must be >= 0 or None, got {max_rows}")
    if max_rows == 0:
        return
    if isinstance(source, HubSource):
        rows = _iter_hub(source)
    else:
        rows = _iter_local(Path(source), split)
    for count, item in enumerate(rows, start=1):
        yield item
        if max_rows is not None and count >= max_rows:
            return


def check_exists(path: Path, what: str = "data file or folder") -> None:
    """DataFileMissing (a FileNotFoundError) naming ``path`` and why it cannot be opened: absent, a dangling
    symlink or a symlink loop."""
    if path.exists():
        return
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise DataFileMissing(path, "is a symlink loop (it points back to itself through "
                                            f"{os.readlink(path)!r}); point it at the real file", what) from None
        raise DataFileMissing(path, f"is a dangling symlink to {os.readlink(path)!r} (no such file)", what)
    raise DataFileMissing(path, "does not exist", what)


def _iter_local(path: Path, split: str | None) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    check_exists(path)
    if path.is_dir():
        return _counted(path, _iter_saved_dataset(path, split))
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".csv"):
        _check_text(path, suffix)
    if suffix == ".jsonl":
        return _counted(path, _utf8_checked(path, _iter_jsonl(path)))
    if suffix == ".json":
        return _counted(path, _utf8_checked(path, _iter_json(path)))
    if suffix == ".csv":
        return _counted(path, _utf8_checked(path, _iter_csv(path)), "a header row but no data rows")
    if suffix == ".parquet":
        return _counted(path, _iter_parquet(path))
    raise ValueError(
        f"unsupported data file type {suffix!r} for {path}; "
        f"supported: {', '.join(LOCAL_SUFFIXES)} or a save_to_disk folder"
    )


def _check_text(path: Path, suffix: str) -> None:
    """DataFileError for a text-format file that is empty or is really a binary format (by its magic bytes)."""
    with path.open("rb") as handle:
        head = handle.read(4096)
    for magic, what, fix in MAGIC:
        if head.startswith(magic):
            raise DataFileError(path, f"is {what} (it starts with {magic!r}), not {suffix[1:].upper()} text: {fix}")
    if not head.strip():
        size = path.stat().st_size
        raise DataFileError(path, "is empty (0 bytes)" if size == 0 else f"holds only whitespace ({size} bytes)")


def _counted(path: Path, rows: Iterator[tuple[RowLocation, dict[str, Any]]],
             none: str = "no rows") -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """``rows``; a DataFileError naming ``path`` when it yields none (an empty array, a header-only CSV)."""
    count = 0
    for item in rows:
        count += 1
        yield item
    if count == 0:
        raise DataFileError(path, f"holds {none}")


def _utf8_checked(
    path: Path, rows: Iterator[tuple[RowLocation, dict[str, Any]]]
) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """``rows`` of a text file, with a decoding error turned into one naming line and byte."""
    try:
        yield from rows
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from None


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DataFormatError:
    """Where the first invalid UTF-8 byte of ``path`` is (the text decoder only knows its chunk)."""
    offset = 0
    with path.open("rb") as handle:
        for line_no, line in enumerate(handle, start=1):  # b"\n" never occurs inside a UTF-8 sequence
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                return DataFormatError(
                    f"{path}:{line_no}", ROW,
                    f"not valid UTF-8 ({bad.reason}): byte 0x{line[bad.start]:02x} at byte offset "
                    f"{offset + bad.start} of the file (byte {bad.start + 1} of line {line_no}); re-encode "
                    "the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT` if it is Latin-1",
                )
            offset += len(line)
    return DataFormatError(str(path), ROW, f"not valid UTF-8 ({exc.reason}); re-encode the file as UTF-8")


def _check_object(value: Any, location: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataFormatError(location, ROW, f"expected a JSON object, got {type(value).__name__}")
    return value


def _iter_jsonl(path: Path) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """One JSON object per line; blank lines are skipped."""
    row = 0
    with path.open(encoding="utf-8-sig") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = RowLocation(f"{path}:{line_no}", row)
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(
                    location, ROW, f"invalid JSON: {exc.msg} (column {exc.colno}){_array_hint(path, row, line)}"
                ) from None
            if isinstance(value, list):
                raise DataFormatError(location, ROW, f"expected a JSON object, got list{_array_hint(path, row, line)}")
            yield location, _check_object(value, location)
            row += 1


def _array_hint(path: Path, row: int, line: str) -> str:
    """A rename hint when the first line of a ``.jsonl`` file opens a JSON array (JSON saved under a JSONL name)."""
    if row == 0 and path.suffix.lower() == ".jsonl" and line.lstrip().startswith("["):
        return "; the file looks like one JSON array, not JSON lines: rename it to .json"
    return ""


def _iter_json(path: Path) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """A JSON array of objects, or JSONL content saved with a ``.json`` name."""
    with path.open(encoding="utf-8-sig") as handle:
        head = handle.read(4096).lstrip()
    if not head.startswith("["):
        yield from _iter_jsonl(path)
        return
    text = path.read_text(encoding="utf-8-sig")
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        location = RowLocation(f"{path}:{exc.lineno}", 0)
        raise DataFormatError(
            location, ROW, f"invalid JSON: {exc.msg} (column {exc.colno})"
        ) from None
    for index, value in enumerate(values):
        location = RowLocation(f"{path}#{index}", index)
        yield location, _check_object(value, location)


def _iter_csv(path: Path) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """``csv.DictReader`` rows; the line is where the record ends (records may span lines)."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        for index, record in enumerate(reader):
            location = RowLocation(f"{path}:{reader.line_num}", index)
            if None in record:
                raise DataFormatError(
                    location, ROW, f"{len(record[None])} more values than header columns"
                )
            # Short records fill missing columns with None: drop them so they read as missing.
            yield location, {key: value for key, value in record.items() if value is not None}


def _iter_parquet(path: Path) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """Streams record batches so a huge file is never fully materialised."""
    import pyarrow.parquet as pq

    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            yield RowLocation(f"{path}#{index}", index), record
            index += 1


def _iter_saved_dataset(
    path: Path, split: str | None
) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """A folder from ``Dataset.save_to_disk`` or ``DatasetDict.save_to_disk``."""
    import datasets

    loaded = datasets.load_from_disk(str(path))
    prefix = str(path)
    if isinstance(loaded, datasets.DatasetDict):
        if split is None or split not in loaded:
            raise ValueError(
                f"{path} holds splits {sorted(loaded)}; pick one with split= (got {split!r})"
            )
        loaded = loaded[split]
        prefix = f"{path}[{split}]"
    for index, record in enumerate(loaded):
        yield RowLocation(f"{prefix}#{index}", index), dict(record)


def _iter_hub(source: HubSource) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """The real GPU-user path: ``datasets.load_dataset`` (cached by ``datasets`` itself)."""
    import datasets

    dataset = datasets.load_dataset(
        source.hub_id, source.config, split=source.split, revision=source.revision
    )
    prefix = source.describe()
    for index, record in enumerate(dataset):
        yield RowLocation(f"{prefix}#{index}", index), dict(record)
