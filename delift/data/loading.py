"""From a ``conf/data/*.yaml`` mapping to examples and splits: one path for hub, local, synthetic.

Data config keys (plain dict or OmegaConf ``DictConfig``):

- ``name``: dataset name, for logs.
- ``format``: a formatter name from :data:`delift.data.formatters.FORMATTERS`, or ``synthetic``.
- ``hub_id``, ``hub_config`` (nullable), ``hub_split``, ``revision`` (nullable): the hub dataset.
- ``local_path`` (nullable): a local file or ``save_to_disk`` folder read INSTEAD of the hub.
- ``max_rows`` (nullable): read only the first N rows (or N synthetic examples).
- ``on_bad_row`` (default ``error``): ``skip`` drops rows a formatter rejects (logged with a count
  and the first locations), for releases with a few known-bad rows (Alpaca has empty outputs).
- ``sizes``: ``{train, valid, test}``, ints or one null ("all remaining").
- ``synthetic``: ``{n, near_duplicate_rate, seed}`` for ``format: synthetic`` (else null).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from delift.data.formatters import SYNTHETIC_FORMAT, get_formatter
from delift.data.errors import DataFormatError
from delift.data.readers import HubSource, Source, iter_rows
from delift.data.records import Example
from delift.data.splits import DataSplits, make_splits
from delift.data.synthetic import generate_synthetic

log = logging.getLogger(__name__)


def _get(cfg: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """``cfg[key]`` or ``default``; works for dicts and DictConfigs alike."""
    value = cfg.get(key, default) if cfg is not None else default
    return default if value is None else value


def _source(data_cfg: Mapping[str, Any]) -> Source:
    """The local path when ``local_path`` is set, else the hub dataset."""
    local_path = _get(data_cfg, "local_path")
    if local_path is not None:
        path = Path(str(local_path)).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"data.local_path does not exist: {path}")
        return path
    hub_id = _get(data_cfg, "hub_id")
    if hub_id is None:
        raise ValueError(
            f"data '{_get(data_cfg, 'name', '?')}' sets neither data.local_path nor data.hub_id"
        )
    return HubSource(
        hub_id=str(hub_id),
        split=str(_get(data_cfg, "hub_split", "train")),
        config=_get(data_cfg, "hub_config"),
        revision=_get(data_cfg, "revision"),
    )


def _max_rows(data_cfg: Mapping[str, Any]) -> int | None:
    value = _get(data_cfg, "max_rows")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"data.max_rows must be a non-negative int or null, got {value!r}")
    return value


def _load_synthetic(data_cfg: Mapping[str, Any], max_rows: int | None) -> list[Example]:
    if _get(data_cfg, "local_path") is not None:
        raise ValueError("data.local_path is set but data.format is 'synthetic'; pick one")
    synth = _get(data_cfg, "synthetic", {})
    n = int(_get(synth, "n", 120))
    if max_rows is not None:
        n = min(n, max_rows)
    examples = generate_synthetic(
        n,
        seed=int(_get(synth, "seed", 0)),
        near_duplicate_rate=float(_get(synth, "near_duplicate_rate", 0.2)),
    )
    log.info("generated %d SYNTHETIC examples for data '%s'", len(examples),
             _get(data_cfg, "name", SYNTHETIC_FORMAT))
    return examples


def load_examples(data_cfg: Mapping[str, Any]) -> list[Example]:
    """All examples the config describes (first ``max_rows`` when set), in source order."""
    fmt = _get(data_cfg, "format")
    if fmt is None:
        raise ValueError("data.format is required (a formatter name or 'synthetic')")
    max_rows = _max_rows(data_cfg)
    if fmt == SYNTHETIC_FORMAT:
        return _load_synthetic(data_cfg, max_rows)
    formatter = get_formatter(str(fmt))
    on_bad_row = str(_get(data_cfg, "on_bad_row", "error"))
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"data.on_bad_row must be 'error' or 'skip', got {on_bad_row!r}")
    source = _source(data_cfg)
    examples: list[Example] = []
    skipped: list[DataFormatError] = []
    for location, row in iter_rows(source, max_rows=max_rows, split=_get(data_cfg, "hub_split")):
        try:
            examples.append(formatter(row, location))
        except DataFormatError as exc:
            if on_bad_row == "error":
                raise
            skipped.append(exc)
    if skipped:
        log.warning("skipped %d bad rows (data.on_bad_row=skip), first: %s", len(skipped),
                    "; ".join(str(exc) for exc in skipped[:3]))
    where = source.describe() if isinstance(source, HubSource) else str(source)
    log.info("loaded %d examples for data '%s' (format %s) from %s%s", len(examples),
             _get(data_cfg, "name", fmt), fmt, where,
             f" (max_rows={max_rows})" if max_rows is not None else "")
    return examples


def load_splits(data_cfg: Mapping[str, Any], seed: int) -> DataSplits:
    """Examples from :func:`load_examples`, split by ``data.sizes`` with ``seed``."""
    sizes = _get(data_cfg, "sizes")
    if sizes is None:
        raise ValueError("data.sizes is required ({train, valid, test})")
    splits = make_splits(load_examples(data_cfg), sizes, seed)
    log.info("split data '%s' with seed %d: %s", _get(data_cfg, "name", "?"), seed, splits.sizes)
    return splits
