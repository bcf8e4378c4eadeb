"""Run identity and resumable training runs.

A run's folder is named by a hash of its non-default specification: re-running a finished run
costs nothing, an interrupted one resumes from its last checkpoint, and a checkpoint at a step
that was never saved is recreated by deterministic training from the nearest earlier one.
Runs lock their folder, so the same run started in parallel is trained once.
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checkpoint import CheckpointError, load_state, save_state
from ..core.checks import choose
from ..core.device import TASK_THREADS
from ..core.files import append_event, atomic_write_text, folder_lock, notice, set_aside
from ..core.ref import Ref
from ..core.rng import RngStreams, Seeds
from ..data.tensors import TensorData
from ..train.recipe import TrainConfig
from ..train.trainer import Hook, Trainer
from .catalog import build, check

ENDPOINTS = ("final", "best_val")  # which state of a run is its endpoint


class NotTrained(RuntimeError):
    """A run, or a step of it, that has not been trained: reading it trains nothing."""


def check_endpoint(endpoint: str, val_data: object) -> str:
    """`endpoint` if it is one of `ENDPOINTS` and has the validation data it needs."""
    choose("endpoint", endpoint, ENDPOINTS)
    if endpoint == "best_val" and val_data is None:
        raise ValueError("endpoint='best_val' needs val_data (the split it is chosen on)")
    return endpoint


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's weights (and nothing else: not device, not folder)."""

    model: str
    dataset: str
    train: TrainConfig = TrainConfig()
    seeds: Seeds = Seeds()
    model_args: tuple[tuple[str, Any], ...] = ()
    data: str = ""  # fingerprint of the training (and early-stopping) data
    parent: tuple[str, int] | None = None  # (parent run id, step) for a spawned child
    stop_at: int | None = None  # a child trains to its parent's final step
    hooks: tuple[Any, ...] = ()  # what the training hooks are (plain data, see `hook_identity`)

    def identity(self) -> dict[str, Any]:
        """What names the run: its non-default fields and, from version 2 on, the version of the
        engine that trains it (`lmcnb.train.recipe.ENGINE_VERSION`; version-1 runs keep their
        names)."""
        from ..train import recipe

        ident: dict[str, Any] = {"model": self.model, "dataset": self.dataset}
        if recipe.ENGINE_VERSION != 1:
            ident["engine"] = recipe.ENGINE_VERSION
        if self.train.non_default():
            ident["train"] = self.train.non_default()
        if self.seeds != Seeds():
            ident["seeds"] = vars(self.seeds)
        for name in ("model_args", "data", "parent", "stop_at", "hooks"):
            value = getattr(self, name)
            if value:
                ident[name] = value
        return ident

    @property
    def run_id(self) -> str:
        """The run's folder name: `<model>-` and a hash of its identity."""
        blob = json.dumps(self.identity(), sort_keys=True, default=list)
        return f"{self.model}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


