"""Cached weights on a group-shared cache: modes follow the umask, a damaged adapter is named and rebuilt."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.models.config import ModelConfig
from delift.models.folder_check import MANIFEST
from delift.models.loading import resolve_model_path
from delift.training.adapter_cache import AdapterCache, adapter_key, trained_adapter
from delift.training.settings import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEMPLATE = PromptTemplate()
CFG = TrainConfig(method="lora", r=2, alpha=4, lr=1e-3, max_steps=1, batch_size=2, logging_steps=1)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask002():
    old = os.umask(0o002)
    yield
    os.umask(old)


def examples(n: int = 2) -> list[Example]:
    return [Example(id=f"ex-{i}", instruction=f"Say {i}", input="", output=f"hi {i}", source="test") for i in range(n)]


def test_model_and_adapter_weights_follow_the_umask(tmp_path, umask002):
    spec = ModelConfig(name="tiny", source="tiny_random", seed=0, dtype="float32", cache_dir=str(tmp_path / "cache"))
    model_dir = Path(resolve_model_path(spec))
    assert mode(model_dir / "model.safetensors") == 0o664 and mode(model_dir / "config.json") == 0o664

    cached = trained_adapter(spec, examples(), TEMPLATE, CFG, seed=0, cache_dir=tmp_path / "cache",
                             output_dir=tmp_path / "run" / "finetune_qlora", progress=False)
    assert cached.parent == tmp_path / "cache" / "adapters"
    assert mode(cached) == 0o775
    assert mode(cached / "adapter_model.safetensors") == 0o664 and mode(cached / "adapter_config.json") == 0o664
    run_adapter = tmp_path / "run" / "finetune_qlora" / "adapter"
    assert mode(run_adapter / "adapter_model.safetensors") == 0o664


def test_a_truncated_cached_adapter_is_named_and_rebuilt(tmp_path, tiny_spec, caplog):
    cache_dir, train = tmp_path / "cache", examples()
    first = trained_adapter(tiny_spec, train, TEMPLATE, CFG, seed=0, cache_dir=cache_dir,
                            output_dir=tmp_path / "a", progress=False)
    weights = first / "adapter_model.safetensors"
    good = weights.read_bytes()
    assert (first / MANIFEST).is_file()
    weights.write_bytes(good[:200])  # the probe's case: a copy cut short

    with caplog.at_level(logging.WARNING, logger="delift.training.adapter_cache"):
        again = trained_adapter(tiny_spec, train, TEMPLATE, CFG, seed=0, cache_dir=cache_dir,
                                output_dir=tmp_path / "b", progress=False)
    assert again == first
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and str(weights) in warned[0] and "200 bytes" in warned[0], warned
    assert weights.read_bytes() == good  # retrained with the same seed: the same adapter, whole again
    key = adapter_key(tiny_spec, train, TEMPLATE, CFG, 0)
    assert AdapterCache(cache_dir).get(key) == first


def test_an_adapter_with_a_corrupt_header_of_the_right_size_is_a_miss(tmp_path, caplog):
    cache = AdapterCache(tmp_path)
    source = tmp_path / "trained"
    source.mkdir()
    (source / "adapter_config.json").write_text("{}")
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    (source / "adapter_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    stored = cache.put("k", source)
    assert cache.get("k") == stored
    weights = stored / "adapter_model.safetensors"
    weights.write_bytes(b"\xff" * weights.stat().st_size)  # same size, garbage header
    with caplog.at_level(logging.WARNING, logger="delift.training.adapter_cache"):
        assert cache.get("k") is None
    assert str(weights) in caplog.text and "does not load" in caplog.text
    assert not stored.exists()
