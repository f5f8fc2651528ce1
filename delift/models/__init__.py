"""Bottom layer: causal language models and tokenizers (hub, packaged GGUF, tiny random), sentence embedders.

Only the settings are imported here: the config schema holds :class:`ModelConfig`, and composing a config
must not import torch (load with :mod:`delift.models.loading`, embed with :mod:`delift.models.embeddings`).
"""

from delift.models.config import ModelConfig, TinyModelConfig

__all__ = ["ModelConfig", "TinyModelConfig"]
