"""`lmcnb sweep`: a chapter notebook executed with papermill at every point of a parameter grid,
on an executor (a Dask cluster, or serially), with one merged table of results.

    lmcnb sweep notebooks/cnn_baselines.ipynb --grid seed=0,1,2 model=lenet5,reduced_vgg \\
        -p profile book [--grid-file g.yaml] [--workers N | --scheduler ADDR | --scheduler-file F]
        [--timeout S] [--out DIR] [--dry-run]

Grid values are YAML scalars separated by commas; brackets keep commas inside one value
(`spawn_steps=[0,100],[0,200]`), and `range(a,b)` expands. A grid file is a YAML mapping of
names to lists. Nothing is guessed: a name given twice (in two `--grid` items, in the grid and
with `-p`, or twice with `-p`) and a value repeated within a name are errors, and every name is
checked against the notebook's parameters cell before anything runs. An existing scheduler that
does not answer within `--timeout` seconds (default 15) is an error.

Each point executes in its own folder `<out>/points/<id>` (the id hashes the notebook and the
point's parameters): the executed notebook, `done.json`, and the tables of every study the
chapter ran (`tables/`, collected through `$LMCNB_TABLES`). A finished point is not executed
again. A notebook that raises is not retried: it is listed in `failures.csv` and the other points
finish. A kernel that dies is retried (by the executor). `<out>/results.csv` holds every point's
barriers with the grid values as columns (`NAME_param` where the table has a column NAME of its
own), `<out>/curves.csv` the curves, `<out>/failures.csv` the points that failed and why.
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

from ..core import env
from ..core.env import runs_root
from ..core.files import atomic_write_text
from .executors import CONNECT_TIMEOUT, Dask, Executor, Failure, Serial, Task, get_executor
from .tables import read_table, write_table


# -- the grid ------------------------------------------------------------------------------------
def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets; unbalanced brackets are an error."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
            if depth < 0:
                raise ValueError(f"unbalanced {ch!r} at character {i + 1}")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise ValueError("an opening bracket is never closed")
    return parts + [text[start:]]


def _yaml(text: str, what: str) -> Any:
    """`text` as YAML (the safe loader), a key given twice in one mapping refused (YAML itself
    would keep the last)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            keys = [(self.construct_object(k, deep=True), k) for k, _ in node.value]
            for i, (key, key_node) in enumerate(keys):
                if any(key == earlier for earlier, _ in keys[:i]):
                    raise ValueError(f"{what}: {key!r} is given twice (line "
                                     f"{key_node.start_mark.line + 1})")
            return super().construct_mapping(node, deep)

    try:
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"{what}: {text!r} is not a YAML value ({problem})") from None


def parse_values(text: str, name: str = "grid") -> list[Any]:
    """`0,1,2` → [0, 1, 2]; `[0,100],[0,200]` → [[0, 100], [0, 200]]; `range(0,3)` → [0, 1, 2].
    A value repeated is an error (the point would run twice)."""
    try:
        parts = _split_top(text)
    except ValueError as exc:
        raise ValueError(f"grid item {name}={text}: {exc}") from None
    values: list[Any] = []
    for part in parts:
        part = part.strip()
        if m := re.fullmatch(r"range\((-?\d+),\s*(-?\d+)(?:,\s*(-?\d+))?\)", part):
            if m[3] is not None and int(m[3]) == 0:
                raise ValueError(f"grid item {name}={text}: range step 0")
            values.extend(range(int(m[1]), int(m[2]), int(m[3] or 1)))
        elif part:
            values.append(_yaml(part, f"grid item {name}"))
    if not values:
        raise ValueError(f"grid item {name}={text}: no values")
    _no_repeats(name, values)
    return values


def _no_repeats(name: str, values: Sequence[Any]) -> None:
    seen: list[str] = []
    for v in values:
        key = json.dumps(v, sort_keys=True, default=str)
        if key in seen:
            raise ValueError(f"grid {name}: the value {v!r} is given twice")
        seen.append(key)


