"""Extending delift from outside the package: each part built in a temporary folder and found through the config.

- a kernel approximation: one module of a package on the path (2 files: the package's ``__init__.py`` and the
  module), chosen by ``kernel.approximation=<module path>``; it runs on the tiny model, is planned (its own
  ``plan``), stored (dense, through ``KernelCache``) and drawn by the report's kernel heatmap.
- a model source: one module of a package on the path (``SOURCE``, a ``delift.models.sources.ModelSource``),
  chosen by ``model.source=<module path>``; the preflight finds it or names it missing, the model loads from it
  and the provenance carries its caveat.
- a dataset format: a formatter module (``@register_format(__name__)``) and a ``conf/data/<name>.yaml`` on a Hydra
  search path (``hydra.searchpath=[file://<folder>]``), chosen by ``data=<name>`` (the YAML's ``format`` is the
  module path); it loads a small JSONL file.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace

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


def plugin(tmp_path, monkeypatch, package: str, module: str, source: str) -> str:
    """``source`` as ``<package>.<module>`` in a temporary package on sys.path; its dotted path."""
    folder = tmp_path / "plugins" / package
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    return f"{package}.{module}"


@pytest.fixture
def plug_approx(tmp_path, monkeypatch):
    return plugin(tmp_path, monkeypatch, "plug_approx", "half", APPROXIMATION)


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


SOURCE = '''
"""Checkpoints in one shelf folder, named by model.name (a test's model source)."""
from pathlib import Path

from delift.models.sources import ModelSource, Unavailable


class Shelf(ModelSource):
    name = "plug_source.shelf"
    caveat = "a shelf model (a test's source)"

    def problems(self, spec):
        return {} if spec.local_path else {"local_path": "source plug_source.shelf needs local_path (the shelf)"}

    def identity(self, spec):
        return {"shelf": str(spec.local_path), "id": spec.name}

    def path(self, spec):
        return str(Path(spec.local_path) / spec.name)

    def unavailable(self, key, spec, tail, hub_problem):
        if (Path(self.path(spec)) / "config.json").is_file():
            return None
        return Unavailable(f"{key}.name", spec.name, f"not on the shelf {spec.local_path}", "put it there" + tail)


SOURCE = Shelf()
'''


@pytest.fixture
def plug_source(tmp_path, monkeypatch):
    return plugin(tmp_path, monkeypatch, "plug_source", "shelf", SOURCE)


def test_a_model_source_from_a_temporary_package_is_checked_found_and_loaded(plug_source, tiny_spec, tmp_path):
    import shutil

    from delift.models.loading import load_tokenizer, model_identity, resolve_model_path
    from delift.run.preflight import find_missing
    from delift.run.provenance import caveats

    shelf = tmp_path / "shelf"
    overrides = ["experiment=smoke", f"model.source={plug_source}", f"model.local_path={shelf}", "model.name=tiny"]
    missing = find_missing(compose_config(overrides))
    assert [(m.key, m.name, m.why) for m in missing] == [("model.name", "tiny", f"not on the shelf {shelf}")]
    shutil.copytree(resolve_model_path(tiny_spec), shelf / "tiny")
    cfg = compose_config(overrides)
    assert find_missing(cfg) == []
    assert model_identity(cfg.model)["shelf"] == str(shelf)
    assert load_tokenizer(cfg.model).eos_token_id == load_tokenizer(tiny_spec).eos_token_id
    assert caveats(cfg.model, {"data": cfg.data}, None)[0] == "a shelf model (a test's source)"
    with pytest.raises(ConfigError, match="model.local_path: source plug_source.shelf needs local_path"):
        compose_config(["experiment=smoke", f"model.source={plug_source}", "model.local_path=null"])
    with pytest.raises(ConfigError, match="model.source.*'tiny_randon'.*did you mean 'tiny_random'"):
        compose_config(["experiment=smoke", "model.source=tiny_randon"])


FORMAT = '''
"""Rows of {"q": ..., "a": ...} (a test's dataset format)."""
from delift.data.records import register_format, row_id, text_field
from delift.data.records import Example


@register_format(__name__)
def format_qa_rows(row, location):
    return Example(id=row_id(row, location, "qa_rows", None), instruction=text_field(row, location, "q"),
                   input="", output=text_field(row, location, "a"), source="qa_rows")
'''


def test_a_dataset_format_from_a_temporary_package_loads_a_jsonl(tmp_path, monkeypatch):
    from delift.data.loading import load_examples

    plugin(tmp_path, monkeypatch, "plug_format", "qa_rows", FORMAT)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"q": f"What is {i} + 1?", "a": str(i + 1)}) + "\n" for i in range(4)))
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "qa_rows.yaml").write_text(
        f"name: qa_rows\nformat: plug_format.qa_rows\nlocal_path: {rows}\nsizes: {{train: 2, valid: 0, test: 2}}\n")
    cfg = compose_config(["experiment=smoke", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "data=qa_rows"])
    examples = load_examples(cfg.data)
    assert [(e.instruction, e.output) for e in examples] == [(f"What is {i} + 1?", str(i + 1)) for i in range(4)]
    with pytest.raises(ValueError, match="plug_format.absent.*cannot be imported"):
        load_examples(replace(cfg.data, format="plug_format.absent"))
