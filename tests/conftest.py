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
    from lmcnb.data.tensors import TensorData
    from lmcnb.data.vision import load_vision

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
    from lmcnb.core import hub as pretrained

    monkeypatch.setattr(pretrained, "hub_reachable", lambda timeout=3.0: False)


@pytest.fixture(scope="session")
def mnist_setup(data_dir):
    """A factory of LeNet5-on-MNIST `Setup`s over the first `n_train` / `n_test` images."""
    from lmcnb.core.ref import Ref
    from lmcnb.experiments.setup import Setup
    from lmcnb.train.recipe import TrainConfig

    def make(root, n_train: int = 512, n_test: int = 256, train: TrainConfig | None = None,
             **overrides) -> Setup:
        split = {s: Ref.of("data", "vision", name="mnist", split=s, limit=n)
                 for s, n in (("train", n_train), ("test", n_test))}
        return Setup("unit", "lenet5", "mnist", Ref.of("model", "lenet5", num_classes=10),
                     split["train"], split["test"],
                     train or TrainConfig(batch_size=64, max_steps=8), root,
                     model_args=(("num_classes", 10),), data_dir=str(data_dir),
                     **{"n_alpha": 3, "eval_batch_size": 256, **overrides})

    return make


@pytest.fixture
def fails_first(tmp_path):
    """Execute a chapter at the smoke profile with bad `parameters`; return the error it fails
    with, after checking that no training started."""
    import papermill

    def run(notebook: Path, **parameters) -> str:
        runs = tmp_path / "runs"
        with pytest.raises(papermill.PapermillExecutionError) as info:
            papermill.execute_notebook(
                str(notebook), str(tmp_path / "out.ipynb"), progress_bar=False,
                parameters={"profile": "smoke", "runs_dir": str(runs), **parameters},
                cwd=str(notebook.parent.parent))
        assert not (runs / "train").exists(), "training started before the parameters were checked"
        return f"{info.value.ename}: {info.value.evalue}"

    return run


@pytest.fixture
def refuses(tmp_path, data_dir):
    """Resolve a chapter's `smoke` config with `parameters` and build its setups; return the
    error they fail with, after checking that nothing trained."""

    def run(chapter, **parameters) -> str:
        runs = tmp_path / "runs"
        given = {"runs_dir": str(runs), "data_dir": str(data_dir), **parameters}
        with pytest.raises(ValueError) as info:
            chapter.setups(chapter.Config.resolve(given.pop("profile", "smoke"), **given))
        assert not (runs / "train").exists(), "training started before the parameters were checked"
        return str(info.value)

    return run
