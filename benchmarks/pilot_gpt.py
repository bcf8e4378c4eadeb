"""The GPT chapter's pilot: how the barriers its claims need depend on the sizes that cost time.

    LMCNB_DATA=../shared/data python benchmarks/pilot_gpt.py            # every point, 2 processes
    python benchmarks/pilot_gpt.py --only ft-base sw-CPUGPT-300 --workers 1 --runs /tmp/pilot

Each point is a study the chapter itself runs (`lmcnb.chapters.gpt`, the `book` profile with the
point's sizes on top), with `--replicates` independent pairs at a short α grid (`--n-alpha`):

- `ft-*`: fine-tuning from the start pretrained here on Penn Treebank against the same shape
  trained from scratch, children spawned at k = 0 (a pair: the trunk and one child, the same
  data-order seeds for both starts) — over fine-tuning length, peak learning rate, model width,
  and evaluation tokens;
- `sw-*`: the sweep's models (CPUGPT, TinyGPT) from one random initialization: the pair after the
  whole run and after its first sixth, and children spawned at a later k — over training length;
- `pretrain-*`: the pretraining each fine-tuning shape needs (its CPU time only).

Every point runs in a process of its own with one intra-op thread (the chapter's
`TASK_THREADS`), `--workers` side by side; its CPU time (user + system, `resource.getrusage`) is
what the point cost, whatever else the machine was running. One row per pair and split goes to
`--out` (default `benchmarks/pilots/gpt_shakespeare.csv`) with the point's sizes, its CPU seconds
and the load average at its start; the GPT chapter reads that file for its profile section.
"""
from __future__ import annotations

import argparse
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parent / "pilots" / "gpt_shakespeare.csv"
# name: (kind, overrides of the book profile); "T" the run's length, "k" later spawn steps
POINTS = {  # in the order they are run (the longest first)
    "pretrain-CPUGPT": ("pretrain", {"model": "CPUGPT"}),
    "pretrain-TinyGPT": ("pretrain", {"model": "TinyGPT"}),
    "ft-long": ("finetune", {"model": "CPUGPT", "T": 300, "lr": 3e-3}),
    "ft-base": ("finetune", {"model": "CPUGPT", "T": 150, "lr": 3e-3}),
    "sw-CPUGPT-300": ("sweep", {"model": "CPUGPT", "T": 300, "lr": 3e-3, "k": [100]}),
    "ft-source-lr": ("finetune", {"model": "CPUGPT", "T": 150, "lr": 6e-4}),
    "sw-CPUGPT-150": ("sweep", {"model": "CPUGPT", "T": 150, "lr": 3e-3, "k": []}),
    "sw-TinyGPT-1000": ("sweep", {"model": "TinyGPT", "T": 1000, "lr": 3e-3, "k": []}),
    "sw-TinyGPT-300": ("sweep", {"model": "TinyGPT", "T": 300, "lr": 3e-3, "k": [100]}),
    "ft-narrow": ("finetune", {"model": "TinyGPT", "T": 150, "lr": 3e-3}),
    "ft-base-eval4x": ("finetune", {"model": "CPUGPT", "T": 150, "lr": 3e-3, "eval_iters": 8}),
}
KEEP = ["split", "spawn_step", "k2", "replicate", "loss_a", "loss_b", "error_a", "error_b",
        "relative_ppl_barrier", "relative_ppl_instability", "error_barrier", "instability_error",
        "loss_barrier", "relative_ppl_barrier_eval_sd", "error_barrier_eval_sd"]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def config(sizes: dict, args: argparse.Namespace):
    """The chapter's book profile with the point's sizes on top."""
    from lmcnb.chapters import gpt

    train = {"max_iters": sizes.get("T", 150), "warmup_steps": sizes.get("T", 150) // 10,
             "lr": sizes.get("lr", 3e-3), "min_lr": sizes.get("lr", 3e-3) / 10}
    return gpt.Config.resolve(
        "book", runs_dir=args.runs, n_alpha=args.n_alpha, n_inits=args.replicates,
        eval_iters=sizes.get("eval_iters", args.eval_iters), eval_tokens=args.eval_tokens,
        model=sizes["model"], train=train, spawn_steps=[0],
        finetune={"model": sizes["model"], "eval_iters": sizes.get("eval_iters", args.eval_iters),
                  "n_children": 2, "spawn_steps": [0], "train": train})


def run_point(name: str, args: argparse.Namespace) -> pd.DataFrame:
    """Run one point in this process (one thread); its pairs' rows with sizes and CPU time."""
    from lmcnb.chapters import gpt
    from lmcnb.core.device import task_threads

    kind, sizes = POINTS[name]
    load = os.getloadavg()[0]
    with task_threads():
        start, wall = cpu_seconds(), time.time()
        c = config(sizes, args)
        studies = {}
        if kind == "pretrain":
            gpt.pretrained_start(c)
        elif kind == "finetune":
            ft = gpt.finetune_setups(c, gpt.pretrained_start(c))
            studies = {start_: gpt.pair_study(s, [0], c.n_inits) for start_, s in ft.items()}
        else:
            s = gpt.setups(c)[sizes["model"]]
            studies = {"scratch": gpt.pair_study(s, [0, *sizes["k"]], c.n_inits, early=True)}
        cpu, wall = cpu_seconds() - start, time.time() - wall
    rows = [r.barriers[[k for k in KEEP if k in r.barriers]].assign(start=start_)
            for start_, r in studies.items()] or [pd.DataFrame({"start": ["-"]})]
    table = pd.concat(rows, ignore_index=True)
    lead = {"point": name, "kind": kind, "model": sizes["model"], "T": sizes.get("T"),
            "lr": sizes.get("lr"), "eval_tokens": (sizes.get("eval_iters", args.eval_iters)
                                                   * args.eval_tokens),
            "n_alpha": args.n_alpha, "cpu_s": round(cpu, 1), "wall_s": round(wall, 1),
            "load": round(load, 2)}
    for i, (key, value) in enumerate(lead.items()):
        table.insert(i, key, value)
    print(f"{name}: {cpu:.0f} CPU s, {wall:.0f} s wall, load {load:.2f} at start", flush=True)
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=list(POINTS), choices=list(POINTS))
    ap.add_argument("--workers", type=int, default=2, help="points run side by side")
    ap.add_argument("--replicates", type=int, default=3)
    ap.add_argument("--n-alpha", type=int, default=15)
    ap.add_argument("--eval-iters", type=int, default=2, help="evaluation batches per split")
    ap.add_argument("--eval-tokens", type=int, default=4096, help="tokens per evaluation batch")
    ap.add_argument("--runs", default="/tmp/lmcnb-pilot-gpt", help="runs folder (a cache)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    os.environ.setdefault("LMCNB_PROGRESS", "0")
    first = [n for n in args.only if POINTS[n][0] == "pretrain"]  # the fine-tuning points need it
    rest = [n for n in args.only if n not in first]
    parts = []
    with ProcessPoolExecutor(args.workers) as pool:
        for names in (first, rest):
            parts += list(pool.map(run_point, names, [args] * len(names)))
    table = pd.concat(parts, ignore_index=True)
    if args.out.exists() and set(args.only) != set(POINTS):  # a partial re-run updates its points
        old = pd.read_csv(args.out)
        table = pd.concat([old[~old.point.isin(args.only)], table], ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False, float_format="%.6g")
    print(f"{len(table)} rows → {args.out}; {table.groupby('point').cpu_s.first().sum():.0f} CPU s")


if __name__ == "__main__":
    main()
