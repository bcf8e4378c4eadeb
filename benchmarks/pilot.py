"""A chapter's pilot: how the quantities its claims need depend on what costs time.

    LMCNB_DATA=../shared/data python benchmarks/pilot.py ptb                  # ~20 CPU-minutes
    LMCNB_DATA=../shared/data python benchmarks/pilot.py cnn --model alexnet
    python benchmarks/pilot.py ptb --inits 2 --lengths 100 200 --k 50         # a quick look

The chapter's model, recipe and evaluation at its `book` profile, the training length and the
spawn steps given here. For each of `--inits` initializations a trunk trains `max(--lengths)`
steps; two children spawned at k = 0 train as long, with checkpoints at every length of
`--lengths`; two children spawned at each k of `--k` train to the middle length. A child's
checkpoint at T is a child trained T steps only where the learning rate does not depend on the
length (PTB inside its first epoch; the CNNs' constant-rate Adam). Every pair is interpolated on
the chapter's evaluation sample of the test split (what the claims are decided on), and gives:

* the barrier-first quantities (the error barrier; for a language model the relative perplexity
  barrier too), the sources' measures (I_E, R) and R's two parts (the rise above the worse end,
  the gap between the ends);
* the evaluation noise of each barrier: its bootstrap SD over the sample's examples, and over the
  first quarter and half of them (what a smaller sample would give);
* the CPU seconds of each run and of each pair's evaluation (every task single-threaded).

Tasks run on `--executor` (default: a local cluster of two workers). The rows go to `--out`
(default: benchmarks/pilots/<chapter>[-<model>].csv, committed; the chapter reads it for its
profile section with `lmcnb.book.pilots.read_pilot`); a summary per length and k is printed.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lmcnb.chapters import cnn, ptb
from lmcnb.experiments.executors import Task, get_executor
from lmcnb.experiments.setup import Setup

PILOTS = Path(__file__).resolve().parent / "pilots"
BARRIERS = {False: ("error_barrier", "instability_error"),
            True: ("relative_ppl_barrier", "error_barrier", "relative_ppl_instability")}


def pair_rows(setup: Setup, a: dict, b: dict, key: dict) -> list[dict]:
    """The barrier rows of one pair on both splits, with evaluation noise at three sample sizes."""
    from lmcnb.experiments.study import _eval_data
    from lmcnb.lmc.interpolate import alpha_grid, interpolation_curve
    from lmcnb.lmc.metrics import barriers, bootstrap_sd

    ev = _eval_data(setup)
    splits = {"test": ev["splits"]["test"]}  # what the claims are decided on
    alphas = alpha_grid(setup.n_alpha)
    start = time.process_time()
    path = interpolation_curve(ev["model"], a, b, splits, alphas,
                               batch_size=setup.eval_batch_size, progress=False)
    seconds = time.process_time() - start
    lm = setup.language_model
    rows = []
    for split, c in path.frame.groupby("split", sort=False):
        loss, error = path.examples[split]
        row = {**key, "split": split, "eval_cpu_s": seconds,
               "examples": loss.shape[1], "predictions": int(splits[split].y.numel()),
               **barriers(c.alpha, c.loss, c.error, language_model=lm)}
        if lm:
            ppl = np.exp(c.loss.to_numpy())
            row |= {"ppl_a": ppl[0], "ppl_b": ppl[-1],
                    "rise": (ppl.max() - max(ppl[0], ppl[-1])) / ppl.max(),
                    "gap": abs(ppl[0] - ppl[-1]) / 2 / ppl.max()}
        for part in (4, 2, 1):
            m = max(2, loss.shape[1] // part)
            sd = bootstrap_sd(alphas, loss[:, :m], error[:, :m], language_model=lm)
            row |= {f"{q}_eval_sd_1/{part}": sd[q] for q in BARRIERS[lm]}
        rows.append(row)
    return rows


def init_task(setup: Setup, init: int, lengths: tuple[int, ...], ks: tuple[int, ...]) -> list:
    """Train one initialization's trunk and children; evaluate its pairs (one worker's task)."""
    rows = []
    trunk = setup.trunk(init)
    start = time.process_time()
    trunk.ensure_trained((0, *ks))
    trunk_s = time.process_time() - start
    middle = lengths[len(lengths) // 2]
    for k, stop, keep in [(0, max(lengths), lengths[:-1])] + [(k, middle, ()) for k in ks]:
        kids, seconds = [], []
        for c in range(2):
            start = time.process_time()
            kids.append(setup.child(trunk, k, stop, "spawn", init, k, c).ensure_trained(keep))
            seconds.append(time.process_time() - start)
        for length in (lengths if k == 0 else (middle,)):
            a, b = (kid.ensure_weights(length) for kid in kids)
            key = {"init": init, "k": k, "length": length, "steps_per_epoch":
                   setup.steps_per_epoch, "child_cpu_s": float(np.mean(seconds)),
                   "child_steps": stop - k, "trunk_cpu_s": trunk_s, "trunk_steps": max(lengths)}
            rows += pair_rows(setup, a, b, key)
    return rows


def chapter_setup(chapter: str, model: str | None, runs: str, inits: int,
                  lengths: tuple[int, ...], ks: list[int], eval_iters: int | None,
                  eval_tokens: int | None, batch_size: int | None) -> tuple[Setup, str]:
    """The chapter's book-profile setup at the pilot's length and spawn steps, and the name of
    its results file."""
    if chapter == "ptb":
        c = ptb.Config.resolve("book", None, runs_dir=runs, n_inits=inits,
                               train={"length": max(lengths)}, spawn_steps=[0, *ks],
                               noise_steps=[0], eval_iters=eval_iters, eval_tokens=eval_tokens)
        return ptb.setups(c)["transformer_lm"], ptb.CHAPTER
    if model not in cnn.RECIPES:
        raise SystemExit(f"cnn needs --model, one of {', '.join(cnn.RECIPES)}")
    train = {"max_steps": max(lengths)} | ({"batch_size": batch_size} if batch_size else {})
    c = cnn.Config.resolve("book", None, runs_dir=runs, model=model, n_inits=inits,
                           train={model: train}, spawn_steps={model: [0, *ks]},
                           k1_steps={model: []}, k2_steps={model: []},
                           eval_iters={model: eval_iters} if eval_iters else None)
    name = f"cnn_baselines-{model}" + (f"-batch{batch_size}" if batch_size else "")
    return cnn.setups(c)[model], name


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("chapter", choices=("ptb", "cnn"))
    ap.add_argument("--model", help="the CNN chapter's network")
    ap.add_argument("--inits", type=int, default=3)
    ap.add_argument("--lengths", type=int, nargs="+", default=[150, 300, 600],
                    help="training lengths in steps (the k = 0 children's checkpoints)")
    ap.add_argument("--k", type=int, nargs="*", default=[100],
                    help="later spawn steps, children trained to the middle length")
    ap.add_argument("--eval-iters", type=int, default=None,
                    help="evaluation batches per split (default: the book profile's)")
    ap.add_argument("--eval-tokens", type=int, default=None,
                    help="PTB: tokens per evaluation batch (default: the book profile's)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="CNN: images per step (default: the book profile's)")
    ap.add_argument("--executor", default="local")
    ap.add_argument("--runs-dir", default=None, help="default: a folder under /tmp")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    lengths = tuple(sorted(set(args.lengths)))
    if args.inits < 2 or any(k >= lengths[len(lengths) // 2] or k < 1 for k in args.k):
        ap.error("need --inits >= 2 and every --k in [1, the middle length)")
    runs = args.runs_dir or f"/tmp/lmcnb-pilot-{args.chapter}"
    setup, name = chapter_setup(args.chapter, args.model, runs, args.inits, lengths, args.k,
                                args.eval_iters, args.eval_tokens, args.batch_size)
    out = args.out or PILOTS / f"{name}.csv"
    print(f"{setup.steps_per_epoch} steps per epoch; lengths {lengths}; k = 0, {args.k}; "
          f"{args.inits} inits; runs in {runs}", flush=True)
    start = time.time()
    tasks = [Task(f"init-{i}", init_task, (setup, i, lengths, tuple(args.k)))
             for i in range(args.inits)]
    parts = get_executor(args.executor).run(tasks, [t.key for t in tasks])
    table = pd.DataFrame([row for part in parts for row in part])
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    print(f"wall {time.time() - start:.0f} s; rows in {out}")
    lm = setup.language_model
    cols = [*BARRIERS[lm], f"{BARRIERS[lm][0]}_eval_sd_1/1"]
    cols += ["ppl_a", "rise", "gap"] if lm else []
    test = table[table.split == "test"]
    print(test.groupby(["k", "length"])[cols].agg(["mean", "std"]).round(4).to_string())
    print(table.groupby(["k", "length"])[["child_cpu_s", "eval_cpu_s"]].mean().round(1))


if __name__ == "__main__":
    main()
