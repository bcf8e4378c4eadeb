"""Four named random streams: init, data order, augmentation, dropout.

Each stream is seeded on its own, so a child can change its data order without touching
its dropout masks, and every stream's state is saved in checkpoints.
"""
from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

STREAMS = ("init", "data_order", "augmentation", "dropout")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across processes and platforms)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@dataclass(frozen=True)
class Seeds:
    """One seed per stream."""

    init: int = 0
    data_order: int = 0
    augmentation: int = 0
    dropout: int = 0

    @classmethod
    def from_base(cls, base: int, *tag: object) -> Seeds:
        """Independent seeds for every stream, derived from a base seed and a tag."""
        return cls(**{s: derive_seed(base, *tag, s) for s in STREAMS})

    def replace(self, **changes: int) -> Seeds:
        """These seeds with the streams named in `changes` replaced."""
        return Seeds(**{**asdict(self), **changes})


class RngStreams:
    """CPU generators for the four streams.

    Code that draws from torch's global generator (module init, dropout, torchvision
    transforms) runs inside `active(name)`, which swaps the stream's state in and out.
    On an accelerator, dropout draws from the device generator; its state is seeded from
    the dropout stream and carried alongside it.
    """

    def __init__(self, seeds: Seeds):
        self.gen = {name: torch.Generator().manual_seed(getattr(seeds, name)) for name in STREAMS}
        self.device_state: dict[str, torch.Tensor] = {}

    @contextlib.contextmanager
    def active(self, name: str, device: torch.device | str = "cpu") -> Iterator[None]:
        """Make stream `name` the global generator (CPU, and `device` if it is an accelerator)."""
        device = torch.device(device)
        saved = torch.get_rng_state()
        torch.set_rng_state(self.gen[name].get_state())
        backend = _backend(device)
        if backend is not None:
            dev_saved = backend.get_rng_state()
            if name not in self.device_state:
                backend.manual_seed(int(torch.randint(2**62, (1,), generator=self.gen[name])))
            else:
                backend.set_rng_state(self.device_state[name])
        try:
            yield
        finally:
            self.gen[name].set_state(torch.get_rng_state())
            torch.set_rng_state(saved)
            if backend is not None:
                self.device_state[name] = backend.get_rng_state()
                backend.set_rng_state(dev_saved)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every stream's generator state (and its device state), for checkpoints."""
        out = {name: g.get_state() for name, g in self.gen.items()}
        out.update({f"{name}@device": s for name, s in self.device_state.items()})
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the states `state_dict` returned."""
        for key, value in state.items():
            # generator states are CPU byte tensors, even if loaded onto a device
            value = value.cpu()
            if key.endswith("@device"):
                self.device_state[key.removesuffix("@device")] = value
            else:
                self.gen[key].set_state(value)


def _backend(device: torch.device):
    if device.type == "cuda":
        return torch.cuda
    if device.type == "mps":
        return torch.mps
    return None
