"""Bottom layer: causal language models and tokenizers (hub, packaged GGUF, tiny random).

Only the settings are imported here: the config schema holds :class:`ModelConfig`, and loading it must not
import torch (load with :mod:`delift.models.loading`).
"""

from delift.models.config import ModelConfig, TinyModelConfig

__all__ = ["ModelConfig", "TinyModelConfig"]
