"""Shared test setup: offline hub, a tiny random Llama, small example sets."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from delift.data.records import Example  # noqa: E402
from delift.models.config import ModelConfig  # noqa: E402
from delift.models.loading import load_model, load_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``): on a
    shared 2-core machine a second thread waits on a busy core (about 10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_spec(tmp_path_factory) -> ModelConfig:
    return ModelConfig(name="tiny", source="tiny_random", seed=0, dtype="float32",
                       cache_dir=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_spec):
    return load_tokenizer(tiny_spec)


@pytest.fixture(scope="session")
def trained_tiny_model(tiny_spec, tiny_tokenizer):
    """The tiny model after a few Adam steps on one-shot texts of ``make_examples``: a random model
    gives every reference token p ~ 1/258 (d ~ 1, UF ~ 1e-5), which would make 1e-5 checks vacuous."""
    return fit_to_one_shot_texts(load_model(tiny_spec), tiny_tokenizer, steps=25)


def fit_to_one_shot_texts(model, tokenizer, steps: int):
    """``model`` after ``steps`` full-batch Adam steps on one-shot texts of ``make_examples`` (in eval mode)."""
    from delift.data.prompts import PromptTemplate
    from delift.models.tiny import fit_to_texts

    template = PromptTemplate()
    examples = make_examples(8)
    texts = [template.render(a) + a.output + "\n\n" + template.render(b) + b.output
             for a in examples for b in examples][::4]
    return fit_to_texts(model, tokenizer, texts, steps)


def make_examples(n: int, prefix: str = "ex") -> list[Example]:
    """Varied lengths, with and without input; every field deterministic."""
    out = []
    for i in range(n):
        out.append(Example(
            id=f"{prefix}{i}",
            instruction=f"Add {i} and {i * 7 % 11}." + " Explain." * (i % 3),
            input="" if i % 2 else f"numbers: {i}, {i * 7 % 11}",
            output=f"The sum is {i + i * 7 % 11}." + " Done" * (i % 4),
            source="test",
        ))
    return out
