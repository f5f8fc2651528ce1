"""Bottom layer: example records, dataset loading, formatting, splitting.

Inside: ``records`` (and ``tasks``) at the bottom; readers, formatters, config and the generators above them;
sources, splits and loading on top. The modules that register a ``data.format`` (``formatters``,
``formatters_qa``, ``synthetic``, ``structured``) are imported here, so every format is known once any
``delift.data`` module is.
"""

from delift.data import formatters, formatters_qa, structured, synthetic  # noqa: F401 - register the formats
from delift.data.decontaminate import P3_HOTPOTQA_TEMPLATES, decontaminate, normalise
from delift.data.loading import load_examples, load_splits
from delift.data.readers import HubSource, iter_rows
from delift.data.records import FORMATTERS, DataFormatError, Example, RowLocation, fingerprint, get_formatter
from delift.data.sources import (
    FIXTURES_DIR,
    DataConfigLike,
    ResolvedSource,
    data_config,
    hub_offline,
    is_fixture,
    resolve_source,
)
from delift.data.splits import DataSplits, make_splits
from delift.data.synthetic import generate_synthetic

__all__ = [
    "FIXTURES_DIR",
    "P3_HOTPOTQA_TEMPLATES",
    "DataConfigLike",
    "ResolvedSource",
    "data_config",
    "decontaminate",
    "hub_offline",
    "is_fixture",
    "normalise",
    "resolve_source",
    "DataFormatError",
    "DataSplits",
    "Example",
    "FORMATTERS",
    "HubSource",
    "RowLocation",
    "fingerprint",
    "generate_synthetic",
    "get_formatter",
    "iter_rows",
    "load_examples",
    "load_splits",
    "make_splits",
]
