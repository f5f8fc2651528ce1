"""delift-plan: the FLOP formula by hand, shapes against built models, sweeps as Hydra expands them, and the
plan of a run against what that run then executes (its kernels' counts and forward calls)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import make_examples
from omegaconf import OmegaConf

from delift.config.loader import CONFIG_DIR, compose_config
from delift.models.config import ModelShape
from delift.plan.models import counted_non_embedding_params, flops, shape_from_config
from delift.plan.work import Work

ROOT = Path(__file__).resolve().parents[1]


def test_flops_of_a_tiny_config_by_hand():
    """2 layers, hidden 8, 2 heads of 4 (1 kv head), MLP 16, vocab 10; one sequence of 5 tokens, 3 scored."""
    shape = ModelShape(layers=2, hidden=8, heads=2, kv_heads=1, intermediate=16, vocab=10)
    # per layer: q, o 2 x 8 x 8 = 128; k, v 2 x 8 x 4 = 64; MLP 3 x 8 x 16 = 384; 2 norms 16 -> 592; x 2 + final norm 8
    assert counted_non_embedding_params(shape) == 1192
    work = Work()
    work.sequence(5, 3)
    assert (work.tokens, work.context, work.scored) == (5, 1 + 2 + 3 + 4 + 5, 3)
    # 2 x 1192 x 5 + 4 x (2 x 4) x 15 x 2 layers + 2 x 8 x 10 x 3 scored positions
    assert flops(shape, work) == 11920 + 960 + 480
    cached = Work()
    cached.sequence(5, 3, start=2)  # the first 2 tokens come from a cache: 3 run, attending 3 + 4 + 5 keys
    assert (cached.tokens, cached.context) == (3, 12)
    assert flops(replace(shape, non_embedding_params=1000), work) == 2 * 1000 * 5 + 960 + 480  # a stated count wins


@pytest.mark.parametrize("family", ["llama", "qwen2", "phi3"])
def test_counted_parameters_equal_a_built_model(family):
    """The count from config.json against the parameters of a model built from it (random, tiny)."""
    import transformers

    kwargs = dict(vocab_size=50, hidden_size=24, intermediate_size=40, num_hidden_layers=2, num_attention_heads=6,
                  num_key_value_heads=2 if family != "phi3" else 6, tie_word_embeddings=False, pad_token_id=0,
                  bos_token_id=1, eos_token_id=2)
    config_class, model_class = {"llama": ("LlamaConfig", "LlamaForCausalLM"),
                                 "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
                                 "phi3": ("Phi3Config", "Phi3ForCausalLM")}[family]
    config = getattr(transformers, config_class)(**kwargs)
    model = getattr(transformers, model_class)(config)
    embeddings = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    shape = shape_from_config(config.to_dict())
    assert counted_non_embedding_params(shape) == sum(p.numel() for p in model.parameters()) - embeddings
    assert shape.qkv_bias == (family == "qwen2")


def test_model_yamls_state_the_counted_parameters():
    """Each stated shape's non-embedding count is the one its fields give (the YAML comments show the sums)."""
    stated = {}
    for path in sorted(Path(CONFIG_DIR, "model").glob("*.yaml")):
        node = OmegaConf.load(path)
        if "shape" in node:
            shape = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelShape), node.shape))
            stated[path.stem] = shape.non_embedding_params
            assert shape.non_embedding_params == counted_non_embedding_params(replace(shape, non_embedding_params=None))
    assert stated == {"llama3_8b": 6_979_588_096, "qwen2_7b": 6_525_621_760, "phi3_mini": 3_624_078_336,
                      "smollm2_135m": 106_203_456, "smollm2_135m_hub": 106_203_456}


