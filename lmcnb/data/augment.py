"""Image augmentation for training, batched: every image gets its own draws (from torch's global
generator, which the trainer points at the augmentation stream) and the whole batch is transformed
at once with tensor ops, on the batch's device."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

CROP_PADDING = {"cifar10": 4, "tiny_imagenet": 8}


def crop_and_flip(dataset: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random crop with zero padding (the mean colour, after normalization) and horizontal flip,
    as `v2.RandomCrop(size, padding)` then `v2.RandomHorizontalFlip()` image by image: each
    image's offsets are uniform in [0, 2·padding] and it is flipped with probability 1/2."""
    if dataset not in CROP_PADDING:
        raise ValueError(f"no augmentation for {dataset!r}; valid: {', '.join(CROP_PADDING)}")
    pad = CROP_PADDING[dataset]

    def augment(x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        top, left = torch.randint(0, 2 * pad + 1, (2, n))
        flip = torch.rand(n) < 0.5
        return windows(F.pad(x, (pad,) * 4), top, left, tuple(x.shape[-2:]), flip)

    return augment


def windows(x: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int],
            flip: torch.Tensor | None = None) -> torch.Tensor:
    """Image i's `size` window at (`top[i]`, `left[i]`) of a batch (N, C, H, W), mirrored where
    `flip[i]`: one gather over the flattened images (index tensors may live on the CPU)."""
    n, c, h, w = x.shape
    dev = x.device
    rows = top.to(dev)[:, None] + torch.arange(size[0], device=dev)  # (N, h')
    cols = torch.arange(size[1], device=dev).expand(n, -1)  # (N, w')
    if flip is not None:
        cols = torch.where(flip.to(dev)[:, None], cols.flip(-1), cols)
    cols = left.to(dev)[:, None] + cols
    index = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, -1).expand(n, c, -1)
    return x.reshape(n, c, h * w).gather(2, index).view(n, c, *size)


# Han and Zhu named the colour jitter but not its strengths. Moderate ones: brightness, contrast
# and saturation factors drawn from [0.8, 1.2], hue shifted by up to ±0.05 of the colour circle
# (±18°).
JITTER = (0.2, 0.2, 0.2, 0.05)


JITTER_OPS = ("brightness", "contrast", "saturation", "hue")  # v2.ColorJitter's; `order` indexes


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
    resized back to the batch's size (v2's antialiased bilinear weights, as two matrix products),
    its flip, then its brightness, contrast, saturation and hue changes (the formulas of
    v2.functional) in its own order."""
    _, _, h, w = pixels.shape
    dev = pixels.device
    p = {k: v.to(dev) for k, v in params.items()}
    ch, cw = params["crop"].tolist()
    x = windows(pixels, p["top"], p["left"], (ch, cw)) @ _resize_weights(cw, w, dev).T
    x = (x.transpose(-1, -2) @ _resize_weights(ch, h, dev).T).transpose(-1, -2)  # (N, C, h, w)
    x = torch.where(_per_image(p["flip"]), x.flip(-1), x)
    factors = torch.stack([p[name] for name in JITTER_OPS[:3]], dim=1)  # (N, 3)
    for slot in range(len(JITTER_OPS)):
        op = p["order"][:, slot]
        x = _blend(x, op, factors)
        hue = (op == JITTER_OPS.index("hue")).nonzero()[:, 0]
        if len(hue) and bool(p["hue"][hue].any()):
            x.index_copy_(0, hue, _hue(x.index_select(0, hue), p["hue"][hue]))
    return x


def _resize_weights(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """(n_out, n_in) on `device`: the weights with which v2's antialiased bilinear resize
    (F.interpolate) makes each of `n_out` samples from `n_in`, computed on the CPU as the resize
    of an identity along one axis."""
    eye = torch.eye(n_in)[None, None]
    return F.interpolate(eye, size=(n_out, n_in), mode="bilinear", antialias=True,
                         align_corners=False)[0, 0].to(device)


def _blend(x: torch.Tensor, op: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast or saturation, as `op` (an index of `JITTER_OPS`) says for each image:
    the blend of the image with black, its mean grey or its grey by the image's factor, clamped
    to [0, 1]; an image whose op is hue is left as it is (factor 1)."""
    is_hue = op == JITTER_OPS.index("hue")
    factor = torch.where(is_hue, 1.0, factors.gather(1, op.clamp(max=2)[:, None])[:, 0])
    r, g, b = x.unbind(dim=-3)
    gray = (r * _GRAY[0] + g * _GRAY[1] + b * _GRAY[2]).unsqueeze(-3)  # (N, 1, H, W)
    mean = gray.mean(dim=(-2, -1), keepdim=True)
    target = torch.where(_per_image(op == JITTER_OPS.index("saturation")), gray,
                         torch.where(_per_image(op == JITTER_OPS.index("contrast")), mean, 0.0))
    factor = _per_image(factor)
    return torch.addcmul(target * (1 - factor), x, factor).clamp_(0, 1)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


_SECTORS = (5.0, 3.0, 1.0)  # where R, G and B sit on the hue circle, in sixths of a turn


def _hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Each image's hue turned by its `shift` (in turns), its HSV saturation and value kept (v2's
    adjust_hue), elementwise: hue H in sixths of a turn from the largest channel, then each channel
    c = max − (max − min)·clamp(min(k, 4 − k), 0, 1) with k = (sector of c + H) mod 6."""
    r, g, b = x.unbind(dim=-3)
    low, high = torch.minimum(torch.minimum(r, g), b), torch.maximum(torch.maximum(r, g), b)
    span = high - low
    safe = torch.where(span > 0, span, 1.0)  # grey pixels: any hue, span 0
    h6 = torch.where(high == r, (g - b) / safe,
                     torch.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h6 = (h6 + 6 * shift.view(-1, 1, 1)).remainder_(6)
    k = (torch.tensor(_SECTORS, device=x.device).view(3, 1, 1) + h6.unsqueeze(-3)).remainder_(6)
    return high.unsqueeze(-3) - span.unsqueeze(-3) * torch.minimum(k, 4 - k).clamp_(0, 1)
