"""What one stage of a run executes, counted in the units the FLOP formula needs."""

from __future__ import annotations

from dataclasses import dataclass, fields


def attended(start: int, end: int) -> int:
    """Keys attended by the tokens at positions ``start .. end - 1`` of one sequence (causal, itself included):
    sum_{p=start}^{end-1} (p + 1)."""
    return (end * (end + 1) - start * (start + 1)) // 2


@dataclass
class Work:
    """Counts of one stage; ``tokens`` equals the engine's ``BlockStats.tokens`` for a kernel."""

    sequences: int = 0  # scored sequences (a kernel: zero-shot sequences + pairs)
    pairs: int = 0  # one-shot (target, candidate) pairs
    tokens: int = 0  # real tokens run through the linear layers (padding excluded)
    context: int = 0  # keys attended, summed over those tokens (one layer)
    scored: int = 0  # positions the output head runs at
    passes: int = 0  # forward calls of the decoder
    per_sequence: int = 0  # pairs on the per-sequence path (their shown example is truncated)

    def add(self, other: Work) -> Work:
        for item in fields(self):
            setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        return self

    def scaled(self, factor: float) -> Work:
        """Every count times ``factor`` (rounded): repeated work such as training epochs."""
        return Work(**{item.name: round(getattr(self, item.name) * factor) for item in fields(self)})

    def sequence(self, length: int, scored: int, start: int = 0) -> None:
        """One sequence whose tokens ``start .. length - 1`` run (a cache holds the first ``start``)."""
        self.tokens += length - start
        self.context += attended(start, length)
        self.scored += scored
