"""Kernels on demand: look up the cache, else load the model once, compute and store."""

from __future__ import annotations

import logging
from typing import Any, Sequence

from delift.data.prompts import PromptTemplate
from delift.data.records import Example, fingerprint
from delift.kernel.cache import KernelCache, kernel_cache_key
from delift.kernel.utility import KernelSettings, UtilityKernel, compute_utility_kernel
from delift.models.loading import ModelSpec, load_model, load_tokenizer, model_identity

log = logging.getLogger(__name__)


class KernelProvider:
    """Computes utility kernels for any (targets, candidates) pair of example lists, cached on disk."""

    def __init__(self, model_spec: ModelSpec, template: PromptTemplate, settings: KernelSettings,
                 cache: KernelCache, progress: bool = True):
        self.model_spec = model_spec
        self.template = template
        self.settings = settings
        self.cache = cache
        self.progress = progress
        self._model = None
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_spec)
        return self._tokenizer

    def cache_payload(self, targets: Sequence[Example], candidates: Sequence[Example]) -> dict[str, Any]:
        return {
            "model": model_identity(self.model_spec),
            "targets": fingerprint(targets),
            "candidates": fingerprint(candidates),
            "prompt_template": [self.template.with_input, self.template.without_input],
            "kernel": self.settings.identity(),
        }

    def utility(self, targets: Sequence[Example], candidates: Sequence[Example]) -> UtilityKernel:
        payload = self.cache_payload(targets, candidates)
        key = kernel_cache_key(payload)
        kernel = self.cache.load(key)
        if kernel is None:
            if self._model is None:
                self._model = load_model(self.model_spec)
            kernel = compute_utility_kernel(self._model, self.tokenizer, targets, candidates, self.template,
                                            self.settings, progress=self.progress)
            kernel.meta["cached"] = False
            self.cache.save(key, kernel, payload)
        else:
            kernel.meta["cached"] = True
        kernel.meta["key"] = key
        return kernel

    def release(self) -> None:
        """Drop the scoring model so training can have the memory."""
        self._model = None
