"""LLM-as-judge (METHOD.md section 5): Prometheus-style absolute grading on a 1-5 rubric.

- :mod:`.prompt`: the eight-dimension rubric and the grading prompt;
- :mod:`.parsing`: ``[RESULT] n`` -> a :class:`Verdict` (ok / parse_failure / out_of_range / error);
- :mod:`.cache`: replies on disk, keyed by sha256(judge identity, messages, decoding settings);
- :mod:`.config`: ``conf/judge/*.yaml`` validated, :func:`judge_identity` for labelling results;
- :mod:`.hf_backend`, :mod:`.openai_backend`: a local transformers model, or an OpenAI-compatible
  HTTP endpoint (vLLM, Ollama, ...);
- :mod:`.runner`: :func:`run_judge`, the failure counts.

The ``judge`` metric in :mod:`delift.evaluation.metrics` calls :func:`run_judge`.
"""

from delift.evaluation.judge.config import judge_identity, judge_settings
from delift.evaluation.judge.parsing import Verdict, parse_verdict
from delift.evaluation.judge.prompt import DIMENSIONS, build_messages, build_prompt, instruction_text
from delift.evaluation.judge.runner import BACKENDS, COUNT_KEYS, JudgeResult, run_judge

__all__ = ["BACKENDS", "COUNT_KEYS", "DIMENSIONS", "JudgeResult", "Verdict", "build_messages", "build_prompt",
           "instruction_text", "judge_identity", "judge_settings", "parse_verdict", "run_judge"]
