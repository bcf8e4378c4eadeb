"""A multilayer perceptron for images: the network of the permutation-alignment studies.

Git Re-Basin matches a 784-512-512-512-10 MLP on MNIST; REPAIR deepens it to 12 hidden layers
and shows what a normalization layer changes. The images are flattened, each hidden layer is a
Linear (optionally normalized) and a ReLU, the head a Linear; the layers form one `nn.Sequential`,
so `lmcnb.lmc.permutation` derives the MLP's permutation spec from them.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.checks import choose

NORMS = (None, "layernorm", "batchnorm")


class MLP(nn.Module):
    """Images (N, *shape) with `in_features` values each → logits (N, num_classes)."""

    def __init__(self, in_features: int = 784, hidden: tuple[int, ...] = (512, 512, 512),
                 num_classes: int = 10, norm: str | None = None):
        super().__init__()
        choose("norm", norm, NORMS)
        layers: list[nn.Module] = [nn.Flatten()]  # (N, *shape) → (N, in_features)
        width = in_features
        for size in hidden:
            layers.append(nn.Linear(width, size))  # (N, width) → (N, size)
            if norm == "layernorm":
                layers.append(nn.LayerNorm(size))
            elif norm == "batchnorm":
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            width = size
        layers.append(nn.Linear(width, num_classes))  # (N, width) → (N, num_classes)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
