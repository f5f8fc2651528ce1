"""Extending costs: a part written in a temporary package (its module and its conf YAML, found through
``hydra.searchpath``) is planned by delift-plan from its own declarations, and one that declares nothing
fails naming itself. The figures are checked against a hand count of what the declaration says."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from delift.plan.jobs import plan_jobs

SELECTOR_MODULE = '''
from dataclasses import dataclass

from delift.selection.base import Selection, Selector
from delift.selection.work import ScoringPass


class FirstK(Selector):
    """Keeps the pool's first k; declares one answer-NLL pass over the pool (as a model-scored selector would)."""

    name = "first_k"

    @dataclass
    class Config:
        _target_: str = "{module}.FirstK"
        batch_size: int = 2

    def model_work(self, ctx):
        return [ScoringPass("score answers", list(ctx.pool), "answer", self.config.batch_size, header="A: ")]

    def select(self, ctx, budget):
        return Selection(list(range(budget)), [None] * budget, self.name, budget)


class Forgetful(FirstK):
    """The same selector, its author forgot the declaration."""

    name = "forgetful"
    model_work = Selector.model_work
'''

PROTOCOL_MODULE = '''
from dataclasses import dataclass, field

from delift.config.schema import GenerationConfig
from delift.models.loading import load_model, load_tokenizer
from delift.protocols.base import Protocol, generate_all, score_generations


class ZeroShot(Protocol):
    """The base model generates on every test prompt, cut to ``limit`` tokens."""

    @dataclass
    class Config:
        _target_: str = "{module}.ZeroShot"
        name: str = "zero"
        limit: int = 64
        generation: GenerationConfig = field(default_factory=GenerationConfig)

    def prompt_limit(self):
        return self.config.limit

    def run(self, ctx, train_set, tests):
        model, tokenizer = load_model(ctx.model_spec), load_tokenizer(ctx.model_spec)
        prompts = {{split: [ctx.template.render(ex) for ex in examples] for split, examples in tests.items()}}
        generations = generate_all(ctx, model, tokenizer, prompts, self.generation, self.prompt_limit())
        return score_generations(ctx, self.name, tests, prompts, generations)
