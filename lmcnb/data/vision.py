"""Vision datasets as in-memory tensors, verified in place or downloaded.

Files live under a data root (:func:`lmcnb.core.env.data_root`) in the layout of the official
archives::

    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    tiny-imagenet-200/        (or the 20-class subset tiny-imagenet-200-sub20/)
        wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG, val/val_annotations.txt

Files already in place are verified against their known checksums (:mod:`lmcnb.data.verify`);
CIFAR-10's pickles load through an unpickler that admits NumPy arrays and plain containers only.
"""
from __future__ import annotations

import functools
import gzip
import os
import pickle
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.env import data_root, offline
from .download import DatasetMissing, fetch
from .tensors import TensorData
from .verify import DataFileError, DataFiles, Known, check

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


@dataclass(frozen=True)
class _Source:
    """Where a dataset's files live (relative to the root) and where to get them."""

    folders: tuple[str, ...]  # candidate folders holding `files`, preferred first
    files: tuple[str, ...]  # relative to the folder
    url: str  # single archive, or base address of per-file downloads
    md5: str | tuple[str, ...]  # archive md5, or one per file
    extract_to: str = ""  # archives only: folder (relative to the root) to unpack into
    members_md5: tuple[str, ...] = ()  # archives only: md5 of each of `files` as unpacked


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
        members_md5=(
            "c99cafc152244af753f735de768cd75f",
            "d4bba439e000b95fd0a9bffe97cbabec",
            "54ebc095f3ab1f0389bbae665268c751",
            "634d18415352ddfa80567beed471001a",
            "482c414d41f54cd18b22e5b47cb7c3cb",
            "40351d587109b95175f43aff81a1287e",
            "5ff9c542aee3614f3951f8cda6e48888",
        ),
    ),
    "tiny_imagenet": _Source(
        folders=("tiny-imagenet-200", "tiny-imagenet-200-sub20"),
        files=("wnids.txt", "train", "val/images", "val/val_annotations.txt"),
        url="http://cs231n.stanford.edu/tiny-imagenet-200.zip",
        md5="90528d7ca1a48142e341f4ef8d21d0de",
        extract_to=".",
    ),
}


_MANIFEST = "MANIFEST.sha256"  # Tiny ImageNet: sha256sum-format checksums of a folder's files


_SUB20_MANIFEST_SHA256 = "738bc5805b12ce5dc17dc4841d40de5c1f20fb366d212dc6882e593c4d5254b8"


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


def _how_to_get(name: str, root: Path) -> str:
    src = _SOURCES[name]
    if src.extract_to:
        return f"Download {src.url} (md5 {src.md5}) and extract it into {root / src.extract_to}."
    return f"Download the files from {src.url}"


def _missing_error(name: str, root: Path, reason: str) -> DatasetMissing:
    src = _SOURCES[name]
    folder = root / src.folders[0]
    files = "\n".join(f"  {f}" for f in src.files)
    if name == "tiny_imagenet":
        files += "\n  train/<wnid>/images/*.JPEG  (one folder per line of wnids.txt)"
    alt = "".join(f" (or in {root / f})" for f in src.folders[1:])
    return DatasetMissing(
        f"dataset {name!r} not found ({reason}).\n"
        f"Expected these files in {folder}:{alt}\n{files}\n"
        f"{_how_to_get(name, root)}\n"
        "Or point to another data folder with data_dir=... or $LMCNB_DATA."
    )


def _manifest(folder: Path) -> dict[str, Known | None]:
    """Checksums from a Tiny ImageNet folder's MANIFEST.sha256, and None for each training image
    it does not list. The 20-class subset's manifest has a known sha256; any other must be
    accepted (see `lmcnb.data.cli.accept`)."""
    path = folder / _MANIFEST
    own = _SUB20_MANIFEST_SHA256 if folder.name == "tiny-imagenet-200-sub20" else None
    known: dict[str, Known | None] = {
        _MANIFEST: own and Known("sha256", own, "the subset's published checksum")}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataFileError(f"{path}: not a sha256sum listing ({exc})") from exc
    for n, line in enumerate(lines, 1):
        digest, _, rel = line.partition(" ")
        rel = rel[1:]  # sha256sum writes "<digest>  <file>", or "<digest> *<file>"
        if len(digest) != 64 or not rel or rel.startswith("/") or ".." in rel.split("/"):
            raise DataFileError(f"{path}, line {n}: not a sha256sum line: {line!r}")
        known[rel] = Known("sha256", digest.lower(), _MANIFEST)
    for wnid in (folder / "wnids.txt").read_text().split():
        images = f"train/{wnid}/images"
        for f in os.listdir(folder / images):
            if f.endswith(".JPEG"):  # what the decoder reads
                known.setdefault(f"{images}/{f}", None)
    return known


