"""Figures of one selection run folder: its utility kernel as a heatmap and its picks' gains or scores.

The kernel is ``<paths.cache_dir>/kernels/<kernel_hash>.npz`` (see :mod:`delift.kernel.cache`): array
``uf`` (targets x candidates) and a JSON ``meta`` holding ``target_ids`` and ``candidate_ids``;
``kernel_hash``, the per-pick ``gains`` and ``info`` come from subset.json. A greedy selector's ``gains``
are marginal gains of its objective (``info.positive_gain_picks``); a top-k selector's (``info.scores``)
are its scores, and ``info.filled_from_dropped`` picks (IFD) came from examples its threshold dropped.
Titles name the method (the label its selector class declares), the setting and the seed. Each function
takes a run folder or a loaded :class:`~delift.report.jobs.Job` (its files already read, not read again).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from delift.report.figures import new_figure, save
from delift.report.parts import packaged

MAX_SHOWN = 1500  # examples per heatmap axis (the first in selection order); a bigger image says nothing more


def kernel_path(run_dir: Any, cache_dir: str | Path | None = None) -> Path | None:
    """Where the run's kernel file is (None when the run has no kernel hash or the file is absent).
    A relative ``paths.cache_dir`` is tried against the working directory and the run folder's parents."""
    subset, run = result_files(run_dir)
    run_dir = folder_of(run_dir)
    key = subset.get("kernel_hash")
    if not key:
        return None
    if cache_dir is None:
        cache_dir = (run.get("config") or {}).get("paths", {}).get("cache_dir")
    if cache_dir is None:
        return None
    cache = Path(cache_dir).expanduser()
    bases = [Path.cwd(), *run_dir.resolve().parents] if not cache.is_absolute() else [Path("/")]
    for base in bases:
        candidate = base / cache / "kernels" / f"{key}.npz"
        if candidate.exists():
            return candidate
    return None


def load_kernel(path: str | Path) -> tuple[Any, list[str], list[str]]:
    """``uf`` (a scipy CSR for a sparse knn kernel: :mod:`delift.kernel.sparse`), target ids, candidate ids, read
    by the kernel cache's reader (either layout); a damaged or unreadable file is a ValueError naming it."""
    from delift.kernel.cache import KernelCache

    kernel = KernelCache.read(path)
    if kernel is None:
        raise ValueError(f"kernel file {path} is absent, unreadable or damaged (the log says why)")
    return kernel.uf, [str(i) for i in kernel.target_ids], [str(i) for i in kernel.candidate_ids]


def selection_order(ids: list[str], selected: list[str]) -> list[int]:
    """Indices of ``ids``: the selected ones in greedy order, then the rest in their stored order."""
    position = {ident: i for i, ident in enumerate(ids)}
    chosen = [position[i] for i in selected if i in position]
    taken = set(chosen)
    return chosen + [i for i in range(len(ids)) if i not in taken]


def folder_of(run: Any) -> Path:
    return Path(run.path if hasattr(run, "subset") else run)


def result_files(run: Any) -> tuple[dict, dict]:
    """subset.json and run.json of a loaded job (as read once) or of a run folder (run.json may be absent)."""
    if hasattr(run, "subset"):
        return run.subset, run.run
    run_dir = Path(run)
    found = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    return json.loads((run_dir / "subset.json").read_text()), found


def run_files(run: Any) -> tuple[dict, Any]:
    """subset.json and the seed of a run folder or loaded job."""
    subset, found = result_files(run)
    return subset, (found.get("config") or {}).get("seed")


def describe(subset: dict, seed: Any, method: str | None, setting: str) -> str:
    """``DELIFT, budget_fraction=0.25, seed 0``: what a figure of one run shows."""
    label = method or packaged().selector(str(subset.get("selector"))).label
    shown = [label, setting, "" if seed is None else f"seed {seed}"]
    return ", ".join(p for p in shown if p)


def readable(axis: Any) -> None:
    """Tick labels with few digits: a shared power of ten above the axis instead of 0.000100."""
    formatter = ScalarFormatter(useMathText=True)
    formatter.set_powerlimits((-2, 3))
    axis.set_major_formatter(formatter)
    axis.set_major_locator(MaxNLocator(6))


