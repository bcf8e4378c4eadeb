"""Running a chapter in Google Colab, with its runs kept on Google Drive.

Every chapter's second code cell (right after the `parameters` cell, which holds `colab = False`,
`drive_dir = None` and `runs_dir = None`) is `SETUP_CELL`. Inside Colab it installs lmcnb from
`REPOSITORY`; with `colab=True` it mounts Google Drive and points `runs_dir` at a Drive folder,
so a re-opened notebook finds its finished runs and resumes interrupted ones from their
checkpoints, and keeps the Hugging Face cache (hub datasets and models) on Drive too, so they are
downloaded once. Outside Colab it changes nothing.
"""
from __future__ import annotations

import os
from pathlib import Path

REPOSITORY = "https://github.com/lmcnb/lmcnb"  # also `repository: url` in _config.yml


DRIVE_MOUNT = "/content/drive"


DRIVE_RUNS = "lmcnb-runs"  # the runs folder inside MyDrive when `drive_dir` is None


DRIVE_HF = "lmcnb-hf-cache"  # the Hugging Face cache inside MyDrive ($HF_HOME), for every chapter


SETUP_CELL = f"""\
# Set-up: in Colab, install lmcnb and (colab=True) keep runs on Google Drive. Elsewhere: nothing.
import sys

if "google.colab" in sys.modules:
    !pip install -q "lmcnb @ git+{REPOSITORY}"
import lmcnb.book.colab
import lmcnb.book.params

lmcnb.book.params.check_injected()  # papermill: an undeclared parameter is an error
runs_dir = lmcnb.book.colab.setup(colab, drive_dir, runs_dir)"""  # the notebooks' second cell


def setup(colab: bool, drive_dir: str | os.PathLike | None,
          runs_dir: str | os.PathLike | None) -> str | os.PathLike | None:
    """The runs folder for a chapter: `runs_dir` unchanged unless `colab`.

    With `colab=True`, mounts Google Drive at `DRIVE_MOUNT` and returns `drive_dir` (relative to
    MyDrive, or absolute; default `DRIVE_RUNS`), created if needed; `runs_dir` is then not used.
    `$HF_HOME` and `$HF_DATASETS_CACHE` (unless already set) point at `DRIVE_HF` in MyDrive; they
    are read when `datasets` and `huggingface_hub` are imported, which the set-up cell precedes.
    """
    if not colab:
        return runs_dir
    try:
        from google.colab import drive
    except ImportError as exc:
        raise RuntimeError("colab=True needs Google Colab (module google.colab); "
                           "elsewhere use colab=False and runs_dir") from exc
    drive.mount(DRIVE_MOUNT)
    folder = Path(DRIVE_MOUNT, "MyDrive", drive_dir or DRIVE_RUNS)
    folder.mkdir(parents=True, exist_ok=True)
    hf = Path(DRIVE_MOUNT, "MyDrive", DRIVE_HF)
    os.environ.setdefault("HF_HOME", str(hf))
    os.environ.setdefault("HF_DATASETS_CACHE", str(Path(os.environ["HF_HOME"], "datasets")))
    print(f"runs are kept on Google Drive in {folder}, the Hugging Face cache in "
          f"{os.environ['HF_HOME']}")
    return str(folder)
