"""Studies: spawn-at-k and the main-branch (k1, k2) grid, planned as task graphs, written as tidy
tables.

A `Setup` describes one model on one dataset as plain data (registry references, the recipe,
the evaluation). A study first plans its task graph — trunk runs, children that depend on their
parent's checkpoint at k, pair evaluations that depend on two runs — and an executor
(`lmcnb.executors`: serial, or a Dask cluster) runs it. The study then writes `curves.csv` and
`barriers.csv` into its own folder, named like a run by a hash of what defines it.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .data import TensorData
from .executors import Executor, Task, get_executor
from .files import atomic_write_text
from .interpolate import alpha_grid, eval_subset, has_batchnorm, pair_tables
from .metrics import STABLE_THRESHOLD, aggregate, onset
from .params import at_least, batches_or_all, flag, step_list
from .registry import Ref, build
from .rng import Seeds, derive_seed
from .runs import Run, RunSpec, check_endpoint, data_fingerprint, folder_lock, hook_identity
from .sweep import RESULTS_ENV
from .train import TrainConfig, parse_steps

BARRIER_COLUMNS = ["loss_barrier", "error_barrier", "instability_loss", "instability_error",
                   "midpoint_loss", "alpha_star", "l2_distance", "l2_relative", "disagreement"]
NOISE = ("data_order", "augmentation", "dropout")  # the streams in which children differ


@dataclass(frozen=True)
class Setup:
    """One model on one dataset, its recipe and its evaluation, as plain data.

    `net`, `train_data`, `test_data` (and `augment`, `val_data`) are registry references, so any
    worker rebuilds them from its own data root (`data_dir`, else its `$LMCNB_DATA`).
    `noise` names the streams in which children differ; the others they inherit from the parent.
    `endpoint` is the state of every run that is compared: its final one, or its best on
    `val_data` (`"best_val"`; see `lmcnb.runs.Run`).
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
    eval_batch_size: int = 1000
    bn_reset: bool = False
    bn_reset_examples: int = 2000
    threshold: float = STABLE_THRESHOLD
    noise: tuple[str, ...] = NOISE
    endpoint: str = "final"
    hooks: tuple[Ref, ...] = ()
    child_hooks: tuple[Ref, ...] = ()

    def __post_init__(self) -> None:
        """Every evaluation setting is checked here, before anything trains."""
        object.__setattr__(self, "runs_dir", str(self.runs_dir))
        unknown = sorted(set(self.noise) - set(NOISE))
        if unknown or not self.noise:
            raise ValueError(f"noise must name one or more of {', '.join(NOISE)} "
                             f"(got {self.noise!r})")
        alpha_grid(self.n_alpha)
        batches_or_all("eval_iters", self.eval_iters)
        at_least("eval_batch_size", self.eval_batch_size, 1)
        at_least("bn_reset_examples", self.bn_reset_examples, 1)
        at_least("seed", self.seed, 0)
        flag("bn_reset", self.bn_reset)
        check_endpoint(self.endpoint, self.val_data)

    def load(self, ref: Ref | None) -> TensorData | None:
        return None if ref is None else build(ref, self.data_dir)

    @property
    def data_fingerprint(self) -> str:
        val = self.load(self.val_data) if self.train.patience is not None else None
        return _fingerprint(self.train_data, self.val_data if val is not None else None,
                            self.data_dir)

    @property
    def steps_per_epoch(self) -> int:
        return self.train.steps_per_epoch(len(self.load(self.train_data)))

    @property
    def total_steps(self) -> int:
        return parse_steps(self.train.max_steps, self.steps_per_epoch)

    def steps(self, values: Sequence[int | str], name: str = "spawn steps") -> list[int]:
        """Spawn steps as ints, checked against the length of training."""
        out = sorted({parse_steps(v, self.steps_per_epoch) for v in step_list(name, values)})
        beyond = [s for s in out if s > self.total_steps]
        if beyond:
            raise ValueError(f"spawn step(s) {beyond} are beyond the end of training "
                             f"({self.total_steps} steps = {self.train.max_steps!r})")
        return out

    # -- runs ---------------------------------------------------------------------------
    def run(self, spec: RunSpec, parent: Run | None = None, hooks: tuple[Ref, ...] = ()) -> Run:
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
        ident = {"kind": kind, "trunk": self.trunk(0).spec.identity(), "n_alpha": self.n_alpha,
                 "eval_iters": self.eval_iters, "eval_batch_size": self.eval_batch_size,
                 "bn_reset": self.bn_reset, "bn_reset_examples": self.bn_reset_examples,
                 "threshold": self.threshold, **spec}
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


