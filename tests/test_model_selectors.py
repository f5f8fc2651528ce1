"""SelectIT, IFD and LoBaSS: the formulas by hand, and each selector on the tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from delift.data.prompts import PromptTemplate
from delift.models.config import ModelConfig, TinyModelConfig
from delift.selection.base import SelectionContext
from delift.selection.ifd import IFDSelector, ifd_order, ifd_scores
from delift.selection.lobass import LoBaSSSelector, learnability
from delift.selection.selectit import SelectITSelector, load_rating_prompts, rater_config, sentence_level, token_level
from tests.conftest import make_examples

TEMPLATE = PromptTemplate()


# --- SelectIT ---------------------------------------------------------------------------------

def test_selectit_token_level_by_hand():
    s_tok, base = token_level(np.array([[.1, .2, .3, .2, .2]]))
    shares = np.exp([.1, .2, .3, .2, .2]) / np.exp([.1, .2, .3, .2, .2]).sum()
    np.testing.assert_allclose(shares, [.18061, .19960, .22059, .19960, .19960], atol=1e-5)
    assert base[0] == 3 and s_tok[0] == pytest.approx(0.077222, abs=1e-6)
    assert token_level(np.array([[.1, .2, .3, .2, .2]]) * 0.37)[0][0] == pytest.approx(s_tok[0], abs=1e-12)
    plain, _ = token_level(np.array([[.1, .2, .3, .2, .2]]), "sum")
    assert plain[0] == pytest.approx(3 * (4 * .3 - .2 - .2 - .2 - .1) / 4)  # 3/4 * sum(.3 - P_j)


def test_selectit_sentence_level_by_hand():
    assert sentence_level(np.array([0.077222, .05, .1, .02, .08])[:, None], 0.2)[0] == pytest.approx(0.065083,
                                                                                                    abs=1e-6)


def test_rating_prompts_load_verbatim(tmp_path):
    assert len(load_rating_prompts(None)) == 5
    text = tmp_path / "prompts.txt"
    text.write_text("Rate it 1-5.\n---\nScore this pair from 1 to 5.\n")
    assert load_rating_prompts(text) == ["Rate it 1-5.\n\n", "Score this pair from 1 to 5.\n\n"]
    with pytest.raises(FileNotFoundError, match="rating_prompts_file"):
        load_rating_prompts(tmp_path / "missing.json")


def test_selectit_extra_raters_are_model_configs_cached_beside_the_run_model(tmp_path):
    rater = rater_config({"name": "r", "source": "tiny_random", "seed": 2, "tiny": {"hidden_size": 32}}, str(tmp_path))
    assert rater == ModelConfig(name="r", source="tiny_random", seed=2, tiny=TinyModelConfig(hidden_size=32),
                                cache_dir=str(tmp_path))
    assert rater_config({"name": "r", "cache_dir": "/own"}, str(tmp_path)).cache_dir == "/own"
    with pytest.raises(ValueError, match="unknown keys"):
        rater_config({"name": "m", "hub": "x"}, str(tmp_path))


def test_selectit_on_the_tiny_model_ranks_by_its_score_and_records_diagnostics(tiny_spec, tmp_path):
    pool = make_examples(6)
    ctx = SelectionContext(pool=pool, seed=0, model_spec=tiny_spec, template=TEMPLATE, cache_dir=tmp_path,
                           progress=False)
    selection = SelectITSelector(SelectITSelector.Config(batch_size=4)).select(ctx, 3)
    scores = np.array([selection.info["scores"][ex.id] for ex in pool])
    assert selection.indices == [int(i) for i in np.argsort(-scores, kind="stable")[:3]]
    model = selection.info["models"][0]
    assert model["weight"] == 1.0 and 0 < model["mean_digit_mass"] < 1 and 0 <= model["prompt_agreement"] <= 1
    assert sum(model["base_score_counts"].values()) == 5 * len(pool)
    again = SelectITSelector(SelectITSelector.Config(batch_size=4)).select(ctx, 3)  # every rating comes from the cache
    assert again.indices == selection.indices and again.info["models"][0]["scored"] == 0


# --- IFD --------------------------------------------------------------------------------------

def test_ifd_loss_and_ppl_order_differently():
    conditioned, unconditioned = np.array([.5, 2.0]), np.array([1.0, 3.0])
    assert list(np.argsort(-ifd_scores(conditioned, unconditioned, "loss"))) == [1, 0]  # .5 vs .667
    assert list(np.argsort(-ifd_scores(conditioned, unconditioned, "ppl"))) == [0, 1]  # e^-.5 vs e^-1


def test_ifd_drops_above_one_and_fills_nearest_the_threshold():
    order, dropped, filled = ifd_order(np.array([0.5, 1.2, 0.9, 1.05, 0.7]), 4)
    assert order == [2, 4, 0, 3] and (dropped, filled) == (2, 1)


def test_ifd_pre_experience_is_not_built():
    with pytest.raises(NotImplementedError, match="pre_experience"):
        IFDSelector(IFDSelector.Config(pre_experience=True))


def test_ifd_on_the_tiny_model_equals_the_scorer_ratio(tiny_spec, tmp_path):
    from delift.scoring import ExampleScorer

    pool = make_examples(5)
    ctx = SelectionContext(pool=pool, seed=0, model_spec=tiny_spec, template=TEMPLATE, cache_dir=tmp_path,
                           progress=False)
    selection = IFDSelector(IFDSelector.Config(threshold=10.0)).select(ctx, 2)
    scorer = ExampleScorer(tiny_spec, TEMPLATE, None, progress=False)
    expected = scorer.response_nll(pool) / scorer.answer_nll(pool, "### Response:\n")
    np.testing.assert_allclose([selection.info["scores"][ex.id] for ex in pool], expected, rtol=1e-9)
    assert selection.indices == [int(i) for i in np.argsort(-expected, kind="stable")[:2]]


# --- LoBaSS -----------------------------------------------------------------------------------

def test_lobass_scores_by_hand():
    initial, reference = np.array([2.0, 2.0, .5]), np.array([1.0, 1.9, .1])
    assert list(np.argsort(-learnability(initial, reference, "raw"), kind="stable")) == [0, 2, 1]
    assert list(np.argsort(-learnability(initial, reference, "normalized"), kind="stable")) == [2, 0, 1]


def test_lobass_with_a_zero_adapter_scores_zero(tiny_spec, tmp_path):
    from peft import LoraConfig, get_peft_model

    from delift.models.loading import load_model

    zero = tmp_path / "zero-adapter"  # LoRA's B starts at zero: the adapter changes nothing
    get_peft_model(load_model(tiny_spec), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")).save_pretrained(zero)
    trained_on: list[int] = []

    def train_adapter(examples) -> Path:
        trained_on.append(len(examples))
        return zero

    pool = make_examples(5)
    ctx = SelectionContext(pool=pool, seed=0, model_spec=tiny_spec, template=TEMPLATE, cache_dir=tmp_path,
                           progress=False, train_adapter=train_adapter)
    selection = LoBaSSSelector().select(ctx, 2)
    assert trained_on == [5]  # the reference model is trained on the whole pool
    np.testing.assert_allclose(list(selection.info["scores"].values()), 0.0, atol=1e-9)
