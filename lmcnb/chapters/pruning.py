"""What the pruning sections show: densities and accuracies of pruned runs, where a mask keeps
weights, training losses, and the stability and accuracy of masked children.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..experiments.pruning import accuracy_of, finished_weights
from ..prune.mask import VIT_PRUNABLE, density, prunable


def pruning_table(setup: Any, runs: Mapping[str, Any],
                  include: tuple[str, ...] = VIT_PRUNABLE) -> Any:
    """One row per run: density over the selected tensors, over all parameters, and test
    accuracy of its final weights (`accuracy_of`; `finished_weights`, which trains only to
    re-make a checkpoint that fails verification)."""
    import pandas as pd

    rows = []
    for name, run in runs.items():
        weights = finished_weights(run)
        rows.append({"run": name, "density (selected)": density(prunable(weights, include)),
                     "density (all)": density(weights),
                     "test accuracy": accuracy_of(setup, weights)})
    return pd.DataFrame(rows)


MATRIX_TYPES = {"Q": ("query", "q_proj"), "K": ("key", "k_proj"), "V": ("value", "v_proj"),
                "O": ("attention.output.dense", "o_proj"), "MLP in": ("intermediate.dense", "fc1"),
                "MLP out": ("output.dense", "fc2")}  # first match wins: O before MLP out


def kept_by_layer(mask: Mapping[str, torch.Tensor]) -> Any:
    """Kept fraction of a ViT mask per encoder layer (rows) and matrix type (columns), weights
    and biases together."""
    import re

    import pandas as pd

    kept: dict[tuple[int, str], list[int]] = {}
    for name, m in mask.items():
        layer = re.search(r"layers?\.(\d+)\.", name)
        kind = next((k for k, subs in MATRIX_TYPES.items() if any(s in name for s in subs)), None)
        if layer is None or kind is None:
            raise ValueError(f"{name!r} is not a ViT encoder matrix")
        count = kept.setdefault((int(layer[1]), kind), [0, 0])
        count[0], count[1] = count[0] + int(m.sum()), count[1] + m.numel()
    table = pd.Series({key: k / n for key, (k, n) in kept.items()}).unstack()
    return table[[k for k in MATRIX_TYPES if k in table.columns]].rename_axis("layer")


def plot_kept(mask: Mapping[str, torch.Tensor], title: str = "") -> Any:
    """A heatmap of `kept_by_layer(mask)`, the kept fraction printed in each cell."""
    import matplotlib.pyplot as plt

    table = kept_by_layer(mask)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * table.shape[1], 0.9 + 0.4 * table.shape[0]))
    im = ax.imshow(table.values, cmap="viridis", vmin=0, aspect="auto")
    for (i, j), v in np.ndenumerate(table.values):
        ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7,
                color="white" if v < 0.6 * table.values.max() else "black")
    ax.set_xticks(range(table.shape[1]), table.columns)
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.set_xlabel("matrix")
    ax.set_ylabel("encoder layer")
    ax.set_title(title or f"kept fraction (overall {density(mask):.1%})", fontsize=9)
    fig.colorbar(im, ax=ax, format=lambda v, _: f"{v:.0%}")
    fig.tight_layout()
    return fig


def training_log(run: Any) -> Any:
    """The training log of a finished run (`Run.log`: verified, re-made from the final checkpoint
    when it is missing or damaged)."""
    return run.log()


def plot_training_loss(runs: Mapping[str, Any], ema: float = 0.9, title: str = "") -> Any:
    """Each run's logged training loss (thin) and its exponential moving average (weight `ema`
    on the past; thick), against the optimizer step (`training_log`: verified)."""
    import matplotlib.pyplot as plt

    logs = {name: training_log(run) for name, run in runs.items()}  # all read before drawing
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for i, (name, log) in enumerate(logs.items()):
        color = f"C{i}"
        ax.plot(log.step, log.train_loss, color=color, lw=0.6, alpha=0.35)
        ax.plot(log.step, log.train_loss.ewm(alpha=1 - ema).mean(), color=color, lw=1.6,
                label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title or f"training loss and its EMA (β = {ema})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def stability_and_accuracy(results: Any, split: str = "test") -> Any:
    """Per spawn step of a study (of masked children, say): pairs, mean test-error instability
    and mean accuracy of the children, each with its 95% CI half-width."""
    import pandas as pd

    from ..lmc.metrics import mean_ci

    b = results.barriers[results.barriers.split == split]
    rows = []
    for k, group in b.groupby("spawn_step"):
        inst, inst_ci = mean_ci(group.instability_error)
        acc, acc_ci = mean_ci(1 - (group.error_a + group.error_b) / 2)
        rows.append({"k": int(k), "pairs": len(group), "instability": inst,
                     "instability_ci": inst_ci, "accuracy": acc, "accuracy_ci": acc_ci})
    return pd.DataFrame(rows)


def masked_table(studies: Mapping[str, Any], split: str = "test") -> Any:
    """One row per study and spawn step: the children's accuracy and their instability, as
    "mean ± CI", with the stability verdict."""
    import pandas as pd

    from ..book.report import pct, verdict

    rows = [{"children": name, "k": r.k, "pairs": r.pairs,
             "accuracy": pct(r.accuracy, r.accuracy_ci, digits=1),
             "instability (test error)": pct(r.instability, r.instability_ci),
             "verdict": verdict(r.instability, r.instability_ci)}
            for name, results in studies.items()
            for r in stability_and_accuracy(results, split).itertuples()]
    return pd.DataFrame(rows)


def plot_stability_vs_accuracy(studies: Mapping[str, Any], split: str = "test",
                               title: str = "") -> Any:
    """Accuracy of masked children against the instability of their pair, one point per spawn
    step k (labelled), one colour per study, with 95% CIs both ways and the threshold."""
    import matplotlib.pyplot as plt

    from ..lmc.metrics import STABLE_THRESHOLD

    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for i, (name, results) in enumerate(studies.items()):
        t = stability_and_accuracy(results, split)
        ax.errorbar(t.instability, t.accuracy, xerr=t.instability_ci.fillna(0),
                    yerr=t.accuracy_ci.fillna(0), fmt="o", color=f"C{i}", capsize=3, label=name)
        for r in t.itertuples():
            ax.annotate(f"k={r.k}", (r.instability, r.accuracy), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    ax.axvline(STABLE_THRESHOLD, color="red", lw=1, ls=":",
               label=f"{STABLE_THRESHOLD:.0%} threshold")
    ax.set_xlabel(f"instability of the masked pair ({split} error)")
    ax.set_ylabel(f"accuracy of the masked children ({split})")
    ax.set_title(title or "stability and prunability", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
