"""Data files in place are verified, accepted explicitly, and decoded without running code.

Each test damages a copy of the shared data in a temporary folder (files it leaves intact are
linked, not copied) and asserts a clear error naming the file, or the exact recovery.
"""
import gzip
import hashlib
import json
import os
import pickle
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lmcnb.data import cli, text, verify
from lmcnb.data import vision as data
from lmcnb.data.verify import DataFileError
from lmcnb.data.vision import load_vision, require_vision

CIFAR = "cifar10/cifar-10-batches-py"


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lmcnb-cache")


@pytest.fixture(autouse=True)
def cache(monkeypatch, module_cache) -> Path:
    """``$LMCNB_CACHE`` in a temporary folder, never the user's. Shared by this module's tests:
    digests are keyed by file and acceptances by folder, and each test has its own folders."""
    monkeypatch.setenv("LMCNB_CACHE", str(module_cache))
    return module_cache


def place(data_dir: Path, root: Path, folder: str, copy: set[str] = frozenset()) -> Path:
    """`folder` of the shared data mirrored under `root`: the files in `copy` copied (to be
    damaged), the others linked. Returns the mirror (resolved, as the loaders name it)."""
    src, dest = data_dir / folder, root.resolve() / folder
    dest.mkdir(parents=True)
    for f in os.listdir(src):
        if f in copy:
            shutil.copyfile(src / f, dest / f)
        else:
            (dest / f).symlink_to((src / f).resolve())
    return dest


def digest(path: Path, algo: str) -> str:
    return hashlib.new(algo, path.read_bytes()).hexdigest()


def accept_command(name: str, root: Path) -> str:
    return f"lmcnb data accept {name} --data-dir {shlex.quote(str(root.resolve()))}"


# -- no code runs from data --------------------------------------------------------------------
class _Payload:
    """Pickles as the call ``func(arg)``: what a malicious ``batches.meta`` carries."""

    def __init__(self, func, arg: str):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


PAYLOADS = {
    "os.system": lambda marker: _Payload(os.system, f"touch {shlex.quote(str(marker))}"),
    "builtins.exec": lambda marker: _Payload(exec, f"open({str(marker)!r}, 'w').close()"),
}


@pytest.mark.parametrize("kind", PAYLOADS)
def test_crafted_meta_runs_no_code(tmp_path, data_dir, kind):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(PAYLOADS[kind](control), protocol=2))
    assert control.exists()  # the payload is live: plain pickle runs it

    root, marker = tmp_path / "data", tmp_path / "marker"
    folder = place(data_dir, root, CIFAR, copy={"batches.meta"})
    meta = folder / "batches.meta"
    meta.write_bytes(pickle.dumps({b"label_names": PAYLOADS[kind](marker)}, protocol=2))
    with pytest.raises(DataFileError) as err:  # it fails its checksum before anything is decoded
        require_vision("cifar10", root)
    assert f"{meta}: expected md5 5ff9c542aee3614f3951f8cda6e48888" in str(err.value)

    cli.accept("cifar10", root, reason="even accepted, its code must not run")
    with pytest.raises(DataFileError) as err:
        load_vision("cifar10", "test", root)
    assert str(meta) in str(err.value) and "refused global" in str(err.value)
    assert not marker.exists()


def test_shared_cifar_decodes_through_restricted_unpickler(data_dir):
    x, y, classes = data._cifar10(data_dir / CIFAR, "test")
    assert x.shape == (10000, 3, 32, 32) and x.dtype == np.uint8
    assert classes[:3] == ("airplane", "automobile", "bird")
    assert np.bincount(y).tolist() == [1000] * 10  # shared/data/README.md


@pytest.mark.parametrize("protocol", [3, 4])
def test_restricted_unpickler_reads_numpy_pickles(tmp_path, protocol):
    """Batches pickled by this NumPy (``numpy._core``) load too, not only NumPy 1's."""
    batch = {b"data": np.arange(2 * 3072).astype(np.uint8).reshape(2, 3072), b"labels": [3, 7]}
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    loaded = data._unpickle(path)
    assert np.array_equal(loaded[b"data"], batch[b"data"]) and loaded[b"labels"] == [3, 7]


# -- damaged files are named; decoders name them too when verification is bypassed --------------
def test_truncated_mnist_gz(tmp_path, data_dir):
    root, name = tmp_path / "data", "t10k-images-idx3-ubyte.gz"
    gz = place(data_dir, root, "mnist", copy={name}) / name
    gz.write_bytes(gz.read_bytes()[:800_000])
    with pytest.raises(DataFileError) as err:
        load_vision("mnist", "test", root)
    msg = str(err.value)
    assert (f"{gz}: expected md5 9fb629c4189551a2d022fa330f9573f3 (the official checksum); "
            f"got md5 {digest(gz, 'md5')}") in msg
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/" in msg
    assert accept_command("mnist", root) in msg

    cli.accept("mnist", root)
    with pytest.raises(DataFileError, match="not a complete gzip file") as err:
        load_vision("mnist", "test", root)
    assert str(gz) in str(err.value) and "ossci-datasets" in str(err.value)


