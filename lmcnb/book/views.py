"""Views for α-sliders: what a frame shows of the interpolated network θ(α) — images with its
predictions, a text sample, next-word predictions. matplotlib and `transformers` are imported
where a frame is drawn, not with the module.
"""
from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.checks import at_least
from ..data.tensors import TensorData
from ..models.gpt import sample
from ..train.evaluation import logits_of
from .widgets import View

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from transformers import GPT2LMHeadModel

    from ..data.tokenizers import Tokenizer
    from ..data.words import Vocab


def display_pixels(x: torch.Tensor, mean: Sequence[float] | None = None,
                   std: Sequence[float] | None = None) -> np.ndarray:
    """NCHW normalised images as NHWC in [0, 1]: `x·std + mean`, or each image min-max scaled if
    not given."""
    x = x.detach().float().cpu()
    if mean is not None and std is not None:
        x = x * torch.tensor(std).view(1, -1, 1, 1) + torch.tensor(mean).view(1, -1, 1, 1)
    else:
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-12)
    return x.clamp(0, 1).permute(0, 2, 3, 1).numpy()


def image_predictions_view(data: TensorData, n: int = 16, mean: Sequence[float] | None = None,
                           std: Sequence[float] | None = None, columns: int = 6) -> View:
    """A view drawing the first `n` images of `data` with the model's predicted class; wrong ones
    in red.

    `mean`/`std` undo the dataset's normalisation (see `lmcnb.data.MEAN`/`STD`); without them
    each image is shown min-max scaled.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1 (got {n})")
    x, y = data.x[:n], data.y[:n].cpu()
    n = len(y)
    pixels = display_pixels(x, mean, std)
    cols = min(columns, n)
    rows = -(-n // cols)
    h, w = pixels.shape[1:3]
    cell_h, cell_w = int(h * 1.45), w + 4  # room for the label under each image
    mosaic = np.ones((rows * cell_h, cols * cell_w, 3))
    for i, img in enumerate(pixels):
        r, c = divmod(i, cols)
        mosaic[r * cell_h:r * cell_h + h, c * cell_w + 2:c * cell_w + 2 + w] = img
    names = [str(c) for c in data.classes] or None

    def view(model: torch.nn.Module, alpha: float, ax: Axes) -> None:
        from matplotlib.patches import Rectangle

        device = next(model.parameters()).device
        with torch.inference_mode():
            pred = logits_of(model, x.to(device)).argmax(-1).cpu()  # `.logits` of HF models
        ax.imshow(mosaic, interpolation="nearest")
        for i, (p, t) in enumerate(zip(pred.tolist(), y.tolist())):
            r, c = divmod(i, cols)
            color = "red" if p != t else "black"
            if p != t:
                ax.add_patch(Rectangle((c * cell_w + 1.5, r * cell_h - 0.5), w, h, fill=False,
                                       ec="red", lw=1.2))
            label = names[p] if names else str(p)
            ax.text(c * cell_w + 2 + w / 2, r * cell_h + h + 1, label[:8], ha="center", va="top",
                    fontsize=6, color=color)
        wrong = int((pred != y).sum())
        ax.set_title(f"{n} test images: {wrong} wrong", fontsize=7, pad=2)
        ax.set_axis_off()

    return view


def text_sample_view(tokenizer: Tokenizer, prompt: str, max_new_tokens: int, seed: int,
                     width: int = 52, max_lines: int = 14,
                     fontsize: float = 6.0) -> Callable[[GPT2LMHeadModel, float, Any], None]:
    """An α-slider view: θ(α)'s continuation of `prompt` (fixed sampling seed) as wrapped text."""

    def view(model: GPT2LMHeadModel, alpha: float, ax) -> None:
        text = prompt + sample(model, tokenizer, prompt, max_new_tokens, seed)
        lines = [w for line in text.splitlines() for w in (textwrap.wrap(line, width) or [""])]
        ax.axis("off")
        ax.text(0, 1, "\n".join(lines[:max_lines]), va="top", ha="left", family="monospace",
                fontsize=fontsize, transform=ax.transAxes)
        ax.set_title(f"sampled at α = {alpha:.2f} (seed {seed})", fontsize=7, pad=2)

    return view


def next_word_view(vocab: Vocab, sentence: str, top: int = 3, fontsize: float = 5.5):
    """An α-slider view: after each prefix of `sentence`, the model's `top` next words with their
    probabilities; the word that actually follows in green (✓), the wrong ones in red."""
    at_least("top", top, 1)
    ids = vocab.encode(sentence)  # with <eos> at the end if the vocabulary has it
    x, y = ids[:-1], ids[1:].tolist()
    words = vocab.decode(ids)

    def view(model: torch.nn.Module, alpha: float, ax) -> None:
        device = next(model.parameters()).device
        with torch.inference_mode():
            prob = model(x[None].to(device))[0].float().softmax(-1).cpu()  # (T, V)
        p, idx = prob.topk(top, -1)
        ax.set_axis_off()
        ax.set_xlim(0, 1)
        ax.set_ylim(len(y) + 0.5, -1)
        ax.text(0.0, -0.6, "after", fontsize=fontsize, weight="bold", va="center")
        ax.text(0.2, -0.6, "next", fontsize=fontsize, weight="bold", va="center")
        ax.text(0.4, -0.6, f"top {top} of θ(α)", fontsize=fontsize, weight="bold", va="center")
        hits = 0
        for t, target in enumerate(y):
            ax.text(0.0, t, words[t][:12], fontsize=fontsize, va="center")
            ax.text(0.2, t, words[t + 1][:12], fontsize=fontsize, va="center", style="italic")
            for j in range(top):
                right = int(idx[t, j]) == target
                hits += right and j == 0
                label = f"{'✓' if right else '✗'}{vocab.words[int(idx[t, j])][:9]} {p[t, j]:.0%}"
                ax.text(0.4 + 0.2 * j, t, label, fontsize=fontsize, va="center",
                        color="tab:green" if right else "tab:red",
                        weight="bold" if right else "normal")
        ax.set_title(f"next-word predictions: {hits}/{len(y)} top-1 right", fontsize=7, pad=2)

    return view
