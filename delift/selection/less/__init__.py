"""LESS (Xia et al. 2024): gradient-feature matching of pool examples against a target set.

Modules: :mod:`.warmup` (LoRA warm-up with per-epoch checkpoints and Adam moments), :mod:`.gradients`
(per-example LoRA gradients: reference and fast paths, the Adam feature), :mod:`.projection` (a seeded
Rademacher projection generated block by block, a block-column scratch file), :mod:`.srht` (a subsampled
randomized Hadamard transform), :mod:`.features` (per-checkpoint features, cached per chunk),
:mod:`.matching` (weights, influence, scores), :mod:`.deviations` (how a run differs from LESS) and
:mod:`.selector` (:class:`LESSSelector`, ``selector=less``).
"""

from delift.selection.less.selector import LESSSelector

__all__ = ["LESSSelector"]
