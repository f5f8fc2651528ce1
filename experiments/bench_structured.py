"""``bench_scale.py --pool structured``: the pool with known tasks, and the numbers that use its labels.

The pool is ``data=structured`` (:mod:`delift.data.structured`): ``--tasks`` T x ``--per-task`` m examples
(seed ``--pool-seed``, plus ``--mix-rows`` real Alpaca rows from the shared datasets). Besides
``bench_scale``'s columns, each row gets the subset's task coverage and the share of the pairs scored
exactly; after the table come the within-task vs across-task mean UF of each kernel, and use case 2:
the pool's examples of ``--target-task`` are the target set Q (s_Q[i, q] = clip(UF[q, i]), self-pairs 0),
FLMI selects |Q| examples, and the share of them from the target task is set against its base rate.
"""

from __future__ import annotations

import math

import numpy as np

from delift.kernel.agreement import base_rate, block_means, coverage, target_share

POOLS = ("alpaca", "structured")


def add_pool_arguments(parser) -> None:
    group = parser.add_argument_group("pool", "which pool part 1 (and the scale part) use")
    group.add_argument("--pool", default="alpaca", choices=POOLS,
                       help="alpaca: the first rows of --data; structured: the generated pool below (--n-exact unused)")
    group.add_argument("--tasks", type=int, default=8, help="structured: T tasks")
    group.add_argument("--per-task", type=int, default=25, help="structured: m examples per task")
    group.add_argument("--pool-seed", type=int, default=0, help="structured: the generator's seed")
    group.add_argument("--mix-rows", type=int, default=0, help="structured: real Alpaca rows mixed in")
    group.add_argument("--target-task", default=None, help="structured, use case 2: the target task (default: the first)")
    parser.add_argument("--learned-extra", default="", metavar="KEY=VALUE,...",
                        help="part 1: more learned rows, one per --fractions, with these kernel.learned settings "
                             "changed (e.g. lr=1e-3,epochs=100); the sample kernels are shared with the plain rows")


def learned_extra(text: str) -> dict:
    """``lr=1e-3,epochs=100`` as kernel.learned settings, each value typed like the setting's default."""
    from dataclasses import fields

    from delift.kernel.approximations.learned import LearnedConfig

    types = {item.name: type(getattr(LearnedConfig(), item.name)) for item in fields(LearnedConfig)}
    out = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        if key not in types or not value:
            raise SystemExit(f"--learned-extra {part!r}: expected KEY=VALUE with KEY one of {', '.join(types)}")
        out[key] = value.lower() in ("1", "true", "yes") if types[key] is bool else types[key](value)
    return out


def structured_pool(args, n: int | None = None) -> list:
    """The structured pool of the arguments; with ``n``, the first n rows of one with enough examples per task."""
    from delift.data.loading import load_examples

    per_task = args.per_task if n is None else max(args.per_task, math.ceil(n / args.tasks))
    settings = {"num_tasks": args.tasks, "per_task": per_task, "seed": args.pool_seed, "mix_rows": args.mix_rows}
    pool = load_examples({"name": "structured", "format": "structured", "structured": settings, "sizes": {}})
    pool = pool if n is None else pool[:n]
    print(f"pool: structured, {args.tasks} tasks x {per_task} examples + {args.mix_rows} mixed rows, seed "
          f"{args.pool_seed}{'' if n is None else f', first {n}'}")
    return pool


def labels_of(pool) -> list[str]:
    return [str(example.metadata.get("task")) for example in pool]


def tasks_of(labels: list[str]) -> list[str]:
    from delift.data.structured import MIX_TASK

    return sorted(set(labels) - {MIX_TASK})


def report_blocks(kernels: dict[str, np.ndarray], labels: list[str]) -> None:
    """Within-task vs across-task mean UF (off-diagonal pairs) of each kernel."""
    tasks = tasks_of(labels)
    print("\nmean UF off the diagonal, within one task vs across two tasks")
    width = max([22, *map(len, kernels)])
    print(f"{'kernel':<{width}} {'within':>9} {'across':>9} {'ratio':>7}")
    for label, uf in kernels.items():
        within, across = block_means(uf, labels, tasks)
        ratio = within / across if across else float("nan")
        print(f"{label:<{width}} {within:>9.4g} {across:>9.4g} {ratio:>7.3g}")


def query_kernel(s: np.ndarray, query: list[int]) -> np.ndarray:
    """s_Q (pool x Q): s_Q[i, q] = s[query[q], i], a query's own column entry set to 0."""
    s_q = np.array(s[query, :].T, dtype=np.float64)
    s_q[query, np.arange(len(query))] = 0.0
    return s_q


def report_usecase2(similarities: dict[str, np.ndarray], labels: list[str], target: str | None,
                    draws: int) -> None:
    """Use case 2 on each kernel: FLMI towards the target task's examples; the share of picks from it."""
    from delift.data.tasks import TASK_NAMES
    from delift.selection.submodular import flmi_submodlib

    tasks = tasks_of(labels)
    target = target or next(name for name in TASK_NAMES if name in tasks)
    if target not in tasks:
        raise SystemExit(f"--target-task {target}: not a task of this pool ({', '.join(tasks)})")
    query = [i for i, label in enumerate(labels) if label == target]
    budget = len(query)
    rate = base_rate(labels, target)
    print(f"\nuse case 2: target task {target} ({len(query)} examples as Q), FLMI picks {budget}; base rate {rate:.3f}")
    width = max([22, *map(len, similarities)])
    print(f"{'kernel':<{width}} {'share':>7} {'x base':>7} {'coverage':>9}")
    rng = np.random.default_rng(0)
    shares = [target_share(rng.choice(len(labels), size=budget, replace=False).tolist(), labels, target)
              for _ in range(draws)]
    print(f"{f'random ({draws} draws)':<{width}} {np.mean(shares):>7.3f} {np.mean(shares) / rate:>7.2f} {'':>9}")
    for label, s in similarities.items():
        picks, _ = flmi_submodlib(s, query_kernel(s, query), budget)
        share = target_share(picks, labels, target)
        print(f"{label:<{width}} {share:>7.3f} {share / rate:>7.2f} {coverage(picks, labels, tasks):>9.3f}")
