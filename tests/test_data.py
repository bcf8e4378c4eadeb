"""Tests for lmcnb.data: data root, vision loaders, missing-data errors, downloads.

The real-data tests read the shared CIFAR-10, re-decoded from JPEG: it must have been accepted
first (``lmcnb data accept cifar10 --data-dir $LMCNB_DATA``; see tests/test_data_verify.py).
"""

import dataclasses
import hashlib
import io
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lmcnb.core.env import data_root
from lmcnb.data import vision as data
from lmcnb.data.download import DatasetMissing, fetch
from lmcnb.data.tensors import TensorData
from lmcnb.data.vision import VISION_DATASETS, load_vision, require_vision


@pytest.fixture
def tmp_cache(monkeypatch, tmp_path):
    """Verdicts on the temporary folders of a test kept out of the user's ``$LMCNB_CACHE``."""
    monkeypatch.setenv("LMCNB_CACHE", str(tmp_path / "lmcnb-cache"))


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LMCNB_DATA", raising=False)
    assert data_root() == tmp_path.resolve() / "data"
    monkeypatch.setenv("LMCNB_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path.resolve() / "env"
    assert data_root(tmp_path / "param") == tmp_path.resolve() / "param"
    assert data_root(str(tmp_path / "param")) == tmp_path.resolve() / "param"


def test_tensor_data():
    d = TensorData(torch.arange(10.0).view(5, 2), torch.arange(5), ("a", "b"))
    assert len(d) == 5
    x, y = d.batch(torch.tensor([4, 1]))
    assert x.tolist() == [[8.0, 9.0], [2.0, 3.0]] and y.tolist() == [4, 1]
    d2 = d.to("cpu")
    assert d2 is not d and d2.classes == ("a", "b") and torch.equal(d2.x, d.x)


@pytest.mark.parametrize(
    "name, split, shape, n_classes",
    [
        ("mnist", "train", (60000, 1, 28, 28), 10),
        ("mnist", "test", (10000, 1, 28, 28), 10),
        ("cifar10", "train", (50000, 3, 32, 32), 10),
        ("cifar10", "test", (10000, 3, 32, 32), 10),
        ("tiny_imagenet", "train", None, None),
        ("tiny_imagenet", "test", None, None),
    ],
)
def test_load_real(data_dir, name, split, shape, n_classes):
    d = load_vision(name, split, data_dir, download=False)
    if name == "tiny_imagenet":  # full set (200 classes) or the 20-class subset
        folder = require_vision(name, data_dir)
        n_classes = 20 if folder.name.endswith("sub20") else 200
        shape = ((500 if split == "train" else 50) * n_classes, 3, 64, 64)
        assert d.classes == tuple((folder / "wnids.txt").read_text().split())  # file order
    assert d.x.shape == shape and d.x.dtype == torch.float32 and d.x.is_contiguous()
    assert d.y.shape == (shape[0],) and d.y.dtype == torch.int64
    assert len(d.classes) == n_classes
    assert torch.bincount(d.y, minlength=n_classes).min() > 0 and d.y.max() == n_classes - 1
    mean = d.x.mean(dim=(0, 2, 3))
    std = d.x.std(dim=(0, 2, 3))
    tol = 0.05 if name != "tiny_imagenet" else 0.3  # ImageNet stats on a Tiny ImageNet (subset)
    assert mean.abs().max() < tol, mean
    assert (std - 1).abs().max() < 2 * tol, std
    assert load_vision(name, split, data_dir) is d  # decoded once per process


def test_cifar_classes(data_dir):
    assert (load_vision("cifar10", "test", data_dir).classes[:3]
            == ("airplane", "automobile", "bird"))


@pytest.mark.parametrize("name, expected", [("mnist", "train-images-idx3-ubyte.gz"),
                                            ("cifar10", "data_batch_1"),
                                            ("tiny_imagenet", "wnids.txt")])
def test_missing_no_download(tmp_path, name, expected):
    for call in (require_vision, lambda n, d, download: load_vision(n, "train", d, download)):
        with pytest.raises(DatasetMissing) as err:
            call(name, tmp_path, download=False)
        msg = str(err.value)
        assert repr(name) in msg and expected in msg
        assert str(tmp_path.resolve() / data._SOURCES[name].folders[0]) in msg


@pytest.mark.parametrize("name", VISION_DATASETS)
def test_missing_offline(tmp_path, monkeypatch, name):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DatasetMissing, match="download failed") as err:
        require_vision(name, tmp_path)
    assert isinstance(err.value.__cause__, urllib.error.URLError)
    assert repr(name) in str(err.value) and str(tmp_path.resolve()) in str(err.value)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # no temp file left behind


