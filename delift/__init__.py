"""delift: data-efficient fine-tuning of language models (DELIFT and baselines)."""

__version__ = "0.1.0"
