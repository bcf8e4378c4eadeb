"""Studies: spawn-at-k and the main-branch (k1, k2) grid, written as tidy tables.

A study trains (or reuses) its runs, interpolates every pair, and writes `curves.csv` and
`barriers.csv` into its own folder, named like a run by a hash of what defines it.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from torch import nn

from .checkpoint import atomic_write_text
from .data import TensorData
from .interpolate import alpha_grid, eval_subset, has_batchnorm, interpolation_curve
from .metrics import STABLE_THRESHOLD, aggregate, barriers, l2_distance, onset
from .rng import Seeds, derive_seed
from .runs import Run, RunSpec, folder_lock
from .train import Hook, TrainConfig, parse_steps

BARRIER_COLUMNS = ["loss_barrier", "error_barrier", "instability_loss", "instability_error",
                   "midpoint_loss", "alpha_star", "l2_distance", "l2_relative", "disagreement"]


@dataclass
class Setup:
    """What a chapter supplies for one model on one dataset."""

    chapter: str
    model: str
    dataset: str
    build: Callable[[], nn.Module]
    train_data: TensorData
    test_data: TensorData
    train: TrainConfig
    runs_dir: Path
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    model_args: tuple[tuple[str, Any], ...] = ()
    language_model: bool = False
    device: str = "cpu"
    seed: int = 0
    n_alpha: int = 30
    eval_iters: int | str = "all"
    eval_batch_size: int = 1000
    bn_reset: bool = False
    bn_reset_examples: int = 2000
    threshold: float = STABLE_THRESHOLD
    hooks: tuple[Hook, ...] = ()
    val_data: TensorData | None = None
    _eval_cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def data_fingerprint(self) -> str:
        if "data" not in self._eval_cache:
            parts = [self.train_data.fingerprint()]
            if self.train.patience is not None and self.val_data is not None:
                parts.append(self.val_data.fingerprint())
            self._eval_cache["data"] = "+".join(parts)
        return self._eval_cache["data"]

    @property
    def steps_per_epoch(self) -> int:
        return self.train.steps_per_epoch(len(self.train_data))

    @property
    def total_steps(self) -> int:
        return parse_steps(self.train.max_steps, self.steps_per_epoch)

    def steps(self, values: Sequence[int | str]) -> list[int]:
        """Spawn steps as ints, checked against the length of training."""
        out = sorted({parse_steps(v, self.steps_per_epoch) for v in values})
        beyond = [s for s in out if s > self.total_steps]
        if beyond:
            raise ValueError(f"spawn step(s) {beyond} are beyond the end of training "
                             f"({self.total_steps} steps = {self.train.max_steps!r})")
        return out

    # -- runs ---------------------------------------------------------------------------
    def run(self, spec: RunSpec, parent: Run | None = None) -> Run:
        return Run(spec, Path(self.runs_dir) / "train", self.build, self.train_data, self.device,
                   self.augment, self.val_data, self.hooks, parent)

    def trunk(self, init: int) -> Run:
        """The run from initialization `init` to the end of training (the main branch)."""
        seeds = Seeds.from_base(self.seed, "trunk", init)
        return self.run(RunSpec(self.model, self.dataset, self.train, seeds, self.model_args, self.data_fingerprint))

    def child(self, parent: Run, step: int, stop_at: int, *tag: object) -> Run:
        """A run spawned from `parent` at `step` with its own data order, augmentation and dropout."""
        p = parent.spec
        seeds = p.seeds.replace(**{s: derive_seed(self.seed, *tag, s) for s in ("data_order", "augmentation", "dropout")})
        spec = RunSpec(p.model, p.dataset, replace(p.train, patience=None), seeds, p.model_args, p.data,
                       parent=(p.run_id, step), stop_at=stop_at)
        return self.run(spec, parent)

    # -- evaluation ---------------------------------------------------------------------
    def eval_data(self) -> dict[str, Any]:
        if "splits" not in self._eval_cache:
            bs = self.eval_batch_size
            self._eval_cache["splits"] = {
                "train": eval_subset(self.train_data, self.eval_iters, bs, self.device, seed=1),
                "test": eval_subset(self.test_data, self.eval_iters, bs, self.device, seed=2)}
            with torch.random.fork_rng():
                self._eval_cache["model"] = self.build().to(self.device)
            n_reset = max(1, self.bn_reset_examples // bs)
            self._eval_cache["bn"] = eval_subset(self.train_data, n_reset, bs, self.device, seed=3)
        return self._eval_cache

    def compare(self, a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], folder: Path,
                key: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Curves and barriers of one pair (cached in `folder/pairs`), with `key` as leading columns."""
        name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        curve_path, barrier_path = folder / "pairs" / f"{name}.curves.csv", folder / "pairs" / f"{name}.barriers.csv"
        if curve_path.exists() and barrier_path.exists():
            return pd.read_csv(curve_path), pd.read_csv(barrier_path)
        ev = self.eval_data()
        resets = [False, True] if self.bn_reset and has_batchnorm(ev["model"]) else [False]
        l2, l2_rel = l2_distance(a, b)
        curves, rows = [], []
        for reset in resets:
            curve, disagreement = interpolation_curve(
                ev["model"], a, b, ev["splits"], alpha_grid(self.n_alpha), batch_size=self.eval_batch_size,
                bn_reset_data=ev["bn"] if reset else None)
            curve.insert(0, "bn_reset", reset)
            curves.append(curve)
            for split, c in curve.groupby("split", sort=False):
                row = {"bn_reset": reset, "split": split,
                       **barriers(c.alpha, c.loss, c.error, self.language_model, self.threshold),
                       "l2_distance": l2, "l2_relative": l2_rel, "disagreement": disagreement,
                       "error_a": float(c.error.iloc[0]), "error_b": float(c.error.iloc[-1]),
                       "loss_a": float(c.loss.iloc[0]), "loss_b": float(c.loss.iloc[-1])}
                rows.append(row)
        lead = {"chapter": self.chapter, "model": self.model, "dataset": self.dataset, **key}
        curves_df = pd.concat(curves, ignore_index=True)
        for df in (curves_df, barriers_df := pd.DataFrame(rows)):
            for i, (col, val) in enumerate(lead.items()):
                df.insert(i, col, val)
        atomic_write_text(curve_path, curves_df.to_csv(index=False))
        atomic_write_text(barrier_path, barriers_df.to_csv(index=False))
        return curves_df, barriers_df

    def folder(self, kind: str, spec: dict[str, Any]) -> Path:
        ident = {"kind": kind, "trunk": self.trunk(0).spec.identity(), "n_alpha": self.n_alpha,
                 "eval_iters": self.eval_iters, "eval_batch_size": self.eval_batch_size, "bn_reset": self.bn_reset,
                 "bn_reset_examples": self.bn_reset_examples, "threshold": self.threshold, **spec}
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=list).encode()).hexdigest()[:12]
        folder = Path(self.runs_dir) / self.chapter / f"{self.model}-{kind}-{digest}"
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "study.json", json.dumps(ident, indent=1, default=list))
        return folder