def test_short_idx(tmp_path, data_dir):
    root = tmp_path / "data"
    name = "t10k-labels-idx1-ubyte.gz"
    gz = place(data_dir, root, "mnist", copy={name}) / name
    gz.write_bytes(gzip.compress(gzip.decompress(gz.read_bytes())[:-100]))  # a valid gzip
    with pytest.raises(DataFileError) as err:
        require_vision("mnist", root)
    assert f"{gz}: expected md5 ec29112dd5afa0611ce80d1b7f02629c" in str(err.value)

    cli.accept("mnist", root)
    with pytest.raises(DataFileError) as err:
        load_vision("mnist", "test", root)
    assert f"{gz}: 9908 bytes uncompressed, but its header's shape (10000,) needs 10008" in str(
        err.value)


def test_garbage_cifar_header(tmp_path, data_dir):
    root = tmp_path / "data"
    batch = place(data_dir, root, CIFAR, copy={"test_batch"}) / "test_batch"
    with open(batch, "r+b") as f:
        f.write(b"\x00garbage" * 8)
    with pytest.raises(DataFileError) as err:
        require_vision("cifar10", root)
    msg = str(err.value)
    assert f"{batch}: expected md5 40351d587109b95175f43aff81a1287e" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg

    cli.accept("cifar10", root)
    with pytest.raises(DataFileError, match="not a CIFAR-10 pickle") as err:
        load_vision("cifar10", "test", root)
    assert str(batch) in str(err.value)


@pytest.mark.parametrize("name, file", [("shakespeare", "input.txt"), ("ptb", "ptb.valid.txt")])
def test_text_failing_checksum(tmp_path, data_dir, name, file):
    root, src = tmp_path / "data", text._SOURCES[name]
    path = place(data_dir, root, src.folder, copy={file}) / file
    whole = path.read_bytes()
    path.write_bytes(whole[:3000])  # Tiny Shakespeare is ASCII: 3,000 characters
    with pytest.raises(DataFileError) as err:
        text.load_text(name, "test", root)
    msg = str(err.value)
    assert (f"{path}: expected sha256 {src.sha256[file]} (the official checksum); "
            f"got sha256 {digest(path, 'sha256')}") in msg
    assert src.url in msg and accept_command(name, root) in msg

    path.write_bytes(whole)  # the original bytes pass again
    assert text.load_text(name, "test", root) == text.load_text(name, "test", data_dir)


# -- explicit acceptance ------------------------------------------------------------------------
def test_shared_cifar_needs_explicit_acceptance(tmp_path, data_dir, cache):
    root = tmp_path / "data"
    folder = place(data_dir, root, CIFAR)  # the shared copy, re-decoded from JPEG
    with pytest.raises(DataFileError) as err:
        require_vision("cifar10", root)
    msg = str(err.value)
    src = data._SOURCES["cifar10"]
    for file, md5 in zip(src.files, src.members_md5):
        assert f"{folder / file}: expected md5 {md5} (the official checksum)" in msg
    assert accept_command("cifar10", root) in msg

    argv = ["accept", "cifar10", "--data-dir", str(root), "--reason", "re-decoded from JPEG"]
    assert cli.main(argv) == 0
    assert require_vision("cifar10", root) == folder
    records = json.loads((cache / "accepted-data.json").read_text())["accepted"]
    record = next(r for r in records if r["folder"] == str(folder))
    assert record["dataset"] == "cifar10" and record["reason"] == "re-decoded from JPEG"
    assert record["date"].startswith("20")
    assert record["files"]["data_batch_1"] == (  # shared/data/README.md
        "6ec014092dab0a26d8848a339de5fd91480c66a205f0200e0078532cee965034")
    assert sorted(record["files"]) == sorted(src.files)


def test_accepted_file_that_changes_fails_again(tmp_path, data_dir, capsys):
    root = tmp_path / "data"
    batch = place(data_dir, root, CIFAR, copy={"test_batch"}) / "test_batch"
    cli.accept("cifar10", root, reason="shared copy")
    require_vision("cifar10", root)
    original = batch.read_bytes()
    with open(batch, "r+b") as f:
        f.seek(1 << 20)
        f.write(np.random.default_rng(0).bytes(4096))  # 4 KiB of garbage inside the pixels
    with pytest.raises(DataFileError) as err:
        require_vision("cifar10", root)
    msg = str(err.value)
    assert (f"{batch}: expected md5 40351d587109b95175f43aff81a1287e (the official checksum) or "
            f"sha256 {hashlib.sha256(original).hexdigest()} (accepted on ") in msg
    assert f"got md5 {digest(batch, 'md5')}, sha256 {digest(batch, 'sha256')}" in msg
    assert "1 file(s)" in msg and "data_batch_1" not in msg
    assert cli.main(["verify", "cifar10", "--data-dir", str(root)]) == 1
    out = capsys.readouterr().out
    assert "FAIL  test_batch: expected" in out and "ok    data_batch_1: sha256 matches" in out

    batch.write_bytes(original)  # the accepted bytes pass again
    assert require_vision("cifar10", root) == batch.parent
    assert cli.main(["verify", "cifar10", "--data-dir", str(root)]) == 0


