"""Data held as whole tensors (`TensorData`), and a validation split carved from a training one."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import torch


@dataclass
class TensorData:
    """Inputs ``x`` and targets ``y`` held as whole tensors, indexed along dim 0."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples at positions ``idx``."""
        return self.x[idx], self.y[idx]

    def fingerprint(self) -> str:
        """A short hash of the shapes and of an evenly strided sample of the values."""
        h = hashlib.sha256()
        for t in (self.x, self.y):
            flat = t.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 65536)].cpu().contiguous()
            h.update(f"{tuple(t.shape)}{t.dtype}".encode())
            h.update(sample.numpy().tobytes())
        return h.hexdigest()[:12]

    def to(self, device: torch.device | str) -> TensorData:
        """A copy with ``x`` and ``y`` on ``device``."""
        return dataclasses.replace(self, x=self.x.to(device), y=self.y.to(device))


def carve(data: TensorData, fraction: float, seed: int = 0) -> dict[str, TensorData]:
    """Split `data` into `"train"` and `"val"`: `val` is a fixed random `fraction` of the examples
    (drawn with `seed`), both keep the original order."""
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction!r}")
    n_val = max(1, round(fraction * len(data)))
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    keep = {"val": order[:n_val].sort().values, "train": order[n_val:].sort().values}
    return {name: TensorData(data.x[idx], data.y[idx], data.classes) for name, idx in keep.items()}
