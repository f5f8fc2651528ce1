"""Reading the score out of a judge's reply: ``... feedback ... [RESULT] n``.

Rules (each one is tested in tests/test_judge.py):

- The marker is ``[RESULT]``, case-insensitive, spaces allowed inside the brackets. An unclosed
  ``[RESULT 4]`` / ``[RESULT: 4]`` is accepted too.
- Between the marker and the number only decoration may stand: spaces, ``:``, ``=``, a dash ``- ``,
  markdown ``*``/``_``, an opening ``(`` and the word ``score``. So ``[RESULT]: 4``,
  ``**[RESULT] 4**``, ``[RESULT] **4**``, ``[RESULT] (4)`` and ``[RESULT] Score: 4`` all read 4.
  Anything else there (``[RESULT] (an integer from 1 to 5)``, the format restated) is no verdict.
- When several markers carry a number, the **last** one counts (a judge that restates or revises
  its score ends with its final word). Markers without a number are ignored; text after the
  number is ignored.
- ``n/5`` and ``n out of 5`` read ``n``. A different denominator (``8/10``) means the judge used
  another scale: ``out_of_range`` (never rescaled).
- Decimals are kept as they are when they lie in [1, 5] (``4.5`` -> 4.5); the paper's judge gives
  integers, so this is rare, and rounding would invent precision in the other direction.
- A number outside [1, 5] (``0``, ``6``, ``10``, ``-1``) is ``out_of_range``: no score.
- No marker followed by a number -> ``parse_failure``. There is deliberately no fallback to "any
  digit in the text": a broken judge (or a tiny random model) would then be credited with noise.
- No reply at all (the backend failed after its retries) -> ``error``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from delift.evaluation.judge.prompt import SCORE_MAX, SCORE_MIN

OK, OUT_OF_RANGE, PARSE_FAILURE, ERROR = "ok", "out_of_range", "parse_failure", "error"
STATUSES = (OK, OUT_OF_RANGE, PARSE_FAILURE, ERROR)

_VERDICT = re.compile(
    r"\[\s*result\s*\]?"                       # [RESULT] (or an unclosed "[RESULT")
    r"(?:[\s:=*_(]|-(?=\s))*"                  # decoration ("-" only as a dash, not a sign)
    r"(?:score\b(?:[\s:=*_(]|-(?=\s))*)?"     # optionally the word "score"
    r"(?P<number>[-+]?\d+(?:\.\d+)?)"          # the score
    r"(?:\s*(?:/|out\s+of)\s*(?P<scale>\d+(?:\.\d+)?))?",  # optional "/5" or "out of 5"
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Verdict:
    """A parsed reply: ``score`` is set only when ``status == "ok"``; ``raw`` is the reply text."""

    status: str
    score: float | None = None
    raw: str | None = None

    @property
    def value(self) -> float:
        """The score as a float, NaN when there is none (the per-example metric value)."""
        return self.score if self.score is not None else math.nan


def parse_verdict(reply: str | None) -> Verdict:
    """Apply the rules in the module docstring to one reply (``None``: the backend gave none)."""
    if reply is None:
        return Verdict(ERROR)
    matches = list(_VERDICT.finditer(reply))
    if not matches:
        return Verdict(PARSE_FAILURE, raw=reply)
    last = matches[-1]
    number = float(last.group("number"))
    scale = last.group("scale")
    if scale is not None and float(scale) != SCORE_MAX:
        return Verdict(OUT_OF_RANGE, raw=reply)
    if not SCORE_MIN <= number <= SCORE_MAX:
        return Verdict(OUT_OF_RANGE, raw=reply)
    return Verdict(OK, score=number, raw=reply)
