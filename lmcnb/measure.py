"""Measure your own models: the curve and every barrier of one pair of checkpoints.

    m = measure(model_a, model_b, {"train": train_loader, "test": test_loader})
    m.barriers   # per split: loss and error barriers, instability, midpoint, α*, l2, disagreement
    m.plot()
    m.slider(view)

A pair is two modules of one architecture, two state dicts with `model=` to load them into, or two
folders written by `save_pretrained`. Data is a `DataLoader` or any iterable of `(x, y)` batches,
or a `TensorData`. It is read once and held on the device, so every α sees the same examples, and
the chapters' engine evaluates it (`interpolation_curve`, then `barriers`): the numbers are those
a chapter computes for the same pair on the same examples. Nothing is reported that was not
measured: non-finite weights or inputs are refused before the first α, and an α whose loss is not
finite makes the barriers that read it infinite and the pair unstable (`nonfinite_alpha`).
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from torch import nn

from .core.checks import at_least
from .core.device import pick_device
from .data.tensors import TensorData
from .lmc.interpolate import alpha_grid, eval_subset, pair_tables
from .lmc.metrics import STABLE_THRESHOLD
from .lmc.repair import has_batchnorm
from .train.evaluation import logits_of

if TYPE_CHECKING:  # matplotlib and ipywidgets are imported by `plot` and `slider` alone
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    from .book.widgets import View

State = dict[str, torch.Tensor]


Checkpoint = nn.Module | Mapping[str, torch.Tensor] | str | os.PathLike


Data = TensorData | Iterable[tuple[torch.Tensor, torch.Tensor]]


DEFAULT_BATCH = 1000  # examples per forward pass when the data gives no batch size


@dataclass
class Measurement:
    """One pair measured: `curves` (one row per split and α) and `barriers` (one per split).

    With a BatchNorm reset both tables hold each row twice, `bn_reset` False and True. `model`
    is scratch space for θ(α); `state_a` and `state_b` are copies of the two ends (on the CPU).
    """

    curves: pd.DataFrame
    barriers: pd.DataFrame
    model: nn.Module
    state_a: State
    state_b: State

    def plot(self, title: str = "") -> plt.Figure:
        """Loss and error along α, one line per split (train dashed, test solid)."""
        import matplotlib.pyplot as plt

        from .book.plots import SPLIT_STYLE

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.3), constrained_layout=True)
        for ax, metric in zip(axes, ("loss", "error")):
            for (reset, split), c in self.curves.groupby(["bn_reset", "split"], sort=False):
                ax.plot(c.alpha, c[metric], SPLIT_STYLE.get(split, "-."), color=f"C{int(reset)}",
                        label=f"{split}, BatchNorm reset" if reset else split)
            ax.set_xlabel("α")
            ax.set_ylabel(metric)
        axes[1].legend(fontsize=8)
        fig.suptitle(title)
        return fig

    def slider(self, view: View, *, live: bool | None = None, title: str = "") -> widgets.Widget:
        """The book's α-slider for this pair (see `lmcnb.book.widgets.alpha_slider`)."""
        from .book.widgets import alpha_slider

        return alpha_slider(self.curves, self.model, self.state_a, self.state_b, view, live=live,
                            title=title)


