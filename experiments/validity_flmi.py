"""Where DELIFT's FLMI does or does not concentrate on the target task, on the validity_uc2 kernels.

    python experiments/validity_flmi.py [--cache <paths.cache_dir>] [overrides...]

Reads the exact utility kernels of experiment=validity_uc2 (pool x pool and Q x pool) from the kernel
cache (``<cache>/kernels/<key>.npz``, matched by their target and candidate ids), and prints: the mean UF
within and across tasks, each pool task's query cap ``eta * max_q s_Q[i, q]``, and for several objective
settings (post-processing, self-pairs, eta) the greedy's picks: how many have a positive gain and the
target task's share among them and among all picks (base rate = the task's share of the pool).
SmolLM2-135M on synthetic tasks: a validity check of the framework, not evidence about paper-scale models.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from delift.config.loader import compose_config
from delift.kernel.cache import KernelCache
from delift.kernel.postprocess import postprocess_joint
from delift.run.usecases import load_usecase_data
from delift.selection.base import budget_from_fraction
from delift.selection.submodular import facility_location_greedy, flmi_greedy


def find_kernel(root: Path, targets: list[str], candidates: list[str]) -> np.ndarray:
    """The cached kernel of exactly these targets and candidates (any order), read by the kernel cache's reader."""
    for path in sorted((root / "kernels").glob("*.npz")):
        kernel = KernelCache.read(path)
        if kernel is not None and sorted(kernel.target_ids) == sorted(targets) \
                and sorted(kernel.candidate_ids) == sorted(candidates):
            uf = kernel.uf.toarray() if hasattr(kernel.uf, "toarray") else kernel.uf
            rows = [list(kernel.target_ids).index(t) for t in targets]
            cols = [list(kernel.candidate_ids).index(c) for c in candidates]
            return np.asarray(uf, np.float64)[np.ix_(rows, cols)]
    raise SystemExit(f"no cached kernel {len(targets)} x {len(candidates)} under {root / 'kernels'}: run "
                     "delift experiment=validity_uc2 selector=delift first (same DELIFT_CACHE_DIR)")


def block_means(uf: np.ndarray, tasks: np.ndarray) -> dict[str, tuple[float, float]]:
    off = ~np.eye(len(tasks), dtype=bool)
    out = {}
    for task in sorted(set(tasks)):
        rows = tasks == task
        within = uf[np.ix_(rows, rows)][off[np.ix_(rows, rows)]]
        across = uf[np.ix_(rows, ~rows)]
        out[task] = (float(within.mean()), float(across.mean()))
    return out


def describe(name: str, picks: list[int], gains: list[float], tasks: np.ndarray, target: str) -> str:
    positive = [p for p, g in zip(picks, gains) if g > 1e-12]
    share = np.mean([tasks[p] == target for p in picks])
    pos_share = np.mean([tasks[p] == target for p in positive]) if positive else float("nan")
    counts = Counter(tasks[p] for p in picks)
    return (f"| {name} | {len(positive)}/{len(picks)} | {pos_share:.2f} | {share:.2f} | "
            + ", ".join(f"{t} {c}" for t, c in counts.most_common()) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=None,
                        help="the sweep's cache folder (default: the config's paths.cache_dir)")
    parser.add_argument("--subsets", type=Path, nargs="*", default=[], help="job folders whose picks to count")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    cfg = compose_config(["experiment=validity_uc2", "selector=delift", *args.overrides])
    data = load_usecase_data(cfg.usecase, cfg.data, cfg.seed, cfg.paths.shared_datasets, cfg.decontaminate)
    pool, query = data.pool, data.query
    target = query[0].metadata["task"]
    tasks = np.array([ex.metadata["task"] for ex in pool])
    ids, qids = [ex.id for ex in pool], [ex.id for ex in query]
    cache = args.cache or Path(cfg.paths.cache_dir)
    uf = find_kernel(cache, ids, ids)
    uf_q = find_kernel(cache, qids, ids)  # Q x pool
    budget = budget_from_fraction(cfg.budget_fraction, len(pool))
    print(f"pool {len(pool)} ({Counter(tasks).most_common()}), |Q| {len(query)} ({target}), budget {budget}; "
          f"base rate {np.mean(tasks == target):.3f}\n")
    print("| pool task | within UF | across UF | self-pair UF | query UF mean | cap max_q clip(UF_Q) |")
    print("|---|---:|---:|---:|---:|---:|")
    cap = np.maximum(uf_q, 0).max(axis=0)
    diag = np.diag(uf)
    for task, (within, across) in block_means(uf, tasks).items():
        rows = tasks == task
        print(f"| {task} | {within:.4f} | {across:.4f} | {diag[rows].mean():.3f} | {uf_q[:, rows].mean():.4f} | "
              f"{cap[rows].mean():.4f} |")
    print("\n| objective | positive-gain picks | target share among them | target share, all picks | picks by task |")
    print("|---|---:|---:|---:|---|")
    for post in ("clip", "minmax"):
        for exclude in (False, True):
            s, s_q = postprocess_joint(uf, uf_q.T, post, exclude_self_pairs=exclude)
            for eta in (1.0, 0.25, 4.0):
                picks, gains = flmi_greedy(s, s_q, budget, eta)
                print(describe(f"FLMI {post} self-pairs {'0' if exclude else 'kept'} eta {eta:g}", picks, gains,
                               tasks, target))
        s, _ = postprocess_joint(uf, None, post, exclude_self_pairs=False)
        picks, gains = facility_location_greedy(s, budget)
        print(describe(f"FL (no Q) {post}", picks, gains, tasks, target))
    # submodlib's query-side variant FLQMI: sum_q max_{j in A} s_Q[q, j] + eta sum_{j in A} max_q s_Q[q, j]
    s_qp = np.maximum(uf_q, 0)  # Q x pool, clip
    for eta in (1.0, 0.0):
        picks, gains = flqmi_greedy(s_qp, budget, eta)
        print(describe(f"FLQMI clip eta {eta:g} (for comparison; not the paper's)", picks, gains, tasks, target))
    relevance = s_qp.max(axis=0)
    order = list(np.argsort(-relevance, kind="stable")[:budget])
    print(describe("top-k by max_q clip(UF_Q) (no diversity)", order, [1.0] * budget, tasks, target))
    for folder in args.subsets:
        subset = json.loads((folder / "subset.json").read_text())
        by_id = dict(zip(ids, tasks))
        picked = [by_id[i] for i in subset["selected_ids"]]
        counts = Counter(picked)
        print(f"| run {folder.name} | | | {np.mean([t == target for t in picked]):.2f} | "
              + ", ".join(f"{t} {c}" for t, c in counts.most_common()) + " |")


def flqmi_greedy(s_qp: np.ndarray, budget: int, eta: float) -> tuple[list[int], list[float]]:
    """Naive greedy on sum_q max_{j in A} s_qp[q, j] + eta * sum_{j in A} max_q s_qp[q, j] (ties: lowest index)."""
    best = np.zeros(s_qp.shape[0])
    relevance = s_qp.max(axis=0)
    picks, gains, free = [], [], np.ones(s_qp.shape[1], dtype=bool)
    for _ in range(budget):
        gain = np.maximum(s_qp - best[:, None], 0).sum(axis=0) + eta * relevance
        gain[~free] = -np.inf
        j = int(np.argmax(gain))
        picks.append(j)
        gains.append(float(gain[j]))
        free[j] = False
        best = np.maximum(best, s_qp[:, j])
    return picks, gains


if __name__ == "__main__":
    main()
