"""Every tiny model family (Llama, Llama 3-style, Qwen2, Phi-3, Mistral, Gemma-2) through the paths that depend on
the architecture: the kernel engine and the shared-prefix scoring passes against the model's own forward, LoRA's
``all-linear`` targets, and LESS's per-example gradient hooks. (The smoke runs of every family are in
tests/test_family_matrix.py, marked slow.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fit_to_one_shot_texts, make_examples
from test_kernel import naive_kernel
from test_kernel_engine import engine_kernel
from test_less_gradients import randomise_lora
from test_scoring import naive_log_probs
from test_training import greedy_by_hand

from delift.config.checks import collect_problems
from delift.config.loader import CONFIG_DIR, compose_config
from delift.data.prompts import PromptTemplate
from delift.evaluation.generation import generate
from delift.kernel import engine
from delift.kernel.attention import sliding_window
from delift.kernel.config import KernelConfig
from delift.kernel.probabilities import check_head_matches_forward
from delift.kernel.sequences import build_sequence
from delift.models.config import TINY_FAMILIES, ModelConfig, TinyModelConfig
from delift.models.loading import load_model, load_tokenizer, model_identity
from delift.models.tiny import BUILDERS, GEMMA2_WINDOW, MISTRAL_WINDOW, build_tiny_model
from delift.scoring.layout import training_items
from delift.scoring.passes import scored_log_probs
from delift.selection.less import LESSSelector
from delift.selection.less.gradients import fast_gradients, lora_parameters, reference_gradients
from delift.selection.less.warmup import build_lora_model
from delift.training.finetune import build_peft_model
from delift.training.settings import TrainConfig

TEMPLATE = PromptTemplate()
WINDOWS = {"mistral": MISTRAL_WINDOW, "gemma2": GEMMA2_WINDOW}  # the families with sliding-window layers
FIT_STEPS = 60  # Adam steps on one-shot texts: enough for the shown example to move every family's scores

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def family_spec(family: str, cache_dir: Path) -> ModelConfig:
    return ModelConfig(name=f"tiny-{family}", source="tiny_random", seed=0, dtype="float32",
                       tiny=TinyModelConfig(family=family), cache_dir=str(cache_dir))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """family -> (spec, tokenizer, model fitted to one-shot texts), built on first use."""
    cache_dir, models = tmp_path_factory.mktemp("families"), {}

    def get(family: str):
        if family not in models:
            spec = family_spec(family, cache_dir)
            tokenizer = load_tokenizer(spec)
            models[family] = (spec, tokenizer, fit_to_one_shot_texts(load_model(spec), tokenizer, FIT_STEPS))
        return models[family]

    return get


# --- configs ---------------------------------------------------------------------------------------------

def test_every_family_has_a_builder_and_a_model_config():
    assert tuple(BUILDERS) == TINY_FAMILIES
    for family in TINY_FAMILIES:
        assert (Path(CONFIG_DIR) / "model" / f"tiny_{family}.yaml").is_file()
        cfg = compose_config([f"model=tiny_{family}"])
        assert cfg.model.tiny.family == (None if family == "llama" else family)
        assert cfg.model.name == f"tiny-{family}" and cfg.model.source == "tiny_random"


def test_family_joins_the_tiny_identity_only_when_it_is_not_llama():
    tiny = lambda shape: model_identity(ModelConfig(name="t", source="tiny_random", dtype="float32", tiny=shape))  # noqa: E731
    shape = {"hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "num_layers": 2}
    assert tiny(compose_config(["model=tiny_llama"]).model.tiny)["tiny"] == shape  # tiny_llama.yaml's key is unchanged
    assert tiny(TinyModelConfig(family="llama")) == tiny(TinyModelConfig()) == tiny(None)
    assert tiny(compose_config(["model=tiny_phi3"]).model.tiny)["tiny"] == shape | {"family": "phi3"}
    assert tiny(TinyModelConfig(family="qwen2")) != tiny(TinyModelConfig(family="mistral"))


def test_an_unknown_family_is_named_in_the_error(tmp_path):
    bad = ModelConfig(name="t", source="tiny_random", tiny=TinyModelConfig(family="gpt2"))
    assert collect_problems(bad, "model") == {
        "model.tiny.family": "'gpt2': expected one of llama, llama3, qwen2, phi3, mistral, gemma2"}
    with pytest.raises(ValueError, match="model.tiny.family='gpt2': expected one of llama, llama3"):
        build_tiny_model(tmp_path, 0, family="gpt2")


def test_each_family_has_its_traits(tmp_path):
    """What each builder promises, read off the built model (4 heads of 16 dims, 2 layers, MLP width 128)."""
    models = {f: load_model(family_spec(f, tmp_path)) for f in TINY_FAMILIES}
    attention = {f: m.model.layers[0].self_attn for f, m in models.items()}
    assert attention["llama"].k_proj.out_features == 64  # multi-head, as before the families
    for family in ("llama3", "qwen2", "mistral", "gemma2"):
        assert attention[family].k_proj.out_features == attention[family].v_proj.out_features == 2 * 16
    assert models["llama3"].config.rope_parameters["rope_theta"] == 500000.0
    assert all(getattr(attention["qwen2"], f"{x}_proj").bias is not None for x in "qkv")
    assert attention["qwen2"].o_proj.bias is None and attention["llama3"].q_proj.bias is None
    assert attention["phi3"].qkv_proj.out_features == (4 + 2 + 2) * 16 and not hasattr(attention["phi3"], "q_proj")
    assert models["phi3"].model.layers[0].mlp.gate_up_proj.out_features == 2 * 128
    assert models["gemma2"].config.layer_types == ["sliding_attention", "full_attention"]
    assert models["gemma2"].config.final_logit_softcapping == 30.0
    assert models["gemma2"].lm_head.weight is models["gemma2"].model.embed_tokens.weight
    assert {f: sliding_window(m.config) for f, m in models.items()} == {
        "llama": None, "llama3": None, "qwen2": None, "phi3": None, "mistral": MISTRAL_WINDOW, "gemma2": GEMMA2_WINDOW}


# --- the kernel engine against one full forward per pair -----------------------------------------------------

@pytest.mark.parametrize("family", TINY_FAMILIES)
@pytest.mark.parametrize("max_length,tokens_per_batch,workers", [
    (1024, 8192, 1),  # nothing truncated, one prefix group
    (1024, 300, 2),  # several prefix groups and continuation batches, two workers
    (185, 8192, 2),  # about half the shown examples cut: those pairs take the per-sequence path
])
def test_engine_equals_naive_per_pair(fitted, family, max_length, tokens_per_batch, workers):
    _, tokenizer, model = fitted(family)
    targets, candidates = make_examples(7), make_examples(9, "c")[2:]
    settings = KernelConfig(max_length=max_length, batch_size=3, tokens_per_batch=tokens_per_batch, workers=workers)
    zero, one, stats = engine_kernel(model, tokenizer, targets, candidates, settings)
    ref_zero, ref_one, ref_uf = naive_kernel(model, tokenizer, targets, candidates, max_length)
    np.testing.assert_allclose(zero, ref_zero, atol=1e-5, rtol=0)
    np.testing.assert_allclose(one, ref_one, atol=1e-5, rtol=0)
    assert np.std(ref_uf) > 1e-3  # 100x the tolerance: the shown example moves the scores
    assert stats.pairs == 49 and (max_length < 1024 or stats.per_sequence == 7)  # else only zero-shot goes alone


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_body_and_head_score_as_the_forward_does(fitted, family):
    """The engine's own head projection (with Gemma-2's logit soft-cap) passes the provider's check."""
    _, tokenizer, model = fitted(family)
    example = make_examples(3)[2]
    sequence = build_sequence([], ids_of(tokenizer, TEMPLATE.render(example)), ids_of(tokenizer, example.output),
                              tokenizer.eos_token_id, True, 1024)
    check_head_matches_forward(model, sequence, atol=1e-6)


