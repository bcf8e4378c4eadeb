"""`lmcnb sweep`: a chapter notebook executed with papermill at every point of a parameter grid,
on the Dask executor (or serially), with one merged table of results.

    lmcnb sweep notebooks/cnn_baselines.ipynb --grid seed=0,1,2 model=lenet5,reduced_vgg \\
        -p profile book [--grid-file g.yaml] [--workers N | --scheduler ADDR | --scheduler-file F]
        [--out DIR] [--dry-run]

Grid values are YAML scalars separated by commas; brackets keep commas inside one value
(`spawn_steps=[0,100],[0,200]`), and `range(a,b)` expands. A grid file is a YAML mapping of
names to lists. Every name is checked against the notebook's parameters cell before anything runs.

Each point executes in its own folder `<out>/points/<id>` (the id hashes the notebook and the
point's parameters): the executed notebook, `done.json`, and the study tables the chapter wrote
(`tables/`, through `$LMCNB_RESULTS`). A finished point is not executed again. A notebook that
raises is not retried: it is listed in `failures.csv` and the other points finish. A kernel that
dies is retried. `<out>/results.csv` holds every point's barriers with the grid values as
columns (`NAME_param` where the table has a column NAME of its own), `<out>/curves.csv` the
curves, `<out>/failures.csv` the points that failed and why.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

RESULTS_ENV = "LMCNB_RESULTS"  # where a chapter executed by a sweep writes its study tables


# -- the grid ------------------------------------------------------------------------------------
def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def parse_values(text: str) -> list[Any]:
    """`0,1,2` → [0, 1, 2]; `[0,100],[0,200]` → [[0, 100], [0, 200]]; `range(0,3)` → [0, 1, 2]."""
    import yaml

    values: list[Any] = []
    for part in _split_top(text):
        part = part.strip()
        if m := re.fullmatch(r"range\((-?\d+),\s*(-?\d+)(?:,\s*(-?\d+))?\)", part):
            values.extend(range(int(m[1]), int(m[2]), int(m[3] or 1)))
        elif part:
            values.append(yaml.safe_load(part))
    if not values:
        raise ValueError(f"no values in {text!r}")
    return values


def parse_grid(items: Sequence[str], grid_file: str | os.PathLike | None = None) -> dict[str, list]:
    """The grid from `name=v1,v2` items and an optional YAML file (items win)."""
    import yaml

    grid: dict[str, list] = {}
    if grid_file is not None:
        loaded = yaml.safe_load(Path(grid_file).read_text())
        if not isinstance(loaded, dict):
            raise ValueError(f"{grid_file}: a grid file is a mapping of parameter names to lists")
        grid.update({k: v if isinstance(v, list) else [v] for k, v in loaded.items()})
    for item in items:
        name, eq, values = item.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"grid item {item!r} is not NAME=VALUE[,VALUE...]")
        grid[name.strip()] = parse_values(values)
    return grid


def notebook_parameters(notebook: str | os.PathLike) -> list[str]:
    """The names in the notebook's `parameters` cell."""
    import papermill

    return list(papermill.inspect_notebook(str(notebook)))


def check_names(notebook: str | os.PathLike, names: Sequence[str]) -> None:
    """Refuse names the notebook does not declare (typos), listing the valid ones."""
    valid = notebook_parameters(notebook)
    if not valid:
        raise ValueError(f"{notebook} has no cell tagged 'parameters'")
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {Path(notebook).name}; "
                         f"valid: {', '.join(valid)}")


