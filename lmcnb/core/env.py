"""The environment variables lmcnb reads, each name written once here, and the folders they name.

    LMCNB_DATA      the data root (datasets in the layout of their official archives); ./data
    LMCNB_RUNS      the runs folder (runs, studies, pretrained folders); ./runs
    LMCNB_CACHE     data-file verdicts and acceptances; ~/.cache/lmcnb
    LMCNB_OFFLINE   set: never download a dataset
    LMCNB_THREADS   intra-op threads of one task (set by the executors for what they start)
    LMCNB_TABLES    a file to which every study appends the folder of the tables it returned
                    (`lmcnb sweep` collects a point's tables through it)
    LMCNB_PROGRESS  0: no progress bars (the book's executions)
    LMCNB_LIVE      1 / 0: α-sliders live (a kernel redraws) or static (frames in the page)
"""
from __future__ import annotations

import os
from pathlib import Path

DATA = "LMCNB_DATA"
RUNS = "LMCNB_RUNS"
CACHE = "LMCNB_CACHE"
OFFLINE = "LMCNB_OFFLINE"
THREADS = "LMCNB_THREADS"
TABLES = "LMCNB_TABLES"
PROGRESS = "LMCNB_PROGRESS"
LIVE = "LMCNB_LIVE"


def data_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder (absolute): `data_dir`, else `$LMCNB_DATA`, else `./data`."""
    if data_dir is None:
        data_dir = os.environ.get(DATA) or "data"
    return Path(data_dir).expanduser().resolve()


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """Where runs live (absolute): `runs_dir`, else `$LMCNB_RUNS`, else `./runs`."""
    return Path(runs_dir or os.environ.get(RUNS) or "runs").expanduser().resolve()


def cache_dir() -> Path:
    """Where data-file verdicts and acceptances are kept: `$LMCNB_CACHE`, else `~/.cache/lmcnb`."""
    return Path(os.environ.get(CACHE) or "~/.cache/lmcnb").expanduser()


def offline() -> bool:
    """Whether downloads are off (`$LMCNB_OFFLINE` set to anything)."""
    return bool(os.environ.get(OFFLINE))
