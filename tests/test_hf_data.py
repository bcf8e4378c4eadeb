"""Hugging Face `datasets` as lmcnb data: `dataset_splits` for evaluation, and data sources for the
chapters' datasets (save_to_disk folders, parquet files, the hub at a pinned revision), offline.

The hub is replaced by a local folder: `datasets.load_dataset` is wrapped so that the hub id
resolves to a parquet copy the test made, and every other path goes to the real function.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import (
    ClassLabel,
    Dataset,
    DatasetDict,
    Features,
    Image,
    IterableDataset,
    Value,
    load_dataset,
    load_from_disk,
)
from PIL import Image as PILImage

from lmcnb.core.ref import Ref
from lmcnb.data import sources
from lmcnb.data.hf import dataset_splits
from lmcnb.data.sources import SourceError, as_dataset, parse_source, text_split, vision_split
from lmcnb.data.text import load_text
from lmcnb.data.vision import load_vision
from lmcnb.experiments.catalog import build


@pytest.fixture(scope="module", autouse=True)
def hf_cache(tmp_path_factory):
    """`load_dataset`'s Arrow conversions go to a temporary cache, not the user's."""
    import datasets

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf-cache"))
        yield


def _images(n: int = 8, size=(4, 5), mode: str = "RGB", seed: int = 0) -> np.ndarray:
    shape = (n, *size, 3) if mode == "RGB" else (n, *size)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _dataset(images: np.ndarray, labels, label_feature=None, column: str = "img") -> Dataset:
    features = Features({column: Image(), "label": label_feature or ClassLabel(num_classes=10)})
    return Dataset.from_dict({column: [PILImage.fromarray(a) for a in images],
                              "label": list(labels)}, features=features)


def _nchw(images: np.ndarray) -> torch.Tensor:
    x = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)).float() / 255


# -- dataset_splits --------------------------------------------------------------------------------
def test_a_dataset_gives_exactly_the_tensors_of_the_same_data_given_directly():
    images, labels = _images(), [3, 1, 4, 1, 5, 9, 2, 6]
    ds = _dataset(images, labels)
    want_x, want_y = _nchw(images), torch.tensor(labels)
    for form in (ds, ds.with_format("torch"), ds.with_format("numpy"), ds.to_iterable_dataset()):
        got = dataset_splits(form)
        assert list(got) == ["test"]
        assert got["test"].x.dtype == torch.float32 and torch.equal(got["test"].x, want_x)
        assert got["test"].y.dtype == torch.int64 and torch.equal(got["test"].y, want_y)
    both = dataset_splits(DatasetDict(train=ds, val=ds.select(range(3))))
    assert list(both) == ["train", "val"] and torch.equal(both["val"].x, want_x[:3])
    gray = _images(mode="L")
    assert torch.equal(dataset_splits(_dataset(gray, labels))["test"].x, _nchw(gray))


def test_a_transform_is_applied_and_the_tensors_it_gives_are_kept():
    images = _images()
    ds = _dataset(images, range(8)).with_transform(lambda b: {
        "pixel_values": [torch.from_numpy(np.array(im)).permute(2, 0, 1).float() * 2 - 1
                         for im in b["img"]],
        "labels": b["label"]})
    got = dataset_splits(ds, split="val")["val"]
    want = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).float() * 2 - 1
    assert torch.equal(got.x, want) and got.y.tolist() == list(range(8))


def test_named_columns_are_used_as_given():
    ds = Dataset.from_dict({"features": [[0.5, 1.0], [2.0, 3.0]], "target": [1, 0]})
    got = dataset_splits(ds, columns=("features", "target"))["test"]
    assert torch.equal(got.x, torch.tensor([[0.5, 1.0], [2.0, 3.0]])) and got.y.tolist() == [1, 0]


def test_token_rows_give_next_token_targets_and_rows_of_other_lengths_fail():
    ds = Dataset.from_dict({"input_ids": [[1, 2, 3, 4], [5, 6, 7, 8]],
                            "attention_mask": [[1] * 4] * 2})
    got = dataset_splits(ds, language_model=True)["test"]
    assert got.x.tolist() == [[1, 2, 3], [5, 6, 7]] and got.y.tolist() == [[2, 3, 4], [6, 7, 8]]
    same = dataset_splits(ds.with_format("torch"), language_model=True)["test"]
    assert torch.equal(same.x, got.x) and torch.equal(same.y, got.y)
    ragged = Dataset.from_dict({"ids": [[1, 2, 3], [4, 5, 6, 7]]})
    for form in (ragged, ragged.with_format("torch")):
        with pytest.raises(ValueError, match=r"different lengths \(3 and 4 tokens\)"):
            dataset_splits(form, columns="ids", language_model=True)


@pytest.mark.parametrize("rows, kwargs, error, message", [
    ({"picture": [0], "label": [1]}, {}, ValueError, r"columns: picture, label.*no input column"),
    ({"img": [0], "class": [1]}, {}, ValueError, r"columns: img, class.*no target column"),
    ({"img": [[0.0]], "label": [0.5]}, {}, TypeError, r"columns: img, label.*float"),
    ({"img": [[0.0]], "label": ["cat"]}, {}, TypeError, r"columns: img, label.*strings"),
    ({"img": [[0.0]], "label": [-1]}, {}, ValueError, r"columns: img, label.*negative"),
    ({"img": [[0.0]], "label": [1]}, {"columns": ("img", "y")}, ValueError, r"no column 'y'"),
    ({"img": [[0.0]], "label": [1]}, {"columns": ("img",)}, ValueError, r"\(input, target\)"),
    ({"input_ids": [[1, 2]]}, {}, ValueError, r"language_model=True"),
    ({"input_ids": [["a", "b"]]}, {"language_model": True}, TypeError, r"strings"),
    ({"img": [], "label": []}, {}, ValueError, r"split 'test' is empty"),
])
def test_bad_columns_fail_with_a_message_naming_the_columns(rows, kwargs, error, message):
    with pytest.raises(error, match=message):
        dataset_splits(Dataset.from_dict(rows), **kwargs)


def test_a_bad_split_fails_before_any_split_is_read_in_full():
    yielded = []

    def rows():
        for i in range(5000):
            yielded.append(i)
            yield {"img": [float(i)], "label": i % 3}

    good = IterableDataset.from_generator(rows)
    bad = Dataset.from_dict({"img": [[0.0]], "label": [0.5]})
    with pytest.raises(TypeError, match="float"):
        dataset_splits({"good": good, "bad": bad})
    assert 0 < len(yielded) < 5000


def test_saved_and_parquet_copies_load_back_to_the_same_tensors(tmp_path):
    images, labels = _images(12, mode="L"), list(range(10)) + [0, 1]
    ds = _dataset(images, labels, column="image")
    DatasetDict(train=ds, test=ds.select(range(4))).save_to_disk(tmp_path / "disk")
    (tmp_path / "pq").mkdir()
    ds.to_parquet(tmp_path / "pq" / "train-00000-of-00001.parquet")
    want = _nchw(images)
    from_disk = dataset_splits(load_from_disk(tmp_path / "disk"))
    from_parquet = dataset_splits(load_dataset(str(tmp_path / "pq")))
    assert sorted(from_disk) == ["test", "train"] and list(from_parquet) == ["train"]
    for got in (from_disk["train"], from_parquet["train"]):
        assert torch.equal(got.x, want) and got.y.tolist() == labels
    assert torch.equal(from_disk["test"].x, want[:4])


# -- vision sources --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist_test(data_dir):
    return as_dataset("mnist", "test", data_dir)


@pytest.fixture(scope="module")
def mnist_copies(mnist_test, tmp_path_factory):
    """The shared MNIST test split written by save_to_disk and as parquet: {kind: source}."""
    root = tmp_path_factory.mktemp("mnist-copies")
    DatasetDict(test=mnist_test).save_to_disk(root / "disk")
    (root / "parquet").mkdir()
    mnist_test.to_parquet(root / "parquet" / "test-00000-of-00001.parquet")
    return {"disk": str(root / "disk"), "parquet folder": str(root / "parquet"),
            "parquet glob": str(root / "parquet" / "{split}-*.parquet")}


@pytest.mark.parametrize("kind", ["disk", "parquet folder", "parquet glob"])
def test_a_copy_of_the_shared_mnist_is_byte_identical_to_load_vision(kind, mnist_copies, data_dir):
    want = load_vision("mnist", "test", data_dir)
    got = vision_split("mnist", "test", mnist_copies[kind], data_dir)
    assert got.x.dtype == want.x.dtype and got.x.stride() == want.x.stride()
    assert got.x.numpy().tobytes() == want.x.numpy().tobytes()
    assert torch.equal(got.y, want.y) and got.y.dtype == want.y.dtype
    assert got.classes == want.classes and got.fingerprint() == want.fingerprint()


def test_a_catalog_entry_with_a_source_gives_the_default_fingerprint(mnist_copies, data_dir):
    default = Ref.of("data", "vision", name="mnist", split="test", limit=300)
    copy = Ref.of("data", "vision", name="mnist", split="test", limit=300,
                  source=mnist_copies["disk"])
    assert "source" not in default.kwargs()
    assert build(copy, data_dir).fingerprint() == build(default, data_dir).fingerprint()


def test_a_hub_source_loads_its_pinned_revision(mnist_copies, data_dir, monkeypatch):
    import datasets

    real, calls = datasets.load_dataset, []

    def load(path, *args, **kwargs):
        if path != "ylecun/mnist":
            return real(path, *args, **kwargs)
        calls.append((path, kwargs.get("revision")))
        return real("parquet", data_dir=mnist_copies["parquet folder"])

    monkeypatch.setattr(datasets, "load_dataset", load)
    got = vision_split("mnist", "test", "hub:ylecun/mnist@0a1b2c3d", data_dir)
    assert calls == [("ylecun/mnist", "0a1b2c3d")]
    assert got.fingerprint() == load_vision("mnist", "test", data_dir).fingerprint()


@pytest.mark.parametrize("source", ["hub:uoft-cs/cifar10", "hub:uoft-cs/cifar10@", "hub:@abc"])
def test_a_hub_source_without_a_revision_is_refused(source, data_dir):
    with pytest.raises(SourceError, match="revision"):
        parse_source(source)
    with pytest.raises(SourceError, match="revision"):
        build(Ref.of("data", "vision", name="cifar10", split="test", source=source), data_dir)


def test_relative_sources_are_read_under_the_data_root(tmp_path):
    DatasetDict(test=Dataset.from_dict({"text": ["a"]})).save_to_disk(tmp_path / "copies" / "d")
    (tmp_path / "pq").mkdir()
    Dataset.from_dict({"text": ["a"]}).to_parquet(tmp_path / "pq" / "x.parquet")
    assert parse_source("copies/d", tmp_path) == sources.Source("disk", str(tmp_path / "copies/d"))
    assert parse_source("pq", tmp_path).kind == "parquet"
    assert parse_source("pq/*.parquet", tmp_path).where == str(tmp_path / "pq/*.parquet")
    assert parse_source("default") == sources.Source("default")
    with pytest.raises(SourceError, match="no folder"):
        parse_source("missing", tmp_path)
    with pytest.raises(SourceError, match="neither"):
        parse_source("copies", tmp_path)


def _save(tmp_path, **splits) -> str:
    DatasetDict(splits).save_to_disk(tmp_path / "source")
    return str(tmp_path / "source")


def _relabel(ds: Dataset, labels, feature) -> Dataset:
    return ds.remove_columns("label").add_column("label", list(labels), feature=feature)


@pytest.mark.parametrize("make, message", [
    (lambda t: _dataset(_images(3, (28, 28)), [0, 1, 2], column="image"),
     r"RGB images, but mnist's are grayscale"),
    (lambda t: _dataset(_images(3, (32, 32), "L"), [0, 1, 2], column="image"),
     r"images of shape \(1, 32, 32\).*mnist's are \(1, 28, 28\)"),
    (lambda t: _dataset(_images(3, (28, 28), "L"), [0, 1, 2], column="image"),
     r"3 examples, but mnist's test split has 10,000"),
    (lambda t: _dataset(_images(3, (28, 28), "L"), [0.5] * 3, Value("float32"), column="image"),
     r"column 'label' holds .*float32.*not class indices"),
    (lambda t: Dataset.from_dict({"image": [PILImage.fromarray(_images(1, (28, 28), "L")[0])]}),
     r"columns: image\): no label column"),
    (lambda t: _relabel(t, [10] + t["label"][1:], Value("int64")),
     r"labels run from 0 to 10, but mnist has 10 classes"),
    (lambda t: _relabel(t, t["label"], ClassLabel(names=list("abcdefghij"))),
     r"its classes are a, b, .* but mnist's are 0, 1, .*other classes"),
])
def test_a_source_that_is_not_the_dataset_fails_clearly(make, message, mnist_test, tmp_path,
                                                        data_dir):
    source = _save(tmp_path, test=make(mnist_test))
    with pytest.raises(SourceError, match=message):
        vision_split("mnist", "test", source, data_dir)


def test_an_empty_split_fails_clearly(tmp_path, data_dir, monkeypatch):
    empty = _dataset(_images(0, (28, 28), "L"), [], column="image")
    (tmp_path / "pq").mkdir()
    empty.to_parquet(tmp_path / "pq" / "test-00000-of-00001.parquet")
    with pytest.raises(SourceError, match=r"pq.*: datasets cannot read it .* empty"):
        vision_split("mnist", "test", str(tmp_path / "pq"), data_dir)
    monkeypatch.setattr(sources, "load_source", lambda source, data_dir=None: {"test": empty})
    with pytest.raises(SourceError, match=r"split 'test' \(columns: image, label\): .* empty"):
        vision_split("mnist", "test", str(tmp_path / "in-memory"), data_dir)


def test_a_missing_split_is_named_with_the_splits_there_are(tmp_path, data_dir):
    source = _save(tmp_path, train=_dataset(_images(1, (28, 28), "L"), [0], column="image"))
    with pytest.raises(SourceError, match=r"has no split 'test' \(it has train\)"):
        vision_split("mnist", "test", source, data_dir)


# -- text sources ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shakespeare(data_dir):
    return {s: load_text("shakespeare", s, data_dir) for s in ("train", "test")}


@pytest.fixture(scope="module")
def ptb(data_dir):
    return {s: load_text("ptb", s, data_dir) for s in ("train", "valid", "test")}


def test_shakespeare_copies_give_the_default_split_strings(shakespeare, data_dir, tmp_path):
    train, test = shakespeare["train"], shakespeare["test"]
    half = len(test) // 2
    layouts = {  # what a copy can look like: lmcnb's splits, one split of input.txt, the hub's
        "own": {s: as_dataset("shakespeare", s, data_dir) for s in ("train", "test")},
        "whole": {"train": Dataset.from_dict({"text": [train + test]})},
        "lines": {"train": Dataset.from_dict({"text": (train + test).splitlines()})},
        "hub 90/5/5": {"train": Dataset.from_dict({"text": [train]}),
                       "validation": Dataset.from_dict({"text": [test[:half]]}),
                       "test": Dataset.from_dict({"text": [test[half:]]})},
    }
    for name, splits in layouts.items():
        source = _save(tmp_path / name.replace(" ", "-").replace("/", "-"), **splits)
        for split in ("train", "test"):
            assert text_split("shakespeare", split, source, data_dir) == shakespeare[split], name


def test_a_ptb_copy_in_the_hubs_layout_gives_the_files_bytes(ptb, data_dir, tmp_path):
    copy = {("validation" if s == "valid" else s):
            as_dataset("ptb", s, data_dir).rename_column("text", "sentence") for s in ptb}
    source = _save(tmp_path, **copy)
    for split, want in ptb.items():
        assert text_split("ptb", split, source, data_dir) == want
    default = Ref.of("data", "ptb_streams", split="valid", streams=10, bptt=35)
    from_copy = Ref.of("data", "ptb_streams", split="valid", streams=10, bptt=35, source=source)
    assert build(from_copy, data_dir).fingerprint() == build(default, data_dir).fingerprint()


def test_char_windows_from_a_source_have_the_default_fingerprint(data_dir, tmp_path):
    source = _save(tmp_path, **{s: as_dataset("shakespeare", s, data_dir)
                                for s in ("train", "test")})

    def windows(**src):
        tok = Ref.of("tokenizer", "char", corpus="shakespeare", **src)
        return build(Ref.of("data", "text_windows", corpus="shakespeare", split="test",
                            tokenizer=tok, block=64, chars=20_000, **src), data_dir)

    assert windows(source=source).fingerprint() == windows().fingerprint()


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()]


@pytest.mark.parametrize("corpus, split, make, message", [
    ("shakespeare", "train", lambda t: {"train": [t["train"][:-1] + "~"], "test": [t["test"]]},
     r"characters \['~'\] are not in Tiny Shakespeare's alphabet"),
    ("shakespeare", "test", lambda t: {"train": [t["train"]], "test": [t["test"][:-5]]},
     r"111,535 characters, but Tiny Shakespeare's test split has 111,540"),
    ("ptb", "train", lambda t: {"train": _lines(t["train"])[:-1]},
     r"42,067 lines, but PTB's train split has 42,068"),
    ("ptb", "valid", lambda t: {"train": _lines(t["train"]),
                                "valid": ["zyzzyva " + _lines(t["valid"])[0],
                                          *_lines(t["valid"])[1:]]},
     r"words \['zyzzyva'\] are not in the vocabulary"),
])
def test_text_that_is_not_the_dataset_fails_clearly(corpus, split, make, message, shakespeare, ptb,
                                                    data_dir, tmp_path):
    texts = shakespeare if corpus == "shakespeare" else ptb
    source = _save(tmp_path, **{s: Dataset.from_dict({"text": rows})
                                for s, rows in make(texts).items()})
    with pytest.raises(SourceError, match=message):
        text_split(corpus, split, source, data_dir)


def test_text_without_a_text_column_fails_naming_the_columns(tmp_path, data_dir):
    source = _save(tmp_path, train=Dataset.from_dict({"body": ["x"]}))
    with pytest.raises(SourceError, match=r"no text column .* among its columns body"):
        text_split("shakespeare", "train", source, data_dir)
