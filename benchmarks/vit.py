"""One fine-tuning step of a ViT, and PLATON's overhead per step.

    python benchmarks/vit.py [--shape MiniViT] [--batch 64] [--threads 2] [--steps 10] [--quick]
    python benchmarks/vit.py --device cuda --shape ViTB16 --batch 32    # the study's scale, a GPU

The step is lmcnb's `Trainer.step` with the chapter's fine-tuning recipe: by default the book
profile's `MiniViT` (patch 8, width 128, 4 layers, 4 heads, MLP 256; 17 tokens; `--shape CPUViT`
for patch 4, width 192, 6 layers, 65 tokens; `--shape ViTB16` for the study's ViT-B/16 at 224×224),
AdamW at lr 2e-4, the seed's augmentation (`lmcnb.augment.vit_augment`, batched), on synthetic
normalized images of the shape's size (the time does not depend on the pixels). Its FLOPs are
counted by `torch.utils.flop_counter.FlopCounterMode` over one step (forward and backward: linears,
the patch convolution, attention); the counter has no formula for CPU's fused attention kernel, so
it is given the one torch uses for the GPU kernels. The achieved GFLOP/s are set against the fp32
matmul peak measured in the same run (`benchmarks/peak.py`, best of the start, middle and end;
8192² on a GPU, in fp32 as the training runs). The step is timed with and without augmentation
(best of `--steps`; on a GPU each timer waits for the queued work).

PLATON's overhead is the time of the hook itself (wrapped in a timer) per call, against the step
time without hooks, for each kind of step: inside a window (importance and window sum only), at
a window end in the cubic phase (moving averages, then one global threshold), and in the final
phase (a global threshold at every step), and their mean over the seed's schedule (4 epochs: the
cubic phase in the first 3 with deltaT = 10, the final phase in the last). The timed PLATON run
uses deltaT = 10 (2 with --quick); the cost of each kind of step does not depend on it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from peak import matmul_peak, sync  # benchmarks/peak.py, beside this script
from torch.utils.flop_counter import FlopCounterMode

import lmcnb  # noqa: F401  (sets the allocator options)
from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data.augment import vit_augment
from lmcnb.data.tensors import TensorData
from lmcnb.data.vision import MEAN, STD
from lmcnb.models import vit
from lmcnb.prune.mask import prunable
from lmcnb.prune.platon import CubicSchedule, Platon
from lmcnb.train.recipe import TrainConfig
from lmcnb.train.trainer import Trainer

aten = torch.ops.aten


def attention_flops(q_shape, k_shape, v_shape, *args, **kwargs) -> int:
    """Q·Kᵀ and A·V (B, heads, tokens, head width), 2 FLOPs per multiply-add."""
    b, h, t_q, d_qk = q_shape
    return 2 * b * h * t_q * k_shape[-2] * (d_qk + v_shape[-1])


def attention_backward_flops(grad_shape, q_shape, k_shape, v_shape, *args, **kwargs) -> int:
    """The gradients of V, A, Q and K: four products, twice the forward's FLOPs."""
    return 2 * attention_flops(q_shape, k_shape, v_shape)


CPU_ATTENTION = {
    aten._scaled_dot_product_flash_attention_for_cpu: attention_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: attention_backward_flops,
}


class Timed:
    """Wraps a hook; records (step, seconds) of every call."""

    def __init__(self, hook):
        self.hook, self.calls = hook, []

    def __call__(self, trainer: Trainer) -> None:
        sync(trainer.device)
        start = time.perf_counter()
        self.hook(trainer)
        sync(trainer.device)
        self.calls.append((trainer.progress.step, time.perf_counter() - start))


def trainer(shape: str, batch: int, device: str, augment: bool, hooks=()) -> Trainer:
    """A fresh ViT of `shape` with the fine-tuning recipe on `device`, on 4 batches of synthetic
    10-class images of the shape's size."""
    g = torch.Generator().manual_seed(0)
    size = vit.vit_shape(shape).image_size
    data = TensorData(torch.randn(4 * batch, 3, size, size, generator=g),
                      torch.randint(0, 10, (4 * batch,), generator=g))
    cfg = TrainConfig(batch_size=batch, max_steps=10_000, optimizer="adamw", lr=2e-4,
                      augment=augment)
    streams = RngStreams(Seeds.from_base(0, "benchmark"))
    with streams.active("init"):
        model = vit.build_vit(vit.vit_config(shape, 10))
    return Trainer(model, cfg, data, streams, device,
                   augment=vit_augment(MEAN["cifar10"], STD["cifar10"]), hooks=hooks)


