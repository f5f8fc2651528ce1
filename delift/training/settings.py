"""``TrainConfig``: the settings of one (Q)LoRA fine-tuning run, declared once (torch-free).

It is the ``evaluation.<name>.train`` schema the config loader types the YAML with and the object
:func:`delift.training.finetune.finetune` trains with. Constructing one checks nothing (the loader reports
every bad value of a config at once, through :meth:`TrainConfig.problems`); :meth:`TrainConfig.from_config`
and ``finetune`` check it, with errors naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from delift.config.checks import ConfigError, Problems, at_least, choice, raise_problems
from delift.models.config import DTYPES

LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")


@dataclass
class TrainConfig:
    """One (Q)LoRA fine-tuning run (``evaluation.<name>.train``).

    The paper used lr 2.5e-5 (constant) for many epochs at batch size 1. Our default is larger
    because our runs are short (few epochs, small models on CPU); set 2.5e-5 to reproduce it.
    """

    method: str = "qlora"  # qlora | lora (plain LoRA on the model in model.dtype)
    r: int = 8
    alpha: int = 32
    dropout: float = 0.1
    target_modules: Any = "all-linear"  # peft's shorthand, or a list of module names
    lr: float = 2.0e-4  # the paper: 2.5e-5 constant over many epochs; higher for short CPU runs
    lr_scheduler: str = "constant"
    epochs: float = 3.0  # > 0 (0 would report an untrained model as fine-tuned) unless max_steps caps training
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    mask_prompt: bool = True  # prompt tokens get label -100
    max_steps: int = -1  # > 0 caps optimizer steps (smoke runs)
    weight_decay: float = 0.0
    warmup_ratio: float = 0.0
    # qlora: dtype the 4-bit layers compute in (auto: bfloat16 on native-bf16 hardware, else float32)
    bnb_4bit_compute_dtype: str = "auto"
    double_quant: bool = True  # qlora: quantise the quantisation constants too
    gradient_checkpointing: bool = False  # true saves memory on large models (about 1/3 more compute)
    logging_steps: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, (list, tuple)) or type(self.target_modules).__name__ == "ListConfig":
            self.target_modules = [str(name) for name in self.target_modules]

    def problems(self) -> Problems:
        found: Problems = {}
        choice(found, "method", self.method, ("qlora", "lora"))
        choice(found, "bnb_4bit_compute_dtype", self.bnb_4bit_compute_dtype, DTYPES)
        choice(found, "lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        at_least(found, "lr", self.lr, 0.0, strict=True)
        if self.max_steps <= 0:
            at_least(found, "epochs", self.epochs, 0.0, strict=True)  # epochs=0 would report an untrained model
        if self.max_steps == 0:
            found["max_steps"] = "0 trains nothing: use -1 (epochs decide) or a positive cap"
        for name in ("r", "alpha", "batch_size", "grad_accum", "max_length", "logging_steps"):
            at_least(found, name, getattr(self, name), 1)
        if not 0.0 <= self.dropout < 1.0:
            found["dropout"] = f"{self.dropout!r}: must be in [0, 1)"
        if not 0.0 <= self.warmup_ratio < 1.0:
            found["warmup_ratio"] = f"{self.warmup_ratio!r}: must be in [0, 1)"
        at_least(found, "weight_decay", self.weight_decay, 0.0)
        if not isinstance(self.target_modules, str) and not (
                isinstance(self.target_modules, (list, tuple)) and self.target_modules):
            found["target_modules"] = f"{self.target_modules!r}: a module-name shorthand or a non-empty list"
        return found

    def check(self, prefix: str = "evaluation.train") -> TrainConfig:
        """``self`` when every value is valid, else one :class:`ConfigError` naming ``<prefix>.<key>``."""
        raise_problems(self, prefix)
        return self

    @classmethod
    def from_config(cls, config: TrainConfig | Mapping[str, Any] | None,
                    prefix: str = "evaluation.train") -> TrainConfig:
        """A checked copy of the typed ``train`` block (or of a mapping: unknown keys are an error naming the key)."""
        data = ({f.name: getattr(config, f.name) for f in fields(config)} if is_dataclass(config)
                else dict(config or {}))
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(f"{prefix}.{key}: unknown key; expected one of {sorted(known)}")
        return cls(**data).check(prefix)
