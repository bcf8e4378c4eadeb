"""Studies and sweeps on real Dask clusters: a LocalCluster, and `dask scheduler` + `dask worker`
processes on 127.0.0.1 that these tests start and stop themselves."""
from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from lmcnb.core.ref import Ref
from lmcnb.experiments.executors import Dask, Serial, Task, call, get_executor
from lmcnb.experiments.runs import Run, RunSpec
from lmcnb.experiments.study import _train_task, main_branch_study, spawn_study
from lmcnb.experiments.sweep import main as sweep_main
from lmcnb.experiments.sweep import parse_grid, parse_values, sweep
from lmcnb.train.recipe import TrainConfig

REPO = Path(__file__).resolve().parents[1]
CNN = REPO / "notebooks" / "cnn_baselines.ipynb"
DASK = Path(sys.executable).with_name("dask")
SMALL = {"n_train": 1024, "n_test": 512, "train": TrainConfig(batch_size=64, max_steps=16),
         "n_alpha": 5, "eval_iters": 1}


def _same_tables(a: Path, b: Path) -> bool:
    return all(filecmp.cmp(a / f, b / f, shallow=False) for f in ("curves.csv", "barriers.csv"))


@pytest.fixture(scope="module")
def local():
    """A 2-worker LocalCluster (worker processes under nannies), closed after the module."""
    ex = Dask(n_workers=2)
    ex.client.wait_for_workers(2)
    yield ex
    ex.close()


@pytest.fixture(scope="module")
def processes(tmp_path_factory, data_dir):
    """`dask scheduler` and `dask worker --nworkers 2` as real processes on 127.0.0.1; yields the
    scheduler file. Both process groups are killed afterwards."""
    folder = tmp_path_factory.mktemp("cluster")
    sf = folder / "scheduler.json"
    env = {**os.environ, "LMCNB_DATA": str(data_dir)}
    logs = [open(folder / f"{name}.log", "w") for name in ("scheduler", "worker")]
    commands = [
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(sf),
         "--no-dashboard"],
        [str(DASK), "worker", "--scheduler-file", str(sf), "--nworkers", "2", "--nthreads", "1",
         "--host", "127.0.0.1", "--memory-limit", "0", "--no-dashboard"]]
    procs = []
    try:
        for command, log in zip(commands, logs):
            procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True))
            deadline = time.time() + 30
            while not sf.exists() and time.time() < deadline:
                time.sleep(0.1)
        ex = Dask(scheduler_file=str(sf))
        ex.client.wait_for_workers(2, timeout=60)
        ex.close()
        yield sf
    finally:
        for proc in reversed(procs):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=15)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
        for log in logs:
            log.close()


def test_study_on_a_local_cluster_gives_the_serial_tables_byte_for_byte(tmp_path, mnist_setup,
                                                                        local):
    serial = mnist_setup(tmp_path / "serial", **SMALL)
    dask = mnist_setup(tmp_path / "dask", **SMALL)
    for study, args in ((spawn_study, ([0, 8], 2, 2)), (main_branch_study, ([0, 4], [4, 8]))):
        a = study(serial, *args, executor=Serial())
        b = study(dask, *args, executor=local)
        assert a.folder.name == b.folder.name and _same_tables(a.folder, b.folder), study.__name__
    # The runs were trained by worker processes, each on the fixed budget of one thread.
    events = [json.loads(line) for f in (tmp_path / "dask" / "train").glob("*/events.jsonl")
              for line in f.read_text().splitlines()]
    assert ({e["pid"] for e in events}.isdisjoint({os.getpid()})
            and {e["threads"] for e in events} == {1})


def test_study_through_real_scheduler_and_worker_processes(tmp_path, mnist_setup, processes):
    a = spawn_study(mnist_setup(tmp_path / "serial", **SMALL), [0, 8], 2,
                    executor=Serial())
    ex = get_executor(str(processes))  # a chapter's executor="<scheduler file>"
    try:
        b = spawn_study(mnist_setup(tmp_path / "dask", **SMALL), [0, 8], 2, executor=str(processes))
    finally:
        ex.close()
    assert _same_tables(a.folder, b.folder)


