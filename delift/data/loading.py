"""From a ``conf/data/*.yaml`` mapping to examples and splits: one path for hub, local, synthetic.

Data config keys (a :class:`~delift.data.config.DataConfig`, or a plain dict / OmegaConf
``DictConfig`` converted once by :func:`delift.data.sources.data_config`):

- ``name``: dataset name, for logs.
- ``format``: a formatter name from :data:`delift.data.records.FORMATTERS`, or ``synthetic``.
- ``hub_id``, ``hub_config`` (nullable), ``hub_split``, ``revision`` (nullable): the hub dataset.
- ``hub_config`` may also be a LIST of configs (P3 templates), read one after the other.
- ``local_path`` (nullable): a local file or ``save_to_disk`` folder read INSTEAD of the hub.
- ``offline_copy`` (nullable): ``{root: shared|fixtures, files: [...], note}``, read when
  ``local_path`` is null and the hub is offline (see :mod:`delift.data.sources`).
- ``max_rows`` (nullable): read only the first N rows of EACH source file / hub config (or N
  synthetic examples), before ``row_filter``.
- ``row_filter`` (nullable): ``{key, include, exclude}`` keeps examples whose ``metadata[key]`` is in
  ``include`` (null = any) and not in ``exclude`` (P3 templates); counts are logged and recorded.
- ``on_bad_row`` (default ``error``): ``skip`` drops rows a formatter rejects (logged with a count
  and the first locations), for releases with a few known-bad rows (Alpaca has empty outputs).
- ``sizes``: ``{train, valid, test}``, ints or one null ("all remaining").
- ``synthetic``: ``{n, near_duplicate_rate, seed}`` for ``format: synthetic`` (else null).
- ``structured``: ``{num_tasks, per_task, tasks, seed, mix_rows, mix_file, mix_format}`` for
  ``format: structured`` (else null; see :mod:`delift.data.structured`).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from typing import Any, Iterator

from omegaconf import MISSING

from delift.data.config import DataConfig
from delift.data.readers import HubSource, iter_rows
from delift.data.records import (
    HUB_CONFIG_FIELD,
    DataFileError,
    DataFormatError,
    Example,
    RowLocation,
    generated_format,
    get_formatter,
)
from delift.data.sources import SHARED_ENV, DataConfigLike, ResolvedSource, data_config, resolve_source
from delift.data.splits import DataSplits, make_splits

log = logging.getLogger(__name__)


def _max_rows(data_cfg: DataConfig) -> int | None:
    value = data_cfg.max_rows
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"data.max_rows must be a non-negative int or null, got {value!r}")
    return value


def _rows(resolved: ResolvedSource, max_rows: int | None,
          split: str | None) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """Rows of every source in order; row ordinals run on across sources so fallback ids stay unique."""
    offset = 0
    for source in resolved.sources:
        count = 0
        for location, row in iter_rows(source, max_rows=max_rows, split=split):
            count += 1
            if isinstance(source, HubSource) and source.config is not None:  # e.g. P3's template name
                row = {**row, HUB_CONFIG_FIELD: source.config}
            yield (RowLocation(str(location), offset + location.row) if offset else location), row
        offset += count


def _row_filter(data_cfg: DataConfig) -> tuple[str, set | None, set] | None:
    spec = data_cfg.row_filter
    if spec is None:
        return None
    if spec.key in (None, MISSING):
        raise ValueError("data.row_filter needs a metadata key, e.g. {key: template, include: [...], exclude: [...]}")
    include = spec.include
    return str(spec.key), None if include is None else {str(v) for v in include}, {str(v) for v in spec.exclude or []}


def _filtered_value(row_filter: tuple[str, set | None, set], value: Any) -> str | None:
    """``str(value)`` when the row filter drops ``value``, else None."""
    _, include, exclude = row_filter
    value = str(value)
    return value if (include is not None and value not in include) or value in exclude else None


def _load(data_cfg: DataConfig,
          shared_datasets: str | os.PathLike | None) -> tuple[list[Example], dict[str, Any]]:
    """Examples plus the record of where they came from and what was dropped."""
    fmt = data_cfg.format
    if fmt in (None, MISSING):
        raise ValueError("data.format is required (a formatter name or 'synthetic')")
    max_rows = _max_rows(data_cfg)
    name = data_cfg.name
    generated = generated_format(fmt)  # synthetic, structured: generated in code (delift.data.records.GENERATED)
    if generated is not None:
        shared = shared_datasets if shared_datasets is not None else os.environ.get(SHARED_ENV)
        return generated.load(data_cfg, max_rows, shared)
    formatter = get_formatter(str(fmt))
    on_bad_row = str(data_cfg.on_bad_row)
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"data.on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
    row_filter = _row_filter(data_cfg)
    resolved = resolve_source(data_cfg, shared_datasets)
    if resolved.kind == "offline_copy":
        log.warning("data '%s': hub offline (or no hub_id) -> reading the OFFLINE COPY %s%s", name,
                    resolved.describe(), f" ({resolved.note})" if resolved.note else "")
    if resolved.fixture:
        log.warning("data '%s' is FIXTURE data (a hand-written sample in the dataset's schema), "
                    "NOT the real dataset: results on it are plumbing checks only", name)
    examples: list[Example] = []
    skipped: list[DataFormatError] = []
    filtered: Counter = Counter()
    seen_values: set[str] = set()
    for location, row in _rows(resolved, max_rows, data_cfg.hub_split):
        try:
            example = formatter(row, location)
        except DataFormatError as exc:
            value = _filtered_value(row_filter, row.get(row_filter[0], row.get(HUB_CONFIG_FIELD))) if row_filter else None
            if value is not None:  # a bad row the filter drops anyway is not a bad row of this data
                filtered[value] += 1
                continue
            if on_bad_row == "error":
                raise
            skipped.append(exc)
            continue
        if row_filter is not None:
            seen_values.add(str(example.metadata.get(row_filter[0])))
            value = _filtered_value(row_filter, example.metadata.get(row_filter[0]))
            if value is not None:
                filtered[value] += 1
                continue
        examples.append(example)
    if skipped and not examples and not filtered:
        raise _all_skipped(data_cfg, formatter, resolved, skipped)
    if skipped:
        reasons = Counter(exc.field for exc in skipped)
        log.warning("data '%s': skipped %d bad rows (data.on_bad_row=skip) by field %s, first: %s", name,
                    len(skipped), dict(reasons), "; ".join(str(exc) for exc in skipped[:3]))
    if row_filter is not None:
        key, include, exclude = row_filter
        log.info("data '%s': row_filter on metadata.%s dropped %d examples (%d excluded values); kept %d", name,
                 key, sum(filtered.values()), len(filtered), len(examples))
        excluded_seen = sorted(exclude & seen_values)
        if excluded_seen:
            log.warning("data '%s': excluded %s (row_filter.exclude)", name, excluded_seen)
        unseen = sorted((include or set()) - seen_values)
        if unseen:
            log.warning("data '%s': row_filter.include values never seen in the data: %s", name, unseen)
    log.info("loaded %d examples for data '%s' (format %s) from %s%s", len(examples), name, fmt,
             resolved.describe(), f" (max_rows={max_rows} per source)" if max_rows is not None else "")
    record = {**resolved.to_dict(), "skipped_bad_rows": len(skipped),
              "skipped_by_field": dict(Counter(exc.field for exc in skipped)),
              "filtered_out": sum(filtered.values())}
    return examples, record


def _all_skipped(data_cfg: DataConfig, formatter: Any, resolved: ResolvedSource,
                 skipped: list[DataFormatError]) -> DataFileError:
    """Every row was bad: most likely the file is another dataset than ``data.format`` reads (GSM8K as alpaca)."""
    reasons = Counter(f"field '{exc.field}': {exc.problem}" for exc in skipped)
    reason, count = reasons.most_common(1)[0]
    expected = ", ".join(_required_fields(formatter)) or "?"
    return DataFileError(", ".join(resolved.to_dict()["sources"]), (
        f"all {len(skipped)} rows were skipped as bad (data.on_bad_row=skip); {count} of them for {reason} "
        f"(first: {skipped[0].location}). data.format={data_cfg.format} expects the fields {expected}: is this "
        "file another dataset, or is data.format wrong?"))


def _required_fields(formatter: Any, limit: int = 12) -> list[str]:
    """The fields ``formatter`` requires, found by feeding it rows that lack one field at a time."""
    row: dict[str, Any] = {}
    found: list[str] = []
    for _ in range(limit):
        try:
            formatter(dict(row), RowLocation("probe#0", 0))
            break
        except DataFormatError as exc:
            if exc.field in row or "missing" not in exc.problem:
                break
            found.append(exc.field)
            row[exc.field] = "x"
        except Exception:  # noqa: BLE001 - a placeholder value a formatter cannot parse ends the probe
            break
    return found


def load_examples(data_cfg: DataConfigLike,
                  shared_datasets: str | os.PathLike | None = None) -> list[Example]:
    """All examples the config describes (first ``max_rows`` per source when set), in source order.

    ``shared_datasets`` is the folder ``offline_copy: {root: shared}`` files are relative to: pass
    ``cfg.paths.shared_datasets`` (it is not read from inside the data config, so nested data
    configs such as ``usecase.target`` work).
    """
    return _load(data_config(data_cfg), shared_datasets)[0]


def load_splits(data_cfg: DataConfigLike, seed: int,
                shared_datasets: str | os.PathLike | None = None) -> DataSplits:
    """Examples from :func:`load_examples`, split by ``data.sizes`` with ``data.split_seed`` when set, else ``seed``
    (a fixed split keeps the pool, and so its kernels and scores, the same at every run seed).

    ``splits.source`` records where the rows came from (``kind``, ``sources``, ``fixture``, ``note``,
    skipped and filtered counts) for run.json and result caveats.
    """
    data_cfg = data_config(data_cfg)
    if data_cfg.sizes is None:
        raise ValueError("data.sizes is required ({train, valid, test})")
    examples, record = _load(data_cfg, shared_datasets)
    seed = seed if getattr(data_cfg, "split_seed", None) is None else int(data_cfg.split_seed)
    splits = make_splits(examples, data_cfg.sizes, seed, data_name=data_cfg.name)
    splits.source = {"name": data_cfg.name, "loaded": len(examples), **record}
    log.info("split data '%s' with seed %d: %s", data_cfg.name, seed, splits.sizes)
    return splits
