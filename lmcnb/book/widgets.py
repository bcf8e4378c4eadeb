"""α-sliders: walk along θ(α) = (1 − α)·θ_A + α·θ_B in a widget.

Static mode (the rendered book): one small PNG frame per α of the curves table, held in a `Stack`
whose `selected_index` is linked in JavaScript (`jslink`) to an `IntSlider` and a `Play` control,
so moving the slider needs no kernel. Live mode (Jupyter, Colab): a `FloatSlider` whose callback
redraws the frame at any α, also outside [0, 1] (extrapolation).

`live=None` picks live mode only under an interactive front end: Colab, or a kernel started by a
Jupyter server (`JPY_SESSION_NAME` is set). Papermill and nbclient, which execute the book, get
static mode. `LMCNB_LIVE=1` (or `0`) in the environment overrides the choice.

matplotlib, ipywidgets and PIL are imported where a slider is drawn, not with the module.
"""
from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from ..core import env
from ..lmc.interpolate import Interpolator
from .plots import COLUMN_PX, SPLIT_STYLE

if TYPE_CHECKING:
    import ipywidgets as widgets
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

View = Callable[[torch.nn.Module, float, "Axes"], None]


FRAME_BYTES = 60_000  # upper bound for one frame's PNG


# Frames are as wide as the book's column, at 2 px per point: tick labels and legend (6.5 pt) are
# 13 px on the page, image captions 12 px; text in a view needs >= 5.5 pt (11 px). Columns
# narrower than COLUMN_PX (688 px at a 1280 px window) scale a frame down.
DPI = 144


FIGSIZE = (COLUMN_PX / DPI, 2.6)  # inches


PALETTES = (64, 32, 16, 8)  # colours tried, most first, until a frame fits FRAME_BYTES


METRIC_COLOR = {"loss": "tab:blue", "error": "tab:red"}


# on the outer box of every α-slider (the browser test finds them by it)
CSS_CLASS = "lmcnb-alpha-slider"


def live_default() -> bool:
    """Whether `alpha_slider(live=None)` runs live: `$LMCNB_LIVE`, else Colab or a Jupyter-server
    kernel."""
    value = os.environ.get(env.LIVE)
    if value is not None:
        return value.strip().lower() in ("1", "true", "yes")
    return "google.colab" in sys.modules or "JPY_SESSION_NAME" in os.environ


def png_bytes(fig: Figure, limit: int = FRAME_BYTES) -> bytes:
    """`fig` as a palette PNG: the most colours of `PALETTES` that fit in `limit` bytes (else the
    fewest)."""
    from PIL import Image

    raw = io.BytesIO()
    fig.savefig(raw, format="png", dpi=fig.dpi, metadata={"Software": None})
    rgb = Image.open(raw).convert("RGB")
    for colors in PALETTES:
        out = io.BytesIO()
        rgb.quantize(colors, dither=Image.Dither.NONE).save(out, format="PNG", optimize=True)
        if out.tell() <= limit:
            break
    return out.getvalue()


def pair_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """The rows of one pair to draw: without BatchNorm reset, checked to hold one value per
    (split, α)."""
    if "bn_reset" in curves:
        curves = curves[~curves.bn_reset.astype(bool)]
    if curves.empty:
        raise ValueError("no curve rows to draw (after keeping bn_reset == False)")
    if curves.duplicated(["split", "alpha"]).any():
        raise ValueError("curves holds several rows per (split, alpha): pass the rows of one pair")
    return curves.sort_values(["split", "alpha"])


