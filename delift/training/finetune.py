"""(Q)LoRA fine-tuning of a causal LM on a selected subset: the paper's second evaluation route.

Protocol (docs/METHOD.md section 5): a 4-bit NF4 base with double quantisation and bf16 compute,
LoRA r=8, alpha=32, dropout 0.1 on every linear layer; the prompt is rendered with the same
``PromptTemplate.render`` that inference uses, the response is followed by EOS, and the prompt
tokens are masked out of the loss. Training goes through ``transformers.Trainer`` rather than a
hand-written loop so optimiser, scheduler, gradient accumulation and mixed precision behave the
way users of the library expect on a GPU.
"""

from __future__ import annotations

import copy
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.fsutil import follow_umask
from delift.models.config import ModelConfig, resolve_dtype
from delift.models.loading import DTYPES, load_model, load_tokenizer
from delift.training.settings import TrainConfig

log = logging.getLogger(__name__)


IGNORE_INDEX = -100  # the label value that torch's cross-entropy (and HF models) skip

# Callbacks that every finetune() call made inside ``training_callbacks(...)`` adds to its Trainer.
_SCOPED_CALLBACKS: ContextVar[tuple[Any, ...]] = ContextVar("delift_training_callbacks", default=())


@contextmanager
def training_callbacks(*callbacks: Any) -> Iterator[None]:
    """Add ``callbacks`` to every :func:`finetune` run inside the block (also runs started by code that
    calls ``finetune`` without a ``callbacks`` argument, e.g. an evaluation protocol).

    Each callback is a ``transformers.TrainerCallback`` (instance or class) or a plain function
    ``on_log(step, logs)`` called with the global step and the numbers Trainer logs (loss, learning
    rate, grad norm, epoch; the run's totals at the end).
    """
    token = _SCOPED_CALLBACKS.set(_SCOPED_CALLBACKS.get() + tuple(callbacks))
    try:
        yield
    finally:
        _SCOPED_CALLBACKS.reset(token)


@dataclass
class FinetuneResult:
    """The adapted model (in eval mode, ready for ``generate``) and what training reported."""

    model: Any
    tokenizer: Any
    train_loss: float  # mean training loss over all optimiser steps (Trainer's ``training_loss``)
    steps: int
    seconds: float  # wall time of ``Trainer.train`` alone (model loading excluded)
    loss_history: list[float] = field(default_factory=list)  # the logged losses: every ``logging_steps`` and the last step
    adapter_dir: Path | None = None


