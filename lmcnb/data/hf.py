"""Hugging Face `datasets` as evaluation splits: a `Dataset`, a `DatasetDict` (its splits) or an
`IterableDataset` read into `TensorData`, through the dataset's own format or transform.

    dataset_splits(load_dataset("uoft-cs/cifar10", revision=...))        # {"train": …, "test": …}
    dataset_splits(tokenized, language_model=True)                        # next-token targets

Inputs come from the first column named ``image``, ``img`` or ``pixel_values`` (``input_ids`` for a
language model), targets from ``label`` or ``labels`` (the next tokens for a language model:
x = ids[:-1], y = ids[1:] of every row), unless `columns` names them. Images (PIL, or the uint8
arrays a ``numpy``/``torch`` format makes of them) become float NCHW tensors in [0, 1]; tensors a
transform gives are used as they are. Every split's first batch is checked before any is read.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .tensors import TensorData

IMAGE_COLUMNS = ("image", "img", "pixel_values")


LABEL_COLUMNS = ("label", "labels")


TOKEN_COLUMN = "input_ids"


BATCH = 1000  # rows read at a time


def pil_images(images: Sequence[Any], mode: str | None = None) -> np.ndarray:
    """PIL images as one uint8 array (N, C, H, W), converted to `mode` if given; else in their own
    mode if they share "L" or "RGB", and in "RGB" otherwise."""
    modes = {im.mode for im in images}
    if mode is None:
        mode = modes.pop() if len(modes) == 1 and modes <= {"L", "RGB"} else "RGB"
    arrays = [np.asarray(im if im.mode == mode else im.convert(mode)) for im in images]
    sizes = sorted({a.shape[:2] for a in arrays})
    if len(sizes) > 1:
        raise ValueError(f"images of different sizes ({sizes[0]} and {sizes[1]}, height × width): "
                         "resize them to one size with a transform (`with_transform`)")
    x = np.stack(arrays)
    return x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)


@dataclass(frozen=True)
class _Split:
    """One split as it will be read: its dataset and the columns of its inputs and targets."""

    name: str
    data: Any
    columns: tuple[str, ...]  # what its batches hold
    x: str
    y: str | None  # None: next-token targets of x
    image: bool  # x holds images (scaled to [0, 1] when they come as uint8)

    @property
    def where(self) -> str:
        return f"split {self.name!r} (columns: {', '.join(self.columns)})"


def dataset_splits(data: Any, columns: str | Sequence[str] | None = None,
                   language_model: bool = False, split: str = "test") -> dict[str, TensorData]:
    """`data` as ``{split: TensorData}``: a `DatasetDict` (or any mapping of names to datasets) by
    its split names, a `Dataset` or `IterableDataset` as split `split`.

    `columns`: ``(input, target)`` for a classifier, ``input`` (or ``(input,)``) for a language
    model; inferred from the common names when None. A missing column, targets that are not
    non-negative integers, token rows of different lengths or an empty split fail, naming the
    columns the dataset has, before any split is read in full.
    """
    import datasets

    named = dict(data) if isinstance(data, Mapping) else {split: data}
    if not named:
        raise ValueError("the dataset holds no split")
    for name, ds in named.items():
        if not isinstance(ds, (datasets.Dataset, datasets.IterableDataset)):
            raise TypeError(f"split {name!r} is a {type(ds).__name__}, not a datasets.Dataset or "
                            "IterableDataset")
    plans = [_plan(name, ds, columns, language_model) for name, ds in named.items()]
    return {p.name: _read(p) for p in plans}


def _batches(ds: Any) -> Iterator[dict[str, Any]]:
    return iter(ds.iter(batch_size=BATCH))


def _plan(name: str, ds: Any, columns: str | Sequence[str] | None,
          language_model: bool) -> _Split:
    """The columns of split `name`, checked on its first batch."""
    import datasets

    first = next(_batches(ds), None)
    if first is None:
        raise ValueError(f"split {name!r} is empty")
    has = list(first)
    where = f"split {name!r} (columns: {', '.join(has)})"
    names = [columns] if isinstance(columns, str) else list(columns or ())
    if language_model:
        if len(names) > 1:
            raise ValueError(f"a language model's columns name one column, its tokens (got "
                             f"{columns!r}): the targets are the next tokens")
        x, y = (names or [TOKEN_COLUMN])[0], None
    elif names:
        if len(names) != 2:
            raise ValueError(f"columns names (input, target), got {columns!r}")
        x, y = names
    else:
        x = next((c for c in (*IMAGE_COLUMNS, TOKEN_COLUMN) if c in has), None)
        y = next((c for c in LABEL_COLUMNS if c in has), None)
        if x == TOKEN_COLUMN and y is None:
            raise ValueError(f"{where}: token ids without labels; for next-token targets pass "
                             "language_model=True")
    if x is None:
        raise ValueError(f"{where}: no input column (looked for "
                         f"{', '.join((*IMAGE_COLUMNS, TOKEN_COLUMN))}); name it with "
                         "columns=(input, target)")
    if not language_model and y is None:
        raise ValueError(f"{where}: no target column (looked for {', '.join(LABEL_COLUMNS)}); "
                         "name it with columns=(input, target)")
    missing = [c for c in (x, y) if c is not None and c not in has]
    if missing:
        raise ValueError(f"{where}: no column {missing[0]!r}")
    features = getattr(ds, "features", None) or {}
    image = x in IMAGE_COLUMNS or isinstance(features.get(x), datasets.Image)
    plan = _Split(name, ds, tuple(has), x, y, image)
    _tensors(plan, first)  # the types, checked on the first batch
    return plan


def _read(plan: _Split) -> TensorData:
    xs, ys = zip(*(_tensors(plan, batch) for batch in _batches(plan.data)))
    if plan.y is None:
        lengths = sorted({t.shape[1] for t in xs})
        if len(lengths) > 1:
            raise ValueError(_ragged(plan, lengths))
    return TensorData(torch.cat(xs), torch.cat(ys))


def _ragged(plan: _Split, lengths: Sequence[int]) -> str:
    return (f"{plan.where}: rows of {plan.x!r} have different lengths ({lengths[0]} and "
            f"{lengths[1]} tokens): next-token targets need rows of one length (pack the tokens "
            "into blocks, or pad them)")


def _tensors(plan: _Split, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's inputs and targets as tensors."""
    if plan.y is None:
        ids = _tokens(plan, batch[plan.x])
        return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()
    x = _as_tensor(plan, plan.x, batch[plan.x])
    if plan.image and x.dtype == torch.uint8:
        x = x.float().div_(255)
    return x, _integers(plan, plan.y, batch[plan.y])


