"""Fine-tuning on a selected subset: QLoRA (the paper's protocol) or plain LoRA.

``delift.training.settings`` (the ``TrainConfig`` block) is torch-free; the names below load
``delift.training.finetune`` (torch) only when first used, so the config schema can import the settings.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FinetuneConfig", "FinetuneResult", "TrainConfig", "build_peft_model", "finetune",
           "tokenize_for_training", "training_collator"]


def __getattr__(name: str) -> Any:
    if name == "TrainConfig":
        from delift.training.settings import TrainConfig
        return TrainConfig
    if name in __all__:
        from delift.training import finetune as module
        return getattr(module, name)
    raise AttributeError(f"module 'delift.training' has no attribute {name!r}")
