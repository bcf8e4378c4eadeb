"""The one training engine, shared by every chapter.

Classifiers and language models go through the same loop: a model maps x to logits (or to
an output with `.logits`), and the loss is cross-entropy of the flattened logits against the
flattened targets.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core.device import deterministic_kernels, task_threads
from ..core.rng import RngStreams
from ..core.steps import parse_steps
from ..data.tensors import TensorData
from .evaluation import evaluate, logits_of, summed_loss
from .recipe import TrainConfig, lr_schedule, make_optimizer

# A hook is called as `hook(trainer)` after every optimizer step, before the gradients are
# cleared. One with `state_dict()` / `load_state_dict(state)` has its state saved in checkpoints;
# one with `start(trainer)` is also called once where training starts from an initialization or a
# spawn point (`Trainer.start`; not on resuming), e.g. to mask the starting weights.
Hook = Callable[["Trainer"], None]


class EpochSampler:
    """Batches of indices from a fresh permutation every epoch, drawn from the data-order stream.

    Its state is the generator's state at the start of the epoch plus the position in it, so a
    resumed run draws exactly the batches an uninterrupted one would.
    """

    def __init__(self, n: int, batch_size: int, gen: torch.Generator):
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch_start = self.gen.get_state()
        self.perm = torch.randperm(self.n, generator=self.gen)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if (self.pos + 1) * self.batch_size > self.n:
            self._new_epoch()
        idx = self.perm[self.pos * self.batch_size:(self.pos + 1) * self.batch_size]
        self.pos += 1
        return idx

    def state_dict(self) -> dict[str, Any]:
        return {"epoch_start": self.epoch_start, "pos": self.pos}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gen.set_state(state["epoch_start"].cpu())
        self._new_epoch()
        self.pos = state["pos"]


@dataclass
class Progress:
    step: int = 0
    best_val: float = math.inf
    best_step: int | None = None  # the step of `best_val` (a run's "best_val" endpoint)
    bad_evals: int = 0
    stopped_early: bool = False
    log: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """Owns a model, its optimizer, the RNG streams and the data sampler; steps them together."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, data: TensorData, streams: RngStreams,
                 device: torch.device | str = "cpu",
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 val_data: TensorData | None = None, hooks: Iterable[Hook] = (),
                 eval_batch_size: int = 1000):
        self.device = torch.device(device)
        deterministic_kernels(self.device)
        self.model, self.cfg, self.streams = model.to(self.device).train(), cfg, streams
        self.params = list(self.model.parameters())
        self.data, self.val_data = (data.to(self.device),
                                    val_data.to(self.device) if val_data is not None else None)
        self.augment = augment if cfg.augment else None
        self.hooks = list(hooks)
        self.eval_batch_size = eval_batch_size
        self.optimizer = make_optimizer(cfg, self.model)
        self.steps_per_epoch = cfg.steps_per_epoch(len(data))
        self.total_steps = parse_steps(cfg.max_steps, self.steps_per_epoch)
        self.lr_at = lr_schedule(cfg, self.total_steps, self.steps_per_epoch)
        self.eval_every = max(1, parse_steps(cfg.eval_every, self.steps_per_epoch))
        # One draw per optimizer step, split into `accum_steps` micro-batches: a step never spans
        # epochs.
        self.sampler = EpochSampler(len(data), cfg.batch_size * cfg.accum_steps,
                                    streams.gen["data_order"])
        self.progress = Progress()

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        p = self.progress
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"step": p.step, "lr": self.lr_at(max(p.step - 1, 0))},
            "rng": self.streams.state_dict(),
            "sampler": self.sampler.state_dict(),
            "progress": {"step": p.step,
                         "best_val": p.best_val if math.isfinite(p.best_val) else None,
                         "best_step": p.best_step, "bad_evals": p.bad_evals,
                         "stopped_early": p.stopped_early, "log": p.log},
            "hooks": [h.state_dict() if hasattr(h, "state_dict") else None for h in self.hooks],
        }

    def load_state_dict(self, state: dict[str, Any], rng: bool = True) -> None:
        """Restore everything; with `rng=False` (spawning a child) keep this trainer's own streams
        and its hooks' own states (a child does not take over its parent's hook states), and start
        the best-validation record afresh: a child's best state is one of its own."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        prog = state["progress"]
        self.progress = Progress(
            step=prog["step"],
            best_val=prog["best_val"] if prog["best_val"] is not None else math.inf,
            best_step=prog.get("best_step"), bad_evals=prog["bad_evals"],
            stopped_early=prog["stopped_early"], log=list(prog["log"]))
        if rng:
            self.streams.load_state_dict(state["rng"])
            self.sampler.load_state_dict(state["sampler"])
            self._load_hooks(state.get("hooks", [None] * len(self.hooks)))
        else:
            self.sampler.pos = state["sampler"]["pos"]
            self.progress.best_val, self.progress.best_step, self.progress.bad_evals = (
                math.inf, None, 0)

    def _load_hooks(self, states: list[Any]) -> None:
        """Restore the hooks that have state; stateless ones (saved as None) need no match."""
        if len(states) != len(self.hooks) and any(s is not None for s in states):
            raise ValueError(f"the checkpoint holds {len(states)} hook states; "
                             f"this trainer has {len(self.hooks)} hooks")
        for hook, hook_state in zip(self.hooks, states):
            if hook_state is not None:
                hook.load_state_dict(hook_state)

    # -- the loop ------------------------------------------------------------------------
    def start(self) -> None:
        """Training starts here from an initialization or a spawn point: run the hooks' `start`."""
        for hook in self.hooks:
            if hasattr(hook, "start"):
                hook.start(self)

    def step(self) -> float:
        """One optimizer step (with gradient accumulation); returns the mean training loss."""
        cfg, model = self.cfg, self.model
        lr = self.lr_at(self.progress.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if not model.training:  # in training mode since `__init__`; `evaluate` restores it
            model.train()
        losses, count = [], 0
        for idx in self.sampler.next().to(self.device).chunk(cfg.accum_steps):
            x, y = self.data.batch(idx)
            if self.augment is not None:
                with self.streams.active("augmentation"):
                    x = self.augment(x)
            with self.streams.active("dropout", self.device):
                loss_sum = summed_loss(logits_of(model, x), y)
            n = y.numel()
            (loss_sum / (n * cfg.accum_steps)).backward()
            losses.append(loss_sum.detach())
            count += n
        total = sum(torch.stack(losses).tolist())  # one read of the device per step
        if not math.isfinite(total):
            raise FloatingPointError(
                f"non-finite training loss ({total}) at step {self.progress.step + 1}: training "
                "stopped before the update (a damaged input, or a learning rate too high)")
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.optimizer.step()
        self.progress.step += 1
        for hook in self.hooks:  # they see this step's (clipped) gradients and updated weights
            hook(self)
        self.optimizer.zero_grad(set_to_none=True)
        return total / count

    def run(self, until: int, on_step: Callable[[Trainer], None] = lambda t: None,
            desc: str = "train") -> None:
        """Train to optimizer step `until` (or until early stopping), calling `on_step` after
        each."""
        from ..core.progress import bar as progress_bar

        until = min(until, self.total_steps)
        with task_threads(), progress_bar(total=until, initial=self.progress.step, desc=desc,
                                          leave=False, mininterval=1.0) as bar:
            while self.progress.step < until and not self.progress.stopped_early:
                loss = self.step()
                bar.update(1)
                step = self.progress.step
                if step % self.eval_every == 0 or step == self.total_steps:
                    row = {"step": step, "train_loss": loss}
                    if self.val_data is not None:
                        val = evaluate(self.model, self.val_data, self.eval_batch_size)
                        row["val_loss"], row["val_error"] = val.loss, val.error
                        self._early_stopping(row["val_loss"])
                    self.progress.log.append(row)
                    bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "step"})
                on_step(self)

    def _early_stopping(self, val_loss: float) -> None:
        p = self.progress
        if val_loss < p.best_val:
            p.best_val, p.best_step, p.bad_evals = val_loss, p.step, 0
        else:
            p.bad_evals += 1
        if self.cfg.patience is not None and p.bad_evals >= self.cfg.patience:
            p.stopped_early = True
