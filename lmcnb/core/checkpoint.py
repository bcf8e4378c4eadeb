"""Checkpoints as single safetensors files, written atomically, never unpickled, verified on load.

Any nested state (model weights, optimizer state, RNG states, counters) is split into
tensors, stored as safetensors, and a JSON tree stored in the file's metadata, together with
a sha256 digest of every tensor's bytes and an identity (for a run: its id and step). Loading
recomputes the digest and compares the identity: a damaged or misplaced file is refused with
a `CheckpointError` naming it, never used.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .files import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupt, or not a checkpoint)."""


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor],
             seen: dict | None = None) -> Any:
    # seen: (storage, offset, shape, stride, dtype) -> key, and storages
    seen = {} if seen is None else seen
    if isinstance(obj, torch.Tensor):
        key = prefix or "."
        t = obj.detach().cpu().contiguous()
        view = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(),
                t.dtype)
        if view in seen:  # the same tensor again (tied weights): stored once, referenced twice
            return {"__tensor__": seen[view]}
        if ("storage", view[0]) in seen:  # overlaps a stored tensor: safetensors needs its own copy
            t = t.clone()
        seen[view], seen[("storage", view[0])] = key, key
        tensors[key] = t
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_key(k), _flatten(v, f"{prefix}/{k}", tensors, seen)]
                             for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{prefix}/{i}", tensors, seen) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {prefix!r} in a checkpoint")


def _key(k: Any) -> Any:
    if isinstance(k, (int, str)):
        return k
    raise TypeError(f"checkpoint dict keys must be int or str, got {k!r}")


def _unflatten(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__tuple__" in tree:
            return tuple(_unflatten(v, tensors) for v in tree["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in tree["__dict__"]}
    if isinstance(tree, list):
        return [_unflatten(v, tensors) for v in tree]
    return tree


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def save_state(path: str | os.PathLike, state: dict[str, Any],
               identity: dict[str, Any] | None = None) -> None:
    """Save a nested dict of tensors and plain values to `path` atomically, with the digest of
    its tensors and `identity` (plain JSON data, e.g. {"run": run_id, "step": 400})."""
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, "", tensors)
    meta = {"lmcnb": json.dumps(tree), "digest": tensor_digest(tensors),
            "identity": json.dumps(identity or {}, sort_keys=True)}
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def load_state(path: str | os.PathLike, device: str | torch.device = "cpu",
               identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load what `save_state` wrote, after checking its tensors against their digest and, if given,
    its identity (every key given must match). Raises CheckpointError naming the file if it is
    damaged or is another's."""
    path = Path(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path), device="cpu")
        if "digest" not in meta or tensor_digest(tensors) != meta["digest"]:
            raise CheckpointError(f"checkpoint {path} fails its checksum: its tensors changed "
                                  "after it was written (or it predates checksums)")
        stored = json.loads(meta.get("identity", "{}"))
        if identity is not None and any(stored.get(k) != v for k, v in identity.items()):
            raise CheckpointError(f"checkpoint {path} belongs to {stored or 'nothing recorded'}, "
                                  f"not to {identity}: it was copied or moved from elsewhere")
        state = _unflatten(json.loads(meta["lmcnb"]), tensors)
    except (FileNotFoundError, CheckpointError):
        raise
    except (SafetensorError, KeyError, ValueError, OSError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt: {exc}") from exc
    if torch.device(device).type != "cpu":
        state = _unflatten(json.loads(meta["lmcnb"]), {k: v.to(device) for k, v in tensors.items()})
    return state