def test_unknown_name_or_split():
    with pytest.raises(ValueError, match="mnist, cifar10, tiny_imagenet"):
        load_vision("imagenet", "train")
    with pytest.raises(ValueError, match="mnist, cifar10, tiny_imagenet"):
        require_vision("svhn")
    with pytest.raises(ValueError, match="train, test"):
        load_vision("mnist", "val")


@pytest.fixture
def blob(tmp_path):
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir()
    src.write_bytes(np.random.default_rng(0).bytes(3_000_000))
    return src


def test_fetch_ok(tmp_path, blob):
    dest = tmp_path / "out" / "blob.bin"
    content = blob.read_bytes()
    md5, sha = hashlib.md5(content).hexdigest(), hashlib.sha256(content).hexdigest()
    assert fetch(blob.as_uri(), dest, md5=md5, sha256=sha) == dest
    assert dest.read_bytes() == content
    assert list(dest.parent.iterdir()) == [dest]


@pytest.mark.parametrize("which", ["md5", "sha256"])
def test_fetch_bad_checksum(tmp_path, blob, which):
    content = blob.read_bytes()
    sums = {"md5": hashlib.md5(content).hexdigest(), "sha256": hashlib.sha256(content).hexdigest()}
    good = sums[which]
    sums[which] = "0" * len(good)
    dest = tmp_path / "out" / "blob.bin"
    with pytest.raises(ValueError, match=f"{which} mismatch.*expected 0+, got {good}"):
        fetch(blob.as_uri(), dest, **sums)
    assert not dest.parent.exists()  # nor the folder made for it


