"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data root holding the real datasets: ``$LMCNB_DATA``, else ``<repo>/../shared/data``."""
    return Path(os.environ.get("LMCNB_DATA",
                               Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="session")
def mnist_small(data_dir):
    """Small real MNIST subsets: (train[:512], test[:256]) as TensorData, loaded once per
    session."""
    from lmcnb.data import TensorData, load_vision

    train = load_vision("mnist", "train", data_dir, download=False)
    test = load_vision("mnist", "test", data_dir, download=False)
    return (TensorData(train.x[:512].clone(), train.y[:512].clone(), train.classes),
            TensorData(test.x[:256].clone(), test.y[:256].clone(), test.classes))


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a test module
    (``pytestmark = pytest.mark.usefixtures("single_thread")``).

    Training and evaluation in unit tests use tiny batches: a second thread gains little on an idle
    machine and costs several times over on a busy one (threads spin waiting for a core).
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def offline(monkeypatch):
    """The hub does not answer (whatever the machine's network)."""
    from lmcnb import text

    monkeypatch.setattr(text, "hub_reachable", lambda timeout=3.0: False)
