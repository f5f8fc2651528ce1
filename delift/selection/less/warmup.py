"""LESS's warm-up: plain LoRA on a seeded random share of the pool, with a checkpoint after every epoch.

Plan (:class:`WarmupPlan`, from the LESS config): the warm-up set is a seeded random ``ceil(warmup_fraction * n)`` examples of the
pool, grown (still at random) to ``batch_size * ceil(min_warmup_steps / epochs)`` examples when that is more,
so that a small pool still gets ``min_warmup_steps`` optimizer steps; when the whole pool is still too small,
each epoch cycles through reshuffled passes over it. Each epoch's order is seeded by ``(seed, epoch)``.

Training (:func:`warm_up`): our own loop, so the optimizer state can be read per parameter object.
AdamW (betas 0.9/0.999, eps 1e-8, weight decay 0 by default), gradient norm clipped to 1 (transformers'
default, which LESS trained with); the loss of a step is the mean over its examples of each example's mean
NLL of response + EOS (LESS: batch 1 with gradient accumulation);
linear schedule with warm-up, exactly transformers' ``get_linear_schedule_with_warmup`` (warm-up steps
= ceil(ratio * total); the first step runs at lr 0 when there is a warm-up). Dropout is reseeded at each
epoch from ``(seed, epoch)``, so an epoch resumed from a checkpoint is bit-identical to an uninterrupted one.

After epoch i, ``<folder>/epoch<i>/`` is written atomically: ``lora.safetensors`` (every LoRA weight),
``adam.safetensors`` (``<name>.exp_avg`` / ``<name>.exp_avg_sq``, read from ``optimizer.state[param]``),
``checkpoint.json`` (optimizer step, the learning rates of the epoch's steps and their mean, loss).
A killed warm-up restarts after its last complete epoch.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.fsutil import atomic_folder, atomic_write, discard_folder
from delift.models.config import ModelConfig
from delift.models.loading import DTYPES, load_model, load_tokenizer
from delift.scoring.layout import training_items
from delift.selection.less.gradients import ADAM_BETAS, ADAM_EPS, batch_loss, collate, lora_parameters

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("lora.safetensors", "adam.safetensors", "checkpoint.json")
LessConfig = Any  # the warm-up reads the LESS selector's own settings, a ``LESSSelector.Config`` (declared there once)


def target_modules(config: LessConfig) -> str | list[str]:
    """The LoRA target modules: a preset name (``all-linear``) or a list of module names."""
    modules = config.target_modules
    return modules if isinstance(modules, str) else [str(m) for m in modules]


def warmup_identity(config: LessConfig) -> dict[str, Any]:
    """Everything the warm-up's numbers depend on besides the model, template, pool and seed, as it keys the
    warm-up cache (names and order kept: the cache key of a warm-up stays what it was)."""
    modules = target_modules(config)
    return {"fraction": config.warmup_fraction, "min_steps": config.min_warmup_steps, "epochs": config.epochs,
            "lr": config.lr, "warmup_ratio": config.warmup_ratio, "weight_decay": config.weight_decay,
            "batch_size": config.batch_size, "max_grad_norm": config.max_grad_norm, "r": config.lora_r,
            "alpha": config.lora_alpha, "dropout": config.lora_dropout,
            "target_modules": modules if isinstance(modules, str) else tuple(modules),
            "max_length": config.max_length, "dtype": config.dtype}


def lora_config(config: LessConfig):
    from peft import LoraConfig

    return LoraConfig(task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=target_modules(config), bias="none")


@dataclass
class WarmupPlan:
    """Which pool examples train, and how many optimizer steps each epoch makes."""

    indices: list[int]
    steps_per_epoch: int
    epochs: int
    batch_size: int

    @classmethod
    def build(cls, n: int, config: LessConfig, seed: int) -> WarmupPlan:
        if n < 1:
            raise ValueError("LESS warm-up: the pool is empty")
        size = min(n, warmup_size(n, config))
        indices = sorted(int(i) for i in np.random.default_rng([seed, 0x1E55]).permutation(n)[:size])
        steps = max(math.ceil(size / config.batch_size), math.ceil(config.min_warmup_steps / config.epochs))
        return cls(indices, steps, config.epochs, config.batch_size)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    @property
    def examples_per_epoch(self) -> int:
        """One pass (the last batch may be partial), or full batches over several passes for the step floor."""
        size = len(self.indices)
        return size if self.steps_per_epoch == math.ceil(size / self.batch_size) else self.steps_per_epoch * self.batch_size

    def epoch_batches(self, seed: int, epoch: int) -> list[list[int]]:
        """Positions into ``indices`` for each step of ``epoch`` (1-based): one reshuffled pass, or several."""
        rng = np.random.default_rng([seed, 0x1E55, epoch])
        size, step_size, length = len(self.indices), self.batch_size, self.examples_per_epoch
        stream: list[int] = []
        while len(stream) < length:
            stream += [int(i) for i in rng.permutation(size)]
        return [stream[i:i + step_size] for i in range(0, length, step_size)]


def warmup_size(n: int, config: LessConfig) -> int:
    """Examples the warm-up wants of a pool of ``n``: ``ceil(fraction * n)``, at least 1 and enough for
    ``min_warmup_steps`` (more than ``n`` means passes over the pool are repeated)."""
    return max(math.ceil(config.warmup_fraction * n - 1e-9), 1,
               config.batch_size * math.ceil(config.min_warmup_steps / config.epochs))


def warmup_step_count(total_steps: int, ratio: float) -> int:
    return math.ceil(ratio * total_steps)


def linear_lr(step: int, total_steps: int, warmup_steps: int, lr: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based), as transformers' linear schedule with warm-up."""
    if step < warmup_steps:
        return lr * step / max(1, warmup_steps)
    return lr * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


