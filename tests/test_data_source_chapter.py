"""A chapter's `data_source`: run on a local Arrow copy of its data (`save_to_disk`), the CNN
chapter's LeNet5 study at `smoke` gives the same run names and byte-identical tables as on the
verified files; a source that cannot be read is refused before anything trains."""
from __future__ import annotations

import filecmp

import pytest

from lmcnb.chapters import cnn, ptb
from lmcnb.experiments.study import spawn_study


@pytest.fixture(scope="module")
def mnist_arrow(tmp_path_factory, data_dir):
    from datasets import DatasetDict

    from lmcnb.data.sources import as_dataset

    folder = tmp_path_factory.mktemp("arrow") / "mnist"
    DatasetDict({s: as_dataset("mnist", s, data_dir) for s in ("train", "test")}).save_to_disk(
        folder)
    return folder


def _study(runs, data_dir, **source):
    c = cnn.Config.resolve("smoke", model="lenet5", runs_dir=str(runs), data_dir=str(data_dir),
                           **source)
    s = cnn.setups(c)["lenet5"]
    return spawn_study(s, c.spawn_steps, c.n_children, 1)


def test_an_arrow_copy_of_mnist_gives_the_tables_of_the_verified_files(tmp_path, data_dir,
                                                                      mnist_arrow):
    files = _study(tmp_path / "files", data_dir)
    arrow = _study(tmp_path / "arrow", data_dir, data_source={"mnist": str(mnist_arrow)})
    assert files.folder.name == arrow.folder.name
    assert sorted(p.name for p in (tmp_path / "files" / "train").iterdir()) == sorted(
        p.name for p in (tmp_path / "arrow" / "train").iterdir())
    for table in ("curves.csv", "barriers.csv"):
        assert filecmp.cmp(files.folder / table, arrow.folder / table, shallow=False), table


@pytest.mark.parametrize(("chapter", "source", "message"), [
    (cnn, {"mnist": "hub:ylecun/mnist"}, "revision"),
    (cnn, "hub:ylecun/mnist@abc", "one source, but this run reads mnist, cifar10"),
    (cnn, {"mnist": "/no/such/folder"}, "/no/such/folder"),
    (cnn, {"svhn": "default"}, "unknown key(s) ['svhn'] in data_source"),
    (ptb, "/no/such/folder", "/no/such/folder"),
])
def test_a_source_that_cannot_be_read_is_refused_first(refuses, chapter, source, message):
    assert message in refuses(chapter, data_source=source)
