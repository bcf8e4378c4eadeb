"""The CNNs of Shapira's table. Each fits on a screen; `build_model` picks one by name.

They compute channels-last, oneDNN's and cuDNN's faster layout for convolutions, pooling and
BatchNorm (1.15-1.3x per training step here, `benchmarks/train_step.py`): inputs are turned so in
`forward`, and each convolution's weight at each call (a copy of a few kilobytes). The parameters
stay contiguous, so a state dict saves anywhere (`safetensors` refuses other strides) and loads
into any copy of the model.
"""
from __future__ import annotations

import torch
from torch import nn


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` (N, C, H, W) laid out channels-last: itself if it is, else a copy. Not
    `x.contiguous(memory_format=...)`: with one channel (MNIST) NCHW strides already count as
    channels-last, it returns the NCHW tensor, and convolutions stay on the slower NCHW path."""
    if x.stride(1) == 1 and x.is_contiguous(memory_format=torch.channels_last):
        return x
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x)


class Conv2d(nn.Conv2d):
    """`nn.Conv2d` whose contiguous weight is laid out channels-last for each call."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.contiguous(memory_format=torch.channels_last)
        return self._conv_forward(x, weight, self.bias)


class ChannelsLast(nn.Module):
    """The CNNs' forward: `features` (built of `Conv2d`) on channels-last inputs, then
    `classifier`."""

    features: nn.Sequential
    classifier: nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(channels_last(x)))


class LeNet5(ChannelsLast):
    """LeNet-5 for 28x28 grey images: 61,706 parameters."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
            nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes),
        )


class ReducedVGG(ChannelsLast):
    """VGG's first stage, reduced: two 3x3 conv layers with a max-pool each, two FC layers with
    dropout: 860,130 parameters (Shapira's study: ~855K)."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(64 * 8 * 8, 200), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(200, num_classes),
        )


class AlexNet(ChannelsLast):
    """AlexNet for 64x64 images: a stride-4 first conv, five convs (BatchNorm after the first
    two), max-pools after conv 1, 2 and 5, three FC layers with dropout."""

    def __init__(self, num_classes: int = 200, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            Conv2d(3, 64, 8, stride=4, padding=2),
            nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),
            Conv2d(128, 192, 3, padding=1), nn.ReLU(),
            Conv2d(192, 192, 3, padding=1), nn.ReLU(),
            Conv2d(192, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(128 * 2 * 2, 512), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, num_classes),
        )


CNN_MODELS = {"lenet5": LeNet5, "reduced_vgg": ReducedVGG, "alexnet": AlexNet}


def build_model(name: str, num_classes: int) -> nn.Module:
    """Instantiate a model by name (draws from torch's global RNG: run it inside the init
    stream)."""
    if name not in CNN_MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(CNN_MODELS)}")
    return CNN_MODELS[name](num_classes=num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
