"""A training recipe (`TrainConfig`), its learning-rate schedule and its optimizer, and the
version of the engine that turns a recipe into weights."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from ..core.steps import parse_steps

# The version of the numbers the engine makes from a recipe: raised (once per change) whenever the
# trainer, the optimizers, the models' layouts or the augmentations change the bytes a run trains
# to, so a run's identity (`RunSpec.identity`, which names it from 2 on) never points at weights
# an older engine made. 2: batched augmentations (other draws), channels-last CNNs, PLATON's
# official pruning count.
ENGINE_VERSION = 2

SCHEDULES = ("constant", "cosine", "step")


@dataclass(frozen=True)
class TrainConfig:
    """A training recipe. Steps are optimizer steps; `"3ep"` / `"500it"` strings are accepted."""

    batch_size: int = 64
    max_steps: int | str = "1ep"
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    min_lr: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine | step
    warmup_steps: int | str = 0
    step_milestones: tuple[int | str, ...] = ()
    step_gamma: float = 0.1
    grad_clip: float | None = None
    accum_steps: int = 1
    patience: int | None = None  # early stopping, counted in evaluations
    eval_every: int | str = "1ep"
    augment: bool = False

    def non_default(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != f.default}

    def steps_per_epoch(self, n_examples: int) -> int:
        per_step = self.batch_size * self.accum_steps
        if n_examples < per_step:
            raise ValueError(f"dataset of {n_examples} examples is smaller than one step "
                             f"({per_step})")
        return n_examples // per_step


def lr_at(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then the schedule."""
    return lr_schedule(cfg, total, steps_per_epoch)(step)


def lr_schedule(cfg: TrainConfig, total: int, steps_per_epoch: int) -> Callable[[int], float]:
    """`lr_at` of one run as a function of the step, its step counts parsed once."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; valid: {', '.join(SCHEDULES)}")
    warmup = parse_steps(cfg.warmup_steps, steps_per_epoch)
    milestones = [parse_steps(m, steps_per_epoch) for m in cfg.step_milestones]

    def lr(step: int) -> float:
        if step < warmup:
            return cfg.lr * (step + 1) / warmup
        if cfg.schedule == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))
        if cfg.schedule == "step":
            return cfg.lr * cfg.step_gamma**sum(step >= m for m in milestones)
        return cfg.lr

    return lr


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The recipe's optimizer over the trainable parameters (on their device). On the CPU it is
    torch's multi-tensor (`foreach`) form, which CUDA uses by default: the per-tensor loop's
    arithmetic, bit for bit, in fewer calls; elsewhere torch's default."""
    params = [p for p in model.parameters() if p.requires_grad]
    foreach = True if all(p.device.type == "cpu" for p in params) else None
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                foreach=foreach)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                 foreach=foreach)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, foreach=foreach)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: adam, adamw, sgd")
