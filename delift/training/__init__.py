"""Fine-tuning on a selected subset: QLoRA (the paper's protocol) or plain LoRA.

``settings`` holds the training block (``TrainConfig``, torch-free: the config schema imports it) and
``finetune`` the training itself (torch). Import from the modules themselves; this package imports nothing, so
importing the settings never loads torch.
"""
