"""One number whatever runs it: a run trains to the same bytes on a machine of 1, 2 or 4 cores
(real processes, `$LMCNB_THREADS` unset, pinned to that many cores before torch is imported; a
machine with fewer cores than asked reports them, as lmcnb and torch would read them), because
every step computes with the fixed budget of `lmcnb.core.device.TASK_THREADS` threads; and a run
trained by another engine version is another run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lmcnb.core.device import TASK_THREADS
from lmcnb.core.rng import Seeds
from lmcnb.experiments.runs import RunSpec
from lmcnb.train import recipe
from lmcnb.train.recipe import TrainConfig

# A child process: a machine of `cores` cores (pinned, or reported where this one has fewer), torch
# at its default for that machine, then one short run with dropout, augmentation and a schedule;
# it writes the final weights and the thread counts its steps computed with.
CHILD = textwrap.dedent("""
    import json, os, sys
    cores, root, budget = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    have = sorted(os.sched_getaffinity(0))
    if cores <= len(have):
        os.sched_setaffinity(0, have[:cores])
    else:  # more cores than this machine has: report them as an n-core machine would
        os.cpu_count = lambda: cores
        os.sched_getaffinity = lambda pid: set(range(cores))
    import torch
    torch.set_num_threads(len(os.sched_getaffinity(0)))  # torch's default on such a machine
    default = torch.get_num_threads()

    import lmcnb.core.device
    from lmcnb.core.ref import Ref
    from lmcnb.core.rng import Seeds
    from lmcnb.data.tensors import TensorData
    from lmcnb.experiments.runs import Run, RunSpec
    from lmcnb.models.cnn import ReducedVGG
    from lmcnb.train.recipe import TrainConfig
    from lmcnb.train.trainer import Trainer

    lmcnb.core.device.TASK_THREADS = budget  # the budget under test (the library's, or another)
    seen, step = set(), Trainer.step
    def spy(trainer):
        seen.add(torch.get_num_threads())
        return step(trainer)
    Trainer.step = spy
    g = torch.Generator().manual_seed(0)
    data = TensorData(torch.randn(96, 3, 32, 32, generator=g),
                      torch.randint(0, 10, (96,), generator=g))
    cfg = TrainConfig(batch_size=32, max_steps=5, lr=1e-3, augment=True, schedule="cosine",
                      warmup_steps=1)
    spec = RunSpec("reduced_vgg", "synthetic", cfg, Seeds(1, 2, 3, 4), data="synthetic")
    run = Run(spec, root, lambda: ReducedVGG(10), data, "cpu",
              augment=Ref.of("augment", "crop_flip", dataset="cifar10"))
    weights = run.ensure_weights()
    torch.save(weights, os.path.join(root, "weights.pt"))
    print(json.dumps({"cores": len(os.sched_getaffinity(0)), "default_threads": default,
                      "step_threads": sorted(seen)}))
""")


MACHINES = ((1, TASK_THREADS), (2, TASK_THREADS), (4, TASK_THREADS), (2, 2))  # (cores, budget)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[tuple[int, int], tuple[dict, dict]]:
    """(cores, budget) → (what the child saw, its final weights); the children run side by side."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LMCNB_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    roots = {m: tmp_path_factory.mktemp(f"cores{m[0]}-budget{m[1]}") for m in MACHINES}
    children = {m: subprocess.Popen([sys.executable, "-c", CHILD, str(m[0]), str(roots[m]),
                                     str(m[1])], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for m in MACHINES}
    out = {}
    for m, child in children.items():
        stdout, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr[-3000:]
        weights = torch.load(roots[m] / "weights.pt", weights_only=True)
        out[m] = json.loads(stdout.strip().splitlines()[-1]), weights
    return out


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_trains_to_the_same_bytes_on_1_2_and_4_cores(trained):
    machines = {cores: trained[cores, TASK_THREADS] for cores in (1, 2, 4)}
    for cores, (seen, _) in machines.items():
        assert seen["cores"] == seen["default_threads"] == cores  # torch would use them all
        assert seen["step_threads"] == [TASK_THREADS]  # every step computes with the budget
    reference = machines[1][1]
    assert all(_same(weights, reference) for _, weights in machines.values())


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores")
def test_the_check_is_real_another_thread_count_gives_other_bytes(trained):
    """The same run with a budget of 2 threads reduces in another order: other last bits."""
    seen, two = trained[2, 2]
    assert seen["step_threads"] == [2]
    assert not _same(two, trained[2, TASK_THREADS][1])


def test_another_engine_version_is_another_run(monkeypatch):
    spec = RunSpec("lenet5", "mnist", TrainConfig(lr=0.01), Seeds(1, 2, 3, 4))
    now = spec.run_id
    assert spec.identity()["engine"] == recipe.ENGINE_VERSION
    monkeypatch.setattr(recipe, "ENGINE_VERSION", recipe.ENGINE_VERSION + 1)
    assert spec.run_id != now
    monkeypatch.setattr(recipe, "ENGINE_VERSION", 1)  # the first engine: names as they were
    assert "engine" not in spec.identity() and spec.run_id != now
    assert spec.identity() == {"model": "lenet5", "dataset": "mnist", "train": {"lr": 0.01},
                               "seeds": {"init": 1, "data_order": 2, "augmentation": 3,
                                         "dropout": 4}}
