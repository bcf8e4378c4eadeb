"""The one interpolation engine: θ(α) = (1 − α)·θ_A + α·θ_B, evaluated along a grid of α.

One model is reused for every α; each float tensor of its state (parameters and float buffers)
is written in place with `lerp`, which is exact at α = 0 and α = 1; integer buffers come from A.
Data is preloaded on the device, so an α costs only its forward passes.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..core.device import task_threads
from ..data.tensors import TensorData
from ..train.evaluation import evaluate
from .metrics import STABLE_THRESHOLD, barriers, bootstrap_sd, l2_distance
from .repair import reset_batchnorm


def alpha_grid(n_alpha: int) -> np.ndarray:
    """`n_alpha` evenly spaced points in [0, 1], both ends included."""
    if not isinstance(n_alpha, int) or n_alpha < 2:
        raise ValueError(f"n_alpha must be an integer >= 2 (got {n_alpha!r})")
    return np.linspace(0.0, 1.0, n_alpha)


def interpolate_state(state_a: dict[str, torch.Tensor], state_b: dict[str, torch.Tensor],
                      alpha: float) -> dict[str, torch.Tensor]:
    """θ(α) as a new state dict (float tensors interpolated, the rest taken from A)."""
    return {k: torch.lerp(a, state_b[k].to(a.device), alpha) if a.is_floating_point() else a.clone()
            for k, a in state_a.items()}


class Interpolator:
    """Writes θ(α) into `model` in place; `set(alpha)` costs one lerp per tensor."""

    def __init__(self, model: nn.Module, state_a: dict[str, torch.Tensor],
                 state_b: dict[str, torch.Tensor]):
        if state_a.keys() != state_b.keys():
            raise ValueError("A and B have different state-dict keys: not the same architecture")
        self.model = model
        target = model.state_dict(keep_vars=True)
        self.pairs = []
        with torch.no_grad():
            for key, a in state_a.items():
                t = target[key].data
                if a.is_floating_point():
                    ends = [e.to(t.device, t.dtype) for e in (a, state_b[key])]
                    # A or B may be the model's own state dict: copy what `set` would overwrite.
                    ends = [e.clone()
                            if e.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
                            else e for e in ends]
                    self.pairs.append((t, *ends))
                else:
                    t.copy_(a)

    @torch.no_grad()
    def set(self, alpha: float) -> nn.Module:
        """Write θ(α) into the model; returns it."""
        for t, a, b in self.pairs:
            torch.lerp(a, b, alpha, out=t)
        return self.model


@dataclass(frozen=True)
class Curve:
    """One interpolation path: loss and error at each α on each split (`frame`: columns split,
    alpha, loss, error), the A/B prediction disagreement on "test", and per split each example's
    loss and error at each α (`examples[split]`: two float64 arrays of shape α × example)."""

    frame: pd.DataFrame
    disagreement: float
    examples: dict[str, tuple[np.ndarray, np.ndarray]]


def interpolation_curve(model: nn.Module, state_a: dict[str, torch.Tensor],
                        state_b: dict[str, torch.Tensor], splits: dict[str, TensorData],
                        alphas: Sequence[float], *, batch_size: int = 1000,
                        bn_reset_data: TensorData | None = None,
                        renormalize: Callable[[nn.Module, float], None] | None = None,
                        progress: bool = True, compile: bool = False) -> Curve:
    """The `Curve` of θ(α) over `alphas`: loss and error at each α on each split, each example's
    too, and the A/B prediction disagreement on "test".

    After θ(α) is written (and its BatchNorm statistics recomputed on `bn_reset_data`, if given),
    `renormalize(model, α)` may rescale it in place — REPAIR (`lmcnb.lmc.repair.Repair.apply`).

    `splits` hold data already on the model's device (see `eval_subset`). The disagreement is
    nan without a "test" split. Where the loss is not finite the model's output was not, so
    neither its top-1 error nor its predictions are measurements: the error is nan there, and so
    is a disagreement that would rest on such predictions.
    `compile=True` evaluates through `torch.compile(model)`: opt-in, as compiling costs tens of
    seconds on CPU; it pays off only for long curves (a 25-α LeNet5 curve on 10,000 images:
    1.8x faster).
    """
    from ..core.progress import bar

    interp = Interpolator(model, state_a, state_b)
    forward = torch.compile(model) if compile else model  # sees the in-place updates of `interp`
    rows, preds = [], {}
    examples: dict[str, tuple[list, list]] = {split: ([], []) for split in splits}
    with task_threads():
        for alpha in bar(list(alphas), desc="α", leave=False, disable=not progress,
                         mininterval=1.0):
            interp.set(float(alpha))
            if bn_reset_data is not None:
                reset_batchnorm(model, bn_reset_data, batch_size)
            if renormalize is not None:
                renormalize(model, float(alpha))
            for split, data in splits.items():
                endpoint = split == "test" and float(alpha) in (0.0, 1.0)
                out = evaluate(forward, data, batch_size, predictions=endpoint)
                measured = math.isfinite(out.loss)
                if endpoint and measured:
                    preds[float(alpha)] = out.predictions
                rows.append({"split": split, "alpha": float(alpha), "loss": out.loss,
                             "error": out.error if measured else math.nan})
                examples[split][0].append(out.example_loss.numpy())
                examples[split][1].append(out.example_error.numpy())
    disagreement = (float((preds[0.0] != preds[1.0]).float().mean()) if len(preds) == 2
                    else float("nan"))
    return Curve(pd.DataFrame(rows), disagreement,
                 {split: (np.stack(loss), np.stack(error))
                  for split, (loss, error) in examples.items()})


def eval_subset(data: TensorData, eval_iters: int | str, batch_size: int,
                device: torch.device | str, seed: int = 0) -> TensorData:
    """The whole split (`"all"`) or a fixed random sample of `eval_iters` batches, on `device`.

    Image batches are stored channels-last, the faster layout for convolutions on CPU and GPU.
    """
    if eval_iters != "all":
        if not isinstance(eval_iters, int) or eval_iters < 1:
            raise ValueError(f"eval_iters must be 'all' or a positive int (got {eval_iters!r})")
        n = min(len(data), eval_iters * batch_size)
        idx = torch.randperm(len(data),
                             generator=torch.Generator().manual_seed(seed))[:n].sort().values
        data = TensorData(data.x[idx], data.y[idx], data.classes)
    data = data.to(device)
    if data.x.dim() == 4:
        # Not `.contiguous(memory_format=...)`: with one channel (MNIST) NCHW strides already
        # count as channels-last, it returns the NCHW tensor and convolutions stay on the slower
        # NCHW path.
        x = torch.empty_like(data.x, memory_format=torch.channels_last).copy_(data.x)
        data = TensorData(x, data.y, data.classes)
    return data


def pair_tables(model: nn.Module, state_a: dict[str, torch.Tensor],
                state_b: dict[str, torch.Tensor], splits: dict[str, TensorData],
                alphas: Iterable[float], *, batch_size: int, bn_reset_data: TensorData | None,
                language_model: bool, threshold: float = STABLE_THRESHOLD,
                renormalize: Callable[[nn.Module, float], None] | None = None,
                progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The curves and barrier tables of one pair, with the columns of a chapter's tables.

    Without `bn_reset_data` one curve (`bn_reset` False); with it, also the curve whose BatchNorm
    statistics are recomputed on it after interpolating (`bn_reset` True). `renormalize` (see
    `interpolation_curve`) acts on every curve. Every barrier has its evaluation noise beside it
    (`<barrier>_eval_sd`): its bootstrap standard deviation over the split's examples
    (`bootstrap_sd`), what a different evaluation sample of the same size would move it by.
    """
    alphas = list(alphas)
    l2, l2_rel = l2_distance(state_a, state_b)
    curves, rows = [], []
    for reset in [False] if bn_reset_data is None else [False, True]:
        path = interpolation_curve(
            model, state_a, state_b, splits, alphas, batch_size=batch_size,
            bn_reset_data=bn_reset_data if reset else None, renormalize=renormalize,
            progress=progress)
        curve = path.frame
        curve.insert(0, "bn_reset", reset)
        curves.append(curve)
        for split, c in curve.groupby("split", sort=False):
            noise = bootstrap_sd(alphas, *path.examples[split], language_model)
            rows.append({"bn_reset": reset, "split": split,
                         **barriers(c.alpha, c.loss, c.error, language_model, threshold),
                         **{f"{q}_eval_sd": sd for q, sd in noise.items()},
                         "l2_distance": l2, "l2_relative": l2_rel,
                         "disagreement": path.disagreement,
                         "error_a": float(c.error.iloc[0]), "error_b": float(c.error.iloc[-1]),
                         "loss_a": float(c.loss.iloc[0]), "loss_b": float(c.loss.iloc[-1])})
    return pd.concat(curves, ignore_index=True), pd.DataFrame(rows)