@dataclass
class Checkpoint:
    """One epoch's end: LoRA weights and Adam moments on disk, and the epoch's learning rates."""

    epoch: int
    folder: Path
    step: int
    lrs: list[float]
    loss: float
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_lr(self) -> float:
        return float(np.mean(self.lrs)) if self.lrs else 0.0

    @classmethod
    def read(cls, folder: Path) -> Checkpoint | None:
        if not all((folder / name).is_file() for name in CHECKPOINT_FILES):
            return None
        try:
            data = json.loads((folder / "checkpoint.json").read_text())
            return cls(int(data["epoch"]), folder, int(data["step"]), [float(x) for x in data["lrs"]],
                       float(data["loss"]), float(data.get("seconds", 0.0)))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("LESS checkpoint %s is unreadable (%s); it is recomputed", folder, exc)
            return None

    def lora_state(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.folder / "lora.safetensors"))

    def adam_state(self) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(str(self.folder / "adam.safetensors"))

    def load_into(self, model: Any) -> None:
        """Copy the saved LoRA weights into ``model`` (same LoRA layout; every name must match)."""
        state, params = self.lora_state(), dict(lora_parameters(model))
        if set(state) != set(params):
            raise ValueError(f"checkpoint {self.folder}: LoRA weights do not match the model "
                             f"({len(set(state) ^ set(params))} names differ)")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state[name])

    def flat_moments(self, model: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """(m, v) flattened in the model's LoRA parameter order, on its device."""
        state, params = self.adam_state(), lora_parameters(model)
        device = params[0][1].device
        m = torch.cat([state[f"{n}.exp_avg"].reshape(-1) for n, _ in params]).to(device)
        v = torch.cat([state[f"{n}.exp_avg_sq"].reshape(-1) for n, _ in params]).to(device)
        return m, v


def completed(folder: Path, epochs: int) -> list[Checkpoint]:
    """The complete checkpoints epoch 1, 2, ... up to the first missing or damaged one."""
    found = []
    for epoch in range(1, epochs + 1):
        checkpoint = Checkpoint.read(Path(folder) / f"epoch{epoch}")
        if checkpoint is None or checkpoint.epoch != epoch:
            break
        found.append(checkpoint)
    return found


def build_lora_model(spec: ModelConfig, settings: LessConfig, seed: int):
    """The base model (plain, not quantised) with fresh seeded LoRA adapters; only those are trainable."""
    from peft import get_peft_model

    model = load_model(spec, dtype=DTYPES[settings.dtype] if settings.dtype else None)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):  # the seeded LoRA init leaves the caller's generator alone
        torch.manual_seed(seed)
        return get_peft_model(model, lora_config(settings))


def _save(folder: Path, epoch: int, model: Any, optimizer: torch.optim.Optimizer, step: int, lrs: list[float],
          loss: float, seconds: float) -> Checkpoint:
    from safetensors.torch import save_file

    params = lora_parameters(model)
    weights = {name: p.detach().float().cpu().contiguous() for name, p in params}
    moments = {}
    for name, p in params:  # by parameter object: the optimizer's own state for this tensor
        state = optimizer.state[p]
        moments[f"{name}.exp_avg"] = state["exp_avg"].detach().float().cpu().contiguous()
        moments[f"{name}.exp_avg_sq"] = state["exp_avg_sq"].detach().float().cpu().contiguous()
    record = {"epoch": epoch, "step": step, "lrs": lrs, "mean_lr": float(np.mean(lrs)), "loss": loss,
              "seconds": seconds}

    def build(tmp: Path) -> None:
        save_file(weights, str(tmp / "lora.safetensors"))
        save_file(moments, str(tmp / "adam.safetensors"))
        atomic_write(tmp / "checkpoint.json", lambda h: h.write(json.dumps(record, indent=2).encode()))

    target = folder / f"epoch{epoch}"
    if target.exists():
        finished = Checkpoint.read(target)
        if finished is not None and finished.epoch == epoch:  # a concurrent run of the same warm-up got there first
            return finished
        discard_folder(target)  # a damaged leftover
    return Checkpoint(epoch, atomic_folder(target, build), step, lrs, loss, seconds)


