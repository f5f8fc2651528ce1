"""report.html's subset browser: per job, what its selector picked, beside Random's picks of the same setting and seed.

A job's picks come from ``subset_examples.jsonl`` (written beside subset.json by the run's result files since
this page exists: pick order, id, instruction, input, reference output, gain or score). A run folder from
before it, or one whose file is unreadable or disagrees with subset.json, shows subset.json's ids and gains
only, and the panel says so. The gain column is the greedy marginal gain, or the score of a top-k selector
(subset.json's ``info`` holds ``scores``); Random records none (``–``). Full Data (the whole pool) is not
listed pick by pick. Every text is escaped: dataset text cannot add markup to the page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any

from delift.report.frame import sort_groups
from delift.report.jobs import BadJob, Group, Job, number, parse_json, read_text
from delift.report.labels import setting_label
from delift.report.parts import Parts

EXAMPLES_FILE = "subset_examples.jsonl"  # delift.run.listeners.SUBSET_EXAMPLES_JSONL (the report does not import run)
TEXT_FIELDS = ("instruction", "input", "output")


@dataclass
class Picks:
    """One job's picks in pick order; ``texts``: whether the examples' text was found, else ``note`` says why."""

    rows: list[dict[str, Any]]
    texts: bool
    note: str = ""


def ids_only(job: Job, why: str) -> Picks:
    ids = job.subset.get("selected_ids") or []
    gains = job.subset.get("gains") or []
    rows = [{"pick": rank, "id": ident, "gain": gains[rank - 1] if rank <= len(gains) else None}
            for rank, ident in enumerate(ids, start=1)]
    return Picks(rows, False, f"ids and gains from subset.json only: {why}")


def job_picks(job: Job) -> Picks:
    """The picks of ``job``: subset_examples.jsonl when it is there and agrees with subset.json, else ids only."""
    path = job.path / EXAMPLES_FILE
    if not path.is_file():
        return ids_only(job, f"no {EXAMPLES_FILE} (a run from before it was written)")
    try:
        rows = [parse_json(path, line, f"line {n}") for n, line in enumerate(read_text(path).splitlines(), 1)
                if line.strip()]
    except BadJob as bad:
        return ids_only(job, str(bad))
    if not all(isinstance(r, dict) for r in rows):
        return ids_only(job, f"{path}: a line is not a JSON object")
    if [r.get("id") for r in rows] != list(job.subset.get("selected_ids") or []):
        return ids_only(job, f"{path}: its ids differ from subset.json's selected_ids")
    return Picks(rows, True)


def gain_name(job: Job) -> str:
    return "score" if "scores" in (job.subset.get("info") or {}) else "gain"


def gain_text(value: Any) -> str:
    found = number(value)
    return "–" if found is None else f"{found:.4g}"


def text_cell(value: Any) -> str:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f'<td><div class="text">{escape(text)}</div></td>'


def picks_table(job: Job, picks: Picks, shared: set[str]) -> str:
    """A sortable table, one row per pick: pick, id, gain (or score), then the texts when known; a pick in
    ``shared`` (also picked by the job beside it) is marked."""
    fields = TEXT_FIELDS if picks.texts else ()
    head = ["pick", "id", gain_name(job), *("response" if f == "output" else f for f in fields)]
    lines = ['<table class="sortable picks"><thead><tr>' + "".join(f"<th>{escape(h)}</th>" for h in head)
             + "</tr></thead><tbody>"]
    for row in picks.rows:
        mark = ' class="shared" title="picked by both"' if row.get("id") in shared else ""
        lines.append(f"<tr{mark}><td>{escape(str(row.get('pick', '')))}</td><td>{escape(str(row.get('id', '')))}</td>"
                     f"<td>{gain_text(row.get('gain'))}</td>" + "".join(text_cell(row.get(f)) for f in fields) + "</tr>")
    lines.append("</tbody></table>")
    note = f'<p class="note">{escape(picks.note)}</p>' if picks.note else ""
    return note + "\n".join(lines)


def picks_block(job: Job, parts: Parts, shared: set[str] = frozenset()) -> str:
    """A job's picks (or why none are listed), those in ``shared`` marked."""
    ids = job.subset.get("selected_ids") or []
    if parts.selector(job.selector).whole_pool:
        return f'<p class="meta">every pool example ({len(ids)}): not listed</p>'
    if not ids:
        return '<p class="meta">no picks</p>'
    return picks_table(job, job_picks(job), shared)


