"""Per-image augmentation with torchvision.transforms.v2, run inside the augmentation stream."""
from __future__ import annotations

from collections.abc import Callable, Sequence

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


# Seed 004 named the colour jitter but not its strengths. Moderate ones: brightness, contrast and
# saturation factors drawn from [0.8, 1.2], hue shifted by up to ±0.05 of the colour circle (±18°).
JITTER = (0.2, 0.2, 0.2, 0.05)


def vit_augment(mean: Sequence[float], std: Sequence[float], crop_scale: float = 0.75,
                jitter: tuple[float, float, float, float] = JITTER,
                ) -> Callable[[torch.Tensor], torch.Tensor]:
    """Seed 004's ViT fine-tuning augmentation: a random crop of `crop_scale` of each side (24×24
    of a 32×32 image) resized back to the input size, a horizontal flip, and colour jitter
    (brightness, contrast, saturation, hue; `jitter` gives their strengths as in `v2.ColorJitter`).

    Input batches are normalized with `mean`/`std` from [0, 1] pixels. Colour jitter is defined on
    pixels (brightness clamps to [0, 1], hue goes through HSV), so each batch is de-normalized,
    clamped to [0, 1], augmented and normalized again. Each image gets its own draws, from torch's
    global generator (the trainer points it at the augmentation stream).
    """
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)

    def augment(x: torch.Tensor) -> torch.Tensor:
        size = tuple(x.shape[-2:])
        crop = tuple(round(crop_scale * side) for side in size)
        t = v2.Compose([v2.RandomCrop(crop), v2.Resize(size), v2.RandomHorizontalFlip(),
                        v2.ColorJitter(*jitter)])
        mx, sx = m.to(x.device), s.to(x.device)
        pixels = (x * sx + mx).clamp_(0, 1)
        return (torch.stack([t(img) for img in pixels]) - mx) / sx

    return augment
