"""Bottom layer: causal language models and tokenizers (hub, packaged GGUF, tiny random), sentence embedders.

Only the settings are imported here: the config schema holds :class:`ModelConfig`, and composing a config
must not import torch; the source registry (:mod:`delift.models.sources`) is, as it checks ``model.source`` (load with :mod:`delift.models.loading`, embed with :mod:`delift.models.embeddings`).
"""

from delift.models import sources  # noqa: F401  (adds the model.source check to ModelConfig's; torch-free)
from delift.models.config import ModelConfig, TinyModelConfig

__all__ = ["ModelConfig", "TinyModelConfig"]
