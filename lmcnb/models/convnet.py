"""A VGG-like CNN for CIFAR-10 with BatchNorm and a width multiplier: the network of the
independent-initialization chapter.

Three stages of two 3×3 convolutions, each followed by BatchNorm and a ReLU, a max-pool after each
stage; then a global average pool and one Linear. At width 1 the stages have 8, 16 and 32
channels (half of ResNet-20's 16, 32 and 64, so that two CPU cores can train several pairs);
`width` multiplies them all. The network is one plain `nn.Sequential`, so
`lmcnb.lmc.permutation` derives its permutation spec (one permutation per convolution's output
channels, shared by its BatchNorm and the next layer's inputs) and `lmcnb.lmc.repair` finds its
REPAIR layers (the BatchNorms) without a spec written by hand.

The convolutions are `lmcnb.models.cnn.Conv2d`, whose weight is laid out channels-last at each
call, so oneDNN and cuDNN run the whole stack channels-last from the first layer on.
"""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from .cnn import Conv2d

STAGES = (8, 16, 32)  # channels of the three stages at width 1


def convnet(width: int = 1, num_classes: int = 10, in_channels: int = 3) -> nn.Sequential:
    """Images (N, `in_channels`, H, W) → logits (N, `num_classes`); H and W divisible by 8.
    Layers are named conv1 … conv6, bn1 … bn6, pool1 … pool3 and fc. Draws from torch's global
    RNG: build it inside the run's init stream."""
    if not isinstance(width, int) or isinstance(width, bool) or width < 1:
        raise ValueError(f"width must be an integer >= 1 (got {width!r})")
    layers: dict[str, nn.Module] = {}
    channels, i = in_channels, 0
    for s, stage in enumerate(STAGES, 1):
        out = stage * width
        for _ in range(2):
            i += 1
            layers[f"conv{i}"] = Conv2d(channels, out, 3, padding=1, bias=False)  # (N, out, h, w)
            layers[f"bn{i}"] = nn.BatchNorm2d(out)
            layers[f"relu{i}"] = nn.ReLU()
            channels = out
        layers[f"pool{s}"] = nn.MaxPool2d(2)  # (N, out, h/2, w/2)
    layers["avgpool"] = nn.AdaptiveAvgPool2d(1)  # (N, channels, 1, 1)
    layers["flatten"] = nn.Flatten()  # (N, channels)
    layers["fc"] = nn.Linear(channels, num_classes)  # (N, num_classes)
    return nn.Sequential(OrderedDict(layers))
