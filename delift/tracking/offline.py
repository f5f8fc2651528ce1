"""Read a W&B offline run (``<output_dir>/wandb/offline-run-*/run-*.wandb``) without syncing it.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
LevelDB-log records in 32 KiB blocks (7-byte record header: CRC-32, length, type FULL / FIRST /
MIDDLE / LAST; a block tail shorter than a header is zero padding), each a serialised
``wandb.proto.wandb_internal_pb2.Record``. :func:`read_offline_run` gathers what a researcher would
check before ``wandb sync``: name, group, job type, tags, config, history rows, summary (and each update
of it), metric definitions, artifacts and the exit code. A file cut short (a killed run) reads up to its
last whole record. Used by the tests; handy to inspect runs on a cluster.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HEADER = struct.Struct("<4sHB")
_RECORD = struct.Struct("<IHB")
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


@dataclass
class OfflineRun:
    path: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per run.log call
    summary: dict[str, Any] = field(default_factory=dict)
    summary_updates: list[dict[str, Any]] = field(default_factory=list)  # each summary record, in logging order
    metrics: list[dict[str, Any]] = field(default_factory=list)  # define_metric calls
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # name, type, metadata
    exit_code: int | None = None  # None: the run never finished

    def series(self, key: str) -> list[Any]:
        """Values of ``key`` over the history, in logging order."""
        return [row[key] for row in self.history if key in row]


def iter_records(path: str | Path) -> Iterator[bytes]:
    """The serialised records of a ``.wandb`` file, CRC-checked."""
    raw = Path(path).read_bytes()
    ident, magic, version = _HEADER.unpack_from(raw, 0)
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise ValueError(f"{path}: not a W&B transaction log (header {raw[:7]!r})")
    offset, pending = _HEADER.size, b""
    while offset < len(raw):
        left = _BLOCK - offset % _BLOCK
        if left < _RECORD.size:
            offset += left  # zero padding at the end of a block
            continue
        if offset + _RECORD.size > len(raw):
            break
        checksum, length, kind = _RECORD.unpack_from(raw, offset)
        if kind == 0 and length == 0:
            break  # preallocated tail of a run that is still being written
        if offset + _RECORD.size + length > len(raw):
            break  # a record the writer had not finished when the process died
        data = raw[offset + _RECORD.size: offset + _RECORD.size + length]
        offset += _RECORD.size + length
        if zlib.crc32(data, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            raise ValueError(f"{path}: record at byte {offset - length - _RECORD.size} fails its CRC check")
        if kind == _FULL:
            yield data
        elif kind == _FIRST:
            pending = data
        elif kind == _MIDDLE:
            pending += data
        elif kind == _LAST:
            yield pending + data
            pending = b""


def _items(items: Any, found: dict[str, Any] | None = None) -> dict[str, Any]:
    """Key/value items into a dict; a nested key (a table's ``name`` -> ``_type``, ...) into nested dicts."""
    found = {} if found is None else found
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = found
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = json.loads(item.value_json) if item.value_json else None
    return found


def read_offline_run(path: str | Path, wait_s: float = 0.0) -> OfflineRun:
    """Decode a ``.wandb`` file, or the single one inside an ``offline-run-*`` folder.

    W&B's service writes the file in the background and may still be writing it when ``run.finish()``
    has returned; ``wait_s`` > 0 re-reads it until its exit record is there (or the time is up).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.wandb"))
        if len(files) != 1:
            raise FileNotFoundError(f"{path}: expected one .wandb file, found {[f.name for f in files]}")
        path = files[0]
    deadline = time.monotonic() + wait_s
    run = _decode(path)
    while run.exit_code is None and time.monotonic() < deadline:
        time.sleep(0.1)
        run = _decode(path)
    return run


def _decode(path: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run = OfflineRun(path=path)
    for data in iter_records(path):
        record = pb.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.name, run.group, run.job_type = r.run_id, r.display_name, r.run_group, r.job_type
            run.tags = list(r.tags)
            run.config.update(_items(r.config.update))
        elif kind == "config":
            run.config.update(_items(record.config.update))
        elif kind == "history":
            run.history.append(_items(record.history.item))
        elif kind == "summary":
            _items(record.summary.update, run.summary)
            run.summary_updates.append(_items(record.summary.update))
        elif kind == "metric":
            m = record.metric
            run.metrics.append({"name": m.name or m.glob_name, "step_metric": m.step_metric,
                                "summary": [k for k in ("min", "max", "mean", "last", "first")
                                            if getattr(m.summary, k, False)]})
        elif kind == "artifact":
            a = record.artifact
            run.artifacts.append({"name": a.name, "type": a.type,
                                  "metadata": json.loads(a.metadata) if a.metadata else {}})
        elif kind == "exit":
            run.exit_code = int(record.exit.exit_code)
    return run


def offline_runs(output_dir: str | Path, wait_s: float = 0.0) -> list[OfflineRun]:
    """Every offline run under ``<output_dir>/wandb``, oldest first (``wait_s``: see :func:`read_offline_run`)."""
    return [read_offline_run(p, wait_s) for p in sorted((Path(output_dir) / "wandb").glob("offline-run-*"))]