# -- the verdict cache ----------------------------------------------------------------------------
def test_second_check_reads_no_data(tmp_path, data_dir, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("LMCNB_CACHE", str(cache))
    hashed = []
    real = verify._digests
    monkeypatch.setattr(verify, "_digests", lambda path: hashed.append(path) or real(path))
    root = tmp_path / "data"
    valid = place(data_dir, root, "ptb", copy={"ptb.valid.txt"}) / "ptb.valid.txt"
    text.require_text("ptb", root)
    assert len(hashed) == 3
    text.require_text("ptb", root)
    text.load_text("ptb", "valid", root)
    assert len(hashed) == 3
    place(data_dir, root, "mnist")
    require_vision("mnist", root)
    require_vision("mnist", root)
    assert len(hashed) == 7
    assert len(json.loads((cache / "verified-data.json").read_text())["files"]) == 7

    st = valid.stat()
    os.utime(valid, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # a new stamp: hashed again
    text.require_text("ptb", root)
    assert hashed[7:] == [str(valid)]
    (cache / "verified-data.json").write_text('{"files": ')  # a damaged cache is rebuilt
    text.require_text("ptb", root)
    assert len(hashed) == 11


# -- data without known checksums; the manifest of the Tiny ImageNet subset ---------------------
def test_own_data_without_checksums_is_used_as_is(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "tiny-imagenet-200"
    (folder / "train" / "n0" / "images").mkdir(parents=True)
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("n0\n")
    (folder / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn0\t0\t0\t63\t63\n")
    for path in ("train/n0/images/n0_0.JPEG", "val/images/val_0.JPEG"):
        Image.new("RGB", (64, 64)).save(folder / path)
    monkeypatch.setattr(verify, "_digests", lambda path: pytest.fail(f"{path} was hashed"))
    assert require_vision("tiny_imagenet", tmp_path) == folder.resolve()
    assert len(load_vision("tiny_imagenet", "train", tmp_path)) == 1
    assert cli.main(["verify", "tiny_imagenet", "--data-dir", str(tmp_path)]) == 0
    assert "no known checksums: structural check only" in capsys.readouterr().out
    assert cli.accept("tiny_imagenet", tmp_path) == {}


def test_tiny_subset_manifest(tmp_path, data_dir):
    sub = "tiny-imagenet-200-sub20"
    src, folder = data_dir / sub, tmp_path.resolve() / sub
    (folder / "train").mkdir(parents=True)
    for f in ("MANIFEST.sha256", "wnids.txt", "words.txt", "val"):
        (folder / f).symlink_to((src / f).resolve())
    first, *others = (src / "wnids.txt").read_text().split()
    for w in others:
        (folder / "train" / w).symlink_to((src / "train" / w).resolve())
    shutil.copytree(src / "train" / first, folder / "train" / first)
    assert require_vision("tiny_imagenet", tmp_path) == folder

    image = folder / "train" / first / "images" / f"{first}_7.JPEG"
    extra = image.with_name(f"{first}_500.JPEG")
    shutil.copyfile(image, extra)  # read by the loader, listed nowhere
    with open(image, "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 64)
    with pytest.raises(DataFileError) as err:
        require_vision("tiny_imagenet", tmp_path)
    msg = str(err.value)
    assert f"{image}: expected sha256 " in msg and "(MANIFEST.sha256); got sha256" in msg
    assert f"{extra}: no checksum is known for it" in msg and "2 file(s)" in msg


# -- the command line ---------------------------------------------------------------------------
def test_verify_command(tmp_path, data_dir, capsys):
    assert cli.main(["verify", "mnist", "shakespeare", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "ok    t10k-labels-idx1-ubyte.gz: md5 matches the official checksum" in out
    assert "ok    input.txt: sha256 matches the official checksum" in out
    assert cli.main(["verify", "ptb", "--data-dir", str(tmp_path)]) == 1  # named, missing
    assert "ptb: FAIL" in capsys.readouterr().out
    assert cli.main(["verify", "--data-dir", str(tmp_path)]) == 0  # nothing present
    assert cli.main(["accept", "imagenet"]) == 1
    assert "unknown dataset 'imagenet'" in capsys.readouterr().err
