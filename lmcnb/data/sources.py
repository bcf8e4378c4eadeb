"""Where a chapter's dataset comes from: its data source.

    "default"                          the checksum-verified files under the data root
    "hub:uoft-cs/cifar10@<revision>"   a Hugging Face hub dataset at a pinned revision
    "<folder>"                         a folder written by `save_to_disk`, or holding parquet files
    "<glob>"                           parquet files, e.g. "cifar10/{split}-*.parquet"

A hub source must name its revision (a commit of the dataset's repository): the data a run trained
on is part of what the run is. Relative folders and globs are read under the data root, so every
worker finds them where it finds the default files; a folder of parquet files gets its splits from
the file names, as `datasets` infers them, a glob from ``{split}`` (without it, all its files are
"train"). Data from a source is checked against the chapter's dataset (split sizes, label range,
class names, image shape and channels; the characters or vocabulary and the size of text) and
becomes what the default files give: images normalized exactly as `load_vision` normalizes them,
so an Arrow or parquet copy of the shared files gives byte-identical tensors, the same fingerprints
and the same run ids. Text sources give the split as one string, as `load_text` does.
"""
from __future__ import annotations

import functools
import glob
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.env import data_root
from .hf import BATCH, IMAGE_COLUMNS, LABEL_COLUMNS, pil_images
from .tensors import TensorData
from .text import TEXT_SPLITS, TRAIN_FRACTION, load_text
from .vision import SPLITS, VISION_DATASETS, load_vision, normalize, vision_arrays

DEFAULT = "default"


HUB = "hub:"


TEXT_COLUMNS = ("text", "sentence", "line", "content")


# What each vision dataset is: image shape (C, H, W) and (train size, test size, classes) of every
# version lmcnb knows (Tiny ImageNet: the full set, and the 20-class subset in shared/data).
_VISION = {
    "mnist": ((1, 28, 28), ((60_000, 10_000, 10),)),
    "cifar10": ((3, 32, 32), ((50_000, 10_000, 10),)),
    "tiny_imagenet": ((3, 64, 64), ((100_000, 10_000, 200), (10_000, 1_000, 20))),
}


CLASS_NAMES = {
    "mnist": tuple(str(i) for i in range(10)),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
}


SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# Characters of Tiny Shakespeare's splits, lines of PTB's.
_TEXT_SIZES = {"shakespeare": {"train": 1_003_854, "test": 111_540},
               "ptb": {"train": 42_068, "valid": 3_370, "test": 3_761}}


PTB_WORDS = 9_999  # distinct words of PTB's training split, <unk> among them (10,000 with <eos>)


_ALIASES = {"valid": ("valid", "validation", "val")}


class SourceError(ValueError):
    """A data source that cannot be read, or whose data is not the chapter's dataset."""


@dataclass(frozen=True)
class Source:
    """A parsed data source: `kind` "default", "hub", "disk" (`save_to_disk`) or "parquet";
    `where` the hub id, or the absolute folder or glob."""

    kind: str
    where: str = ""
    revision: str | None = None


def parse_source(source: str, data_dir: str | os.PathLike | None = None) -> Source:
    """What `source` names (see the module's docstring); a hub id without a revision, a folder
    that is missing or holds no dataset are refused."""
    if not isinstance(source, str) or not source:
        raise SourceError(f"a data source is a non-empty string, got {source!r}")
    if source == DEFAULT:
        return Source(DEFAULT)
    if source.startswith(HUB):
        repo, _, revision = source[len(HUB):].partition("@")
        if not repo or not revision:
            raise SourceError(f"hub source {source!r} names no revision: write "
                              "hub:<id>@<revision> (a commit of the dataset's repository), so "
                              "that a run names the data it trained on")
        return Source("hub", repo, revision)
    path = data_root(data_dir) / Path(source).expanduser()
    if "{split}" in source or any(c in source for c in "*?["):
        return Source("parquet", str(path))
    if not path.is_dir():
        raise SourceError(f"data source {source!r}: no folder {path} (relative sources are read "
                          "under the data root). A source is 'default', 'hub:<id>@<revision>', a "
                          "folder written by save_to_disk or holding parquet files, or a glob of "
                          "parquet files")
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return Source("disk", str(path))
    if next(path.rglob("*.parquet"), None) is not None:
        return Source("parquet", str(path))
    raise SourceError(f"data source {source!r}: {path} is neither a folder written by "
                      "save_to_disk (dataset_dict.json or state.json) nor one holding parquet "
                      "files")


