"""Bottom layer: example records, dataset loading, formatting, splitting."""

from delift.data.records import Example, fingerprint

__all__ = ["Example", "fingerprint"]
