"""A model's shape, parameter count and tokenizer without its weights, and the FLOP formula of the plan.

FLOPs of a stage (``work``: :class:`delift.plan.work.Work`), as ``experiments/bench_kernel.py`` counts them:
    2 x P_ne x tokens                 P_ne = non-embedding parameters (the output head excluded),
                                      tokens = real tokens run through the linear layers;
  + 4 x (heads x head_dim) x context x layers    attention scores and values over the real context;
  + 2 x hidden x vocab x scored       the output head, only where it runs.
RoPE, norms, softmax and activations are left out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from delift.models.config import ModelConfig, ModelShape
from delift.models.loading import model_identity, ready_folder, source_of
from delift.plan.work import Work

log = logging.getLogger(__name__)


def head_dim(shape: ModelShape) -> int:
    return shape.head_dim or shape.hidden // shape.heads


def counted_non_embedding_params(shape: ModelShape) -> int:
    """Parameters outside the embeddings and the output head, from the shape (Llama-style decoder layers):
    layers x (q, o: 2 h (heads d) + k, v: 2 h (kv_heads d) [+ their biases] + gated MLP 3 h i + 2 norms h)
    + the final norm h."""
    h, d = shape.hidden, head_dim(shape)
    attention = 2 * h * shape.heads * d + 2 * h * shape.kv_heads * d
    if shape.qkv_bias:
        attention += shape.heads * d + 2 * shape.kv_heads * d
    return shape.layers * (attention + 3 * h * shape.intermediate + 2 * h) + h


def non_embedding_params(shape: ModelShape) -> int:
    """The stated count (``model.shape.non_embedding_params``), else the one counted from the shape."""
    return shape.non_embedding_params or counted_non_embedding_params(shape)


def total_params(shape: ModelShape) -> int:
    """Non-embedding parameters plus the input embedding, and the output head unless it is tied."""
    return non_embedding_params(shape) + shape.vocab * shape.hidden * (1 if shape.tied_embeddings else 2)


def flops(shape: ModelShape, work: Work) -> float:
    """The FLOPs of ``work`` on a model of ``shape`` (module docstring)."""
    return (2.0 * non_embedding_params(shape) * work.tokens
            + 4.0 * shape.heads * head_dim(shape) * work.context * shape.layers
            + 2.0 * shape.hidden * shape.vocab * work.scored)


def shape_from_config(config: dict[str, Any]) -> ModelShape:
    """The shape a Hugging Face config.json states (Llama, Qwen2, Phi-3, Mistral, Gemma-2 field names)."""
    heads = int(config["num_attention_heads"])
    return ModelShape(layers=int(config["num_hidden_layers"]), hidden=int(config["hidden_size"]), heads=heads,
                      kv_heads=int(config.get("num_key_value_heads") or heads),
                      intermediate=int(config["intermediate_size"]), vocab=int(config["vocab_size"]),
                      tied_embeddings=bool(config.get("tie_word_embeddings", False)),
                      qkv_bias=config.get("model_type") == "qwen2" or bool(config.get("attention_bias", False)),
                      head_dim=config.get("head_dim"))


@dataclass
class PlanModel:
    """One model as the plan sees it: shape, tokenizer, identity, and what was assumed to get them."""

    spec: ModelConfig
    shape: ModelShape
    tokenizer: Any
    identity: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name


def _config_json(spec: ModelConfig) -> tuple[dict[str, Any] | None, str]:
    folder = ready_folder(spec)
    if folder is not None and (folder / "config.json").is_file():
        return json.loads((folder / "config.json").read_text()), f"{folder}/config.json"
    return source_of(spec).config_json(spec)  # e.g. a hub model's, from the hub cache


def model_shape(spec: ModelConfig, notes: list[str]) -> ModelShape:
    """The model's config.json when it can be read without building or downloading weights, else
    ``model.shape``; a stated shape that disagrees with the config.json is reported in ``notes``."""
    config, where = _config_json(spec)
    if config is not None:
        found = shape_from_config(config)
        if spec.shape is not None:
            found.non_embedding_params = spec.shape.non_embedding_params
            stated = {k: getattr(spec.shape, k) for k in ("layers", "hidden", "heads", "kv_heads", "intermediate",
                                                          "vocab")}
            differs = {k: (v, getattr(found, k)) for k, v in stated.items() if v != getattr(found, k)}
            if differs:
                notes.append(f"{spec.name}: model.shape differs from {where} in {differs}; the config.json is used")
                found.non_embedding_params = None
        return found
    if spec.shape is not None:
        return spec.shape
    raise ValueError(f"model {spec.name!r}: its shape is unknown offline (no config.json at hand); state it in "
                     "model.shape (conf/model/llama3_8b.yaml shows the fields)")


def plan_tokenizer(spec: ModelConfig, stand_in: ModelConfig | None, notes: list[str]) -> Any:
    """The tokenizer the run will use, loaded without model weights: from the model's folder (a tiny random
    model is built in code, in well under a second), from a packaged GGUF's metadata, or from the hub cache.
    When it cannot be had offline, ``stand_in``'s tokenizer counts the tokens instead (said in ``notes``)."""
    try:
        return source_of(spec).plan_tokenizer(spec, ready_folder(spec) is not None)
    except OSError as exc:
        if stand_in is None:
            raise
        notes.append(f"{spec.name}: its tokenizer is not at hand ({str(exc).split(' (')[0]}); tokens are "
                     f"counted with {stand_in.name}'s tokenizer instead (an estimate)")
        log.warning("%s", notes[-1])
        return plan_tokenizer(stand_in, None, notes)


def identity(spec: ModelConfig, notes: list[str]) -> dict[str, Any]:
    """``model_identity(spec)`` (what kernel cache keys hash); offline, a hub model whose revision cannot be
    resolved gets ``{source, dtype, id, revision}`` instead, which groups jobs the same way (noted)."""
    try:
        return model_identity(spec)
    except OSError:
        notes.append(f"{spec.name}: its hub revision cannot be resolved offline; cache keys below are the plan's "
                     "own (they group jobs as the run's keys would, but are not the file names)")
        return source_of(spec).offline_identity(spec)


def plan_model(spec: ModelConfig, stand_in: ModelConfig | None = None) -> PlanModel:
    """Shape, tokenizer and identity of ``spec`` without its weights."""
    notes: list[str] = []
    tokenizer = plan_tokenizer(spec, stand_in, notes)  # first: a tiny model's folder is built here
    return PlanModel(spec, model_shape(spec, notes), tokenizer, identity(spec, notes), notes)