@dataclass
class Results:
    """A study's tables: one row per pair and α (`curves`), one per pair and split (`barriers`)."""

    curves: pd.DataFrame
    barriers: pd.DataFrame
    folder: Path
    threshold: float = STABLE_THRESHOLD

    def summary(self, by: Sequence[str] = ("spawn_step", "split", "bn_reset")) -> pd.DataFrame:
        """Mean and 95% CI of every barrier over replicates."""
        cols = BARRIER_COLUMNS + (["relative_ppl_instability"] if "relative_ppl_instability" in self.barriers else [])
        by = [b for b in by if b in self.barriers]
        return aggregate(self.barriers, by, cols + ["error_a", "error_b"])

    def onset(self, split: str = "test", column: str | None = None) -> int | None:
        """k*: smallest spawn step whose mean instability stays below the threshold."""
        column = column or ("relative_ppl_instability" if "relative_ppl_instability" in self.barriers else "instability_error")
        s = self.summary()
        s = s[(s.split == split) & (~s.get("bn_reset", pd.Series(False, index=s.index)).astype(bool))]
        return onset(s.spawn_step.tolist(), s[column].tolist(), self.threshold)


def _finish(folder: Path, parts: list[tuple[pd.DataFrame, pd.DataFrame]], threshold: float) -> Results:
    curves = pd.concat([c for c, _ in parts], ignore_index=True)
    table = pd.concat([b for _, b in parts], ignore_index=True)
    atomic_write_text(folder / "curves.csv", curves.to_csv(index=False))
    atomic_write_text(folder / "barriers.csv", table.to_csv(index=False))
    return Results(curves, table, folder, threshold)


