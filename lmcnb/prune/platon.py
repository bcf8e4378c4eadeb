"""PLATON (Zhang et al., ICML 2022) and magnitude pruning on one cubic schedule, as trainer hooks
that run after every optimizer step (see `lmcnb.train.trainer.Hook`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .mask import VIT_PRUNABLE, prunable

SCORES = ("platon", "magnitude")


@dataclass(frozen=True)
class CubicSchedule:
    """PLATON's kept fraction r(t) at optimizer step t = 1..T, and when to prune.

    t ≤ t_i: r = 1, no pruning.
    t_i < t ≤ T − t_f: r = r_T + (1 − r_T)·(1 − (t − t_i)/(T − t_i − t_f))³, pruning when
    t % deltaT == 0. t > T − t_f: r = r_T, pruning at every step.
    (t_i = `initial_warmup`, t_f = `final_warmup`, r_T = `final_density`, all steps.)
    """

    total_steps: int
    final_density: float
    initial_warmup: int = 0
    final_warmup: int = 0
    delta_t: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.final_density <= 1:
            raise ValueError(f"final_density must be in (0, 1], got {self.final_density}")
        if self.delta_t < 1 or min(self.initial_warmup, self.final_warmup) < 0:
            raise ValueError("delta_t must be >= 1 and the warmups >= 0")
        if self.total_steps - self.initial_warmup - self.final_warmup <= 0:
            raise ValueError(f"initial_warmup + final_warmup ({self.initial_warmup} + "
                             f"{self.final_warmup}) leave none of the {self.total_steps} steps "
                             "for the cubic decay")

    def kept(self, step: int) -> float:
        """r(t), the fraction of the selected weights kept after pruning at step t."""
        r_t, t_i = self.final_density, self.initial_warmup
        if step <= t_i:
            return 1.0
        if step > self.total_steps - self.final_warmup:
            return r_t
        span = self.total_steps - t_i - self.final_warmup
        return r_t + (1 - r_t) * (1 - (step - t_i) / span) ** 3

    def prunes_at(self, step: int) -> bool:
        """Whether the schedule prunes after step `step`."""
        if step <= self.initial_warmup:
            return False
        return step > self.total_steps - self.final_warmup or step % self.delta_t == 0


class Platon:
    """PLATON (Zhang et al., ICML 2022) as a trainer hook, as its official code does it.

    At every step t (after the optimizer step, before the gradients are cleared) the importance
    I = |θ ⊙ ∇θL| of each selected weight joins the current window. When t % deltaT == 0 the
    window's mean Ī_w (its sum over deltaT; the first window counts a step 0 with I = 0) updates
    Ī ← β1·Ī + (1 − β1)·Ī_w, then Ū ← β2·Ū + (1 − β2)·|Ī_w − Ī|, and a new window starts with
    this step's I. The score is Ī·Ū (Ī alone for β2 = 1). When the schedule prunes, one global
    threshold over all selected tensors is the k-th smallest score, k = int((1 − r(t))·N), and
    the weights whose score is strictly below it are set to zero in place, as the official pruner
    does (so k − 1 weights when no scores tie); no mask is kept, so a weight may come back.

    `score="magnitude"` ranks by |θ| instead, on the same schedule. The windows, moving averages,
    the last step seen and the pruning history are the hook's state, saved in the trainer's
    checkpoints. A hook serves one trainer: fresh, it may start at any step; once used, only at
    the next step (or after `load_state_dict`).
    """

    def __init__(self, schedule: CubicSchedule, beta1: float = 0.85, beta2: float = 0.95,
                 include: tuple[str, ...] = VIT_PRUNABLE, score: str = "platon"):
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; valid: {', '.join(SCORES)}")
        if not (0 <= beta1 < 1 and 0 < beta2 <= 1):
            raise ValueError(f"need 0 <= beta1 < 1 and 0 < beta2 <= 1, got {beta1}, {beta2}")
        self.schedule, self.beta1, self.beta2 = schedule, beta1, beta2
        self.include, self.score = tuple(include), score
        self.window: dict[str, torch.Tensor] = {}  # sum of I over the current window
        self.ipt: dict[str, torch.Tensor] = {}  # Ī
        self.unc: dict[str, torch.Tensor] = {}  # Ū
        self.history: list[dict[str, float]] = []  # one row per pruning event
        self.step: int | None = None  # the last step accounted for

    def __call__(self, trainer: Any) -> None:
        self.update(trainer.model, trainer.progress.step)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Account for optimizer step `step` (1-based); its gradients must still be in `.grad`."""
        if self.step is not None and step != self.step + 1:
            raise RuntimeError(f"this PLATON hook last saw step {self.step}, not {step - 1}: give "
                               "every trainer its own hook, or restore it with the trainer's state")
        self.step = step
        params = prunable(model, self.include)
        if self.score == "platon":
            self._accumulate(params, step)
        if self.schedule.prunes_at(step):
            self._prune(params, step)

    def scores(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The current score of every entry of `params` (low scores are pruned first)."""
        if self.score == "magnitude":
            return {name: p.detach().abs() for name, p in params.items()}
        if self.beta2 == 1:
            return {name: self.ipt[name] for name in params}
        return {name: self.ipt[name] * self.unc[name] for name in params}

    def _accumulate(self, params: dict[str, torch.Tensor], step: int) -> None:
        for name, p in params.items():
            importance = (p * p.grad).abs_()
            window = _entry(self.window, name, p)
            if step % self.schedule.delta_t:
                window.add_(importance)
                continue
            mean = window.div_(self.schedule.delta_t)
            ipt = _entry(self.ipt, name, p).mul_(self.beta1).add_(mean, alpha=1 - self.beta1)
            if self.beta2 < 1:
                unc = _entry(self.unc, name, p).mul_(self.beta2)
                unc.add_((mean - ipt).abs_(), alpha=1 - self.beta2)
            self.window[name] = importance

    def _prune(self, params: dict[str, torch.Tensor], step: int) -> None:
        if self.score == "platon" and not self.ipt:
            raise RuntimeError(f"PLATON would prune at step {step}, before its first window of "
                               f"{self.schedule.delta_t} steps closed: lengthen initial_warmup or "
                               "shorten final_warmup")
        kept = self.schedule.kept(step)
        flat = torch.cat([s.flatten().float() for s in self.scores(params).values()])
        k = int(flat.numel() * (1 - kept))
        if k == 0:
            return
        threshold = _kth_smallest(flat, k)
        drop = flat < threshold
        for p, d in zip(params.values(), drop.split([p.numel() for p in params.values()])):
            p.masked_fill_(d.view(p.shape), 0)
        self.history.append({"step": step, "kept": kept, "threshold": float(threshold)})

    def state_dict(self) -> dict[str, Any]:
        """Windows, moving averages, the last step and the history, for checkpoints."""
        return {"window": dict(self.window), "ipt": dict(self.ipt), "unc": dict(self.unc),
                "step": self.step, "history": [dict(row) for row in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state `state_dict` returned."""
        self.window, self.ipt, self.unc = ({name: t.clone() for name, t in state[k].items()}
                                           for k in ("window", "ipt", "unc"))
        self.step = state["step"]
        self.history = [dict(row) for row in state["history"]]


def _kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest (1-based) of non-negative float32 `values`, as `values.kthvalue(k)` but
    several times faster on millions of scores: non-negative floats order like their bit patterns,
    so one histogram of the top 16 bits finds the bucket that holds it; `kthvalue` searches that."""
    bucket = values.view(torch.int32) >> 16
    below = torch.bincount(bucket, minlength=1 << 15).cumsum(0)
    b = int(torch.searchsorted(below, k))  # the first bucket with at least k values up to it
    return values[bucket == b].kthvalue(k - (int(below[b - 1]) if b else 0)).values


def _entry(store: dict[str, torch.Tensor], name: str, p: torch.Tensor) -> torch.Tensor:
    """`store[name]` on `p`'s device, zeros like `p` at first."""
    t = store.get(name)
    store[name] = t = torch.zeros_like(p) if t is None else t.to(p.device)
    return t