def point_id(notebook: str | os.PathLike, params: Mapping[str, Any]) -> str:
    blob = json.dumps({"notebook": Path(notebook).name, "parameters": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def points(grid: Mapping[str, list], parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, on top of the fixed `parameters`."""
    names = list(grid)
    return [{**parameters, **dict(zip(names, combo))}
            for combo in itertools.product(*(grid[n] for n in names))]


# -- one point -------------------------------------------------------------------------------------
NOTEBOOK_RAISED = 3  # exit status of `_execute` when the notebook itself raised


def run_point(notebook: str, params: dict[str, Any], folder: str, cwd: str,
              env: dict[str, str]) -> dict[str, Any]:
    """Execute the notebook at `params` into `folder`. A notebook that raises is reported as
    failed (not an exception: it is not retried); a kernel that dies raises (retried).

    papermill runs in a child process of its own: run inside a Dask worker's thread, beside the
    worker's event loop, two concurrent points took 19–25 s each against 18 s this way.
    """
    from .executors import thread_budget
    from .files import atomic_write_text

    out = Path(folder)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    n = str(thread_budget(1))  # the task's budget: $LMCNB_THREADS (set by the executor), else all
    kernel_env = {**os.environ, **env, RESULTS_ENV: str(out / "tables"), "OMP_NUM_THREADS": n,
                  "MKL_NUM_THREADS": n, "LMCNB_THREADS": n, "LMCNB_LIVE": "0"}
    request = {"notebook": notebook, "output": str(out / Path(notebook).name),
               "parameters": params, "cwd": cwd, "error": str(out / "error.json")}
    atomic_write_text(out / "request.json", json.dumps(request, indent=1))
    start = time.time()
    code = "import sys; from lmcnb.sweep import _execute; sys.exit(_execute(sys.argv[1]))"
    status = subprocess.run([sys.executable, "-c", code, str(out / "request.json")],
                            env=kernel_env).returncode
    record = {"point": out.name, "parameters": params, "seconds": round(time.time() - start, 1)}
    if status == NOTEBOOK_RAISED:
        record.update(status="failed", **json.loads((out / "error.json").read_text()))
        atomic_write_text(out / "failed.json", json.dumps(record, indent=1, default=str))
        return record
    if status != 0:
        raise RuntimeError(f"point {out.name}: the notebook's process ended with status {status} "
                           f"(its kernel died?); see {request['output']}")
    record.update(status="done", error="")
    (out / "failed.json").unlink(missing_ok=True)
    atomic_write_text(out / "done.json", json.dumps(record, indent=1, default=str))
    return record


def _execute(request_file: str) -> int:
    """In the child process of `run_point`: papermill at the request's parameters."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .files import atomic_write_text

    r = json.loads(Path(request_file).read_text())
    try:
        papermill.execute_notebook(r["notebook"], r["output"], parameters=r["parameters"],
                                   cwd=r["cwd"], progress_bar=False)
    except PapermillExecutionError as exc:
        atomic_write_text(Path(r["error"]), json.dumps(
            {"error": f"{exc.ename}: {exc.evalue}", "cell": exc.exec_count}))
        return NOTEBOOK_RAISED
    return 0


# -- the sweep -------------------------------------------------------------------------------------
def sweep(notebook: str | os.PathLike, grid: Mapping[str, list],
          parameters: Mapping[str, Any] | None = None, out: str | os.PathLike = "sweep",
          executor: Any = "local", retries: int = 2, dry_run: bool = False,
          progress: bool = True):
    """Execute `notebook` at every point of `grid`; returns the merged results (a DataFrame).

    `executor` is an `lmcnb.executors` executor or its name ("local", "local:N", a scheduler
    address or file, "serial"). `dry_run` lists the points (and whether each is cached) and
    executes nothing.
    """
    import pandas as pd

    from .executors import Dask, get_executor
    from .files import atomic_write_text
    from .params import runs_root
    from .progress import bar as progress_bar

    notebook = Path(notebook).resolve()
    parameters = dict(parameters or {})
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook {notebook}")
    check_names(notebook, [*grid, *parameters])
    out = Path(out).resolve()
    todo = []
    for params in points(grid, parameters):
        folder = out / "points" / point_id(notebook, params)
        todo.append((params, folder, (folder / "done.json").exists()))
    if dry_run:
        return pd.DataFrame([{"point": f.name, **p, "cached": c} for p, f, c in todo])
    atomic_write_text(out / "sweep.json", json.dumps(
        {"notebook": str(notebook), "grid": grid, "parameters": parameters}, indent=1, default=str))
    # Kernels share this process's runs folder and data root, and its working directory.
    env = {"LMCNB_RUNS": str(runs_root())}
    if os.environ.get("LMCNB_DATA"):
        env["LMCNB_DATA"] = os.environ["LMCNB_DATA"]

    def args(params: dict[str, Any], folder: Path) -> tuple:
        return str(notebook), params, str(folder), os.getcwd(), env

    records, counts = [], {"done": 0, "cached": 0, "failed": 0}
    bar = progress_bar(total=len(todo), desc="points", disable=not progress)

    def finished(record: dict[str, Any], cached: bool = False) -> None:
        records.append(record)
        counts["cached" if cached else record["status"]] += 1
        bar.set_postfix(counts)
        bar.update(1)

    for _params, folder, cached in todo:
        if cached:
            finished(json.loads((folder / "done.json").read_text()), cached=True)
    pending = [(p, f) for p, f, c in todo if not c]
    ex = get_executor(executor)
    if isinstance(ex, Dask) and pending:
        from distributed import as_completed

        budgets = ex.budgets()
        futures = [ex.submit(run_point, *args(p, f), key=f"point-{f.name}", retries=retries,
                             budgets=budgets) for p, f in pending]
        for future in as_completed(futures):
            try:
                finished(future.result())
            except Exception as exc:  # the kernel died on every try
                finished(_failed(future.key.removeprefix("point-"), exc))
    else:
        for params, folder in pending:
            finished(_serial_point(args(params, folder), retries, getattr(ex, "threads", None)))
    bar.close()
    by_id = {f.name: p for p, f, _ in todo}
    return _merge(out, records, by_id, list(grid))


def _serial_point(args: tuple, retries: int, threads: int | None) -> dict[str, Any]:
    """`run_point` in this process, tried again (up to `retries` times) when its kernel dies."""
    from .executors import call

    for _ in range(retries + 1):
        try:
            return call(run_point, threads, *args)
        except Exception as exc:  # a dead kernel
            error = exc
    return _failed(Path(args[2]).name, error)


def _failed(point: str, exc: BaseException) -> dict[str, Any]:
    """The record of a point whose kernel died on every try."""
    return {"point": point, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def _merge(out: Path, records: list[dict[str, Any]], by_id: dict[str, dict], names: list[str]):
    """results.csv, curves.csv and failures.csv from the points' folders; returns the results."""
    import pandas as pd

    from .files import atomic_write_text
    from .study import read_table

    tables: dict[str, list[pd.DataFrame]] = {"barriers": [], "curves": []}
    failures = []
    for record in sorted(records, key=lambda r: r["point"]):
        point = record["point"]
        grid_values = {n: json.dumps(by_id[point][n]) if isinstance(by_id[point][n], (list, dict))
                       else by_id[point][n] for n in names}
        found = {kind: [read_table(p) for p in sorted(
            (out / "points" / point / "tables").glob(f"*.{kind}.csv"))] for kind in tables}
        if record["status"] == "done" and any(df is None for dfs in found.values() for df in dfs):
            record = {**record, "status": "failed", "error": "a table of this point is damaged: "
                      f"delete {out / 'points' / point} and run the sweep again"}
        if record["status"] != "done":
            failures.append({"point": point, **grid_values, "error": record.get("error", "")})
            continue
        for kind in tables:
            for df in found[kind]:
                for i, (n, v) in enumerate({"point": point, **grid_values}.items()):
                    df.insert(i, f"{n}_param" if n in df else n, v)  # e.g. model: "all"
                tables[kind].append(df)
    merged = {k: pd.concat(v, ignore_index=True) if v else pd.DataFrame()
              for k, v in tables.items()}
    atomic_write_text(out / "results.csv", merged["barriers"].to_csv(index=False))
    atomic_write_text(out / "curves.csv", merged["curves"].to_csv(index=False))
    atomic_write_text(out / "failures.csv", pd.DataFrame(
        failures, columns=["point", *names, "error"]).to_csv(index=False))
    return merged["barriers"]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lmcnb sweep", description=__doc__.split("\n\n")[0],
                                 epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebook")
    ap.add_argument("--grid", nargs="+", action="extend", default=[], metavar="NAME=VALUES")
    ap.add_argument("--grid-file", help="YAML mapping of parameter names to lists of values")
    ap.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                    metavar=("NAME", "VALUE"), help="a fixed parameter (VALUE is YAML)")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int,
                       help="local Dask cluster of N workers (default: cores)")
    where.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:port)")
    where.add_argument("--scheduler-file", help="scheduler file of a running Dask scheduler")
    where.add_argument("--serial", action="store_true", help="no cluster: one point after another")
    ap.add_argument("--gpu", action="store_true", help="only on workers with the resource GPU")
    ap.add_argument("--retries", type=int, default=2, help="retries of a point whose kernel died")
    ap.add_argument("--out", default="sweep", help="output folder (default: ./sweep)")
    ap.add_argument("--dry-run", action="store_true", help="list the points, execute nothing")
    args = ap.parse_args(argv)
    import yaml

    from .executors import Dask, Serial

    if args.serial:
        executor = Serial()
    else:  # nothing starts or connects before the grid and the names are checked
        executor = Dask(address=args.scheduler, scheduler_file=args.scheduler_file,
                        n_workers=args.workers, gpu=args.gpu)
    try:
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be >= 1 (got {args.workers})")
        grid = parse_grid(args.grid, args.grid_file)
        parameters = {name: yaml.safe_load(value) for name, value in args.parameter}
        result = sweep(args.notebook, grid, parameters, args.out, executor, args.retries,
                       args.dry_run)
    except (ValueError, FileNotFoundError) as exc:
        print(f"lmcnb sweep: {exc}", file=sys.stderr)
        return 2
    finally:
        if isinstance(executor, Dask):
            executor.close()
    if args.dry_run:
        print(result.to_string(index=False))
        return 0
    failed = _count_failures(Path(args.out))
    print(f"{len(result)} result rows in {Path(args.out) / 'results.csv'}; "
          f"{failed} failed point(s) in {Path(args.out) / 'failures.csv'}")
    return 1 if failed else 0


def _count_failures(out: Path) -> int:
    import pandas as pd

    return len(pd.read_csv(out / "failures.csv"))
