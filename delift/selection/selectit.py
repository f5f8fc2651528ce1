"""SelectIT (Liu et al. 2024, Blue-Raincoat/SelectIT): the model rates each example 1-5; uncertainty-aware scores.

For example x and rating prompt k, one pass over ``rating prompt + instruction (+ input) + response +
"The answer is: "`` gives P_j, the probability of the digit j (j = 1..5) as the next token. Then

- token level: ``P'_j = softmax_j(P_j / sum_l P_l)`` (the official code; ``normalise: sum`` gives the
  paper's plain ``P_j / sum_l P_l``), ``S_base = argmax_j P'_j`` and
  ``S_tok = S_base * (1 / (5 - 1)) * sum_j (P'_base - P'_j)``;
- sentence level over the K prompts: ``S_sent = mean_k S_tok,k / (1 + alpha * std_k S_tok,k)``
  (population std);
- model level: ``S = sum_m w_m S_sent,m`` with ``w_m = params_m / sum params`` over ``models``
  (the scoring model alone by default, ``scorer`` or else the run's model, then S = S_sent).

The top k by S are kept, highest first, ties by pool order. The rating prompts are our own, written in
the official structure (``delift/selection/prompts/selectit_rating.json``); ``rating_prompts_file``
loads any other list verbatim (JSON list of strings, or text with prompts separated by lines ``---``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, List, Mapping, Optional

import numpy as np

from delift.config.checks import Problems, at_least, choice
from delift.data.records import Example
from delift.models.config import ModelConfig, TinyModelConfig
from delift.scoring import ExampleScorer
from delift.selection.base import ScoreSelector, SelectionContext
from delift.selection.work import ModelWork, ScoringPass

DIGITS = ("1", "2", "3", "4", "5")
DEFAULT_PROMPTS = Path(__file__).resolve().parent / "prompts" / "selectit_rating.json"
NORMALISE = ("softmax", "sum")


def rater_config(entry: Mapping[str, Any], cache_dir: str | None) -> ModelConfig:
    """The :class:`ModelConfig` of one ``selector.models`` entry (conf/model's keys); without its own
    ``cache_dir`` it is cached where the scoring model is."""
    data = dict(entry)
    known = {item.name for item in fields(ModelConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"selector.models: unknown keys {unknown}; expected a subset of {sorted(known)}")
    data["tiny"] = TinyModelConfig(**data["tiny"]) if data.get("tiny") is not None else None
    data["cache_dir"] = data.get("cache_dir") or cache_dir
    return ModelConfig(**data)


def token_level(probs: np.ndarray, normalise: str = "softmax") -> tuple[np.ndarray, np.ndarray]:
    """``(S_tok, S_base)`` per row of ``probs`` (n, 5): the digit probabilities P_1..P_5."""
    probs = np.asarray(probs, dtype=np.float64)
    shares = probs / probs.sum(axis=-1, keepdims=True)
    if normalise == "softmax":
        shifted = np.exp(shares - shares.max(axis=-1, keepdims=True))
        shares = shifted / shifted.sum(axis=-1, keepdims=True)
    elif normalise != "sum":
        raise ValueError(f"selector.normalise={normalise!r}: expected one of {NORMALISE}")
    base = shares.argmax(axis=-1)  # first maximum: ties go to the lower digit
    top = np.take_along_axis(shares, base[:, None], axis=-1)
    s_tok = (base + 1) * (top - shares).sum(axis=-1) / (len(DIGITS) - 1)
    return s_tok, base + 1


def sentence_level(s_tok: np.ndarray, alpha: float = 0.2) -> np.ndarray:
    """``mean_k S_tok / (1 + alpha * std_k S_tok)`` over the prompt axis (axis 0), population std."""
    s_tok = np.asarray(s_tok, dtype=np.float64)
    return s_tok.mean(axis=0) / (1.0 + alpha * s_tok.std(axis=0))


def load_rating_prompts(path: str | Path | None) -> list[str]:
    """Rating prompts, verbatim: a JSON list of strings, or text with prompts separated by ``---`` lines."""
    path = Path(path) if path else DEFAULT_PROMPTS
    if not path.is_file():
        raise FileNotFoundError(f"selector.rating_prompts_file: {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        prompts = json.loads(text)
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"selector.rating_prompts_file: {path} must hold a JSON list of strings")
    else:
        prompts = [part.strip("\n") + "\n\n" for part in text.split("\n---\n") if part.strip()]
    if not prompts:
        raise ValueError(f"selector.rating_prompts_file: {path} holds no prompt")
    return prompts


def rated_text(example: Example, suffix: str) -> str:
    """What each rating prompt is followed by: the instruction, its input, the response, then ``suffix``."""
    parts = [f"Instruction: {example.instruction.strip()}"]
    if example.input.strip():
        parts.append(f"Input: {example.input.strip()}")
    parts.append(f"Response: {example.output.strip()}")
    return "\n".join(parts) + "\n" + suffix


def digit_ids(tokenizer: Any) -> list[int]:
    """The token id of each digit 1..5; an error when a digit is not exactly one token."""
    ids = []
    for digit in DIGITS:
        found = tokenizer(digit, add_special_tokens=False)["input_ids"]
        if len(found) != 1:
            raise ValueError(f"SelectIT needs each rating digit to be one token; {digit!r} is {found} for this tokenizer")
        ids.append(int(found[0]))
    return ids


class SelectITSelector(ScoreSelector):
    """Top k by SelectIT's model-level score (see the module docstring)."""

    name = "selectit"
    label = "SelectIT"
    row_order = 2

    @dataclass
    class Config:
        _target_: str = "delift.selection.selectit.SelectITSelector"
        normalise: str = "softmax"  # softmax (official code) | sum (the paper's P_j / sum P)
        alpha: float = 0.2  # sentence level: mean_k S_tok / (1 + alpha * std_k S_tok)
        # null = our 5 prompts (delift/selection/prompts/selectit_rating.json); K = their number. Any other: a
        # JSON list of strings or a text file with prompts separated by '---' lines
        rating_prompts_file: Optional[str] = None
        answer_suffix: str = "The answer is: "  # after instruction, input and response; the next token is the rating
        # extra raters as model configs (conf/model schema); [] = the scoring model only (scorer, else model).
        # Several: S = sum_m (params_m / sum params) S_sent,m
        models: List[Any] = field(default_factory=list)
        batch_size: int = 8  # sequences per forward pass
        max_length: int = 1024  # tokens of instruction + response scored after the rating prompt

        def problems(self) -> Problems:
            found: Problems = {}
            choice(found, "normalise", self.normalise, NORMALISE)
            at_least(found, "alpha", self.alpha, 0.0)
            at_least(found, "batch_size", self.batch_size, 1)
            at_least(found, "max_length", self.max_length, 1)
            return found

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        self.prompts = load_rating_prompts(self.config.rating_prompts_file)

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        """For each of the K rating prompts, the prompt once, then every example's rated text after it (the
        scoring model's; extra raters in ``models`` are not declared)."""
        c = self.config
        texts = [rated_text(ex, c.answer_suffix) for ex in ctx.pool]
        work = [ScoringPass(f"rate prompt {k + 1}/{len(self.prompts)}", ctx.pool, "rated", c.batch_size, "rating",
                            c.max_length, texts=texts, prefix=prompt) for k, prompt in enumerate(self.prompts)]
        if c.models and work:
            work[-1] = replace(work[-1], note=f"extra raters ({len(c.models)}) not planned")
        return work

    def _specs(self, ctx: SelectionContext) -> list[ModelConfig]:
        if not self.config.models:
            return [ctx.model_spec]
        return [rater_config(m, ctx.model_spec.cache_dir) for m in self.config.models]

    def _model_scores(self, ctx: SelectionContext, spec: ModelConfig) -> tuple[np.ndarray, dict[str, Any], int]:
        scorer = ExampleScorer(spec, ctx.template, ctx.cache_dir, batch_size=self.config.batch_size,
                               max_length=self.config.max_length, progress=ctx.progress)
        ids = digit_ids(scorer.tokenizer)
        contexts = [(ex.id, rated_text(ex, self.config.answer_suffix)) for ex in ctx.pool]
        probs = np.stack([scorer.next_token_probs(contexts, ids, prefix=prompt) for prompt in self.prompts])  # K,n,5
        s_tok, base = zip(*(token_level(p, self.config.normalise) for p in probs))
        base = np.stack(base)
        params = sum(p.numel() for p in scorer.model().parameters()) if len(self._specs(ctx)) > 1 else 1
        info = {"model": spec.name, "mean_digit_mass": float(probs.sum(axis=-1).mean()),
                "prompt_agreement": float((base == base[0]).all(axis=0).mean()),
                "base_score_counts": {str(j): int((base == j).sum()) for j in range(1, 6)},
                "scored": scorer.computed, "cache_hits": scorer.cache_hits}
        scorer.release()
        return sentence_level(np.stack(s_tok), self.config.alpha), info, int(params)

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        if ctx.model_spec is None or ctx.template is None:
            raise ValueError("selectit needs the scoring model_spec and template in the selection context")
        results = [self._model_scores(ctx, spec) for spec in self._specs(ctx)]
        total = sum(params for _, _, params in results)
        weights = [params / total for _, _, params in results]
        self.diagnostics = {"models": [{**info, "params": params, "weight": weight}
                                       for (_, info, params), weight in zip(results, weights)],
                            "prompts": len(self.prompts), "normalise": self.config.normalise, "alpha": self.config.alpha}
        return sum(w * s for w, (s, _, _) in zip(weights, results))

    @classmethod
    def loaded_models(cls, config: Any, cache_dir: str | None) -> list[tuple[str, Any]]:
        """Its extra raters (``selector.models``; none: the scoring model rates)."""
        found = []
        for index, entry in enumerate(config.models or []):
            key = f"selector.models[{index}]"
            try:
                found.append((key, rater_config(entry, cache_dir)))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{key}: {exc}") from None
        return found
