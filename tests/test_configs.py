"""Typed configs: every option composes into the schema, and every bad value fails at load time, naming its key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from delift.config.checks import ConfigError
from delift.config.loader import CONFIG_DIR, compose_config
from delift.config.schema import ExperimentConfig
from delift.protocols import Protocol
from delift.run.pipeline import build_parts
from delift.selection.base import Selector
from delift.training.settings import TrainConfig

CONF = Path(CONFIG_DIR)
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def check_parts(cfg: ExperimentConfig) -> None:
    assert isinstance(cfg, ExperimentConfig)
    parts = build_parts(cfg)
    assert isinstance(parts.selector, Selector)
    assert parts.protocols and all(isinstance(p, Protocol) for p in parts.protocols)
    assert [m.name for m in parts.metrics] == cfg.metrics.names
    assert parts.model_spec.torch_dtype is not None


def test_expected_groups_exist():
    for group in ("data", "model", "kernel", "selector", "usecase", "evaluation", "metrics", "metric", "logger",
                  "experiment"):
        assert group in GROUPS and options(group), group


NOT_GROUPS = ("survey", "plan")  # data files under conf/ read by delift-report and delift-plan, not config groups


@pytest.mark.slow  # ~0.7 s of Hydra composition per option
@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS if g not in ("experiment", "metric", *NOT_GROUPS)
                                          for o in options(g)])
def test_every_group_option_composes_and_builds(group, option):
    check_parts(compose_config([f"{group}={option}"]))


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [[f"experiment={name}"] for name in options("experiment")]
                         + [["experiment=smoke", f"usecase={u}"] for u in ("task_specific", "continual")])
def test_every_experiment_composes_and_builds(overrides):
    cfg = compose_config(overrides)
    assert cfg.name == overrides[0].split("=")[1]
    check_parts(cfg)


def test_default_config_is_the_quickstart():
    cfg = compose_config([])
    assert (cfg.data.name, cfg.model.source, type(build_parts(cfg).selector).__name__, list(cfg.evaluation)) == (
        "quickstart", "packaged_gguf", "DeliftSelector", ["qlora"])
    assert cfg.metrics.names == ["rouge", "bge"] and cfg.logger.name == "none"
    assert isinstance(cfg.evaluation["qlora"].train, TrainConfig)
    assert cfg.usecase.target is None and cfg.usecase.existing is None  # instruction tuning reads neither


# Bad values that Hydra rejects while composing (wrong type, unknown key without '+').
@pytest.mark.parametrize("override,key", [
    ("budget_fraction=abc", "budget_fraction"), ("budget_fraction=true", "budget_fraction"),
    ("seed=abc", "seed"), ("kernel.max_length=abc", "kernel.max_length"),
    ("data.on_bad_rows=skip", "data.on_bad_rows"), ("generation.max_new_token=3", "generation.max_new_token"),
])
def test_wrong_types_and_typos_fail_at_compose_time(override, key):
    with pytest.raises(ConfigCompositionException) as caught:
        compose_config([override])
    text = f"{caught.value} {caught.value.__cause__}"
    assert key.rsplit(".", 1)[-1] in text


# Bad values caught by the loader (ranges, choices, names of parts, keys added with '+').
@pytest.mark.parametrize("overrides,message", [
    (["kernel.max_length=-5"], "kernel.max_length: -5: must be >= 4"),
    (["evaluation.qlora.train.lr=abc"], "evaluation.qlora.train.lr: Value 'abc' of type 'str' could not be converted"),
    (["budget_fraction=0"], "budget_fraction: 0.0: must be in (0, 1]"),
    (["budget_fraction=1.5"], "budget_fraction: 1.5: must be in (0, 1]"),
    (["seed=-1"], "seed: -1: must be >= 0"),
    (["evaluation.qlora.train.lr=-1"], "evaluation.qlora.train.lr: -1.0: must be > 0.0"),
    (["evaluation.qlora.train.epochs=0"], "evaluation.qlora.train.epochs: 0.0: must be > 0.0"),
    (["evaluation.qlora.train.method=full"], "evaluation.qlora.train.method: 'full': expected one of qlora, lora"),
    (["evaluation=icl", "evaluation.icl.k=-1"], "evaluation.icl.k: -1: must be >= 0"),
    (["evaluation.qlora.generation.top_p=0"], "evaluation.qlora.generation.top_p"),
    (["metrics.names=[rouge,foo]"], "metrics.names[1]: unknown metric 'foo'"),
    (["metrics.names=[rouge,rouge]"], "named twice"),
    (["data=alpaca", "data.local_path="], "data.local_path: empty"),
    (["data.on_bad_row=maybe"], "data.on_bad_row: 'maybe': expected one of error, skip"),
    (["data.sizes.train=-2"], "data.sizes.train: -2: must be >= 0"),
    (["kernel.on_overflow=drop"], "kernel.on_overflow"),
    (["kernel.num_shards=2", "kernel.shard=2"], "kernel.shard: 2: must be in [0, kernel.num_shards=2)"),
    (["usecase=task_specific", "usecase.eta=0"], "usecase.eta: 0.0: must be > 0.0"),
    (["usecase=task_specific", "usecase.query_split=test"], "usecase.query_split"),
    (["model.dtype=float64"], "model.dtype"),
    (["logger=wandb", "logger.mode=sometimes"], "logger.mode"),
    (["+foo=1"], "unknown config key foo"),
    (["+usecase.bar=2"], "unknown config key usecase.bar"),
    (["+selector.foo=1"], "selector.foo: not a setting of DeliftSelector.Config; its settings: objective, "
                          "postprocess, exclude_self_pairs, optimizer"),
    # selector, evaluation and judge are open while Hydra composes: a misspelt key there is the loader's to catch
    (["selector=ifd", "selector.batch_sise=3"],
     "selector.batch_sise: not a setting of IFDSelector.Config; did you mean batch_size?"),
    (["evaluation.qlora.train.lrr=1"], "evaluation.qlora.train.lrr: not a setting of TrainConfig; did you mean lr?"),
    (["evaluation=icl", "evaluation.icl.generation.max_new_token=3"],
     "evaluation.icl.generation.max_new_token: not a setting of GenerationConfig; did you mean max_new_tokens?"),
    (["metrics=paper", "judge.batchsize=2"], "judge.batchsize: not a setting of HFJudgeSettings; did you mean "
                                             "batch_size?"),
    (["+evaluation.icl_typo.k=3"], "unknown evaluation protocol 'icl_typo'"),
    (["+evaluation.qlora.train.lr_typo=1"], "evaluation.qlora.train.lr_typo"),
    (["metrics=paper", "judge=openai", "judge.base_url=ftp://x"], "judge.base_url"),
    (["selector._target_=delift.selection.nowhere.Nothing"], "selector._target_"),
])
def test_bad_values_fail_before_any_work_naming_the_key(overrides, message):
    with pytest.raises(ConfigError) as caught:
        compose_config(["experiment=smoke", *overrides])
    assert message in str(caught.value)


def test_a_setting_the_group_yaml_does_not_list_is_overridden_without_plus():
    """Group YAMLs set only what differs from the dataclass; the command line reaches every setting of it."""
    cfg = compose_config(["experiment=smoke", "selector=ifd", "selector.batch_size=3", "evaluation=[icl,qlora]",
                          "evaluation.icl.generation.batch_size=2", "evaluation.qlora.train.r=16",
                          "judge=openai", "judge.max_retries=1"])
    assert (cfg.selector.batch_size, cfg.selector.max_length) == (3, 1024)  # the other settings keep their defaults
    assert cfg.evaluation["icl"].generation.batch_size == 2 and cfg.evaluation["qlora"].train.r == 16
    assert (cfg.judge.max_retries, cfg.judge.backoff_s) == (1, 2.0)


def test_a_typo_inside_an_experiment_yaml_fails(tmp_path, monkeypatch):
    """Misspelt keys in a YAML file (not only on the command line) are errors too."""
    from hydra import compose, initialize_config_dir

    from delift.config.loader import load_config, register

    conf = tmp_path / "conf"
    import shutil

    shutil.copytree(CONF, conf)
    for body, key in (("data: {on_bad_rows: skip}", "on_bad_rows"),
                      ("evaluation: {qlora: {generation: {max_new_token: 3}}}", "max_new_token"),
                      ("evaluation: {icl_typo: {k: 3}}", "icl_typo")):
        (conf / "experiment" / "typo.yaml").write_text(f"# @package _global_\n{body}\n")
        register()
        with pytest.raises((ConfigCompositionException, ConfigError)) as caught:
            with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
                load_config(compose(config_name="config", overrides=["experiment=typo"]))
        assert key in f"{caught.value} {caught.value.__cause__}"


@pytest.mark.parametrize("overrides,message", [
    (["data=alpaca", "data.format=alpacca"], "data.format: unknown format 'alpacca'; did you mean 'alpaca'?"),
    (["usecase=task_specific", "usecase.target.format=gsm"], "usecase.target.format: unknown format 'gsm'"),
])
def test_part_values_are_checked_when_parts_are_built(overrides, message):
    cfg = compose_config(["experiment=smoke", *overrides])  # composes: the value has the right type
    with pytest.raises(ValueError) as caught:
        build_parts(cfg)
    assert message in str(caught.value)


def test_partial_blocks_of_unchosen_protocols_are_checked_then_dropped():
    cfg = compose_config(["experiment=smoke"])  # smoke pre-sets evaluation.icl.generation; qlora runs
    assert list(cfg.evaluation) == ["qlora"]
    assert OmegaConf.structured(cfg).evaluation.qlora.generation.max_new_tokens == 12


def test_importing_the_config_loader_registers_the_schema():
    """Hydra's own compose API works after ``import delift.config.loader`` alone (a notebook's first cell)."""
    code = ("import sys\nimport delift.config.loader\nfrom hydra import compose, initialize_config_dir\n"
            "from delift.config.loader import CONFIG_DIR\n"
            "with initialize_config_dir(config_dir=CONFIG_DIR, version_base='1.3'):\n"
            "    cfg = compose(config_name='config', overrides=['experiment=smoke'])\n"
            "assert 'delift.cli' not in sys.modules and 'delift.run.pipeline' not in sys.modules\n"
            "print(cfg.name, cfg.metrics.names)")
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["smoke", "['rouge',", "'bge']"]


def test_metrics_are_found_by_name_in_conf_metric():
    """A metric is its class plus conf/metric/<name>.yaml: no list of metrics anywhere else."""
    assert "metric@" not in (CONF / "config.yaml").read_text()
    cfg = compose_config(["metrics=paper", "metrics.embedder=some-embedder"])
    assert list(cfg.metric_library) == ["rouge", "bge", "judge"]
    assert cfg.metric_library["bge"].embedder == "some-embedder"  # ${metrics.embedder} in conf/metric/bge.yaml
    assert cfg.metric_library["judge"].cache_dir == f"{cfg.paths.cache_dir}/judge"
    tuned = compose_config(["metrics=bge", "+metric_library.bge.device=cpu"])  # a setting of one metric
    assert (tuned.metric_library["bge"].device, tuned.metric_library["bge"].embedder) == ("cpu", "all-MiniLM-L6-v2")
    with pytest.raises(ConfigError, match=r"metrics.names\[0\]: unknown metric 'rouje'. Did you mean 'rouge'\?"):
        compose_config(["metrics.names=[rouje]"])


def test_every_usecase_option_has_its_table_entry():
    from delift.run.usecases import USECASES

    assert sorted(USECASES) == options("usecase")
    named = [compose_config([f"usecase={name}"]).usecase.name for name in sorted(USECASES)]  # a YAML may keep the default
    assert named == sorted(USECASES)
