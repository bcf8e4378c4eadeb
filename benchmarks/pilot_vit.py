"""The ViT chapter's pilot: how the instability of fine-tuned and scratch children, and the
transfer from the source pretrained here, depend on the length of fine-tuning and its learning
rate — the sizes that cost the `book` profile its time.

    LMCNB_DATA=../shared/data python benchmarks/pilot_vit.py --runs-dir /tmp/pilot_vit_runs
    python benchmarks/pilot_vit.py --summary          # the tables of the committed results only

What it trains (the chapter's own functions, `lmcnb.chapters.vit`): the MiniViT pretrained on
Tiny ImageNet-20 at 32×32 (`--pretrain-steps`, batch 64, AdamW, cosine), then for each start
(those pretrained weights with a new head, or a random initialization of the same shape), each
learning rate (`--lrs`) and each replicate (`--replicates`) one pair: a trunk and a child spawned
from it at k = 0, both fine-tuned on CIFAR-10 with the chapter's recipe (batch 32, a constant
learning rate without warm-up, AdamW with torch's default weight decay 0.01, Han and Zhu's
augmentation) and checkpointed at every length of `--lengths`. With a constant learning rate the
checkpoint at step T *is* a run of length T, so one pair gives the whole length axis. The trunk and
its child at k = 0 differ in their data order and augmentation only, as two children spawned at
k = 0 do (the chapter's main-branch pairs).

Each pair is interpolated at every length on `--test-images` CIFAR-10 test images (the chapter's
fixed sample, seed 2), 11 α: the error barrier and its bootstrap SD over the test examples,
Frankle's I_E, the loss barrier, the peak loss against the endpoints' mean (the source's "over
twice the endpoints' mean"), both endpoints' accuracy. Every task runs single-threaded on a
2-worker Dask cluster; its CPU seconds (`time.process_time`, training and evaluation apart) and
the load average are recorded beside its numbers in `--out` (default
benchmarks/pilots/vit_platon.csv, which the chapter's profile section reads); a pair or a
pretraining found already trained in `--runs-dir` has no training CPU seconds (NaN), so the cost
is that of the runs this invocation trained.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
OUT = HERE / "pilots" / "vit_platon.csv"


def recipe(lr: float, steps: int, batch: int, weight_decay: float):
    """The chapter's fine-tuning recipe at `lr` for `steps` (constant, no warm-up)."""
    from lmcnb.chapters.vit import FineTune

    return FineTune(batch_size=batch, max_steps=steps, lr=lr, warmup_steps=0,
                    schedule="constant", weight_decay=weight_decay, log_every=50).recipe()


def images():
    from lmcnb.chapters.vit import JITTER, Images

    return Images(size=None, normalize="dataset", crop_scale=0.75, jitter=list(JITTER))


def pretrain_task(args: dict) -> dict:
    """Pretrain the source (cached); its folder and CPU seconds (NaN where found trained)."""
    from lmcnb.chapters.vit import FineTune, pretrain

    finished = set((Path(args["runs_dir"]) / "train").glob("vit-*/done.json"))
    start = time.process_time()
    train = FineTune(batch_size=64, max_steps=args["pretrain_steps"], lr=1e-3,
                     warmup_steps=args["pretrain_warmup"], schedule="cosine",
                     weight_decay=args["weight_decay"], log_every=50).recipe()
    folders = pretrain("MiniViT", train, args["runs_dir"], [args["pretrain_steps"]],
                       images=images(), size=32, data_dir=args["data_dir"])
    cpu = time.process_time() - start
    trained = set((Path(args["runs_dir"]) / "train").glob("vit-*/done.json")) - finished
    return {"folder": folders[args["pretrain_steps"]], "cpu_s": cpu if trained else np.nan}


