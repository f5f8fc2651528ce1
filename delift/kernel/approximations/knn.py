"""``kernel.approximation=knn``: each target scored exactly against its m nearest candidates only.

Neighbours: the ``knn.neighbors`` candidates of highest embedding cosine with the target (the target
itself excluded, ties to the lower index), plus the target itself when it is among the candidates:
at most n (m + 1) pairs, scored by the exact engine with prefix reuse: per row block, every candidate
that some target of the block wants is run once as a prefix (KV cache) for all those targets, and only
the wanted pairs run a continuation (``score_one_shot(..., wanted=mask)``). Every
other entry is UF = 0 (d_one = d_zero: "showing it changes nothing"); note that
``selector.postprocess=minmax`` then maps those zeros to the same value as exact zeros.

Targets are scored in blocks of ``kernel.block_size``; each block's values are written atomically to
``<cache root>/<key>/knn/rows<start>.npz`` as soon as it is done, so a killed run resumes there.
Sharding (``kernel.num_shards`` > 1): row block number b belongs to shard b % num_shards; a shard run
(``fill``) computes only its blocks, and a normal run then reads them all.
The returned kernel is sparse (:mod:`delift.kernel.sparse`): UF as a float32 CSR holding the scored pairs only,
``d_one`` None; cached so too (``<key>.npz`` in the CSR layout), so memory and disk grow as n (m + 1), not n^2.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from delift.config.checks import Problems, at_least
from delift.data.records import Example
from delift.fsutil import atomic_write
from delift.kernel.approximations.base import ApproximationContext, CachedApproximation
from delift.kernel.blocks import IncompleteKernelError
from delift.kernel.settings import UtilityKernel, uf_of_entries

log = logging.getLogger(__name__)


@dataclass
class KnnConfig:
    """``kernel.knn``: each target scored exactly against its nearest candidates only."""

    neighbors: int = 20  # m nearest candidates by embedding cosine (plus the target itself); others UF = 0

    def problems(self) -> Problems:
        found: Problems = {}
        at_least(found, "neighbors", self.neighbors, 1)
        return found


def nearest_candidates(e_targets: np.ndarray, e_candidates: np.ndarray, target_ids: Sequence[str],
                       candidate_ids: Sequence[str], neighbors: int, rows: range | None = None) -> list[np.ndarray]:
    """Per target (of ``rows``) the sorted candidate columns it is scored against: its ``neighbors``
    nearest other candidates by cosine (ties to the lower index), and itself when it is a candidate."""
    rows = range(len(e_targets)) if rows is None else rows
    where = {cid: j for j, cid in enumerate(candidate_ids)}
    sims = np.asarray(e_targets[rows.start:rows.stop], dtype=np.float64) @ np.asarray(e_candidates, np.float64).T
    out = []
    for k, i in enumerate(rows):
        row = sims[k].copy()
        own = where.get(target_ids[i])
        if own is not None:
            row[own] = -np.inf
        m = min(neighbors, len(row) - (own is not None))
        if m < len(row):
            part = np.argpartition(-row, m - 1)[:m] if m > 0 else np.empty(0, dtype=np.int64)
            threshold = row[part].min() if m > 0 else np.inf
            tied = np.flatnonzero(row >= threshold)  # keep ties deterministic: lowest indices first
            chosen = tied[np.lexsort((tied, -row[tied]))][:m]
        else:
            chosen = np.flatnonzero(np.isfinite(row))
        if own is not None:
            chosen = np.append(chosen, own)
        out.append(np.sort(chosen.astype(np.int64)))
    return out


def _load_block(path: Path, cols: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            saved_cols, d_one, d_zero = data["cols"], data["d_one"], data["d_zero"]
    except FileNotFoundError:
        return None
    except Exception as exc:
        log.warning("knn block %s is unreadable (%s); computing it again", path, exc)
        return None
    if (saved_cols.shape != cols.shape or not np.array_equal(saved_cols, cols) or d_one.shape != cols.shape
            or d_zero.shape != (n_rows,) or not np.all(np.isfinite(d_one)) or not np.all(np.isfinite(d_zero))):
        log.warning("knn block %s does not fit this kernel's pairs; computing it again", path)
        return None
    return d_one, d_zero


def _score_wanted(setup, t_tok, c_tok, pair_rows: np.ndarray, pair_cols: np.ndarray):
    """d_one of the pairs (pair_rows[k], pair_cols[k]) of one row block (and the engine's BlockStats): the
    block's targets against the union of their wanted candidates, each candidate's prefix run once (the
    engine's prefix-cached path)."""
    from delift.kernel.engine import score_one_shot  # torch: see approximations.base

    rows, local_rows = np.unique(pair_rows, return_inverse=True)
    cols, local_cols = np.unique(pair_cols, return_inverse=True)
    wanted = np.zeros((len(rows), len(cols)), dtype=bool)
    wanted[local_rows, local_cols] = True
    d, stats = score_one_shot(setup, [t_tok[i] for i in rows], [c_tok[j] for j in cols], wanted)
    return d[local_rows, local_cols], stats


def _knn_blocks(ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                aggregate: str, key: str, assemble: bool) -> tuple[UtilityKernel | None, dict[str, Any]]:
    """Compute this shard's missing row blocks (block number % ``kernel.num_shards`` == ``kernel.shard``);
    with ``assemble``, also read every block and return the sparse kernel (IncompleteKernelError when
    blocks of other shards are missing)."""
    from delift.kernel.engine import BlockStats  # torch: see approximations.base
    from delift.kernel.pairs import score_zero
    from delift.kernel.sparse import csr_rows  # scipy: composing a config stays fast

    provider, settings = ctx.provider, ctx.config
    neighbors = ctx.settings.neighbors
    t_ids, c_ids = [e.id for e in targets], [e.id for e in candidates]
    square = t_ids == c_ids
    e_t = ctx.embed(targets)
    e_c = e_t if square else ctx.embed(candidates)
    folder = ctx.cache_root / key / "knn"
    block = settings.block_size
    d_zero = np.empty(len(targets))
    columns: list[np.ndarray] = []  # per target, its scored candidates (sorted), and their UF in the same order
    uf_values: list[np.ndarray] = []
    setup, t_tok, c_tok = None, None, None
    stats, missing = BlockStats(), []
    counts: dict[str, Any] = {"blocks_computed": 0, "blocks_skipped": 0, "blocks_resumed": 0, "scored": 0}
    started = time.perf_counter()
    bar = tqdm(total=len(targets), desc="knn kernel", unit="target", disable=not provider.progress)
    for number, start in enumerate(range(0, len(targets), block)):
        rows = range(start, min(start + block, len(targets)))
        path = folder / f"rows{start}.npz"
        bar.update(len(rows))
        mine = number % settings.num_shards == settings.shard
        if not (mine or assemble):  # another shard's block: only whether it is there yet
            if not path.exists():
                missing.append(path.name)
            continue
        chosen = nearest_candidates(e_t, e_c, t_ids, c_ids, neighbors, rows)
        pair_rows = np.concatenate([np.full(len(c), i) for i, c in zip(rows, chosen)]).astype(np.int64)
        pair_cols = np.concatenate(chosen).astype(np.int64)
        found = _load_block(path, pair_cols, len(rows))
        if found is not None:
            counts["blocks_resumed" if assemble else "blocks_skipped"] += 1
        elif mine:
            if setup is None:
                setup = provider.scoring_setup(aggregate)
                t_tok = provider.tokens(targets)
                c_tok = t_tok if square else provider.tokens(candidates)
            zero, zero_stats = score_zero(setup, [t_tok[i] for i in rows])
            values, pair_stats = _score_wanted(setup, t_tok, c_tok, pair_rows, pair_cols)
            stats.add(zero_stats)
            stats.add(pair_stats)
            atomic_write(path, lambda handle, c=pair_cols, v=values, z=zero: np.savez(handle, cols=c, d_one=v,
                                                                                      d_zero=z))
            found = values, zero
            counts["blocks_computed"] += 1
        else:
            missing.append(path.name)
            continue
        if assemble:
            values, zero = found
            d_zero[rows.start:rows.stop] = zero
            columns.extend(chosen)  # pair_rows ascend, each row's columns sorted: the CSR order
            uf_values.append(uf_of_entries(zero[pair_rows - rows.start], values, aggregate))
            counts["scored"] += len(pair_rows)
    bar.close()
    counts.update(pairs=stats.pairs, tokens=stats.tokens, seconds=time.perf_counter() - started, missing=missing)
    if not assemble:
        return None, counts
    if missing:
        raise IncompleteKernelError(
            f"knn kernel {key}: {len(missing)} row blocks of other shards are missing ({missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''} in {folder}); finish the runs of every kernel.shard in "
            f"[0, kernel.num_shards={settings.num_shards}) first")
    uf = csr_rows(len(candidates), columns, np.concatenate(uf_values) if uf_values else np.empty(0))
    scored = counts["scored"]
    meta = {"neighbors": neighbors, "scored_pairs": scored, "exact_pairs": scored, "storage": "csr float32",
            "predicted_pairs": 0, "zero_pairs": len(targets) * len(candidates) - scored,
            "blocks_resumed": counts["blocks_resumed"],
            "embedder": ctx.config.embedder, "pairs": stats.pairs, "tokens": stats.tokens,
            **{name: getattr(stats, name) for name in ("shown_truncated", "shown_dropped", "query_truncated")}}
    return UtilityKernel(uf=uf, d_zero=d_zero, d_one=None, target_ids=t_ids, candidate_ids=c_ids, meta=meta), counts


class Knn(CachedApproximation):
    """``kernel.approximation=knn``."""

    name = "knn"
    Config = KnnConfig
    layout = "csr"
    planned_exactly = False

    def compute(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                aggregate: str, key: str) -> UtilityKernel:
        """The sparse knn kernel: this shard's missing row blocks computed, every block read back."""
        kernel, _ = _knn_blocks(ctx, targets, candidates, aggregate, key, assemble=True)
        return kernel


    def fill_missing(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                     aggregate: str, key: str) -> dict[str, Any]:
        """Only this shard's missing row blocks; ``complete`` when no block of any shard is left."""
        _, counts = _knn_blocks(ctx, targets, candidates, aggregate, key, assemble=False)
        return {"key": key, "aggregate": aggregate, "complete": not counts["missing"], "approximation": self.name,
                **{name: counts[name] for name in ("blocks_computed", "blocks_skipped", "pairs", "tokens", "seconds")}}

    def plan(self, planner, config, targets, candidates):
        """An estimate: which neighbours a target gets needs the embedder, so every target is taken with the
        ``neighbors`` candidates after it in pool order (and itself); each candidate's prefix runs once per row
        block, for the targets that want it."""
        _, t_cont, t_scored = planner.lengths(targets)
        c_shown = planner.lengths(candidates)[0]
        where = {e.id: j for j, e in enumerate(candidates)}
        m = config.knn.neighbors
        work = planner.empty()
        for number, start in enumerate(range(0, len(targets), config.block_size)):
            if number % config.num_shards != config.shard:
                continue
            rows = np.arange(start, min(start + config.block_size, len(targets)))
            wanted = np.zeros((len(rows), len(candidates)), dtype=bool)
            for k, i in enumerate(rows):
                own = where.get(targets[i].id)
                base = int(i) if own is None else own
                reach = min(m, len(candidates) - (own is not None))
                wanted[k, [(base + 1 + t) % len(candidates) for t in range(reach)]] = True
                if own is not None:
                    wanted[k, own] = True
            work.add(planner.zero_shot(t_cont[rows], t_scored[rows]))
            used = np.flatnonzero(wanted.any(axis=0))
            work.add(planner.one_shot(c_shown[used], t_cont[rows], t_scored[rows], wanted[:, used]))
        return work

    def stored_entries(self, config, n_targets, n_candidates):
        """At most m + 1 a target."""
        return n_targets * min(config.knn.neighbors + 1, n_candidates)

    def block_bytes(self, sizes, config, n_targets, n_candidates):
        """One file a row block: cols (int64), d_one, d_zero."""
        rows = -(-n_targets // config.block_size)
        return (2 * sizes.float * n_targets * (config.knn.neighbors + 1) + sizes.float * n_targets
                + rows * sizes.block_file)


APPROXIMATION = Knn()