class FrameDrawer:
    """Draws one frame: loss and error along α with a marker at α, and the chapter's view of
    θ(α)."""

    def __init__(self, curves: pd.DataFrame, interpolator: Interpolator, view: View, title: str,
                 xlim: tuple[float, float]):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.curves, self.interpolator, self.view, self.title = curves, interpolator, view, title
        self.fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(self.fig)
        grid = self.fig.add_gridspec(2, 2, width_ratios=(1, 1.35), left=0.1, right=0.99,
                                     bottom=0.15, top=0.86, wspace=0.12, hspace=0.12)
        self.metric_axes = {"loss": self.fig.add_subplot(grid[0, 0]),
                            "error": self.fig.add_subplot(grid[1, 0])}
        self.view_ax = self.fig.add_subplot(grid[:, 1])
        self.markers = []
        for metric, ax in self.metric_axes.items():
            for split, style in SPLIT_STYLE.items():
                sub = curves[curves.split == split]
                ax.plot(sub.alpha, sub[metric], style, color=METRIC_COLOR[metric], lw=1.2,
                        label=split)
            ax.set_ylabel(metric, fontsize=7)
            ax.set_xlim(*xlim)
            ax.tick_params(labelsize=6.5, length=2, pad=1)
            self.markers.append(ax.axvline(0.0, color="black", lw=0.8))
            self.markers.append(ax.plot([], [], "o", color="black", ms=3)[0])
        self.metric_axes["loss"].tick_params(labelbottom=False)
        self.metric_axes["loss"].legend(fontsize=6.5, loc="best", frameon=False,
                                        handlelength=1.6)
        self.metric_axes["error"].set_xlabel("α", fontsize=7, labelpad=0)
        self.suptitle = self.fig.suptitle("", fontsize=8)

    def draw(self, alpha: float) -> bytes:
        """The frame at `alpha` as PNG bytes (writes θ(α) into the interpolator's model)."""
        model = self.interpolator.set(alpha)
        lines, dots = self.markers[0::2], self.markers[1::2]
        for (metric, _ax), line, dot in zip(self.metric_axes.items(), lines, dots):
            line.set_xdata([alpha, alpha])
            at = self.curves[np.isclose(self.curves.alpha, alpha)]
            dot.set_data(at.alpha, at[metric])
        self.view_ax.clear()
        self.view(model, alpha, self.view_ax)
        self.suptitle.set_text(f"{self.title}  α = {alpha:.2f}".strip())
        return png_bytes(self.fig)


def alpha_slider(curves: pd.DataFrame, model: torch.nn.Module, state_a: dict, state_b: dict,
                 view: View, live: bool | None = None, title: str = "",
                 live_range: tuple[float, float] = (-0.5, 1.5)) -> widgets.Widget:
    """A slider over α for one pair: its curves (train dashed, test solid) and `view` of θ(α).

    `curves` are the rows of one pair from a study's curves table (rows with `bn_reset` True are
    left out). `model` is scratch space: θ(α) is written into it. Static mode has one frame per α
    in `curves` and works without a kernel; live mode (`live=True`) redraws at any α in
    `live_range`. `live=None` chooses with :func:`live_default`.
    """
    import ipywidgets as widgets

    curves = pair_curves(curves)
    alphas = np.sort(curves.alpha.unique())
    model.eval()
    interpolator = Interpolator(model, state_a, state_b)
    live = live_default() if live is None else live
    if live:
        lo, hi = min(live_range[0], alphas[0]), max(live_range[1], alphas[-1])
        drawer = FrameDrawer(curves, interpolator, view, title, (lo, hi))
        slider = widgets.FloatSlider(value=float(alphas[0]), min=lo, max=hi, step=0.01,
                                     description="α", continuous_update=False,
                                     readout_format=".2f")
        image = widgets.Image(value=drawer.draw(slider.value), format="png")
        slider.observe(lambda change: setattr(image, "value", drawer.draw(change["new"])),
                       names="value")
        box = widgets.VBox([slider, image])
        box.add_class(CSS_CLASS)
        return box
    pad = 0.03 * (alphas[-1] - alphas[0])
    drawer = FrameDrawer(curves, interpolator, view, title, (alphas[0] - pad, alphas[-1] + pad))
    frames = [widgets.Image(value=drawer.draw(float(a)), format="png") for a in alphas]
    stack = widgets.Stack(frames, selected_index=0)
    last = len(frames) - 1
    slider = widgets.IntSlider(value=0, min=0, max=last, description="α", readout=False)
    play = widgets.Play(value=0, min=0, max=last, interval=400, description="Play α")
    widgets.jslink((play, "value"), (slider, "value"))
    widgets.jslink((slider, "value"), (stack, "selected_index"))
    box = widgets.VBox([widgets.HBox([play, slider]), stack])
    box.add_class(CSS_CLASS)
    return box
