"""LESS end to end on the tiny model, against an independent computation from the cached checkpoints."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.scoring.layout import training_items
from delift.selection.base import SelectionContext, top_k
from delift.selection.less import LESSSelector
from delift.selection.less import features as features_module
from delift.selection.less.gradients import adam_feature, reference_gradients
from delift.selection.less.matching import checkpoint_weights, influence, scores_from_influence, subtask_groups
from delift.selection.less.projection import RademacherProjection
from delift.selection.less.warmup import Checkpoint, build_lora_model
from tests.conftest import make_examples
from tests.test_less_srht import explicit_matrix

TEMPLATE = PromptTemplate()
SETTINGS = dict(epochs=2, min_warmup_steps=4, batch_size=2, lora_r=4, lora_alpha=8, forward_batch_size=3,
                chunk_size=4, proj_block=128)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pool_with_duplicate() -> list[Example]:
    pool = make_examples(6)
    return pool + [dataclasses.replace(pool[1], id="copy-of-ex1")]


def targets() -> list[Example]:
    return [dataclasses.replace(ex, metadata={"subject": s}) for ex, s in zip(make_examples(3, "v"), "aba")]


def context(spec, cache_dir, **sets) -> SelectionContext:
    return SelectionContext(pool=pool_with_duplicate(), seed=0, model_spec=spec, template=TEMPLATE,
                            cache_dir=cache_dir, progress=False, **sets)


def independent_scores(spec, tokenizer, selection, project=None) -> np.ndarray:
    """Scores from the cached checkpoints by the definition: reference gradients (one backward per example),
    Adam feature for the pool, plain gradient for the targets, optional materialised projection, cosines."""
    selector = LESSSelector(LESSSelector.Config(**SETTINGS))
    model = build_lora_model(spec, selector.config, 0).eval()
    pad = int(tokenizer.pad_token_id)
    pool_items = training_items(pool_with_duplicate(), tokenizer, TEMPLATE, 1024)
    target_items = training_items(targets(), tokenizer, TEMPLATE, 1024)
    train, target, lrs = [], [], []
    for record in selection.info["checkpoints"]:
        checkpoint = Checkpoint.read(__import__("pathlib").Path(record["folder"]))
        checkpoint.load_into(model)
        G = adam_feature(reference_gradients(model, pool_items, pad), *checkpoint.flat_moments(model))
        g = reference_gradients(model, target_items, pad)
        if project is not None:
            G, g = project(G), project(g)
        train.append(G.double().numpy())
        target.append(g.double().numpy())
        lrs.append(checkpoint.mean_lr)
    matrix = influence(train, target, checkpoint_weights(lrs))
    return scores_from_influence(matrix, subtask_groups(targets(), "subject"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("less-cache")


@pytest.fixture(scope="module")
def exact(tiny_spec, cache_dir):
    ctx = context(tiny_spec, cache_dir, valid=targets())
    return LESSSelector(LESSSelector.Config(**SETTINGS, proj_dim=None, subtask_field="subject")).select(ctx, 3)


def scores_of(selection) -> np.ndarray:
    return np.array([selection.info["scores"][ex.id] for ex in pool_with_duplicate()])


def test_targets_follow_the_use_case(tiny_spec, tmp_path):
    query, valid = make_examples(2, "q"), make_examples(2, "v")
    assert LESSSelector.targets(context(tiny_spec, tmp_path, query=query, valid=valid)) == ("query", query)
    assert LESSSelector.targets(context(tiny_spec, tmp_path, valid=valid)) == ("valid", valid)
    assert LESSSelector.targets(context(tiny_spec, tmp_path, valid=valid, existing=query)) == ("valid", valid)
    with pytest.raises(ValueError, match="valid split, which is empty: give data.sizes.valid a size"):
        LESSSelector(LESSSelector.Config(**SETTINGS)).select(context(tiny_spec, tmp_path), 2)
    assert not (tmp_path / "less").exists()  # nothing was trained


def test_exact_scores_equal_the_definition(exact, tiny_spec, tiny_tokenizer):
    scores = scores_of(exact)
    np.testing.assert_allclose(scores, independent_scores(tiny_spec, tiny_tokenizer, exact), rtol=0, atol=1e-5)
    assert scores[6] == pytest.approx(scores[1], abs=1e-6)  # the duplicate scores like its original
    assert exact.indices == top_k(scores, 3) and exact.gains == sorted(exact.gains, reverse=True)
    info = exact.info
    assert info["target"]["name"] == "valid" and info["target"]["ids"] == ["v0", "v1", "v2"]
    assert info["target"]["subtasks"] == {"a": 2, "b": 1}
    assert [c["epoch"] for c in info["checkpoints"]] == [1, 2]
    np.testing.assert_allclose(info["weights"], checkpoint_weights([c["mean_lr"] for c in info["checkpoints"]]))
    assert info["projection"]["dim"] is None and info["projection"]["seed"] == 0
    assert set(info["scores"]) == {ex.id for ex in pool_with_duplicate()}
    # deviations follow this run: 7 examples, batch 2, 4 steps over 2 epochs -> 2 * 2 = 4 trained on, not 5 %
    assert ("the warm-up trained on 4 of the 7 pool examples (57%) instead of warmup_fraction=0.05 (1): the floor "
            "of min_warmup_steps=4 optimizer steps") in info["deviations"]
    assert "batch_size=2 (LESS: 32: batch 1 x 32 accumulation)" in info["deviations"]
    assert "exact full-dimension cosines" in info["deviations"][-2]
    assert not any("Rademacher" in line for line in info["deviations"])


def test_projected_scores_equal_a_materialised_projection(exact, tiny_spec, tiny_tokenizer, cache_dir):
    selection = LESSSelector(LESSSelector.Config(**SETTINGS, proj_dim=256, proj_seed=7, subtask_field="subject")).select(
        context(tiny_spec, cache_dir, valid=targets()), 3)
    assert selection.info["warmup"]["key"] == exact.info["warmup"]["key"]  # one warm-up, reused
    dim_in = selection.info["lora_parameters"]
    matrix = RademacherProjection(dim_in, 256, seed=7, block_rows=128, dtype=torch.float64).materialise()
    expected = independent_scores(tiny_spec, tiny_tokenizer, selection, project=lambda x: x.double() @ matrix)
    np.testing.assert_allclose(scores_of(selection), expected, rtol=0, atol=1e-5)
    assert selection.info["projection"] == {**selection.info["projection"], "dim": 256, "seed": 7}


def test_srht_scores_equal_its_explicit_matrix_and_never_share_rademacher_features(tiny_spec, tiny_tokenizer,
                                                                                     cache_dir):
    kwargs = dict(**SETTINGS, proj_dim=256, proj_seed=7, subtask_field="subject")
    ctx = context(tiny_spec, cache_dir, valid=targets())
    LESSSelector(LESSSelector.Config(**kwargs)).select(ctx, 3)  # Rademacher features of the same dim and seed, cached first
    selection = LESSSelector(LESSSelector.Config(**kwargs, projection="srht")).select(ctx, 3)
    assert selection.info["computed"] == 2 * (7 + 3) and selection.info["cache_hits"] == 0  # nothing reused
    matrix = torch.from_numpy(explicit_matrix(selection.info["lora_parameters"], 256, 7))
    expected = independent_scores(tiny_spec, tiny_tokenizer, selection, project=lambda x: x.double() @ matrix)
    np.testing.assert_allclose(scores_of(selection), expected, rtol=0, atol=1e-5)
    assert selection.info["projection"]["kind"] == "srht"
    assert selection.info["deviations"][-2].startswith("subsampled randomized Hadamard transform to 256")
    families = [json.loads(p.read_text())["projection"] for p in (cache_dir / "less" / "features").glob("*/family.json")
                if "projection" in json.loads(p.read_text())]
    # a Rademacher feature's key is what it was before srht existed: {dim, seed} alone
    assert {"dim": 256, "seed": 7} in families and {"dim": 256, "seed": 7, "kind": "srht"} in families
    again = LESSSelector(LESSSelector.Config(**kwargs, projection="srht")).select(ctx, 3)
    assert again.info["computed"] == 0 and again.info["scores"] == selection.info["scores"]


def test_a_rerun_reads_everything_from_the_cache(exact, tiny_spec, cache_dir, monkeypatch):
    monkeypatch.setattr(features_module, "build_lora_model", lambda *a, **k: pytest.fail("model loaded"))
    again = LESSSelector(LESSSelector.Config(**SETTINGS, proj_dim=None, subtask_field="subject")).select(
        context(tiny_spec, cache_dir, valid=targets()), 3)
    assert again.info["computed"] == 0 and again.info["cache_hits"] > 0
    assert again.info["scores"] == exact.info["scores"]


class Killed(Exception):
    pass


@pytest.mark.parametrize("projection", ["rademacher", "srht"])
def test_a_killed_feature_stage_resumes_from_its_chunks(exact, tiny_spec, cache_dir, monkeypatch, projection):
    kwargs = dict(**SETTINGS, proj_dim=128, proj_seed=3, projection=projection)
    ctx = context(tiny_spec, cache_dir, query=make_examples(2, "q"))
    original, calls = features_module.FeatureStore.save, []

    def save_then_die(self, *args, **kw):
        if len(calls) == 2:
            raise Killed
        calls.append(1)
        original(self, *args, **kw)

    monkeypatch.setattr(features_module.FeatureStore, "save", save_then_die)
    with pytest.raises(Killed):
        LESSSelector(LESSSelector.Config(**kwargs)).select(ctx, 2)
    monkeypatch.setattr(features_module.FeatureStore, "save", original)
    resumed = LESSSelector(LESSSelector.Config(**kwargs)).select(ctx, 2)
    assert resumed.info["cache_hits"] == 2 + 4  # the query chunk and the first pool chunk of checkpoint 1
    assert resumed.info["target"]["name"] == "query"
    fresh = LESSSelector(LESSSelector.Config(**kwargs)).select(ctx, 2)
    assert fresh.info["computed"] == 0 and fresh.info["scores"] == resumed.info["scores"]
    assert not list((cache_dir / "less" / "scratch").glob("*.bin"))


def test_selector_less_composes_and_bad_values_name_their_keys():
    from delift.config.checks import ConfigError
    from delift.config.loader import compose_config
    from delift.run.pipeline import build

    cfg = compose_config(["selector=less", "selector.proj_dim=null", "selector.subtask_field=subject"])
    selector = build(cfg.selector)
    assert isinstance(selector, LESSSelector) and selector.config.proj_dim is None
    assert selector.config.lora_r == 8 and selector.config.lora_alpha == 32
    with pytest.raises(ConfigError) as error:
        compose_config(["selector=less", "selector.proj_block=100", "selector.gradient_path=slow",
                        "selector.warmup_fraction=0", "selector.projection=hadamard"])
    for key in ("selector.proj_block", "selector.gradient_path", "selector.warmup_fraction", "selector.projection"):
        assert key in str(error.value)
    assert "selector.projection: 'hadamard': expected one of rademacher, srht" in str(error.value)
