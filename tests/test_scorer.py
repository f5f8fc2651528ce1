"""``scorer``: selection scores with another model than the one trained (loading, wiring, records, smoke runs)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_examples
from test_pipeline import isolated_env

from delift.config.checks import ConfigError
from delift.config.loader import compose_config
from delift.models.config import ModelConfig, TinyModelConfig
from delift.run.listeners import subset_record
from delift.run.pipeline import build_parts, kernel_provider, run_experiment, selection_context
from delift.run.provenance import run_record
from delift.run.usecases import UsecaseData, data_configs
from delift.selection.base import Selection
from delift.tracking import run_identity

slow = pytest.mark.slow  # end-to-end runs
A, B = "tiny_llama", "tiny_llama_b"  # two tiny models with different tokenizers (byte-level; byte-level + merges)
MODEL_SCORED = ("delift", "nuggets", "ifd", "selectit", "lobass", "less")


def config(cache: Path | str = "/tmp/delift-scorer-test", *overrides: str):
    return compose_config(["experiment=smoke", f"paths.cache_dir={cache}", "progress=false", *overrides])


# ------------------------------------------------------------------------------------------ loading
def test_a_scorer_name_loads_that_model_config_with_the_runs_cache_dir():
    cfg = config("/c", f"scorer={A}", f"model={B}")
    assert cfg.scorer == ModelConfig(name="tiny-llama", source="tiny_random", seed=0, dtype="float32",
                                     tiny=TinyModelConfig(hidden_size=64, num_layers=2, num_heads=4,
                                                          intermediate_size=128), cache_dir="/c")
    assert cfg.scoring_model is cfg.scorer and cfg.model.name == "tiny-llama-b" and cfg.model.cache_dir == "/c"
    plain = config("/c", f"model={B}")
    assert plain.scorer is None and plain.scoring_model is plain.model


def test_a_scorer_block_takes_overrides_of_its_fields():
    cfg = config("/c", f"+model@scorer={A}", "scorer.dtype=bfloat16", "scorer.seed=3")
    assert (cfg.scorer.name, cfg.scorer.dtype, cfg.scorer.seed, cfg.scorer.tiny.hidden_size) == (
        "tiny-llama", "bfloat16", 3, 64)


@pytest.mark.parametrize("overrides, message", [
    (["scorer=tiny_lama"], "scorer: unknown model config 'tiny_lama'. Did you mean 'tiny_llama'?"),
    (["scorer=3"], "scorer=3: expected a model config name"),
    ([f"+model@scorer={A}", "scorer.dtype=fp8"], "scorer.dtype: 'fp8'"),
    ([f"+model@scorer={A}", "+scorer.colour=red"], "scorer.colour: not a setting of ModelConfig"),
])
def test_a_bad_scorer_fails_at_load_time_naming_scorer(overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("?", r"\?")):
        config("/c", *overrides)


# ------------------------------------------------------------------------------------------- wiring
def test_selection_kernels_and_reference_adapters_get_the_scorer_and_protocols_the_model(tmp_path):
    cfg = config(tmp_path, f"scorer={A}", f"model={B}")
    parts = build_parts(cfg)
    assert parts.scoring_spec is cfg.scorer and parts.model_spec is cfg.model
    kernels = kernel_provider(cfg, parts)
    assert kernels.provider.model_spec is cfg.scorer
    data = UsecaseData(name="instruction_tuning", pool=[])
    ctx = selection_context(cfg, data, kernels, tmp_path, parts)
    assert ctx.model_spec is cfg.scorer and ctx.train_adapter.args == (cfg.scorer,)
    # kernel.on_overflow counts the scorer's tokens: its tokenizer is the kernel's
    assert len(kernels.provider.tokenizer) == 258


def test_the_kernel_key_names_the_scorer_never_the_trained_model(tmp_path):
    pool = make_examples(3)

    def key(*overrides):
        cfg = config(tmp_path, *overrides)
        return kernel_provider(cfg, build_parts(cfg)).provider.block_store(pool, pool).key

    own = key(f"model={A}")  # what a run without a scorer keys its kernel by: its model
    assert key(f"scorer={A}", f"model={B}") == key(f"scorer={A}", "model=smollm2_135m") == own
    assert key(f"model={B}") != own and key(f"scorer={B}", f"model={A}") == key(f"model={B}")


def test_the_two_test_models_have_different_tokenizers(tmp_path):
    from delift.models.loading import load_tokenizer

    text = "### Instruction:\nThe sum is 12.\n\n### Response:\n"
    a, b = (load_tokenizer(replace(config(tmp_path, f"model={name}").model, cache_dir=str(tmp_path)))
            for name in (A, B))
    ids_a, ids_b = (t(text, add_special_tokens=False).input_ids for t in (a, b))
    assert (len(a), a.eos_token_id, len(b), b.eos_token_id) == (258, 256, 274, 272)
    assert len(ids_a) == len(text.encode()) == 47  # one token per byte
    # by hand, merges by rank: "on" before "st" and "es"; "##" then "###"; ":" + newline; two newlines
    assert b.convert_ids_to_tokens(ids_b) == [
        "###", "Ġ", "I", "n", "st", "r", "u", "c", "t", "i", "on", ":Ċ", "T", "he", "Ġs", "u", "m", "Ġ", "i", "s",
        "Ġ", "1", "2", ".", "ĊĊ", "###", "Ġ", "R", "es", "p", "on", "s", "e", ":Ċ"]
    assert b.decode(ids_b) == text


# ------------------------------------------------------------------------------------------ records
def test_records_name_the_scorer_and_a_run_without_one_writes_what_it_wrote_before():
    cfg = config("/c", f"scorer={A}", f"model={B}")
    plain = config("/c", f"model={B}")
    pool = make_examples(1)
    selection = Selection([0], [0.5], "delift", 1, info={"kernel_key": "k"})
    identity = {"name": "tiny-llama", "source": "tiny_random", "dtype": "float32", "seed": 0,
                "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "num_layers": 2}}
    record = run_record(cfg.name, cfg.model, data_configs(cfg.data, cfg.usecase), cfg.metrics, cfg.metric_library,
                        None, {}, cfg.scorer)
    assert record["scorer"] == identity and record["model"]["seed"] == 1
    assert run_record(plain.name, plain.model, data_configs(plain.data, plain.usecase), plain.metrics,
                      plain.metric_library, None, {})["scorer"] is None
    assert subset_record(cfg, selection, pool, record["scorer"])["scorer"] == identity
    assert list(subset_record(plain, selection, pool)) == ["selector", "selector_config", "usecase", "budget",
                                                           "pool_size", "kernel_hash", "selected_ids", "gains", "info"]
    assert run_identity(cfg, "delift").tags[-1] == "scorer:tiny-llama"
    assert not any(tag.startswith("scorer:") for tag in run_identity(plain, "delift").tags)


# ------------------------------------------------------------------------------ smoke runs (slow)
def smoke(root: Path, name: str, *overrides: str) -> dict:
    """One smoke run under ``root/name`` (ICL only, fast), its subset.json."""
    run_experiment(config(root / "cache", "evaluation=icl", *overrides), root / name)
    return json.loads((root / name / "subset.json").read_text())


@slow
@pytest.mark.parametrize("selector", MODEL_SCORED)
def test_a_scorer_selects_exactly_the_subset_its_own_model_selects(tmp_path, selector):
    # separate caches: the scorer run computes its kernel, scores, warm-up or reference adapter itself
    own = smoke(tmp_path / "own", "run", f"selector={selector}", f"model={A}")
    scored = smoke(tmp_path / "scored", "run", f"selector={selector}", f"scorer={A}", f"model={B}")
    assert scored["selected_ids"] == own["selected_ids"] and scored["gains"] == own["gains"]
    assert scored["kernel_hash"] == own["kernel_hash"] and scored["scorer"]["name"] == "tiny-llama"
    assert "scorer" not in own
    record = json.loads((tmp_path / "scored" / "run" / "run.json").read_text())
    assert (record["scorer"]["seed"], record["model"]["seed"], record["model"]["tiny"]["tokenizer"]) == (
        0, 1, "byte_pairs")
    assert record["config"]["scorer"]["name"] == "tiny-llama" and record["config"]["model"]["name"] == "tiny-llama-b"


@slow
def test_one_kernel_serves_every_trained_model(tmp_path):
    first = smoke(tmp_path, "b", f"scorer={A}", f"model={B}")
    second = smoke(tmp_path, "c", f"scorer={A}", f"model={A}", "model.seed=5")  # a third model
    assert first["info"]["kernel_cached"] is False and second["info"]["kernel_cached"] is True
    assert second["kernel_hash"] == first["kernel_hash"] and second["selected_ids"] == first["selected_ids"]
    assert len(list((tmp_path / "cache" / "kernels").glob("*.npz"))) == 1


@slow
@pytest.mark.parametrize("selector", ["random", "delift_se"])
def test_selectors_without_a_model_ignore_the_scorer_and_the_model_still_generates(tmp_path, selector):
    plain = smoke(tmp_path, "plain", f"selector={selector}", f"model={B}")
    scored = smoke(tmp_path, "scored", f"selector={selector}", f"scorer={A}", f"model={B}")
    assert scored["selected_ids"] == plain["selected_ids"] and scored["gains"] == plain["gains"]
    # the trained model (B, its own tokenizer) generates in both runs: the same predictions
    predictions = [(tmp_path / name / "predictions.jsonl").read_text() for name in ("plain", "scored")]
    assert predictions[0] == predictions[1] and predictions[0].count("\n") == 6


@slow
def test_wandb_records_both_models(tmp_path, monkeypatch):
    from delift.tracking.offline import offline_runs

    for key, value in isolated_env(tmp_path).items():
        if key.startswith("WANDB_"):
            monkeypatch.setenv(key, value)
    for var in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE"):
        monkeypatch.delenv(var, raising=False)
    subset = smoke(tmp_path, "run", f"scorer={A}", f"model={B}", "logger=wandb", "logger.mode=offline")
    (run,) = offline_runs(tmp_path / "run", wait_s=30)
    assert (run.config["scorer"]["name"], run.config["model"]["name"]) == ("tiny-llama", "tiny-llama-b")
    assert run.tags[-1] == "scorer:tiny-llama" and "model:tiny-llama-b" in run.tags
    (artifact,) = [a for a in run.artifacts if a["type"] == "subset"]
    assert artifact["metadata"]["scorer"] == "tiny-llama" and artifact["metadata"]["kernel_hash"] == subset["kernel_hash"]
