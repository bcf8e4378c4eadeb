"""The book's figures: curves along α, instability against k, and the (k1, k2) heatmap."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..lmc.metrics import STABLE_THRESHOLD, mean_ci

SPLIT_STYLE = {"train": "--", "test": "-"}


# The book's column: the theme's content width in CSS pixels, measured in Chromium (790 px at
# viewports of 1440 px and wider, 688 px at 1280). Figures are at most this wide, so the page
# shows them unscaled, and their smallest text (8 pt at DPI) is 11 px.
COLUMN_PX = 790


DPI = 100


def plot_curves(curves: pd.DataFrame, title: str = "", bn_reset: bool = False) -> plt.Figure:
    """Loss and error vs α for train and test, one line per spawn step, band = 95% CI of
    replicates."""
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
                    ax.fill_between(a, mean - half, mean + half, color=color, alpha=0.15)
        ax.set_xlabel("α")
        ax.set_ylabel(metric)
    axes[1].legend(fontsize=8, ncol=2)
    fig.suptitle(title)
    return fig


def plot_instability(summary: pd.DataFrame, column: str = "instability_error",
                     k_star: int | None = None, threshold: float = STABLE_THRESHOLD,
                     title: str = "") -> plt.Figure:
    """Mean instability (±95% CI) vs spawn step on a log axis, with the threshold and k*."""
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
                 title: str = "") -> plt.Figure:
    """Mean of `column` over replicates on the (k1, k2) grid."""
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
