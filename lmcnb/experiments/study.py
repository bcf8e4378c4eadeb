"""Studies: spawn-at-k and the main-branch (k1, k2) grid, planned as task graphs, written as tidy
tables.

A study first plans its task graph — trunk runs, children that depend on their parent's
checkpoint at k, pair evaluations that depend on two runs — and an executor
(`lmcnb.experiments.executors`: serial, or a Dask cluster) runs it. The study then writes
`curves.csv` and `barriers.csv` into its own folder, named like a run by a hash of what defines
it.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..core import env
from ..core.checks import at_least
from ..core.files import folder_lock
from ..lmc.interpolate import alpha_grid, eval_subset, pair_tables
from ..lmc.metrics import STABLE_THRESHOLD, aggregate, onset
from ..lmc.repair import has_batchnorm
from .catalog import build
from .executors import Executor, Task, get_executor
from .runs import Run
from .setup import Setup
from .tables import read_table, write_table

BARRIER_COLUMNS = ["loss_barrier", "error_barrier", "instability_loss", "instability_error",
                   "midpoint_loss", "alpha_star", "l2_distance", "l2_relative", "disagreement"]


@functools.lru_cache(maxsize=2)
def _eval_data(setup: Setup) -> dict[str, Any]:
    """The evaluation samples, a model to interpolate in, and the BN-reset sample (per process)."""
    from ..core.device import pick_device

    device, bs = pick_device(setup.device), setup.eval_batch_size
    train, test = setup.load(setup.train_data), setup.load(setup.test_data)
    with torch.random.fork_rng():
        model = build(setup.net).to(device)
    train_iters = setup.eval_iters if setup.train_eval_iters is None else setup.train_eval_iters
    return {"splits": {"train": eval_subset(train, train_iters, bs, device, seed=1),
                       "test": eval_subset(test, setup.eval_iters, bs, device, seed=2)},
            "model": model,
            "bn": eval_subset(train, max(1, setup.bn_reset_examples // bs), bs, device, seed=3)}


def compare(setup: Setup, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], folder: Path,
            key: dict[str, Any], align: str = "none",
            repair: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves and barriers of one pair (cached in `folder/pairs`), with `key` as leading columns;
    B's units first matched to A's (`align`), the path renormalized by REPAIR (`repair`, with the
    endpoint statistics of the BatchNorm-reset sample of the training split)."""
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    curve_path = folder / "pairs" / f"{name}.curves.csv"
    barrier_path = folder / "pairs" / f"{name}.barriers.csv"
    cached = read_table(curve_path), read_table(barrier_path)
    if cached[0] is not None and cached[1] is not None:
        return cached
    from ..lmc.align import aligned_state
    from ..lmc.repair import Repair

    ev = _eval_data(setup)
    reset = setup.bn_reset and has_batchnorm(ev["model"])
    b = aligned_state(ev["model"], a, b, align, ev["bn"], setup.seed)
    renormalize = (Repair(ev["model"], a, b, ev["bn"], batch_size=setup.eval_batch_size).apply
                   if repair else None)
    curves_df, barriers_df = pair_tables(
        ev["model"], a, b, ev["splits"], alpha_grid(setup.n_alpha),
        batch_size=setup.eval_batch_size, bn_reset_data=ev["bn"] if reset else None,
        language_model=setup.language_model, threshold=setup.threshold,
        renormalize=renormalize)
    lead = {"chapter": setup.chapter, "model": setup.model, "dataset": setup.dataset, **key}
    for df in (curves_df, barriers_df):
        for i, (col, val) in enumerate(lead.items()):
            df.insert(i, col, val)
    write_table(curve_path, curves_df)
    write_table(barrier_path, barriers_df)
    return curves_df, barriers_df


@dataclass
class Results:
    """A study's tables: one row per pair and α (`curves`), one per pair and split (`barriers`)."""

    curves: pd.DataFrame
    barriers: pd.DataFrame
    folder: Path
    threshold: float = STABLE_THRESHOLD

    def summary(self, by: Sequence[str] = ("spawn_step", "split", "bn_reset")) -> pd.DataFrame:
        """Mean and 95% CI of every barrier over replicates."""
        extra = [c for c in ("relative_ppl_instability", "relative_ppl_barrier")
                 if c in self.barriers]
        by = [b for b in by if b in self.barriers]
        return aggregate(self.barriers, by, BARRIER_COLUMNS + extra + ["error_a", "error_b"])

    def onset(self, split: str = "test", column: str | None = None) -> int | None:
        """k*: smallest spawn step whose mean barrier (default: the relative perplexity barrier
        of a language model, else the error barrier) stays below the threshold."""
        if column is None:
            column = ("relative_ppl_barrier" if "relative_ppl_barrier" in self.barriers
                      else "error_barrier")
        s = self.summary()
        s = s[(s.split == split)
              & (~s.get("bn_reset", pd.Series(False, index=s.index)).astype(bool))]
        return onset(s.spawn_step.tolist(), s[column].tolist(), self.threshold)


def _train_task(run: Run, steps: tuple[int, ...]) -> Run:
    """Train `run` to its end with checkpoints at `steps`; returns the (finished) run."""
    return run.ensure_trained(steps)


