"""The same independent smoke-profile work, serially and on a 2-worker local Dask cluster.

    LMCNB_DATA=../shared/data python benchmarks/sweep.py [--points 4] [--workers 2]

The work is `lmcnb sweep` over the CNN chapter at the `smoke` profile (LeNet5 on MNIST, one
spawn study per point), one point per seed: each point executes the notebook with papermill in a
fresh kernel and trains its own runs. Both ways start from an empty runs folder and do the same
points; serially one after the other in this process (each kernel free to use every core), then
on a `LocalCluster` of `--workers` single-threaded worker processes (each kernel gets cores ÷
workers threads). The cluster's start-up is inside the timed wall time. Printed: both wall times,
the speedup (target ≥ 1.7× on 2 cores), the load average before and after, and the largest
difference between the two ways' barrier tables (the kernels use different thread counts, so
the last bits of training may differ; see `lmcnb.executors`).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from lmcnb.experiments.executors import Dask, Serial
from lmcnb.experiments.sweep import sweep

CHAPTER = Path(__file__).resolve().parents[1] / "notebooks" / "cnn_baselines.ipynb"
FIXED = {"profile": "smoke", "model": "lenet5", "k1_steps": [], "k2_steps": []}


def timed(executor, points: int, folder: Path) -> tuple[float, pd.DataFrame]:
    os.environ["LMCNB_RUNS"] = str(folder / "runs")
    start = time.perf_counter()
    try:
        results = sweep(CHAPTER, {"seed": list(range(points))}, FIXED, folder / "sweep", executor,
                        progress=False)
    finally:
        if isinstance(executor, Dask):
            executor.close()
    return time.perf_counter() - start, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    print(f"{args.points} smoke-profile points of {CHAPTER.name}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        serial_s, serial = timed(Serial(), args.points, Path(tmp) / "serial")
        print(f"serial:                  {serial_s:6.1f} s")
        dask_s, dask = timed(Dask(n_workers=args.workers), args.points, Path(tmp) / "dask")
        print(f"local cluster, {args.workers} workers: {dask_s:6.1f} s")
    numeric = serial.select_dtypes("number").columns
    diff = (serial[numeric] - dask[numeric]).abs().max().max()
    print(f"speedup {serial_s / dask_s:.2f}x (target >= 1.7x); {len(serial)} result rows each, "
          f"max |difference| {diff:.2e} (serial kernels train on all cores, workers on one: "
          f"last-bit differences, an argmax such as alpha_star may flip); "
          f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
