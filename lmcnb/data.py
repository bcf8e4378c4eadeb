"""Vision datasets as in-memory tensors, the data root, and verified downloads.

Files live under a data root (:func:`data_root`) in the layout of the official
archives::

    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    tiny-imagenet-200/        (or the 20-class subset tiny-imagenet-200-sub20/)
        wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

VISION_DATASETS = ("mnist", "cifar10", "tiny_imagenet")
SPLITS = ("train", "test")

# Per-channel normalization constants (0-1 pixel scale).
MEAN = {
    "mnist": (0.1307,),
    "cifar10": (0.4914, 0.4822, 0.4465),
    "tiny_imagenet": (0.485, 0.456, 0.406),
}
STD = {
    "mnist": (0.3081,),
    "cifar10": (0.2470, 0.2435, 0.2616),
    "tiny_imagenet": (0.229, 0.224, 0.225),
}


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder (absolute): ``data_dir``, else ``$LMCNB_DATA``, else ``./data``."""
    if data_dir is None:
        data_dir = os.environ.get("LMCNB_DATA") or "data"
    return Path(data_dir).expanduser().resolve()


class DatasetMissing(FileNotFoundError):
    """A dataset's files are absent and could not be downloaded."""


@dataclass
class TensorData:
    """Inputs ``x`` and targets ``y`` held as whole tensors, indexed along dim 0."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The examples at positions ``idx``."""
        return self.x[idx], self.y[idx]

    def fingerprint(self) -> str:
        """A short hash of the shapes and of an evenly strided sample of the values."""
        h = hashlib.sha256()
        for t in (self.x, self.y):
            flat = t.detach().reshape(-1)
            sample = flat[:: max(1, flat.numel() // 65536)].cpu().contiguous()
            h.update(f"{tuple(t.shape)}{t.dtype}".encode())
            h.update(sample.numpy().tobytes())
        return h.hexdigest()[:12]

    def to(self, device: torch.device | str) -> TensorData:
        """A copy with ``x`` and ``y`` on ``device``."""
        return dataclasses.replace(self, x=self.x.to(device), y=self.y.to(device))


@dataclass(frozen=True)
class _Source:
    """Where a dataset's files live (relative to the root) and where to get them."""

    folders: tuple[str, ...]  # candidate folders holding `files`, preferred first
    files: tuple[str, ...]  # relative to the folder
    url: str  # single archive, or base address of per-file downloads
    md5: str | tuple[str, ...]  # archive md5, or one per file
    extract_to: str = ""  # archives only: folder (relative to the root) to unpack into


_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_SOURCES = {
    "mnist": _Source(
        folders=("mnist",),
        files=_MNIST_FILES,
        url="https://ossci-datasets.s3.amazonaws.com/mnist/",
        md5=(
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "d53e105ee54ea40749a09fcbcd1e9432",
            "9fb629c4189551a2d022fa330f9573f3",
            "ec29112dd5afa0611ce80d1b7f02629c",
        ),
    ),
    "cifar10": _Source(
        folders=("cifar10/cifar-10-batches-py",),
        files=(*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"),
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        extract_to="cifar10",
    ),
    "tiny_imagenet": _Source(
        folders=("tiny-imagenet-200", "tiny-imagenet-200-sub20"),
        files=("wnids.txt", "train", "val/images", "val/val_annotations.txt"),
        url="http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        md5="90528d7ca1a48142e341f4ef8d21d0de",
        extract_to=".",
    ),
}


def _check_name(name: str, split: str = "train") -> None:
    if name not in VISION_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(VISION_DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")


def _complete(name: str, folder: Path) -> bool:
    """Whether ``folder`` holds all of the dataset's files (stat only, no decoding)."""
    if not all((folder / f).exists() for f in _SOURCES[name].files):
        return False
    if name == "tiny_imagenet":
        wnids = (folder / "wnids.txt").read_text().split()
        return all((folder / "train" / w / "images").is_dir() for w in wnids)
    return True


def _find(name: str, root: Path) -> Path | None:
    """The first candidate folder holding all of the dataset's files, if any."""
    return next((root / f for f in _SOURCES[name].folders if _complete(name, root / f)), None)


def _missing_error(name: str, root: Path, reason: str) -> DatasetMissing:
    src = _SOURCES[name]
    folder = root / src.folders[0]
    files = "\n".join(f"  {f}" for f in src.files)
    if name == "tiny_imagenet":
        files += "\n  train/<wnid>/images/*.JPEG  (one folder per line of wnids.txt)"
    alt = "".join(f" (or in {root / f})" for f in src.folders[1:])
    if src.extract_to:
        how = f"Download {src.url} (md5 {src.md5}) and extract it into {root / src.extract_to}."
    else:
        how = f"Download the files from {src.url}"
    return DatasetMissing(
        f"dataset {name!r} not found ({reason}).\n"
        f"Expected these files in {folder}:{alt}\n{files}\n"
        f"{how}\nOr point to another data folder with data_dir=... or $LMCNB_DATA."
    )


def fetch(url: str, dest: Path, md5: str | None = None, sha256: str | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying the given checksums.

    The data goes to a temporary file next to ``dest``; it is renamed into place only
    if every given checksum matches, and deleted otherwise (``ValueError``).
    Network failures propagate as ``OSError`` (``urllib.error.URLError``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    hashes = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                for h in hashes.values():
                    h.update(chunk)
        for algo, expected in (("md5", md5), ("sha256", sha256)):
            got = hashes[algo].hexdigest()
            if expected is not None and got != expected.lower():
                raise ValueError(f"{algo} mismatch for {url}: expected {expected}, got {got}")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _download(name: str, root: Path) -> None:
    src = _SOURCES[name]
    if not src.extract_to:
        folder = root / src.folders[0]
        for file, md5 in zip(src.files, src.md5):
            if not (folder / file).exists():
                fetch(src.url + file, folder / file, md5=md5)
        return
    archive = root / src.extract_to / src.url.rsplit("/", 1)[1]
    if not archive.exists():
        fetch(src.url, archive, md5=src.md5)
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(root / src.extract_to)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(root / src.extract_to, filter="data")
    archive.unlink()


def require_vision(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder holding dataset ``name``'s files, downloading them if absent.

    Only checks that the files exist (no decoding), so notebooks can fail fast.
    Tiny ImageNet uses ``tiny-imagenet-200/`` if complete, else ``tiny-imagenet-200-sub20/``.
    Raises ``DatasetMissing`` if the files are absent and cannot be downloaded; setting
    ``$LMCNB_OFFLINE`` turns downloads off.
    """
    _check_name(name)
    root = data_root(data_dir)
    if folder := _find(name, root):
        return folder
    if not download or os.environ.get("LMCNB_OFFLINE"):
        raise _missing_error(name, root, "downloads are off (download=False or $LMCNB_OFFLINE)")
    try:
        _download(name, root)
    except OSError as e:
        raise _missing_error(name, root, f"download failed: {e}") from e
    if folder := _find(name, root):
        return folder
    raise _missing_error(name, root, "files still missing after download")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX (gzip) file as a uint8 array of its stated shape."""
    buf = gzip.decompress(path.read_bytes())
    ndim = magic & 0xFF
    header = np.frombuffer(buf, dtype=">u4", count=1 + ndim)
    if header[0] != magic:
        raise ValueError(f"{path}: bad IDX magic {header[0]}, expected {magic}")
    return np.frombuffer(buf, dtype=np.uint8, offset=4 * (1 + ndim)).reshape(header[1:])


def _mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    prefix = "train" if split == "train" else "t10k"
    x = _read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 2051)[:, None]
    y = _read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 2049)
    return x, y, tuple(str(i) for i in range(10))


def _cifar10(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = []
    for n in names:
        with open(folder / n, "rb") as f:
            batches.append(pickle.load(f, encoding="bytes"))
    with open(folder / "batches.meta", "rb") as f:
        classes = tuple(c.decode() for c in pickle.load(f, encoding="bytes")[b"label_names"])
    x = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
    y = np.concatenate([np.asarray(b[b"labels"]) for b in batches])
    return x, y, classes


def _tiny_imagenet(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    wnids = tuple((folder / "wnids.txt").read_text().split())
    label = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        items = [(p, i) for i, w in enumerate(wnids) for p in sorted((folder / "train" / w / "images").glob("*.JPEG"))]
    else:
        rows = (line.split("\t") for line in (folder / "val" / "val_annotations.txt").read_text().splitlines())
        items = [(folder / "val" / "images" / r[0], label[r[1]]) for r in rows if r[0]]
    x = np.empty((len(items), 64, 64, 3), dtype=np.uint8)
    for k, (path, _) in enumerate(items):
        with Image.open(path) as im:
            x[k] = np.asarray(im.convert("RGB"))
    y = np.array([i for _, i in items])
    return x.transpose(0, 3, 1, 2), y, wnids


_DECODERS = {"mnist": _mnist, "cifar10": _cifar10, "tiny_imagenet": _tiny_imagenet}


@functools.lru_cache(maxsize=None)
def _load(name: str, split: str, folder: Path) -> TensorData:
    x, y, classes = _DECODERS[name](folder, split)
    mean = torch.tensor(MEAN[name]).view(-1, 1, 1)
    std = torch.tensor(STD[name]).view(-1, 1, 1)
    xt = torch.from_numpy(np.require(x, requirements=["C", "W"])).float().div_(255).sub_(mean).div_(std)
    return TensorData(xt, torch.from_numpy(y.astype(np.int64)), classes)


def load_vision(
    name: str, split: str, data_dir: str | os.PathLike | None = None, download: bool = True
) -> TensorData:
    """Dataset ``name`` ("mnist", "cifar10", "tiny_imagenet"), split "train" or "test".

    Returns float32 NCHW images normalized with the dataset's per-channel ``MEAN``/``STD``
    and int64 labels. Tiny ImageNet's "test" is the official labelled ``val/`` set.
    Decoded once per process and cached: the tensors are shared, don't modify them in place.
    """
    _check_name(name, split)
    folder = require_vision(name, data_dir, download)
    return _load(name, split, folder)