def tokenize_for_training(examples: Sequence[Example], tokenizer: Any, template: PromptTemplate,
                          max_length: int, mask_prompt: bool = True) -> list[dict[str, list[int]]]:
    """Token ids and labels for each example: ``tok(prompt) + tok(output) + [EOS]``.

    Prompt and response are tokenised separately (no special tokens) so the boundary is exact and
    the prompt ids are identical to what ``generate`` feeds the model at inference. When the pair
    does not fit, the prompt loses tokens from the left (its end, next to the response, is what
    conditions the answer); the response itself is never cut, and one that cannot fit with its
    EOS is an error rather than a silently different training target.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; training appends EOS to every response")
    rows: list[dict[str, list[int]]] = []
    truncated = 0
    for example in examples:
        prompt_ids = tokenizer(template.render(example), add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(example.output, add_special_tokens=False)["input_ids"] + [eos]
        if len(response_ids) > max_length:
            raise ValueError(f"example {example.id!r}: response + EOS is {len(response_ids)} tokens, "
                             f"longer than evaluation.train.max_length={max_length}")
        room = max_length - len(response_ids)
        if len(prompt_ids) > room:
            prompt_ids = prompt_ids[len(prompt_ids) - room:] if room else []
            truncated += 1
        prompt_labels = [IGNORE_INDEX] * len(prompt_ids) if mask_prompt else list(prompt_ids)
        rows.append({"input_ids": list(prompt_ids) + response_ids, "labels": prompt_labels + response_ids})
    if truncated:
        log.warning("%d of %d prompts were shortened from the left to fit max_length=%d",
                    truncated, len(rows), max_length)
    return rows


def training_collator(tokenizer: Any) -> Any:
    """``transformers.DataCollatorForSeq2Seq``: right-pads ids with the pad id (attention mask 0 there) and
    labels with -100, as tensors.

    Labels are padded separately from the ids because many tokenizers use EOS as the pad token; padding
    labels with the pad id would then teach the model to emit EOS after its EOS. The collator pads on the
    tokenizer's ``padding_side``, so it gets a copy set to the right: the caller's tokenizer keeps its own.
    """
    from transformers import DataCollatorForSeq2Seq

    right = copy.copy(tokenizer)
    right.padding_side = "right"
    return DataCollatorForSeq2Seq(right, label_pad_token_id=IGNORE_INDEX, return_tensors="pt")


def _lora_config(cfg: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=cfg.target_modules, bias="none")


def build_peft_model(model_spec: ModelConfig, cfg: TrainConfig):
    """Load the base (4-bit for qlora) and wrap it with fresh LoRA adapters; only those are trainable."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    checkpointing = {"use_reentrant": False}  # non-reentrant needs no input-grad hooks and is the recommended one
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=cfg.double_quant,
            bnb_4bit_compute_dtype=DTYPES[resolve_dtype(cfg.bnb_4bit_compute_dtype)],
        )
        model = load_model(model_spec, quantization_config=quantization)
        # Casts the non-quantised parameters (norms, embeddings, head) to fp32 for stable training.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=checkpointing)
    else:
        model = load_model(model_spec)
        if cfg.gradient_checkpointing:
            # transformers 5 renamed the method; keep working on both sides of the rename.
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing)
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing)
    if cfg.gradient_checkpointing:
        model.config.use_cache = False  # the KV cache is useless in training and conflicts with checkpointing
    # peft keeps the adapter weights in fp32 even on a bf16 base (autocast_adapter_dtype), so the
    # optimiser updates full-precision values.
    return get_peft_model(model, _lora_config(cfg))


def _mixed_precision(cfg: TrainConfig, model_spec: ModelConfig) -> dict[str, bool]:
    """bf16/fp16 autocast on CUDA only, following the compute dtype.

    On CPU we leave Trainer's autocast off: the 4-bit layers already compute in their configured
    dtype and cast back, a bf16 base computes in bf16 anyway, and CPU autocast only adds casts
    (and fp16 autocast needs a GPU grad scaler).
    """
    if not torch.cuda.is_available():
        return {"bf16": False, "fp16": False}
    dtype = DTYPES[resolve_dtype(cfg.bnb_4bit_compute_dtype)] if cfg.method == "qlora" else model_spec.torch_dtype
    if dtype == torch.bfloat16 and torch.cuda.is_bf16_supported():
        return {"bf16": True, "fp16": False}
    return {"bf16": False, "fp16": dtype == torch.float16}