def parse_grid(items: Sequence[str], grid_file: str | os.PathLike | None = None) -> dict[str, list]:
    """The grid from `name=v1,v2` items and an optional YAML file; a name given twice (in two
    items, or in an item and the file) is an error."""
    grid: dict[str, list] = {}
    if grid_file is not None:
        path = Path(grid_file)
        if not path.is_file():
            raise ValueError(f"no grid file {path}")
        loaded = _yaml(path.read_text(), f"grid file {path}")
        if not isinstance(loaded, dict) or not loaded:
            raise ValueError(f"{path}: a grid file is a mapping of parameter names to lists")
        for name, values in loaded.items():
            values = values if isinstance(values, list) else [values]
            if not values:
                raise ValueError(f"{path}: {name} has no values")
            _no_repeats(str(name), values)
            grid[str(name)] = values
    for item in items:
        name, eq, values = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ValueError(f"grid item {item!r} is not NAME=VALUE[,VALUE...]")
        if name in grid:
            raise ValueError(f"grid name {name!r} is given twice"
                             + (" (in the grid file and as an item)" if grid_file else ""))
        grid[name] = parse_values(values, name)
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
    """A point's folder name: a hash of the notebook's name and the point's parameters."""
    blob = json.dumps({"notebook": Path(notebook).name, "parameters": params}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def points(grid: Mapping[str, list], parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, on top of the fixed `parameters` (a name in
    both is an error)."""
    both = sorted(set(grid) & set(parameters))
    if both:
        raise ValueError(f"{both} given both in the grid and as fixed parameters (-p): give "
                         "each name once")
    names = list(grid)
    return [{**parameters, **dict(zip(names, combo))}
            for combo in itertools.product(*(grid[n] for n in names))]


# -- one point -------------------------------------------------------------------------------------
NOTEBOOK_RAISED = 3  # exit status of `_execute` when the notebook itself raised


def run_point(notebook: str, params: dict[str, Any], folder: str, cwd: str,
              shared: dict[str, str]) -> dict[str, Any]:
    """Execute the notebook at `params` into `folder`, then copy the tables of every study it ran
    into `folder/tables`. A notebook that raises is reported as failed (not an exception: it is
    not retried); a kernel that dies raises (the executor retries it).

    papermill runs in a child process of its own: run inside a Dask worker's thread, beside the
    worker's event loop, two concurrent points took 19–25 s each against 18 s this way.
    """
    out = Path(folder)
    listing = out / "tables.txt"
    listing.unlink(missing_ok=True)
    kernel_env = {**os.environ, **shared, env.TABLES: str(listing), env.LIVE: "0"}
    request = {"notebook": notebook, "output": str(out / Path(notebook).name),
               "parameters": params, "cwd": cwd, "error": str(out / "error.json")}
    atomic_write_text(out / "request.json", json.dumps(request, indent=1))
    start = time.time()
    code = ("import sys; from lmcnb.experiments.sweep import _execute; "
            "sys.exit(_execute(sys.argv[1]))")
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
    _collect_tables(listing, out / "tables")
    record.update(status="done", error="")
    (out / "failed.json").unlink(missing_ok=True)
    atomic_write_text(out / "done.json", json.dumps(record, indent=1, default=str))
    return record


def _collect_tables(listing: Path, into: Path) -> None:
    """Copy the (verified) tables of the study folders `listing` names into `into`."""
    folders = dict.fromkeys(listing.read_text().split()) if listing.exists() else {}
    for folder in map(Path, folders):
        for kind in ("curves", "barriers"):
            table = read_table(folder / f"{kind}.csv")
            if table is None:
                raise RuntimeError(f"the study tables in {folder} are missing or damaged")
            write_table(into / f"{folder.name}.{kind}.csv", table)


def _execute(request_file: str) -> int:
    """In the child process of `run_point`: papermill at the request's parameters."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

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
          executor: str | Executor = "local", retries: int = 2, dry_run: bool = False,
          progress: bool = True):
    """Execute `notebook` at every point of `grid`; returns the merged results (a DataFrame).

    `executor` is an `lmcnb.experiments.executors` executor or its name ("local", "local:N", a
    scheduler address or file, "serial"). `retries`: further tries of a point whose kernel died.
    `dry_run` lists the points (and whether each is cached) and executes nothing.
    """
    import pandas as pd

    from ..core.progress import bar as progress_bar

    notebook = Path(notebook).resolve()
    parameters = dict(parameters or {})
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook {notebook}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0 (got {retries!r})")
    out_dir = Path(out).resolve()
    todo = []
    for params in points(grid, parameters):
        folder = out_dir / "points" / point_id(notebook, params)
        todo.append((params, folder, (folder / "done.json").exists()))
    check_names(notebook, [*grid, *parameters])
    if dry_run:
        return pd.DataFrame([{"point": f.name, **p, "cached": c} for p, f, c in todo])
    ex = get_executor(executor)
    if isinstance(ex, Dask):
        _ = ex.client  # connect (or start the cluster) now: a missing scheduler fails here
    atomic_write_text(out_dir / "sweep.json", json.dumps(
        {"notebook": str(notebook), "grid": grid, "parameters": parameters}, indent=1, default=str))
    # Kernels share this process's runs folder and data root, and its working directory.
    shared = {env.RUNS: str(runs_root())}
    if os.environ.get(env.DATA):
        shared[env.DATA] = os.environ[env.DATA]
    records, counts = [], {"done": 0, "cached": 0, "failed": 0}
    bar = progress_bar(total=len(todo), desc="points", disable=not progress)

    def finished(key: str, record: dict[str, Any] | Failure, cached: bool = False) -> None:
        if isinstance(record, Failure):  # the kernel died on every try
            record = {"point": key.removeprefix("point-"), "status": "failed",
                      "error": record.error}
        records.append(record)
        counts["cached" if cached else record["status"]] += 1
        bar.set_postfix(counts)
        bar.update(1)

    for _params, folder, cached in todo:
        if cached:
            finished(folder.name, json.loads((folder / "done.json").read_text()), cached=True)
    tasks = []
    for params, folder, cached in todo:
        if not cached:
            folder.mkdir(parents=True, exist_ok=True)
            tasks.append(Task(f"point-{folder.name}", run_point,
                              (str(notebook), params, str(folder), os.getcwd(), shared),
                              retries=retries))
    ex.run(tasks, [t.key for t in tasks], failures="record", done=finished)
    bar.close()
    return _merge(out_dir, records, {f.name: p for p, f, _ in todo}, list(grid))


def _merge(out: Path, records: list[dict[str, Any]], by_id: dict[str, dict], names: list[str]):
    """results.csv, curves.csv and failures.csv from the points' folders; returns the results."""
    import pandas as pd

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


def _fixed(pairs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """`-p NAME VALUE` pairs as parameters (a name given twice is an error)."""
    parameters: dict[str, Any] = {}
    for name, value in pairs:
        if name in parameters:
            raise ValueError(f"parameter {name!r} is given twice with -p")
        parameters[name] = _yaml(value, f"-p {name}")
    return parameters


def main(argv: Sequence[str] | None = None) -> int:
    """The `lmcnb sweep` command (see the module docstring); 2 on a bad request, 1 if a point
    failed."""
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
    ap.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT,
                    help=f"seconds to reach a scheduler (default {CONNECT_TIMEOUT:g})")
    ap.add_argument("--gpu", action="store_true", help="only on workers with the resource GPU")
    ap.add_argument("--retries", type=int, default=2, help="retries of a point whose kernel died")
    ap.add_argument("--out", default="sweep", help="output folder (default: ./sweep)")
    ap.add_argument("--dry-run", action="store_true", help="list the points, execute nothing")
    args = ap.parse_args(argv)
    executor: Executor | None = None
    try:  # nothing starts or connects before the grid and the names are checked
        grid = parse_grid(args.grid, args.grid_file)
        parameters = _fixed(args.parameter)
        executor = Serial() if args.serial else Dask(
            address=args.scheduler, scheduler_file=args.scheduler_file, n_workers=args.workers,
            gpu=args.gpu, timeout=args.timeout)
        result = sweep(args.notebook, grid, parameters, args.out, executor, args.retries,
                       args.dry_run)
    except (ValueError, FileNotFoundError, ConnectionError) as exc:
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
