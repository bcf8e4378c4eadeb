"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data root holding the real datasets: ``$LMCNB_DATA``, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("LMCNB_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