@functools.lru_cache(maxsize=2)
def _eval_data(setup: Setup) -> dict[str, Any]:
    """The evaluation samples, a model to interpolate in, and the BN-reset sample (per process)."""
    from .params import pick_device

    device, bs = pick_device(setup.device), setup.eval_batch_size
    train, test = setup.load(setup.train_data), setup.load(setup.test_data)
    with torch.random.fork_rng():
        model = build(setup.net).to(device)
    return {"splits": {"train": eval_subset(train, setup.eval_iters, bs, device, seed=1),
                       "test": eval_subset(test, setup.eval_iters, bs, device, seed=2)},
            "model": model,
            "bn": eval_subset(train, max(1, setup.bn_reset_examples // bs), bs, device, seed=3)}


def compare(setup: Setup, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], folder: Path,
            key: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves and barriers of one pair (cached in `folder/pairs`), with `key` as leading columns."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    curve_path = folder / "pairs" / f"{name}.curves.csv"
    barrier_path = folder / "pairs" / f"{name}.barriers.csv"
    cached = read_table(curve_path), read_table(barrier_path)
    if cached[0] is not None and cached[1] is not None:
        return cached
    ev = _eval_data(setup)
    reset = setup.bn_reset and has_batchnorm(ev["model"])
    curves_df, barriers_df = pair_tables(
        ev["model"], a, b, ev["splits"], alpha_grid(setup.n_alpha),
        batch_size=setup.eval_batch_size, bn_reset_data=ev["bn"] if reset else None,
        language_model=setup.language_model, threshold=setup.threshold)
    lead = {"chapter": setup.chapter, "model": setup.model, "dataset": setup.dataset, **key}
    for df in (curves_df, barriers_df):
        for i, (col, val) in enumerate(lead.items()):
            df.insert(i, col, val)
    write_table(curve_path, curves_df)
    write_table(barrier_path, barriers_df)
    return curves_df, barriers_df


def write_table(path: Path, table: pd.DataFrame) -> None:
    """`table` as CSV, then its sha256 beside it (`<name>.sha256`), both written atomically."""
    text = table.to_csv(index=False)
    atomic_write_text(path, text)
    atomic_write_text(Path(f"{path}.sha256"), hashlib.sha256(text.encode()).hexdigest() + "\n")


def read_table(path: Path) -> pd.DataFrame | None:
    """A table `write_table` wrote, if it is there and matches its digest; else None (a damaged
    table is reported and will be recomputed from its inputs)."""
    digest = Path(f"{path}.sha256")
    if not (path.exists() and digest.exists()):
        return None
    if hashlib.sha256(path.read_bytes()).hexdigest() != digest.read_text().strip():
        warnings.warn(f"{path} does not match its digest (damaged or edited): recomputing it",
                      stacklevel=2)
        return None
    return pd.read_csv(path)


@dataclass
class Results:
    """A study's tables: one row per pair and α (`curves`), one per pair and split (`barriers`)."""

    curves: pd.DataFrame
    barriers: pd.DataFrame
    folder: Path
    threshold: float = STABLE_THRESHOLD

    def summary(self, by: Sequence[str] = ("spawn_step", "split", "bn_reset")) -> pd.DataFrame:
        """Mean and 95% CI of every barrier over replicates."""
        extra = ["relative_ppl_instability"] if "relative_ppl_instability" in self.barriers else []
        by = [b for b in by if b in self.barriers]
        return aggregate(self.barriers, by, BARRIER_COLUMNS + extra + ["error_a", "error_b"])

    def onset(self, split: str = "test", column: str | None = None) -> int | None:
        """k*: smallest spawn step whose mean instability stays below the threshold."""
        if column is None:
            column = ("relative_ppl_instability" if "relative_ppl_instability" in self.barriers
                      else "instability_error")
        s = self.summary()
        s = s[(s.split == split)
              & (~s.get("bn_reset", pd.Series(False, index=s.index)).astype(bool))]
        return onset(s.spawn_step.tolist(), s[column].tolist(), self.threshold)


# -- the task graph ------------------------------------------------------------------------------
def _train_task(run: Run, steps: tuple[int, ...]) -> Run:
    """Train `run` to its end with checkpoints at `steps`; returns the (finished) run."""
    run.ensure(steps)
    return run


def _child_task(setup: Setup, step: int, stop_at: int | None, tag: tuple, parent: Run) -> Run:
    """Spawn a child of the finished `parent` at `step` and train it to `stop_at` (default: the
    parent's final step, known only once the parent has trained)."""
    final = parent.final_step()
    if step > final:
        raise ValueError(f"spawn step {step} is after the trunk stopped early at step {final}")
    child = setup.child(parent, step, final if stop_at is None else stop_at, *tag)
    child.final_step()
    return child


def _compare_task(setup: Setup, folder: Path, key: dict[str, Any], step_a: int | None,
                  step_b: int | None, run_a: Run, run_b: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    return compare(setup, run_a.weights(step_a), run_b.weights(step_b), folder, key)


@dataclass
class Plan:
    """A study's task graph: runs to train, then pairs of (run, step) to compare."""

    setup: Setup
    folder: Path
    tasks: dict[str, Task] = field(default_factory=dict)
    pairs: list[str] = field(default_factory=list)

    def _add(self, key: str, fn, *args: Any, deps: tuple[str, ...] = ()) -> str:
        self.tasks.setdefault(key, Task(key, fn, args, deps))
        return key

    def trunk(self, init: int, steps: Sequence[int]) -> str:
        run = self.setup.trunk(init)
        return self._add(f"train-{run.spec.run_id}", _train_task, run, tuple(sorted(steps)))

    def child(self, parent: str, step: int, stop_at: int | None, *tag: object) -> str:
        key = f"child-{parent.removeprefix('train-')}-{step}-{'-'.join(map(str, tag))}"
        return self._add(key, _child_task, self.setup, step, stop_at, tag, deps=(parent,))

    def compare(self, key: dict[str, Any], a: str, b: str, step_a: int | None = None,
                step_b: int | None = None) -> None:
        name = f"compare-{self.folder.name}-" + "-".join(f"{k}{v}" for k, v in key.items())
        self.pairs.append(self._add(name, _compare_task, self.setup, self.folder, key, step_a,
                                    step_b, deps=(a, b)))

    def execute(self, executor: str | Executor | None) -> Results:
        parts = get_executor(executor).run(list(self.tasks.values()), self.pairs)
        curves = pd.concat([c for c, _ in parts], ignore_index=True)
        table = pd.concat([b for _, b in parts], ignore_index=True)
        write_table(self.folder / "curves.csv", curves)
        write_table(self.folder / "barriers.csv", table)
        return Results(curves, table, self.folder, self.setup.threshold)


def _study(setup: Setup, kind: str, spec: dict[str, Any], plan_pairs, executor) -> Results:
    """The one study skeleton: cached tables, else plan the graph and execute it."""
    folder = setup.folder(kind, spec)
    with folder_lock(folder):
        curves, table = read_table(folder / "curves.csv"), read_table(folder / "barriers.csv")
        if curves is not None and table is not None:
            results = Results(curves, table, folder, setup.threshold)
        else:
            plan = Plan(setup, folder)
            plan_pairs(plan)
            results = plan.execute(executor)
    _record(results)
    return results


def _record(results: Results) -> None:
    """Inside `lmcnb sweep`: copy the study's tables into the point's folder ($LMCNB_RESULTS)."""
    target = os.environ.get(RESULTS_ENV)
    if target:
        for name in ("curves", "barriers"):
            write_table(Path(target) / f"{results.folder.name}.{name}.csv", getattr(results, name))


def spawn_children(setup: Setup, init: int, step: int, n_children: int) -> list[Run]:
    """The children of trunk `init` spawned at `step`, each trained to the trunk's final step."""
    trunk = setup.trunk(init)
    return [_child_task(setup, step, None, ("spawn", init, step, c), trunk)
            for c in range(n_children)]


def spawn_study(setup: Setup, spawn_steps: Sequence[int | str], n_children: int = 2,
                n_inits: int = 1, executor: str | Executor | None = "serial") -> Results:
    """Frankle's instability analysis: for each init and k, `n_children` children trained k → T."""
    at_least("n_children", n_children, 2)
    at_least("n_inits", n_inits, 1)
    steps = setup.steps(spawn_steps)

    def plan_pairs(plan: Plan) -> None:
        for init in range(n_inits):
            trunk = plan.trunk(init, steps)
            for k in steps:
                kids = [plan.child(trunk, k, None, "spawn", init, k, c) for c in range(n_children)]
                for pair, (i, j) in enumerate(itertools.combinations(range(n_children), 2)):
                    plan.compare({"spawn_step": k, "replicate": init, "pair": pair},
                                 kids[i], kids[j])

    spec = {"spawn_steps": steps, "n_children": n_children, "n_inits": n_inits}
    return _study(setup, "spawn", spec, plan_pairs, executor)


def main_branch_study(setup: Setup, k1_steps: Sequence[int | str], k2_steps: Sequence[int | str],
                      n_inits: int = 1, executor: str | Executor | None = "serial") -> Results:
    """Shapira's (k1, k2) grid: a child from the main branch at k1, trained k2 steps, against the
    main branch at k1 + k2."""
    at_least("n_inits", n_inits, 1)
    k1s, k2s = setup.steps(k1_steps), setup.steps(k2_steps)
    grid = [(a, b) for a in k1s for b in k2s if a + b <= setup.total_steps]
    if not grid:
        raise ValueError(f"no (k1, k2) with k1 + k2 <= {setup.total_steps} steps")

    def plan_pairs(plan: Plan) -> None:
        for init in range(n_inits):
            main = plan.trunk(init, sorted({s for k1, k2 in grid for s in (k1, k1 + k2)}))
            for k1, k2 in grid:
                child = plan.child(main, k1, k1 + k2, "branch", init, k1, k2)
                plan.compare({"spawn_step": k1, "k2": k2, "replicate": init, "pair": 0},
                             main, child, step_a=k1 + k2)

    return _study(setup, "branch", {"grid": grid, "n_inits": n_inits}, plan_pairs, executor)
