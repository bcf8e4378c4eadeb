"""Colab and Drive: the set-up cell and `lmcnb.colab.setup`, with a stand-in `google.colab`
module."""
from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

from lmcnb.book import colab
from lmcnb.book.execute import CHAPTERS, REPO

HF_VARS = ("HF_HOME", "HF_DATASETS_CACHE")


@pytest.fixture
def fake_colab(monkeypatch, tmp_path):
    """A stand-in `google.colab` in sys.modules whose `drive.mount` records its calls; the mount
    point is moved under tmp_path, and the Hugging Face cache variables are unset (and restored
    after the test)."""
    for var in HF_VARS:
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    mounts = []
    drive = types.ModuleType("google.colab.drive")
    drive.mount = lambda path: (mounts.append(path),
                                Path(path, "MyDrive").mkdir(parents=True, exist_ok=True))
    module = types.ModuleType("google.colab")
    module.drive = drive
    monkeypatch.setitem(sys.modules, "google",
                        sys.modules.get("google") or types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", module)
    monkeypatch.setitem(sys.modules, "google.colab.drive", drive)
    monkeypatch.setattr(colab, "DRIVE_MOUNT", str(tmp_path / "content" / "drive"))
    return mounts


def test_colab_mounts_the_colab_drive_path():
    assert colab.DRIVE_MOUNT == "/content/drive"


def test_outside_colab_nothing_happens(fake_colab):
    assert colab.setup(False, "somewhere", None) is None
    assert colab.setup(False, None, "my/runs") == "my/runs"
    assert fake_colab == [] and not any(var in os.environ for var in HF_VARS)


def test_colab_mounts_drive_and_keeps_runs_there(fake_colab):
    mount = colab.DRIVE_MOUNT
    runs = colab.setup(True, None, "ignored/runs")
    assert fake_colab == [mount]
    assert runs == str(Path(mount, "MyDrive", colab.DRIVE_RUNS)) and Path(runs).is_dir()
    assert colab.setup(True, "lmc/exp1", None) == str(Path(mount, "MyDrive", "lmc", "exp1"))
    absolute = Path(mount, "Shareddrives", "team")
    assert colab.setup(True, str(absolute), None) == str(absolute) and absolute.is_dir()
    assert fake_colab == [mount] * 3


def test_colab_keeps_the_hugging_face_cache_on_drive(fake_colab, monkeypatch):
    colab.setup(True, "lmc/exp1", None)
    cache = Path(colab.DRIVE_MOUNT, "MyDrive", colab.DRIVE_HF)
    assert os.environ["HF_HOME"] == str(cache)
    assert os.environ["HF_DATASETS_CACHE"] == str(cache / "datasets")
    monkeypatch.setenv("HF_HOME", "/my/hf")  # a user's own setting is kept
    monkeypatch.delenv("HF_DATASETS_CACHE")
    colab.setup(True, None, None)
    assert os.environ["HF_HOME"] == "/my/hf"
    assert os.environ["HF_DATASETS_CACHE"] == str(Path("/my/hf", "datasets"))


def test_colab_true_outside_colab_is_an_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", None)  # import fails
    with pytest.raises(RuntimeError, match="colab=False"):
        colab.setup(True, None, None)


class Shell:
    """Stands in for `get_ipython()`: records `!` shell commands."""

    def __init__(self):
        self.commands = []

    def system(self, command):
        self.commands.append(command)


def run_setup_cell(**parameters) -> tuple[dict, Shell]:
    shell = Shell()
    namespace = {"get_ipython": lambda: shell, **parameters}
    exec(TransformerManager().transform_cell(colab.SETUP_CELL), namespace)
    return namespace, shell


def test_setup_cell_in_colab_installs_lmcnb_and_uses_drive(fake_colab):
    namespace, shell = run_setup_cell(colab=True, drive_dir="exp", runs_dir=None)
    assert len(shell.commands) == 1 and "pip install" in shell.commands[0]
    assert f"git+{colab.REPOSITORY}" in shell.commands[0]
    assert namespace["runs_dir"] == str(Path(colab.DRIVE_MOUNT, "MyDrive", "exp"))
    assert fake_colab == [colab.DRIVE_MOUNT]


def test_setup_cell_elsewhere_does_nothing(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    namespace, shell = run_setup_cell(colab=False, drive_dir=None, runs_dir="runs/here")
    assert shell.commands == [] and namespace["runs_dir"] == "runs/here"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapters_open_with_the_title_then_hidden_parameters_and_setup_cells(chapter):
    cells = json.loads((REPO / "notebooks" / f"{chapter}.ipynb").read_text())["cells"]
    title, parameters, setup = cells[:3]
    assert title["cell_type"] == "markdown" and "".join(title["source"]).startswith("# ")
    assert parameters["metadata"].get("tags") == ["parameters", "hide-cell"]
    assert setup["metadata"].get("tags") == ["hide-cell"]
    for line in ("colab = False", "drive_dir = None", "runs_dir = None"):
        assert any(row.startswith(line) for row in "".join(parameters["source"]).splitlines()), line
    assert "".join(setup["source"]) == colab.SETUP_CELL, "the second code cell is not SETUP_CELL"


def test_book_config_points_colab_at_the_same_repository():
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config["repository"]["url"] == colab.REPOSITORY
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
