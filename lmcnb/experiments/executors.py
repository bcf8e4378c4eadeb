"""Executors: run a task graph in this process, or on a Dask cluster, with retries and failure
records.

A `Task` is a module-level function with plain-data arguments and the keys of the tasks whose
results it takes as its last arguments. `get_executor` turns a chapter's `executor` parameter
into an executor:

    "serial"                  in this process, in order
    "local" | "local:N"       a Dask LocalCluster of N worker processes (default: one per core),
                              started at first use and closed when the process exits
    "tcp://host:8786"         an existing Dask scheduler
    "/path/scheduler.json"    an existing Dask scheduler, by its scheduler file

Threads: every task computes with the library's fixed budget (`lmcnb.core.device.TASK_THREADS`
intra-op threads), whatever the machine, so the same graph gives the same bytes on any executor
and any core count; parallelism comes from tasks side by side in worker processes.

The executor owns retries and failures: a task is tried `1 + task.retries` times when it raises
(on Dask a task whose worker died is also rescheduled, up to the scheduler's allowed failures);
`run(..., failures="record")` returns a `Failure` for a task that failed on every try — and for
the tasks that needed its result — instead of raising.
"""
from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import env
from ..core.device import TASK_THREADS, task_threads

EXECUTOR_FORMS = ('"serial"', '"local"', '"local:N"', '"tcp://host:port"', "a scheduler-file path")
CONNECT_TIMEOUT = 15.0  # seconds to reach an existing scheduler before giving up


@dataclass(frozen=True)
class Task:
    """`fn(*args, *results of deps)`: a node of a task graph, tried `1 + retries` times."""

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    deps: tuple[str, ...] = ()
    retries: int = 0


@dataclass(frozen=True)
class Failure:
    """A task that raised on every try (or needed the result of one that did)."""

    key: str
    error: str


Done = Callable[[str, Any], None]  # called with each task's key and result (or Failure)


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` under the fixed thread budget, exported as `$LMCNB_THREADS` (and OpenMP's and
    MKL's variables) for the processes the task starts, e.g. a notebook's kernel."""
    n = str(TASK_THREADS)
    names = (env.THREADS, "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(dict.fromkeys(names, n))
    try:
        with task_threads():
            return fn(*args)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Executor:
    """Runs a task graph; `run` returns the results of the `targets`, in order."""

    def run(self, tasks: Sequence[Task], targets: Sequence[str], *, failures: str = "raise",
            done: Done | None = None) -> list[Any]:
        """Every task, dependencies first; `failures="raise"` (re-raise the first task that failed
        on every try) or `"record"` (its result, and its dependents', is a `Failure`). `done` is
        called as each task finishes."""
        raise NotImplementedError


def _check_failures(failures: str) -> None:
    if failures not in ("raise", "record"):
        raise ValueError(f"failures must be 'raise' or 'record' (got {failures!r})")


@dataclass
class Serial(Executor):
    """Every task in this process, in the order given (dependencies come first)."""

    def run(self, tasks: Sequence[Task], targets: Sequence[str], *, failures: str = "raise",
            done: Done | None = None) -> list[Any]:
        """Every task in order, each tried `1 + task.retries` times (see `Executor.run`)."""
        _check_failures(failures)
        results: dict[str, Any] = {}
        for task in tasks:
            missing = [d for d in task.deps if d not in results]
            if missing:
                raise ValueError(f"task {task.key} needs {missing}, which come later in the graph")
            inputs = [results[d] for d in task.deps]
            failed = next((r for r in inputs if isinstance(r, Failure)), None)
            if failed is not None:
                results[task.key] = Failure(task.key, f"needs {failed.key}: {failed.error}")
            else:
                results[task.key] = self._try(task, inputs, failures)
            if done is not None:
                done(task.key, results[task.key])
        return [results[k] for k in targets]

    @staticmethod
    def _try(task: Task, inputs: list[Any], failures: str) -> Any:
        for attempt in range(task.retries + 1):
            try:
                return call(task.fn, *task.args, *inputs)
            except Exception as exc:
                if attempt == task.retries:
                    if failures == "raise":
                        raise
                    return Failure(task.key, _error(exc))
        raise AssertionError("unreachable")


class Dask(Executor):
    """Tasks on a Dask cluster: a LocalCluster started here, or an existing scheduler.

    Independent tasks run in parallel; a task starts when the tasks it depends on are done.
    A worker that dies mid-task is replaced (by its nanny) and its task rescheduled by the
    scheduler; runs resume from their last checkpoint. `gpu=True` holds tasks to workers started
    with the resource `GPU` (`dask worker --resources GPU=1`). An existing scheduler that does not
    answer within `timeout` seconds is an error naming it.
    """

    def __init__(self, address: str | None = None, scheduler_file: str | None = None,
                 n_workers: int | None = None, gpu: bool = False,
                 timeout: float = CONNECT_TIMEOUT):
        if address and scheduler_file:
            raise ValueError("give a scheduler address or a scheduler file, not both")
        if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, int)
                                      or n_workers < 1):
            raise ValueError(f"the number of workers must be an integer >= 1 (got {n_workers!r})")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a number of seconds > 0 (got {timeout!r})")
        self.address, self.scheduler_file = address, scheduler_file
        self.n_workers, self.gpu, self.timeout = n_workers, gpu, timeout
        self._client = self._cluster = None

    @property
    def client(self):
        """The `distributed.Client`, connected (or its LocalCluster started) at first use."""
        if self._client is None:
            from distributed import Client, LocalCluster

            if self.address or self.scheduler_file:
                self._client = self._connect(Client)
            else:
                n = self.n_workers or os.cpu_count() or 1
                self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                             memory_limit=0, dashboard_address=None)
                self._client = Client(self._cluster)
        return self._client

    def _connect(self, client_class: type) -> Any:
        where = self.address or f"the scheduler file {self.scheduler_file}"
        if self.scheduler_file and not Path(self.scheduler_file).is_file():
            raise ConnectionError(f"no Dask scheduler file {self.scheduler_file}")
        try:
            return client_class(self.address, scheduler_file=self.scheduler_file,
                                timeout=self.timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectionError(f"no Dask scheduler answered at {where} within "
                                  f"{self.timeout:g} s ({type(exc).__name__})") from None

    def run(self, tasks: Sequence[Task], targets: Sequence[str], *, failures: str = "raise",
            done: Done | None = None) -> list[Any]:
        """Every task on the cluster, independent ones in parallel (see `Executor.run`)."""
        from distributed import as_completed

        from ..core.progress import bar

        _check_failures(failures)
        futures: dict[str, Any] = {}
        for task in tasks:
            futures[task.key] = self.client.submit(
                call, task.fn, *task.args, *(futures[d] for d in task.deps), key=task.key,
                pure=False, retries=task.retries, resources={"GPU": 1} if self.gpu else None)
        results: dict[str, Any] = {}
        try:
            for future in bar(as_completed(list(futures.values())), total=len(futures),
                              desc="tasks", leave=False, mininterval=1.0, disable=done is not None):
                if future.status == "error":
                    if failures == "raise":
                        future.result()  # raises the task's error here
                    results[future.key] = Failure(future.key, _error(future.exception()))
                else:
                    results[future.key] = future.result()
                if done is not None:
                    done(future.key, results[future.key])
            return [results[k] for k in targets]
        finally:
            for future in futures.values():
                future.release()

    def close(self) -> None:
        """Close the client, and the LocalCluster if this executor started it."""
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
