"""Layer-wise barriers (Adilova et al., ICLR 2024): is the barrier between θ_A and θ_B in one
layer, or only in groups of layers?

A layer is the set of state-dict tensors that share a module prefix (a Linear's weight and bias;
a BatchNorm's parameters and buffers; tied tensors join one layer). At α = ½ only the layers of a
group are averaged, every other layer held at θ_A (base "A") or at θ_B (base "B"):
barrier = L(mixed) − ½[L(θ_A) + L(θ_B)], for loss and error on every split.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..core.checks import choose
from ..data.tensors import TensorData
from ..train.evaluation import evaluate
from .interpolate import interpolate_state
from .permutation import tied_tensors
from .repair import check_data, check_states

ORDERS = ("input", "output", "random")


def layer_groups(model: nn.Module) -> dict[str, list[str]]:
    """Layer name (module prefix) → its state-dict tensors, in state-dict order (from the input
    end for the book's models); a tensor tied to another joins the other's layer."""
    tied = tied_tensors(model)
    groups: dict[str, list[str]] = {}
    for key in model.state_dict():
        owner = tied.get(key, key).rpartition(".")[0] or tied.get(key, key)
        groups.setdefault(owner, []).append(key)
    return groups


class _Mixer:
    """Evaluates `model` with chosen layers taken from the midpoint ½(θ_A + θ_B), the rest from
    a base state, on every split."""

    def __init__(self, model: nn.Module, state_a: Mapping[str, torch.Tensor],
                 state_b: Mapping[str, torch.Tensor], splits: Mapping[str, TensorData],
                 batch_size: int):
        check_states(model, state_a=state_a, state_b=state_b)
        if not splits:
            raise ValueError("no splits to evaluate on: give e.g. {'test': data}")
        for name, data in splits.items():
            check_data(f"split {name!r}", data)
        self.model, self.splits, self.batch_size = model, splits, batch_size
        self.bases = {"A": state_a, "B": state_b}
        self.mid = interpolate_state(state_a, state_b, 0.5)
        self.groups = layer_groups(model)
        self.ends = {base: self.evaluate(state) for base, state in self.bases.items()}

    def evaluate(self, state: Mapping[str, torch.Tensor]) -> dict[str, tuple[float, float]]:
        self.model.load_state_dict(state)
        return {split: (e.loss, e.error) for split, data in self.splits.items()
                for e in [evaluate(self.model, data, self.batch_size)]}

    def rows(self, layers: Sequence[str], **label: object) -> list[dict]:
        """One row per base and split for `layers` averaged, with the barriers."""
        keys = {k for layer in layers for k in self.groups[layer]}
        rows = []
        for base, state in self.bases.items():
            mixed = {k: self.mid[k] if k in keys else t for k, t in state.items()}
            for split, (loss, error) in self.evaluate(mixed).items():
                (loss_a, err_a), (loss_b, err_b) = self.ends["A"][split], self.ends["B"][split]
                rows.append({**label, "base": base, "split": split, "loss": loss, "error": error,
                             "loss_barrier": loss - 0.5 * (loss_a + loss_b),
                             "error_barrier": error - 0.5 * (err_a + err_b)})
        return rows


def _run(model: nn.Module, build: Callable[[], list[dict]]) -> pd.DataFrame:
    """`build()`'s rows as a frame; the model's own state is restored after."""
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        return pd.DataFrame(build())
    finally:
        model.load_state_dict(saved)


def layerwise_barriers(model: nn.Module, state_a: Mapping[str, torch.Tensor],
                       state_b: Mapping[str, torch.Tensor], splits: Mapping[str, TensorData], *,
                       batch_size: int = 1000) -> pd.DataFrame:
    """Each layer averaged alone, the rest at A and (separately) at B, evaluated on `splits`
    (data on the model's device, as for `interpolation_curve`): columns layer, position
    (0 = the input end), base, split, loss, error, loss_barrier, error_barrier. Rows with layer
    "all" (every layer averaged: the whole-model midpoint barrier) are the reference."""
    def build() -> list[dict]:
        mixer = _Mixer(model, state_a, state_b, splits, batch_size)
        rows = [row for i, layer in enumerate(mixer.groups)
                for row in mixer.rows([layer], layer=layer, position=i)]
        return rows + mixer.rows(list(mixer.groups), layer="all", position=len(mixer.groups))
    return _run(model, build)


def cumulative_barriers(model: nn.Module, state_a: Mapping[str, torch.Tensor],
                        state_b: Mapping[str, torch.Tensor], splits: Mapping[str, TensorData], *,
                        order: str = "input", seed: int = 0,
                        batch_size: int = 1000) -> pd.DataFrame:
    """Layers added to the averaged group one at a time, from the input end, the output end or
    in a random order (numpy's generator from `seed`): columns step (layers averaged), layer
    (the one added), order, base, split, loss, error, loss_barrier, error_barrier. The last step
    averages every layer: the whole-model midpoint barrier."""
    choose("order", order, ORDERS)

    def build() -> list[dict]:
        mixer = _Mixer(model, state_a, state_b, splits, batch_size)
        layers = list(mixer.groups)
        if order == "output":
            layers.reverse()
        elif order == "random":
            layers = [layers[i] for i in np.random.default_rng(seed).permutation(len(layers))]
        return [row for step in range(1, len(layers) + 1)
                for row in mixer.rows(layers[:step], step=step, layer=layers[step - 1],
                                      order=order)]
    return _run(model, build)