def measure(a: Checkpoint, b: Checkpoint, data: Data | Mapping[str, Data], *,
            model: nn.Module | None = None, model_class: type | None = None,
            logits: Callable[[Any], torch.Tensor] | None = None, n_alpha: int = 30,
            bn_reset: bool | Data = False, language_model: bool = False,
            threshold: float = STABLE_THRESHOLD, device: str = "auto",
            batch_size: int | None = None, columns: str | tuple[str, str] | None = None,
            align: str | None = None, repair: bool = False,
            progress: bool = True) -> Measurement:
    """Interpolate from `a` (α = 0) to `b` (α = 1) on `n_alpha` points; every barrier per split.

    `a`, `b`: two modules of one architecture (left untouched); two state dicts, with `model` a
    module of their architecture; or two `save_pretrained` folders, loaded with `model_class`
    (default: the class their config names, e.g. `GPT2LMHeadModel`).
    `data`: one split (named "test") or a mapping of names to splits; a split is a `DataLoader`,
    any iterable of `(x, y)` batches, a `TensorData`, or a Hugging Face `Dataset` /
    `IterableDataset` (a `DatasetDict`'s splits are the measured splits), read through its own
    format or transform, its input and target columns inferred from the common names (`image`,
    `img`, `pixel_values`; `label`, `labels`; `input_ids` with next-token targets for a language
    model) or named by `columns` (`("x", "y")`, or one token column). The "test" split also gives
    the prediction disagreement of A and B.
    `logits`: for a model whose output is not logits (or an object with `.logits`), a function
    from its output to logits of shape (..., classes) with one row per target in y. The loss is
    the mean cross-entropy and the error the top-1 error over every target (the next-token ones
    for a language model), as in the chapters.
    `bn_reset`: after interpolating, recompute the BatchNorm statistics on the "train" split
    (`True`) or on the data given; both curves are reported.
    `language_model`: also report the relative perplexity instability, and judge stability by it.
    `batch_size`: examples per forward pass; default: the first batch's size (else 1000).
    `device`: "auto" (the best this machine has), or one it has ("cpu", "cuda", "mps").
    `align`: first permute B's hidden units to match A's — "weights" (weight matching) or
    "activations" (activation matching on the "train" split, else the first) — for networks
    trained from different initializations (`lmcnb.lmc.align`; the model needs a permutation
    spec, built in or derived for a plain `nn.Sequential`). `repair`: rescale every θ(α)'s
    channels to the interpolated endpoint statistics (REPAIR, `lmcnb.lmc.repair`), measured on
    the same split. The curves are then those of θ_A and π(θ_B).
    Every input is checked before the first α is evaluated: the arguments, both ends (no
    non-finite parameter or buffer), and every batch (x and y of one length, finite inputs,
    integer targets, the shapes of batch 0, targets the model's output has logits for).
    """
    alphas = alpha_grid(n_alpha)
    if align is not None:
        from .lmc.align import ALIGNMENTS

        if align not in ALIGNMENTS[1:]:
            raise ValueError(f"align must be None, 'weights' or 'activations' (got {align!r})")
    if not isinstance(repair, bool):
        raise ValueError(f"repair must be True or False (got {repair!r})")
    if batch_size is not None:
        at_least("batch_size", batch_size, 1)
    device = pick_device(device)
    net, state_a, state_b = _load_pair(a, b, model, model_class)
    for name, state in (("a", state_a), ("b", state_b)):
        _check_finite(name, state)
    if _is_hf(data):
        from .data.hf import dataset_splits

        data = dataset_splits(data, columns, language_model)
    if isinstance(data, Mapping):
        if not data:
            raise ValueError("data holds no split")
        named = dict(data)
    else:
        named = {"test": data}
    read = {name: _materialize(name, d, columns, language_model) for name, d in named.items()}
    reset_given = (None if isinstance(bn_reset, bool)
                   else _materialize("bn_reset", bn_reset)[0])
    if batch_size is None:
        batch_size = next((n for _, n in read.values() if n), DEFAULT_BATCH)
    net.to(device).eval()
    if logits is not None:
        net.register_forward_hook(lambda module, args, output: logits(output))
    splits = {name: eval_subset(d, "all", batch_size, device) for name, (d, _) in read.items()}
    reset_data = _reset_data(bn_reset, reset_given, net, splits, batch_size, device)
    _check_output(net, splits, {name for name, (_, n) in read.items() if n is not None})
    fit = splits.get("train", next(iter(splits.values())))  # what alignment and REPAIR see
    renormalize = None
    if align is not None:
        from .lmc.align import aligned_state

        state_b = {k: v.to("cpu") for k, v in
                   aligned_state(net, state_a, state_b, align, fit).items()}
    if repair:
        from .lmc.repair import Repair

        renormalize = Repair(net, state_a, state_b, fit, batch_size=batch_size).apply
    curves, table = pair_tables(net, state_a, state_b, splits, alphas, batch_size=batch_size,
                                bn_reset_data=reset_data, language_model=language_model,
                                threshold=threshold, renormalize=renormalize, progress=progress)
    return Measurement(curves, table, net, state_a, state_b)