def load_source(source: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The splits of a source other than "default", as memory-mapped `datasets.Dataset`s."""
    import datasets

    src = parse_source(source, data_dir)
    if src.kind == DEFAULT:
        raise SourceError("'default' names lmcnb's own files, which are not a datasets source")
    try:
        if src.kind == "hub":
            loaded = datasets.load_dataset(src.where, revision=src.revision)
        elif src.kind == "disk":
            loaded = datasets.load_from_disk(src.where)
        elif Path(src.where).is_dir():
            loaded = datasets.load_dataset("parquet", data_dir=src.where)
        else:
            loaded = datasets.load_dataset("parquet", data_files=_parquet_files(src.where))
    except (ValueError, IndexError) as exc:  # what `datasets` raises for a split with no rows
        raise SourceError(f"data source {source!r}: datasets cannot read it "
                          f"({type(exc).__name__}: {exc}); is one of its splits empty?") from exc
    if isinstance(loaded, datasets.Dataset):
        loaded = {str(loaded.split or "train"): loaded}
    if not isinstance(loaded, Mapping) or not loaded:
        raise SourceError(f"data source {source!r} holds no split")
    return dict(loaded)


def _parquet_files(pattern: str) -> dict[str, list[str]]:
    """The files of a glob by split: named by its ``{split}`` part, else all "train"."""
    files = sorted(glob.glob(pattern.replace("{split}", "*"), recursive=True))
    if not files:
        raise SourceError(f"no parquet files match {pattern}")
    if "{split}" not in pattern:
        return {"train": files}
    head, _, tail = pattern.partition("{split}")
    glob_rx = [re.escape(p).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
               for p in (head, tail)]
    rx = re.compile(f"{glob_rx[0]}(?P<split>[^/]+?){glob_rx[1]}")
    out: dict[str, list[str]] = {}
    for f in files:
        m = rx.fullmatch(f)
        if m:
            out.setdefault(m["split"], []).append(f)
    return out


def _pick(splits: Mapping[str, Any], wanted: Sequence[str], source: str) -> Any:
    """The first of the `wanted` split names that the source has."""
    for name in wanted:
        if name in splits:
            return splits[name]
    raise SourceError(f"data source {source!r} has no split {wanted[0]!r} "
                      f"(it has {', '.join(splits)})")


# -- vision ------------------------------------------------------------------------------------
def vision_split(name: str, split: str, source: str = DEFAULT,
                 data_dir: str | os.PathLike | None = None) -> TensorData:
    """Split `split` of vision dataset `name` from `source`, as `load_vision` gives it (which is
    what "default" calls). Decoded once per process and cached, like `load_vision`."""
    if source == DEFAULT:
        return load_vision(name, split, data_dir)
    if name not in VISION_DATASETS or split not in SPLITS:
        raise ValueError(f"unknown dataset or split {name!r}, {split!r}; valid names: "
                         f"{', '.join(VISION_DATASETS)}; splits: {', '.join(SPLITS)}")
    return _vision(name, split, source, str(data_root(data_dir)))


@functools.cache
def _vision(name: str, split: str, source: str, root: str) -> TensorData:
    import datasets

    test = ("test", "valid", "validation", "val") if name == "tiny_imagenet" else ("test",)
    ds = _pick(load_source(source, root), ("train",) if split == "train" else test, source)
    where = f"data source {source!r}, split {split!r} (columns: {', '.join(ds.column_names)})"
    x_col = next((c for c in IMAGE_COLUMNS if c in ds.column_names), None)
    y_col = next((c for c in LABEL_COLUMNS if c in ds.column_names), None)
    if x_col is None or y_col is None:
        role, names = ("image", IMAGE_COLUMNS) if x_col is None else ("label", LABEL_COLUMNS)
        raise SourceError(f"{where}: no {role} column (one of {', '.join(names)})")
    fx, fy = ds.features[x_col], ds.features[y_col]
    if not isinstance(fx, datasets.Image):
        raise SourceError(f"{where}: column {x_col!r} holds {fx}, not images")
    if not (isinstance(fy, datasets.ClassLabel)
            or isinstance(fy, datasets.Value) and fy.dtype.startswith(("int", "uint"))):
        raise SourceError(f"{where}: column {y_col!r} holds {fy}, not class indices")
    n = len(ds)
    if n == 0:
        raise SourceError(f"{where}: the split is empty")
    images = ds.select_columns([x_col]).with_format(None)
    if not fx.decode:
        images = images.cast_column(x_col, datasets.Image())
    shape, versions = _VISION[name]
    _images(images[:1][x_col], name, shape, where)  # shape and channels, before anything is read
    k = SPLITS.index(split)
    fits = [v for v in versions if v[k] == n]
    if not fits:
        sizes = " or ".join(f"{v[k]:,}" for v in versions)
        raise SourceError(f"{where}: {n:,} examples, but {name}'s {split} split has {sizes}")
    classes = fits[0][2]
    y = np.asarray(ds.with_format("numpy", columns=[y_col])[y_col])
    if y.min() < 0 or y.max() >= classes:
        raise SourceError(f"{where}: labels run from {y.min()} to {y.max()}, but {name} has "
                          f"{classes} classes (0 to {classes - 1})")
    names = tuple(fy.names) if isinstance(fy, datasets.ClassLabel) else None
    known = CLASS_NAMES.get(name)
    if names is not None and (len(names) != classes or known and names != known):
        raise SourceError(f"{where}: its classes are {', '.join(names)}, but {name}'s are "
                          f"{', '.join(known or ()) or f'{classes} classes'}: its labels would "
                          "mean other classes")
    x = np.empty((n, *shape), dtype=np.uint8)
    for start in range(0, n, BATCH):
        x[start:start + BATCH] = _images(images[start:start + BATCH][x_col], name, shape, where)
    return TensorData(normalize(name, x), torch.from_numpy(y.astype(np.int64)),
                      names or known or tuple(str(i) for i in range(classes)))


def _images(batch: list[Any], name: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    """PIL images as uint8 NCHW of the dataset's shape (grayscale ones made RGB for an RGB
    dataset, as `load_vision` reads Tiny ImageNet's), or an error naming what they are."""
    if shape[0] == 1:
        mode = next((im.mode for im in batch if im.mode != "L"), None)
        if mode is not None:
            raise SourceError(f"{where}: {mode} images, but {name}'s are grayscale (one channel)")
    x = pil_images(batch, "L" if shape[0] == 1 else "RGB")
    if x.shape[1:] != shape:
        raise SourceError(f"{where}: images of shape {x.shape[1:]} (channels, height, width), "
                          f"but {name}'s are {shape}")
    return x


# -- text --------------------------------------------------------------------------------------
def text_split(name: str, split: str, source: str = DEFAULT,
               data_dir: str | os.PathLike | None = None) -> str:
    """Split `split` of corpus `name` from `source` as one string, as `load_text` gives it (which
    is what "default" calls).

    Rows are lines (PTB: each written as in Mikolov's files, " w1 w2 … \\n"); a split of one row
    is its text. Tiny Shakespeare's "test" is the source's "validation" and "test" together when it
    has both (the hub's tiny_shakespeare cuts input.txt 90/5/5; the chapter tests on the last 10%),
    and a source of one split is the whole of input.txt, cut 90/10 as the default file is.
    """
    if source == DEFAULT:
        return load_text(name, split, data_dir)
    if split not in TEXT_SPLITS.get(name, ()):
        raise ValueError(f"unknown text dataset or split {name!r}, {split!r}; valid: "
                         + "; ".join(f"{n}: {', '.join(s)}" for n, s in TEXT_SPLITS.items()))
    return _text(name, split, source, str(data_root(data_dir)))


@functools.cache
def _text(name: str, split: str, source: str, root: str) -> str:
    splits = load_source(source, root)
    if name == "shakespeare" and len(splits) == 1:
        text = _rows_text(next(iter(splits.values())), name, source)
        cut = int(len(text) * TRAIN_FRACTION)
        text = text[:cut] if split == "train" else text[cut:]
    elif name == "shakespeare" and split == "test":
        parts = [next((s for s in _ALIASES["valid"] if s in splits), "test"), "test"]
        text = "".join(_rows_text(_pick(splits, (p,), source), name, source)
                       for p in dict.fromkeys(parts))
    else:
        text = _rows_text(_pick(splits, _ALIASES.get(split, (split,)), source), name, source)
    _check_text(name, split, text, source, root)
    return text


def _rows_text(ds: Any, name: str, source: str) -> str:
    import datasets

    col = next((c for c in TEXT_COLUMNS if c in ds.column_names), None)
    feature = ds.features.get(col)
    if col is None or not (isinstance(feature, datasets.Value)
                           and feature.dtype in ("string", "large_string")):
        raise SourceError(f"data source {source!r}: no text column ({', '.join(TEXT_COLUMNS)}, of "
                          f"strings) among its columns {', '.join(ds.column_names)}")
    rows = ds.with_format(None)[col]
    if name == "ptb":
        return "".join(f" {line.strip()} \n" for row in rows for line in row.splitlines())
    if len(rows) == 1:
        return rows[0]
    return "".join(r if r.endswith("\n") else r + "\n" for r in rows)


def _check_text(name: str, split: str, text: str, source: str, root: str) -> None:
    where = f"data source {source!r}, split {split!r}"
    want = _TEXT_SIZES[name][split]
    if name == "shakespeare":
        unknown = sorted(set(text) - set(SHAKESPEARE_CHARS))
        if unknown:
            raise SourceError(f"{where}: characters {unknown[:10]} are not in Tiny Shakespeare's "
                              f"alphabet {SHAKESPEARE_CHARS!r}")
        if len(text) != want:
            raise SourceError(f"{where}: {len(text):,} characters, but Tiny Shakespeare's {split} "
                              f"split has {want:,}")
        return
    lines = text.count("\n")
    if lines != want:
        raise SourceError(f"{where}: {lines:,} lines, but PTB's {split} split has {want:,}")
    words = set(text.split())
    if split == "train" and (len(words) != PTB_WORDS or "<unk>" not in words):
        raise SourceError(f"{where}: {len(words):,} distinct words, but PTB's training split has "
                          f"{PTB_WORDS:,}, <unk> among them")
    if split != "train":
        unknown = sorted(words - set(_text(name, "train", source, root).split()))
        if unknown:
            raise SourceError(f"{where}: words {unknown[:10]} are not in the vocabulary of the "
                              "source's training split")


# -- copies ------------------------------------------------------------------------------------
def as_dataset(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Any:
    """Split `split` of a chapter's dataset, read from its default files, as a `datasets.Dataset`:
    ``image`` (PNG) and ``label`` (ClassLabel) columns, or ``text`` (the whole split for Tiny
    Shakespeare, one row per line for PTB). Saved with `save_to_disk` or `to_parquet` (or pushed
    to the hub), it loads back through a source as the same tensors or text."""
    import datasets
    from PIL import Image

    if name in VISION_DATASETS:
        x, y, classes = vision_arrays(name, split, data_dir)
        images = [Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)) for a in x]
        features = datasets.Features({"image": datasets.Image(),
                                      "label": datasets.ClassLabel(names=list(classes))})
        return datasets.Dataset.from_dict({"image": images, "label": y.tolist()},
                                          features=features, split=split)
    text = load_text(name, split, data_dir)
    rows = [text] if name == "shakespeare" else [line.strip() for line in text.splitlines()]
    return datasets.Dataset.from_dict({"text": rows}, split=split)