def test_shape_and_tokenizer_without_weights(tiny_spec, tmp_path):
    """A tiny model's shape is its config.json's; a hub model offline keeps its stated shape and counts tokens with
    the stand-in's tokenizer, saying so; the identity stays what kernel keys use."""
    from delift.models.loading import model_identity
    from delift.plan.models import plan_model

    tiny = plan_model(tiny_spec)
    assert (tiny.shape.layers, tiny.shape.hidden, tiny.shape.heads, tiny.shape.vocab) == (2, 64, 4, 258)
    assert tiny.identity == model_identity(tiny_spec) and not tiny.notes
    llama = compose_config(["model=llama3_8b", f"paths.cache_dir={tmp_path}"]).model
    found = plan_model(llama, stand_in=tiny_spec)
    assert found.shape == llama.shape and found.tokenizer.eos_token == "</s>"  # the byte tokenizer's EOS
    assert any("counted with tiny" in note for note in found.notes)


def _selectors() -> list[str]:
    return sorted(p.stem for p in Path(CONFIG_DIR, "selector").glob("*.yaml"))


@pytest.mark.slow  # composes 165 configs
def test_budget_curve_expands_to_the_basic_sweepers_jobs():
    """experiment=budget_curve: 5 fractions x every conf/selector option x 3 seeds, numbered in sweep order;
    Initial and Full run once per seed (delift.cli's rule), their other 4 fractions do no work."""
    from delift.plan.jobs import expand
    from delift.run.sweep import fractions_of, reference_fraction

    specs, arguments = expand(["experiment=budget_curve"], multirun=True)
    selectors = _selectors()
    assert len(specs) == 5 * len(selectors) * 3 and [s.number for s in specs] == list(range(len(specs)))
    assert specs[0].overrides == ["budget_fraction=0.05", f"selector={selectors[0]}", "seed=0", "experiment=budget_curve"]
    assert {(s.cfg.budget_fraction, s.cfg.seed) for s in specs} == {(f, s) for f in (0.05, 0.1, 0.2, 0.3, 0.5)
                                                                     for s in (0, 1, 2)}
    fractions = fractions_of(arguments)
    repeats = [s for s in specs if reference_fraction(s.cfg, fractions) is not None]
    assert len(repeats) == 2 * 4 * 3 and {s.cfg.selector._target_.rsplit(".", 1)[-1] for s in repeats} == {
        "InitialSelector", "FullSelector"}
    narrowed, _ = expand(["experiment=budget_curve", "seed=0", "selector=random,delift"], multirun=True)
    assert len(narrowed) == 5 * 2  # a swept key on the command line replaces the experiment's list


def _plan_lines(args: list[str], capsys) -> list[str]:
    from delift.plan.cli import main

    assert main(args) == 0
    return capsys.readouterr().out.splitlines()


def test_a_sweep_counts_a_shared_kernel_once(tmp_path, capsys, monkeypatch):
    """DELIFT at two budgets reads one kernel: its pairs count once in the total; Initial runs once."""
    monkeypatch.setenv("DELIFT_CACHE_DIR", str(tmp_path))
    lines = _plan_lines(["-m", "experiment=smoke", "selector=delift,initial", "budget_fraction=0.25,0.5",
                         "evaluation=icl"], capsys)
    jobs = [line for line in lines if line.startswith("job ")]
    assert len(jobs) == 4
    assert lines[lines.index(jobs[3]) + 1].startswith("  no work: repeats budget_fraction=0.25")
    kernel_rows = [line for line in lines if line.startswith("  kernel pool x pool")]
    assert len(kernel_rows) == 2 and "(shared: counted above)" in kernel_rows[1]
    last = lines[-1].split()
    assert lines[-1].startswith("plan total: ") and last[3] == "pairs" and int(last[2]) == 16 * 16


def _counting_model_loads(monkeypatch) -> list[int]:
    """Count the forward calls of every model the kernel provider loads."""
    from delift.kernel import provider
    from delift.kernel.probabilities import decoder_and_head

    calls, load = [], provider.load_model

    def counted(spec):
        model = load(spec)
        decoder_and_head(model)[0].register_forward_pre_hook(lambda *_: calls.append(1))
        return model

    monkeypatch.setattr(provider, "load_model", counted)
    return calls