@dataclass
class Run:
    """A training run on disk, described as plain data so any worker can rebuild it.

    `build` makes the model at initialization (called inside the init stream) and `data` is the
    training set: registry `Ref`s (plain data: a Dask worker rebuilds them from its own data
    root), or, for local use, a callable and a `TensorData`. A child (spec.parent set) starts
    from its parent's checkpoint with its own data-order, augmentation and dropout streams.
    `device="auto"` is the best device of the process that trains it. The run's `endpoint`, the
    state `weights()` returns, is its final step or, with `"best_val"`, the step of its lowest
    loss on `val_data` (evaluated every `train.eval_every` steps, `eval_batch_size` examples per
    forward); neither changes its training. `hooks` are trainer hooks (`lmcnb.train.trainer.Hook`):
    registry refs (`Ref.of("hook", ...)`, built afresh for every trainer) or objects deep-copied
    for every trainer; `spec.hooks` must say what they are.
    """

    spec: RunSpec
    root: Path
    build: Ref | Callable[[], nn.Module]
    data: Ref | TensorData
    device: str | torch.device = "auto"
    augment: Ref | Callable[[torch.Tensor], torch.Tensor] | None = None
    val_data: Ref | TensorData | None = None
    hooks: tuple[Hook | Ref, ...] = ()
    parent: Run | None = None
    ckpt_every: int = 200
    data_dir: str | None = None
    endpoint: str = "final"  # final | best_val
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        check([self.build, self.data, self.augment, self.val_data, self.hooks])
        check_endpoint(self.endpoint, self.val_data)
        if (self.spec.parent is None) != (self.parent is None):
            raise ValueError("a spawned run needs both spec.parent and the parent Run")
        if self.parent is not None and self.spec.parent[0] != self.parent.spec.run_id:
            raise ValueError("spec.parent does not name the given parent run")

    @property
    def dir(self) -> Path:
        """The run's folder."""
        return self.root / self.spec.run_id

    def ckpt_path(self, step: int) -> Path:
        """Where the checkpoint at `step` lives."""
        return self.dir / "ckpt" / f"step-{step:08d}.safetensors"

    @property
    def done(self) -> dict[str, Any] | None:
        """The run's summary once it has finished (None before; a damaged file counts as not
        finished, so the run completes again from its checkpoints and rewrites it)."""
        path = self.dir / "done.json"
        try:
            done = json.loads(path.read_text())
            return (done if isinstance(done, dict) and isinstance(done.get("final_step"), int)
                    else None)
        except (ValueError, OSError):  # missing, or unreadable
            return None

    def saved_steps(self) -> list[int]:
        """The steps that have a checkpoint, in order."""
        return sorted(int(p.stem.split("-")[1])
                      for p in (self.dir / "ckpt").glob("step-*.safetensors"))

    # -- public: reading a finished run -------------------------------------------------
    def final_step(self) -> int:
        """The last step of the finished run (`NotTrained` if it has not finished)."""
        done = self.done
        if done is None:
            raise NotTrained(f"run {self.dir} has not finished training: train it first "
                             "(run.ensure_trained(), or a study on an executor)")
        return done["final_step"]

    def end_step(self) -> int:
        """The step of the finished run's endpoint: its final step, or with `endpoint="best_val"`
        the step of its best validation loss (the final one if it was never evaluated)."""
        final = self.final_step()
        return self.done.get("best_step", final) if self.endpoint == "best_val" else final

    def weights(self, step: int | None = None) -> dict[str, torch.Tensor]:
        """Model weights at `step` (default: the endpoint), read from its checkpoint."""
        return self.state(self.end_step() if step is None else step)["model"]

    def state(self, step: int) -> dict[str, Any]:
        """The full trainer state at `step` (weights, optimizer, RNG, sampler, progress), read
        from its checkpoint: `NotTrained` if there is none, and a checkpoint that fails
        verification (damaged, or another run's) is moved aside to `*.damaged` and refused with a
        `CheckpointError` (`ensure_state` re-makes it)."""
        path = self.ckpt_path(step)
        if not path.exists():
            raise NotTrained(f"run {self.dir} has no checkpoint at step {step}: train it first "
                             f"(run.ensure_trained(({step},)))")
        try:
            return self._load(path)
        except CheckpointError as exc:
            with folder_lock(self.dir):
                self._set_aside(path, exc)
            raise

    def log(self) -> Any:
        """The finished run's training log (a DataFrame read from `log.csv`, verified). A log that
        is missing or fails its digest is re-made from the final checkpoint, which holds it."""
        from .tables import read_table

        final = self.final_step()
        path = self.dir / "log.csv"
        table = read_table(path, then="it is re-made from the final checkpoint")
        if table is None:
            _write_log(path, self.ensure_state(final)["progress"]["log"])
            notice(f"re-made {path} from the final checkpoint")
            table = read_table(path)
        return table

    # -- public: training ---------------------------------------------------------------
    def ensure_trained(self, steps: tuple[int, ...] | list[int] = ()) -> Run:
        """Train the run to its end if it has not finished, and (re-)make a checkpoint at every
        step in `steps` that is missing; returns the run."""
        with folder_lock(self.dir):
            atomic_write_text(self.dir / "spec.json",
                              json.dumps(self.spec.identity(), indent=1, default=list))
            if self.done is None:
                self._train(keep=set(steps), until=None)
            final = self.done["final_step"]
            missing = sorted(set(steps) - set(self.saved_steps()))
            beyond = [s for s in missing if s > final]
            if beyond:
                raise ValueError(f"run {self.spec.run_id} ended at step {final}; "
                                 f"it has no step {beyond}")
            if missing:
                self._train(keep=set(missing), until=max(missing))
        return self

    def ensure_state(self, step: int | None = None) -> dict[str, Any]:
        """The state at `step` (default: the endpoint), training the run first if needed and
        re-making, by deterministic training from the nearest earlier checkpoint, one that fails
        verification."""
        for attempt in range(2):
            self.ensure_trained()
            at = self.end_step() if step is None else step
            self.ensure_trained((at,))
            try:
                return self.state(at)
            except CheckpointError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def ensure_weights(self, step: int | None = None) -> dict[str, torch.Tensor]:
        """`ensure_state(step)`'s model weights."""
        return self.ensure_state(step)["model"]

    # -- internals ----------------------------------------------------------------------
    def _new_trainer(self) -> Trainer:
        from ..core.device import pick_device

        data, val = build(self.data, self.data_dir), build(self.val_data, self.data_dir)
        if self.spec.data and isinstance(self.data, Ref):
            found = data_fingerprint(data, val if self.spec.train.patience is not None else None)
            if found != self.spec.data:
                raise ValueError(
                    f"run {self.spec.run_id}: the data under this process's data root "
                    f"({self.data_dir or '$LMCNB_DATA'}) has fingerprint {found}, but the run was "
                    f"planned on data {self.spec.data}: the data roots hold different files")
        streams = RngStreams(self.spec.seeds)
        with streams.active("init"):
            model = build(self.build) if isinstance(self.build, Ref) else self.build()
        augment = build(self.augment, self.data_dir)
        # every trainer starts from fresh hook state
        hooks = [build(h, self.data_dir) if isinstance(h, Ref) else copy.deepcopy(h)
                 for h in self.hooks]
        return Trainer(model, self.spec.train, data, streams, pick_device(self.device), augment,
                       val, hooks, self.eval_batch_size)

    def _identity(self, step: int) -> dict[str, Any]:
        return {"run": self.spec.run_id, "step": step}

    def _load(self, path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
        """A checkpoint of this run, verified: its digest, this run's id, and the step its name
        says (`last.safetensors`: any step)."""
        expect = {"run": self.spec.run_id}
        if path.name != "last.safetensors":
            expect["step"] = int(path.stem.split("-")[1])
        return load_state(path, device, identity=expect)

    def _set_aside(self, path: Path, exc: Exception) -> None:
        """Move a checkpoint that failed verification out of the way (kept for inspection)."""
        if path.exists():
            set_aside(path, str(exc).replace(f"checkpoint {path} ", ""),
                      "it is re-made by training from the nearest earlier checkpoint")
            self._event("damaged", file=path.name, error=str(exc))

    def _save(self, path: Path, trainer: Trainer) -> None:
        save_state(path, trainer.state_dict(), identity=self._identity(trainer.progress.step))

    def _event(self, event: str, **fields: Any) -> None:
        """Append a line to the run's `events.jsonl`: what was trained where, from which state."""
        append_event(self.dir, event, threads=TASK_THREADS, **fields)

    def _start(self, before: int | None) -> Trainer:
        """A trainer at the latest own checkpoint <= `before`, else at the spawn point or init."""
        for tmp in self.dir.rglob(".*.tmp"):  # left by a process killed while writing
            tmp.unlink()
        trainer = self._new_trainer()
        device = trainer.device
        candidates = {s: self.ckpt_path(s) for s in self.saved_steps()
                      if before is None or s <= before}
        last = self.dir / "last.safetensors"
        if last.exists():
            try:
                state = self._load(last, device)
                step = state["progress"]["step"]
                if ((before is None or step <= before)
                        and (not candidates or step > max(candidates))):
                    candidates[step] = last
            except CheckpointError as exc:
                self._set_aside(last, exc)
        for step in sorted(candidates, reverse=True):  # the latest that verifies
            try:
                trainer.load_state_dict(self._load(candidates[step], device))
            except CheckpointError as exc:
                self._set_aside(candidates[step], exc)
                continue
            self._event("resume", step=step, source=candidates[step].name)
            return trainer
        if self.parent is not None:
            trainer.load_state_dict(self.parent.ensure_state(self.spec.parent[1]), rng=False)
            self._event("spawn", step=self.spec.parent[1], source=self.spec.parent[0])
        else:
            self._event("init", step=0, source="init")
        trainer.start()
        return trainer

    def _train(self, keep: set[int], until: int | None) -> None:
        trainer = self._start(before=min(keep) if keep and until is not None else None)
        stop = self.spec.stop_at if self.spec.stop_at is not None else trainer.total_steps
        target = stop if until is None else until
        if trainer.progress.step in keep:
            self._save(self.ckpt_path(trainer.progress.step), trainer)

        def on_step(t: Trainer) -> None:
            step = t.progress.step
            if step in keep or (self.endpoint == "best_val" and t.progress.best_step == step):
                self._save(self.ckpt_path(step), t)
            elif step % self.ckpt_every == 0:
                self._save(self.dir / "last.safetensors", t)

        try:
            trainer.run(target, on_step, desc=self.spec.run_id)
        except FloatingPointError as exc:
            self._event("failed", step=trainer.progress.step, error=str(exc))
            raise FloatingPointError(f"run {self.dir}: {exc}") from exc
        if until is not None and self.done is not None:
            (self.dir / "last.safetensors").unlink(missing_ok=True)
        if until is None:
            final = trainer.progress.step
            self._save(self.ckpt_path(final), trainer)
            (self.dir / "last.safetensors").unlink(missing_ok=True)
            _write_log(self.dir / "log.csv", trainer.progress.log)
            best = trainer.progress.best_step
            atomic_write_text(self.dir / "done.json", json.dumps(
                {"final_step": final, "stopped_early": trainer.progress.stopped_early,
                 "steps_per_epoch": trainer.steps_per_epoch,
                 **({"best_step": best} if best is not None else {})}))
            self._event("done", step=final)


def hook_identity(hook: Ref) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """What a hook ref contributes to a run's identity: its name and arguments, except `path`
    (where its file lies; its `digest` says what the file holds)."""
    if not isinstance(hook, Ref) or hook.kind != "hook":
        raise TypeError(f"a run's hooks are described by Ref.of('hook', ...), not {hook!r}")
    return hook.name, tuple((k, v) for k, v in hook.args if k != "path")


def data_fingerprint(train: TensorData, val: TensorData | None = None) -> str:
    """What a run's identity records of its data: the training set's (and early-stopping set's)
    fingerprint."""
    return "+".join(d.fingerprint() for d in (train, val) if d is not None)


def _write_log(path: Path, rows: list[dict[str, float]]) -> None:
    """The training log as a table with its digest beside it (`lmcnb.experiments.tables`)."""
    import pandas as pd

    from .tables import write_table

    write_table(path, pd.DataFrame(rows))
