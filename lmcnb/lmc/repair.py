"""Re-normalizing an interpolated network: BatchNorm statistics recomputed on training data
(REPAIR's "reset BN" baseline), and REPAIR (Jordan et al. 2023): each chosen layer's outputs
rescaled per channel to the statistics interpolated between the endpoints.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..core.device import task_threads
from ..data.tensors import TensorData
from ..train.evaluation import logits_of
from .permutation import NORM_LAYERS, WEIGHT_LAYERS, chain_modules, is_chain


@torch.no_grad()
def reset_batchnorm(model: nn.Module, data: TensorData, batch_size: int = 500) -> None:
    """REPAIR's "reset BN": recompute running statistics on `data` in train mode, no gradients."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the reset batches
    was_training = model.training
    model.eval()  # only the norms in train mode: dropout stays off and draws no random numbers
    for m in norms:
        m.train()
    for start in range(0, len(data), batch_size):
        logits_of(model, data.x[start:start + batch_size])
    model.train(was_training)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


# -- REPAIR ------------------------------------------------------------------------------------
def check_data(name: str, data: TensorData) -> None:
    """Raise a ValueError if `data` holds no examples."""
    if len(data) == 0:
        raise ValueError(f"{name} is empty: statistics need at least one example")


def check_states(model: nn.Module, **states: Mapping[str, torch.Tensor]) -> None:
    """Raise a ValueError naming the first tensor where a state dict differs from `model`'s in
    its keys or shapes."""
    own = model.state_dict()
    for name, state in states.items():
        odd = [k for k in own if k not in state] + [k for k in state if k not in own]
        if odd:
            where = "lacks" if odd[0] in own else "has an extra"
            raise ValueError(f"{name} {where} tensor {odd[0]!r}: not {type(model).__name__}'s "
                             "architecture")
        for key, t in own.items():
            if state[key].shape != t.shape:
                raise ValueError(f"tensor {key!r} of {name} has shape {tuple(state[key].shape)}, "
                                 f"the model's {tuple(t.shape)}")


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation (population) of a layer's output, float64."""

    mean: torch.Tensor
    std: torch.Tensor


_FOLDABLE = WEIGHT_LAYERS + NORM_LAYERS


def _channel_dim(module: nn.Module) -> int:
    """The channel axis of the module's output: 1 for convolutions and BatchNorm (N, C, …), the
    last for Linear and LayerNorm (…, C)."""
    return -1 if isinstance(module, (nn.Linear, nn.LayerNorm)) else 1


class _Recorded(Exception):
    """Ends a forward pass of `channel_stats(stop=True)` once every layer has been recorded."""


@torch.no_grad()
def channel_stats(model: nn.Module, data: TensorData, layers: Sequence[str],
                  batch_size: int = 500, *, stop: bool = False) -> dict[str, ChannelStats]:
    """Mean and std per channel of each layer's output over `data` (on the model's device), model
    in eval mode: each batch's `torch.var_mean` on the device, the batches combined in float64
    on the CPU (Chan et al.: M₂ ← M₂ + n_b·v_b + δ²·n·n_b / (n + n_b), δ = m_b − m). `stop`: end
    each forward pass as soon as every layer has been recorded (the same numbers, less work;
    only for layers the model calls once per pass)."""
    check_data("data", data)
    sums: dict[str, list] = {name: [0, 0.0, 0.0] for name in layers}  # n, mean, M₂
    pending: set[str] = set()

    def hook(name: str, dim: int):
        def record(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            out = out.movedim(dim, -1).flatten(0, -2)  # (rows, C)
            var, mean = (t.cpu().double() for t in torch.var_mean(out, 0, correction=0))
            n, m, m2 = sums[name]
            nb = len(out)
            delta = mean - m
            sums[name] = [n + nb, m + delta * nb / (n + nb), m2 + var * nb + delta.square() *
                          n * nb / (n + nb)]
            pending.discard(name)
            if stop and not pending:
                raise _Recorded
        return record

    handles = [model.get_submodule(name).register_forward_hook(
        hook(name, _channel_dim(model.get_submodule(name)))) for name in layers]
    was_training = model.training
    model.eval()
    try:
        with task_threads():
            for start in range(0, len(data), batch_size):
                pending.update(layers)
                try:
                    logits_of(model, data.x[start:start + batch_size])
                except _Recorded:
                    pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: ChannelStats(m, (m2 / n).sqrt()) for name, (n, m, m2) in sums.items()}


