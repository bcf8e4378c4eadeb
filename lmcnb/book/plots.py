"""The book's figures: curves along α, instability against k, and the (k1, k2) heatmap.

matplotlib is imported by the functions that draw (it takes about as long to import as torch).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..lmc.metrics import STABLE_THRESHOLD, mean_ci

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SPLIT_STYLE = {"train": "--", "test": "-"}


# The book's column: the theme's content width in CSS pixels, measured in Chromium (790 px at
# viewports of 1440 px and wider, 688 px at 1280). Figures are at most this wide, so the page
# shows them unscaled, and their smallest text (8 pt at DPI) is 11 px.
COLUMN_PX = 790


DPI = 100


LIMITS = {"loss": (0.0, np.inf), "error": (0.0, 1.0)}  # the values a curve can take


def plot_curves(curves: pd.DataFrame, title: str = "", bn_reset: bool = False) -> Figure:
    """Loss and error vs α for train and test, one line per spawn step, band = 95% CI of
    replicates (clipped to what the quantity can take: a loss ≥ 0, an error in [0, 1])."""
    import matplotlib.pyplot as plt

    df = curves[curves.bn_reset.astype(bool) == bn_reset] if "bn_reset" in curves else curves
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_PX / DPI, 3.3), dpi=DPI,
                             constrained_layout=True)
    steps = sorted(df.spawn_step.unique())
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(steps)))
    for ax, metric in zip(axes, ("loss", "error")):
        for color, k in zip(colors, steps):
            for split, style in SPLIT_STYLE.items():
                sub = df[(df.spawn_step == k) & (df.split == split)]
                if sub.empty:
                    continue
                stats = [(a, *mean_ci(g[metric])) for a, g in sub.groupby("alpha")]
                a, mean, half = (np.array(v) for v in zip(*stats))
                ax.plot(a, mean, style, color=color, label=f"k={k} {split}")
                if np.isfinite(half).any():
                    low, high = LIMITS[metric]
                    ax.fill_between(a, np.clip(mean - half, low, high),
                                    np.clip(mean + half, low, high), color=color, alpha=0.15)
        ax.set_xlabel("α")
        ax.set_ylabel(metric)
    axes[1].legend(fontsize=8, ncol=2)
    fig.suptitle(title)
    return fig


def plot_instability(summary: pd.DataFrame, column: str = "instability_error",
                     k_star: int | None = None, threshold: float = STABLE_THRESHOLD,
                     title: str = "") -> Figure:
    """Mean instability (±95% CI) vs spawn step on a log axis, with the threshold and k*."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.3), dpi=DPI, constrained_layout=True)
    for split, style in SPLIT_STYLE.items():
        sub = summary[summary.split == split].sort_values("spawn_step")
        if "bn_reset" in sub:
            sub = sub[~sub.bn_reset.astype(bool)]
        if sub.empty:
            continue
        x = sub.spawn_step.clip(lower=1)  # k = 0 drawn at 1 on the log axis
        ax.errorbar(x, sub[column], yerr=sub[f"{column}_ci95"].fillna(0), fmt="o" + style,
                    capsize=3, label=split)
    ax.axhline(threshold, color="red", lw=1, ls=":", label=f"{threshold:.0%} threshold")
    if k_star is not None:
        ax.axvline(max(k_star, 1), color="gray", lw=1, ls="--", label=f"k* = {k_star}")
    ax.set_xscale("log")
    ax.set_xlabel("spawn step k (k = 0 shown at 1)")
    ax.set_ylabel(column.replace("_", " "))
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def plot_heatmap(barriers: pd.DataFrame, column: str = "instability_error", split: str = "test",
                 title: str = "") -> Figure:
    """Mean of `column` over replicates on the (k1, k2) grid."""
    import matplotlib.pyplot as plt

    sub = barriers[barriers.split == split]
    if "bn_reset" in sub:
        sub = sub[~sub.bn_reset.astype(bool)]
    grid = sub.pivot_table(index="spawn_step", columns="k2", values=column, aggfunc="mean")
    fig, ax = plt.subplots(figsize=(4.5, 3.5), dpi=DPI, constrained_layout=True)
    im = ax.imshow(grid.values, cmap="magma_r", origin="lower", aspect="auto")
    ax.set_xticks(range(len(grid.columns)), grid.columns)
    ax.set_yticks(range(len(grid.index)), grid.index)
    for (i, j), v in np.ndenumerate(grid.values):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=8, color="tab:blue")
    ax.set_xlabel("k2 (steps trained by the child)")
    ax.set_ylabel("k1 (spawn step on the main branch)")
    fig.colorbar(im, ax=ax, label=column.replace("_", " "))
    ax.set_title(title)
    return fig


def plot_layerwise(single: pd.DataFrame, cumulative: pd.DataFrame, split: str = "test",
                   title: str = "") -> Figure:
    """Layer-wise barriers of one pair (`lmcnb.lmc.layerwise`) as heatmaps, loss above and error
    below: per layer (columns, input end first), the barrier with that layer alone averaged at
    α = ½ and the rest held at A, and at B; and with every layer up to it averaged. The
    whole-model midpoint barrier is in each panel's title. Colours are centred on 0."""
    import os

    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    one = single[(single.split == split) & (single.layer != "all")].sort_values("position")
    whole = single[(single.split == split) & (single.layer == "all")]
    acc = cumulative[cumulative.split == split].sort_values("step")
    layers = list(dict.fromkeys(one.layer))
    rows = {"alone, rest at A": (one, "A"), "alone, rest at B": (one, "B"),
            "up to it, rest at A": (acc, "A"), "up to it, rest at B": (acc, "B")}
    fig, axes = plt.subplots(2, 1, figsize=(COLUMN_PX / DPI, 1.6 + 0.09 * len(layers) + 2.4),
                             dpi=DPI, constrained_layout=True, sharex=True)
    for ax, metric in zip(axes, ("loss_barrier", "error_barrier")):
        grid = np.array([[float(df[(df.base == base) & (df.layer == layer)][metric].iloc[0])
                          for layer in layers] for df, base in rows.values()])
        scale = max(float(np.nanmax(np.abs(grid))), 1e-9)
        im = ax.imshow(grid, cmap="RdBu_r", aspect="auto",
                       norm=TwoSlopeNorm(vcenter=0.0, vmin=-scale, vmax=scale))
        if len(layers) <= 16:
            for (i, j), v in np.ndenumerate(grid):
                ax.text(j, i, f"{v:.2f}" if metric == "loss_barrier" else f"{v:.0%}",
                        ha="center", va="center", fontsize=7)
        ax.set_yticks(range(len(rows)), list(rows), fontsize=8)
        reference = whole.groupby("base")[metric].mean().mean()
        name = "loss barrier (nats)" if metric == "loss_barrier" else "error barrier"
        shown = f"{reference:.2f}" if metric == "loss_barrier" else f"{reference:.1%}"
        ax.set_title(f"{name}; whole model averaged: {shown}", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.9)
    prefix = os.path.commonprefix(layers).rpartition(".")[0]  # "transformer." of GPT-2's
    labels = [layer.removeprefix(f"{prefix}.") if prefix else layer for layer in layers]
    axes[-1].set_xticks(range(len(layers)), labels, rotation=60, ha="right", fontsize=7)
    fig.suptitle(title)
    return fig
