"""How a Hydra sweep is read and named: the swept keys, the ``delift_job_dir`` resolver that names job folders
(``conf/config.yaml``: ``hydra.sweep.subdir``; see :mod:`delift.tracking.naming`), the launch info of a job,
and the rule for budget-independent selectors.

Budget-independent selectors (``initial``, ``full``) in a sweep over ``budget_fraction`` (in
``hydra.sweeper.params``, as in ``experiment=budget_curve``, or on the command line) run once per
combination of the other swept values, at the first listed fraction; their jobs at the other
fractions write ``skipped.json`` and stop before any work. ``delift-plan`` counts them by the same rule.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from delift.tracking.identity import LaunchInfo
from delift.tracking.naming import job_dirname, override_key

JOB_DIR_RESOLVER = "delift_job_dir"


def sweep_arguments(sweep_dir: str | Path | None) -> list[str] | None:
    """The sweep's arguments as the basic sweeper combined them: ``hydra.sweeper.params`` as ``key=value``,
    then the command line (a later value for a key replaces an earlier one), from the ``multirun.yaml``
    it saves before launching; None when there is none (a single run, another sweeper)."""
    path = Path(sweep_dir) / "multirun.yaml" if sweep_dir else None
    if path is None or not path.is_file():
        return None
    saved = OmegaConf.load(path)
    params = OmegaConf.select(saved, "hydra.sweeper.params") or {}
    return [f"{k}={v}" for k, v in params.items()] + [str(a) for a in OmegaConf.select(saved, "hydra.overrides.task")
                                                        or []]


def _parse(argument: str) -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(argument)
    except Exception:  # noqa: BLE001 - not ours to validate: Hydra already accepted or rejected it
        return None


def swept_keys(sweep_dir: str | Path | None, params: Any = None) -> list[str]:
    """The keys a sweep varies, in sweep order: ``hydra.sweeper.params``' keys, then command-line sweeps
    (``a,b``, ``range(...)``, ``glob(...)``). Without a ``multirun.yaml``: the keys of ``params``."""
    arguments = sweep_arguments(sweep_dir)
    if arguments is None:
        return [str(k) for k in (params or {})]
    keys = [override_key(a) for a in arguments if (o := _parse(a)) is not None and o.is_sweep_override()]
    return list(dict.fromkeys(keys))


def swept_fractions(sweep_dir: str | Path) -> list[float]:
    """The ``budget_fraction`` values the basic sweeper expanded (see :func:`sweep_arguments`)."""
    return fractions_of(sweep_arguments(sweep_dir) or [])


def fractions_of(arguments: list[str]) -> list[float]:
    """The ``budget_fraction`` values that sweep arguments (``hydra.sweeper.params``, then the command line)
    expand to; [] when they do not sweep it over numbers."""
    chosen = [a for a in arguments if override_key(a) == "budget_fraction" and not a.startswith("~")]
    override = _parse(chosen[-1]) if chosen else None
    if override is None:
        return []
    try:
        values = list(override.sweep_string_iterator()) if override.is_discrete_sweep() else [override.value()]
        return [float(v) for v in values]
    except Exception:  # noqa: BLE001 - not a list of numbers (e.g. interval(...) for another sweeper): no dedup
        return []


def _job_dir(num: Any, overrides: Any, sweep_dir: Any = None, params: Any = None) -> str:
    return job_dirname(num, [str(o) for o in (overrides or [])], swept_keys(sweep_dir, params))


def register_resolvers() -> None:
    """``${delift_job_dir:<job number>,<job overrides>[,<sweep dir>,<hydra.sweeper.params>]}``: a job folder name."""
    OmegaConf.register_new_resolver(JOB_DIR_RESOLVER, _job_dir, replace=True)



def launch_info() -> LaunchInfo:
    """The overrides, group choices and (in a multirun) sweep folder, job number and swept keys of this job."""
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    params = OmegaConf.select(hc, "sweeper.params", default=None)
    return LaunchInfo(overrides=[str(o) for o in hc.overrides.task],
                      choices={str(k): (None if v is None else str(v)) for k, v in hc.runtime.choices.items()},
                      sweep_dir=str(hc.sweep.dir) if multirun else None,
                      job_num=int(hc.job.num) if multirun else None,
                      swept=swept_keys(hc.sweep.dir, params) if multirun else [])


def is_budget_independent(target: str) -> bool:
    """The selector class's own ``budget_independent`` (:class:`delift.selection.base.Selector`)."""
    from hydra.utils import get_class

    return bool(get_class(target).budget_independent)


def duplicate_reference_job(config: Any, launch: LaunchInfo) -> float | None:
    """The fraction a budget-independent selector's job runs at instead, when this job is a repeat."""
    if launch.sweep_dir is None or not is_budget_independent(config.selector._target_):
        return None
    return reference_fraction(config, swept_fractions(launch.sweep_dir))


def reference_fraction(config: Any, fractions: list[float]) -> float | None:
    """The first of the swept ``fractions`` when ``config``'s selector ignores the budget and ``config`` is at
    another of them (its job repeats the first one's), else None."""
    if not is_budget_independent(config.selector._target_):
        return None
    if len(set(fractions)) < 2 or abs(config.budget_fraction - fractions[0]) < 1e-12:
        return None
    return fractions[0]


register_resolvers()  # importing the sweep rules registers the resolver (the entry point and the plan do)
