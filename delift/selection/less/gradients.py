"""Per-example gradients of the LoRA parameters under the training layout, and LESS's Adam feature.

Loss of one example: the mean cross-entropy over its scored tokens (response + EOS), prompt masked
(:func:`delift.scoring.layout.training_items`). A batch is right-padded and its loss is the SUM of the
per-example means, so each example's gradient is the gradient of its own mean loss (examples never
interact: causal attention with a padding mask, and padded positions feed no scored token).

- :func:`reference_gradients`: one forward and one backward per example (the definition).
- :func:`fast_gradients`: one forward and backward per batch; forward hooks on every LoRA A/B linear
  save its input ``a`` (B, T, in) and output ``y``; ``autograd.grad`` of the batch loss w.r.t. the outputs
  gives ``dL/dy`` (B, T, out), and example b's weight gradient is ``sum_t dL/dy[b, t]^T a[b, t]`` with
  padded positions set to zero. Exact per-example gradients, equal to the reference up to rounding.

The flat gradient vector concatenates the trainable (LoRA) parameters in ``named_parameters`` order.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import torch

from delift.scoring.layout import ScoringItem
from delift.scoring.passes import decoder_and_head

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def lora_parameters(model: Any) -> list[tuple[str, torch.nn.Parameter]]:
    """The trainable parameters, in order; an error if any is not a LoRA weight."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; LESS needs a LoRA-wrapped model")
    foreign = [name for name, _ in params if "lora_" not in name]
    if foreign:
        raise ValueError(f"LESS differentiates LoRA weights only; these are trainable too: {foreign[:5]}")
    return params


def collate(items: Sequence[ScoringItem], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded ids and mask, plus the scored positions: (row, position predicting it, target, 1 / n_row)."""
    width = max(len(it.context) + len(it.scored) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    rows, positions, targets, weights = [], [], [], []
    for b, item in enumerate(items):
        if not item.context or not item.scored:
            raise ValueError(f"example {item.id!r}: needs at least one prompt token and one scored token")
        sequence = item.context + item.scored
        ids[b, :len(sequence)] = torch.tensor(sequence)
        mask[b, :len(sequence)] = 1
        start = len(item.context)
        rows += [b] * len(item.scored)
        positions += range(start - 1, start - 1 + len(item.scored))
        targets += item.scored
        weights += [1.0 / len(item.scored)] * len(item.scored)
    as_long = lambda values: torch.tensor(values, dtype=torch.long, device=device)  # noqa: E731
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "rows": as_long(rows),
            "positions": as_long(positions), "targets": as_long(targets),
            "weights": torch.tensor(weights, dtype=torch.float32, device=device)}


def batch_loss(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the batch of each example's mean NLL of its scored tokens (head applied at those positions only)."""
    body, head, softcap = decoder_and_head(model)
    hidden = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    logits = head(hidden[batch["rows"], batch["positions"]])
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # fp32 (fp64 for a float64 model)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    nll = -torch.log_softmax(logits, dim=-1).gather(-1, batch["targets"][:, None]).squeeze(-1)
    return (nll * batch["weights"].to(nll.dtype)).sum()


def reference_gradients(model: Any, items: Sequence[ScoringItem], pad_id: int) -> torch.Tensor:
    """(n, P) gradients, one forward and backward per example (float32 rows, on the model's device)."""
    params = [p for _, p in lora_parameters(model)]
    device = params[0].device
    rows = []
    for item in items:
        loss = batch_loss(model, collate([item], pad_id, device))
        grads = torch.autograd.grad(loss, params)
        rows.append(torch.cat([g.reshape(-1) for g in grads]).to(_grad_dtype(params[0])))
    return torch.stack(rows)


def _grad_dtype(param: torch.Tensor) -> torch.dtype:
    """float32 rows, or float64 for a float64 model (finite-difference checks)."""
    return torch.float64 if param.dtype == torch.float64 else torch.float32


def _weight_owners(model: Any) -> dict[int, torch.nn.Linear]:
    """id(weight) -> the nn.Linear (a LoRA A or B) it belongs to."""
    return {id(module.weight): module for module in model.modules()
            if isinstance(module, torch.nn.Linear) and module.weight.requires_grad}


@contextmanager
def _saving_io(modules: Sequence[torch.nn.Module]) -> Iterator[dict[torch.nn.Module, list]]:
    saved: dict[torch.nn.Module, list] = {m: [] for m in modules}

    def hook(module, args, output):
        saved[module].append((args[0].detach(), output))

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield saved
    finally:
        for handle in handles:
            handle.remove()


def fast_gradients(model: Any, items: Sequence[ScoringItem], pad_id: int) -> torch.Tensor:
    """(n, P) exact per-example gradients of the batch ``items`` from one forward and backward."""
    params = lora_parameters(model)
    owners = _weight_owners(model)
    missing = [name for name, p in params if id(p) not in owners or owners[id(p)].bias is not None]
    if missing:
        raise ValueError(f"the fast gradient path needs every LoRA weight in a bias-free nn.Linear; not: {missing[:5]} "
                         "(use selector.gradient_path=reference)")
    modules = [owners[id(p)] for _, p in params]
    device = params[0][1].device
    batch = collate(items, pad_id, device)
    keep = batch["attention_mask"].bool()[..., None]  # (B, T, 1): padded positions contribute zero
    with _saving_io(modules) as saved:
        loss = batch_loss(model, batch)
    calls = [(m, a, y) for m in modules for a, y in saved[m]]
    output_grads = torch.autograd.grad(loss, [y for _, _, y in calls], allow_unused=True)
    dtype = _grad_dtype(params[0][1])
    out = torch.zeros(len(items), sum(p.numel() for _, p in params), dtype=dtype, device=device)
    slices, offset = {}, 0
    for module, (_, p) in zip(modules, params):
        slices[module] = out[:, offset:offset + p.numel()].view(len(items), *p.shape)
        offset += p.numel()
    zero = torch.zeros((), dtype=dtype, device=device)
    for (module, a, _), g in zip(calls, output_grads):
        if g is None:  # an output the loss does not depend on: a zero gradient
            continue
        a = torch.where(keep, a.to(dtype), zero)
        g = torch.where(keep, g.to(dtype), zero)
        slices[module] += torch.einsum("bto,bti->boi", g, a)
    return out


def per_example_gradients(model: Any, items: Sequence[ScoringItem], pad_id: int, path: str = "fast") -> torch.Tensor:
    """(n, P) gradients of ``items`` in one call (``path``: fast | reference)."""
    if path == "fast":
        return fast_gradients(model, items, pad_id)
    if path == "reference":
        return reference_gradients(model, items, pad_id)
    raise ValueError(f"selector.gradient_path={path!r}: expected fast or reference")


def adam_feature(grads: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                 betas: tuple[float, float] = ADAM_BETAS, eps: float = ADAM_EPS) -> torch.Tensor:
    """LESS's training-side feature: one more Adam step's direction, ``m' / sqrt(v' + eps)`` (no bias correction)."""
    m = betas[0] * exp_avg + (1 - betas[0]) * grads
    v = betas[1] * exp_avg_sq + (1 - betas[1]) * grads * grads
    return m / torch.sqrt(v + eps)
