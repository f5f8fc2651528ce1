"""Judge backend on a local transformers causal LM (``judge.backend=hf``).

The model is resolved through :mod:`delift.models.loading` (same cache, same identity rules as the
fine-tuned models): ``model_source=hub`` takes ``model`` as a hub id (at ``revision``), ``local``
as a checkpoint folder, ``tiny_random`` builds the project's tiny random Llama (plumbing only).
Messages go through the tokenizer's chat template when it has one, else their contents are joined
into one plain prompt. Decoding is greedy at ``temperature=0`` (seeded sampling otherwise), with
:func:`delift.evaluation.generation.generate`, in batches of ``batch_size``.
The model is loaded on the first :meth:`HFJudgeBackend.complete` call, so a fully cached run
never loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from delift.evaluation.judge.config import HFJudgeSettings
from delift.evaluation.judge.models import judge_model_spec
from delift.evaluation.judge.prompt import plain_prompt
from delift.models.loading import load_model, load_tokenizer, model_identity

log = logging.getLogger(__name__)

Messages = Sequence[dict[str, str]]


class HFJudgeBackend:
    """Generates judge replies with a local model; a reply is always text (possibly empty)."""

    def __init__(self, settings: HFJudgeSettings, cache_dir: str | Path, progress: bool = False) -> None:
        self.settings = settings
        self.spec = judge_model_spec(settings, cache_dir)
        self.progress = progress
        self._model: Any = None
        self._tokenizer: Any = None
        self._warned_template = False

    def identity(self) -> dict[str, Any]:
        """Backend plus the model's identity (resolved hub commit or local folder fingerprint)."""
        return {"backend": "hf", "model": self.settings.model, **model_identity(self.spec)}

    def generation_settings(self) -> dict[str, Any]:
        s = self.settings
        out: dict[str, Any] = {"max_new_tokens": s.max_new_tokens, "temperature": float(s.temperature),
                               "max_prompt_tokens": s.max_prompt_tokens}
        if s.temperature > 0:
            out.update(seed=s.seed, batch_size=s.batch_size)  # sampled replies depend on the batch layout
        return out

    def _load(self) -> None:
        if self._model is None:
            log.info("Loading judge model %s (%s)", self.settings.model, self.settings.model_source)
            self._tokenizer = load_tokenizer(self.spec)
            self._model = load_model(self.spec)

    def render(self, messages: Messages) -> str:
        """The prompt text for one conversation: chat template if any, else the plain contents."""
        tokenizer = self._tokenizer
        if getattr(tokenizer, "chat_template", None):
            try:
                return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
            except Exception as exc:  # a template that rejects these roles: fall back, say so once
                if not self._warned_template:
                    log.warning("judge: chat template of %s failed (%s); using the plain prompt",
                                self.settings.model, exc)
                    self._warned_template = True
        return plain_prompt(list(messages))

    def complete(self, conversations: Sequence[Messages]) -> list[str | None]:
        """One reply per conversation, in order."""
        from delift.evaluation.generation import generate

        if not conversations:
            return []
        self._load()
        s = self.settings
        prompts = [self.render(messages) for messages in conversations]
        return list(generate(self._model, self._tokenizer, prompts, max_new_tokens=s.max_new_tokens,
                             batch_size=s.batch_size, do_sample=s.temperature > 0,
                             temperature=float(s.temperature) or 1.0, seed=s.seed,
                             max_prompt_length=s.max_prompt_tokens, progress=self.progress))