def _load_pair(a: Checkpoint, b: Checkpoint, model: nn.Module | None = None,
              model_class: type | None = None) -> tuple[nn.Module, State, State]:
    """A scratch module of the pair's architecture and CPU copies of both state dicts (in the
    module's key order), checked to hold the same tensors (names and shapes). Modules given are
    left untouched."""
    kind = _kind(a)
    if kind != _kind(b) or kind not in ("module", "state dict", "folder"):
        raise TypeError("a and b must be two modules, two state dicts or two save_pretrained "
                        f"folders (got a {_kind(a)} and a {_kind(b)})")
    if kind == "state dict":
        if model is None:
            raise TypeError("a and b are state dicts: pass model=, a module of their architecture")
        net = copy.deepcopy(model)
        _same_tensors(net.state_dict(), a, "model=", "a")
    else:
        if model is not None:
            raise TypeError("model= is the module to load two state dicts into; "
                            f"a and b are {kind}s")
        if kind == "folder":
            for name, folder in (("a", a), ("b", b)):
                _check_folder(name, Path(folder))
            a, b = (_from_pretrained(Path(f), model_class) for f in (a, b))
        if type(a) is not type(b):
            raise ValueError(f"a and b are different architectures: {type(a).__name__} and "
                             f"{type(b).__name__}")
        net = a if kind == "folder" else copy.deepcopy(a)
        a, b = a.state_dict(), b.state_dict()
    _same_tensors(a, b, "a", "b")
    order = net.state_dict().keys()  # the module's order, whatever order a file kept them in
    return net, *({k: s[k].detach().to("cpu", copy=True) for k in order} for s in (a, b))


def _kind(checkpoint: Any) -> str:
    if isinstance(checkpoint, nn.Module):
        return "module"
    if isinstance(checkpoint, Mapping):
        return "state dict"
    if isinstance(checkpoint, (str, os.PathLike)):
        return "folder"
    return type(checkpoint).__name__


def _check_folder(name: str, folder: Path) -> None:
    """Refuse a folder that is missing, or that `save_pretrained` did not write (no config)."""
    if not folder.exists():
        raise ValueError(f"{name}: the folder {str(folder)!r} is missing (give a folder written "
                         "by save_pretrained)")
    if not folder.is_dir():
        raise ValueError(f"{name}: {str(folder)!r} is a file, not a folder written by "
                         "save_pretrained")
    if not (folder / "config.json").is_file():
        raise ValueError(f"{name}: {str(folder)!r} is not a folder written by save_pretrained "
                         "(no config.json)")


def _from_pretrained(folder: Path, model_class: type | None) -> nn.Module:
    """`model_class.from_pretrained(folder)`, the class named in the folder's config by default."""
    config = folder / "config.json"
    if model_class is None:
        import transformers

        names = json.loads(config.read_text()).get("architectures") or []
        if not names or not hasattr(transformers, names[0]):
            raise ValueError(f"{config} names no transformers model class (architectures: "
                             f"{names}): pass model_class=, e.g. transformers.AutoModelForCausalLM")
        model_class = getattr(transformers, names[0])
    return model_class.from_pretrained(folder)


def _same_tensors(first: Mapping[str, torch.Tensor], second: Mapping[str, torch.Tensor],
                  name_1: str, name_2: str) -> None:
    """Refuse two state dicts that do not hold the same tensor names and shapes."""
    only_1, only_2 = sorted(first.keys() - second.keys()), sorted(second.keys() - first.keys())
    if only_1 or only_2:
        raise ValueError(f"{name_1} and {name_2} are not one architecture: keys only in {name_1}: "
                         f"{only_1[:5]}{' …' * (len(only_1) > 5)}, only in {name_2}: "
                         f"{only_2[:5]}{' …' * (len(only_2) > 5)}")
    for key, t in first.items():
        other = tuple(second[key].shape)
        if tuple(t.shape) != other:
            raise ValueError(f"{name_1} and {name_2} are not one architecture: {key!r} has shape "
                             f"{tuple(t.shape)} in {name_1}, {other} in {name_2}")


def _check_finite(name: str, state: State) -> None:
    """Refuse an end of the pair with a parameter or buffer that is not finite, naming it."""
    for key, t in state.items():
        bad = int((~torch.isfinite(t)).sum()) if t.is_floating_point() else 0
        if bad:
            raise ValueError(f"{name}: {key!r} holds {bad} non-finite value(s) (nan or inf): the "
                             "pair cannot be measured")


def _is_hf(data: Any) -> bool:
    """Whether `data` is a Hugging Face `datasets` object (checked without importing it)."""
    return type(data).__module__.split(".")[0] == "datasets"


