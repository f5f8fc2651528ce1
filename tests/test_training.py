"""Fine-tuning and generation on the tiny random Llama.

Its byte-level tokenizer has no merges, so one byte is one token: token counts can be checked by
hand, and tokenising ``a + b`` equals tokenising ``a`` then ``b``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.evaluation.generation import generate
from delift.models.config import ModelConfig
from delift.models.loading import load_model, load_tokenizer
from delift.training.finetune import finetune, tokenize_for_training, training_collator
from delift.training.settings import TrainConfig

TEMPLATE = PromptTemplate()


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> ModelConfig:
    return ModelConfig(name="tiny", source="tiny_random", seed=0, cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def tokenizer(spec: ModelConfig):
    return load_tokenizer(spec)


def example(output: str = "hello there", instruction: str = "Say hi", input_: str = "", id_: str = "ex-1") -> Example:
    return Example(id=id_, instruction=instruction, input=input_, output=output, source="test")


def ids_of(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def device_of(model) -> torch.device:
    return model.get_input_embeddings().weight.device


# --- (a) tokenisation -------------------------------------------------------------------------

def test_tokenize_concatenates_prompt_response_and_eos(tokenizer):
    ex = example()
    prompt = TEMPLATE.render(ex)
    [row] = tokenize_for_training([ex], tokenizer, TEMPLATE, max_length=512, mask_prompt=True)
    n_prompt, n_response = len(prompt.encode()), len(ex.output.encode())
    assert len(row["input_ids"]) == n_prompt + n_response + 1
    assert row["input_ids"][:-1] == ids_of(tokenizer, prompt + ex.output)  # no merges: same as one call
    assert row["input_ids"][-1] == tokenizer.eos_token_id
    assert row["labels"][:n_prompt] == [-100] * n_prompt
    assert row["labels"][n_prompt:] == ids_of(tokenizer, ex.output) + [tokenizer.eos_token_id]
    assert tokenizer.decode(row["input_ids"][:n_prompt]) == prompt


def test_tokenize_without_prompt_masking_labels_everything(tokenizer):
    [row] = tokenize_for_training([example()], tokenizer, TEMPLATE, max_length=512, mask_prompt=False)
    assert row["labels"] == row["input_ids"]


def test_tokenize_shortens_the_prompt_from_the_left(tokenizer):
    ex = example(output="abc")
    prompt = TEMPLATE.render(ex)
    [row] = tokenize_for_training([ex], tokenizer, TEMPLATE, max_length=3 + 1 + 5, mask_prompt=True)
    assert len(row["input_ids"]) == 9
    assert tokenizer.decode(row["input_ids"][:5]) == prompt[-5:]  # the end of the prompt survives
    assert row["input_ids"][5:] == ids_of(tokenizer, "abc") + [tokenizer.eos_token_id]
    assert row["labels"] == [-100] * 5 + row["input_ids"][5:]
    # Exactly enough room for response + EOS: the whole prompt goes, the response stays intact.
    [row] = tokenize_for_training([ex], tokenizer, TEMPLATE, max_length=4, mask_prompt=True)
    assert row["input_ids"] == ids_of(tokenizer, "abc") + [tokenizer.eos_token_id]


def test_tokenize_rejects_a_response_longer_than_max_length(tokenizer):
    with pytest.raises(ValueError, match="too-long"):
        tokenize_for_training([example(output="abcdef", id_="too-long")], tokenizer, TEMPLATE,
                              max_length=6, mask_prompt=True)


# --- (b) collator ----------------------------------------------------------------------------

@pytest.mark.parametrize("side", ["right", "left"])
def test_collator_right_pads_ids_labels_and_mask(tokenizer, side):
    """transformers' DataCollatorForSeq2Seq gives the batch the hand-written collator gave (checked by hand):
    ids right-padded with the pad id, labels with -100, mask 0 on the padding, whatever the tokenizer's side."""
    original, tokenizer.padding_side = tokenizer.padding_side, side
    pad = tokenizer.pad_token_id
    try:
        batch = training_collator(tokenizer)([
            {"input_ids": [1, 2, 3], "labels": [-100, 2, 3]},
            {"input_ids": [4, 5, 6, 8, 9], "labels": [-100, -100, 6, 8, 9]},
        ])
        assert tokenizer.padding_side == side  # the caller's tokenizer is left as it was
    finally:
        tokenizer.padding_side = original
    assert batch["input_ids"].tolist() == [[1, 2, 3, pad, pad], [4, 5, 6, 8, 9]]
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, -100], [-100, -100, 6, 8, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["input_ids"].dtype == batch["labels"].dtype == batch["attention_mask"].dtype == torch.long
    assert sorted(batch.keys()) == ["attention_mask", "input_ids", "labels"]


# --- config ----------------------------------------------------------------------------------

def test_config_from_the_typed_block_checks_ranges_with_its_prefix():
    assert TrainConfig.from_config(TrainConfig(lr=1e-3), prefix="evaluation.lora.train").lr == 1e-3
    with pytest.raises(ValueError, match=r"evaluation\.lora\.train\.epochs: 0: must be > 0\.0"):
        TrainConfig.from_config(TrainConfig(epochs=0), prefix="evaluation.lora.train")
    assert TrainConfig(epochs=0, max_steps=3).check().max_steps == 3  # a step cap makes epochs irrelevant


def test_config_from_mapping_and_unknown_keys():
    cfg = TrainConfig.from_config({"method": "lora", "lr": 1e-3, "target_modules": ("q_proj", "v_proj")})
    assert (cfg.method, cfg.lr, cfg.target_modules, cfg.r, cfg.alpha) == ("lora", 1e-3, ["q_proj", "v_proj"], 8, 32)
    with pytest.raises(ValueError, match=r"evaluation\.train\.learning_rate"):
        TrainConfig.from_config({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match=r"evaluation\.train\.method"):
        TrainConfig(method="full").check()


def test_one_training_block(spec, tmp_path):
    """The schema's block is the one the training code takes; building one checks nothing (the loader
    reports all bad values of a config at once), finetune checks it first."""
    from delift.config.schema import TrainConfig as SchemaTrainConfig
    from delift.training import finetune as training

    assert SchemaTrainConfig is TrainConfig and not hasattr(training, "FinetuneConfig")
    bad = TrainConfig(method="full", lr=0.0)
    with pytest.raises(ValueError, match=r"evaluation\.train\.lr: .*\n.*evaluation\.train\.method"):
        finetune(spec, [example()], TEMPLATE, bad, tmp_path, seed=0)
    assert not (tmp_path / "adapter").exists()


def test_finetune_rejects_an_empty_training_set(spec, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        finetune(spec, [], TEMPLATE, TrainConfig(method="lora"), tmp_path, seed=0)


# --- (c) fine-tuning -------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_finetune_lowers_the_loss_and_saves_the_adapter(spec, tokenizer, tmp_path, method):
    examples = [example(id_=f"ex-{i}") for i in range(4)]
    batch = training_collator(tokenizer)(
        tokenize_for_training(examples, tokenizer, TEMPLATE, max_length=512, mask_prompt=True))
    base = load_model(spec, dtype=torch.float32)
    with torch.no_grad():
        initial = base(**{k: v.to(device_of(base)) for k, v in batch.items()}).loss.item()

    cfg = TrainConfig(method=method, lr=1e-2, max_steps=5, batch_size=4, logging_steps=1)
    result = finetune(spec, examples, TEMPLATE, cfg, tmp_path, seed=0)

    assert result.steps == 5 and result.seconds > 0 and len(result.loss_history) == 5
    assert result.train_loss < initial
    with torch.no_grad():
        final = result.model(**{k: v.to(device_of(result.model)) for k, v in batch.items()}).loss.item()
    assert final < initial - 0.2, (initial, final)
    adapter = Path(tmp_path) / "adapter"
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    if method == "qlora":
        assert any(type(m).__name__ == "Linear4bit" for m in result.model.modules())


# --- (d) generation --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model(spec):
    return load_model(spec, dtype=torch.float32)  # fp32 so padded and unpadded runs agree to the bit


def greedy_by_hand(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """Argmax one token at a time with full forward passes: no padding, no cache, no generate()."""
    ids = ids_of(tokenizer, prompt)
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(torch.tensor([ids + new], device=device_of(model))).logits[0, -1]
            token = int(logits.argmax())
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
    return tokenizer.decode(new, skip_special_tokens=True).strip()


def test_greedy_generation_matches_a_hand_rolled_loop(model, tokenizer):
    prompts = ["Hi", "### Instruction:\nName a colour.\n\n### Response:\n"]  # short first: sorting reorders
    side = tokenizer.padding_side
    outputs = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=2)
    assert all(outputs)  # a random model rarely picks EOS first; empty texts would prove little
    assert outputs == [greedy_by_hand(model, tokenizer, p, 8) for p in prompts]
    assert tokenizer.padding_side == side
    assert generate(model, tokenizer, prompts[::-1], max_new_tokens=8, batch_size=1) == outputs[::-1]


def test_sampling_is_reproducible_and_leaves_the_global_rng_alone(model, tokenizer):
    prompts = ["Hi", "Tell me a story"]
    state = torch.get_rng_state()
    first = generate(model, tokenizer, prompts, max_new_tokens=12, do_sample=True, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert generate(model, tokenizer, prompts, max_new_tokens=12, do_sample=True, seed=3) == first
    assert generate(model, tokenizer, prompts, max_new_tokens=12, do_sample=True, seed=4) != first


def test_generation_stops_at_eos(model, tokenizer):
    """Force EOS as the first token: one forward pass, empty texts."""
    bonus = torch.zeros(model.config.vocab_size)
    bonus[tokenizer.eos_token_id] = 1e4
    calls = []
    handles = [model.lm_head.register_forward_hook(lambda m, i, out: out + bonus.to(out.device)),
               model.lm_head.register_forward_pre_hook(lambda m, i: calls.append(1))]
    try:
        assert generate(model, tokenizer, ["Hi", "Hello there"], max_new_tokens=8) == ["", ""]
    finally:
        for handle in handles:
            handle.remove()
    assert len(calls) == 1


def test_long_prompts_lose_tokens_from_the_left_as_in_training(model, tokenizer):
    # byte tokenizer: one token per character, so the last 6 tokens of the prompt are its last 6 characters
    long_prompt = "### Instruction:\nName a colour.\n\n### Response:\n"
    truncated = generate(model, tokenizer, [long_prompt], max_new_tokens=6, max_prompt_length=6)
    assert truncated == [greedy_by_hand(model, tokenizer, long_prompt[-6:], 6)]
    assert truncated != generate(model, tokenizer, [long_prompt], max_new_tokens=6)


@pytest.mark.slow
@pytest.mark.parametrize("steps,logging_steps,logged", [(1, 10, [1]), (3, 2, [2, 3])])
def test_the_last_step_is_logged_whatever_logging_steps(spec, tmp_path, steps, logging_steps, logged):
    """Smoke's single step with logging_steps=10 used to log no loss at all (no curve on W&B)."""
    seen: list[tuple[int, float]] = []
    cfg = TrainConfig(method="lora", lr=1e-2, max_steps=steps, batch_size=4, logging_steps=logging_steps)
    result = finetune(spec, [example(id_=f"ex-{i}") for i in range(4)], TEMPLATE, cfg, tmp_path, seed=0,
                      progress=False, callbacks=[lambda step, logs: seen.append((step, logs["loss"]))
                                                 if "loss" in logs else None])
    assert [step for step, _ in seen] == logged
    assert result.loss_history == [loss for _, loss in seen] and result.steps == steps
