"""Pretrained checkpoints as hub-style folders (`save_pretrained` / `from_pretrained`): their
identity, and writing one atomically, verified, repaired when damaged. Shared by every chapter
that starts from pretrained weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from ..core.files import append_event, notice, set_aside


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


def publish(folder: Path, save: Callable[[Path], None], valid: Callable[[Path], bool],
            log: Path) -> Path:
    """Make `folder` a valid pretrained folder: kept if `valid(folder)`, else written afresh by
    `save(tmp)` into a temporary folder beside it and renamed into place; a damaged folder is
    moved to `<folder>.damaged`, a missing one that was published before is reported. Each
    publication is an event in `log/events.jsonl` (the run whose weights it holds); call it under
    that run's lock."""
    folder = Path(folder)
    if folder.is_dir() and valid(folder):
        return folder
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save(tmp)
    if not valid(tmp):
        raise RuntimeError(f"the pretrained folder written to {tmp} does not verify")
    if folder.exists():
        set_aside(folder, "it does not hold the run's weights", "it is written again")
    elif published_before(log, folder):
        notice(f"re-made {folder}: it was missing (published before, then deleted)")
    os.replace(tmp, folder)
    append_event(log, "published", pretrained=folder.name)
    return folder


def published_before(log: Path, folder: Path) -> bool:
    """Whether `log/events.jsonl` records a publication of `folder` (by name)."""
    events = Path(log) / "events.jsonl"
    if not events.exists():
        return False
    for line in events.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "published" and event.get("pretrained") == Path(folder).name:
            return True
    return False