def repair_layers(model: nn.Module) -> list[str]:
    """REPAIR's layers in a chain model (MLP, the CNNs, an nn.Sequential): for each hidden Linear
    or Conv, the norm that directly follows it, else the layer itself (its pre-activations)."""
    if not is_chain(model):
        raise ValueError(f"no default REPAIR layers for {type(model).__name__} (only for chain "
                         "models: MLP, LeNet5, ReducedVGG, AlexNet, nn.Sequential): pass layers=[…"
                         "], the names of the Linear, Conv, BatchNorm or LayerNorm modules whose "
                         "outputs to rescale")
    chain = chain_modules(model)
    hidden = [i for i, (_, m) in enumerate(chain) if isinstance(m, WEIGHT_LAYERS)][:-1]
    return [chain[i + 1][0] if i + 1 < len(chain) and isinstance(chain[i + 1][1], NORM_LAYERS)
            else chain[i][0] for i in hidden]


def _fold(module: nn.Module, scale: torch.Tensor, shift: torch.Tensor) -> None:
    """y ↦ scale·y + shift per output channel, folded into the weight and the bias."""
    w, b = module.weight, module.bias
    shape = (-1,) + (1,) * (w.dim() - 1)
    w.mul_(scale.to(w).view(shape))
    b.mul_(scale.to(b)).add_(shift.to(b))


class Repair:
    """REPAIR (Jordan et al. 2023) for the path from θ_A to θ_B: per channel of each layer of
    `layers` (default `repair_layers`), θ(α)'s outputs rescaled to mean (1 − α)·μ_A + α·μ_B and
    std (1 − α)·σ_A + α·σ_B, the endpoint statistics measured here on `data` (training data, on
    the model's device).

    Works with BatchNorm (a BatchNorm layer is rescaled after its normalization), LayerNorm or no
    normalization; at α = 0 and 1 the correction is the identity, exactly. `ends` holds the
    endpoint statistics (A's, B's): layer → `ChannelStats`.
    """

    def __init__(self, model: nn.Module, state_a: Mapping[str, torch.Tensor],
                 state_b: Mapping[str, torch.Tensor], data: TensorData, *,
                 layers: Sequence[str] | None = None, batch_size: int = 500):
        check_states(model, state_a=state_a, state_b=state_b)
        check_data("data", data)
        self.layers = list(repair_layers(model) if layers is None else layers)
        modules = dict(model.named_modules())
        for name in self.layers:
            m = modules.get(name)
            if not isinstance(m, _FOLDABLE) or m.weight is None or m.bias is None:
                raise ValueError(f"REPAIR layer {name!r} must be a Linear, Conv, BatchNorm or "
                                 "LayerNorm module with a weight and a bias to fold the "
                                 f"rescaling into (got {type(m).__name__})")
            if isinstance(m, nn.LayerNorm) and len(m.normalized_shape) != 1:
                raise ValueError(f"REPAIR layer {name!r}: a LayerNorm over one axis only")
        self.data, self.batch_size = data, batch_size
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        calls = dict.fromkeys(self.layers, 0)  # per layer, over A's pass: once per batch?
        handles = [modules[name].register_forward_hook(
            lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
            for name in self.layers]
        try:
            model.load_state_dict(state_a)
            self.ends = [channel_stats(model, data, self.layers, batch_size)]
        finally:
            for h in handles:
                h.remove()
        model.load_state_dict(state_b)
        self.ends.append(channel_stats(model, data, self.layers, batch_size))
        model.load_state_dict(saved)
        batches = -(-len(data) // batch_size)
        self._stop = all(n == batches for n in calls.values())  # each pass may end at the layer

    def targets(self, alpha: float) -> dict[str, ChannelStats]:
        """(1 − α)·μ_A + α·μ_B and (1 − α)·σ_A + α·σ_B per layer."""
        a, b = self.ends
        return {name: ChannelStats((1 - alpha) * a[name].mean + alpha * b[name].mean,
                                   (1 - alpha) * a[name].std + alpha * b[name].std)
                for name in self.layers}

    @torch.no_grad()
    def apply(self, model: nn.Module, alpha: float) -> nn.Module:
        """Rescale `model`, which holds θ(α), in place, one layer at a time in the order of
        `layers` (from the input end by default): measure the layer's channels (μ, σ) on the
        data, fold y ↦ s·y + (μ* − s·μ) into its weight and bias, s = σ*/σ (1 for a channel with
        σ = 0)."""
        for name, target in self.targets(alpha).items():
            now = channel_stats(model, self.data, [name], self.batch_size, stop=self._stop)[name]
            scale = torch.where(now.std > 0, target.std / now.std, torch.ones_like(now.std))
            _fold(model.get_submodule(name), scale, target.mean - scale * now.mean)
        return model