def _plan_against_run(overrides: list[str], tmp_path, monkeypatch):
    from delift.kernel.cache import KernelCache
    from delift.plan.jobs import plan_jobs
    from delift.run.pipeline import run_experiment

    (plan,) = plan_jobs(overrides, multirun=False)
    kernels = [s for s in plan.stages if s.name.startswith("kernel")]
    calls = _counting_model_loads(monkeypatch)
    run_experiment(compose_config(overrides), tmp_path / "run")
    cache = KernelCache(tmp_path / "cache" / "kernels")
    for stage in kernels:
        meta = cache.load(stage.share).meta  # the plan's key is the kernel's file name
        assert (stage.work.pairs, stage.work.tokens, stage.work.per_sequence) == (meta["pairs"], meta["tokens"],
                                                                                   meta["per_sequence"])
        assert stage.work.sequences == meta["sequences"]
        files = [p for p in (cache.root / stage.share).rglob("*") if p.is_file()] + [cache.path(stage.share)]
        actual = sum(p.stat().st_size for p in files)
        assert 0.9 * actual < stage.disk < 1.15 * actual
    assert sum(s.work.passes for s in kernels) == len(calls) - 2 * len(kernels)  # + the head check, 2 calls each
    return plan, kernels


@pytest.mark.slow
def test_plan_of_the_smoke_experiment_equals_its_run(tmp_path, monkeypatch):
    plan, kernels = _plan_against_run(["experiment=smoke", "evaluation=icl", f"paths.cache_dir={tmp_path / 'cache'}"],
                                      tmp_path, monkeypatch)
    assert [s.name for s in kernels] == ["kernel pool x pool"] and kernels[0].work.pairs == plan.pool ** 2


@pytest.mark.slow
def test_plan_of_the_quickstart_equals_its_run(tmp_path, monkeypatch):
    """The quickstart's data and SmolLM2-135M, on a 12-example pool (the full 80 takes minutes here) with
    truncation (kernel.max_length=96: some shown examples are cut, on the per-sequence path)."""
    plan, kernels = _plan_against_run(["data.sizes.train=12", "data.sizes.test=2", "evaluation=icl",
                                       "evaluation.icl.generation.max_new_tokens=4", "kernel.max_length=96",
                                       f"paths.cache_dir={tmp_path / 'cache'}"], tmp_path, monkeypatch)
    assert kernels[0].work.pairs == 144 and 0 < kernels[0].work.per_sequence < 144


@pytest.mark.slow
def test_calibration_is_cached_per_model_and_machine(tiny_spec, tmp_path, monkeypatch):
    from delift.data.prompts import PromptTemplate
    from delift.kernel.config import KernelConfig
    from delift.plan import timing
    from delift.plan.models import plan_model

    model = plan_model(tiny_spec)
    record = timing.calibrate(tmp_path, model, make_examples(8), PromptTemplate(), KernelConfig())
    assert record["flops_per_second"] > 0 and record["examples"] == 8
    assert timing.cached_calibration(tmp_path, model) == json.loads(json.dumps(record, default=str))
    monkeypatch.setattr(timing, "machine", lambda: {"cpu": "another"})
    assert timing.cached_calibration(tmp_path, model) is None


