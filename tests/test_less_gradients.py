"""LESS per-example gradients: the fast (hook) path against one backward per example and a finite difference."""

from __future__ import annotations

import pytest
import torch

from delift.data.prompts import PromptTemplate
from delift.models.loading import load_model
from delift.scoring.layout import training_items
from delift.selection.less import LESSSelector
from delift.selection.less.gradients import (
    adam_feature,
    batch_loss,
    collate,
    fast_gradients,
    lora_parameters,
    reference_gradients,
)
from delift.selection.less.warmup import build_lora_model
from tests.conftest import make_examples

TEMPLATE = PromptTemplate()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def randomise_lora(model, seed: int = 0) -> None:
    """LoRA B starts at zero (then every A gradient is zero); give every LoRA weight a random value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in lora_parameters(model):
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * 0.05)


@pytest.fixture(scope="module")
def lora_model(tiny_spec):
    model = build_lora_model(tiny_spec, LESSSelector.Config(lora_r=4, lora_alpha=8), seed=0).eval()
    randomise_lora(model)
    return model


def test_fast_path_equals_one_backward_per_example(lora_model, tiny_tokenizer):
    items = training_items(make_examples(4), tiny_tokenizer, TEMPLATE, 1024)
    assert len({len(it.context) + len(it.scored) for it in items}) > 1  # the batch is padded
    pad = int(tiny_tokenizer.pad_token_id)
    fast = fast_gradients(lora_model, items, pad)
    reference = reference_gradients(lora_model, items, pad)
    assert fast.shape == (4, sum(p.numel() for _, p in lora_parameters(lora_model))) and fast.dtype == torch.float32
    assert reference.abs().max() > 1e-3  # A and B gradients are both non-trivial
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-6)
    # each example alone, in a batch of one, gives its own row (padding contributes nothing)
    torch.testing.assert_close(fast_gradients(lora_model, items[2:3], pad)[0], fast[2], rtol=0, atol=1e-6)


def float64_rms_norms(model) -> None:
    """Llama's RMSNorm computes in float32 whatever the model dtype; in float64 the loss is smooth to ~1e-15,
    so a central difference is accurate (the formula is transformers' own, without the cast)."""
    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.forward = (lambda m: lambda x: m.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True)
                                                                            + m.variance_epsilon)))(module)


def test_fast_path_matches_a_finite_difference(tiny_spec, tiny_tokenizer):
    model = build_lora_model(tiny_spec, LESSSelector.Config(lora_r=4, lora_alpha=8), seed=0).double().eval()
    float64_rms_norms(model)
    randomise_lora(model, seed=1)
    items = training_items(make_examples(3), tiny_tokenizer, TEMPLATE, 1024)
    pad = int(tiny_tokenizer.pad_token_id)
    fast = fast_gradients(model, items, pad)
    assert fast.dtype == torch.float64
    params = lora_parameters(model)
    offsets = [0]
    for _, p in params:
        offsets.append(offsets[-1] + p.numel())
    for which in (0, 1, len(params) - 1):  # a lora_A, a lora_B, the last layer's weight
        name, p = params[which]
        index = 5 % p.numel()
        h = 1e-3  # truncation error ~h^2, rounding ~1e-15 / h

        def loss_at(delta: float, p=p, index=index) -> float:
            with torch.no_grad():
                p.view(-1)[index] += delta
                value = float(batch_loss(model, collate(items[1:2], pad, p.device)))
                p.view(-1)[index] -= delta
            return value

        numeric = (loss_at(h) - loss_at(-h)) / (2 * h)
        assert abs(numeric) > 1e-7
        assert fast[1, offsets[which] + index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-10), name


def test_batch_loss_is_the_sum_of_per_example_mean_nll(lora_model, tiny_tokenizer):
    items = training_items(make_examples(2), tiny_tokenizer, TEMPLATE, 1024)
    batch = collate(items, int(tiny_tokenizer.pad_token_id), torch.device("cpu"))
    with torch.no_grad():
        logits = lora_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        expected = 0.0
        for b, item in enumerate(items):
            start = len(item.context)
            log_p = torch.log_softmax(logits[b, start - 1:start - 1 + len(item.scored)], dim=-1)
            expected += -log_p[torch.arange(len(item.scored)), torch.tensor(item.scored)].mean().item()
        assert batch_loss(lora_model, batch).item() == pytest.approx(expected, rel=1e-5)


def test_adam_feature_by_hand():
    g, m, v = torch.tensor([1.0, -2.0, 0.0]), torch.tensor([0.5, 0.0, 0.1]), torch.tensor([0.25, 1.0, 0.0])
    m2 = [0.9 * 0.5 + 0.1 * 1.0, 0.1 * -2.0, 0.9 * 0.1]
    v2 = [0.999 * 0.25 + 0.001 * 1.0, 0.999 * 1.0 + 0.001 * 4.0, 0.0]
    expected = [m2[i] / (v2[i] + 1e-8) ** 0.5 for i in range(3)]
    torch.testing.assert_close(adam_feature(g, m, v), torch.tensor(expected), rtol=1e-6, atol=0)


def test_only_lora_weights_may_be_trainable(tiny_spec):
    model = load_model(tiny_spec)
    with pytest.raises(ValueError, match="LESS differentiates LoRA weights only"):
        lora_parameters(model)
