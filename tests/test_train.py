"""Tests for the training engine (lmcnb.train), RNG streams (lmcnb.rng), run identity, spawning and
resumption (lmcnb.runs, lmcnb.study)."""

import importlib.util
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import assert_same
from torch import nn

from lmcnb.core.checkpoint import load_state, save_state
from lmcnb.core.device import deterministic_kernels
from lmcnb.core.ref import Ref
from lmcnb.core.rng import STREAMS, RngStreams, Seeds, derive_seed
from lmcnb.core.steps import parse_steps
from lmcnb.data.augment import crop_and_flip
from lmcnb.data.tensors import TensorData
from lmcnb.experiments.runs import Run, RunSpec
from lmcnb.experiments.setup import Setup
from lmcnb.experiments.study import spawn_study
from lmcnb.models.cnn import LeNet5
from lmcnb.train.recipe import ENGINE_VERSION, TrainConfig, lr_at
from lmcnb.train.trainer import EpochSampler, Trainer

pytestmark = pytest.mark.usefixtures("single_thread")

# -- helpers -----------------------------------------------------------------------------------
def _same_weights(a: dict, b: dict) -> bool:
    assert a.keys() == b.keys()
    return all(torch.equal(a[k], b[k]) for k in a)


class TinyDropNet(nn.Module):
    """A small CNN with dropout, fast enough for many steps in a unit test."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
                                 nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.net(x)


def _images(n=64, size=16, seed=0, classes=10) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randn(n, 3, size, size, generator=g),
                      torch.randint(0, classes, (n,), generator=g))


_SEEDS = Seeds(1, 2, 3, 4)  # frozen, so one shared default is safe


def _trainer(model_fn, cfg: TrainConfig, data: TensorData, seeds: Seeds = _SEEDS,
             **kw) -> Trainer:
    streams = RngStreams(seeds)
    with streams.active("init"):
        model = model_fn()
    return Trainer(model, cfg, data, streams, **kw)


def _record_batches(trainer: Trainer) -> list:
    seen, original = [], trainer.sampler.next

    def next_batch():
        idx = original()
        seen.append(idx.clone())
        return idx

    trainer.sampler.next = next_batch
    return seen


class _StepCounter:
    """Counts optimizer steps (wraps Trainer.step), or forbids them."""

    def __init__(self, monkeypatch, forbid: bool = False):
        self.n = 0
        original = Trainer.step

        def step(trainer):
            if forbid:
                raise AssertionError("training happened where everything should have been cached")
            self.n += 1
            return original(trainer)

        monkeypatch.setattr(Trainer, "step", step)


# -- step counts and schedules -----------------------------------------------------------------
def test_parse_steps():
    assert parse_steps(500, 30) == 500
    assert parse_steps("500it", 30) == 500
    assert parse_steps("500", 30) == 500
    assert parse_steps("2ep", 30) == 60
    assert parse_steps("0.5ep", 30) == 15
    assert parse_steps("1.5ep", 10) == 15
    assert parse_steps(0, 30) == 0 and parse_steps("0ep", 30) == 0
    for bad in ("500 steps", "ep", "it", "2 epochs", "2epochs", "1e3", "", -1, "-1it", "-2ep", 2.5,
                None, True):
        with pytest.raises(ValueError):
            parse_steps(bad, 30)
    with pytest.raises(ValueError, match="'2ep'"):  # the message shows the accepted forms
        parse_steps("two", 30)


def test_steps_per_epoch_counts_accumulation():
    assert TrainConfig(batch_size=64).steps_per_epoch(1000) == 15
    assert TrainConfig(batch_size=64, accum_steps=2).steps_per_epoch(1000) == 7
    with pytest.raises(ValueError, match="smaller than one step"):
        TrainConfig(batch_size=64, accum_steps=2).steps_per_epoch(100)


def test_warmup_cosine_schedule_values():
    cfg = TrainConfig(lr=1e-2, min_lr=1e-4, schedule="cosine", warmup_steps=10)
    total, spe = 110, 50
    assert lr_at(cfg, 0, total, spe) == pytest.approx(1e-3)  # (step + 1) / warmup
    assert lr_at(cfg, 4, total, spe) == pytest.approx(5e-3)
    assert lr_at(cfg, 9, total, spe) == pytest.approx(1e-2)
    assert lr_at(cfg, 10, total, spe) == pytest.approx(1e-2)  # cosine starts at the peak
    assert lr_at(cfg, 60, total, spe) == pytest.approx((1e-2 + 1e-4) / 2)  # halfway
    assert lr_at(cfg, 35, total, spe) == pytest.approx(
        1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + math.cos(math.pi / 4)))
    assert lr_at(cfg, 110, total, spe) == pytest.approx(1e-4)
    # Warmup in epochs.
    cfg_ep = TrainConfig(lr=1e-2, schedule="cosine", warmup_steps="0.2ep")
    assert lr_at(cfg_ep, 0, total, spe) == pytest.approx(1e-3)
    # Constant after warmup.
    assert lr_at(TrainConfig(lr=0.5, warmup_steps=4), 1, 100, 10) == pytest.approx(0.25)
    assert lr_at(TrainConfig(lr=0.5, warmup_steps=4), 50, 100, 10) == 0.5


def test_step_schedule_values():
    cfg = TrainConfig(lr=0.1, schedule="step", step_milestones=(30, "2ep"), step_gamma=0.1)
    spe = 20  # "2ep" = step 40
    assert lr_at(cfg, 0, 100, spe) == pytest.approx(0.1)
    assert lr_at(cfg, 29, 100, spe) == pytest.approx(0.1)
    assert lr_at(cfg, 30, 100, spe) == pytest.approx(0.01)
    assert lr_at(cfg, 39, 100, spe) == pytest.approx(0.01)
    assert lr_at(cfg, 40, 100, spe) == pytest.approx(0.001)
    assert lr_at(cfg, 99, 100, spe) == pytest.approx(0.001)
    with pytest.raises(ValueError, match="constant, cosine, step"):
        lr_at(TrainConfig(schedule="linear"), 0, 10, 10)


def test_trainer_applies_the_schedule():
    cfg = TrainConfig(batch_size=16, max_steps=8, lr=0.1, min_lr=0.0, schedule="cosine",
                      warmup_steps=2, optimizer="sgd")
    t = _trainer(lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 10)), cfg, _images())
    seen = []
    for _ in range(8):
        t.step()
        seen.append(t.optimizer.param_groups[0]["lr"])
    assert seen == pytest.approx([lr_at(cfg, s, 8, 4) for s in range(8)])
    assert seen[0] == pytest.approx(0.05) and seen[1] == pytest.approx(0.1) and seen[-1] < seen[2]


def test_unknown_optimizer_lists_valid():
    with pytest.raises(ValueError, match="adam, adamw, sgd"):
        _trainer(lambda: nn.Linear(2, 2), TrainConfig(optimizer="lamb", batch_size=4),
                 TensorData(torch.zeros(8, 2), torch.zeros(8, dtype=torch.long)))


# -- engine features ---------------------------------------------------------------------------
def test_gradient_accumulation_equals_one_larger_batch():
    """accum_steps=2 with batch b = one step with batch 2b, when the sampler yields the same
    examples.

    The sampler draws b·accum examples per optimizer step (so a step never spans two epochs) and
    the trainer splits them into micro-batches: with the same seed they are the examples of the
    big batch.
    No dropout or BatchNorm (LeNet5), SGD without momentum.
    """
    data = TensorData(torch.randn(128, 1, 28, 28, generator=torch.Generator().manual_seed(0)),
                      torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(1)))
    common = dict(max_steps=6, optimizer="sgd", lr=0.1, momentum=0.0)
    acc = _trainer(LeNet5, TrainConfig(batch_size=16, accum_steps=2, **common), data)
    big = _trainer(LeNet5, TrainConfig(batch_size=32, **common), data)
    small = _trainer(LeNet5, TrainConfig(batch_size=16, **common), data)
    acc_batches, big_batches = _record_batches(acc), _record_batches(big)
    for _ in range(6):  # 1.5 epochs
        loss_acc, loss_big = acc.step(), big.step()
        small.step()
        assert loss_acc == pytest.approx(loss_big, abs=1e-6)
    # One draw of 2b examples per optimizer step, split in two: the same examples as the big batch.
    assert [b.tolist() for b in acc_batches] == [b.tolist() for b in big_batches]
    for (name, p), q in zip(acc.model.named_parameters(), big.model.parameters()):
        assert (p - q).abs().max() <= 1e-6, name
    # The check can fail: plain batch b is a different training run.
    assert max((p - q).abs().max()
               for p, q in zip(small.model.parameters(), big.model.parameters())) > 1e-3


def test_gradient_clipping_bounds_the_update():
    """With SGD (lr 1, no momentum) the update is the clipped gradient: its norm is at most the
    clip."""
    data = _images(32, size=28, seed=3)
    data = TensorData(data.x[:, :1], data.y)

    def update_norm(clip):
        t = _trainer(LeNet5, TrainConfig(batch_size=32, max_steps=1, optimizer="sgd", lr=1.0,
                                         momentum=0.0, grad_clip=clip), data)
        before = [p.detach().clone() for p in t.model.parameters()]
        t.step()
        return math.sqrt(sum(float((p.detach() - b).pow(2).sum())
                             for p, b in zip(t.model.parameters(), before)))

    free = update_norm(None)
    assert free > 0.05
    assert update_norm(0.01) == pytest.approx(0.01, rel=1e-4)
    assert update_norm(free * 0.5) == pytest.approx(free * 0.5, rel=1e-4)
    assert update_norm(free * 10) == pytest.approx(free, rel=1e-6)  # a loose clip changes nothing


def test_hook_runs_after_each_optimizer_step():
    calls = []

    def mask(trainer):
        calls.append(trainer.progress.step)
        with torch.no_grad():
            trainer.model.features[0].weight[0].zero_()  # prune one filter

    data = TensorData(_images(64, size=28).x[:, :1], _images(64).y)
    t = _trainer(LeNet5, TrainConfig(batch_size=16, max_steps=5, lr=1e-2), data, hooks=[mask])
    assert t.model.features[0].weight[0].abs().sum() > 0
    t.run(5)
    assert calls == [1, 2, 3, 4, 5]  # once per optimizer step, after the step counter moved
    # Adam would move the pruned filter at every step: it stays zero only if the hook ran after it.
    assert t.model.features[0].weight[0].abs().sum() == 0
    assert t.model.features[0].weight[1].abs().sum() > 0


def _early_stopping_trainer(patience, max_steps=60):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 20, generator=g)
    y = torch.randint(0, 10, (128,), generator=g)
    train = TensorData(x, y)
    val = TensorData(x, (y + 1) % 10)  # the better the fit on train, the worse on val
    cfg = TrainConfig(batch_size=32, max_steps=max_steps, lr=0.05, eval_every=1, patience=patience)
    return _trainer(lambda: nn.Linear(20, 10), cfg, train, val_data=val)


def test_early_stopping_with_patience():
    t = _early_stopping_trainer(patience=3)
    t.run(t.total_steps)
    p = t.progress
    assert p.stopped_early and p.step < 60
    vals = [row["val_loss"] for row in p.log]
    assert len(vals) == p.step  # evaluated every step
    best = min(vals)
    # the last 3 evaluations did not improve
    assert p.best_val == best and vals.index(best) == len(vals) - 4
    assert all(v >= best for v in vals[-3:]) and p.bad_evals == 3
    # Without patience the same run goes to the end.
    t2 = _early_stopping_trainer(patience=None, max_steps=p.step + 5)
    t2.run(t2.total_steps)
    assert not t2.progress.stopped_early and t2.progress.step == p.step + 5


def test_early_stopping_in_a_run_is_recorded(tmp_path):
    t = _early_stopping_trainer(patience=2)
    spec = RunSpec("linear", "synthetic", t.cfg, Seeds(1, 2, 3, 4))
    run = Run(spec, tmp_path, lambda: nn.Linear(20, 10), t.data, val_data=t.val_data)
    final = run.ensure_trained().final_step()
    assert run.done["stopped_early"] and final < 60
    assert run.saved_steps() == [final]
    log = pd.read_csv(run.dir / "log.csv")
    assert log.step.tolist() == list(range(1, final + 1)) and "val_loss" in log


# -- the sampler and the RNG streams -----------------------------------------------------------
def test_epoch_sampler_permutations_and_state():
    sampler = EpochSampler(10, 3, torch.Generator().manual_seed(0))
    epoch1 = [sampler.next() for _ in range(3)]
    flat = torch.cat(epoch1).tolist()
    assert len(flat) == 9 and len(set(flat)) == 9  # one permutation, the last example dropped
    epoch2 = [sampler.next() for _ in range(3)]
    assert torch.cat(epoch2).tolist() != flat
    sampler.next()
    state = sampler.state_dict()
    expected = [sampler.next().tolist() for _ in range(5)]  # crosses the next epoch boundary
    other = EpochSampler(10, 3, torch.Generator().manual_seed(123))
    other.load_state_dict(state)
    assert [other.next().tolist() for _ in range(5)] == expected


def test_derive_seed_and_seeds():
    s = derive_seed(0, "trunk", 0, "init")
    assert s == derive_seed(0, "trunk", 0, "init") and 0 <= s < 2**63
    assert len({derive_seed(0, "trunk", 0, name) for name in STREAMS}) == 4
    assert derive_seed(1, "a") != derive_seed("1a") and derive_seed(1) != derive_seed(2)
    seeds = Seeds.from_base(7, "spawn", 3)
    assert seeds == Seeds.from_base(7, "spawn", 3)
    assert len({getattr(seeds, name) for name in STREAMS}) == 4
    assert Seeds.from_base(7, "spawn", 4).data_order != seeds.data_order
    changed = seeds.replace(dropout=5)
    assert changed.dropout == 5 and (changed.init, changed.data_order, changed.augmentation) == (
        seeds.init, seeds.data_order, seeds.augmentation)


def test_active_stream_swaps_the_global_generator_in_and_out():
    streams = RngStreams(Seeds(init=11, dropout=5))
    reference = torch.Generator().manual_seed(5)
    torch.manual_seed(999)
    outside = torch.get_rng_state()
    with streams.active("dropout"):
        first = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), outside)  # the global generator is untouched
    with streams.active("dropout"):
        second = torch.rand(3)  # the stream continues where it stopped
    assert torch.equal(first, torch.rand(3, generator=reference))
    assert torch.equal(second, torch.rand(3, generator=reference))
    with streams.active("init"):
        assert torch.equal(torch.rand(2),
                           torch.rand(2, generator=torch.Generator().manual_seed(11)))
    # An exception inside still restores the global generator.
    with pytest.raises(RuntimeError):
        with streams.active("augmentation"):
            torch.rand(5)
            raise RuntimeError
    assert torch.equal(torch.get_rng_state(), outside)


def test_stream_state_round_trip():
    a = RngStreams(Seeds(1, 2, 3, 4))
    for name in STREAMS:
        torch.rand(7, generator=a.gen[name])
    b = RngStreams(Seeds())
    b.load_state_dict(a.state_dict())
    for name in STREAMS:
        assert torch.equal(torch.rand(4, generator=a.gen[name]),
                           torch.rand(4, generator=b.gen[name])), name


def _drop_trainer(seeds, augment=True, steps=6):
    cfg = TrainConfig(batch_size=16, max_steps=steps, lr=1e-2, augment=augment)
    t = _trainer(TinyDropNet, cfg, _images(64), seeds, augment=crop_and_flip("cifar10"))
    batches = _record_batches(t)
    for _ in range(steps):  # 1.5 epochs
        t.step()
    return batches, t.model.state_dict()


def test_training_leaves_the_global_generator_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    _drop_trainer(Seeds(1, 2, 3, 4), steps=2)
    assert torch.equal(torch.get_rng_state(), before)


def test_four_streams_are_independent():
    base = Seeds(1, 2, 3, 4)
    batches, weights = _drop_trainer(base)
    again_batches, again_weights = _drop_trainer(base)
    assert (all(torch.equal(a, b) for a, b in zip(batches, again_batches))
            and _same_weights(weights, again_weights))

    for stream in ("init", "augmentation", "dropout"):
        b, w = _drop_trainer(base.replace(**{stream: 99}))
        # Same data order, whatever the other streams do...
        assert len(b) == len(batches) and all(torch.equal(x, y) for x, y in zip(b, batches)), stream
        # ...and the stream is really used: the weights change.
        assert not _same_weights(w, weights), stream

    b, w = _drop_trainer(base.replace(data_order=99))
    assert not all(torch.equal(x, y) for x, y in zip(b, batches))
    assert not _same_weights(w, weights)


def test_trainer_state_round_trip_continues_identically(tmp_path):
    def make(seeds):
        cfg = TrainConfig(batch_size=16, max_steps=20, lr=1e-2, augment=True, schedule="cosine",
                          warmup_steps=3)
        return _trainer(TinyDropNet, cfg, _images(64), seeds, augment=crop_and_flip("cifar10"))

    a = make(Seeds(1, 2, 3, 4))
    a.run(7)  # mid-epoch
    save_state(tmp_path / "s.safetensors", a.state_dict())
    # the checkpoint's streams replace the trainer's
    for seeds in (Seeds(1, 2, 3, 4), Seeds(5, 6, 7, 8)):
        b = make(seeds)
        b.load_state_dict(load_state(tmp_path / "s.safetensors"))
        assert b.progress.step == 7
        b.run(13)
        if seeds == Seeds(1, 2, 3, 4):
            a.run(13)
        assert_same(a.state_dict(), b.state_dict())


# -- runs: identity, determinism, caching ------------------------------------------------------
def test_run_identity():
    spec = RunSpec("lenet5", "mnist")
    engine = {"engine": ENGINE_VERSION}  # the engine's version, named from 2 on
    assert spec.identity() == {"model": "lenet5", "dataset": "mnist", **engine}  # no defaults
    explicit_defaults = RunSpec("lenet5", "mnist", TrainConfig(batch_size=64, lr=1e-3),
                                Seeds(0, 0, 0, 0))
    assert (explicit_defaults.identity() == spec.identity()
            and explicit_defaults.run_id == spec.run_id)
    lr = RunSpec("lenet5", "mnist", TrainConfig(lr=0.01, batch_size=64))
    assert lr.identity() == {"model": "lenet5", "dataset": "mnist", "train": {"lr": 0.01},
                             **engine}
    # same spec, same id
    assert RunSpec("lenet5", "mnist", TrainConfig(lr=0.01)).run_id == lr.run_id
    ids = {spec.run_id, lr.run_id,
           RunSpec("lenet5", "mnist", seeds=Seeds(data_order=1)).run_id,
           RunSpec("lenet5", "cifar10").run_id,
           RunSpec("lenet5", "mnist", model_args=(("num_classes", 20),)).run_id,
           RunSpec("lenet5", "mnist", parent=("x", 5), stop_at=10).run_id,
           RunSpec("lenet5", "mnist", TrainConfig(max_steps="2ep")).run_id}
    assert len(ids) == 7
    assert spec.run_id.startswith("lenet5-")
    assert RunSpec("lenet5", "mnist",
                   seeds=Seeds(data_order=1)).identity()["seeds"]["data_order"] == 1
    # The folder depends on the spec only: not on the root, the device or the checkpoint interval.
    data = TensorData(torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    r1 = Run(lr, Path("/a"), LeNet5, data, device="cpu", ckpt_every=5)
    r2 = Run(lr, Path("/b"), LeNet5, data, device="cuda", ckpt_every=50)
    assert r1.dir.name == r2.dir.name == lr.run_id and r1.dir != r2.dir


def _setup(root, data_dir, **kw) -> Setup:
    """LeNet5 on the first 512 training and 256 test images of MNIST (as `mnist_small`)."""
    cfg = TrainConfig(batch_size=64, max_steps=16, lr=2e-3, schedule="cosine", warmup_steps=2,
                      eval_every=8)
    split = {s: Ref.of("data", "vision", name="mnist", split=s, limit=n)
             for s, n in (("train", 512), ("test", 256))}
    return Setup("unit", "lenet5", "mnist512", Ref.of("model", "lenet5", num_classes=10),
                 split["train"], split["test"], cfg, root, n_alpha=3, eval_batch_size=256,
                 data_dir=str(data_dir), **kw)


def test_same_seeds_give_identical_weights(tmp_path, data_dir, mnist_small):
    one, two = (_setup(tmp_path / "one", data_dir).trunk(0),
                _setup(tmp_path / "two", data_dir).trunk(0))
    one.ensure_trained([8])
    two.ensure_trained([8])
    assert one.dir != two.dir and one.dir.name == two.dir.name
    assert json.loads((one.dir / "spec.json").read_text()) == json.loads(
        json.dumps(one.spec.identity(), default=list))
    for step in (8, 16):
        assert_same(one.ensure_state(step), two.ensure_state(step), f"step {step}")
    assert not _same_weights(one.ensure_weights(), one.ensure_weights(0))  # it did train

    # Another data order: other weights. LeNet5 has no dropout and no augmentation here, so changing
    # those two streams must change nothing at all.
    spec = one.spec
    other_order = Run(RunSpec(spec.model, spec.dataset, spec.train,
                              spec.seeds.replace(data_order=12345)),
                      tmp_path / "three", LeNet5, mnist_small[0])
    assert not _same_weights(other_order.ensure_weights(), one.ensure_weights())
    unused = Run(RunSpec(spec.model, spec.dataset, spec.train,
                         spec.seeds.replace(dropout=1, augmentation=2)),
                 tmp_path / "three", LeNet5, mnist_small[0])
    assert unused.dir != one.dir and _same_weights(unused.ensure_weights(), one.ensure_weights())


def test_finished_run_is_not_trained_again(tmp_path, data_dir, monkeypatch):
    run = _setup(tmp_path, data_dir).trunk(0)
    weights = run.ensure_weights()
    assert run.done == {"final_step": 16, "stopped_early": False, "steps_per_epoch": 8}
    def stamp(p):
        return p.stat().st_ino, p.stat().st_mtime_ns

    files = {p: stamp(p) for p in run.dir.rglob("*")
             if p.is_file() and p.name not in ("spec.json", ".lock")}
    _StepCounter(monkeypatch, forbid=True)
    again = _setup(tmp_path, data_dir).trunk(0)  # a new object, as in a re-executed notebook
    assert again.ensure_trained().final_step() == 16 and _same_weights(again.ensure_weights(),
                                                                       weights)
    # Nothing was rewritten: the results were only read.
    assert {p: stamp(p) for p in files} == files
    with pytest.raises(ValueError, match="no step"):
        again.ensure_weights(17)


def test_child_continues_schedule_and_optimizer_from_spawn_step(tmp_path, data_dir):
    setup = _setup(tmp_path, data_dir)
    trunk = setup.trunk(0)
    trunk.ensure_trained([8])
    kids = [setup.child(trunk, 8, 16, "spawn", 0, 8, c) for c in range(2)]
    states = [kid.ensure_state(16) for kid in kids]
    for kid, state in zip(kids, states):
        assert kid.spec.parent == (trunk.spec.run_id, 8) and kid.spec.stop_at == 16
        assert state["progress"]["step"] == 16
        # Adam's step count went on from the parent's 8: the optimizer state was not reset.
        assert all(float(s["step"]) == 16 for s in state["optimizer"]["state"].values())
        assert state["scheduler"]["lr"] == pytest.approx(lr_at(setup.train, 15, 16, 8))
        # the parent's log, then its own
        assert [row["step"] for row in state["progress"]["log"]] == [8, 16]
    assert not _same_weights(states[0]["model"], states[1]["model"])  # own data orders
    assert not _same_weights(states[0]["model"], trunk.ensure_weights())
    # Spawned at k = 0, a child starts from the trunk's initialization (its own init seed is
    # unused).
    kid0 = setup.child(trunk, 0, 16, "spawn", 0, 0, 0)
    assert _same_weights(kid0.ensure_weights(0), trunk.ensure_weights(0))
    assert not _same_weights(kid0.ensure_weights(), trunk.ensure_weights())


def test_spawned_child_is_identical_whether_the_parent_checkpoint_existed_or_was_recreated(
        tmp_path, data_dir, monkeypatch):
    k = 8
    results = {}
    for case, kept in (("saved", [k]), ("from_step_4", [4]), ("from_init", [])):
        setup = _setup(tmp_path / case, data_dir)
        trunk = setup.trunk(0)
        trunk.ensure_trained(kept)
        assert (k in trunk.saved_steps()) == (case == "saved")
        counter = _StepCounter(monkeypatch)
        child = setup.child(trunk, k, trunk.ensure_trained().final_step(), "spawn", 0, k, 0)
        weights = child.ensure_weights()
        monkeypatch.undo()
        # Recreating the parent's step-8 checkpoint starts from the nearest earlier one.
        expected_steps = {"saved": 0, "from_step_4": k - 4, "from_init": k}[case] + (16 - k)
        assert counter.n == expected_steps, case
        assert k in trunk.saved_steps()
        results[case] = (weights, trunk.ensure_state(k))
    for case in ("from_step_4", "from_init"):
        assert _same_weights(results[case][0], results["saved"][0]), case
        assert_same(results[case][1], results["saved"][1], case)


def test_finished_study_is_not_computed_again(tmp_path, data_dir, monkeypatch):
    setup = _setup(tmp_path, data_dir)
    first = spawn_study(setup, [0, "1ep"], n_children=2)
    assert set(first.barriers.spawn_step) == {0, 8} and len(first.curves) == 2 * 2 * 3
    _StepCounter(monkeypatch, forbid=True)
    second = spawn_study(_setup(tmp_path, data_dir), [0, 8], n_children=2)
    assert second.folder == first.folder
    pd.testing.assert_frame_equal(second.barriers, first.barriers, check_exact=False, rtol=1e-12)
    pd.testing.assert_frame_equal(second.curves, first.curves, check_exact=False, rtol=1e-12)
    # Without the study's tables, they are recomputed from the finished runs, still without
    # training.
    for name in ("curves.csv", "barriers.csv"):
        (first.folder / name).unlink()
    shutil.rmtree(first.folder / "pairs")
    third = spawn_study(_setup(tmp_path, data_dir), [0, 8], n_children=2)
    pd.testing.assert_frame_equal(third.barriers, first.barriers, check_exact=False, rtol=1e-9)
    pd.testing.assert_frame_equal(third.curves, first.curves, check_exact=False, rtol=1e-9)


# -- resuming a killed run ---------------------------------------------------------------------
WORKER = '''
"""Trains one run (ReducedVGG, dropout, augmentation, warmup + cosine, val set) and reports each
step."""
import sys
import time

import torch

from lmcnb.core.rng import Seeds
from lmcnb.data.augment import crop_and_flip
from lmcnb.data.tensors import TensorData
from lmcnb.experiments.runs import Run, RunSpec
from lmcnb.models.cnn import ReducedVGG
from lmcnb.train.recipe import TrainConfig

TOTAL = 40
CKPT_EVERY = 5
SPEC = RunSpec("reduced_vgg", "synthetic32",
               TrainConfig(batch_size=8, max_steps=TOTAL, lr=1e-3, schedule="cosine",
                           warmup_steps=5, augment=True, eval_every=10, patience=100),
               Seeds.from_base(7, "resume"))


def data(seed, n):
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randn(n, 3, 32, 32, generator=g),
                      torch.randint(0, 10, (n,), generator=g))


def make_run(root, hooks=()):
    return Run(SPEC, root, lambda: ReducedVGG(10), data(0, 128), augment=crop_and_flip("cifar10"),
               val_data=data(1, 32), hooks=hooks, ckpt_every=CKPT_EVERY)


if __name__ == "__main__":
    torch.set_num_threads(1)  # as in the test process (fixture single_thread)
    root, progress = sys.argv[1], sys.argv[2]

    def report(trainer):
        with open(progress, "a") as fh:
            fh.write(f"{trainer.progress.step}\\n")
        time.sleep(0.02)

    make_run(root, hooks=(report,)).ensure_trained().final_step()
'''


def _load_worker(path: Path):
    spec = importlib.util.spec_from_file_location("lmcnb_resume_worker", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_killed_run_resumes_to_bit_identical_weights(tmp_path, monkeypatch):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    worker = _load_worker(script)
    killed_root, progress = tmp_path / "killed", tmp_path / "progress.txt"
    kill_at = random.randint(worker.CKPT_EVERY + 2, worker.TOTAL - 8)

    proc = subprocess.Popen([sys.executable, str(script), str(killed_root), str(progress)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        step = 0
        while step < kill_at:
            assert proc.poll() is None, f"worker ended early: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, "worker too slow"
            time.sleep(0.005)
            lines = progress.read_text().split() if progress.exists() else []
            step = int(lines[-1]) if lines else 0
    finally:
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
    assert proc.returncode == -9

    run = worker.make_run(killed_root)
    assert run.done is None, "the run finished before it was killed"
    last = load_state(run.dir / "last.safetensors")["progress"]["step"]
    assert 0 < last < worker.TOTAL and last % worker.CKPT_EVERY == 0
    assert last >= kill_at - worker.CKPT_EVERY  # the kill came after step kill_at

    counter = _StepCounter(monkeypatch)
    assert run.ensure_trained().final_step() == worker.TOTAL
    assert counter.n == worker.TOTAL - last, f"killed after step {step}, resumed from {last}"
    monkeypatch.undo()
    assert not (run.dir / "last.safetensors").exists()

    straight = worker.make_run(tmp_path / "straight")
    straight.ensure_trained().final_step()
    assert_same(load_state(run.ckpt_path(worker.TOTAL)),
                 load_state(straight.ckpt_path(worker.TOTAL)),
                 f"killed after step {step}, resumed from {last}")
    assert (run.dir / "log.csv").read_text() == (straight.dir / "log.csv").read_text()
    assert run.done == straight.done


def test_accelerators_get_deterministic_kernels():
    """A Trainer on an accelerator switches torch to deterministic kernels (tests/test_devices.py
    checks the bits on a GPU); on the CPU nothing changes."""
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark,
              os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    deterministic_kernels("cpu")
    assert (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark,
            os.environ.get("CUBLAS_WORKSPACE_CONFIG")) == before
    try:
        deterministic_kernels("cuda")  # sets torch's switches; needs no GPU
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert cudnn.deterministic and not cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == (before[3] or ":4096:8")
    finally:
        torch.use_deterministic_algorithms(before[0])
        cudnn.deterministic, cudnn.benchmark = before[1], before[2]
        if before[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