def kernel_heatmap(run_dir: Any, path: str | Path, cache_dir: str | Path | None = None,
                   setting: str = "", method: str | None = None, seed: Any = None) -> Any:
    """The utility kernel, candidates (columns) in selection order; when targets and candidates are the
    same examples (pool x pool) the rows follow the same order, so the diagonal is the self-pairs.
    A line marks the end of the selected subset; the title names ``method`` (default: the selector's label),
    ``setting`` (e.g. ``budget_fraction=0.25``) and ``seed`` (default: run.json's, which a running run has not
    written yet). None without a kernel file."""
    found = kernel_path(run_dir, cache_dir)
    if found is None:
        return None
    uf, targets, candidates = load_kernel(found)
    subset, recorded = run_files(run_dir)
    seed = recorded if seed is None else seed
    selected = [str(i) for i in subset["selected_ids"]]
    cols = selection_order(candidates, selected)[:MAX_SHOWN]
    square = sorted(targets) == sorted(candidates)
    target_row = {ident: i for i, ident in enumerate(targets)}
    rows = [target_row[candidates[c]] for c in cols] if square else list(range(len(targets)))[:MAX_SHOWN]
    shown = uf[np.ix_(rows, cols)]
    shown = shown.toarray() if hasattr(shown, "toarray") else shown  # sparse: only the shown block dense
    limit = float(np.abs(shown).max()) or 1.0
    fig, (ax,) = new_figure(1, width=5.6, height=4.8)
    image = ax.imshow(shown, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest", aspect="auto")
    readable(fig.colorbar(image, ax=ax, label="UF = d_zero - d_one").ax.yaxis)
    known = set(candidates)
    k = sum(1 for i in selected if i in known)
    ax.axvline(k - 0.5, color="black", linewidth=0.8)
    if square:
        ax.axhline(k - 0.5, color="black", linewidth=0.8)
    ax.set_xlabel(f"candidate (shown example), selection order; first {k} selected")
    ax.set_ylabel("target, same order (diagonal = self-pairs)" if square else "target (stored order)")
    cut = f" (first {MAX_SHOWN} shown)" if len(candidates) > MAX_SHOWN else ""
    ax.set_title(f"{describe(subset, seed, method, setting)}: utility kernel{cut}", fontsize="small")
    return save(fig, path)


def gain_curve(run_dir: Any, path: str | Path, setting: str = "", method: str | None = None,
               seed: Any = None) -> Any:
    """The gain (greedy selectors) or score (top-k selectors) of each pick, in pick order; a greedy run's
    ``positive_gain_picks`` marked where gains stop being positive (after it the fill is arbitrary), a
    top-k run's picks filled from dropped examples marked apart. The title names ``method``, ``setting``
    and ``seed`` (default: run.json's). None when the selector records no gains."""
    subset, recorded = run_files(run_dir)
    seed = recorded if seed is None else seed
    gains = [g for g in subset.get("gains") or [] if g is not None]
    if not gains:
        return None
    info = subset.get("info") or {}
    greedy = "scores" not in info  # a top-k selector records every example's score, a greedy one its objective
    picks = info.get("positive_gain_picks") if greedy else None
    filled = int(info.get("filled_from_dropped") or 0) if not greedy else 0
    xs = list(range(1, len(gains) + 1))
    what = "marginal gain of the objective" if greedy else "score (top-k selection, pick order)"
    fig, (ax,) = new_figure(1, width=5.6, height=3.8)
    kept = len(gains) - filled
    ax.plot(xs[:kept], gains[:kept], marker=".", label="marginal gain" if greedy else "score")
    if filled:
        ax.plot(xs[kept:], gains[kept:], marker="x", linestyle="none", color="C3",
                label=f"{filled} filled from dropped examples (above the threshold)")
    if picks is not None and picks < len(gains):  # a line after the last pick would mark nothing
        ax.axvline(picks + 0.5, color="red", linestyle="--", label=f"positive_gain_picks = {picks}")
    ax.set_xlim(0.5, len(gains) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    readable(ax.yaxis)
    ax.set_xlabel("greedy pick" if greedy else "pick (highest score first)")
    ax.set_ylabel(what)
    positive = f"; all {len(gains)} gains positive" if picks is not None and picks >= len(gains) else ""
    kind = "greedy gains" if greedy else "scores"
    ax.set_title(f"{describe(subset, seed, method, setting)}: {kind} of {len(gains)} picks{positive}", fontsize="small")
    ax.legend(fontsize="small")
    return save(fig, path)
