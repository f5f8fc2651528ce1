"""Bottom layer: example records, dataset loading, formatting, splitting."""

from delift.data.decontaminate import P3_HOTPOTQA_TEMPLATES, decontaminate, normalise
from delift.data.errors import DataFormatError
from delift.data.formatters import FORMATTERS, get_formatter
from delift.data.loading import load_examples, load_splits
from delift.data.readers import HubSource, RowLocation, iter_rows
from delift.data.records import Example, fingerprint
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
