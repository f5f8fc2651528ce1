"""Kernels on demand: look up the cache, else compute the missing blocks with the engine, merge, store.

``utility`` returns a complete kernel (computing whatever this shard still owes); ``fill`` only
computes this shard's missing blocks (``kernel.num_shards`` / ``kernel.shard``), for sharded runs
whose blocks are merged later by any process once every shard has finished.

Both take an optional ``aggregate`` (``delift.kernel.utility.AGGREGATES``): ``distance`` (default,
DELIFT's d and UF = d_zero - d_one) or ``logprob_sum`` (sums of log p; UF = l_one - l_zero). It is part
of the cache key only when it is not the default, so the keys of DELIFT kernels are those of before.
A selector names it in a :class:`KernelRequest` from ``kernel_requests``; ``provider.fill(*request)``
and ``provider.utility(*request)`` accept both such a request and a plain (targets, candidates) pair.

``approximation`` (``kernel.approximation``, :mod:`delift.kernel.approximate`): ``exact`` (default)
computes every entry as above; ``learned`` and ``knn`` make ``utility`` return an approximate kernel
under its own cache key (the exact kernel's key is unchanged). ``exact_utility`` / ``exact_fill``
always compute the exact kernel.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from delift.data.prompts import PromptTemplate
from delift.data.records import Example, fingerprint
from delift.kernel.approximate import ApproximationSettings, approximate_fill, approximate_utility, embed_examples
from delift.kernel.blocks import Block, BlockStore, IncompleteKernelError, shard_of  # noqa: F401 (re-export)
from delift.kernel.cache import KernelCache, kernel_cache_key
from delift.kernel.engine import BlockStats, ScoringSetup, score_one_shot, score_zero_shot
from delift.kernel.sequences import build_sequence
from delift.kernel.utility import (  # noqa: F401 (re-export)
    DEFAULT_AGGREGATE,
    KernelRequest,
    KernelSettings,
    TokenizedExample,
    UtilityKernel,
    check_aggregate,
    check_head_matches_forward,
    tokenize_examples,
)
from delift.models.config import ModelConfig
from delift.models.loading import load_model, load_tokenizer, model_identity

log = logging.getLogger(__name__)


class KernelProvider:
    """Computes utility kernels for any (targets, candidates) pair of example lists, cached on disk."""

    def __init__(self, model_spec: ModelConfig, template: PromptTemplate, settings: KernelSettings,
                 cache: KernelCache, progress: bool = True, approximation: ApproximationSettings | None = None):
        self.model_spec = model_spec
        self.template = template
        self.settings = settings
        self.cache = cache
        self.progress = progress
        self.approximation = approximation or ApproximationSettings()
        self._model = None
        self._tokenizer = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_spec)
        return self._tokenizer

    @property
    def model(self):
        if self._model is None:
            self._model = load_model(self.model_spec)
        return self._model

    def cache_payload(self, targets: Sequence[Example], candidates: Sequence[Example],
                      aggregate: str = DEFAULT_AGGREGATE) -> dict[str, Any]:
        """What the kernel's key hashes; ``aggregate`` is added only when it is not the default."""
        payload = {
            "model": model_identity(self.model_spec),
            "targets": fingerprint(targets),
            "candidates": fingerprint(candidates),
            "prompt_template": [self.template.with_input, self.template.without_input],
            "kernel": self.settings.identity(),
        }
        if check_aggregate(aggregate) != DEFAULT_AGGREGATE:
            payload["aggregate"] = aggregate
        return payload

    def block_store(self, targets: Sequence[Example], candidates: Sequence[Example],
                    aggregate: str = DEFAULT_AGGREGATE) -> BlockStore:
        payload = self.cache_payload(targets, candidates, aggregate)
        return BlockStore(self.cache.root, kernel_cache_key(payload), self.settings.block_size,
                          [e.id for e in targets], [e.id for e in candidates], payload, aggregate)

    def utility(self, targets: Sequence[Example], candidates: Sequence[Example],
                aggregate: str = DEFAULT_AGGREGATE) -> UtilityKernel:
        """The complete kernel (approximate under ``kernel.approximation`` learned / knn), cached."""
        if not self.approximation.exact:
            return approximate_utility(self, targets, candidates, aggregate)
        return self.exact_utility(targets, candidates, aggregate)

    def exact_utility(self, targets: Sequence[Example], candidates: Sequence[Example],
                      aggregate: str = DEFAULT_AGGREGATE) -> UtilityKernel:
        """The complete exact kernel: from the cache, else this shard's blocks are computed and all are merged."""
        store = self.block_store(targets, candidates, aggregate)
        kernel = self.cache.load(store.key)
        if kernel is not None:
            kernel.meta.setdefault("aggregate", store.aggregate)  # kernels cached before it was recorded
            kernel.meta.update(cached=True, key=store.key)
            return kernel
        counts = self._fill(store, targets, candidates)
        missing = list(store.missing())
        if missing:
            names = [b.name for b in missing]
            raise IncompleteKernelError(
                f"kernel {store.key}: {len(missing)} blocks of other shards are missing ({names[:8]}"
                f"{' ...' if len(names) > 8 else ''} in {store.folder}); finish the runs of every "
                f"kernel.shard in [0, kernel.num_shards={self.settings.num_shards}) first")
        kernel = store.merge()
        kernel.meta.update(cached=False, seconds=counts["seconds"], blocks_computed=counts["blocks_computed"],
                           blocks_skipped=counts["blocks_skipped"])
        self.cache.save(store.key, kernel, store.payload)
        kernel.meta["key"] = store.key
        return kernel

    def fill(self, targets: Sequence[Example], candidates: Sequence[Example],
             aggregate: str = DEFAULT_AGGREGATE) -> dict[str, Any]:
        """Compute only this shard's missing blocks (``learned``: of its exact sample kernel; ``knn``:
        its row blocks); never fails because other shards are unfinished."""
        if not self.approximation.exact:
            return approximate_fill(self, targets, candidates, aggregate)
        return self.exact_fill(targets, candidates, aggregate)

    def exact_fill(self, targets: Sequence[Example], candidates: Sequence[Example],
                   aggregate: str = DEFAULT_AGGREGATE) -> dict[str, Any]:
        """Compute only this shard's missing blocks of the exact kernel."""
        store = self.block_store(targets, candidates, aggregate)
        if self.cache.path(store.key).exists():
            return {"key": store.key, "aggregate": store.aggregate, "complete": True, "blocks_computed": 0,
                    "blocks_skipped": 0, "pairs": 0, "tokens": 0, "seconds": 0.0}
        counts = self._fill(store, targets, candidates)
        counts.update(key=store.key, aggregate=store.aggregate, complete=next(store.missing(), None) is None)
        return counts

    def _fill(self, store: BlockStore, targets: Sequence[Example], candidates: Sequence[Example]) -> dict[str, Any]:
        settings = self.settings
        store.ensure_manifest()  # checked even when nothing is left to do: a damaged one is rewritten
        mine = [b for b in store.blocks() if shard_of(b, settings.num_shards) == settings.shard]
        todo = [b for b in mine if not store.has(b)]  # damaged blocks are reported, removed and redone
        counts: dict[str, Any] = {"blocks_computed": 0, "blocks_skipped": len(mine) - len(todo), "pairs": 0,
                                  "tokens": 0, "seconds": 0.0}
        if not todo:
            log.info("kernel %s: all %d blocks of shard %d/%d already on disk", store.key[:12], len(mine),
                     settings.shard, settings.num_shards)
            return counts
        tgt = self._tokens(targets)
        cand = tgt if targets is candidates else self._tokens(candidates)
        eos = self.tokenizer.eos_token_id
        for i, t in enumerate(tgt):  # fail before any forward pass, naming the example
            build_sequence([], t.query, t.response, eos, settings.eos_after_prompt, settings.max_length, targets[i].id)
        check_head_matches_forward(self.model, build_sequence([], tgt[0].query, tgt[0].response, eos,
                                                              settings.eos_after_prompt, settings.max_length))
        total_pairs = sum(len(store.rows(b)) * len(store.cols(b)) for b in todo if b.col is not None)
        bar = tqdm(total=total_pairs, desc="utility kernel", unit="pair", disable=not self.progress)
        setup = ScoringSetup(self.model, eos, self.tokenizer.pad_token_id, settings.eos_after_prompt,
                             settings.max_length, settings.batch_size, settings.tokens_per_batch, on_pairs=bar.update,
                             workers=settings.workers, aggregate=store.aggregate)
        started = time.perf_counter()
        stats = BlockStats()
        try:
            for block in todo:
                d, block_stats = self._compute_block(setup, store, block, tgt, cand)
                store.save(block, d, block_stats.as_dict())
                stats.add(block_stats)
                counts["blocks_computed"] += 1
        finally:
            bar.close()
        counts.update(pairs=stats.pairs, tokens=stats.tokens, seconds=time.perf_counter() - started)
        log.info("utility kernel %s (%dx%d, %s, shard %d/%d): %d pairs, %d tokens in %.1f s (%.1f pairs/s); "
                 "blocks computed %d, skipped %d", store.key[:12], *store.shape, store.aggregate, settings.shard,
                 settings.num_shards,
                 stats.pairs, stats.tokens, counts["seconds"], stats.pairs / max(counts["seconds"], 1e-9),
                 counts["blocks_computed"], counts["blocks_skipped"])
        cuts = {k: getattr(stats, k) for k in ("shown_truncated", "shown_dropped", "query_truncated")}
        if any(cuts.values()):
            log.warning("kernel.max_length=%d truncated sequences: %s (a pair whose shown example was dropped "
                        "scores like zero-shot, UF = 0)", settings.max_length, cuts)
        return counts

    @staticmethod
    def _compute_block(setup: ScoringSetup, store: BlockStore, block: Block, tgt, cand):
        rows = [tgt[i] for i in store.rows(block)]
        if block.col is None:
            return score_zero_shot(setup, rows)
        return score_one_shot(setup, rows, [cand[j] for j in store.cols(block)])

    def embeddings(self, examples: Sequence[Example]) -> np.ndarray:
        """(n, d) L2-normalised sentence embeddings (``kernel.embedder``) of the approximations."""
        return embed_examples(examples, self.approximation.embedder)

    def _tokens(self, examples: Sequence[Example]) -> list[TokenizedExample]:
        return tokenize_examples(examples, self.tokenizer, self.template, self.settings)

    def release(self) -> None:
        """Drop the scoring model so training can have the memory."""
        self._model = None
