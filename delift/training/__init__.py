"""Fine-tuning on a selected subset: QLoRA (the paper's protocol) or plain LoRA."""

from delift.training.finetune import (
    FinetuneConfig,
    FinetuneResult,
    build_peft_model,
    finetune,
    tokenize_for_training,
    training_collator,
)

__all__ = ["FinetuneConfig", "FinetuneResult", "build_peft_model", "finetune",
           "tokenize_for_training", "training_collator"]