@pytest.mark.slow
def test_the_real_sweep_skips_the_jobs_the_plan_skips(tmp_path):
    """``delift -m`` itself: the same job numbers, and skipped.json exactly where the plan says 'no work'."""
    from delift.plan.jobs import plan_jobs

    args = ["experiment=smoke", "selector=random,initial", "budget_fraction=0.25,0.5", "evaluation=icl",
            f"paths.cache_dir={tmp_path / 'cache'}"]
    planned = plan_jobs(args, multirun=True)
    subprocess.run([sys.executable, "-m", "delift", "-m", *args, f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                   check=True, cwd=ROOT, capture_output=True)
    folders = sorted((tmp_path / "sweep").glob("[0-9]*"), key=lambda p: int(p.name.split("_")[0]))
    assert len(folders) == len(planned) == 4
    for plan, folder in zip(planned, folders):
        overrides = OmegaConf.load(folder / ".hydra" / "overrides.yaml")
        assert list(overrides) == plan.spec.overrides
        assert (folder / "skipped.json").exists() == (plan.skipped is not None)


@pytest.mark.slow
def test_plan_of_ifd_scoring_equals_its_passes(tmp_path, monkeypatch):
    """IFD's two per-example scoring stages: the plan's forward calls and real tokens against the scorer's
    (the attention mask of each pass counts its real tokens)."""
    from delift.kernel.probabilities import decoder_and_head
    from delift.plan.jobs import plan_jobs
    from delift.run.pipeline import run_experiment
    from delift.scoring import scorer

    overrides = ["experiment=smoke", "selector=ifd", "selector.batch_size=3", "evaluation=icl",
                 f"paths.cache_dir={tmp_path / 'cache'}"]
    (plan,) = plan_jobs(overrides, multirun=False)
    stages = [s for s in plan.stages if s.name.startswith("score")]
    calls, tokens, load = [], [], scorer.load_model

    def count(module, args, kwargs):
        calls.append(1)
        tokens.append(int(kwargs["attention_mask"].sum()))

    def counted(spec):
        model = load(spec)
        decoder_and_head(model)[0].register_forward_pre_hook(count, with_kwargs=True)
        return model

    monkeypatch.setattr(scorer, "load_model", counted)
    run_experiment(compose_config(overrides), tmp_path / "run")
    assert [s.name for s in stages] == ["score response NLL", "score answer NLL"]
    assert sum(s.work.passes for s in stages) == len(calls) == 2 * -(-plan.pool // 3)
    assert sum(s.work.tokens for s in stages) == sum(tokens)


@pytest.mark.slow
def test_plan_with_a_scorer_counts_the_scorers_tokens_and_equals_its_run(tmp_path, monkeypatch):
    """scorer=tiny_llama_b (another tokenizer than model=tiny_llama's): the kernel is planned, keyed and counted
    with the scorer, and the run computes exactly that."""
    plan, kernels = _plan_against_run(["experiment=smoke", "scorer=tiny_llama_b", "evaluation=icl",
                                       f"paths.cache_dir={tmp_path / 'cache'}"], tmp_path, monkeypatch)
    unscored, _ = _plan_against_run(["experiment=smoke", "evaluation=icl", f"paths.cache_dir={tmp_path / 'plain' / 'cache'}"],
                                    tmp_path / "plain", monkeypatch)
    plain_kernel = next(s for s in unscored.stages if s.name.startswith("kernel"))
    assert kernels[0].work.pairs == plain_kernel.work.pairs  # the same pool
    assert kernels[0].work.tokens != plain_kernel.work.tokens and kernels[0].share != plain_kernel.share


@pytest.mark.parametrize("flag,message", [(["--accelerator", "TPU"], "--accelerator 'TPU': expected one of H100-SXM"),
                                          (["--efficiency", "0"], "--efficiency 0.0: a share of the peak")])
def test_plan_rejects_a_bad_accelerator_or_efficiency_before_planning(flag, message, capsys, monkeypatch):
    import delift.plan.cli as plan_cli

    monkeypatch.setattr(plan_cli, "plan_jobs", lambda *a, **k: pytest.fail("planned before checking its flags"))
    with pytest.raises(SystemExit) as stop:
        plan_cli.main(["experiment=smoke", *flag])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_plan_names_a_misspelt_group_option_with_a_did_you_mean(capsys, monkeypatch):
    import delift.plan.cli as plan_cli

    monkeypatch.setattr(plan_cli, "plan_jobs", lambda *a, **k: pytest.fail("planned a misspelt selector"))
    assert plan_cli.main(["experiment=smoke", "selector=delfit"]) == 2
    assert "Did you mean 'delift'?" in capsys.readouterr().err
