"""Teacher-forced probabilities of scored tokens through the decoder body and the output head.

The head runs only at the positions that predict scored tokens (response + final EOS); a sequence's
values are reduced by the kernel's ``aggregate`` (:mod:`delift.kernel.settings`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from delift.kernel.sequences import ScoredSequence
from delift.kernel.settings import DEFAULT_AGGREGATE, check_aggregate


def decoder_and_head(model):
    """The transformer body (returns hidden states) and the output projection."""
    body = getattr(model, model.base_model_prefix, None)
    if body is None or body is model:
        raise TypeError(f"{type(model).__name__}: cannot find its decoder body via base_model_prefix")
    return body, model.get_output_embeddings()


@torch.inference_mode()
def check_head_matches_forward(model, sequence: ScoredSequence, atol: float = 1e-3) -> None:
    """Compare our body + head scoring with the model's own forward once.

    ``score_sequences`` projects only the scored positions; a model whose forward rescales logits
    in a way we do not replicate (only Gemma-style soft-capping is handled) would be scored wrongly.
    """
    device = next(model.parameters()).device
    ids = torch.tensor([sequence.input_ids], device=device)
    full = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    positions = torch.arange(sequence.response_start - 1, len(sequence.input_ids) - 1, device=device)
    expected = full[positions].gather(1, ids[0, sequence.response_start:, None]).squeeze(1).exp()
    p = _token_probabilities(model, ids, torch.ones_like(ids), [0] * len(positions), positions.tolist(),
                             sequence.input_ids[sequence.response_start:], exact_target=False)
    if not torch.allclose(p, expected, atol=atol, rtol=0):
        raise NotImplementedError(
            f"{type(model).__name__}: scoring through the decoder body and output head differs from the "
            f"model's forward by {float((p - expected).abs().max()):.3g}; this architecture rescales its "
            "logits in a way delift.kernel does not replicate yet")


def _token_probabilities(model, input_ids, attention, rows, cols, targets, exact_target: bool = True,
                         log: bool = False) -> torch.Tensor:
    """p (or log p) of each target token, from the hidden state at (row, col), projected by the output head."""
    body, head = decoder_and_head(model)
    device = input_ids.device
    hidden = body(input_ids=input_ids, attention_mask=attention).last_hidden_state
    scored = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return token_probabilities(head, softcap, scored, torch.tensor(targets, device=device), exact_target=exact_target,
                               log=log)


def token_probabilities(head, softcap, hidden: torch.Tensor, targets: torch.Tensor, rows: int = 256,
                        exact_target: bool = True, log: bool = False) -> torch.Tensor:
    """p (S,) of ``targets`` (S,) from the hidden states (S, H) of the positions that predict them.

    ``log=True`` returns log p instead: the fp32 log-softmax value itself, not the log of p (which
    would lose the tail of small probabilities and cost an extra rounding).

    The head runs at most ``rows`` positions at a time in the model's dtype, in chunks of equal size
    (a small last chunk would re-read the whole head's weights for a few rows). On a CPU each 32-row slice of
    the logits is taken to fp32 and log-softmaxed while it is still in cache: fp32 logits of 256
    positions x a 49k vocabulary (50 MB) would go through memory twice more. In bf16 the logits
    come out rounded to bf16 (about 0.1 at |logit| ~ 20), so the logit of the target token itself is
    recomputed as an fp32 dot product (``exact_target``), which removes most of that error from p.
    """
    out = torch.empty(targets.shape, dtype=torch.float32, device=hidden.device)
    exact_target = exact_target and isinstance(head, torch.nn.Linear) and hidden.dtype != torch.float32
    rows = -(-len(targets) // -(-len(targets) // rows)) if len(targets) else rows  # equal chunks, none tiny
    step = 32 if hidden.device.type == "cpu" else rows
    for start in range(0, len(targets), rows):
        logits = head(hidden[start:start + rows])
        for sub in range(0, len(logits), step):
            where = slice(start + sub, start + min(sub + step, len(logits)))
            part, t = logits[sub:sub + step].float(), targets[where]
            if exact_target:
                exact = (hidden[where].float() * head.weight[t].float()).sum(-1)
                if head.bias is not None:
                    exact = exact + head.bias[t].float()
                part.scatter_(-1, t[:, None], exact[:, None])
            if softcap:
                part = torch.tanh(part / softcap) * softcap
            values = torch.log_softmax(part, dim=-1).gather(-1, t[:, None]).squeeze(-1)
            out[where] = values if log else values.exp()
    return out


@torch.inference_mode()
def score_sequences(model, sequences: Sequence[ScoredSequence], pad_id: int,
                    aggregate: str = DEFAULT_AGGREGATE) -> np.ndarray:
    """One value per sequence, one padded forward pass for the batch: d = sqrt(mean_t (1 - p_t)^2)
    (``distance``) or sum_t log p_t (``logprob_sum``), over the scored tokens, in fp64.

    The output projection runs only at the positions that predict scored tokens.
    """
    log = check_aggregate(aggregate) == "logprob_sum"
    device = next(model.parameters()).device
    width = max(len(s.input_ids) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for b, seq in enumerate(sequences):
        n = len(seq.input_ids)
        input_ids[b, :n] = torch.tensor(seq.input_ids)
        attention[b, :n] = 1
        positions = range(seq.response_start - 1, n - 1)  # position t-1 predicts token t
        rows.extend([b] * len(positions))
        cols.extend(positions)
        targets.extend(seq.input_ids[seq.response_start:])
    values = _token_probabilities(model, input_ids.to(device), attention.to(device), rows, cols, targets, log=log)
    terms = values.double() if log else (1.0 - values.double()) ** 2
    row_index = torch.tensor(rows, device=device)
    sums = torch.zeros(len(sequences), dtype=torch.float64, device=device).index_add_(0, row_index, terms)
    if log:
        return sums.cpu().numpy()
    counts = torch.tensor([s.num_scored for s in sequences], dtype=torch.float64, device=device)
    return torch.sqrt(sums / counts).cpu().numpy()
