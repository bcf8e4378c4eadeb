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


# Han and Zhu named the colour jitter but not its strengths. Moderate ones: brightness, contrast
# and saturation factors drawn from [0.8, 1.2], hue shifted by up to ±0.05 of the colour circle
# (±18°).
JITTER = (0.2, 0.2, 0.2, 0.05)


_GRAY = (0.2989, 0.587, 0.114)  # v2's luma weights (rgb_to_grayscale)


def vit_augment(mean: Sequence[float], std: Sequence[float], crop_scale: float = 0.75,
                jitter: Sequence[float] = JITTER) -> Callable[[torch.Tensor], torch.Tensor]:
    """Han and Zhu's ViT fine-tuning augmentation: a random crop of `crop_scale` of each side (24×24
    of a 32×32 image) resized back to the input size, a horizontal flip, and colour jitter
    (brightness, contrast, saturation, hue; `jitter` gives their strengths as in `v2.ColorJitter`).

    Input batches are normalized with `mean`/`std` from [0, 1] pixels. Colour jitter is defined on
    pixels (brightness clamps to [0, 1], hue goes through HSV), so each batch is de-normalized,
    clamped to [0, 1], augmented and normalized again. Every image gets its own draws, as if
    `v2.Compose([RandomCrop, Resize, RandomHorizontalFlip, ColorJitter])` ran image by image
    (jitter ops in a random order per image), from torch's global generator (the trainer points it
    at the augmentation stream); they are applied to the whole batch at once (`draw`, `apply`).
    """
    if not 0 < crop_scale <= 1:
        raise ValueError(f"crop_scale must be in (0, 1], got {crop_scale}")
    if len(jitter) != 4 or min(jitter) < 0 or jitter[3] > 0.5:
        raise ValueError(f"jitter is (brightness, contrast, saturation, hue), each >= 0 and hue "
                         f"<= 0.5 (got {jitter!r})")
    m = torch.tensor(mean).view(-1, 1, 1)
    s = torch.tensor(std).view(-1, 1, 1)

    def augment(x: torch.Tensor) -> torch.Tensor:
        mx, sx = m.to(x.device), s.to(x.device)
        pixels = (x * sx + mx).clamp_(0, 1)
        params = draw(len(x), tuple(x.shape[-2:]), crop_scale, jitter)
        return (apply(pixels, params) - mx) / sx

    return augment


def draw(n: int, size: tuple[int, int], crop_scale: float,
         jitter: Sequence[float]) -> dict[str, torch.Tensor]:
    """Per-image parameters of `vit_augment` for `n` images of `size`: the crop's size and corners,
    flips, jitter factors (neutral where a strength is 0) and the order of the four jitter ops
    (a permutation of `JITTER_OPS` per image)."""
    crop = [round(crop_scale * side) for side in size]
    b, c, sat, hue = jitter
    return {"crop": torch.tensor(crop),
            "top": torch.randint(0, size[0] - crop[0] + 1, (n,)),
            "left": torch.randint(0, size[1] - crop[1] + 1, (n,)),
            "flip": torch.rand(n) < 0.5,
            "brightness": torch.empty(n).uniform_(1 - b, 1 + b) if b else torch.ones(n),
            "contrast": torch.empty(n).uniform_(1 - c, 1 + c) if c else torch.ones(n),
            "saturation": torch.empty(n).uniform_(1 - sat, 1 + sat) if sat else torch.ones(n),
            "hue": torch.empty(n).uniform_(-hue, hue) if hue else torch.zeros(n),
            "order": torch.rand(n, 4).argsort(dim=1)}


def apply(pixels: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """`draw`'s parameters applied to a batch of [0, 1] RGB images, all at once: each image's crop
    resized back to the batch's size, its flip, then its brightness, contrast, saturation and hue
    changes (the formulas of v2.functional) in its own order."""
    n, _, h, w = pixels.shape
    dev = pixels.device
    p = {k: v.to(dev) for k, v in params.items()}
    ch, cw = p["crop"].tolist()
    rows = (p["top"][:, None] + torch.arange(ch, device=dev))[:, None, :, None]
    cols = (p["left"][:, None] + torch.arange(cw, device=dev))[:, None, None, :]
    x = pixels[torch.arange(n, device=dev)[:, None, None, None],
               torch.arange(3, device=dev)[None, :, None, None], rows, cols]
    x = v2.functional.resize(x, [h, w], antialias=True)
    x = torch.where(p["flip"][:, None, None, None], x.flip(-1), x)
    for slot in range(len(JITTER_OPS)):
        for index, (name, op) in enumerate(JITTER_OPS.items()):
            chosen = p["order"][:, slot] == index
            if chosen.any():
                x[chosen] = op(x[chosen], p[name][chosen].view(-1, 1, 1, 1))
    return x


def _blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    return (a * ratio + b * (1 - ratio)).clamp_(0, 1)


def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=-3)
    return (r * _GRAY[0] + g * _GRAY[1] + b * _GRAY[2]).unsqueeze(-3)


def _brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (x * factor).clamp_(0, 1)


def _contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x).mean(dim=(-3, -2, -1), keepdim=True), factor)


def _saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(x, _gray(x), factor)


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each image's hue turned by its `shift` (in turns), through v2's own RGB ↔ HSV conversion."""
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

    if not bool(shift.any()):
        return x
    h, s, v = _rgb_to_hsv(x).unbind(dim=-3)
    return _hsv_to_rgb(torch.stack(((h + shift[:, 0]).remainder_(1.0), s, v), dim=-3))


JITTER_OPS = {"brightness": _brightness, "contrast": _contrast, "saturation": _saturation,
              "hue": _hue}  # v2.ColorJitter's ops; `order` indexes them
