"""Pretrained checkpoints as hub-style folders (`save_pretrained` / `from_pretrained`): loading
one from the hub or a local directory, its identity, and writing one atomically, verified,
repaired when damaged. Shared by every chapter that starts from pretrained weights."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers at all (its client retries for a minute when offline)."""
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def from_hub(cls: Any, source: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(source, **kwargs)`: a local directory, the local hub cache, else the
    hub.

    Offline, fails at once instead of after the hub client's minute of retries.
    """
    try:
        return cls.from_pretrained(source, local_files_only=True, **kwargs)
    except OSError as exc:
        if Path(source).exists():
            raise
        if not hub_reachable():
            raise OSError(f"{source!r} is neither a local directory nor in the hub cache, "
                          f"and {HUB_HOST} cannot be reached") from exc
    return cls.from_pretrained(source, **kwargs)


def pretrained_id(source: str) -> str:
    """A hub id as given; a local directory by a hash of its weights (the path does not matter)."""
    weights = Path(source) / "model.safetensors"
    if not weights.exists():
        return source
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return f"dir-{digest.hexdigest()[:16]}"


def same_weights(folder: Path, weights: dict[str, torch.Tensor]) -> bool:
    """Whether `folder/model.safetensors` holds exactly `weights` (tied copies may be left out)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        stored = load_file(str(folder / "model.safetensors"))
    except (OSError, SafetensorError, RuntimeError):
        return False
    return bool(stored) and all(k in weights and torch.equal(v, weights[k].cpu())
                                for k, v in stored.items())


def check_digest(source: str, digest: str | None) -> None:
    """Refuse a pretrained directory whose weights are not the ones a study was planned on
    (`digest` is their `pretrained_id`; None checks nothing)."""
    if digest is not None and pretrained_id(source) != digest:
        raise ValueError(f"the pretrained model in {source} is {pretrained_id(source)}, but the "
                         f"study was planned on {digest}: its weights changed in between")


def publish_weights(run: Any, step: int, folder: Path,
                    save: Callable[[dict[str, torch.Tensor], Path], None],
                    load: Callable[[Path], dict[str, torch.Tensor]] | None = None) -> Path:
    """The weights of `run` (an `lmcnb.runs.Run`) at `step` as a pretrained folder: written by
    `save(weights, tmp)` (a `save_pretrained`), published under the run's lock, and kept only
    while it holds exactly those weights: read back by `load(folder)` (a `from_pretrained`'s
    state dict, for models whose files name tensors otherwise), else `same_weights`."""
    from safetensors import SafetensorError

    from .runs import folder_lock

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
        return publish(folder, lambda tmp: save(weights, tmp), valid)


def publish(folder: Path, save: Callable[[Path], None], valid: Callable[[Path], bool]) -> Path:
    """Make `folder` a valid pretrained folder: kept if `valid(folder)`, else written afresh by
    `save(tmp)` into a temporary folder beside it and renamed into place; a damaged folder is
    moved to `<folder>.damaged`. Call it under the lock of the run whose weights it holds."""
    folder = Path(folder)
    if folder.is_dir() and valid(folder):
        return folder
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    if not valid(tmp):
        raise RuntimeError(f"the pretrained folder written to {tmp} does not verify")
    if folder.exists():
        damaged = folder.with_name(f"{folder.name}.damaged")
        shutil.rmtree(damaged, ignore_errors=True)
        os.replace(folder, damaged)
    os.replace(tmp, folder)
    return folder
