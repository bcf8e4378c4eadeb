"""Benchmark: one interpolation curve, the seed-style way vs lmcnb's engine, in one run.

Two LeNet5s A and B are trained briefly with lmcnb's Trainer from the same initialization with
different data orders (a few hundred Adam steps each, well under a minute). Then the curve
θ(α) = (1 − α)·θ_A + α·θ_B over `--n-alpha` evenly spaced α is evaluated on the 10,000 MNIST test
images two ways:

1. **seed-style**: for each α a `copy.deepcopy` of the model, `load_state_dict` of the
   interpolated state dict, a `DataLoader(TensorDataset(x, y), batch_size=256)` over the plain
   (NCHW) test tensors, `model.eval()`, `torch.no_grad()`, summed cross-entropy and errors;
2. **lmcnb**: `lmcnb.interpolate.interpolation_curve` on data prepared by
   `eval_subset(test, "all", batch_size, "cpu")`.

What is timed: the whole curve for each way (model copies / interpolation, data loading and every
forward pass). `eval_subset` (one channels-last copy of the test tensor) is once-per-study work in
lmcnb (`Setup.eval_data` caches it), so it is timed separately, and the ratio is printed both
without and with it. Decoding the MNIST files is common to both ways and not timed.

Each way is warmed up once, then the ways are timed in turn, `--repeats` rounds (interleaved, so
that background load hits them alike); the best time is reported (the median is printed too).
With `--compile` (the default) lmcnb is also timed with `interpolation_curve(compile=True)`; its
warm-up call, which includes the compilation, is printed on its own. The fp32 matrix-multiply
peak is the best of several 2048×2048 products measured in the same process on the same thread
count, before and after the curves. Exits with status 1 if an lmcnb curve differs from the
seed-style one by more than 1e-5 (after printing everything).

    LMCNB_DATA=../shared/data python benchmarks/interpolation.py [--n-alpha 25] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lmcnb  # noqa: E402, F401  (sets the allocator options before torch allocates anything)

# isort: split
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from peak import matmul_peak  # noqa: E402  (benchmarks/peak.py, beside this script)
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data.vision import load_vision
from lmcnb.lmc.interpolate import alpha_grid, eval_subset, interpolation_curve
from lmcnb.models.cnn import LeNet5
from lmcnb.train.recipe import TrainConfig
from lmcnb.train.trainer import Trainer

TOLERANCE = 1e-5


# -- FLOPs --------------------------------------------------------------------------------------
def forward_flops_per_image(model: nn.Module,
                            image_shape: tuple[int, ...]) -> tuple[int, list[str]]:
    """2·MACs of every Conv2d and Linear for one image, from the layer shapes (analytic count).

    Conv: out_channels·H_out·W_out·(in_channels/groups)·kH·kW MACs; Linear: in·out MACs.
    Biases, ReLU, pooling and the loss are left out (they are < 1% here).
    """
    terms: list[str] = []
    macs = 0

    def hook(module: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            c_out, h, w = out.shape[1:]
            kh, kw = module.kernel_size
            c_in = module.in_channels // module.groups
            m = c_out * h * w * c_in * kh * kw
            terms.append(f"conv {c_in}->{c_out} {kh}x{kw} @ {h}x{w}: "
                         f"{c_out}*{h}*{w}*{c_in}*{kh}*{kw} = {m:,}")
        else:
            m = module.in_features * module.out_features
            terms.append(f"linear {module.in_features}->{module.out_features}: {m:,}")
        macs += m

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *image_shape))
    finally:
        for h in handles:
            h.remove()
    return 2 * macs, terms


# -- the two models -------------------------------------------------------------------------
def train_pair(steps: int,
               batch_size: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """LeNet5s A and B: the same init, different data orders, `steps` Adam steps each."""
    train = load_vision("mnist", "train")
    states = []
    for order in (1, 2):
        streams = RngStreams(Seeds(init=0, data_order=order))
        with streams.active("init"):
            model = LeNet5()
        trainer = Trainer(model,
                          TrainConfig(batch_size=batch_size, max_steps=steps, eval_every=steps),
                          train, streams)
        trainer.run(steps, desc=f"train {'AB'[order - 1]}")
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return states[0], states[1]


# -- the two ways ---------------------------------------------------------------------------
def seed_style_curve(template: nn.Module, state_a: dict[str, torch.Tensor],
                     state_b: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                     alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The seed repositories' loop: deepcopy + load_state_dict + DataLoader(batch 256) per α."""
    losses, errors = [], []
    loader = DataLoader(TensorDataset(x, y), batch_size=256)
    for alpha in alphas:
        alpha = float(alpha)
        model = copy.deepcopy(template)
        model.load_state_dict({k: (1 - alpha) * a + alpha * state_b[k] if a.is_floating_point()
                               else a for k, a in state_a.items()})
        model.eval()
        loss = err = 0.0
        n = 0
        with torch.no_grad():
            for xb, yb in loader:
                out = model(xb)
                loss += F.cross_entropy(out, yb, reduction="sum").item()
                err += (out.argmax(1) != yb).sum().item()
                n += len(yb)
        losses.append(loss / n)
        errors.append(err / n)
    return np.array(losses), np.array(errors)