def step_times(t: Trainer, steps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        t.step()
    times = []
    for _ in range(steps):
        sync(t.device)
        start = time.perf_counter()
        t.step()
        sync(t.device)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="MiniViT", choices=list(vit.VIT_SHAPES))
    ap.add_argument("--batch", type=int, default=64, help="images per step")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | mps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    ap.add_argument("--quick", action="store_true", help="2 timed steps, deltaT 2: under a minute")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps, delta_t = (2, 2) if args.quick else (args.steps, 10)
    n = 8192 if torch.device(args.device).type == "cuda" else 2048

    def peak() -> float:
        return matmul_peak(n, repeats=3 if args.quick else 10, device=args.device)

    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; "
          f"{torch.get_num_threads()} threads")
    peaks = [peak()]
    dense = trainer(args.shape, args.batch, args.device, augment=True)
    size = vit.vit_shape(args.shape).image_size
    selected = sum(p.numel() for p in prunable(dense.model).values())
    print(f"{args.shape}: {sum(p.numel() for p in dense.model.parameters()):,} parameters, "
          f"{selected:,} selected for pruning; batch {args.batch} × 3×{size}×{size} on "
          f"{args.device}")
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        dense.step()  # also the warm-up
    flops = counter.get_total_flops()
    with_aug = step_times(dense, steps, warmup=0)
    without_aug = step_times(trainer(args.shape, args.batch, args.device, augment=False), steps)
    peaks.append(peak())

    # PLATON over deltaT window-only steps, two cubic-phase window ends and a final phase.
    total = 3 * delta_t
    schedule = CubicSchedule(total_steps=total, final_density=0.2, final_warmup=delta_t,
                             delta_t=delta_t)
    timed = Timed(Platon(schedule, beta1=0.85, beta2=0.95))
    step_times(trainer(args.shape, args.batch, args.device, augment=True, hooks=[timed]), total,
               warmup=0)
    peaks.append(peak())

    peak = max(peaks)
    step_s = min(with_aug)
    compute_s = min(without_aug)
    print(f"matmul peak (fp32, {n}², best of start/middle/end: "
          f"{' / '.join(f'{p:.1f}' for p in peaks)}): {peak:.1f} GFLOP/s")
    print(f"FLOPs per step (FlopCounterMode, forward + backward): {flops / 1e9:.2f} GFLOP")
    for name, times in (("step with augmentation", with_aug),
                        ("step without augmentation", without_aug)):
        best = min(times)
        print(f"{name}: best {best * 1e3:.0f} ms (median {statistics.median(times) * 1e3:.0f} ms), "
              f"{flops / best / 1e9:.1f} GFLOP/s = {flops / best / 1e9 / peak:.0%} of peak")
    print(f"augmentation: {(step_s - compute_s) * 1e3:.0f} ms of the step")

    kinds = {"inside a window": [], "window end, cubic phase": [], "final phase": []}
    for step, seconds in timed.calls:
        if step > total - schedule.final_warmup:
            kinds["final phase"].append(seconds)
        elif step % delta_t == 0:
            kinds["window end, cubic phase"].append(seconds)
        else:
            kinds["inside a window"].append(seconds)
    for kind, times in kinds.items():
        best = min(times)
        print(f"PLATON hook, {kind}: {best * 1e3:.1f} ms = {best / step_s:.1%} of a step "
              f"({len(times)} calls, median {statistics.median(times) * 1e3:.1f} ms)")
    # The seed's run: 4 epochs, the cubic phase over the first 3 (a window end every 10 steps),
    # the final phase in the last; the hook's median time for each kind of step.
    median = {kind: statistics.median(times) for kind, times in kinds.items()}
    mean = (0.75 * (0.9 * median["inside a window"] + 0.1 * median["window end, cubic phase"])
            + 0.25 * median["final phase"])
    print(f"PLATON hook, mean per step over the seed's schedule: {mean * 1e3:.1f} ms = "
          f"{mean / step_s:.1%} of a step (target <= 15%)")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