def _warmup(cfg: TrainConfig, arguments_class: type) -> dict[str, float]:
    """The warmup fraction under whichever name this transformers accepts.

    transformers 5 dropped ``warmup_ratio`` and reads a float in [0, 1) of ``warmup_steps`` as a ratio.
    """
    if not 0.0 <= cfg.warmup_ratio < 1.0:
        raise ValueError(f"evaluation.train.warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    if "warmup_ratio" in inspect.signature(arguments_class.__init__).parameters:
        return {"warmup_ratio": cfg.warmup_ratio}
    return {"warmup_steps": float(cfg.warmup_ratio)}


def _callbacks():
    """A progress bar that stays quiet about metrics, a callback sending the metrics to logging, and one that
    logs the last step (so the loss of a run with fewer steps than ``logging_steps``, or of its last partial
    interval, is logged too; Trainer's mean training loss is the same either way)."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    class QuietProgress(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # the logger below reports them
            return None

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # a run shorter than logging_steps still logs its loss
            if state.global_step >= state.max_steps:
                control.should_log = True

    class LogToLogger(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                shown = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in logs.items()}
                log.info("step %d/%d: %s", state.global_step, state.max_steps, shown)

    return QuietProgress, LogToLogger, LogLastStep


def _trainer_callback(callback: Any) -> Any:
    """A TrainerCallback as it is; a plain ``on_log(step, logs)`` function wrapped in one."""
    from transformers import TrainerCallback

    if isinstance(callback, TrainerCallback) or (isinstance(callback, type) and issubclass(callback, TrainerCallback)):
        return callback
    if not callable(callback):
        raise TypeError(f"finetune callbacks: expected a TrainerCallback or a function (step, logs); got {callback!r}")
    on_log_fn: Callable[[int, dict[str, Any]], Any] = callback

    class OnLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                on_log_fn(int(state.global_step), dict(logs))

    return OnLog()


def finetune(model_spec: ModelConfig, train_examples: Sequence[Example], template: PromptTemplate,
             cfg: TrainConfig, output_dir: str | Path, seed: int, progress: bool = True,
             callbacks: Sequence[Any] | None = None) -> FinetuneResult:
    """Train LoRA adapters on ``train_examples`` and save them to ``output_dir/adapter``.

    Seeding happens before the adapters are created, so the LoRA initialisation and the data order
    are both determined by ``seed``. ``callbacks`` (TrainerCallbacks or ``on_log(step, logs)``
    functions, see :func:`training_callbacks`) are added to the Trainer, after those of any enclosing
    ``training_callbacks`` block; they see every log every ``cfg.logging_steps`` steps.
    """
    if not train_examples:
        raise ValueError("finetune: the training set is empty")
    cfg.check()
    from transformers import Trainer, TrainingArguments, set_seed
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    output_dir = Path(output_dir)
    tokenizer = load_tokenizer(model_spec)
    dataset = tokenize_for_training(train_examples, tokenizer, template, cfg.max_length, cfg.mask_prompt)
    if not any(label != IGNORE_INDEX for row in dataset for label in row["labels"]):
        raise ValueError("finetune: every label is masked; nothing to learn")

    set_seed(seed)
    model = build_peft_model(model_spec, cfg)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("%s: %d examples, %d trainable of %d parameters", cfg.method, len(dataset), trainable, total)

    use_cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(output_dir / "trainer"),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.lr,
        lr_scheduler_type=cfg.lr_scheduler,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        weight_decay=cfg.weight_decay,
        seed=seed,
        data_seed=seed,
        logging_strategy="steps",
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=not progress,
        use_cpu=not use_cuda,
        dataloader_pin_memory=use_cuda,
        remove_unused_columns=False,  # the collator picks the columns it needs
        label_names=["labels"],  # peft wrappers hide the forward signature Trainer would inspect
        **_mixed_precision(cfg, model_spec),
        **_warmup(cfg, TrainingArguments),
    )
    quiet_progress, to_logger, log_last_step = _callbacks()
    trainer = Trainer(model=model, args=args, train_dataset=dataset,
                      data_collator=training_collator(tokenizer))
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)  # what Trainer prints instead when tqdm is off; LogToLogger reports
    if progress:
        trainer.add_callback(quiet_progress())
    trainer.add_callback(to_logger())
    trainer.add_callback(log_last_step())
    for callback in (*_SCOPED_CALLBACKS.get(), *(callbacks or ())):
        trainer.add_callback(_trainer_callback(callback))

    start = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - start

    adapter_dir = output_dir / "adapter"
    model.save_pretrained(str(adapter_dir))  # adapter weights and config only, not the base
    follow_umask(adapter_dir)  # safetensors writes 0600; a shared results folder must stay readable
    model.config.use_cache = True
    model.eval()
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    log.info("trained %d steps in %.1f s, mean loss %.4f; adapter in %s",
             trainer.state.global_step, seconds, output.training_loss, adapter_dir)
    return FinetuneResult(model=model, tokenizer=tokenizer, train_loss=float(output.training_loss),
                          steps=int(trainer.state.global_step), seconds=seconds,
                          loss_history=losses, adapter_dir=adapter_dir)