def test_a_failed_download_leaves_no_empty_folders(tmp_path):
    """A folder that held something before is kept; the ones made for the download go."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "other").write_text("kept")
    with pytest.raises(OSError):
        fetch((tmp_path / "absent").as_uri(), tmp_path / "data" / "mnist" / "raw" / "f.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["other"]


@pytest.mark.usefixtures("tmp_cache")
def test_download_mnist_from_file_url(tmp_path, monkeypatch, data_dir):
    """The per-file download path, with the real MNIST files and the official md5s."""
    src = dataclasses.replace(data._SOURCES["mnist"],
                              url=(data_dir / "mnist").resolve().as_uri() + "/")
    monkeypatch.setitem(data._SOURCES, "mnist", src)
    folder = require_vision("mnist", tmp_path)
    assert folder == tmp_path.resolve() / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(src.files)


def _jpeg(path: Path, value: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (64, 64), value if mode == "L" else (value,) * 3).save(path)


def _fake_tiny(folder: Path) -> None:
    """Two classes: n0 black, n1 white; one grayscale image; val labels interleaved."""
    wnids = ("n1", "n0")  # labels follow wnids.txt order, not sorted order
    (folder / "val").mkdir(parents=True)
    (folder / "wnids.txt").write_text("".join(w + "\n" for w in wnids))
    for w in wnids:
        for i in range(3):
            _jpeg(folder / "train" / w / "images" / f"{w}_{i}.JPEG", 255 * (w == "n1"),
                  "L" if i == 0 else "RGB")
    rows = [f"val_{k}.JPEG\t{'n1' if k % 2 else 'n0'}\t0\t0\t63\t63\n" for k in range(4)]
    (folder / "val" / "val_annotations.txt").write_text("".join(rows))
    for k in range(4):
        _jpeg(folder / "val" / "images" / f"val_{k}.JPEG", 255 * (k % 2))


@pytest.mark.usefixtures("tmp_cache")
def test_tiny_layout_and_preference(tmp_path, data_dir):
    sub = tmp_path / "tiny-imagenet-200-sub20"
    sub.symlink_to((data_dir / "tiny-imagenet-200-sub20").resolve())
    full = tmp_path / "tiny-imagenet-200"
    _fake_tiny(full)
    assert require_vision("tiny_imagenet", tmp_path, download=False) == full
    tr = load_vision("tiny_imagenet", "train", tmp_path)
    assert tr.x.shape == (6, 3, 64, 64) and tr.classes == ("n1", "n0")
    assert tr.y.tolist() == [0, 0, 0, 1, 1, 1]
    # white = n1 = label 0
    assert torch.equal(tr.x[:, 0] > 0, tr.y.view(-1, 1, 1).eq(0).expand(-1, 64, 64))
    te = load_vision("tiny_imagenet", "test", tmp_path)
    assert te.y.tolist() == [1, 0, 1, 0]
    assert (te.x[te.y == 0] > 0).all() and (te.x[te.y == 1] < 0).all()
    # incomplete: use the subset
    (full / "train" / "n0" / "images").rename(full / "train" / "n0" / "gone")
    assert require_vision("tiny_imagenet", tmp_path, download=False) == sub


def _archive_source(monkeypatch, tmp_path, name: str, build) -> Path:
    buf = io.BytesIO()
    build(buf)
    archive = tmp_path / "server" / data._SOURCES[name].url.rsplit("/", 1)[1]
    archive.parent.mkdir()
    archive.write_bytes(buf.getvalue())
    md5 = hashlib.md5(buf.getvalue()).hexdigest()
    monkeypatch.setitem(data._SOURCES, name,
                        dataclasses.replace(data._SOURCES[name], url=archive.as_uri(), md5=md5))
    return tmp_path / "root"


@pytest.mark.usefixtures("tmp_cache")
def test_download_extracts_tar(tmp_path, monkeypatch):
    def build(buf):
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for f in data._SOURCES["cifar10"].files:
                info = tarfile.TarInfo(f"cifar-10-batches-py/{f}")
                tf.addfile(info, io.BytesIO(b""))

    root = _archive_source(monkeypatch, tmp_path, "cifar10", build)
    empty = (hashlib.md5(b"").hexdigest(),) * 7  # the unpacked files are verified too
    src = dataclasses.replace(data._SOURCES["cifar10"], members_md5=empty)
    monkeypatch.setitem(data._SOURCES, "cifar10", src)
    assert require_vision("cifar10", root) == root.resolve() / "cifar10" / "cifar-10-batches-py"
    # archive removed
    assert sorted(p.name for p in (root / "cifar10").iterdir()) == ["cifar-10-batches-py"]


@pytest.mark.usefixtures("tmp_cache")
def test_download_extracts_zip(tmp_path, monkeypatch):
    _fake_tiny(tmp_path / "staging" / "tiny-imagenet-200")

    def build(buf):
        with zipfile.ZipFile(buf, "w") as zf:
            for p in sorted((tmp_path / "staging").rglob("*")):
                zf.write(p, p.relative_to(tmp_path / "staging"))

    root = _archive_source(monkeypatch, tmp_path, "tiny_imagenet", build)
    assert require_vision("tiny_imagenet", root) == root.resolve() / "tiny-imagenet-200"
    assert sorted(p.name for p in root.iterdir()) == ["tiny-imagenet-200"]
    assert len(load_vision("tiny_imagenet", "test", root)) == 4


def test_validation_split_is_carved_from_train_disjoint_and_fixed(data_dir):
    from lmcnb.core.ref import Ref
    from lmcnb.data.tensors import TensorData, carve
    from lmcnb.experiments.catalog import build

    data = TensorData(torch.arange(100).float()[:, None], torch.arange(100))
    parts = carve(data, 0.1)
    assert len(parts["val"]) == 10 and len(parts["train"]) == 90
    assert set(parts["val"].y.tolist()).isdisjoint(parts["train"].y.tolist())
    assert sorted(parts["val"].y.tolist() + parts["train"].y.tolist()) == list(range(100))
    assert parts["train"].y.tolist() == sorted(parts["train"].y.tolist())  # order kept
    assert carve(data, 0.1)["val"].y.tolist() == parts["val"].y.tolist()  # same every time
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        carve(data, 1.5)
    root = data_dir
    train = build(Ref.of("data", "vision", name="mnist", split="train", holdout=0.2), root)
    val = build(Ref.of("data", "vision", name="mnist", split="val", holdout=0.2), root)
    full = build(Ref.of("data", "vision", name="mnist", split="train"), root)
    assert len(train) + len(val) == len(full) and len(val) == round(0.2 * len(full))
    with pytest.raises(ValueError, match="give holdout"):
        build(Ref.of("data", "vision", name="mnist", split="val"), root)
    with pytest.raises(ValueError, match="holdout carves the training split"):
        build(Ref.of("data", "vision", name="mnist", split="test", holdout=0.2), root)
