"""Benchmark: the approximate utility kernels (learned, knn) against the exact one, and their cost at scale.

    python experiments/bench_scale.py [--n-exact 200] [--fractions 0.1,0.2,0.3] [--neighbors 8,16,32]
                                      [--scale-sizes 1000,10000] [--scale-methods learned,knn]
                                      [--pool structured --tasks 8 --per-task 25]

Part 1, on one pool (the first ``--n-exact`` rows of ``--data``, default the offline Alpaca copy):
the exact kernel, then ``learned`` at each ``--fractions`` and ``knn`` at each ``--neighbors``. Per
method it prints the wall time of the kernel, the model passes it ran (zero-shot sequences + scored
pairs), Spearman's rank correlation of its off-diagonal UF with the exact one, and the DELIFT
selection on it (facility location on clip(UF), self-pairs kept, budget ``--budget-fraction``, submodlib's
lazy greedy as the delift selector runs it): ``fl_ratio`` = f(A_method) / f(A_exact) with both values on
the EXACT kernel, ``fl_off`` the same ratio with the self-pairs of the exact kernel set to 0 (with self-pairs
kept, the exact diagonal dominates f), and ``overlap`` = |A_method ∩ A_exact| / k. A ``random`` row gives the
chance level: the mean of each column over 100 seeded random subsets of the budget.

``--pool structured`` (see ``bench_structured.py``) replaces the pool by ``data=structured``'s T tasks x m
examples and adds, per row, the subset's task ``coverage`` (tasks with >= 1 pick / T) and ``pairs%`` (pairs
scored exactly / n^2), then the within-task vs across-task mean UF of each kernel and use case 2 (the share
of FLMI's picks from one target task against its base rate). Learned rows also show their held-out Spearman.

Part 2, pools of each ``--scale-sizes`` (the first n rows of ``--scale-data``): the wall time of each
``--scale-methods`` kernel and of the facility-location selection on it, no exact reference. ``learned``
at scale samples ``--scale-sample`` examples (sample_fraction = that / n: the sample kernel's cost stays
fixed while n grows); ``knn`` uses the largest ``--neighbors``.

The last line: ``n<largest> learned: <kernel + selection seconds>s fl_ratio@<n_exact>: <ratio>``, the
ratio being that of the smallest ``--fractions`` (the sparsest sample compared with the exact kernel) with the
self-pairs as the timed scale runs have them (``--scale-diagonal``: exact, or predicted, which skips the n
self-pair passes and, with them, every zero-shot pass outside the sample).

Every kernel is computed in a fresh cache folder (``--cache-dir`` reuses one: cached kernels then show
the seconds recorded when they were computed, marked ``cached``; so part 1 and part 2 can run as two
processes on one cache, ``--n-exact 0`` skipping part 1, and a last run on that cache prints the whole
table). Model: the run config's (``--model``: a conf/model name), dtype
``auto`` (bfloat16 on CUDA or bf16-capable CPUs, else float32), ``--device`` cpu or cuda (the model loader
puts models on CUDA whenever torch sees a GPU; ``--device cpu`` hides it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
from bench_structured import add_pool_arguments, labels_of, structured_pool  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DELIFT_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


def peak_rss_mb() -> float:
    """VmHWM of this process: its peak resident memory so far."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def similarity(kernel):
    """clip(UF) with self-pairs kept: the delift selector's defaults (a sparse knn kernel stays sparse)."""
    from delift.kernel.settings import is_sparse

    if is_sparse(kernel.uf):
        from delift.kernel.sparse import postprocess_sparse

        return postprocess_sparse(kernel.uf, None, "clip")[0]
    from delift.kernel.postprocess import postprocess_joint

    mask = np.equal.outer(np.array(kernel.target_ids), np.array(kernel.candidate_ids))
    return postprocess_joint(kernel.uf, None, "clip", False, mask)[0]


def dense(uf) -> np.ndarray:
    """A kernel's UF as a dense float64 array: a sparse (CSR) knn kernel's unscored pairs become 0, its value."""
    from delift.kernel.sparse import densify

    return densify(uf, "bench_scale's comparison with the exact kernel")


