"""Images as a ViT sees them: resized, and normalized with the dataset's statistics or the hub
processor's.
"""
from __future__ import annotations

from typing import Any

import torch

# `ViTImageProcessor()`'s normalization: pixels in [0, 1] mapped to [-1, 1].
PROCESSOR_MEAN = PROCESSOR_STD = (0.5, 0.5, 0.5)


NORMALIZATIONS = ("dataset", "processor")


def pixel_stats(dataset: str, normalize: str = "dataset") -> tuple[tuple[float, ...], ...]:
    """(mean, std) of the inputs: the dataset's own (`lmcnb.data.MEAN`/`STD`), or the hub
    processor's (`"processor"`)."""
    from ..core.checks import choose
    from .vision import MEAN, STD

    if choose("normalize", normalize, NORMALIZATIONS) == "processor":
        return PROCESSOR_MEAN, PROCESSOR_STD
    return MEAN[dataset], STD[dataset]


def vit_images(dataset: str, split: str, data_dir: Any = None, size: int | None = None,
               normalize: str = "dataset", source: str = "default") -> Any:
    """A vision dataset split (from `source`, `lmcnb.data.sources`) as a ViT sees it: resized to
    `size`×`size` (antialiased, so 64 px Tiny ImageNet becomes 32 px like CIFAR-10) and
    normalized with `pixel_stats`."""
    from .sources import vision_split
    from .tensors import TensorData
    from .vision import MEAN, STD

    data = vision_split(dataset, split, source, data_dir)
    from torchvision.transforms import v2  # with sympy: ~0.7 s, only where images are resized

    x = data.x
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = v2.functional.resize(x, [size, size], antialias=True)
    if normalize != "dataset":
        mean, std = (torch.tensor(v).view(-1, 1, 1) for v in pixel_stats(dataset, normalize))
        x = ((x * torch.tensor(STD[dataset]).view(-1, 1, 1) + torch.tensor(MEAN[dataset])
              .view(-1, 1, 1)) - mean) / std
    return TensorData(x, data.y, data.classes)
