"""Masks: which weights a pruned network keeps (True = kept), as plain dicts of bool tensors.

A mask goes into checkpoints as it is and into a file of its own named by its content
(`save_mask`), which a `Ref.of("hook", "mask", ...)` names by path and digest; `MaskHook` keeps a
network masked after every optimizer step. Random masks of the same per-tensor density and
lottery tickets m ⊙ W_k are built here.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

Mask = dict[str, torch.Tensor]


# What PLATON prunes in a ViT, by substring of the parameter name (weights and biases): the
# attention's Q/K/V and output projection, and both MLP matrices. transformers 4.x names them
# `attention.attention.{query,key,value}`, `attention.output.dense`, `intermediate.dense`,
# `output.dense` (the BERT list `attention.self` misses Q/K/V); 5.x renames them in memory to
# `attention.{q,k,v,o}_proj`, `mlp.fc1`, `mlp.fc2` (its checkpoints keep the 4.x names).
VIT_PRUNABLE = ("attention.attention", "attention.output.dense", "intermediate.dense",
                "output.dense", "attention.q_proj", "attention.k_proj", "attention.v_proj",
                "attention.o_proj", "mlp.fc1", "mlp.fc2")


# Never pruned, whatever `include` says (matched in the lower-cased name).
NEVER_PRUNED = ("embeddings", "layernorm", "layer_norm", "pooler", "classifier")


def prunable(model: nn.Module | Mapping[str, torch.Tensor],
             include: tuple[str, ...] = VIT_PRUNABLE) -> dict[str, torch.Tensor]:
    """The tensors selected for pruning: names containing any of `include`, none of NEVER_PRUNED.

    `model` is a module (its parameters) or a state dict.
    """
    tensors = dict(model.named_parameters()) if isinstance(model, nn.Module) else model
    chosen = {name: t for name, t in tensors.items() if any(s in name for s in include)
              and not any(s in name.lower() for s in NEVER_PRUNED)}
    if not chosen:
        raise ValueError(f"no tensor name contains any of {include}")
    return chosen


def density(tensors: Mapping[str, torch.Tensor]) -> float:
    """Fraction of nonzero entries over all `tensors` together (of a mask: the kept fraction)."""
    kept = sum(int(torch.count_nonzero(t)) for t in tensors.values())
    return kept / sum(t.numel() for t in tensors.values())


def tensor_densities(tensors: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of nonzero entries of each tensor."""
    return {name: int(torch.count_nonzero(t)) / t.numel() for name, t in tensors.items()}


def _check(mask: Mapping[str, torch.Tensor]) -> None:
    wrong = [name for name, m in mask.items() if m.dtype != torch.bool]
    if wrong:
        raise TypeError(f"a mask holds bool tensors; not so for {wrong[:3]}")


def final_mask(model: nn.Module | Mapping[str, torch.Tensor],
               include: tuple[str, ...] = VIT_PRUNABLE) -> Mask:
    """The mask of a pruned model: True where a selected tensor's entry is nonzero."""
    return {name: t.detach() != 0 for name, t in prunable(model, include).items()}


def random_mask(mask: Mapping[str, torch.Tensor], generator: torch.Generator) -> Mask:
    """A mask that keeps as many entries of each tensor as `mask`, at uniformly random places.

    Draws one permutation per tensor from `generator` (a CPU generator), in the mask's order.
    """
    _check(mask)
    out = {}
    for name, m in mask.items():
        keep = torch.zeros(m.numel(), dtype=torch.bool)
        keep[torch.randperm(m.numel(), generator=generator)[:int(m.sum())]] = True
        out[name] = keep.view(m.shape).to(m.device)
    return out


