"""Token layout of the zero-shot and one-shot sequences, with truncation that never cuts the response.

Layout (the official code's HF path, without its off-by-two truncation bug):
    [shown example tokens] [query tokens] [EOS] [response tokens] [EOS]
no BOS, parts tokenised separately so every boundary is exact. The response tokens and the
final EOS are scored. When the sequence is too long, the shown example is shortened first,
then the query; both lose tokens from the left so the text next to the response survives.
"""

from __future__ import annotations

from dataclasses import dataclass


class ResponseTooLongError(ValueError):
    """The target response (plus its EOS tokens and one query token) does not fit in max_length."""


@dataclass(frozen=True)
class ScoredSequence:
    """Token ids of one sequence and where its scored part starts."""

    input_ids: list[int]
    response_start: int  # index of the first scored token (first response token)
    shown_cut: int = 0  # tokens the shown example lost to truncation
    query_cut: int = 0  # tokens the query lost to truncation
    shown_dropped: bool = False  # the whole shown example was cut: this pair is effectively zero-shot

    @property
    def num_scored(self) -> int:
        return len(self.input_ids) - self.response_start


def response_fits(response_ids: list[int], eos_id: int, eos_after_prompt: bool, max_length: int) -> bool:
    """True when the response, its EOS tokens and at least one query token fit."""
    return len(response_ids) + 1 + int(eos_after_prompt) + 1 <= max_length


def build_sequence(shown_ids: list[int], query_ids: list[int], response_ids: list[int], eos_id: int,
                   eos_after_prompt: bool, max_length: int, target_id: str = "?") -> ScoredSequence:
    """Assemble and truncate one sequence; ``shown_ids`` is empty for the zero-shot sequence."""
    separator = [eos_id] if eos_after_prompt else []
    scored = list(response_ids) + [eos_id]
    if not response_fits(response_ids, eos_id, eos_after_prompt, max_length):
        raise ResponseTooLongError(
            f"example {target_id!r}: response of {len(response_ids)} tokens plus EOS does not fit in "
            f"kernel.max_length={max_length}; raise kernel.max_length or set kernel.on_overflow=skip")
    room = max_length - len(scored) - len(separator)
    keep_query = min(len(query_ids), room)
    keep_shown = min(len(shown_ids), room - keep_query)
    prefix = (shown_ids[len(shown_ids) - keep_shown:] if keep_shown else []) + query_ids[len(query_ids) - keep_query:]
    prefix = prefix + separator
    if not prefix:  # nothing would predict the first response token
        raise ValueError(f"example {target_id!r}: empty prompt and kernel.eos_after_prompt=false")
    return ScoredSequence(input_ids=prefix + scored, response_start=len(prefix),
                          shown_cut=len(shown_ids) - keep_shown, query_cut=len(query_ids) - keep_query,
                          shown_dropped=bool(shown_ids) and keep_shown == 0)
