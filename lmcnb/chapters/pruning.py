"""What the pruning sections show: densities and accuracies of pruned runs over replicates, what
pruning costs against the dense run of the same trunk, where a mask keeps weights, training
losses.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..experiments.pruning import finished_weights
from ..prune.mask import density, prunable


def pruning_results(setup: Any, runs: Mapping[str, list[Any]], dense: Any,
                    executor: Any = "serial") -> Any:
    """One row per run: condition, replicate, density over the selected tensors, test accuracy
    on the test sample of `setup`'s pairs (`run_accuracies`, as tasks on `executor`); `dense`
    holds the dense runs' rows (condition "dense")."""
    import pandas as pd

    from ..experiments.pruning import run_accuracies

    rows = dense.to_dict("records")
    flat = [(name, i, run) for name, reps in runs.items() for i, run in enumerate(reps)]
    accuracies = run_accuracies(setup, [run for _, _, run in flat], executor)
    for (name, i, run), acc in zip(flat, accuracies):
        rows.append({"condition": name, "replicate": i,
                     "density": density(prunable(finished_weights(run))), "accuracy": acc})
    return pd.DataFrame(rows)


def pruning_cost(results: Any, condition: str) -> tuple[float, float, int]:
    """Dense − `condition` test accuracy, replicate by replicate (the same trunk seeds), with
    its 95% CI and the number of replicates."""
    from ..lmc.metrics import paired_difference

    pruned = results[results.condition == condition].assign(spawn_step=0)
    dense = results[(results.condition == "dense")
                    & results.replicate.isin(pruned.replicate)].assign(spawn_step=0)
    d = paired_difference(pruned, dense, "accuracy", on=("spawn_step", "replicate")).iloc[0]
    return float(d.accuracy), float(d.accuracy_ci95), int(d.n)


def pruning_table(results: Any) -> Any:
    """Per condition: replicates, density over the selected tensors, test accuracy (mean ± 95%
    CI) and the accuracy pruning costs against the dense run of the same replicate."""
    import pandas as pd

    from ..book.report import pct
    from ..lmc.metrics import mean_ci

    rows = []
    for name, g in results.groupby("condition", sort=False):
        cost = pruning_cost(results, name) if name != "dense" else None
        rows.append({"run": name, "replicates": len(g),
                     "density (selected)": pct(g.density.mean(), digits=2),
                     "test accuracy": pct(*mean_ci(g.accuracy), digits=1),
                     "dense − it (same trunk)": pct(cost[0], cost[1], digits=1) if cost else ""})
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