def lmcnb_curve(model: nn.Module, state_a: dict[str, torch.Tensor],
                state_b: dict[str, torch.Tensor], data, alphas: np.ndarray, batch_size: int,
                compile: bool = False) -> tuple[np.ndarray, np.ndarray]:
    frame = interpolation_curve(model, state_a, state_b, {"test": data}, alphas,
                                batch_size=batch_size, progress=False, compile=compile).frame
    return frame["loss"].to_numpy(), frame["error"].to_numpy()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-alpha", type=int, default=25, help="α values on the curve (default 25)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                   help="torch threads (default 2)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed repeats per way, after one warm-up (default 3)")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="lmcnb's evaluation batch size (default 1000)")
    p.add_argument("--train-steps", type=int, default=300,
                   help="training steps for A and B (default 300)")
    p.add_argument("--data-dir", default=None,
                   help="data root (default: $LMCNB_DATA, else <repo>/../shared/data if present, "
                        "else ./data)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="also time lmcnb with interpolation_curve(compile=True) "
                        "(default: on; compiling adds ~20-60 s)")
    args = p.parse_args(argv)
    if args.n_alpha < 2 or args.repeats < 1 or args.threads < 1:
        p.error("need --n-alpha >= 2, --repeats >= 1, --threads >= 1")

    if args.data_dir is not None:
        os.environ["LMCNB_DATA"] = args.data_dir
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")

    t = time.perf_counter()
    state_a, state_b = train_pair(args.train_steps, batch_size=64)
    print(f"setup: trained A and B ({args.train_steps} Adam steps each, batch 64, same init, "
          f"data orders 1 and 2) in {time.perf_counter() - t:.1f} s")

    test = load_vision("mnist", "test")
    alphas = alpha_grid(args.n_alpha)
    n_images = len(test)

    peak_before = matmul_peak()

    # lmcnb's data: prepared once per study (timed on its own, outside the curves)
    t = time.perf_counter()
    data = eval_subset(test, "all", args.batch_size, "cpu")
    prep = time.perf_counter() - t

    template, model, cmodel = LeNet5(), LeNet5(), LeNet5()
    ways = {  # the seed-style way gets the plain NCHW tensors, as a seed repository holds them
        "seed": lambda: seed_style_curve(template, state_a, state_b, test.x, test.y, alphas),
        "lmcnb": lambda: lmcnb_curve(model, state_a, state_b, data, alphas, args.batch_size),
    }
    if args.compile:
        ways["compiled"] = lambda: lmcnb_curve(cmodel, state_a, state_b, data, alphas,
                                               args.batch_size, compile=True)
    results, times, first = {}, {name: [] for name in ways}, {}
    for name, fn in ways.items():  # warm-up (for "compiled": the compilation)
        t = time.perf_counter()
        fn()
        first[name] = time.perf_counter() - t
    for _ in range(args.repeats):  # interleaved, so that every way sees the same background load
        for name, fn in ways.items():
            t = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t)
    best = {name: min(ts) for name, ts in times.items()}
    med = {name: statistics.median(ts) for name, ts in times.items()}
    seed_best, seed_med, (seed_loss, seed_err) = best["seed"], med["seed"], results["seed"]
    lm_best, lm_med, (lm_loss, lm_err) = best["lmcnb"], med["lmcnb"], results["lmcnb"]
    if args.compile:
        c_best, c_med, (c_loss, c_err) = best["compiled"], med["compiled"], results["compiled"]
        compile_first = first["compiled"]

    peak = max(peak_before, matmul_peak())
    load_end = os.getloadavg()

    flops_img, terms = forward_flops_per_image(LeNet5(), tuple(test.x.shape[1:]))
    total_flops = flops_img * n_images * len(alphas)
    diff_loss = float(np.max(np.abs(seed_loss - lm_loss)))
    diff_err = float(np.max(np.abs(seed_err - lm_err)))

    print(f"\ncurve: LeNet5, {n_images:,} MNIST test images, {len(alphas)} α; "
          f"A error {lm_err[0]:.4f}, B error {lm_err[-1]:.4f}, "
          f"max error on the path {lm_err.max():.4f}")
    print(f"times: best (median) of {args.repeats} interleaved repeats, after one warm-up each")
    print(f"  seed-style (deepcopy + DataLoader batch 256): {seed_best:8.3f} s  ({seed_med:.3f})")
    print(f"  lmcnb interpolation_curve (batch {args.batch_size}):      "
          f"{lm_best:8.3f} s  ({lm_med:.3f})")
    print(f"  lmcnb eval_subset, once per study:           {prep:8.3f} s")
    if args.compile:
        print(f"  lmcnb with compile=True:                     {c_best:8.3f} s  ({c_med:.3f}); "
              f"warm-up call incl. compilation {compile_first:.1f} s")
    print(f"ratio seed-style / lmcnb: {seed_best / lm_best:.2f}x  (target >= 3x); "
          f"counting eval_subset too: {seed_best / (lm_best + prep):.2f}x")
    if args.compile:
        print(f"ratio seed-style / lmcnb compiled: {seed_best / c_best:.2f}x")
    print(f"max |Δ| seed-style vs lmcnb: loss {diff_loss:.2e}, error {diff_err:.2e}  "
          f"(target < {TOLERANCE:g})")
    if args.compile:
        print(f"max |Δ| seed-style vs compiled: loss {np.max(np.abs(seed_loss - c_loss)):.2e}, "
              f"error {np.max(np.abs(seed_err - c_err)):.2e}")
    print("LeNet5 forward FLOPs per image = 2 x MACs of convs and linears:")
    for term in terms:
        print(f"    {term}")
    print(f"  = 2 x {flops_img // 2:,} = {flops_img:,} FLOP/image; "
          f"x {n_images:,} images x {len(alphas)} α = {total_flops / 1e9:.1f} GFLOP per curve")
    achieved = total_flops / lm_best / 1e9
    print(f"lmcnb achieved: {achieved:.1f} GFLOP/s; "
          f"matmul peak (best 2048x2048 fp32, {args.threads} threads): "
          f"{peak:.1f} GFLOP/s; fraction {achieved / peak:.1%}")
    if args.compile:
        print(f"lmcnb compiled: {total_flops / c_best / 1e9:.1f} GFLOP/s; "
              f"fraction {total_flops / c_best / 1e9 / peak:.1%}")
    print(f"seed-style achieved: {total_flops / seed_best / 1e9:.1f} GFLOP/s")
    print(f"load average at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")

    worst = max(diff_loss, diff_err)
    if args.compile:
        worst = max(worst, float(np.max(np.abs(seed_loss - c_loss))),
                    float(np.max(np.abs(seed_err - c_err))))
    if worst > TOLERANCE:
        print(f"FAIL: the curves differ by more than {TOLERANCE:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