@pytest.mark.parametrize("family", sorted(WINDOWS))
def test_sliding_windows_bite_and_need_prefixes_that_end_together(fitted, family, monkeypatch):
    """The window changes the naive kernel (it bites on these sequences), and the engine equals it only with
    left-aligned cached prefixes: right-aligned ones put a short prefix's last tokens outside the window."""
    _, tokenizer, model = fitted(family)
    targets, candidates = make_examples(7), make_examples(9, "c")[2:]
    _, ref_one, _ = naive_kernel(model, tokenizer, targets, candidates, 1024)
    monkeypatch.setattr(model.config, "sliding_window", 10 ** 6)
    _, unwindowed, _ = naive_kernel(model, tokenizer, targets, candidates, 1024)
    monkeypatch.undo()
    assert np.abs(unwindowed - ref_one).max() > 0.1
    monkeypatch.setattr(engine.ScoringSetup, "left_aligned", property(lambda self: False))
    _, right_aligned, _ = engine_kernel(model, tokenizer, targets, candidates, KernelConfig(workers=1))
    assert np.abs(right_aligned - ref_one).max() > 1e-4  # 10x the tolerance the aligned engine meets


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_scoring_after_a_shared_prefix_equals_a_full_forward(fitted, family):
    """The rating-prompt path (SelectIT): a prefix longer than any window, cached once, then every item."""
    _, tokenizer, model = fitted(family)
    prefix = ids_of(tokenizer, "Rate the following example from 1 (poor) to 5 (excellent), with care.\n" * 2)
    assert len(prefix) > 2 * MISTRAL_WINDOW
    items = training_items(make_examples(5), tokenizer, TEMPLATE, max_length=1024)
    got = scored_log_probs(model, items, prefix=prefix, batch_size=3)
    for item, values in zip(items, got):
        expected = naive_log_probs(model, prefix + list(item.context) + list(item.scored), len(prefix) +
                                   len(item.context))
        np.testing.assert_allclose(values, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_batched_generation_equals_a_hand_rolled_greedy_loop(fitted, family):
    """Left-padded batches through generate() and the family's own cache (a sliding layer keeps its last window
    slots only) against full forwards without padding or cache, on prompts longer than any window."""
    _, tokenizer, model = fitted(family)
    prompts = [TEMPLATE.render(example) for example in make_examples(4)]
    assert min(map(len, prompts)) > GEMMA2_WINDOW and max(map(len, prompts)) > MISTRAL_WINDOW
    outputs = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=4, progress=False)
    assert any(outputs) and outputs == [greedy_by_hand(model, tokenizer, p, 8) for p in prompts]


