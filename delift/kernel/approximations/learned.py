"""``kernel.approximation=learned``: exact UF on a seeded sample, a pair network predicts the rest.

After NN-CIFT (Agarwal & Hakkani-Tur 2025): the exact UF on a seeded sample of ``learned.sample_fraction``
of the targets (and of the candidates; the same examples when targets and candidates are one list),
computed by the exact provider as an ordinary exact kernel (own cache key, resumable, shardable); a
one-hidden-layer network on sentence embeddings (:mod:`delift.kernel.pairnet`) trained on it predicts
every other entry. Sampled entries keep their exact values.
The hold-out is by example: ``holdout_fraction`` of the sampled examples are held out and every
sampled pair touching one of them is scored against the network trained on the other pairs, which
is the situation of the predicted entries (each touches at least one unsampled example).
Self-pairs are never training or hold-out pairs (showing an example its own answer is a different
regime); they are scored exactly (``exact_diagonal``), else predicted like any pair.
d_zero (zero-shot passes) is computed only for the rows whose UF needs it: the sampled rows and the
rows of exactly scored self-pairs. Every other row's UF is predicted whole, so its d_zero and d_one are
NaN (``meta["d_zero_missing"]`` counts them): with ``exact_diagonal=false`` the kernel costs the
sample kernel and no per-example pass at all.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from delift.config.checks import Problems, at_least
from delift.data.records import Example
from delift.kernel.approximations.base import ApproximationContext, CachedApproximation
from delift.kernel.settings import UtilityKernel, d_one_of, self_pairs, uf_of_entries

log = logging.getLogger(__name__)

LOW_SPEARMAN = 0.3  # a held-out rank correlation below this gets a warning
MIN_TRAIN_PAIRS = 100  # fewer training pairs than this get a warning: the network then fits a handful of numbers


@dataclass
class LearnedConfig:
    """``kernel.learned``: a small network predicts UF from sentence embeddings (see conf/kernel/default.yaml)."""

    sample_fraction: float = 0.1  # share of the pool scored exactly (as rows and columns): f^2 n^2 pairs
    holdout_fraction: float = 0.1  # share of the sampled examples held out to report the network's error
    hidden: int = 100  # ReLU units of the one hidden layer
    lr: float = 1e-4  # Adam
    batch_size: int = 64  # pairs per step
    epochs: int = 20
    seed: int = 0  # sample, hold-out split, initialisation and shuffling
    exact_diagonal: bool = True  # self-pairs (i, i) scored exactly (n passes) instead of predicted

    def problems(self) -> Problems:
        found: Problems = {}
        if not 0.0 < self.sample_fraction <= 1.0:
            found["sample_fraction"] = f"{self.sample_fraction!r}: must be in (0, 1]"
        if not 0.0 <= self.holdout_fraction < 1.0:
            found["holdout_fraction"] = f"{self.holdout_fraction!r}: must be in [0, 1)"
        for name in ("hidden", "batch_size", "epochs"):
            at_least(found, name, getattr(self, name), 1)
        at_least(found, "lr", self.lr, 0.0, strict=True)
        at_least(found, "seed", self.seed, 0)
        return found


@dataclass(frozen=True)
class LearnedSample:
    """Sorted sampled target rows and candidate columns, and the held-out ones among them."""

    rows: np.ndarray
    cols: np.ndarray
    held_rows: np.ndarray
    held_cols: np.ndarray
    square: bool  # targets and candidates are the same list: one sample, one hold-out


def learned_sample(target_ids: Sequence[str], candidate_ids: Sequence[str], settings: LearnedConfig) -> LearnedSample:
    """The seeded sample: ceil(f n) examples of each side (at least 2, or 3 with a hold-out so that 2 are left to
    train on; at most n), then the hold-out."""
    rng = np.random.default_rng(settings.seed)
    square = list(target_ids) == list(candidate_ids)
    least = 3 if settings.holdout_fraction > 0 else 2

    def draw(n: int) -> np.ndarray:
        k = min(n, max(least, math.ceil(settings.sample_fraction * n - 1e-9)))
        return np.sort(rng.choice(n, size=k, replace=False))

    def hold(index: np.ndarray) -> np.ndarray:
        if settings.holdout_fraction <= 0 or len(index) < 2:
            return np.empty(0, dtype=np.int64)
        k = min(len(index) - 1, max(1, round(settings.holdout_fraction * len(index))))
        return np.sort(rng.choice(index, size=k, replace=False))

    rows = draw(len(target_ids))
    cols = rows if square else draw(len(candidate_ids))
    held_rows = hold(rows)
    held_cols = held_rows if square else hold(cols)
    return LearnedSample(rows, cols, held_rows, held_cols, square)


def warn_small_sample(train_pairs: int, holdout_pairs: int, sample: LearnedSample, settings: LearnedConfig) -> None:
    """A warning naming the key when the sample leaves fewer than :data:`MIN_TRAIN_PAIRS` training pairs."""
    if train_pairs < MIN_TRAIN_PAIRS:
        log.warning("learned kernel: kernel.learned.sample_fraction=%g samples %d x %d examples, which leaves %d "
                    "training pairs (fewer than %d) and %d hold-out pairs: the network and its held-out Spearman "
                    "rest on a handful of numbers; raise kernel.learned.sample_fraction", settings.sample_fraction,
                    len(sample.rows), len(sample.cols), train_pairs, MIN_TRAIN_PAIRS, holdout_pairs)


class _Clock:
    """Wall seconds per named stage, each lap measured from the previous one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now