def vision_files(name: str, data_dir: str | os.PathLike | None = None) -> DataFiles:
    """Dataset `name`'s files in place and the checksums known for them (no download).

    MNIST and CIFAR-10: the official md5 of each file. Tiny ImageNet: its folder's
    ``MANIFEST.sha256`` if it has one (the 20-class subset does), else none (structural
    check only). Raises ``DatasetMissing`` if the files are not in place.
    """
    _check_name(name)
    root = data_root(data_dir)
    folder = _find(name, root)
    if folder is None:
        raise _missing_error(name, root, "not in place")
    src = _SOURCES[name]
    if name == "tiny_imagenet":
        known = _manifest(folder) if (folder / _MANIFEST).is_file() else {}
    else:
        md5s = src.members_md5 if src.extract_to else src.md5
        known = {f: Known("md5", m, "the official checksum") for f, m in zip(src.files, md5s)}
    return DataFiles(name, root, folder, known, _how_to_get(name, root))


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


def require_vision(name: str, data_dir: str | os.PathLike | None = None,
                   download: bool = True) -> Path:
    """The folder holding dataset ``name``'s files, downloading them if absent.

    Checks that the files exist and match their known checksums or an acceptance
    (:mod:`lmcnb.data.verify`; cached, so a second call reads no data), without decoding, so
    notebooks can fail fast. Tiny ImageNet uses ``tiny-imagenet-200/`` if complete, else
    ``tiny-imagenet-200-sub20/``. Raises ``DatasetMissing`` if the files are absent and cannot
    be downloaded (setting ``$LMCNB_OFFLINE`` turns downloads off), ``DataFileError`` naming
    the files that fail verification.
    """
    _check_name(name)
    root = data_root(data_dir)
    if not _find(name, root):
        if not download or offline():
            raise _missing_error(name, root, "downloads are off (download=False or $LMCNB_OFFLINE)")
        try:
            _download(name, root)
        except OSError as e:
            raise _missing_error(name, root, f"download failed: {e}") from e
        if not _find(name, root):
            raise _missing_error(name, root, "files still missing after download")
    files = vision_files(name, root)
    check(files)
    return files.folder


def _damaged(name: str, path: Path, problem: str) -> DataFileError:
    return DataFileError(f"{path}: {problem}. The file is damaged: replace it "
                         f"(canonical source: {_SOURCES[name].url}).")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX (gzip) file as a uint8 array of its stated shape."""
    try:
        buf = gzip.decompress(path.read_bytes())
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _damaged("mnist", path, f"not a complete gzip file ({exc})") from exc
    ndim = magic & 0xFF
    start = 4 * (1 + ndim)
    if len(buf) < start:
        raise _damaged("mnist", path, f"{len(buf)} bytes, fewer than an IDX header's {start}")
    header = np.frombuffer(buf, dtype=">u4", count=1 + ndim)
    if header[0] != magic:
        raise _damaged("mnist", path, f"bad IDX magic {header[0]}, expected {magic}")
    need = start + int(np.prod(header[1:], dtype=np.int64))
    if len(buf) != need:
        raise _damaged("mnist", path, f"{len(buf)} bytes uncompressed, but its header's shape "
                                      f"{tuple(int(n) for n in header[1:])} needs {need}")
    return np.frombuffer(buf, dtype=np.uint8, offset=start).reshape(header[1:])


def _mnist(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    prefix = "train" if split == "train" else "t10k"
    images, labels = (folder / f"{prefix}-{k}-ubyte.gz" for k in ("images-idx3", "labels-idx1"))
    x, y = _read_idx(images, 2051)[:, None], _read_idx(labels, 2049)
    if len(x) != len(y) or y.max(initial=0) > 9:
        raise _damaged("mnist", labels, f"{len(y)} labels (max {y.max(initial=0)}) for "
                                        f"{len(x)} images in {images.name}")
    return x, y, tuple(str(i) for i in range(10))


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only: any other global is refused, so no code
    named by the data can run."""

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    })

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only NumPy arrays and "
                                         "plain containers are allowed")
        return super().find_class(module, name)


