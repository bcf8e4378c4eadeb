"""Devices: the one a computation runs on, deterministic kernels on accelerators, and the fixed
CPU thread budget of every task."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .checks import choose

if TYPE_CHECKING:
    import torch

DEVICES = ("cpu", "cuda", "mps")


def pick_device(device: str | None = None) -> str:
    """`device` (checked: a kind of `DEVICES` that this machine has), or `"auto"`/None: the best
    available of cuda, mps, cpu."""
    import torch

    if device in (None, "auto"):
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if not isinstance(device, str):
        raise ValueError(f"device must be a string, one of 'auto', {', '.join(map(repr, DEVICES))}"
                         f" (got {device!r})")
    kind, _, index = device.partition(":")
    choose("device", kind, DEVICES)
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": torch.backends.mps.is_available()}
    if not available[kind]:
        raise ValueError(f"device {device!r} was asked for, but this machine has no {kind} device "
                         "(use 'auto' for the best one it has)")
    count = torch.cuda.device_count() if kind == "cuda" else 1
    if index and (not index.isdigit() or int(index) >= count):
        raise ValueError(f"device {device!r}: no such {kind} device on this machine")
    return device


def deterministic_kernels(device: torch.device | str) -> None:
    """On an accelerator, switch torch to its deterministic kernels (cuDNN's deterministic
    convolution algorithms, cuBLAS with a fixed workspace, deterministic scatter and embedding
    gradients, the deterministic backward of memory-efficient attention), so the same seeds give
    the same weights run after run on one machine, as on the CPU: the noise between two children
    is then only the noise their seeds name. An op with no deterministic kernel raises torch's
    error naming it. Process-wide, like torch's switches; nothing to do on the CPU, whose kernels
    are deterministic."""
    import torch

    if torch.device(device).type == "cpu":
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)


# Every CPU computation of lmcnb (training, evaluation) uses this many intra-op threads, whatever
# the machine: CPU kernels reduce in an order that depends on the thread count (one LeNet5 step's
# gradients differ in the last bits between 1 and 2 threads), so a fixed budget gives the same
# bytes on a 2-core laptop and a 64-core server. Parallelism comes from tasks in processes side
# by side (`lmcnb.experiments.executors`).
TASK_THREADS = 1


@contextlib.contextmanager
def task_threads() -> Iterator[int]:
    """Compute with `TASK_THREADS` intra-op threads inside the block (torch's setting restored
    after), if torch is loaded (a process that never imports it, such as a sweep's worker, is left
    alone); yields the budget, which runs record in their events."""
    torch = sys.modules.get("torch")
    saved = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(TASK_THREADS)
    try:
        yield TASK_THREADS
    finally:
        if torch:
            torch.set_num_threads(saved)