def learned_kernel(ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                   aggregate: str) -> UtilityKernel:
    from delift.kernel import pairs  # torch: imported when a kernel is computed (see approximations.base)
    from delift.kernel.agreement import spearman
    from delift.kernel.pairnet import fit_pair_network

    settings, provider = ctx.settings, ctx.provider
    t_ids, c_ids = [e.id for e in targets], [e.id for e in candidates]
    sample = learned_sample(t_ids, c_ids, settings)
    clock = _Clock()
    # every sampled pair in sub-kernel coordinates (a, b) and pool coordinates (gi, gj)
    a, b = (g.ravel() for g in np.meshgrid(np.arange(len(sample.rows)), np.arange(len(sample.cols)), indexing="ij"))
    gi, gj = sample.rows[a], sample.cols[b]
    is_self = np.array(t_ids, dtype=object)[gi] == np.array(c_ids, dtype=object)[gj]
    held = np.isin(gi, sample.held_rows) | np.isin(gj, sample.held_cols)
    train, holdout = ~is_self & ~held, ~is_self & held
    if not train.any():
        raise ValueError(f"kernel.learned.sample_fraction={settings.sample_fraction}: a sample of "
                         f"{len(sample.rows)} x {len(sample.cols)} examples leaves no training pairs after the "
                         f"hold-out (kernel.learned.holdout_fraction={settings.holdout_fraction}); raise it")
    warn_small_sample(int(train.sum()), int(holdout.sum()), sample, settings)  # before the sample kernel's cost
    sub = provider.utility([targets[i] for i in sample.rows], [candidates[j] for j in sample.cols], aggregate)
    clock.lap("sample_kernel")
    e_t = ctx.embed(targets)
    e_c = e_t if sample.square else ctx.embed(candidates)
    clock.lap("embed")
    net, fit = fit_pair_network(e_t, e_c, gi[train], gj[train], sub.uf[a[train], b[train]], settings)
    meta = {"sample_size": len(sample.rows), "sample_size_candidates": len(sample.cols),
            "sample_fraction": settings.sample_fraction, "sample_key": sub.meta.get("key"),
            "sample_cached": sub.meta.get("cached"), "train_pairs": fit.train_pairs,
            "train_mse": fit.train_mse, "train_seconds": fit.seconds, "epochs": fit.epochs,
            "holdout_examples": len(sample.held_rows) + (0 if sample.square else len(sample.held_cols)),
            "holdout_pairs": int(holdout.sum()), "holdout_mse": None, "holdout_spearman": None,
            "holdout_variance": None}
    if holdout.any():
        exact = sub.uf[a[holdout], b[holdout]]
        predicted = net.predict_pairs(e_t, e_c, gi[holdout], gj[holdout])
        meta.update(holdout_mse=float(np.mean((predicted - exact) ** 2)), holdout_spearman=spearman(predicted, exact),
                    holdout_variance=float(np.var(exact)))  # the MSE of predicting the mean, for scale
        log.info("learned kernel: held-out MSE %.3g (variance %.3g), Spearman %s over %d pairs",
                 meta["holdout_mse"], meta["holdout_variance"], meta["holdout_spearman"], meta["holdout_pairs"])
        if meta["holdout_spearman"] is not None and meta["holdout_spearman"] < LOW_SPEARMAN:
            log.warning("learned kernel: the network ranks the held-out pairs poorly (Spearman %.2f < %.1f): the "
                        "predicted entries are close to noise; raise kernel.learned.sample_fraction (now %g, %d "
                        "examples sampled)", meta["holdout_spearman"], LOW_SPEARMAN, settings.sample_fraction,
                        len(sample.rows))

    clock.lap("fit")
    uf = net.predict_matrix(e_t, e_c)
    del net
    clock.lap("predict")
    t_tok = provider.tokens(targets)
    diag_rows, diag_cols = self_pairs(t_ids, c_ids)
    meta["diagonal_exact"] = bool(settings.exact_diagonal and len(diag_rows))
    # the self-pairs scored exactly below: those outside the sample, when exact_diagonal
    outside = ~(np.isin(diag_rows, sample.rows) & np.isin(diag_cols, sample.cols)) & settings.exact_diagonal
    diag_rows, diag_cols = diag_rows[outside], diag_cols[outside]
    # d_zero is exact where UF was computed exactly (the sample rows, the exact self-pairs' rows); elsewhere
    # UF is predicted whole, so a zero-shot pass would only fill d_zero and d_one: they are left NaN
    d_zero = np.full(len(targets), np.nan)
    d_zero[sample.rows] = sub.d_zero
    others = np.setdiff1d(diag_rows, sample.rows)
    if len(others):  # (no model load when there is nothing to score, e.g. a cached sample kernel)
        with tqdm(total=len(others), desc="learned kernel: zero-shot", unit="ex",
                  disable=not provider.progress) as bar:
            d_zero[others] = pairs.score_zero(provider.scoring_setup(aggregate), [t_tok[i] for i in others],
                                        on_batch=bar.update)[0]
    meta.update(zero_shot_rows=int(np.count_nonzero(np.isfinite(d_zero))),
                d_zero_missing=int(np.count_nonzero(np.isnan(d_zero))))
    clock.lap("zero_shot")
    d_one = d_one_of(uf, d_zero, aggregate)
    uf[np.ix_(sample.rows, sample.cols)] = sub.uf  # sampled entries: their exact values
    d_one[np.ix_(sample.rows, sample.cols)] = sub.d_one
    exact_mask_count = len(sample.rows) * len(sample.cols)

    if len(diag_rows):
        c_tok = t_tok if sample.square else provider.tokens(candidates)
        with tqdm(total=len(diag_rows), desc="learned kernel: diagonal", unit="pair",
                  disable=not provider.progress) as bar:
            values, stats = pairs.score_pairs(provider.scoring_setup(aggregate, on_pairs=bar.update), t_tok, c_tok,
                                        diag_rows, diag_cols)
        d_one[diag_rows, diag_cols] = values
        uf[diag_rows, diag_cols] = uf_of_entries(d_zero[diag_rows], values, aggregate)
        exact_mask_count += len(diag_rows)
        for name in ("shown_truncated", "shown_dropped", "query_truncated"):
            meta[name] = int(sub.meta.get(name, 0) or 0) + getattr(stats, name)
    else:
        meta.update({name: sub.meta.get(name) for name in ("shown_truncated", "shown_dropped", "query_truncated")})
    if meta["diagonal_exact"]:
        clock.lap("diagonal")
    meta.update(exact_pairs=exact_mask_count, predicted_pairs=uf.size - exact_mask_count,
                embedder=ctx.config.embedder, stage_seconds=clock.seconds)
    log.info("learned kernel %dx%d, seconds per stage: %s", len(t_ids), len(c_ids), clock.seconds)
    return UtilityKernel(uf=uf, d_zero=d_zero, d_one=d_one, target_ids=t_ids, candidate_ids=c_ids, meta=meta)


