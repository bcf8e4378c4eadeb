"""One chapter's independent runs on the serial executor and on a 2-worker local Dask cluster.

    LMCNB_DATA=../shared/data python benchmarks/executors.py             # the book-like study
    python benchmarks/executors.py --size smoke                          # seconds: the overhead

The work is the CNN chapter's LeNet5 spawn study (`lmcnb.experiments.study.spawn_study`) on
MNIST: at the book profile's size (`--size book`, the default) three trunks of 300 Adam steps of
128 images, two children at each of k = 0, 20, 100 (18 children: 21 runs), 9 pairs evaluated at
11 α on 3,000 training and 3,000 test images; at `--size smoke` the smoke profile's (12 steps of
64, two inits, k = 0, 4, 5 α on 100 images). Each executor starts from an empty runs folder:
`serial` trains every run in this process, one after the other; `local:2` is a `LocalCluster` of
two single-threaded worker processes, its start-up inside the timed wall time (also printed on its
own). Every task computes with the library's fixed budget (`lmcnb.core.device.TASK_THREADS`
intra-op threads) on both, so the study's tables must be byte-identical: `curves.csv` and
`barriers.csv` are compared byte for byte, and the script exits with status 1 if they differ.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import tempfile
import time
from pathlib import Path

from lmcnb.core import env
from lmcnb.core.ref import Ref
from lmcnb.experiments.executors import Dask, Serial
from lmcnb.experiments.setup import Setup
from lmcnb.experiments.study import spawn_study
from lmcnb.train.recipe import TrainConfig

SIZES = {  # the CNN chapter's profiles for LeNet5: recipe, spawn steps, inits, α, evaluation
    "book": dict(train=TrainConfig(batch_size=128, max_steps=300), spawn_steps=[0, 20, 100],
                 n_inits=3, n_alpha=11, eval_iters=3, eval_batch_size=1000),
    "smoke": dict(train=TrainConfig(batch_size=64, max_steps=12), spawn_steps=[0, 4],
                  n_inits=2, n_alpha=5, eval_iters=1, eval_batch_size=100),
}
TABLES = ("curves.csv", "barriers.csv")


def setup(runs_dir: Path, size: str, data_dir: str | None) -> Setup:
    s = SIZES[size]
    split = {name: Ref.of("data", "vision", name="mnist", split=name) for name in ("train", "test")}
    net = Ref.of("model", "lenet5", num_classes=10)
    return Setup("executors_benchmark", "lenet5", "mnist", net, split["train"], split["test"],
                 s["train"], str(runs_dir), model_args=(("num_classes", 10),), data_dir=data_dir,
                 n_alpha=s["n_alpha"], eval_iters=s["eval_iters"],
                 eval_batch_size=s["eval_batch_size"])


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="book", choices=list(SIZES))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-dir", default=None, help="else $LMCNB_DATA")
    args = ap.parse_args()
    os.environ[env.PROGRESS] = "0"  # no bars, here and in the workers
    s = SIZES[args.size]
    n_runs = s["n_inits"] * (1 + 2 * len(s["spawn_steps"]))
    print(f"load average at start: {load()}; LeNet5 spawn study, {args.size} size: {n_runs} runs, "
          f"{s['n_inits'] * len(s['spawn_steps'])} pairs")
    with tempfile.TemporaryDirectory() as tmp:
        walls, folders = {}, {}
        for name in ("serial", f"local:{args.workers}"):
            root = Path(tmp) / name.replace(":", "-")
            start = time.perf_counter()
            if name == "serial":
                executor = Serial()
            else:
                executor = Dask(n_workers=args.workers)
                executor.client.wait_for_workers(args.workers)
                print(f"  cluster of {args.workers} workers started in "
                      f"{time.perf_counter() - start:.1f} s")
            try:
                results = spawn_study(setup(root, args.size, args.data_dir), s["spawn_steps"],
                                      n_children=2, n_inits=s["n_inits"], executor=executor)
            finally:
                if isinstance(executor, Dask):
                    executor.close()
            walls[name] = time.perf_counter() - start
            folders[name] = results.folder
            print(f"  {name}: {walls[name]:.1f} s, load {load()}", flush=True)
        a, b = folders.values()
        same = {t: filecmp.cmp(a / t, b / t, shallow=False) for t in TABLES}
        serial, local = walls.values()
        print(f"\n| executor | wall time | speedup |\n|---|---:|---:|\n"
              f"| serial | {serial:.1f} s | 1 |\n"
              f"| local:{args.workers} (start-up included) | {local:.1f} s | "
              f"**{serial / local:.2f}×** |")
        print("\n" + ", ".join(f"{t}: {'identical' if ok else 'DIFFERENT'}"
                               for t, ok in same.items()))
    print(f"load average at end: {load()}")
    if not all(same.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
