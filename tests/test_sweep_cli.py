"""`lmcnb sweep` refuses a request it would have to guess about, in one line on stderr and exit
status 2, before anything runs: a value or a name given twice, bad grid syntax, a scheduler that
is not there."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import nbformat
import pytest

from lmcnb.core import env
from lmcnb.experiments.sweep import main


@pytest.fixture
def notebook(tmp_path, monkeypatch) -> Path:
    """A chapter with the parameters `seed` and `x`; runs go to `tmp_path/runs`."""
    monkeypatch.setenv(env.RUNS, str(tmp_path / "runs"))
    cell = nbformat.v4.new_code_cell("seed = 0\nx = 1")
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell("print(seed, x)")])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    path = tmp_path / "chapter.ipynb"
    nbformat.write(nb, path)
    return path


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refused(notebook: Path, capfd, *args: str) -> tuple[str, float]:
    """Run `lmcnb sweep notebook ARGS`; check exit status 2, one line on stderr, nothing run or
    written; return the line (without the prefix) and the seconds it took."""
    out = notebook.parent / "sweep"
    start = time.monotonic()
    status = main([str(notebook), "--out", str(out), *args])
    seconds = time.monotonic() - start
    captured = capfd.readouterr()
    lines = captured.err.splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("lmcnb sweep: "), captured
    assert not out.exists() and not (notebook.parent / "runs").exists()  # nothing ran
    return lines[0].removeprefix("lmcnb sweep: "), seconds


@pytest.mark.parametrize(("args", "message"), [
    (["--grid", "seed=0,0"], "grid seed: the value 0 is given twice"),
    (["--grid", "seed=0,range(0,2)"], "grid seed: the value 0 is given twice"),
    (["--grid", "seed=0,1", "seed=2"], "grid name 'seed' is given twice"),
    (["--grid", "seed=0,1", "-p", "seed", "3"],
     "['seed'] given both in the grid and as fixed parameters (-p): give each name once"),
    (["-p", "x", "1", "-p", "x", "2"], "parameter 'x' is given twice with -p"),
    (["--grid", "seed=[0,1"], "grid item seed=[0,1: an opening bracket is never closed"),
    (["--grid", "seed=0,1]"], "grid item seed=0,1]: unbalanced ']' at character 4"),
    (["--grid", "seed"], "grid item 'seed' is not NAME=VALUE[,VALUE...]"),
    (["--grid", "sead=0,1"], "unknown parameter(s) ['sead'] for chapter.ipynb; valid: seed, x"),
])
def test_a_request_that_would_need_a_guess_is_refused_naming_the_item(notebook, capfd, args,
                                                                      message):
    assert refused(notebook, capfd, *args)[0] == message


def test_a_missing_scheduler_file_is_refused_at_once(notebook, capfd):
    missing = notebook.parent / "scheduler.json"
    line, seconds = refused(notebook, capfd, "--grid", "seed=0,1", "--scheduler-file",
                            str(missing))
    assert line == f"no Dask scheduler file {missing}" and seconds < 15


def test_a_scheduler_that_does_not_answer_is_refused_after_the_timeout(notebook, capfd):
    address = f"tcp://127.0.0.1:{closed_port()}"
    line, seconds = refused(notebook, capfd, "--grid", "seed=0,1", "--scheduler", address,
                            "--timeout", "2")
    assert line.startswith(f"no Dask scheduler answered at {address} within 2 s")
    assert seconds < 8


def test_a_name_twice_in_a_grid_file_is_refused_not_the_last_one_kept(notebook, capfd):
    grid = notebook.parent / "grid.yaml"
    grid.write_text("seed: [0, 1]\nx: [1]\nseed: [2]\n")
    line, _ = refused(notebook, capfd, "--grid-file", str(grid))
    assert line == f"grid file {grid}: 'seed' is given twice (line 3)"
    line, _ = refused(notebook, capfd, "-p", "x", "{a: 1, a: 2}")
    assert line == "-p x: 'a' is given twice (line 1)"