'''


def _package(root: Path, module: str, source: str, group: str, option: str, yaml: str) -> list[str]:
    """A temporary package: ``<root>/<module>.py`` and ``<root>/conf/<group>/<option>.yaml`` (2 files);
    the overrides that find it."""
    (root / f"{module}.py").write_text(textwrap.dedent(source.format(module=module)))
    (root / "conf" / group).mkdir(parents=True, exist_ok=True)
    (root / "conf" / group / f"{option}.yaml").write_text(textwrap.dedent(yaml))
    return [f"hydra.searchpath=[file://{root / 'conf'}]"]


@pytest.fixture
def selector_package(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    found = _package(tmp_path, "ext_selector", SELECTOR_MODULE, "selector", "first_k",
                     "_target_: ext_selector.FirstK\nbatch_size: 3\n")
    (tmp_path / "conf" / "selector" / "forgetful.yaml").write_text("_target_: ext_selector.Forgetful\n")
    return found + [f"paths.cache_dir={tmp_path / 'cache'}"]


def _job_inputs(cfg):
    """The pool and test splits the plan sees, and the prompt template, loaded as the run loads them."""
    from dataclasses import asdict

    from delift.data.prompts import PromptTemplate
    from delift.run.usecases import load_usecase_data

    data = load_usecase_data(cfg.usecase, cfg.data, cfg.seed, cfg.paths.shared_datasets, cfg.decontaminate)
    return data, PromptTemplate(**asdict(cfg.prompt))


def test_a_new_selector_is_planned_from_its_own_declaration(selector_package):
    from delift.models.loading import load_tokenizer
    from delift.scoring.layout import answer_items

    (plan,) = plan_jobs(["experiment=smoke", "selector=first_k", "evaluation=icl", *selector_package], False)
    (stage,) = [s for s in plan.stages if s.name == "score answers"]
    cfg = plan.spec.cfg
    data, _ = _job_inputs(cfg)
    items = answer_items(data.pool, load_tokenizer(cfg.scoring_model), "A: ", 1024)
    assert plan.pool == len(data.pool) > 0 and stage.exact and stage.flops > 0
    # batch_size 3 from its YAML: ceil(n / 3) forward calls over every pool item's header and answer tokens
    assert stage.work.passes == math.ceil(plan.pool / 3) and stage.work.sequences == plan.pool
    assert stage.work.tokens == sum(len(i.context) + len(i.scored) for i in items)
    assert stage.work.scored == sum(len(i.scored) for i in items)


def test_a_selector_that_declares_nothing_fails_the_plan_naming_it(selector_package):
    with pytest.raises(RuntimeError, match="selector 'forgetful' .*ext_selector.Forgetful.* does not declare the "
                                           "model work .*NO_MODEL_WORK"):
        plan_jobs(["experiment=smoke", "selector=forgetful", *selector_package], False)


@pytest.fixture
def protocol_package(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    found = _package(tmp_path, "ext_protocol", PROTOCOL_MODULE, "evaluation", "zero", """\
        # @package evaluation.zero
        _target_: ext_protocol.ZeroShot
        name: zero
        limit: 10
        generation:
          max_new_tokens: 3
        """)
    return found + [f"paths.cache_dir={tmp_path / 'cache'}", "evaluation=zero", "selector=random"]


def test_a_new_protocol_is_planned_from_its_declared_generation(protocol_package):
    from delift.models.loading import load_tokenizer

    (plan,) = plan_jobs(["experiment=smoke", *protocol_package], False)
    (stage,) = [s for s in plan.stages if s.name.startswith("generate zero")]
    cfg = plan.spec.cfg
    data, template = _job_inputs(cfg)
    tokenizer = load_tokenizer(cfg.model)
    tests = data.tests[""]
    lengths = [min(len(tokenizer(template.render(ex), add_special_tokens=False)["input_ids"]), 10) for ex in tests]
    assert max(lengths) == 10  # the declared limit cuts the smoke prompts
    # batch 8 (GenerationConfig's default), one prefill and 3 decoding calls a batch; each prompt's tokens
    # (cut to the limit) once, then the 3 new tokens
    assert stage.work.passes == math.ceil(len(tests) / 8) * (1 + 3)
    assert stage.work.tokens == sum(n + 3 for n in lengths) and stage.work.scored == len(tests) * (1 + 3)
    assert not [s for s in plan.stages if s.name.startswith("train")]  # it declares no fine-tuning


def test_a_new_protocol_runs_on_the_tiny_model(protocol_package, tmp_path):
    from delift.config.loader import compose_config
    from delift.run.pipeline import run_experiment

    cfg = compose_config(["experiment=smoke", "progress=false", *protocol_package])
    metrics = run_experiment(cfg, tmp_path / "run")
    assert metrics["subset/size"] > 0 and "zero/rouge1" in metrics
    rows = (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()
    assert len(rows) == cfg.data.sizes.test


def test_every_built_in_selector_declares_its_model_work():
    """Each conf/selector option's class says what its select runs; Random, Full and Initial: no model work."""
    from conftest import make_examples
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    from delift.config.loader import CONFIG_DIR
    from delift.selection.base import SelectionContext, Selector
    from delift.selection.work import NO_MODEL_WORK

    for path in sorted(Path(CONFIG_DIR, "selector").glob("*.yaml")):
        cls = get_class(OmegaConf.load(path)._target_)
        assert cls.model_work is not Selector.model_work, path.stem
    ctx = SelectionContext(pool=make_examples(4), seed=0)
    for option in ("random", "full", "initial"):
        cls = get_class(OmegaConf.load(Path(CONFIG_DIR, "selector", f"{option}.yaml"))._target_)
        assert cls().model_work(ctx) == NO_MODEL_WORK == []