def _as_tensor(plan: _Split, column: str, values: Any) -> torch.Tensor:
    """A batch of one column as one tensor: PIL images as uint8 NCHW, the uint8 HWC arrays of a
    numpy format's images as NCHW, tensors and numbers as they are."""
    from PIL import Image

    if isinstance(values, list) and values and isinstance(values[0], Image.Image):
        return torch.from_numpy(pil_images(values))
    if isinstance(values, list) and values and isinstance(values[0], torch.Tensor):
        shapes = sorted({tuple(v.shape) for v in values})
        if len(shapes) > 1:
            raise ValueError(f"{plan.where}: column {column!r} holds tensors of different "
                             f"shapes ({shapes[0]} and {shapes[1]})")
        return torch.stack(values)
    if isinstance(values, torch.Tensor):
        return values
    if isinstance(values, list) and values and isinstance(values[0], np.ndarray):
        values = np.stack(values)
    if isinstance(values, np.ndarray):
        if plan.image and values.dtype == np.uint8 and values.ndim in (3, 4):
            values = values[:, None] if values.ndim == 3 else values.transpose(0, 3, 1, 2)
        if values.dtype.kind not in "biuf":
            raise TypeError(_wrong_type(plan, column, f"{values.dtype} values"))
        return torch.from_numpy(np.ascontiguousarray(values))
    if isinstance(values, list) and values and isinstance(_innermost(values), str):
        raise TypeError(_wrong_type(plan, column, "strings"))
    try:
        return torch.tensor(values)
    except (TypeError, ValueError) as exc:
        raise TypeError(_wrong_type(plan, column, f"values torch cannot stack ({exc})")) from exc


def _innermost(values: Any) -> Any:
    while isinstance(values, (list, tuple)) and values:
        values = values[0]
    return values


def _wrong_type(plan: _Split, column: str, what: str) -> str:
    return f"{plan.where}: column {column!r} holds {what}"


def _integers(plan: _Split, column: str, values: Any) -> torch.Tensor:
    """Targets (or token ids): non-negative integers, as int64."""
    t = _as_tensor(plan, column, values)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(_wrong_type(plan, column, f"{t.dtype} values; targets must be class "
                                                  "indices (integers)"))
    if t.numel() and int(t.min()) < 0:
        raise ValueError(_wrong_type(plan, column, f"negative values ({int(t.min())}); targets "
                                                   "must be >= 0 (-1 often marks unlabelled rows)"))
    return t.long()


def _tokens(plan: _Split, values: Any) -> torch.Tensor:
    """A batch of token rows as int64 (rows, length); rows of different lengths are refused."""
    rows = values if isinstance(values, list) else None
    if rows and isinstance(rows[0], (list, torch.Tensor, np.ndarray)):
        lengths = sorted({len(r) for r in rows})
        if len(lengths) > 1:
            raise ValueError(_ragged(plan, lengths))
    ids = _integers(plan, plan.x, values)
    if ids.dim() != 2 or ids.shape[1] < 2:
        raise ValueError(f"{plan.where}: column {plan.x!r} must hold rows of 2 or more "
                         f"token ids (got shape {tuple(ids.shape)})")
    return ids