def test_a_worker_killed_mid_training_resumes_from_its_checkpoint_bit_identically(
        tmp_path, data_dir, processes):
    def run(root: Path) -> Run:
        spec = RunSpec("lenet5", "mnist", TrainConfig(batch_size=512, max_steps=150))
        return Run(spec, root, Ref.of("model", "lenet5", num_classes=10),
                   Ref.of("data", "vision", name="mnist", split="train"), ckpt_every=20,
                   data_dir=str(data_dir))

    ex = Dask(scheduler_file=str(processes))
    try:
        killed = run(tmp_path / "killed")
        future = ex.client.submit(call, _train_task, killed, (), key="killed-run", pure=False)
        last = killed.dir / "last.safetensors"
        deadline = time.time() + 120
        while not last.exists() and time.time() < deadline:
            time.sleep(0.02)
        assert last.exists(), "no checkpoint within 2 minutes"
        pids = ex.client.run(os.getpid)
        busy = [addr for addr, keys in ex.client.processing().items() if "killed-run" in keys]
        os.kill(pids[busy[0]], signal.SIGKILL)
        finished = future.result(timeout=300)
    finally:
        ex.close()
    events = [json.loads(line) for line in (killed.dir / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["init", "resume", "done"]
    assert events[1]["source"] == "last.safetensors" and events[1]["step"] > 0
    assert events[0]["pid"] != events[1]["pid"]  # a new worker process took it over
    reference = run(tmp_path / "reference")
    call(reference.ensure_trained)
    a, b = finished.ensure_weights(), reference.ensure_weights()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_same_run_requested_twice_at_once_is_trained_once(tmp_path, mnist_setup, local):
    run = mnist_setup(tmp_path, **SMALL).trunk(0)
    futures = [local.client.submit(call, _train_task, run, (8,), key=f"duplicate-{i}", pure=False)
               for i in range(2)]
    done = local.client.gather(futures)
    assert done[0].spec.run_id == done[1].spec.run_id
    events = [json.loads(line)["event"]
              for line in (run.dir / "events.jsonl").read_text().splitlines()]
    assert events == ["init", "done"]


def test_grid_syntax():
    assert parse_values("0,1,2") == [0, 1, 2]
    assert parse_values("[0,100],[0,200]") == [[0, 100], [0, 200]]
    assert parse_values("range(0,3)") == [0, 1, 2]
    assert parse_values("lenet5,'all',null") == ["lenet5", "all", None]
    assert parse_grid(["seed=0,1", "model=lenet5"]) == {"seed": [0, 1], "model": ["lenet5"]}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_grid(["seed"])


def test_unknown_parameter_is_refused_before_any_cluster_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Dask, "client", property(lambda self: pytest.fail("a cluster started")))
    assert sweep_main([str(CNN), "--grid", "n_child=2,3", "--out", str(tmp_path)]) == 2
    assert "unknown parameter(s) ['n_child']" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_sweep_on_a_local_cluster_with_a_failing_point_and_a_free_rerun(tmp_path, local,
                                                                         monkeypatch):
    monkeypatch.setenv("LMCNB_RUNS", str(tmp_path / "runs"))
    grid = {"seed": [0, 1], "n_alpha": [5, 1]}  # n_alpha=1 fails in the notebook's first checks
    fixed = {"profile": "smoke", "model": "lenet5", "k1_steps": [], "k2_steps": []}
    out = tmp_path / "sweep"
    results = sweep(CNN, grid, fixed, out, local, progress=False)
    failures = pd.read_csv(out / "failures.csv")
    assert sorted(failures.n_alpha) == [1, 1] and failures.error.str.contains("n_alpha").all()
    # 2 points x 2 spawn steps (smoke: 0, 4) x 2 splits
    assert set(results.seed) == {0, 1} and set(results.n_alpha) == {5} and len(results) == 8
    done = sorted((out / "points").glob("*/done.json"))
    assert len(done) == 2 and all((d.parent / CNN.name).exists() for d in done)
    stamps = [d.stat().st_mtime_ns for d in done]
    again = sweep(CNN, grid, fixed, out, local, progress=False)
    pd.testing.assert_frame_equal(again, results)
    assert [d.stat().st_mtime_ns for d in done] == stamps  # the finished points were not re-run


def test_sweep_through_real_processes_four_points(tmp_path, processes, monkeypatch):
    monkeypatch.setenv("LMCNB_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "sweep"
    code = sweep_main([str(CNN), "--grid", "seed=range(0,4)", "-p", "profile", "smoke",
                       "-p", "model", "lenet5", "-p", "k1_steps", "[]", "-p", "k2_steps", "[]",
                       "--scheduler-file", str(processes), "--out", str(out)])
    assert code == 0
    results = pd.read_csv(out / "results.csv")
    assert (sorted(results.seed.unique()) == [0, 1, 2, 3]
            and len(pd.read_csv(out / "failures.csv")) == 0)
    assert (results.model == "lenet5").all() and set(results.split) == {"train", "test"}


CRASHING = {
    "cells": [
        {"id": "parameters", "cell_type": "code", "metadata": {"tags": ["parameters"]},
         "source": "marker = ''", "outputs": [], "execution_count": None},
        {"id": "crash", "cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "import os\nif not os.path.exists(marker):\n    open(marker, 'w').close()\n"
                   "    os.kill(os.getpid(), 9)  # the kernel dies on the first try only"},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5}


@pytest.mark.parametrize("executor", ["serial", "local"])
def test_a_dead_kernel_is_retried(tmp_path, executor, request):
    notebook = tmp_path / "crash.ipynb"
    notebook.write_text(json.dumps(CRASHING))
    ex = request.getfixturevalue("local") if executor == "local" else get_executor("serial")
    sweep(notebook, {"marker": [str(tmp_path / "m1")]}, {}, tmp_path / "out", ex, progress=False)
    assert ((tmp_path / "m1").exists()
            and len(list((tmp_path / "out").glob("points/*/done.json"))) == 1)
    assert len(pd.read_csv(tmp_path / "out" / "failures.csv")) == 0


def test_executor_names():
    assert isinstance(get_executor("serial"), Serial) and isinstance(get_executor(None), Serial)
    for bad in ("locale", "local:0", "local:x", 3):
        with pytest.raises(ValueError, match="executor"):
            get_executor(bad)
    with pytest.raises(ValueError, match="needs"):
        Serial().run([Task("b", max, (1,), deps=("a",)), Task("a", min, (1, 2))], ["b"])
