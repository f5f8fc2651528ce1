"""Evaluation: generation from prompts and the metrics that score it."""