# --- LoRA targets and LESS's per-example gradients --------------------------------------------------------------

def linear_names(model) -> set[str]:
    """Every nn.Linear of a plain causal LM except its output head."""
    head = model.get_output_embeddings()
    return {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear) and module is not head}


@pytest.mark.parametrize("family", TINY_FAMILIES)
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_all_linear_lora_adapts_every_linear_but_the_head(tmp_path, family, method):
    spec = family_spec(family, tmp_path)
    expected = linear_names(load_model(spec))
    model = build_peft_model(spec, TrainConfig(method=method, target_modules="all-linear"))
    adapted = {name.removeprefix("base_model.model.") for name, module in model.named_modules()
               if hasattr(module, "lora_A") and len(module.lora_A) > 0}
    assert adapted == expected
    if family == "phi3":
        assert {"model.layers.1.self_attn.qkv_proj", "model.layers.1.mlp.gate_up_proj"} <= adapted
    if method == "qlora":
        import bitsandbytes as bnb

        layer = model.get_submodule("base_model.model.model.layers.0.mlp.down_proj").base_layer
        assert isinstance(layer, bnb.nn.Linear4bit) and layer.weight.dtype == torch.uint8


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_less_fast_gradients_equal_one_backward_per_example(tmp_path, family):
    spec = family_spec(family, tmp_path)
    tokenizer = load_tokenizer(spec)
    model = build_lora_model(spec, LESSSelector.Config(lora_r=4, lora_alpha=8), seed=0).eval()
    randomise_lora(model)
    names = [name for name, _ in lora_parameters(model)]
    if family == "phi3":  # the fused projections carry LoRA weights whose gradients the hooks must split per example
        assert any("qkv_proj.lora_A" in n for n in names) and any("gate_up_proj.lora_B" in n for n in names)
    items = training_items(make_examples(4), tokenizer, TEMPLATE, 1024)
    pad = int(tokenizer.pad_token_id)
    fast, reference = fast_gradients(model, items, pad), reference_gradients(model, items, pad)
    assert reference.abs().max() > 1e-3
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-6)
