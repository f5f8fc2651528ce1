"""Extending delift from outside the package: each part built in a temporary folder and found through the config.

- a kernel approximation: one module of a package on the path (2 files: the package's ``__init__.py`` and the
  module), chosen by ``kernel.approximation=<module path>``; it runs on the tiny model, is planned (its own
  ``plan``), stored (dense, through ``KernelCache``) and drawn by the report's kernel heatmap.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from conftest import make_examples

from delift.config.checks import ConfigError
from delift.config.loader import compose_config
from delift.data.prompts import PromptTemplate
from delift.kernel.cache import KernelCache
from delift.kernel.front import Kernels
from delift.kernel.provider import KernelProvider
from delift.plan.kernel import Schedule, exact_kernel, kernel_bytes, kernel_work, stored_entries
from delift.report.kernel_figures import kernel_heatmap, load_kernel

APPROXIMATION = '''
"""A scaled exact kernel: UF times kernel settings' ``scale`` (a test's approximation)."""
from dataclasses import dataclass, replace

from delift.kernel.approximations.base import CachedApproximation


@dataclass
class HalfConfig:
    scale: float = 0.5


class Half(CachedApproximation):
    name = "plug_approx.half"
    Config = HalfConfig

    def compute(self, ctx, targets, candidates, aggregate, key):
        exact = ctx.provider.utility(targets, candidates, aggregate)
        return replace(exact, uf=exact.uf * ctx.settings.scale, meta={})

    def fill_missing(self, ctx, targets, candidates, aggregate, key):
        return ctx.provider.fill(targets, candidates, aggregate)

    def plan(self, planner, config, targets, candidates):
        return planner.exact(targets, candidates, config.block_size, config.num_shards, config.shard)


APPROXIMATION = Half()
'''


@pytest.fixture
def plug_approx(tmp_path, monkeypatch):
    package = tmp_path / "plugins" / "plug_approx"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "half.py").write_text(textwrap.dedent(APPROXIMATION))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    return "plug_approx.half"


def test_an_approximation_from_a_temporary_package_runs_is_planned_stored_and_drawn(
        plug_approx, tiny_spec, trained_tiny_model, tmp_path):
    config = compose_config(["experiment=smoke", f"kernel.approximation={plug_approx}", "kernel.block_size=3"]).kernel
    assert config.approximation_settings().scale == 0.5  # its Config's defaults
    provider = KernelProvider(tiny_spec, PromptTemplate(), config, KernelCache(tmp_path / "cache" / "kernels"),
                              progress=False)
    provider._model = trained_tiny_model
    kernels = Kernels(provider, embed=lambda examples: np.eye(len(examples), dtype=np.float32))
    pool = make_examples(5)
    kernel = kernels.utility(pool, pool)
    exact = provider.utility(pool, pool)
    np.testing.assert_array_equal(kernel.uf, 0.5 * exact.uf)
    key = kernels.key(pool, pool)
    assert key != exact.meta["key"] and kernel.meta["approximation"] == plug_approx
    stored = KernelCache.read(provider.cache.path(key), key, layout="dense")  # stored dense
    np.testing.assert_array_equal(stored.uf, kernel.uf)
    assert kernels.utility(pool, pool).meta["cached"] is True

    tokens = provider.tokens(pool)
    schedule = Schedule.of(config, 1)
    work, counted = kernel_work(schedule, config, tokens, tokens)
    assert counted and work == exact_kernel(schedule, tokens, tokens, 3) and work.pairs == 25
    assert stored_entries(config, 5, 5) == 25 and kernel_bytes(config, 5, 5, 20)[1] == 2 * 8 * 25 + 8 * 5

    run = tmp_path / "run"
    run.mkdir()
    (run / "subset.json").write_text(json.dumps({"kernel_hash": key, "selected_ids": [pool[2].id, pool[0].id]}))
    (run / "run.json").write_text(json.dumps({"config": {"seed": 0}}))
    assert kernel_heatmap(run, tmp_path / "heatmap.png", cache_dir=tmp_path / "cache") is not None
    assert (tmp_path / "heatmap.png").stat().st_size > 0
    np.testing.assert_array_equal(load_kernel(provider.cache.path(key))[0], kernel.uf)


def test_an_unknown_approximation_is_an_error_naming_it(plug_approx):
    with pytest.raises(ConfigError, match="kernel.approximation.*'knm'.*did you mean 'knn'"):
        compose_config(["experiment=smoke", "kernel.approximation=knm"])
    with pytest.raises(ConfigError, match="plug_approx.absent.*cannot be imported"):
        compose_config(["experiment=smoke", "kernel.approximation=plug_approx.absent"])
