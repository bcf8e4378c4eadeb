"""Executors: run a task graph in this process, or on a Dask cluster.

A `Task` is a module-level function with plain-data arguments and the keys of the tasks whose
results it takes as its last arguments. `get_executor` turns a chapter's `executor` parameter
into an executor:

    "serial"                  in this process, in order (the default)
    "local" | "local:N"       a Dask LocalCluster of N worker processes (default: one per core),
                              started at first use and closed when the process exits
    "tcp://host:8786"         an existing Dask scheduler
    "/path/scheduler.json"    an existing Dask scheduler, by its scheduler file

Threads: every task computes with an explicit number of intra-op threads — cores ÷ concurrent
tasks on its machine by default, `$LMCNB_THREADS` to override — set with
`torch.set_num_threads`, which torch honours under a Dask nanny (its OMP_NUM_THREADS=1 is not).
CPU kernels reduce in an order that depends on the thread count (gradients of one LeNet5 step
differ in the last bits between 1 and 2 threads), so results are bit-identical across executors
when the thread budgets are equal.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXECUTOR_FORMS = ('"serial"', '"local"', '"local:N"', '"tcp://host:port"', "a scheduler-file path")


@dataclass(frozen=True)
class Task:
    """`fn(*args, *results of deps)`: a node of a task graph."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    deps: tuple[str, ...] = ()


