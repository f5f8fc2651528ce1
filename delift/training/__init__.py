"""Fine-tuning on a selected subset: QLoRA (the paper's protocol) or plain LoRA."""

from delift.training.finetune import (
    FinetuneConfig,
    FinetuneResult,
    TrainingCollator,
    build_peft_model,
    finetune,
    tokenize_for_training,
)

__all__ = ["FinetuneConfig", "FinetuneResult", "TrainingCollator", "build_peft_model", "finetune",
           "tokenize_for_training"]
