"""The public per-example scoring helper that model-scored selectors call (SelectIT, IFD, LoBaSS, ...).

``ExampleScorer(model_spec, template, cache_dir)`` loads the model on first use and scores lists of
examples; every result is cached per example (:mod:`delift.scoring.cache`), keyed by the model's
identity, the adapter's content, the kind of score and the exact tokens, so a sweep scores each
example once. With an ``adapter`` folder (a LoRA trained by :func:`delift.training.finetune.finetune`)
the same base weights score with the adapter on, or off (``adapter_enabled=False``), so a
difference between the two never mixes in a change of base weights or quantisation.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.models.config import ModelConfig
from delift.models.loading import folder_fingerprint, load_model, load_tokenizer, model_identity
from delift.scoring.cache import ScoreCache, item_key
from delift.scoring.layout import ScoringItem, answer_items, training_items
from delift.scoring.passes import mean_nll, next_token_probs, scored_log_probs, weighted_mean_states

log = logging.getLogger(__name__)


class ExampleScorer:
    """Mean response NLL and next-token probabilities of examples under one model (plus an optional adapter)."""

    def __init__(self, model_spec: ModelConfig, template: PromptTemplate, cache_dir: str | Path | None = None, *,
                 batch_size: int = 8, max_length: int = 1024, progress: bool = True):
        self.model_spec, self.template = model_spec, template
        self.cache = ScoreCache(None if cache_dir is None else Path(cache_dir) / "scores")
        self.batch_size, self.max_length, self.progress = batch_size, max_length, progress
        self._tokenizer: Any = None
        self._models: dict[str | None, Any] = {}
        self.computed = 0  # examples scored by the model (not from the cache), over this scorer's life
        self.cache_hits = 0

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_spec)
        return self._tokenizer

    def model(self, adapter: str | Path | None = None) -> Any:
        """The base model, or the base model with the LoRA adapter in folder ``adapter`` (loaded once)."""
        key = None if adapter is None else str(adapter)
        if key not in self._models:
            model = load_model(self.model_spec)
            if adapter is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(adapter)).eval()
            self._models[key] = model
        return self._models[key]

    def release(self) -> None:
        """Drop the loaded models (the cache on disk stays)."""
        self._models.clear()

    def _family(self, kind: str, adapter: str | Path | None, adapter_enabled: bool, prefix: Sequence[int],
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"kind": kind, "model": model_identity(self.model_spec),
                "adapter": None if adapter is None else folder_fingerprint(Path(adapter)),
                "adapter_enabled": bool(adapter_enabled) if adapter is not None else None,
                "prefix": list(prefix), **(extra or {})}

    def _cached(self, family: dict[str, Any], items: Sequence[ScoringItem], compute) -> list[np.ndarray]:
        keys = [item_key(item) for item in items]
        found = self.cache.lookup(family, keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        self.cache_hits += len(items) - len(missing)
        if missing:
            fresh = compute([items[i] for i in missing])
            self.computed += len(missing)
            self.cache.store(family, [keys[i] for i in missing], fresh)
            found.update({keys[i]: np.asarray(value, dtype=np.float64) for i, value in zip(missing, fresh)})
        log.info("%s: %d examples, %d from the cache, %d scored", family["kind"], len(items),
                 len(items) - len(missing), len(missing))
        return [found[key] for key in keys]

    def _switch(self, model: Any, adapter: str | Path | None, adapter_enabled: bool):
        return model.disable_adapter() if adapter is not None and not adapter_enabled else nullcontext()

    def token_log_probs(self, items: Sequence[ScoringItem], *, prefix: Sequence[int] = (),
                        adapter: str | Path | None = None, adapter_enabled: bool = True,
                        what: str = "scoring") -> list[np.ndarray]:
        """log p of each scored token of each item (cached)."""
        def compute(todo: list[ScoringItem]) -> list[np.ndarray]:
            model = self.model(adapter)
            with self._switch(model, adapter, adapter_enabled):
                return scored_log_probs(model, todo, prefix=prefix, batch_size=self.batch_size,
                                        progress=self.progress, what=what)

        return self._cached(self._family("token_log_probs", adapter, adapter_enabled, prefix), items, compute)

    def response_nll(self, examples: Sequence[Example], *, prefix: str = "", adapter: str | Path | None = None,
                     adapter_enabled: bool = True) -> np.ndarray:
        """Masked mean NLL of response + EOS after ``prefix + prompt`` (the training layout), per example."""
        items = training_items(examples, self.tokenizer, self.template, self.max_length, prefix=prefix)
        return mean_nll(self.token_log_probs(items, adapter=adapter, adapter_enabled=adapter_enabled,
                                             what="response NLL"))

    def answer_nll(self, examples: Sequence[Example], header: str) -> np.ndarray:
        """Masked mean NLL of response + EOS after ``header`` alone (one EOS when empty), per example."""
        items = answer_items(examples, self.tokenizer, header, self.max_length)
        return mean_nll(self.token_log_probs(items, what="answer NLL"))

    def weighted_mean_states(self, examples: Sequence[Example]) -> np.ndarray:
        """(n, hidden) position-weighted mean final hidden states over prompt + response + EOS (the training
        layout), per example (cached; RDS+)."""
        items = training_items(examples, self.tokenizer, self.template, self.max_length)

        def compute(todo: list[ScoringItem]) -> list[np.ndarray]:
            return weighted_mean_states(self.model(), todo, batch_size=self.batch_size, progress=self.progress,
                                        what="RDS+ hidden states")

        family = self._family("weighted_mean_states", None, True, (), {"pooling": "position_weighted_mean"})
        values = self._cached(family, items, compute)
        return np.stack(values) if values else np.zeros((0, 0))

    def next_token_probs(self, contexts: Sequence[tuple[str, str]], token_ids: Sequence[int], *,
                         prefix: str = "") -> np.ndarray:
        """(n, len(token_ids)) probabilities of the next token after ``prefix + text`` for each ``(id, text)``.

        The shared ``prefix`` is tokenised on its own and runs once (its key/value cache is reused).
        """
        prefix_ids = list(self.tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else []
        items = [ScoringItem(item_id, tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"]), ())
                 for item_id, text in contexts]

        def compute(todo: list[ScoringItem]) -> list[np.ndarray]:
            return list(next_token_probs(self.model(), todo, token_ids, prefix=prefix_ids,
                                         batch_size=self.batch_size, progress=self.progress))

        family = self._family("next_token_probs", None, True, prefix_ids, {"token_ids": list(token_ids)})
        values = self._cached(family, items, compute)
        return np.stack(values) if values else np.zeros((0, len(token_ids)))
