"""Bottom layer: causal language models and tokenizers (hub, packaged GGUF, tiny random)."""

from delift.models.loading import ModelSpec, load_model, load_tokenizer, model_identity, resolve_model_path

__all__ = ["ModelSpec", "load_model", "load_tokenizer", "model_identity", "resolve_model_path"]