def cell_task(args: dict, start: str, lr: float, replicate: int,
              source: dict | None = None) -> list[dict]:
    """One pair (trunk, child at k = 0) of `start` at `lr`, trained to the longest length with a
    checkpoint at every length, compared at each; one row per length."""
    import torch

    from lmcnb.chapters.vit import vit_setup
    from lmcnb.core.device import task_threads
    from lmcnb.experiments.catalog import build
    from lmcnb.lmc.interpolate import alpha_grid, eval_subset, pair_tables

    lengths = sorted(args["lengths"])
    train = recipe(lr, lengths[-1], args["batch"], args["weight_decay"])
    kind = {"shape": "MiniViT"} if start == "scratch" else {"pretrained": source["folder"]}
    setup = vit_setup("vit_pilot", f"MiniViT-{start}", train, args["runs_dir"], images=images(),
                      data_dir=args["data_dir"], seed=0, **kind)
    load0 = os.getloadavg()[0]
    t0 = time.process_time()
    trunk = setup.trunk(replicate)
    child = setup.child(trunk, 0, lengths[-1], "spawn", replicate, 0, 0)
    trained_here = trunk.done is None and child.done is None  # else its CPU is not the pair's
    trunk.ensure_trained(lengths)
    child.ensure_trained(lengths)
    train_cpu = time.process_time() - t0 if trained_here else np.nan
    t0 = time.process_time()
    bs = 1000
    test = eval_subset(setup.load(setup.test_data), args["test_images"] // bs, bs, "cpu", seed=2)
    with torch.random.fork_rng():
        model = build(setup.net, setup.data_dir)
    rows = []
    for steps in lengths:
        with task_threads():
            curves, barriers = pair_tables(model, trunk.weights(steps), child.weights(steps),
                                           {"test": test}, alpha_grid(args["n_alpha"]),
                                           batch_size=bs, bn_reset_data=None,
                                           language_model=False, progress=False)
        b = barriers.iloc[0]
        loss = curves.loss.to_numpy()
        rows.append({"start": start, "lr": lr, "replicate": replicate, "steps": steps,
                     "epochs": round(steps * args["batch"] / 50_000, 3),
                     "error_barrier": b.error_barrier,
                     "error_barrier_eval_sd": b.error_barrier_eval_sd,
                     "instability_error": b.instability_error,
                     "loss_barrier": b.loss_barrier,
                     "loss_peak_ratio": float(loss.max() / (0.5 * (loss[0] + loss[-1]))),
                     "accuracy_a": 1 - b.error_a, "accuracy_b": 1 - b.error_b,
                     "test_images": len(test)})
    eval_cpu = time.process_time() - t0
    for r in rows:  # the pair's cost, once per pair (on its longest row)
        last = r["steps"] == lengths[-1]
        r.update(train_cpu_s=round(train_cpu, 1) if last else np.nan,
                 eval_cpu_s=round(eval_cpu, 1) if last else np.nan,
                 train_steps=2 * lengths[-1] if last else np.nan,
                 load=round((load0 + os.getloadavg()[0]) / 2, 2))
    return rows


def run(args: dict) -> pd.DataFrame:
    from lmcnb.experiments.executors import Task, get_executor

    tasks = [Task("pretrain", pretrain_task, (args,))]
    for start in ("scratch", "pretrained"):
        for lr in args["lrs"]:
            for r in range(args["replicates"]):
                deps = ("pretrain",) if start == "pretrained" else ()
                tasks.append(Task(f"cell-{start}-{lr}-{r}", cell_task, (args, start, lr, r),
                                  deps=deps))
    results = get_executor(args["executor"]).run(tasks, [t.key for t in tasks])
    source, cells = results[0], results[1:]
    table = pd.DataFrame([row for rows in cells for row in rows])
    table["pretrain_steps"] = args["pretrain_steps"]
    table["pretrain_cpu_s"] = round(source["cpu_s"], 1)
    table["batch_size"] = args["batch"]
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs-dir", default="/tmp/pilot_vit_runs")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--pretrain-warmup", type=int, default=100)
    p.add_argument("--lrs", type=float, nargs="+", default=[2e-4, 1e-3])
    p.add_argument("--lengths", type=int, nargs="+", default=[100, 200, 400, 800])
    p.add_argument("--replicates", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--test-images", type=int, default=2000)
    p.add_argument("--n-alpha", type=int, default=11)
    p.add_argument("--executor", default="local:2")
    p.add_argument("--summary", action="store_true", help="print the summary of --out only")
    a = p.parse_args()
    if not a.summary:
        wall, load = time.time(), os.getloadavg()
        table = run({k: v for k, v in vars(a).items() if k not in ("out", "summary")})
        a.out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(a.out, index=False)
        print(f"wrote {a.out}: {len(table)} rows in {(time.time() - wall) / 60:.1f} min wall, "
              f"load {load[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    table = pd.read_csv(a.out)
    from lmcnb.chapters.vit import pilot_cost

    cost = pilot_cost(table)
    print(f"CPU: {cost['cpu_min']:.1f} min (pretraining {cost['pretrain_s']:.0f} s; "
          f"{cost['ms_step']:.1f} ms per fine-tuning step, {cost['ms_image']:.2f} ms per image "
          f"and α evaluated; mean load {cost['load']:.2f})")
    from lmcnb.chapters.vit import pilot_summary, pilot_table

    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(pilot_table(pilot_summary(table)).to_string(index=False))


if __name__ == "__main__":
    main()
