"""A `Setup`: one model on one dataset, its recipe and its evaluation, as plain data — and the
trunks and children it makes.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..core.checks import at_least, batches_or_all, flag
from ..core.files import atomic_write_text
from ..core.ref import Ref
from ..core.rng import Seeds, derive_seed
from ..core.steps import parse_steps, step_list
from ..data.tensors import TensorData
from ..lmc.interpolate import alpha_grid
from ..lmc.metrics import STABLE_THRESHOLD
from ..train.recipe import TrainConfig
from .catalog import build, check
from .runs import Run, RunSpec, check_endpoint, data_fingerprint, hook_identity

NOISE = ("data_order", "augmentation", "dropout")  # the streams in which children differ
# What a study's tables hold; a new version names new folders. 2: each barrier's evaluation
# noise (`<barrier>_eval_sd`) beside it.
TABLES_VERSION = 2


@dataclass(frozen=True)
class Setup:
    """One model on one dataset, its recipe and its evaluation, as plain data.

    `net`, `train_data`, `test_data` (and `augment`, `val_data`) are registry references, so any
    worker rebuilds them from its own data root (`data_dir`, else its `$LMCNB_DATA`).
    `noise` names the streams in which children differ; the others they inherit from the parent.
    `endpoint` is the state of every run that is compared: its final one, or its best on
    `val_data` (`"best_val"`; see `lmcnb.experiments.runs.Run`).
    `hooks` (`Ref.of("hook", ...)`: pruning, a fixed mask) run in every run of the setup;
    `child_hooks` in spawned children only, e.g. a mask that children of a dense trunk keep.
    """

    chapter: str
    model: str
    dataset: str
    net: Ref
    train_data: Ref
    test_data: Ref
    train: TrainConfig
    runs_dir: str
    augment: Ref | None = None
    val_data: Ref | None = None
    model_args: tuple[tuple[str, Any], ...] = ()
    language_model: bool = False
    device: str = "auto"
    data_dir: str | None = None
    seed: int = 0
    n_alpha: int = 30
    eval_iters: int | str = "all"
    train_eval_iters: int | str | None = None  # batches of the train split (None: eval_iters)
    eval_batch_size: int = 1000
    bn_reset: bool = False
    bn_reset_examples: int = 2000
    threshold: float = STABLE_THRESHOLD
    noise: tuple[str, ...] = NOISE
    endpoint: str = "final"
    hooks: tuple[Ref, ...] = ()
    child_hooks: tuple[Ref, ...] = ()

    def __post_init__(self) -> None:
        """Every registry name and evaluation setting is checked here, before anything trains."""
        object.__setattr__(self, "runs_dir", str(self.runs_dir))
        check([self.net, self.train_data, self.test_data, self.augment, self.val_data,
               self.hooks, self.child_hooks])
        unknown = sorted(set(self.noise) - set(NOISE))
        if unknown or not self.noise:
            raise ValueError(f"noise must name one or more of {', '.join(NOISE)} "
                             f"(got {self.noise!r})")
        alpha_grid(self.n_alpha)
        batches_or_all("eval_iters", self.eval_iters)
        if self.train_eval_iters is not None:
            batches_or_all("train_eval_iters", self.train_eval_iters)
        at_least("eval_batch_size", self.eval_batch_size, 1)
        at_least("bn_reset_examples", self.bn_reset_examples, 1)
        at_least("seed", self.seed, 0)
        flag("bn_reset", self.bn_reset)
        check_endpoint(self.endpoint, self.val_data)

    def load(self, ref: Ref | None) -> TensorData | None:
        """The data `ref` names, built in this process (None for None)."""
        return None if ref is None else build(ref, self.data_dir)

    @property
    def data_fingerprint(self) -> str:
        """What a run's identity records of its training (and early-stopping) data."""
        val = self.load(self.val_data) if self.train.patience is not None else None
        return _fingerprint(self.train_data, self.val_data if val is not None else None,
                            self.data_dir)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch of the training data."""
        return self.train.steps_per_epoch(len(self.load(self.train_data)))

    @property
    def total_steps(self) -> int:
        """The length of training, in optimizer steps."""
        return parse_steps(self.train.max_steps, self.steps_per_epoch)

    def steps(self, values: Sequence[int | str], name: str = "spawn steps",
              optional: bool = False) -> list[int]:
        """Spawn steps as ints, checked against the length of training; an empty list is refused
        unless the steps are `optional` (a study that is then not run)."""
        out = sorted({parse_steps(v, self.steps_per_epoch) for v in step_list(name, values)})
        if not out and not optional:
            raise ValueError(f"{name} is empty: give at least one step, e.g. [0]")
        beyond = [s for s in out if s > self.total_steps]
        if beyond:
            raise ValueError(f"spawn step(s) {beyond} are beyond the end of training "
                             f"({self.total_steps} steps = {self.train.max_steps!r})")
        return out

    # -- runs ---------------------------------------------------------------------------
    def run(self, spec: RunSpec, parent: Run | None = None, hooks: tuple[Ref, ...] = ()) -> Run:
        """The run of `spec` in this setup's runs folder, with its data, augmentation and hooks."""
        return Run(spec, Path(self.runs_dir) / "train", self.net, self.train_data, self.device,
                   self.augment, self.val_data, hooks, parent=parent, data_dir=self.data_dir,
                   endpoint=self.endpoint, eval_batch_size=self.eval_batch_size)

    def trunk(self, init: int) -> Run:
        """The run from initialization `init` to the end of training (the main branch)."""
        seeds = Seeds.from_base(self.seed, "trunk", init)
        spec = RunSpec(self.model, self.dataset, self.train, seeds, self.model_args,
                       self.data_fingerprint, hooks=tuple(hook_identity(h) for h in self.hooks))
        return self.run(spec, hooks=self.hooks)

    def child(self, parent: Run, step: int, stop_at: int, *tag: object) -> Run:
        """A run spawned from `parent` at `step`, with its own seeds for the `noise` streams."""
        p = parent.spec
        seeds = p.seeds.replace(**{s: derive_seed(self.seed, *tag, s) for s in self.noise})
        hooks = self.hooks + self.child_hooks
        spec = RunSpec(p.model, p.dataset, replace(p.train, patience=None), seeds, p.model_args,
                       p.data, parent=(p.run_id, step), stop_at=stop_at,
                       hooks=tuple(hook_identity(h) for h in hooks))
        return self.run(spec, parent, hooks)

    def folder(self, kind: str, spec: dict[str, Any]) -> Path:
        """A study's folder, named by a hash of what defines it (`study.json` beside its tables)."""
        ident = {"kind": kind, "trunk": self.trunk(0).spec.identity(), "n_alpha": self.n_alpha,
                 "eval_iters": self.eval_iters, "eval_batch_size": self.eval_batch_size,
                 "bn_reset": self.bn_reset, "bn_reset_examples": self.bn_reset_examples,
                 "threshold": self.threshold, "tables": TABLES_VERSION, **spec}
        if self.train_eval_iters is not None:
            ident["train_eval_iters"] = self.train_eval_iters
        if self.noise != NOISE:
            ident["noise"] = list(self.noise)
        if self.endpoint != "final":
            ident["endpoint"] = [self.endpoint, self.load(self.val_data).fingerprint()]
        if self.child_hooks:
            ident["child_hooks"] = [hook_identity(h) for h in self.child_hooks]
        digest = hashlib.sha256(
            json.dumps(ident, sort_keys=True, default=list).encode()).hexdigest()[:12]
        folder = Path(self.runs_dir) / self.chapter / f"{self.model}-{kind}-{digest}"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "study.json", json.dumps(ident, indent=1, default=list))
        return folder


@functools.lru_cache(maxsize=64)
def _fingerprint(train: Ref, val: Ref | None, data_dir: str | None) -> str:
    return data_fingerprint(build(train, data_dir), build(val, data_dir))
