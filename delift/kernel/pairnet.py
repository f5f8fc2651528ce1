"""The pair network of ``kernel.approximation=learned`` (after NN-CIFT, Agarwal & Hakkani-Tur 2025).

    UF(i, j) ~ w2 . ReLU(W1 [e_i ; e_j] + b1) + b2

on the concatenated L2-normalised sentence embeddings of target i and candidate j, trained with Adam
on MSE of the standardised UF (the scale is folded back into w2, b2 afterwards).

Prediction never loops over pairs: W1 = [W_t | W_c] splits into a target and a candidate part,
A = E_t W_t^T (n_t x h) and B = E_c W_c^T + b1 (n_c x h) are computed once, and a block of rows
R x all columns is ReLU(A[R, None] + B[None]) @ w2 + b2, a few matrix operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

BLOCK_ELEMENTS = 1 << 24  # hidden activations of one prediction block (64 MB in fp32)


class PairNetwork(torch.nn.Module):
    """One hidden layer of ``hidden`` ReLU units on [e_target ; e_candidate]; predicts UF."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.dim = dim
        self.hidden = torch.nn.Linear(2 * dim, hidden)
        self.out = torch.nn.Linear(hidden, 1)

    def forward(self, e_target: torch.Tensor, e_candidate: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(torch.cat([e_target, e_candidate], dim=-1)))).squeeze(-1)

    @torch.no_grad()
    def predict_matrix(self, e_targets: np.ndarray, e_candidates: np.ndarray,
                       block_elements: int = BLOCK_ELEMENTS) -> np.ndarray:
        """UF of every (target, candidate) pair, (n_t, n_c) float64, evaluated block by block."""
        weight, bias = self.hidden.weight, self.hidden.bias
        dtype, device = weight.dtype, weight.device
        e_t = torch.as_tensor(np.asarray(e_targets), dtype=dtype, device=device)
        e_c = torch.as_tensor(np.asarray(e_candidates), dtype=dtype, device=device)
        a = e_t @ weight[:, :self.dim].T  # (n_t, h)
        b = e_c @ weight[:, self.dim:].T + bias  # (n_c, h)
        w2, b2 = self.out.weight[0], self.out.bias[0]
        n_t, n_c, h = a.shape[0], b.shape[0], a.shape[1]
        out = np.empty((n_t, n_c), dtype=np.float64)
        cols = max(1, min(n_c, block_elements // h))
        rows = max(1, block_elements // (cols * h))
        for c0 in range(0, n_c, cols):
            b_part = b[c0:c0 + cols]
            for r0 in range(0, n_t, rows):
                hidden = torch.relu(a[r0:r0 + rows, None, :] + b_part[None, :, :])  # (r, c, h)
                out[r0:r0 + rows, c0:c0 + cols] = (hidden @ w2 + b2).double().cpu().numpy()
        return out

    @torch.no_grad()
    def predict_pairs(self, e_targets: np.ndarray, e_candidates: np.ndarray, rows: np.ndarray,
                      cols: np.ndarray) -> np.ndarray:
        """UF of the listed pairs (rows[k], cols[k]) through ``forward`` (training and hold-out)."""
        dtype, device = self.hidden.weight.dtype, self.hidden.weight.device
        e_t = torch.as_tensor(np.asarray(e_targets)[rows], dtype=dtype, device=device)
        e_c = torch.as_tensor(np.asarray(e_candidates)[cols], dtype=dtype, device=device)
        return self(e_t, e_c).double().cpu().numpy()


@dataclass
class FitReport:
    train_pairs: int
    epochs: int
    train_mse: float
    seconds: float = 0.0


def fit_pair_network(e_targets: np.ndarray, e_candidates: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                     values: np.ndarray, settings: Any) -> tuple[PairNetwork, FitReport]:
    """Train on UF[rows[k], cols[k]] = values[k]; the targets are standardised, the scale folded back.
    ``settings``: ``kernel.learned`` (:class:`~delift.kernel.approximations.learned.LearnedConfig`: hidden, lr,
    batch_size, epochs, seed)."""
    hidden, lr, batch_size, epochs, seed = (settings.hidden, settings.lr, settings.batch_size, settings.epochs,
                                            settings.seed)
    import time

    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PairNetwork(e_targets.shape[1], hidden)
    e_t = torch.as_tensor(np.asarray(e_targets, dtype=np.float32))
    e_c = torch.as_tensor(np.asarray(e_candidates, dtype=np.float32))
    rows_t, cols_t = torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
    values = np.asarray(values, dtype=np.float64)
    mean, std = float(values.mean()), float(values.std())
    std = std if std > 1e-12 else 1.0
    y = torch.as_tensor((values - mean) / std, dtype=torch.float32)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    loss_sum, count = 0.0, 0
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        loss_sum, count = 0.0, 0
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            loss = torch.nn.functional.mse_loss(net(e_t[rows_t[idx]], e_c[cols_t[idx]]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(idx)
            count += len(idx)
    with torch.no_grad():  # fold the standardisation into the output layer: predictions are UF itself
        net.out.weight.mul_(std)
        net.out.bias.mul_(std).add_(mean)
    net.eval()
    train_mse = loss_sum / max(count, 1) * std * std if epochs else math.nan
    return net, FitReport(len(y), epochs, train_mse, time.perf_counter() - started)

