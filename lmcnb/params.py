"""Chapter parameters: a profile's values, overridden by every parameter given explicitly.

Chapters call `resolve` in their first cells, so a bad value fails before any work starts,
with a message that lists the valid values.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

PROFILES = ("smoke", "book", "paper")
MACHINE_PARAMETERS = ("data_dir", "runs_dir", "device", "executor")  # not part of any profile


def resolve(profiles: Mapping[str, Mapping[str, Any]], profile: str, **given: Any) -> SimpleNamespace:
    """The profile's values with every non-None entry of `given` on top."""
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(profiles)}")
    values = dict(profiles[profile])
    unknown = set(given) - set(values) - set(MACHINE_PARAMETERS)
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; valid: {sorted(values)}")
    values.update({k: v for k, v in given.items() if v is not None})
    values.update({k: given.get(k) for k in MACHINE_PARAMETERS})
    values["runs_dir"] = runs_root(values["runs_dir"])
    values["profile"] = profile
    return SimpleNamespace(**values)


def choose(name: str, value: Any, valid: Iterable[Any]) -> Any:
    """`value` if it is one of `valid`, else a ValueError listing them."""
    valid = list(valid)
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, valid))}")
    return value


def at_least(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return value


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """Where runs live: the parameter, else $LMCNB_RUNS, else ./runs."""
    return Path(runs_dir or os.environ.get("LMCNB_RUNS") or "runs").expanduser().resolve()


def pick_device(device: str | None = None) -> str:
    """`device`, or the best available of cuda, mps, cpu."""
    import torch

    if device not in (None, "auto"):
        choose("device", str(device).split(":")[0], ("cpu", "cuda", "mps"))
        return str(device)
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"
