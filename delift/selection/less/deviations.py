"""How a LESS run differs from the official LESS code (princeton-nlp/LESS), derived from its settings and warm-up plan.

Recorded as ``info.deviations`` in ``subset.json``: only the settings that differ from LESS's are listed,
with the values this run used, and the warm-up floor is reported when it made the warm-up set larger
than ``warmup_fraction`` of the pool.
"""

from __future__ import annotations

import math
from typing import Any

from delift.selection.less.projection import UNIT_ROWS
from delift.selection.less.warmup import WarmupPlan

LESS_LORA = (128, 512, ("k_proj", "o_proj", "q_proj", "v_proj"))
LESS_DIM = 8192
# setting -> (LESS's value, what LESS's value means where the number alone does not say)
LESS_SETTINGS: dict[str, tuple[Any, str]] = {
    "warmup_fraction": (0.05, " of ~270k examples"),
    "epochs": (4, ""),
    "lr": (2e-5, ""),
    "batch_size": (32, ": batch 1 x 32 accumulation"),
    "warmup_ratio": (0.03, ""),
    "weight_decay": (0.0, ""),
    "max_grad_norm": (1.0, ""),
    "lora_dropout": (0.1, ""),
}


def less_deviations(config: Any, plan: WarmupPlan, pool_size: int) -> list[str]:
    """One line per difference from LESS; ``config`` is a :class:`LESSSelector.Config`."""
    found = []
    modules = config.target_modules
    modules = (modules,) if isinstance(modules, str) else tuple(sorted(str(m) for m in modules))
    if (config.lora_r, config.lora_alpha, modules) != LESS_LORA:
        found.append(f"LoRA r={config.lora_r}, alpha={config.lora_alpha} on {', '.join(modules)} "
                     f"(LESS: r={LESS_LORA[0]}, alpha={LESS_LORA[1]} on {', '.join(LESS_LORA[2])})")
    for key, (reference, meaning) in LESS_SETTINGS.items():
        value = getattr(config, key)
        if value != reference:
            found.append(f"{key}={value:g} (LESS: {reference:g}{meaning})" if value is not None
                         else f"{key}=null (LESS: {reference:g}{meaning})")
    share = math.ceil(config.warmup_fraction * pool_size - 1e-9)
    size = len(plan.indices)
    if size > share:
        cycles = plan.examples_per_epoch / size
        found.append(f"the warm-up trained on {size} of the {pool_size} pool examples ({size / pool_size:.0%}) "
                     f"instead of warmup_fraction={config.warmup_fraction:g} ({share}): the floor of "
                     f"min_warmup_steps={config.min_warmup_steps} optimizer steps"
                     + (f", each epoch passing over them {cycles:.3g} times" if cycles > 1 else ""))
    dim = config.proj_dim
    if dim is None:
        found.append(f"exact full-dimension cosines, no projection (LESS: TRAK's random projection to {LESS_DIM})")
    elif config.projection == "srht":
        found.append(f"subsampled randomized Hadamard transform to {dim} (LESS: TRAK's dense Rademacher projection "
                     f"to {LESS_DIM}): another Johnson-Lindenstrauss transform, inner products kept in expectation")
    else:
        found.append(f"Rademacher matrix to {dim} from numpy Philox per {UNIT_ROWS}-row unit "
                     f"(LESS: TRAK's projector to {LESS_DIM}; another random matrix)")
    found.append("features in fp32 (LESS projects fp16 gradients)")
    return found