def _materialize(name: str, data: Data, columns: Any = None,
                 language_model: bool = False) -> tuple[TensorData, int | None]:
    """A split as one `TensorData` (its batches concatenated, each checked first), and its first
    batch's size (None for a `TensorData` or a dataset)."""
    if _is_hf(data):
        from .data.hf import dataset_splits

        data = dataset_splits(data, columns, language_model, split=name)[name]
    if isinstance(data, TensorData):
        _check_batch(f"split {name!r}", data.x, data.y)
        if len(data) == 0:
            raise ValueError(f"split {name!r} is empty")
        return data, None
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    for i, batch in enumerate(data):
        where = f"split {name!r}, batch {i}"
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2
                and all(isinstance(t, torch.Tensor) for t in batch)):
            raise TypeError(f"{where}: a batch must be an (x, y) pair of tensors "
                            f"(got {type(batch).__name__})")
        _check_batch(where, *batch, like=(xs[0], ys[0]) if xs else None)
        xs.append(batch[0])
        ys.append(batch[1])
    if not xs:
        raise ValueError(f"split {name!r} is empty: its loader gave no batches")
    out = TensorData(torch.cat(xs), torch.cat(ys))
    if len(out) == 0:
        raise ValueError(f"split {name!r} is empty")
    return out, len(ys[0])


def _check_batch(where: str, x: torch.Tensor, y: torch.Tensor,
                 like: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
    """Refuse a batch whose inputs and targets do not pair up one to one, whose targets are not
    class indices, whose inputs are not finite, or (`like`: batch 0) whose examples have other
    shapes than batch 0's."""
    if x.dim() == 0 or y.dim() == 0:
        raise ValueError(f"{where}: x and y must have a first dimension of examples "
                         f"(x {tuple(x.shape)}, y {tuple(y.shape)})")
    if len(x) != len(y):
        raise ValueError(f"{where}: x holds {len(x)} examples and y {len(y)}: inputs and targets "
                         "must pair up one to one")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{where}: targets must be class indices (integers), not {y.dtype}")
    if like is not None:
        for part, t, first in (("x", x, like[0]), ("y", y, like[1])):
            if t.shape[1:] != first.shape[1:]:
                raise ValueError(f"{where}: {part} has shape {tuple(t.shape)}, but batch 0's "
                                 f"examples have shape {tuple(first.shape[1:])}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).reshape(len(x), -1).any(1).nonzero()
        raise ValueError(f"{where}: x holds non-finite values (nan or inf), first in example "
                         f"{int(bad[0, 0])}")


def _reset_data(bn_reset: bool | Data, given: TensorData | None, net: nn.Module,
                splits: dict[str, TensorData], batch_size: int, device: str) -> TensorData | None:
    """The examples a BatchNorm reset recomputes the statistics on (None: no reset); `given`:
    the data passed as `bn_reset`, read and checked."""
    if bn_reset is False:
        return None
    if not has_batchnorm(net):
        raise ValueError("bn_reset: the model has no BatchNorm layer to reset")
    if given is not None:
        return eval_subset(given, "all", batch_size, device)
    if "train" not in splits:
        raise ValueError("bn_reset=True resets on the 'train' split, and data has none: name "
                         "one, or pass the reset data as bn_reset=")
    return splits["train"]


@torch.inference_mode()
def _check_output(net: nn.Module, splits: dict[str, TensorData], batched: set[str]) -> None:
    """Refuse a model whose output on two examples of each split is not logits for its targets
    (the first of batch 0 for the splits in `batched`: every batch has batch 0's shapes)."""
    for name, data in splits.items():
        where = f"split {name!r}" + (", batch 0" if name in batched else "")
        out, y = logits_of(net, data.x[:2]), data.y[:2]
        if not (isinstance(out, torch.Tensor) and out.dim() >= 2
                and out.flatten(0, -2).shape[0] == y.numel()):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{where}: the model's output ({shape}) is not logits with one "
                             f"row per target (targets {tuple(y.shape)}); pass logits=, a function "
                             "from the output to such logits")
        low, high, classes = int(data.y.min()), int(data.y.max()), out.shape[-1]
        if low < 0 or high >= classes:
            raise ValueError(f"split {name!r}: targets run from {low} to {high}, but the model "
                             f"gives {classes} logits per target")
