"""Figures of one DELIFT run folder: its utility kernel as a heatmap and its greedy gain curve.

The kernel is ``<paths.cache_dir>/kernels/<kernel_hash>.npz`` (see :mod:`delift.kernel.cache`): array
``uf`` (targets x candidates) and a JSON ``meta`` holding ``target_ids`` and ``candidate_ids``;
``kernel_hash``, the greedy ``gains`` and ``info.positive_gain_picks`` come from subset.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from delift.report.figures import new_figure, save

MAX_SHOWN = 1500  # examples per heatmap axis (the first in selection order); a bigger image says nothing more


def kernel_path(run_dir: str | Path, cache_dir: str | Path | None = None) -> Path | None:
    """Where the run's kernel file is (None when the run has no kernel hash or the file is absent).
    A relative ``paths.cache_dir`` is tried against the working directory and the run folder's parents."""
    run_dir = Path(run_dir)
    subset = json.loads((run_dir / "subset.json").read_text())
    key = subset.get("kernel_hash")
    if not key:
        return None
    if cache_dir is None:
        cache_dir = (json.loads((run_dir / "run.json").read_text()).get("config") or {}).get("paths", {}).get("cache_dir")
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
    """``uf`` (a scipy CSR for a sparse knn kernel: :mod:`delift.kernel.sparse`), target ids, candidate ids."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if "uf_indptr" in data.files:
            import scipy.sparse as sp

            uf = sp.csr_matrix((data["uf_data"], data["uf_indices"], data["uf_indptr"]),
                               shape=tuple(int(x) for x in data["uf_shape"]))
        else:
            uf = np.asarray(data["uf"])
        return uf, [str(i) for i in meta["target_ids"]], [str(i) for i in meta["candidate_ids"]]


def selection_order(ids: list[str], selected: list[str]) -> list[int]:
    """Indices of ``ids``: the selected ones in greedy order, then the rest in their stored order."""
    position = {ident: i for i, ident in enumerate(ids)}
    chosen = [position[i] for i in selected if i in position]
    taken = set(chosen)
    return chosen + [i for i in range(len(ids)) if i not in taken]


def kernel_heatmap(run_dir: str | Path, path: str | Path, cache_dir: str | Path | None = None,
                   setting: str = "") -> Any:
    """The utility kernel, candidates (columns) in selection order; when targets and candidates are the
    same examples (pool x pool) the rows follow the same order, so the diagonal is the self-pairs.
    A line marks the end of the selected subset; ``setting`` (e.g. ``scorer=...``) goes into the title.
    None without a kernel file."""
    found = kernel_path(run_dir, cache_dir)
    if found is None:
        return None
    uf, targets, candidates = load_kernel(found)
    selected = [str(i) for i in json.loads((Path(run_dir) / "subset.json").read_text())["selected_ids"]]
    cols = selection_order(candidates, selected)[:MAX_SHOWN]
    square = sorted(targets) == sorted(candidates)
    target_row = {ident: i for i, ident in enumerate(targets)}
    rows = [target_row[candidates[c]] for c in cols] if square else list(range(len(targets)))[:MAX_SHOWN]
    shown = uf[np.ix_(rows, cols)]
    shown = shown.toarray() if hasattr(shown, "toarray") else shown  # sparse: only the shown block dense
    limit = float(np.abs(shown).max()) or 1.0
    fig, (ax,) = new_figure(1, width=5.6, height=4.8)
    image = ax.imshow(shown, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest", aspect="auto")
    fig.colorbar(image, ax=ax, label="UF = d_zero - d_one")
    known = set(candidates)
    k = sum(1 for i in selected if i in known)
    ax.axvline(k - 0.5, color="black", linewidth=0.8)
    if square:
        ax.axhline(k - 0.5, color="black", linewidth=0.8)
    ax.set_xlabel(f"candidate (shown example), selection order; first {k} selected")
    ax.set_ylabel("target, same order (diagonal = self-pairs)" if square else "target (stored order)")
    cut = f" (first {MAX_SHOWN} shown)" if len(candidates) > MAX_SHOWN else ""
    ax.set_title(f"utility kernel {found.stem[:12]}{cut}{', ' + setting if setting else ''}", fontsize="small")
    return save(fig, path)


def gain_curve(run_dir: str | Path, path: str | Path, setting: str = "") -> Any:
    """The marginal gain of each greedy pick, with ``positive_gain_picks`` marked (after it the gains are 0
    and the fill is arbitrary); ``setting`` goes into the title. None when the selector records no gains."""
    subset = json.loads((Path(run_dir) / "subset.json").read_text())
    gains = [g for g in subset.get("gains") or [] if g is not None]
    if not gains:
        return None
    picks = (subset.get("info") or {}).get("positive_gain_picks")
    fig, (ax,) = new_figure(1, width=5.6, height=3.8)
    ax.plot(range(1, len(gains) + 1), gains, marker=".", label="marginal gain")
    if picks is not None:
        ax.axvline(picks + 0.5, color="red", linestyle="--", label=f"positive_gain_picks = {picks}")
    ax.set_xlabel("greedy pick")
    ax.set_ylabel("marginal gain of the objective")
    where = f", {setting}" if setting else ""
    ax.set_title(f"{subset.get('selector')}: greedy gains ({len(gains)} picks){where}", fontsize="small")
    ax.legend(fontsize="small")
    return save(fig, path)