def _child_task(setup: Setup, step: int, stop_at: int | None, tag: tuple, parent: Run) -> Run:
    """Spawn a child of the finished `parent` at `step` and train it to `stop_at` (default: the
    parent's final step, known only once the parent has trained)."""
    final = parent.final_step()
    if step > final:
        raise ValueError(f"spawn step {step} is after the trunk stopped early at step {final}")
    return setup.child(parent, step, final if stop_at is None else stop_at, *tag).ensure_trained()


def _compare_task(setup: Setup, folder: Path, key: dict[str, Any], step_a: int | None,
                  step_b: int | None, align: str, repair: bool, run_a: Run,
                  run_b: Run) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compare two finished runs (`compare`)."""
    return compare(setup, run_a.ensure_weights(step_a), run_b.ensure_weights(step_b), folder, key,
                   align, repair)


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
        """The task training trunk `init` with checkpoints at `steps`; returns its key."""
        run = self.setup.trunk(init)
        return self._add(f"train-{run.spec.run_id}", _train_task, run, tuple(sorted(steps)))

    def child(self, parent: str, step: int, stop_at: int | None, *tag: object) -> str:
        """The task training a child of `parent` spawned at `step`; returns its key."""
        key = f"child-{parent.removeprefix('train-')}-{step}-{'-'.join(map(str, tag))}"
        return self._add(key, _child_task, self.setup, step, stop_at, tag, deps=(parent,))

    def compare(self, key: dict[str, Any], a: str, b: str, step_a: int | None = None,
                step_b: int | None = None, align: str = "none", repair: bool = False) -> None:
        """The task comparing two runs (at `step_a`, `step_b`: default their endpoints; B aligned
        to A by `align`, the path renormalized by REPAIR if `repair`)."""
        name = f"compare-{self.folder.name}-" + "-".join(f"{k}{v}" for k, v in key.items())
        self.pairs.append(self._add(name, _compare_task, self.setup, self.folder, key, step_a,
                                    step_b, align, repair, deps=(a, b)))

    def execute(self, executor: str | Executor | None) -> Results:
        """Run the graph on `executor`; write and return the study's tables."""
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
    """Append the study's folder to the listing `$LMCNB_TABLES` names, if it is set: what an
    execution used is on record (`lmcnb sweep` collects a point's tables through it)."""
    listing = os.environ.get(env.TABLES)
    if listing:
        Path(listing).parent.mkdir(parents=True, exist_ok=True)
        with open(listing, "a") as fh:
            fh.write(f"{results.folder}\n")


def children(setup: Setup, init: int, step: int, n_children: int) -> list[Run]:
    """The children of the finished trunk `init` spawned at `step` (as a spawn study makes them),
    described, not trained: read them once a study has trained them (`NotTrained` otherwise)."""
    trunk = setup.trunk(init)
    return [setup.child(trunk, step, trunk.final_step(), "spawn", init, step, c)
            for c in range(n_children)]


def train_children(setup: Setup, init: int, step: int, n_children: int,
                   executor: str | Executor | None = "serial") -> list[Run]:
    """Train trunk `init` and its `n_children` children spawned at `step` on `executor` (the
    children of a spawn study, without comparing them); returns the finished children."""
    plan = Plan(setup, Path(setup.runs_dir))
    trunk = plan.trunk(init, [step])
    kids = [plan.child(trunk, step, None, "spawn", init, step, c) for c in range(n_children)]
    return get_executor(executor).run(list(plan.tasks.values()), kids)


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


def independent_study(setup: Setup, n_pairs: int,
                      aligns: Sequence[str] = ("none", "weights", "activations"),
                      repairs: Sequence[bool] = (False, True),
                      executor: str | Executor | None = "serial") -> Results:
    """Networks from different initializations: `n_pairs` pairs of trunks (inits 2i and 2i + 1,
    each with its own init, data-order, augmentation and dropout seeds), each pair compared with
    B's units matched to A's by every method of `aligns` ("none" is the naive path), with and
    without REPAIR (`repairs`). Rows carry `pair`, `align` and `repair`."""
    from ..lmc.align import ALIGNMENTS

    at_least("n_pairs", n_pairs, 1)
    for how in aligns:
        if how not in ALIGNMENTS:
            raise ValueError(f"unknown alignment {how!r}; valid: {', '.join(ALIGNMENTS)}")
    if not aligns or not repairs or not all(isinstance(r, bool) for r in repairs):
        raise ValueError("aligns and repairs must name at least one alignment and one of "
                         "False/True")

    def plan_pairs(plan: Plan) -> None:
        for pair in range(n_pairs):
            a, b = plan.trunk(2 * pair, ()), plan.trunk(2 * pair + 1, ())
            for how in aligns:
                for repair in repairs:
                    plan.compare({"pair": pair, "align": how, "repair": repair}, a, b,
                                 align=how, repair=repair)

    spec = {"n_pairs": n_pairs, "aligns": list(aligns), "repairs": list(repairs)}
    return _study(setup, "independent", spec, plan_pairs, executor)
