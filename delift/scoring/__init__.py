"""Per-example scoring with the language model itself, shared by the model-scored selectors.

- :mod:`.layout`: which tokens are context and which are scored (the training layout);
- :mod:`.passes`: batched forwards that return per-token log-probabilities of the scored tokens
  (with a shared prefix run once and its key/value cache reused), and next-token probabilities;
- :mod:`.cache`: results on disk under ``<paths.cache_dir>/scores``, keyed by content;
- :mod:`.scorer`: :class:`ExampleScorer`, what a selector calls.
"""

from delift.scoring.layout import ScoringItem, answer_items, training_items
from delift.scoring.scorer import ExampleScorer

__all__ = ["ExampleScorer", "ScoringItem", "answer_items", "training_items"]