def _restore(model: Any, optimizer: torch.optim.Optimizer, checkpoint: Checkpoint) -> None:
    checkpoint.load_into(model)
    moments = checkpoint.adam_state()
    for name, p in lora_parameters(model):
        optimizer.state[p] = {"step": torch.tensor(float(checkpoint.step), dtype=torch.float32),
                              "exp_avg": moments[f"{name}.exp_avg"].to(p.device, p.dtype),
                              "exp_avg_sq": moments[f"{name}.exp_avg_sq"].to(p.device, p.dtype)}


def warm_up(spec: ModelConfig, template: PromptTemplate, pool: Sequence[Example], settings: LessConfig,
            seed: int,
            folder: str | Path, progress: bool = True, micro_batch: int | None = None,
            on_epoch_end: Callable[[Checkpoint], None] | None = None) -> list[Checkpoint]:
    """Train (or resume, or load) the warm-up and return one :class:`Checkpoint` per epoch.

    ``micro_batch`` (default: the whole step) bounds the examples per forward pass; it changes memory, not
    the loss (each example's mean NLL is divided by the step's example count either way).
    """
    folder = Path(folder)
    done = completed(folder, settings.epochs)
    if len(done) == settings.epochs:
        return done
    plan = WarmupPlan.build(len(pool), settings, seed)
    atomic_write(folder / "plan.json", lambda h: h.write(json.dumps(
        {**asdict(plan), "ids": [pool[i].id for i in plan.indices], "settings": warmup_identity(settings), "seed": seed},
        default=str).encode()))
    tokenizer = load_tokenizer(spec)
    items = training_items([pool[i] for i in plan.indices], tokenizer, template, settings.max_length)
    pad_id = int(tokenizer.pad_token_id)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        model = build_lora_model(spec, settings, seed)
        params = [p for _, p in lora_parameters(model)]
        optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=ADAM_BETAS, eps=ADAM_EPS,
                                      weight_decay=settings.weight_decay)
        step = 0
        if done:
            _restore(model, optimizer, done[-1])
            step = done[-1].step
            log.info("LESS warm-up resumes after epoch %d (%s)", done[-1].epoch, done[-1].folder)
        total, warm = plan.total_steps, warmup_step_count(plan.total_steps, settings.warmup_ratio)
        device = params[0].device
        model.train()
        for epoch in range(len(done) + 1, settings.epochs + 1):
            torch.manual_seed(int(np.random.default_rng([seed, 0xD20, epoch]).integers(2 ** 62)))
            batches = plan.epoch_batches(seed, epoch)
            bar = tqdm(total=sum(map(len, batches)), desc=f"LESS warm-up epoch {epoch}/{settings.epochs}",
                       unit="ex", disable=not progress)
            started, lrs, losses = time.perf_counter(), [], []
            for positions in batches:
                lr = linear_lr(step, total, warm, settings.lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for start in range(0, len(positions), micro_batch or settings.batch_size):
                    micro = [items[i] for i in positions[start:start + (micro_batch or settings.batch_size)]]
                    loss = batch_loss(model, collate(micro, pad_id, device)) / len(positions)
                    loss.backward()
                    step_loss += float(loss.detach())
                if settings.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
                optimizer.step()
                lrs.append(lr)
                losses.append(step_loss)
                step += 1
                bar.update(len(positions))
            bar.close()
            seconds = time.perf_counter() - started
            checkpoint = _save(folder, epoch, model, optimizer, step, lrs, float(np.mean(losses)), seconds)
            log.info("LESS warm-up epoch %d: %d steps, mean loss %.4f, mean lr %.3g, %.1f s (%.1f ex/s)", epoch,
                     len(batches), checkpoint.loss, checkpoint.mean_lr, seconds,
                     sum(map(len, batches)) / max(seconds, 1e-9))
            done.append(checkpoint)
            if on_epoch_end is not None:
                on_epoch_end(checkpoint)
    del model, optimizer
    return done