def _unpickle(path: Path) -> object:
    with open(path, "rb") as f:
        try:
            return _ArrayUnpickler(f, encoding="bytes").load()
        except Exception as exc:  # any failure to unpickle these bytes means a damaged file
            raise _damaged("cifar10", path, f"not a CIFAR-10 pickle ({exc})") from exc


def _cifar10(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    meta = _unpickle(folder / "batches.meta")
    classes = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not (isinstance(classes, list) and len(classes) == 10
            and all(isinstance(c, bytes) for c in classes)):
        raise _damaged("cifar10", folder / "batches.meta", "no list of 10 b'label_names'")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for n in names:
        batch = _unpickle(folder / n)
        x, y = (batch.get(k) if isinstance(batch, dict) else None for k in (b"data", b"labels"))
        if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2
                and x.shape[1] == 3072 and isinstance(y, list) and len(y) == len(x)
                and all(type(v) is int and 0 <= v < 10 for v in y)):
            raise _damaged("cifar10", folder / n, "not a CIFAR-10 batch (b'data': uint8 N x 3072, "
                                                  "b'labels': N ints in 0..9)")
        xs.append(x)
        ys.append(np.asarray(y))
    x = np.concatenate(xs).reshape(-1, 3, 32, 32)
    return x, np.concatenate(ys), tuple(c.decode() for c in classes)


def _tiny_imagenet(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    wnids = tuple((folder / "wnids.txt").read_text().split())
    label = {w: i for i, w in enumerate(wnids)}
    if split == "train":
        items = [(p, i) for i, w in enumerate(wnids)
                 for p in sorted((folder / "train" / w / "images").glob("*.JPEG"))]
    else:
        rows = (line.split("\t")
                for line in (folder / "val" / "val_annotations.txt").read_text().splitlines())
        items = [(folder / "val" / "images" / r[0], label[r[1]]) for r in rows if r[0]]
    x = np.empty((len(items), 64, 64, 3), dtype=np.uint8)
    for k, (path, _) in enumerate(items):
        try:
            with Image.open(path) as im:
                x[k] = np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
            raise _damaged("tiny_imagenet", path, f"not a 64x64 image ({exc})") from exc
    y = np.array([i for _, i in items])
    return x.transpose(0, 3, 1, 2), y, wnids


_DECODERS = {"mnist": _mnist, "cifar10": _cifar10, "tiny_imagenet": _tiny_imagenet}


def normalize(name: str, x: np.ndarray) -> torch.Tensor:
    """uint8 NCHW images of dataset `name` as `load_vision` gives them: float32, scaled to [0, 1],
    then normalized with the dataset's per-channel ``MEAN``/``STD``."""
    mean = torch.tensor(MEAN[name]).view(-1, 1, 1)
    std = torch.tensor(STD[name]).view(-1, 1, 1)
    return (torch.from_numpy(np.require(x, requirements=["C", "W"]))
            .float().div_(255).sub_(mean).div_(std))


def vision_arrays(name: str, split: str, data_dir: str | os.PathLike | None = None,
                  download: bool = True) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Split `split` of dataset `name` as decoded from its verified files, not normalized: uint8
    NCHW images, integer labels and the class names (not cached)."""
    _check_name(name, split)
    return _DECODERS[name](require_vision(name, data_dir, download), split)


@functools.cache
def _load(name: str, split: str, folder: Path) -> TensorData:
    x, y, classes = _DECODERS[name](folder, split)
    return TensorData(normalize(name, x), torch.from_numpy(y.astype(np.int64)), classes)


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
