"""Wall time of the four source chapters at the `book` sizes they had when the engine's speed was
last measured before its rewrite (the notebooks of 2026-12-04), on today's engine.

    LMCNB_DATA=../shared/data python benchmarks/chapter_times.py --runs /tmp/ct-runs   # ~40 min

The profiles have grown since (more replicates and longer runs, to decide the chapters' claims);
this script puts the old sizes back as explicit parameters, so the two timings are of the same
amount of work where the chapters still do it. Each chapter is executed as `make book` executes
it (`python -m lmcnb.book.execute --profile book --only CH --executor local -p NAME JSON …`), in
the book's order, on the runs folder given (empty for a fresh timing); wall time and the load
average at both ends are printed per chapter. What the chapters no longer do at these sizes (the
GPT and ViT pairs are two runs where they were three; the ViT chapter's pretraining-length
study is gone) is not put back here: benchmarks/README.md gives its cost, timed separately.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# The book profiles of 2026-12-04 (commit e56dc12's notebooks), in today's parameter names; every
# other parameter is today's book profile.
OLD_BOOK = {
    "cnn_baselines": dict(
        n_inits={"lenet5": 3, "reduced_vgg": 2, "alexnet": 2},
        spawn_steps={"lenet5": [0, 20, 100], "reduced_vgg": [0, 75], "alexnet": [0, 150]},
        train={"lenet5": dict(batch_size=128, max_steps=300),
               "reduced_vgg": dict(batch_size=64, max_steps=300),
               "alexnet": dict(batch_size=32, max_steps=600)}),
    "gpt_shakespeare": dict(n_inits=3, finetune=dict(n_pairs=3)),
    "ptb_transformer": dict(train=dict(length=120), train_chunks=40,  # 3 epochs of 40 chunks
                            spawn_steps=[0, 4, 10, 20, 40, 80], n_inits=3, noise_steps=[0, 40]),
    "vit_platon": dict(
        pretrain=dict(steps=600, batch_size=64, lr=1e-3, warmup_steps=30, schedule="cosine"),
        finetune=dict(batch_size=64, max_steps=200, lr=1e-3, warmup_steps=10,
                      schedule="constant", log_every=5),
        spawn_steps=[0, 50, 150], scratch_steps=[0, 50, 100], n_inits=3,
        pruning=dict(max_steps=100, initial_warmup=10, final_warmup=25, delta_t=5, n_inits=2),
        masked=dict(steps=[0, 50, 150], n_inits=2), eval_iters=1),
}


def load() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=Path, required=True, help="the runs folder (empty: fresh)")
    ap.add_argument("--out", type=Path, default=Path("_build/chapter-times"),
                    help="folder of the executed notebooks")
    ap.add_argument("--only", nargs="*", default=list(OLD_BOOK), choices=list(OLD_BOOK))
    args = ap.parse_args()
    env = dict(os.environ, LMCNB_RUNS=str(args.runs.resolve()))
    total = 0.0
    print(f"{'chapter':<16} {'wall':>8}  load at start → end")
    for chapter in args.only:
        cmd = [sys.executable, "-m", "lmcnb.book.execute", "--profile", "book", "--only", chapter,
               "--executor", "local", "--out", str(args.out)]
        for name, value in OLD_BOOK[chapter].items():
            cmd += ["-p", name, json.dumps(value)]
        before, t0 = load(), time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        total += wall
        print(f"{chapter:<16} {wall:>7.0f}s  {before} → {load()}", flush=True)
    print(f"{'together':<16} {total:>7.0f}s  = {total / 60:.1f} min")


if __name__ == "__main__":
    main()
