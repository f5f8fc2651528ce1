"""The exact utility kernel on demand: look up the cache, else compute the missing blocks with the engine, merge, store.

``utility`` returns a complete kernel (computing whatever this shard still owes); ``fill`` only
computes this shard's missing blocks (``kernel.num_shards`` / ``kernel.shard``), for sharded runs
whose blocks are merged later by any process once every shard has finished.

Both take an optional ``aggregate`` (``delift.kernel.settings.AGGREGATES``): ``distance`` (default,
DELIFT's d and UF = d_zero - d_one) or ``logprob_sum`` (sums of log p; UF = l_one - l_zero). It is part
of the cache key only when it is not the default, so the keys of DELIFT kernels are those of before.
A selector names it in a :class:`KernelRequest` from ``kernel_requests``; ``fill(*request)`` and
``utility(*request)`` accept both such a request and a plain (targets, candidates) pair.

The provider computes exact kernels only. The approximations (``kernel.approximation``) are strategies
that use it (:mod:`delift.kernel.approximations`), chosen by the front object :class:`delift.kernel.front.Kernels`.
Its public scoring API (``tokens``, ``scoring_setup``) is what they build on.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

from tqdm.auto import tqdm

from delift.data.prompts import PromptTemplate
from delift.data.records import Example, fingerprint
from delift.kernel.blocks import Block, BlockStore, IncompleteKernelError, adopted_block_size, block_size_for, shard_of
from delift.kernel.cache import KernelCache, kernel_cache_key
from delift.kernel.engine import BlockStats, ScoringSetup, score_one_shot, score_zero_shot
from delift.kernel.probabilities import check_head_matches_forward
from delift.kernel.sequences import build_sequence
from delift.kernel.settings import DEFAULT_AGGREGATE, BaseKernelConfig, UtilityKernel, check_aggregate
from delift.kernel.tokens import TokenizedExample, tokenize_examples
from delift.models.config import ModelConfig
from delift.models.loading import load_model, load_tokenizer, model_identity

log = logging.getLogger(__name__)


class KernelProvider:
    """Computes exact utility kernels for any (targets, candidates) pair of example lists, cached on disk.

    ``config`` is the ``kernel`` config (its exact-kernel fields are read here; the approximation's are
    the strategies')."""

    def __init__(self, model_spec: ModelConfig, template: PromptTemplate, config: BaseKernelConfig,
                 cache: KernelCache, progress: bool = True):
        self.model_spec = model_spec
        self.template = template
        self.config = config
        self.cache = cache
        self.progress = progress
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

    def model_identity(self) -> dict[str, Any]:
        """The scoring model's identity, as the kernel's key carries it."""
        return model_identity(self.model_spec)

    def cache_payload(self, targets: Sequence[Example], candidates: Sequence[Example],
                      aggregate: str = DEFAULT_AGGREGATE) -> dict[str, Any]:
        """What the kernel's key hashes; ``aggregate`` is added only when it is not the default."""
        payload = {
            "model": self.model_identity(),
            "targets": fingerprint(targets),
            "candidates": fingerprint(candidates),
            "prompt_template": [self.template.with_input, self.template.without_input],
            "kernel": self.config.identity(),
        }
        if check_aggregate(aggregate) != DEFAULT_AGGREGATE:
            payload["aggregate"] = aggregate
        return payload

    def block_store(self, targets: Sequence[Example], candidates: Sequence[Example],
                    aggregate: str = DEFAULT_AGGREGATE) -> BlockStore:
        """The kernel's blocks on disk: tiled by ``blocks.block_size_for`` (small kernels split finer when sharded),
        or by the block size of the ``tiles<b>/`` folder of this key that already holds most of its blocks."""
        payload = self.cache_payload(targets, candidates, aggregate)
        key = kernel_cache_key(payload)
        c, n, m = self.config, len(targets), len(candidates)
        size = adopted_block_size(self.cache.root, key, block_size_for(c.block_size, n, m, c.num_shards), n, m)
        return BlockStore(self.cache.root, key, size, [e.id for e in targets], [e.id for e in candidates], payload,
                          aggregate)

    def utility(self, targets: Sequence[Example], candidates: Sequence[Example],
                      aggregate: str = DEFAULT_AGGREGATE) -> UtilityKernel:
        """The complete exact kernel: from the cache, else this shard's blocks are computed and all are merged."""
        store = self.block_store(targets, candidates, aggregate)
        kernel = self.cache.load(store.key, store.target_ids, store.candidate_ids)
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
                f"kernel.shard in [0, kernel.num_shards={self.config.num_shards}) first")
        kernel = store.merge()  # its seconds: every block's compute time, whichever run or shard computed it
        kernel.meta.update(cached=False, blocks_computed=counts["blocks_computed"],
                           blocks_skipped=counts["blocks_skipped"])
        log.info("kernel %s merged from %s: blocks computed %d, skipped %d; %.1f s of block compute in all",
                 store.key[:12], store.folder.name, counts["blocks_computed"], counts["blocks_skipped"],
                 kernel.meta["seconds"])
        self.cache.save(store.key, kernel, store.payload)
        kernel.meta["key"] = store.key
        return kernel

    def fill(self, targets: Sequence[Example], candidates: Sequence[Example],
             aggregate: str = DEFAULT_AGGREGATE) -> dict[str, Any]:
        """Compute only this shard's missing blocks of the exact kernel; never fails because other shards
        are unfinished."""
        store = self.block_store(targets, candidates, aggregate)
        if self.cache.path(store.key).exists():
            return {"key": store.key, "aggregate": store.aggregate, "complete": True, "blocks_computed": 0,
                    "blocks_skipped": 0, "pairs": 0, "tokens": 0, "seconds": 0.0}
        counts = self._fill(store, targets, candidates)
        counts.update(key=store.key, aggregate=store.aggregate, complete=next(store.missing(), None) is None)
        return counts

    def _fill(self, store: BlockStore, targets: Sequence[Example], candidates: Sequence[Example]) -> dict[str, Any]:
        config = self.config
        store.ensure_manifest()  # checked even when nothing is left to do: a damaged one is rewritten
        store.remove_stale_temporaries()  # a killed run's half-written blocks
        mine = [b for b in store.blocks() if shard_of(b, config.num_shards) == config.shard]
        todo = [b for b in mine if not store.has(b)]  # damaged blocks are reported, removed and redone
        counts: dict[str, Any] = {"blocks_computed": 0, "blocks_skipped": len(mine) - len(todo), "pairs": 0,
                                  "tokens": 0, "seconds": 0.0}
        if not todo:
            log.info("kernel %s: all %d blocks of shard %d/%d already on disk", store.key[:12], len(mine),
                     config.shard, config.num_shards)
            return counts
        tgt = self.tokens(targets)
        cand = tgt if targets is candidates else self.tokens(candidates)
        eos = self.tokenizer.eos_token_id
        for i, t in enumerate(tgt):  # fail before any forward pass, naming the example
            build_sequence([], t.query, t.response, eos, config.eos_after_prompt, config.max_length, targets[i].id)
        check_head_matches_forward(self.model, build_sequence([], tgt[0].query, tgt[0].response, eos,
                                                              config.eos_after_prompt, config.max_length))
        total_pairs = sum(len(store.rows(b)) * len(store.cols(b)) for b in todo if b.col is not None)
        bar = tqdm(total=total_pairs, desc="utility kernel", unit="pair", disable=not self.progress)
        setup = self.scoring_setup(store.aggregate, on_pairs=bar.update)
        started = time.perf_counter()
        stats = BlockStats()
        try:
            for block in todo:
                block_started = time.perf_counter()
                d, block_stats = self._compute_block(setup, store, block, tgt, cand)
                store.save(block, d, block_stats.as_dict(), time.perf_counter() - block_started)
                stats.add(block_stats)
                counts["blocks_computed"] += 1
        finally:
            bar.close()
        counts.update(pairs=stats.pairs, tokens=stats.tokens, seconds=time.perf_counter() - started)
        log.info("utility kernel %s (%dx%d, %s, shard %d/%d): %d pairs, %d tokens in %.1f s (%.1f pairs/s); "
                 "blocks computed %d, skipped %d", store.key[:12], *store.shape, store.aggregate, config.shard,
                 config.num_shards,
                 stats.pairs, stats.tokens, counts["seconds"], stats.pairs / max(counts["seconds"], 1e-9),
                 counts["blocks_computed"], counts["blocks_skipped"])
        cuts = {k: getattr(stats, k) for k in ("shown_truncated", "shown_dropped", "query_truncated")}
        if any(cuts.values()):
            log.warning("kernel.max_length=%d truncated sequences: %s (a pair whose shown example was dropped "
                        "scores like zero-shot, UF = 0)", config.max_length, cuts)
        return counts

    @staticmethod
    def _compute_block(setup: ScoringSetup, store: BlockStore, block: Block, tgt, cand):
        rows = [tgt[i] for i in store.rows(block)]
        if block.col is None:
            return score_zero_shot(setup, rows)
        return score_one_shot(setup, rows, [cand[j] for j in store.cols(block)])

    def tokens(self, examples: Sequence[Example]) -> list[TokenizedExample]:
        """The examples' token ids as the kernel sees them (query, response, shown example)."""
        return tokenize_examples(examples, self.tokenizer, self.template, self.config)

    def scoring_setup(self, aggregate: str = DEFAULT_AGGREGATE, on_pairs=None) -> ScoringSetup:
        """The model and the kernel's settings as the engine's ScoringSetup (loads the model)."""
        c, tokenizer = self.config, self.tokenizer
        return ScoringSetup.for_config(self.model, tokenizer.eos_token_id, tokenizer.pad_token_id, c,
                                       aggregate=check_aggregate(aggregate), on_pairs=on_pairs)

    def release(self) -> None:
        """Drop the scoring model so training can have the memory."""
        self._model = None
