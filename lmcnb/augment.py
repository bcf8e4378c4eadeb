"""Per-image augmentation with torchvision.transforms.v2, run inside the augmentation stream."""
from __future__ import annotations

from typing import Callable

import torch
from torchvision.transforms import v2

CROP_PADDING = {"cifar10": 4, "tiny_imagenet": 8}


def crop_and_flip(dataset: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random crop with zero padding (the mean colour, after normalization) and horizontal flip.

    Each image of a batch gets its own draw; the draws come from torch's global generator, which
    the trainer points at the augmentation stream.
    """
    if dataset not in CROP_PADDING:
        raise ValueError(f"no augmentation for {dataset!r}; valid: {', '.join(CROP_PADDING)}")
    pad = CROP_PADDING[dataset]

    def augment(x: torch.Tensor) -> torch.Tensor:
        t = v2.Compose([v2.RandomCrop(x.shape[-1], padding=pad), v2.RandomHorizontalFlip()])
        return torch.stack([t(img) for img in x])

    return augment
