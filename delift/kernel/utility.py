"""The DELIFT utility kernel (METHOD.md section 1).

For target i and candidate j, with p_t the teacher-forced probability of the t-th token of
y_i (final EOS included):
    d(seq) = sqrt(mean_t (1 - p_t)^2)
    UF[i, j] = d_zero(i) - d_one(i, j)
where the zero-shot sequence shows only x_i and the one-shot sequence shows (x_j, y_j) first.
Rows are targets, columns are candidates, everywhere.

The per-token probabilities can be reduced another way (``aggregate``, per kernel request):

- ``distance`` (default, DELIFT): d = sqrt(mean_t (1 - p_t)^2) in fp64; UF = d_zero - d_one;
- ``logprob_sum`` (Nuggets' golden score): l = sum_t log p_t, log p_t taken from the same fp32
  log-softmax (never the log of a rounded p), summed in fp64. The arrays called ``d_zero`` /
  ``d_one`` then hold l_zero / l_one, and UF = l_one - l_zero: the log-likelihood gain of showing
  the candidate.

Either way UF is "positive when showing candidate j helps target i" (``utility_matrix``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.kernel.sequences import ScoredSequence, response_fits

KERNEL_CODE_VERSION = 3  # bump whenever the numbers a kernel holds would change
DEFAULT_AGGREGATE = "distance"
AGGREGATES = ("distance", "logprob_sum")  # how a sequence's scored-token probabilities become one number


def check_aggregate(aggregate: str) -> str:
    """``aggregate`` when it is one of ``AGGREGATES``, else a ValueError naming the choices."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"kernel aggregate {aggregate!r}: expected one of {', '.join(AGGREGATES)}")
    return aggregate


class KernelRequest(NamedTuple):
    """One kernel a selector needs (``Selector.kernel_requests``): ``provider.utility(*request)`` and
    ``provider.fill(*request)``; a plain (targets, candidates) pair means the default aggregate."""

    targets: list[Example]
    candidates: list[Example]
    aggregate: str = DEFAULT_AGGREGATE


def utility_matrix(d_zero: np.ndarray, d_one: np.ndarray, aggregate: str = DEFAULT_AGGREGATE) -> np.ndarray:
    """UF (targets x candidates), positive when the candidate helps: d_zero - d_one for distances,
    l_one - l_zero for log-probability sums."""
    d_zero, d_one = np.asarray(d_zero), np.asarray(d_one)
    if check_aggregate(aggregate) == "distance":
        return d_zero[:, None] - d_one
    return d_one - d_zero[:, None]


@dataclass(frozen=True)
class KernelSettings:
    """Everything besides model and data that determines a kernel's numbers (``conf/kernel``)."""

    shown_example: str = "{prompt}{response}\n\n"  # how candidate j is shown before the query
    eos_after_prompt: bool = True
    max_length: int = 1024
    on_overflow: str = "error"  # error | skip: a target response that cannot fit
    batch_size: int = 16  # sequences per pass on the per-sequence path (zero-shot, truncated pairs)
    tokens_per_batch: int = 8192  # token budget of one prefix / continuation pass of the engine
    workers: int = 0  # CPU: engine passes run at once (0: one per torch thread, at most 4)
    block_size: int = 256  # targets x candidates per stored block (resume and sharding unit)
    num_shards: int = 1  # processes that split the blocks between them
    shard: int = 0  # which of them this process is

    @classmethod
    def from_config(cls, cfg: Any) -> KernelSettings:
        """From the typed ``kernel`` config (or a mapping of its keys)."""
        data = {f.name: getattr(cfg, f.name) for f in fields(cfg)} if is_dataclass(cfg) else dict(cfg)
        for key in ("approximation", "embedder", "learned", "knn"):  # delift.kernel.approximate reads these
            data.pop(key, None)
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"kernel config: unknown keys {sorted(unknown)}")
        settings = cls(**data)
        if settings.on_overflow not in ("error", "skip"):
            raise ValueError(f"kernel.on_overflow={settings.on_overflow!r}: expected error or skip")
        if "{prompt}" not in settings.shown_example or "{response}" not in settings.shown_example:
            raise ValueError("kernel.shown_example must contain {prompt} and {response}")
        for name in ("batch_size", "tokens_per_batch", "block_size", "num_shards"):
            if getattr(settings, name) < 1:
                raise ValueError(f"kernel.{name}={getattr(settings, name)}: must be at least 1")
        if settings.workers < 0:
            raise ValueError(f"kernel.workers={settings.workers}: must be 0 (auto) or at least 1")
        if not 0 <= settings.shard < settings.num_shards:
            raise ValueError(f"kernel.shard={settings.shard}: must be in [0, kernel.num_shards={settings.num_shards})")
        return settings

    def identity(self) -> dict[str, Any]:
        """The fields that change the numbers (batching, block size and sharding do not, in fp32)."""
        return {"shown_example": self.shown_example, "eos_after_prompt": self.eos_after_prompt,
                "max_length": self.max_length, "code_version": KERNEL_CODE_VERSION}


@dataclass
class UtilityKernel:
    """UF (targets x candidates) with the per-sequence values it came from (``utility_matrix``).

    With the default aggregate ``d_zero`` / ``d_one`` are distances; with ``logprob_sum``
    (``meta["aggregate"]``) they are sums of log-probabilities of the scored tokens.
    """

    uf: np.ndarray
    d_zero: np.ndarray  # (n_targets,)
    d_one: np.ndarray  # (n_targets, n_candidates)
    target_ids: list[str]
    candidate_ids: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenizedExample:
    """Token ids of one example's parts (``shown`` = how it appears as the in-context example)."""

    query: list[int]
    response: list[int]
    shown: list[int]
    id: str = "?"  # the example's id, for error messages


def tokenize_examples(examples: Sequence[Example], tokenizer, template: PromptTemplate,
              settings: KernelSettings) -> list[TokenizedExample]:
    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    out = []
    for ex in examples:
        prompt = template.render(ex)
        shown = settings.shown_example.format(prompt=prompt, response=ex.output)
        out.append(TokenizedExample(query=ids(prompt), response=ids(ex.output), shown=ids(shown), id=ex.id))
    return out


def overflowing_targets(examples: Sequence[Example], tokenizer, template: PromptTemplate,
                        settings: KernelSettings) -> list[str]:
    """Ids of examples whose response cannot fit in ``settings.max_length``."""
    eos = tokenizer.eos_token_id
    return [ex.id for ex, tok in zip(examples, tokenize_examples(examples, tokenizer, template, settings))
            if not response_fits(tok.response, eos, settings.eos_after_prompt, settings.max_length)]


def _decoder_and_head(model):
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
    body, head = _decoder_and_head(model)
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