class Learned(CachedApproximation):
    """``kernel.approximation=learned``."""

    name = "learned"
    Config = LearnedConfig

    def compute(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                aggregate: str, key: str) -> UtilityKernel:
        return learned_kernel(ctx, targets, candidates, aggregate)

    def fill_missing(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                     aggregate: str, key: str) -> dict[str, Any]:
        """This shard's blocks of the exact sample kernel; the network is trained by the merging run."""
        sample = learned_sample([e.id for e in targets], [e.id for e in candidates], ctx.settings)
        counts = ctx.provider.fill([targets[i] for i in sample.rows], [candidates[j] for j in sample.cols], aggregate)
        counts.update(sample_key=counts["key"], key=key, approximation=self.name)
        return counts  # "complete" is the sample kernel's

    def plan(self, planner, config, targets, candidates):
        """Exact: the sample kernel, then the zero-shot passes of the other rows with an exact self-pair, then
        those self-pairs on the per-sequence path (as ``learned_kernel`` runs them)."""
        t_ids, c_ids = [e.id for e in targets], [e.id for e in candidates]
        sample = learned_sample(t_ids, c_ids, config.learned)
        work = planner.exact([targets[i] for i in sample.rows], [candidates[j] for j in sample.cols],
                             config.block_size, config.num_shards, config.shard)
        if config.num_shards > 1 or not config.learned.exact_diagonal:
            return work  # a shard run fills only the sample kernel's blocks; no exact self-pairs
        rows, cols = self_pairs(t_ids, c_ids)
        outside = ~(np.isin(rows, sample.rows) & np.isin(cols, sample.cols))
        rows, cols = rows[outside], cols[outside]
        _, t_cont, t_scored = planner.lengths(targets)
        c_shown = planner.lengths(candidates)[0]
        others = np.setdiff1d(rows, sample.rows)
        if len(others):
            work.add(planner.zero_shot(t_cont[others], t_scored[others]))
        if len(rows):
            pairs = planner.per_sequence([planner.sequence_length(int(c_shown[j]), int(t_cont[i]))
                                          for i, j in zip(rows, cols)], t_scored[rows].tolist())
            pairs.pairs = pairs.per_sequence = pairs.sequences
            work.add(pairs)
        return work

    def block_bytes(self, sizes, config, n_targets, n_candidates):
        """The sample kernel's files (the whole kernel is dense)."""
        return round(3 * sizes.float * config.learned.sample_fraction ** 2 * n_targets * n_candidates) + sizes.block_file


APPROXIMATION = Learned()
