"""Files: written atomically (a temporary file renamed into place) with the umask's permissions,
locked across processes, set aside when they fail verification (with a line for the reader), and
the event log a run's folder keeps."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    """This process's umask (read without changing it where /proc allows)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """Call `write(tmp_path)`, then rename the temp file onto `path` (same folder, atomic).

    The file gets the mode an ordinary `open` would give it (0666 less the umask), so colleagues
    sharing a runs folder can read it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    atomic_write(path, lambda tmp: tmp.write_text(text))


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on `folder` held across processes (and Dask workers on one machine)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def notice(text: str) -> None:
    """One line for the reader, in the output of the notebook or command that runs this: what
    lmcnb repaired or recovered on its own."""
    print(f"lmcnb: {text}", flush=True)


def set_aside(path: Path, why: str, then: str) -> Path:
    """Move a file that failed verification to `<stem>.damaged` (a folder to `<name>.damaged`;
    kept for inspection, replacing an older one) and say so: `why` it failed and what happens
    `then`."""
    path = Path(path)
    damaged = (path.with_name(f"{path.name}.damaged") if path.is_dir()
               else path.with_suffix(".damaged"))
    if damaged.is_dir():
        shutil.rmtree(damaged)
    os.replace(path, damaged)
    notice(f"set aside {path} ({why}); {then}")
    return damaged


def append_event(folder: Path, event: str, **fields: Any) -> None:
    """Append a line to `folder/events.jsonl`: what happened to the run there, when, where."""
    line = json.dumps({"time": round(time.time(), 3), "event": event,
                       "host": socket.gethostname(), "pid": os.getpid(), **fields})
    with open(Path(folder) / "events.jsonl", "a") as fh:
        fh.write(line + "\n")
