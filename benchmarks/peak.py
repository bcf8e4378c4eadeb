"""What the benchmarks measure alike: the fp32 matrix-multiply peak they compare their achieved
GFLOP/s with, and the time of a training step."""
from __future__ import annotations

import time

import torch


def sync(device: torch.device | str = "cpu") -> None:
    """Wait for `device`'s queued work (a no-op on the CPU), so a timer reads finished work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(n: int = 2048, repeats: int = 10, device: torch.device | str = "cpu") -> float:
    """Best fp32 GFLOP/s of `repeats` n×n matrix products (after one warm-up), on torch's
    threads or on `device` (with torch's current TF32 setting)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    out = torch.empty(n, n, device=device)
    torch.mm(a, b, out=out)
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b, out=out)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def step_seconds(trainer, steps: int, warmup: int = 3) -> float:
    """Mean seconds per optimizer step of an `lmcnb.train.Trainer`, after `warmup` untimed steps."""
    for _ in range(warmup):
        trainer.step()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    return (time.perf_counter() - start) / steps