def select(s, budget: int) -> tuple[list[int], float]:
    """Facility location as the delift selector runs it (submodlib dense, the CSR lazy greedy sparse)."""
    from delift.selection.objectives import run_objective

    start = time.perf_counter()
    picks, _ = run_objective("facility_location", s, None, budget)
    return picks, time.perf_counter() - start


class Bench:
    def __init__(self, args):
        from delift.config.loader import compose_config
        from delift.data.prompts import PromptTemplate
        from delift.run.pipeline import build_parts

        cfg = compose_config([f"model={args.model}", "progress=true"])
        self.spec = build_parts(cfg).scoring_spec
        self.template = PromptTemplate(**asdict(cfg.prompt))
        self.settings = cfg.kernel
        self.args = args

    def read_pool(self, path: str, fmt: str, n: int):
        """The first n rows of the file whose responses fit in kernel.max_length (as kernel.on_overflow=skip)."""
        from delift.data.loading import load_examples
        from delift.run.pipeline import drop_overflowing

        rows = load_examples({"name": Path(path).parent.name, "format": fmt, "local_path": path,
                              "on_bad_row": "skip", "max_rows": n + n // 10 + 20})
        fits, dropped = drop_overflowing(rows, self.kernels(Path(tempfile.gettempdir())).provider, self.template,  # tokenizer only
                                         replace(self.settings, on_overflow="skip"))
        if len(fits) < n:
            sys.exit(f"{path} has {len(fits)} usable rows, fewer than the {n} asked for: pass --scale-data / --data "
                     f"with a larger file (the offline Alpaca copy has 9,229 rows; Dolly-15k has 15,015)")
        print(f"pool: first {n} rows of {path} whose responses fit ({len(dropped)} longer ones skipped)")
        return fits[:n]

    def kernels(self, cache_dir: Path, method: str = "exact", **extra):
        """The kernels under ``method``; ``extra`` = {strategy name: its settings to change}."""
        from delift.kernel.cache import KernelCache
        from delift.kernel.front import Kernels
        from delift.kernel.provider import KernelProvider

        blocks = {name: replace(getattr(self.settings, name), **values) for name, values in extra.items()}
        config = replace(self.settings, approximation=method, **blocks)
        return Kernels(KernelProvider(self.spec, self.template, config, KernelCache(cache_dir / "kernels"),
                                      progress=True))

    def kernel(self, cache_dir: Path, pool, method: str = "exact", **extra):
        kernels = self.kernels(cache_dir, method, **extra)
        start = time.perf_counter()
        kernel = kernels.utility(pool, pool)
        seconds = time.perf_counter() - start
        if kernel.meta.get("cached") and kernel.meta.get("seconds") is not None:
            seconds = float(kernel.meta["seconds"])  # as recorded when it was computed
        kernels.release()
        return kernel, seconds


def passes(kernel, method: str, n: int) -> str:
    meta = kernel.meta
    if method == "exact":
        return f"{n} zero-shot + {n * n} pairs"
    return f"{meta.get('zero_shot_rows', n)} zero-shot + {meta.get('exact_pairs', 0)} pairs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2_135m", help="a conf/model name")
    parser.add_argument("--device", default="cpu", help="cpu | cuda")
    parser.add_argument("--data", default=str(SHARED / "alpaca" / "train.jsonl"))
    parser.add_argument("--format", default="alpaca", help="data format of --data and --scale-data")
    add_pool_arguments(parser)
    parser.add_argument("--n-exact", type=int, default=200,
                        help="pool of the exact comparison (n^2 exact pairs); 0 skips part 1")
    parser.add_argument("--fractions", default="0.1,0.2,0.3", help="learned: sample fractions compared")
    parser.add_argument("--neighbors", default="8,16,32", help="knn: neighbours compared")
    parser.add_argument("--budget-fraction", type=float, default=0.3)
    parser.add_argument("--scale-sizes", default="1000,10000", help="pools timed without a reference ('' skips)")
    parser.add_argument("--scale-methods", default="learned,knn")
    parser.add_argument("--scale-data", default=None, help="file of the scale pools (default: --data)")
    parser.add_argument("--scale-sample", type=int, default=200, help="learned at scale: examples sampled")
    parser.add_argument("--scale-diagonal", default="exact", choices=("exact", "predicted"),
                        help="learned at scale: self-pairs scored exactly (n passes) or predicted (none); with "
                             "'predicted' part 1 adds a row of the smallest fraction with predicted self-pairs")
    parser.add_argument("--cache-dir", default=None, help="reuse this cache folder (default: a fresh one)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--selection-only", action="store_true", help="only select from a seeded random sparse "
                        "kernel of --n x the largest --neighbors (experiments/scale_selection.py; no model)")
    parser.add_argument("--n", type=int, default=100_000, help="--selection-only: the pool size")
    args = parser.parse_args()
    if args.selection_only:
        from scale_selection import run_selection  # experiments/ is this script's folder

        run_selection(args.n, max(int(m) for m in args.neighbors.split(",") if m), args.budget_fraction)
        return
    if args.device not in ("cpu", "cuda"):
        sys.exit(f"--device {args.device}: expected cpu or cuda")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the model loader moves models to CUDA whenever it sees one
    if not Path(args.data).is_file():
        sys.exit(f"{args.data} does not exist: point --data at an instruction JSONL file")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device (a CPU-only torch build? see README, 'On a GPU machine')")
    if args.threads:
        torch.set_num_threads(args.threads)
    fractions = [float(f) for f in args.fractions.split(",") if f]
    neighbors = [int(m) for m in args.neighbors.split(",") if m]
    sizes = [int(n) for n in args.scale_sizes.split(",") if n]
    methods = [m for m in args.scale_methods.split(",") if m]
    bench = Bench(args)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch:
        cache_dir = Path(args.cache_dir or scratch)
        print(f"model {bench.spec.name} ({bench.spec.resolved_dtype}), device {args.device}, threads "
              f"{torch.get_num_threads()}, cache {cache_dir}")
        part1 = args.n_exact > 0 or args.pool == "structured"
        ratio_line = compare(bench, cache_dir, args, fractions, neighbors) if part1 else float("nan")
        last = None
        for n in sizes:
            pool = (structured_pool(args, n) if args.pool == "structured"
                    else bench.read_pool(args.scale_data or args.data, args.format, n))
            budget = max(1, int(args.budget_fraction * n))
            for method in methods:
                extra = ({"learned": {"sample_fraction": min(1.0, args.scale_sample / n),
                                      "exact_diagonal": args.scale_diagonal == "exact"}} if method == "learned"
                         else {"knn": {"neighbors": max(neighbors)}})
                kernel, seconds = bench.kernel(cache_dir, pool, method, **extra)
                picks, select_seconds = select(similarity(kernel), budget)
                cached = " (cached)" if kernel.meta.get("cached") else ""
                held = kernel.meta.get("holdout_spearman")
                held = f", held-out Spearman {held:.3f}" if isinstance(held, float) else ""
                print(f"n={n} {method} {extra}: kernel {seconds:.1f} s{cached} ({passes(kernel, method, n)}{held}), "
                      f"selection of {len(picks)} {select_seconds:.1f} s, peak RSS {peak_rss_mb():.0f} MB")
                if method == "learned":
                    last = (n, seconds + select_seconds)
                del kernel
        if last is not None:
            print(f"n{last[0]} learned: {last[1]:.0f}s fl_ratio@{args.n_exact}: {ratio_line:.4f}")
        else:
            print(f"fl_ratio@{args.n_exact} learned: {ratio_line:.4f}")


RANDOM_DRAWS = 100  # seeded random subsets of the budget: the chance level of fl_ratio and overlap


def compare(bench: Bench, cache_dir: Path, args, fractions: list[float], neighbors: list[int]) -> float:
    """Part 1; returns the learned FL ratio at the smallest fraction (self-pairs as ``--scale-diagonal``)."""
    from bench_structured import learned_extra, report_blocks, report_usecase2, tasks_of

    from delift.kernel.agreement import coverage, fl_off, off_diagonal_spearman, overlap
    from delift.selection.submodular import facility_location_value

    structured = args.pool == "structured"
    pool = structured_pool(args) if structured else bench.read_pool(args.data, args.format, args.n_exact)
    args.n_exact = n = len(pool)  # structured: T x m (+ mixed rows), for the last line
    labels = labels_of(pool) if structured else None
    tasks = tasks_of(labels) if structured else None
    budget = max(1, int(args.budget_fraction * n))
    exact, seconds = bench.kernel(cache_dir, pool)
    s_exact = similarity(exact)
    exact_picks, _ = select(s_exact, budget)
    best = facility_location_value(s_exact, exact_picks)
    cached = " (cached)" if exact.meta.get("cached") else ""
    print(f"n={n}, budget {budget}: exact kernel {seconds:.1f} s{cached} ({passes(exact, 'exact', n)}), "
          f"f(A_exact) = {best:.4f}")

    def scores(picks) -> list[float]:
        row = [facility_location_value(s_exact, picks) / best if best > 0 else float("nan"),
               fl_off(s_exact, picks, exact_picks), overlap(picks, exact_picks)]
        return row + ([coverage(picks, labels, tasks)] if structured else [])

    runs = [("learned", {"learned": {"sample_fraction": f}}, f"learned f={f:g}") for f in sorted(fractions)]
    if fractions and args.scale_diagonal == "predicted":
        runs.append(("learned", {"learned": {"sample_fraction": min(fractions), "exact_diagonal": False}},
                     f"learned f={min(fractions):g} pred-diag"))
    tuned = learned_extra(args.learned_extra)
    if tuned:
        tag = " ".join(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in tuned.items())
        runs += [("learned", {"learned": {"sample_fraction": f, **tuned}}, f"learned f={f:g} {tag}")
                 for f in sorted(fractions)]
    runs += [("knn", {"knn": {"neighbors": m}}, f"knn m={m}") for m in neighbors]
    width = max([22, *(len(label) for *_, label in runs)])
    extra_head = f" {'coverage':>9} {'pairs%':>7} {'held_rho':>8}" if structured else ""
    print(f"{'method':<{width}} {'seconds':>8} {'passes':>28} {'spearman':>9} {'fl_ratio':>9} {'fl_off':>8} "
          f"{'overlap':>8}" + extra_head)

    def row(label: str, seconds: float, passes_text: str, rho: str, values, pairs: float | None = None,
            held: float | None = None) -> str:
        text = (f"{label:<{width}} {seconds:>8.1f} {passes_text:>28} {rho:>9} {values[0]:>9.4f} {values[1]:>8.4f} "
                f"{values[2]:>8.3f}")
        if structured:
            text += f" {values[3]:>9.3f} {'' if pairs is None else f'{100 * pairs:.1f}':>7} "
            text += f"{'' if held is None else f'{held:.3f}':>8}"
        return text

    print(row("exact", seconds, passes(exact, "exact", n), "1.000", scores(exact_picks), 1.0))
    rng = np.random.default_rng(0)
    chance = np.mean([scores(rng.choice(n, size=budget, replace=False).tolist()) for _ in range(RANDOM_DRAWS)],
                     axis=0)
    print(row(f"random ({RANDOM_DRAWS} draws)", 0.0, "none", "n/a", chance))
    ratios, ufs, similarities = {}, {"exact": exact.uf}, {"exact": s_exact}
    for method, extra, label in runs:
        kernel, seconds = bench.kernel(cache_dir, pool, method, **extra)
        kernel.uf = dense(kernel.uf)
        rho = off_diagonal_spearman(kernel.uf, exact.uf)
        s_method = similarity(kernel)
        picks, _ = select(s_method, budget)
        values = scores(picks)
        ratios[label] = values[0]
        ufs[label], similarities[label] = kernel.uf, s_method
        held = kernel.meta.get("holdout_spearman")
        pairs = kernel.meta.get("exact_pairs")
        print(row(label, seconds, passes(kernel, method, n), f"{rho:.3f}" if rho is not None else "n/a", values,
                  pairs / (n * n) if isinstance(pairs, int) else None, held if isinstance(held, float) else None)
              + (" (cached)" if kernel.meta.get("cached") else ""))
    if structured:
        report_blocks(ufs, labels)
        report_usecase2(similarities, labels, args.target_task, RANDOM_DRAWS)
    if not fractions:
        return float("nan")
    return ratios[f"learned f={min(fractions):g}" + (" pred-diag" if args.scale_diagonal == "predicted" else "")]


if __name__ == "__main__":
    main()