def _cached(folder: Path, threshold: float) -> Results | None:
    if (folder / "curves.csv").exists() and (folder / "barriers.csv").exists():
        return Results(pd.read_csv(folder / "curves.csv"), pd.read_csv(folder / "barriers.csv"), folder, threshold)
    return None


def spawn_children(setup: Setup, init: int, step: int, n_children: int) -> list[Run]:
    """The children of trunk `init` spawned at `step`, each trained to the trunk's final step."""
    trunk = setup.trunk(init)
    return [setup.child(trunk, step, trunk.final_step(), "spawn", init, step, c) for c in range(n_children)]


def spawn_study(setup: Setup, spawn_steps: Sequence[int | str], n_children: int = 2, n_inits: int = 1) -> Results:
    """Frankle's instability analysis: for each init and k, `n_children` children trained k → T."""
    if n_children < 2:
        raise ValueError(f"n_children must be >= 2 (got {n_children})")
    steps = setup.steps(spawn_steps)
    folder = setup.folder("spawn", {"spawn_steps": steps, "n_children": n_children, "n_inits": n_inits})
    with folder_lock(folder):
        if (done := _cached(folder, setup.threshold)) is not None:
            return done
        parts = []
        for init in range(n_inits):
            trunk = setup.trunk(init)
            trunk.ensure(steps)
            final = trunk.final_step()
            for k in steps:
                if k > final:
                    raise ValueError(f"spawn step {k} is after the trunk stopped early at step {final}")
                weights = [kid.weights() for kid in spawn_children(setup, init, k, n_children)]
                for pair, (i, j) in enumerate(itertools.combinations(range(n_children), 2)):
                    key = {"spawn_step": k, "replicate": init, "pair": pair}
                    parts.append(setup.compare(weights[i], weights[j], folder, key))
        return _finish(folder, parts, setup.threshold)


def main_branch_study(setup: Setup, k1_steps: Sequence[int | str], k2_steps: Sequence[int | str],
                      n_inits: int = 1) -> Results:
    """Seed 003's (k1, k2) grid: a child from the main branch at k1, trained k2 steps, against the
    main branch at k1 + k2."""
    k1s, k2s = setup.steps(k1_steps), setup.steps(k2_steps)
    grid = [(a, b) for a in k1s for b in k2s if a + b <= setup.total_steps]
    if not grid:
        raise ValueError(f"no (k1, k2) with k1 + k2 <= {setup.total_steps} steps")
    folder = setup.folder("branch", {"grid": grid, "n_inits": n_inits})
    with folder_lock(folder):
        if (done := _cached(folder, setup.threshold)) is not None:
            return done
        parts = []
        for init in range(n_inits):
            main = setup.trunk(init)
            main.ensure(sorted({s for k1, k2 in grid for s in (k1, k1 + k2)}))
            final = main.final_step()
            for k1, k2 in grid:
                if k1 + k2 > final:
                    continue  # the main branch stopped early before k1 + k2
                child = setup.child(main, k1, k1 + k2, "branch", init, k1, k2)
                key = {"spawn_step": k1, "k2": k2, "replicate": init, "pair": 0}
                parts.append(setup.compare(main.weights(k1 + k2), child.weights(), folder, key))
        return _finish(folder, parts, setup.threshold)
