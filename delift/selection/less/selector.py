"""LESS (Xia et al. 2024, princeton-nlp/LESS): keep the pool examples whose Adam-preconditioned LoRA gradients
best match the target task's gradients.

1. warm-up (:mod:`.warmup`): LoRA on a seeded random ``warmup_fraction`` of the pool for ``epochs`` epochs;
   LoRA weights and Adam moments after every epoch; cached by model, template, pool, settings and seed;
2. features (:mod:`.features`, :mod:`.gradients`, :mod:`.projection`, :mod:`.srht`): per checkpoint,
   per-example gradients of the LoRA weights in eval mode; pool examples get ``m' / sqrt(v' + eps)``, targets
   the plain gradient; a seeded projection to ``proj_dim`` (``projection``: a Rademacher matrix or a
   subsampled randomized Hadamard transform), or exact full-dimension cosines; L2-normalised;
3. matching (:mod:`.matching`): ``score(z) = max_subtask mean_{z'} sum_i w_i cos(G_i(z), g_i(z'))`` with
   ``w_i`` the epochs' mean learning rates, normalised; the top k, highest first, ties by pool order.

Targets: use case 2, the query set Q; use cases 1 and 3, the pool dataset's own valid split.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
from tqdm.auto import tqdm

from delift.config.checks import Problems, at_least, choice
from delift.data.records import Example, fingerprint
from delift.models.loading import model_identity
from delift.scoring.cache import content_key
from delift.selection.base import ScoreSelector, SelectionContext, target_set
from delift.selection.less.deviations import less_deviations
from delift.selection.less.features import FeatureEngine, FeatureStore
from delift.selection.less.matching import best_subtask, checkpoint_weights, subtask_groups, subtask_means
from delift.selection.less.projection import UNIT_ROWS
from delift.selection.less.warmup import WarmupPlan, warm_up, warmup_identity, warmup_size
from delift.selection.work import GradientPasses, ModelWork

log = logging.getLogger(__name__)

LESS_CODE_VERSION = 1
GRADIENT_PATHS = ("fast", "reference")
PROJECTIONS = ("rademacher", "srht")


class LESSSelector(ScoreSelector):
    """Top k by LESS's influence score (see the module docstring)."""

    name = "less"
    label = "LESS"
    row_order = 3

    @dataclass
    class Config:
        _target_: str = "delift.selection.less.LESSSelector"
        # --- warm-up (plain LoRA, not 4-bit; AdamW betas .9/.999, eps 1e-8) ---
        warmup_fraction: float = 0.05  # seeded random share of the pool trained on (LESS: 5 %)
        # floor on optimizer steps over all epochs: the warm-up set grows (at random) to
        # batch_size * ceil(min_warmup_steps / epochs) examples, and cycles if the pool is smaller
        min_warmup_steps: int = 20
        epochs: int = 4  # one checkpoint (LoRA weights + Adam m, v) after each epoch (LESS: 4)
        lr: float = 2.0e-4  # peak learning rate, linear schedule (LESS: 2e-5 over many more steps)
        warmup_ratio: float = 0.03  # linear warm-up share of all steps, ceil(ratio * steps) (LESS: 0.03)
        weight_decay: float = 0.0  # AdamW weight decay (LESS: 0)
        # examples per optimizer step; loss = mean over them of each one's mean token NLL (LESS: 32 = 1 x 32 accumulation)
        batch_size: int = 8
        # clip each step's gradient norm (transformers' default, which LESS trained with); null = off
        max_grad_norm: Optional[float] = 1.0
        lora_r: int = 8  # LoRA rank (the framework's; LESS: 128)
        lora_alpha: int = 32  # LoRA alpha (LESS: 512); scaling alpha / r = 4 in both
        lora_dropout: float = 0.1  # dropout in warm-up training only; gradients are taken in eval mode (dropout off)
        target_modules: Any = "all-linear"  # peft's shorthand or a list, e.g. [q_proj, k_proj, v_proj, o_proj] (LESS)
        max_length: int = 1024  # tokens of prompt + response + EOS; the prompt is shortened from the left
        # warm-up and gradient dtype of the base model: null = model.dtype | float32 | bfloat16 | float16 (LoRA
        # weights and features stay fp32)
        dtype: Optional[str] = None
        # --- per-example gradients (response + EOS scored, prompt masked) ---
        # fast: one backward per batch, exact per-example gradients from hooks on the LoRA A/B linears |
        # reference: one backward per example
        gradient_path: str = "fast"
        forward_batch_size: int = 4  # examples per forward pass (gradients, warm-up micro-batches); memory only
        # --- projection and matching ---
        proj_dim: Optional[int] = 8192  # projection dimension (LESS: 8192); null = exact full-dimension cosines
        # rademacher: a dense seeded +-1 matrix, 2 D proj_dim flops per example (LESS: TRAK's) | srht: subsampled
        # randomized Hadamard transform (sign flips, fast Walsh-Hadamard transform of the zero-padded gradient,
        # proj_dim sampled coordinates), O(D log D); needs proj_dim <= the gradient length rounded up to a power
        # of two. SmolLM2-135M (D = 2.44M), one CPU thread: 132 s vs 5.7 s per 100 examples, scores as close to
        # the exact cosines as the matrix's (experiments/bench_less.py)
        projection: str = "rademacher"
        proj_seed: Optional[int] = None  # shared by pool and targets and every checkpoint; null = the run's seed
        # rademacher: gradient coordinates per generated block of the matrix (multiple of 128); memory only, the
        # matrix does not depend on it: host memory ~ proj_block x proj_dim x 4 B
        proj_block: int = 1024
        # examples whose gradients are stored (on disk, under less/scratch) and projected together: one pass over
        # the matrix per chunk; the unit of caching and resume
        chunk_size: int = 256
        # target metadata field naming subtasks (e.g. subject for MMLU): score = max over subtasks of the mean
        # influence; null = the whole target set is one task
        subtask_field: Optional[str] = None

        def problems(self) -> Problems:
            found: Problems = {}
            if not 0.0 < self.warmup_fraction <= 1.0:
                found["warmup_fraction"] = f"{self.warmup_fraction!r}: must be in (0, 1]"
            for key in ("min_warmup_steps", "epochs", "batch_size", "lora_r", "lora_alpha", "max_length",
                        "forward_batch_size", "chunk_size"):
                at_least(found, key, getattr(self, key), 1)
            at_least(found, "lr", self.lr, 0.0, strict=True)
            at_least(found, "weight_decay", self.weight_decay, 0.0)
            at_least(found, "proj_dim", self.proj_dim, 1)
            at_least(found, "max_grad_norm", self.max_grad_norm, 0.0, strict=True)
            for key in ("warmup_ratio", "lora_dropout"):
                if not 0.0 <= getattr(self, key) < 1.0:
                    found[key] = f"{getattr(self, key)!r}: must be in [0, 1)"
            if self.proj_block < UNIT_ROWS or self.proj_block % UNIT_ROWS:
                found["proj_block"] = f"{self.proj_block!r}: must be a positive multiple of {UNIT_ROWS}"
            choice(found, "gradient_path", self.gradient_path, GRADIENT_PATHS)
            choice(found, "projection", self.projection, PROJECTIONS)
            if self.dtype is not None:
                choice(found, "dtype", self.dtype, ("float32", "bfloat16", "float16"))
            return found

    @staticmethod
    def targets(ctx: SelectionContext) -> tuple[str, list[Example]]:
        """(name, examples) of the target set: Q in use case 2, else the pool dataset's valid split."""
        return target_set(ctx, "less")

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        """Estimated: the warm-up's LoRA epochs on its warm-up set, then per checkpoint one forward and backward
        pass per pool and target example (gradient features)."""
        c, pool = self.config, list(ctx.pool)
        _, targets = self.targets(ctx)  # an empty target set fails here as in the run
        return [GradientPasses("LESS warm-up", pool, warmup_size(len(pool), c) * c.epochs, c.max_length),
                GradientPasses("LESS gradients", pool, (len(pool) + len(targets)) * c.epochs, c.max_length,
                               note=f"{c.epochs} checkpoints x ({len(pool)} + {len(targets)}) examples")]

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        if ctx.model_spec is None or ctx.template is None:
            raise ValueError("less needs the scoring model_spec and template in the selection context")
        c, pool = self.config, list(ctx.pool)
        target_name, targets = self.targets(ctx)
        groups = subtask_groups(targets, c.subtask_field)
        settings, seed = c, int(ctx.seed)
        proj_seed = seed if c.proj_seed is None else int(c.proj_seed)
        root = Path(ctx.cache_dir or ctx.output_dir or tempfile.mkdtemp(prefix="less-")) / "less"
        warmup_key = content_key({"model": model_identity(ctx.model_spec), "template": asdict(ctx.template),
                                  "pool": fingerprint(pool), "settings": warmup_identity(c), "seed": seed,
                                  "code": LESS_CODE_VERSION})
        started = time.perf_counter()
        checkpoints = warm_up(ctx.model_spec, ctx.template, pool, settings, seed, root / "warmup" / warmup_key,
                              progress=ctx.progress, micro_batch=c.forward_batch_size)
        warmup_seconds = time.perf_counter() - started
        weights = checkpoint_weights([ckpt.mean_lr for ckpt in checkpoints])
        engine = FeatureEngine(ctx.model_spec, ctx.template, settings, FeatureStore(root / "features"),
                               {"warmup": warmup_key}, proj_dim=c.proj_dim, proj_seed=proj_seed,
                               proj_block=c.proj_block, batch_size=c.forward_batch_size,
                               gradient_path=c.gradient_path, scratch_dir=root / "scratch",
                               projection=c.projection)
        per_subtask = np.zeros((len(pool), len(groups)))
        chunks = [(s, pool[s:s + c.chunk_size]) for s in range(0, len(pool), c.chunk_size)]
        target_chunks = [targets[s:s + c.chunk_size] for s in range(0, len(targets), c.chunk_size)]
        for ckpt, weight in zip(checkpoints, weights):
            for side, examples in (("target", targets), ("train", pool)):
                bars = self._bars(ctx, ckpt.epoch, side, len(examples), c.proj_dim is not None)
                if side == "target" and c.proj_dim is None:
                    means, means_key = engine.exact_means(ckpt, targets, groups, bars[0])
                elif side == "target":
                    rows = np.concatenate([engine.projected(ckpt, chunk, False, bars) for chunk in target_chunks])
                    means = subtask_means(rows, groups)
                else:
                    for start, chunk in chunks:
                        cos = (engine.exact_cosines(ckpt, chunk, means, means_key, bars[0]) if c.proj_dim is None
                               else engine.projected(ckpt, chunk, True, bars) @ means.T)
                        per_subtask[start:start + len(chunk)] += weight * cos
                for bar in bars:
                    if bar is not None:
                        bar.close()
        engine.release()
        scores, best = best_subtask(per_subtask)
        self.diagnostics = self._diagnostics(ctx, target_name, targets, groups, checkpoints, weights, proj_seed,
                                             best, engine, warmup_seconds, time.perf_counter() - started, root,
                                             warmup_key, settings)
        return scores

    @staticmethod
    def _bars(ctx: SelectionContext, epoch: int, side: str, n: int, projected: bool) -> tuple[Any, Any]:
        bar = lambda what: tqdm(total=n, desc=f"LESS {what} epoch {epoch} {side}", unit="ex",  # noqa: E731
                                disable=not ctx.progress)
        return bar("gradients"), (bar("projection") if projected else None)

    def _projection_info(self, proj_seed: int) -> dict[str, Any]:
        c = self.config
        if c.proj_dim is None:
            return {"dim": None, "seed": proj_seed, "kind": "none: exact full-dimension cosines"}
        generator = (f"numpy Philox keyed (seed, {UNIT_ROWS}-row unit)" if c.projection == "rademacher" else
                     "signs and sampled coordinates from numpy Philox keyed (seed, 2^64 - 1) and (seed, 2^64 - 2)")
        return {"dim": c.proj_dim, "seed": proj_seed, "kind": c.projection, "generator": generator}

    def _diagnostics(self, ctx, target_name, targets, groups, checkpoints, weights, proj_seed, best, engine,
                     warmup_seconds, seconds, root, warmup_key, settings) -> dict[str, Any]:
        plan = WarmupPlan.build(len(ctx.pool), settings, int(ctx.seed))
        wins = np.bincount(best, minlength=len(groups))
        return {
            "target": {"name": target_name, "ids": [ex.id for ex in targets], "subtask_field": self.config.subtask_field,
                       "subtasks": {name: len(idx) for name, idx in groups},
                       "best_subtask_counts": {name: int(w) for (name, _), w in zip(groups, wins)}},
            "checkpoints": [{"epoch": ck.epoch, "step": ck.step, "mean_lr": ck.mean_lr, "weight": float(w),
                             "mean_loss": ck.loss, "folder": str(ck.folder)} for ck, w in zip(checkpoints, weights)],
            "weights": [float(w) for w in weights],
            "projection": self._projection_info(proj_seed),
            "warmup": {"size": len(plan.indices), "ids": [ctx.pool[i].id for i in plan.indices],
                       "steps_per_epoch": plan.steps_per_epoch, "total_steps": plan.total_steps,
                       "key": warmup_key, "seconds": warmup_seconds},
            "gradient_path": self.config.gradient_path, "lora_parameters": getattr(engine, "n_params", None),
            "computed": engine.computed, "cache_hits": engine.cache_hits, "seconds": seconds, "cache": str(root),
            "deviations": less_deviations(self.config, plan, len(ctx.pool)),
        }