def random_partner(groups: list[Group], group: Group, job: Job, parts: Parts) -> Job | None:
    """The reference baseline's (Random's) job of ``group``'s setting and ``job``'s seed."""
    setting = json.dumps(group.setting, sort_keys=True, default=str)
    for other in groups:
        if parts.selector(other.selector).baseline and json.dumps(other.setting, sort_keys=True, default=str) == setting:
            return next((j for j in other.jobs if json.dumps(j.seed) == json.dumps(job.seed)), None)
    return None


def job_panel(groups: list[Group], group: Group, job: Job, shown: list[str], parts: Parts) -> str:
    method = parts.method_label(group.selector, group.variant)
    setting = setting_label({k: group.setting[k] for k in shown})
    ids = job.subset.get("selected_ids") or []
    title = f"{method}{' · ' + setting if setting else ''} · seed {job.seed}"
    meta = (f"{len(ids)} of {job.subset.get('pool_size', '?')} pool examples picked (budget "
            f"{job.subset.get('budget', '?')}), in pick order; {gain_name(job)} per pick; run folder {job.path}")
    own = picks_block(job, parts)
    if not parts.selector(group.selector).baseline and ids and not parts.selector(group.selector).whole_pool:
        partner = random_partner(groups, group, job, parts)
        shared = set(ids) & set(partner.subset.get("selected_ids") or []) if partner is not None else set()
        own = picks_block(job, parts, shared)
        beside = (picks_block(partner, parts, shared) if partner is not None
                  else '<p class="meta">no Random job of this setting and seed</p>')
        both = f"; {len(shared)} picked by both (shaded)" if partner is not None else ""
        own = (f'<div class="pair"><div><h4>{escape(method)}</h4>{own}</div>'
               f'<div class="random"><h4>Random (same setting, seed {escape(str(job.seed))}){escape(both)}</h4>'
               f'{beside}</div></div>')
    return (f'<section class="job" data-selector="{escape(group.selector)}"><h3>{escape(title)}</h3>'
            f'<p class="meta">{escape(meta)}</p>{own}</section>')


def browser(groups: list[Group], shown: list[str], parts: Parts) -> str:
    """The subset browser section: a selector filter, then one panel per job in the tables' row order."""
    ordered = sort_groups(groups, list(shown), parts)
    selectors = list(dict.fromkeys(g.selector for g in ordered))
    options = ['<option value="">all selectors</option>'] + [
        f'<option value="{escape(s)}">{escape(parts.selector(s).label)}</option>' for s in selectors]
    panels = [job_panel(groups, g, job, shown, parts) for g in ordered for job in g.jobs]
    caveats = list(dict.fromkeys(c for g in ordered for job in g.jobs for c in job.run.get("caveats", [])))
    old = sum(1 for g in ordered for job in g.jobs if not (job.path / EXAMPLES_FILE).is_file()
              and job.subset.get("selected_ids") and not parts.selector(g.selector).whole_pool)
    lines = ['<section id="subsets"><h2>Subset browser</h2>',
             "<p>Per job, the examples its selector picked, in pick order, with the greedy gain or the score of each "
             "pick and the example's instruction, input and reference response; beside them Random's picks of the "
             "same setting and seed. Click a column header to sort.</p>",
             *(f"<blockquote>caveat: {escape(str(c))}</blockquote>" for c in caveats)]
    if old:
        lines.append(f'<p class="note">{old} jobs predate {EXAMPLES_FILE}: their picks show ids and gains only '
                     "(rerun them for the examples' text).</p>")
    lines += ['<div class="filter"><label for="selector-filter">selector: </label>'
              f'<select id="selector-filter">{"".join(options)}</select> <span id="filter-count"></span></div>',
              *panels, "</section>"]
    return "\n".join(lines)