def apply_mask(state: Mapping[str, torch.Tensor],
               mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """m ⊙ W: a copy of the state dict with every entry off the mask set to zero.

    Applied to the weights W_k of step k it gives the lottery ticket rewound to k.
    """
    _check(mask)
    unknown = sorted(mask.keys() - state.keys())
    if unknown:
        raise KeyError(f"the mask names tensors the state does not have: {unknown[:3]}")
    return {name: t.masked_fill(~mask[name].to(t.device), 0) if name in mask else t.clone()
            for name, t in state.items()}


def mask_digest(mask: Mapping[str, torch.Tensor]) -> str:
    """What identifies a mask: a hash of its tensor names, shapes and bits."""
    from ..core.checkpoint import tensor_digest

    _check(mask)
    return tensor_digest(dict(mask))[:16]


def save_mask(mask: Mapping[str, torch.Tensor], folder: str | Path) -> Any:
    """Write `mask` to `<folder>/mask-<digest>.safetensors` (atomically, verified on load) and
    return the hook that keeps it: `Ref.of("hook", "mask", path=..., digest=...)`. A run's
    identity holds the digest, not the path.

    A file already there is verified; one that fails (damaged, or another mask's) is moved aside
    to `*.damaged` and written again from `mask`, with one line printed for the reader and a
    `remade` event in `<folder>/events.jsonl`."""
    from ..core.checkpoint import save_state
    from ..core.files import append_event, folder_lock, set_aside
    from ..core.ref import Ref

    digest = mask_digest(mask)
    path = Path(folder) / f"mask-{digest}.safetensors"
    ref = Ref.of("hook", "mask", path=str(path), digest=digest)
    if _fault(path, digest) is None:
        return ref
    with folder_lock(path.parent):
        damage = _fault(path, digest)  # again: another process may have made it meanwhile
        if damage is None:
            return ref
        if damage:
            set_aside(path, " ".join(damage.replace(f"checkpoint {path} ", "").split()),
                      "it is re-made from the mask")
        save_state(path, {"mask": {name: m.cpu() for name, m in mask.items()}},
                   identity={"mask": digest})
    if damage:
        append_event(path.parent, "remade", file=path.name, error=damage)
    return ref


def _fault(path: Path, digest: str) -> str | None:
    """None if `path` holds the mask `digest`, "" if there is no file, else why it fails."""
    from ..core.checkpoint import CheckpointError

    try:
        load_mask(path, digest)
    except FileNotFoundError:
        return ""
    except CheckpointError as exc:
        return str(exc)
    return None


def load_mask(path: str | Path, digest: str) -> Mask:
    """The mask `save_mask` wrote to `path`, refused (a `CheckpointError` naming the file) unless
    it verifies and holds the mask `digest`."""
    from ..core.checkpoint import CheckpointError, load_state

    mask = load_state(path, identity={"mask": digest})["mask"]
    _check(mask)
    if mask_digest(mask) != digest:
        raise CheckpointError(f"checkpoint {path} holds the mask {mask_digest(mask)}, not "
                              f"{digest}: it was written from another mask")
    return mask


class MaskHook:
    """A trainer hook that keeps a masked network masked: after every optimizer step it sets the
    weights off the mask to exactly zero. (The step moves them: their gradients are not zero and
    momentum carries earlier ones; AdamW's decoupled weight decay alone would keep a zero at zero.)
    Their gradients are not masked, so with `grad_clip` they count in the global norm.

    It also masks the starting weights (`start`, called when training starts from an
    initialization or a spawn point), so the first forward pass sees m ⊙ W too. The mask is the
    hook's state, saved in the trainer's checkpoints.
    """

    def __init__(self, mask: Mapping[str, torch.Tensor]):
        _check(mask)
        self.mask = dict(mask)

    @torch.no_grad()
    def __call__(self, trainer: Any) -> None:
        params = dict(trainer.model.named_parameters())
        for name, m in self.mask.items():
            p = params[name]
            self.mask[name] = m = m.to(p.device)  # once: a no-op afterwards
            p.masked_fill_(~m, 0)

    start = __call__

    def state_dict(self) -> dict[str, Any]:
        """The mask, for the trainer's checkpoints."""
        return {"mask": dict(self.mask)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the mask `state_dict` returned."""
        _check(state["mask"])
        self.mask = dict(state["mask"])