def thread_budget(concurrent: int, cores: int | None = None) -> int:
    """Threads for one task: `$LMCNB_THREADS`, else cores ÷ concurrent tasks (at least 1)."""
    env = os.environ.get("LMCNB_THREADS")
    if env:
        return max(1, int(env))
    return max(1, (cores or os.cpu_count() or 1) // max(1, concurrent))


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Compute with `n` intra-op threads inside the block (None: leave the setting alone).

    The budget is set in torch (if the task has imported it: a sweep point's worker never does)
    and exported as `$LMCNB_THREADS` for the processes the task starts (a notebook's kernel).
    """
    if n is None:
        yield
        return
    torch = sys.modules.get("torch")
    saved = torch.get_num_threads() if torch else None
    saved_env = os.environ.get("LMCNB_THREADS")
    os.environ["LMCNB_THREADS"] = str(n)
    if torch:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch:
            torch.set_num_threads(saved)
        if saved_env is None:
            os.environ.pop("LMCNB_THREADS", None)
        else:
            os.environ["LMCNB_THREADS"] = saved_env


def call(fn: Callable[..., Any], n_threads: int | dict[str, int] | None, *args: Any) -> Any:
    """Run `fn(*args)` with a thread budget (per Dask worker address when a dict is given)."""
    if isinstance(n_threads, dict):
        from distributed import get_worker

        n_threads = n_threads.get(get_worker().address, min(n_threads.values(), default=1))
    with threads(n_threads):
        return fn(*args)


class Executor:
    """Runs a task graph; `run` returns the results of the `targets`, in order."""

    def run(self, tasks: Sequence[Task], targets: Sequence[str]) -> list[Any]:
        raise NotImplementedError


@dataclass
class Serial(Executor):
    """Every task in this process, in the order given (dependencies come first)."""

    threads: int | None = None  # None: $LMCNB_THREADS if set, else the process's own setting

    def run(self, tasks: Sequence[Task], targets: Sequence[str]) -> list[Any]:
        n = self.threads or (thread_budget(1) if os.environ.get("LMCNB_THREADS") else None)
        results: dict[str, Any] = {}
        for task in tasks:
            missing = [d for d in task.deps if d not in results]
            if missing:
                raise ValueError(f"task {task.key} needs {missing}, which come later in the graph")
            results[task.key] = call(task.fn, n, *task.args, *(results[d] for d in task.deps))
        return [results[k] for k in targets]


class Dask(Executor):
    """Tasks on a Dask cluster: a LocalCluster started here, or an existing scheduler.

    Independent tasks run in parallel; a task starts when the tasks it depends on are done.
    A worker that dies mid-task is replaced (by its nanny) and its task rescheduled by the
    scheduler; runs resume from their last checkpoint. `gpu=True` holds tasks to workers started
    with the resource `GPU` (`dask worker --resources GPU=1`).
    """

    def __init__(self, address: str | None = None, scheduler_file: str | None = None,
                 n_workers: int | None = None, threads: int | None = None, gpu: bool = False):
        if address and scheduler_file:
            raise ValueError("give a scheduler address or a scheduler file, not both")
        self.address, self.scheduler_file = address, scheduler_file
        self.n_workers, self.threads, self.gpu = n_workers, threads, gpu
        self._client = self._cluster = None

    @property
    def client(self):
        """The `distributed.Client`, connected (or its LocalCluster started) at first use."""
        if self._client is None:
            from distributed import Client, LocalCluster

            if self.address or self.scheduler_file:
                self._client = Client(self.address, scheduler_file=self.scheduler_file, timeout=30)
            else:
                n = self.n_workers or os.cpu_count() or 1
                self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                             memory_limit=0, dashboard_address=None)
                self._client = Client(self._cluster)
        return self._client

    def budgets(self) -> dict[str, int]:
        """Threads per task for each worker: its machine's cores ÷ the task slots there."""
        if self.threads is not None:
            return {addr: self.threads for addr in self.client.scheduler_info()["workers"]}
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        cores = self.client.run(os.cpu_count)
        slots: dict[str, int] = {}
        for info in workers.values():
            slots[info["host"]] = slots.get(info["host"], 0) + info["nthreads"]
        return {addr: thread_budget(slots[info["host"]], cores.get(addr))
                for addr, info in workers.items()}

    def submit(self, fn: Callable[..., Any], *args: Any, key: str, retries: int = 0,
               budgets: dict[str, int] | None = None):
        """One future of `fn(*args)` under the thread budget (args may be futures)."""
        return self.client.submit(call, fn,
                                  budgets if budgets is not None else self.budgets(), *args,
                                  key=key, pure=False, retries=retries,
                                  resources={"GPU": 1} if self.gpu else None)

    def run(self, tasks: Sequence[Task], targets: Sequence[str]) -> list[Any]:
        from distributed import as_completed

        from .progress import bar

        budgets = self.budgets()
        futures: dict[str, Any] = {}
        for task in tasks:
            futures[task.key] = self.submit(task.fn, *task.args, *(futures[d] for d in task.deps),
                                            key=task.key, budgets=budgets)
        try:
            for future in bar(as_completed(list(futures.values())), total=len(futures),
                              desc="tasks", leave=False, mininterval=1.0):
                if future.status == "error":
                    future.result()  # raises the task's error here
            return self.client.gather([futures[k] for k in targets])
        finally:
            for future in futures.values():
                future.release()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None


_CLUSTERS: dict[str, Dask] = {}  # one client per cluster and process, closed at exit


def get_executor(spec: str | Executor | None = "serial") -> Executor:
    """The executor a chapter's `executor` parameter names (see the module docstring)."""
    if isinstance(spec, Executor):
        return spec
    if spec in (None, "serial"):
        return Serial()
    if not isinstance(spec, str):
        raise ValueError(f"executor must be one of {', '.join(EXECUTOR_FORMS)} (got {spec!r})")
    if spec not in _CLUSTERS:
        _CLUSTERS[spec] = _dask(spec)
    return _CLUSTERS[spec]


def _dask(spec: str) -> Dask:
    if spec == "local" or spec.startswith("local:"):
        n = spec.partition(":")[2]
        if n and (not n.isdigit() or int(n) < 1):
            raise ValueError(f"executor {spec!r}: the number of workers must be a positive integer")
        return Dask(n_workers=int(n) if n else None)
    if "://" in spec:
        return Dask(address=spec)
    if Path(spec).expanduser().is_file():
        return Dask(scheduler_file=str(Path(spec).expanduser()))
    raise ValueError(f"executor must be one of {', '.join(EXECUTOR_FORMS)} (got {spec!r}: "
                     "not a scheduler address, and no such scheduler file)")


@atexit.register
def _close_clusters() -> None:
    for ex in _CLUSTERS.values():
        ex.close()
    _CLUSTERS.clear()
