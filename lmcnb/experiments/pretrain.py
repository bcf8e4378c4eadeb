"""A run's weights published as a pretrained folder (`save_pretrained`), verified and re-made
when damaged.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..models.pretrained import publish, same_weights


def publish_weights(run: Any, step: int, folder: Path,
                    save: Callable[[dict[str, torch.Tensor], Path], None],
                    load: Callable[[Path], dict[str, torch.Tensor]] | None = None) -> Path:
    """The weights of `run` (an `lmcnb.experiments.runs.Run`) at `step` as a pretrained folder:
    written by `save(weights, tmp)` (a `save_pretrained`), published under the run's lock, and
    kept only while it holds exactly those weights: read back by `load(folder)` (a
    `from_pretrained`'s state dict, for models whose files name tensors otherwise), else
    `same_weights`. The run must have finished (`NotTrained` otherwise)."""
    from safetensors import SafetensorError

    from ..core.files import folder_lock

    def valid(f: Path) -> bool:
        if load is None:
            return same_weights(f, weights)
        try:
            stored = load(f)
        except (OSError, ValueError, RuntimeError, SafetensorError):  # missing, damaged
            return False
        return stored.keys() == weights.keys() and all(
            torch.equal(v.cpu(), weights[k].cpu()) for k, v in stored.items())

    weights = run.weights(step)
    with folder_lock(run.dir):
        return publish(folder, lambda tmp: save(weights, tmp), valid, run.dir)
