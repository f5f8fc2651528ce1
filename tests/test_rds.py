"""RDS+ (selector=rds): position weights, pooled hidden states vs an independent forward, round-robin order,
the per-example cache, target sets per use case, and smoke runs under every use case."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_examples
from test_pipeline import isolated_env

from delift.data.prompts import PromptTemplate
from delift.models.loading import load_model
from delift.scoring import ExampleScorer, passes
from delift.scoring.passes import position_weights
from delift.selection.base import SelectionContext
from delift.selection.rds import RDSSelector, cosine_matrix, round_robin

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DELIFT_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


def test_position_weights_are_t_over_the_sum_of_positions():
    assert np.allclose(position_weights(4), [0.1, 0.2, 0.3, 0.4])
    assert np.allclose(position_weights(1), [1.0])
    with pytest.raises(ValueError, match="at least one token"):
        position_weights(0)


def naive_embedding(model, tokenizer, template, example) -> np.ndarray:
    """One unpadded forward of prompt + response + EOS, output_hidden_states[-1], weighted by hand."""
    ids = (tokenizer(template.render(example), add_special_tokens=False)["input_ids"]
           + tokenizer(example.output, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0].double()
    n = len(ids)
    total = n * (n + 1) / 2
    return sum(hidden[t] * (t + 1) / total for t in range(n)).numpy()


def test_pooled_states_equal_an_independent_per_example_forward(tiny_spec, tiny_tokenizer):
    model, template = load_model(tiny_spec), PromptTemplate()
    examples = make_examples(5)  # varied lengths: batches of 3 are right-padded
    scorer = ExampleScorer(tiny_spec, template, None, batch_size=3, progress=False)
    got = scorer.weighted_mean_states(examples)
    want = np.stack([naive_embedding(model, tiny_tokenizer, template, ex) for ex in examples])
    assert got.shape == (5, 64)
    assert np.abs(got - want).max() <= 1e-5


def test_round_robin_order_by_hand():
    # targets t0, t1 over pool p0..p4
    sim = np.array([[0.9, 0.8, 0.1, 0.0, 0.5],
                    [0.95, 0.2, 0.3, 0.7, 0.1]])
    # round 1: t0 takes p0 (0.9); t1's best p0 is taken -> p3 (0.7)
    # round 2: t0 takes p1 (0.8); t1 takes p2 (0.3)
    # round 3: t0 takes p4 (0.5)
    assert round_robin(sim, 5) == ([0, 3, 1, 2, 4], [0, 1, 0, 1, 0])
    assert round_robin(sim, 3, turns=np.array([1, 0])) == ([0, 1, 3], [1, 0, 1])
    # ties by pool order
    assert round_robin(np.array([[0.5, 0.5, 0.5]]), 2) == ([0, 1], [0, 0])


def test_cosine_matrix_of_hand_made_embeddings():
    targets = np.array([[1.0, 0.0], [1.0, 1.0]])
    pool = np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]])
    r = 1 / np.sqrt(2)
    assert np.allclose(cosine_matrix(targets, pool), [[1, 0, -r], [r, r, -1]])


def context(tiny_spec, pool, tmp_path, **kw) -> SelectionContext:
    return SelectionContext(pool=pool, seed=0, model_spec=tiny_spec, template=PromptTemplate(),
                            cache_dir=tmp_path, progress=False, **kw)


def test_selection_is_the_round_robin_of_the_embeddings_and_the_second_run_reads_the_cache(
        tiny_spec, tmp_path, monkeypatch):
    pool = make_examples(7)
    query = [replace(ex, output=ex.output + " Checked.") for ex in make_examples(3, prefix="q")]  # new content
    template = PromptTemplate()
    plain = ExampleScorer(tiny_spec, template, None, progress=False)
    sim = cosine_matrix(plain.weighted_mean_states(query), plain.weighted_mean_states(pool))
    first = RDSSelector().select(context(tiny_spec, pool, tmp_path, query=query), 5)
    assert first.indices == round_robin(sim, 5)[0]
    assert first.info["picked_by"] == ["q0", "q1", "q2", "q0", "q1"] and first.info["scored"] == 10
    assert np.allclose(first.gains, [sim[t, i] for t, i in zip([0, 1, 2, 0, 1], first.indices)])

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran although every embedding is cached")

    monkeypatch.setattr(passes, "_run", no_forward)
    second = RDSSelector().select(context(tiny_spec, pool, tmp_path, query=query), 5)
    assert second.indices == first.indices and second.info["scored"] == 0 and second.info["cache_hits"] == 10
    top = RDSSelector(RDSSelector.Config(aggregation="max")).select(context(tiny_spec, pool, tmp_path, query=query), 3)
    best = sim.max(axis=0)
    assert top.indices == list(np.argsort(-best, kind="stable")[:3])


def test_targets_per_use_case_and_the_empty_valid_error(tiny_spec, tmp_path):
    pool, valid = make_examples(4), make_examples(2, prefix="v")
    assert RDSSelector.targets(context(tiny_spec, pool, tmp_path, valid=valid))[0] == "valid"
    assert RDSSelector.targets(context(tiny_spec, pool, tmp_path, query=valid, valid=pool))[0] == "query"
    with pytest.raises(ValueError, match="new task's valid split, which is empty: give data.sizes.valid"):
        RDSSelector().select(context(tiny_spec, pool, tmp_path, existing=valid), 2)
    with pytest.raises(ValueError, match="selector.aggregation"):
        RDSSelector(RDSSelector.Config(aggregation="min"))


@pytest.mark.slow
@pytest.mark.parametrize("usecase", ["instruction_tuning", "task_specific", "continual"])
def test_smoke_runs_under_every_use_case(tmp_path, usecase):
    if usecase != "instruction_tuning" and not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the smoke target (GSM8K) and existing data (SQuAD) are read from it")
    env = dict(isolated_env(tmp_path), DELIFT_SHARED_DATASETS=str(SHARED))
    done = subprocess.run([sys.executable, "-m", "delift", "experiment=smoke", "selector=rds", f"usecase={usecase}",
                           "progress=false", f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "subset.json").exists()


def test_the_plan_counts_rds_forward_passes_over_pool_and_targets():
    """delift-plan: one forward pass over the pool and one over the target set, as scoring work."""
    from delift.plan.cli import kind_of
    from delift.plan.jobs import plan_jobs

    (plan,) = plan_jobs(["experiment=smoke", "selector=rds"], multirun=False)
    embeds = [s for s in plan.stages if "(RDS+)" in s.name]
    assert [s.name for s in embeds] == ["embed pool (RDS+)", "embed valid (RDS+)"]
    assert all(kind_of(s) == "scoring" and s.work.sequences > 0 for s in embeds)
    assert [s.work.sequences for s in embeds] == [16, 4]  # smoke: data.sizes.train 16, valid 4, each once
