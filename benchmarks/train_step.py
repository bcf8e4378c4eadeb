"""One training step of every book model at its book recipe, today's path against lmcnb's.

    LMCNB_DATA=../shared/data python benchmarks/train_step.py      # every case, 1 thread
    python benchmarks/train_step.py --cases lenet5 MiniViT --repeats 8
    python benchmarks/train_step.py --profile     # + the torch profiler's top ops of lmcnb's step
    python benchmarks/train_step.py --pair        # + two processes side by side, one thread each
    python benchmarks/train_step.py --compile     # + torch.compile of the model (slow: compiles)

Each case is one `lmcnb.train.trainer.Trainer` step on real data (`$LMCNB_DATA`) at the book
profile's recipe: LeNet5 on MNIST (batch 128, Adam), ReducedVGG on CIFAR-10 (64, crop + flip),
AlexNet on Tiny ImageNet at 64 px (32, crop + flip), CPUGPT and TinyGPT on Tiny Shakespeare
characters (16 windows of the block, Adam β2 0.95, warmup + cosine, clip 1.0), the PTB transformer
(one chunk of 16 streams × 35 tokens, SGD lr 2.5, clip 0.5), MiniViT on CIFAR-10 (64, AdamW) with
and without its augmentation.

Two paths, each its own trainer from the same initialization and seeds:

* today's: the step as it was before this benchmark's changes — v2's per-image crop and flip, the
  earlier ViT augmentation (boolean-masked jitter, v2's HSV round trip for hue, v2's resize), the
  per-tensor optimizer loop, NCHW CNNs, and a step that also counted top-1 errors and read each
  micro-batch's loss from the device (kept below, here only);
* lmcnb's: the library's `Trainer.step` as it is.

Times are the best of `--repeats` rounds of `--steps` steps, the two paths interleaved round by
round (the machine is shared: the median is printed too, and the load average). FLOPs per step are
torch's `FlopCounterMode` over one step (forward and backward; the CPU's fused attention counted
with the formula torch uses for the GPU kernels), set against the fp32 matmul peak measured in the
same run at the same thread count (`benchmarks/peak.py`, best of start, middle and end). Every
change is also checked for what it does to the numbers: the weights after `--check-steps` steps of
today's path with one change switched on, bit for bit against today's.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from peak import matmul_peak  # benchmarks/peak.py, beside this script
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from vit import CPU_ATTENTION  # benchmarks/vit.py: FLOPs of the CPU's fused attention

import lmcnb  # noqa: F401  (sets the allocator options)
from lmcnb.core.device import TASK_THREADS
from lmcnb.core.ref import Ref
from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data.augment import crop_and_flip, vit_augment
from lmcnb.data.tensors import TensorData
from lmcnb.data.vision import MEAN, STD, load_vision
from lmcnb.experiments.catalog import build
from lmcnb.train.evaluation import logits_of, loss_and_errors
from lmcnb.train.recipe import TrainConfig, lr_at
from lmcnb.train.trainer import Trainer

CASES = ("lenet5", "reduced_vgg", "alexnet", "CPUGPT", "TinyGPT", "ptb", "MiniViT",
         "MiniViT-noaug")


# -- today's path, kept here for comparison only ---------------------------------------------------
def old_crop_and_flip(dataset: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """v2.RandomCrop with padding and v2.RandomHorizontalFlip, image by image."""
    from torchvision.transforms import v2

    pad = {"cifar10": 4, "tiny_imagenet": 8}[dataset]

    def augment(x: torch.Tensor) -> torch.Tensor:
        t = v2.Compose([v2.RandomCrop(x.shape[-1], padding=pad), v2.RandomHorizontalFlip()])
        return torch.stack([t(img) for img in x])

    return augment


def old_vit_augment(mean, std) -> Callable[[torch.Tensor], torch.Tensor]:
    """The earlier `vit_augment`: the same draws (`lmcnb.data.augment.draw`), applied by a crop
    gather, v2's resize, a flip, and jitter ops on boolean-masked subsets, hue through v2's HSV."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2.functional._color import _hsv_to_rgb, _rgb_to_hsv

    from lmcnb.data.augment import JITTER, draw

    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def gray(x):
        r, g, b = x.unbind(dim=-3)
        return (r * 0.2989 + g * 0.587 + b * 0.114).unsqueeze(-3)

    def hue(x, shift):
        if not bool(shift.any()):
            return x
        h, sat, v = _rgb_to_hsv(x).unbind(dim=-3)
        return _hsv_to_rgb(torch.stack(((h + shift[:, 0]).remainder_(1.0), sat, v), dim=-3))

    ops = {"brightness": lambda x, f: (x * f).clamp_(0, 1),
           "contrast": lambda x, f: (x * f + gray(x).mean(dim=(-3, -2, -1), keepdim=True)
                                     * (1 - f)).clamp_(0, 1),
           "saturation": lambda x, f: (x * f + gray(x) * (1 - f)).clamp_(0, 1),
           "hue": hue}

    def apply(pixels, p):
        n, _, h, w = pixels.shape
        ch, cw = p["crop"].tolist()
        rows = (p["top"][:, None] + torch.arange(ch))[:, None, :, None]
        cols = (p["left"][:, None] + torch.arange(cw))[:, None, None, :]
        x = pixels[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None],
                   rows, cols]
        x = v2.functional.resize(x, [h, w], antialias=True)
        x = torch.where(p["flip"][:, None, None, None], x.flip(-1), x)
        for slot in range(len(ops)):
            for index, (name, op) in enumerate(ops.items()):
                chosen = p["order"][:, slot] == index
                if chosen.any():
                    x[chosen] = op(x[chosen], p[name][chosen].view(-1, 1, 1, 1))
        return x

    def augment(x):
        pixels = (x * s + m).clamp_(0, 1)
        return (apply(pixels, draw(len(x), tuple(x.shape[-2:]), 0.75, JITTER)) - m) / s

    return augment


def old_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The per-tensor optimizer loop (torch's default on the CPU)."""
    params = [p for p in model.parameters() if p.requires_grad]
    kinds = {"adam": (torch.optim.Adam, dict(betas=cfg.betas)),
             "adamw": (torch.optim.AdamW, dict(betas=cfg.betas)),
             "sgd": (torch.optim.SGD, dict(momentum=cfg.momentum))}
    kind, extra = kinds[cfg.optimizer]
    return kind(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False, **extra)


def old_step(t: Trainer) -> float:
    """The earlier `Trainer.step`: lr parsed from the recipe every step, top-1 errors counted, each
    micro-batch's loss read with `float`."""
    import math

    cfg, model = t.cfg, t.model
    lr = lr_at(cfg, t.progress.step, t.total_steps, t.steps_per_epoch)
    for group in t.optimizer.param_groups:
        group["lr"] = lr
    model.train()
    total, count = 0.0, 0
    for idx in t.sampler.next().to(t.device).chunk(cfg.accum_steps):
        x, y = t.data.batch(idx)
        if t.augment is not None:
            with t.streams.active("augmentation"):
                x = t.augment(x)
        with t.streams.active("dropout", t.device):
            loss_sum, _ = loss_and_errors(logits_of(model, x), y)
        n = y.numel()
        (loss_sum / (n * cfg.accum_steps)).backward()
        total, count = total + float(loss_sum.detach()), count + n
    if not math.isfinite(total):
        raise FloatingPointError(f"non-finite training loss at step {t.progress.step + 1}")
    if cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    t.optimizer.step()
    t.progress.step += 1
    t.optimizer.zero_grad(set_to_none=True)
    return total / count


def nchw(model: nn.Module) -> nn.Module:
    """A CNN of `lmcnb.models.cnn` as it was: plain NCHW convolutions, inputs as they come."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.forward = types.MethodType(nn.Conv2d.forward, m)
    model.forward = types.MethodType(lambda self, x: self.classifier(self.features(x)), model)
    return model


# -- the cases -------------------------------------------------------------------------------------
@dataclass
class Case:
    """A model, its data and recipe, and its augmentation today and in lmcnb."""

    name: str
    build: Callable[[], nn.Module]
    data: TensorData
    cfg: TrainConfig
    unit: str  # what a step consumes, for the table
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    old_augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    cnn: bool = False


def make_case(name: str, data_dir: str | None) -> Case:
    """The book profile's recipe of `name` (one of `CASES`) on its real training data."""
    if name in ("lenet5", "reduced_vgg", "alexnet"):
        dataset, batch, lr = {"lenet5": ("mnist", 128, 1e-3), "reduced_vgg": ("cifar10", 64, 1e-3),
                              "alexnet": ("tiny_imagenet", 32, 5e-4)}[name]
        data = load_vision(dataset, "train", data_dir)
        aug = name != "lenet5"
        cfg = TrainConfig(batch_size=batch, max_steps=600, lr=lr, augment=aug)
        ref = Ref.of("model", name, num_classes=len(data.classes))
        return Case(name, lambda: build(ref), data, cfg, f"{batch} images",
                    crop_and_flip(dataset) if aug else None,
                    old_crop_and_flip(dataset) if aug else None, cnn=True)
    if name in ("CPUGPT", "TinyGPT"):
        from lmcnb.models.gpt import build_gpt, gpt_config, hf_config

        shape = gpt_config(name)
        tok = Ref.of("tokenizer", "char", corpus="shakespeare")
        data = build(Ref.of("data", "text_windows", corpus="shakespeare", split="train",
                            tokenizer=tok, block=shape.block_size), data_dir)
        vocab = len(build(tok, data_dir))
        cfg = TrainConfig(batch_size=16, max_steps=300, lr=3e-3, min_lr=3e-4, betas=(0.9, 0.95),
                          schedule="cosine", warmup_steps=30, grad_clip=1.0)
        return Case(name, lambda: build_gpt(hf_config(shape, vocab)), data, cfg,
                    f"16 × {shape.block_size} tokens")
    if name == "ptb":
        from lmcnb.models.transformer_lm import TransformerLM, TransformerLMConfig

        data = build(Ref.of("data", "ptb_streams", split="train", streams=16, bptt=35, limit=40),
                     data_dir)
        vocab = len(build(Ref.of("tokenizer", "ptb_vocab"), data_dir))
        cfg = TrainConfig(batch_size=1, max_steps="3ep", optimizer="sgd", lr=2.5, momentum=0.0,
                          schedule="step", step_gamma=0.95, step_milestones=("1ep", "2ep"),
                          grad_clip=0.5)
        return Case(name, lambda: TransformerLM(TransformerLMConfig(vocab_size=vocab)), data, cfg,
                    "16 × 35 tokens")
    if name in ("MiniViT", "MiniViT-noaug"):
        from lmcnb.models.vit import build_vit, vit_config

        data = build(Ref.of("data", "vit_images", name="cifar10", split="train"), data_dir)
        aug = name == "MiniViT"
        cfg = TrainConfig(batch_size=64, max_steps=200, optimizer="adamw", lr=1e-3,
                          warmup_steps=10, augment=aug)
        stats = MEAN["cifar10"], STD["cifar10"]
        return Case(name, lambda: build_vit(vit_config("MiniViT", len(data.classes))), data, cfg,
                    "64 images", vit_augment(*stats) if aug else None,
                    old_vit_augment(*stats) if aug else None)
    raise ValueError(f"unknown case {name!r}; valid: {', '.join(CASES)}")


@dataclass(frozen=True)
class Changes:
    """Which of the changes a trainer runs with (all False: today's path)."""

    step: bool = True
    optimizer: bool = True
    layout: bool = True
    augment: bool = True


TODAY, LMCNB = Changes(False, False, False, False), Changes()


def trainer(case: Case, path: Changes) -> tuple[Trainer, Callable[[], float]]:
    """A fresh trainer of `case` on `path` (same initialization and seeds for every path), and
    its step."""
    streams = RngStreams(Seeds.from_base(0, "benchmark", case.name))
    with streams.active("init"):
        model = case.build()
    if case.cnn and not path.layout:
        model = nchw(model)
    t = Trainer(model, case.cfg, case.data, streams, "cpu",
                case.augment if path.augment else case.old_augment)
    if not path.optimizer:
        t.optimizer = old_optimizer(case.cfg, t.model)
    return t, (t.step if path.step else lambda: old_step(t))


def step_times(step: Callable[[], float], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def step_flops(step: Callable[[], float]) -> int:
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION) as counter:
        step()
    return counter.get_total_flops()


def augment_ms(augment: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               repeats: int = 20) -> float:
    """Best milliseconds of one call on a batch `x`."""
    augment(x)
    return 1e3 * min(step_times(lambda: augment(x), repeats))


def same_weights(a: nn.Module, b: nn.Module) -> tuple[bool, float]:
    sa, sb = a.state_dict(), b.state_dict()
    diff = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
    return all(torch.equal(sa[k], sb[k]) for k in sa), diff


def check_numbers(case: Case, steps: int) -> dict[str, str]:
    """Weights after `steps` steps of today's path with one change switched on, against today's."""
    ref, ref_step = trainer(case, TODAY)
    for _ in range(steps):
        ref_step()
    out = {}
    for change in ("step", "optimizer", "layout", "augment"):
        if (change == "layout" and not case.cnn) or (change == "augment" and not case.augment):
            continue
        t, step = trainer(case, replace(TODAY, **{change: True}))
        for _ in range(steps):
            step()
        same, diff = same_weights(ref.model, t.model)
        out[change] = "identical" if same else f"differ (max |Δ| {diff:.1e})"
    return out


def profile_table(step: Callable[[], float], steps: int, rows: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows,
                                     max_name_column_width=60)


def pair_ms(name: str, args: argparse.Namespace) -> list[float]:
    """Best ms per lmcnb step of `name` in each of two processes started side by side."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--cases", name,
           "--steps", str(args.steps), "--repeats", str(args.repeats),
           "--threads", str(args.threads)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1])["ms"] for p in procs]


def worker(args: argparse.Namespace) -> None:
    case = make_case(args.cases[0], args.data_dir)
    _, step = trainer(case, LMCNB)
    step_times(step, 2)
    times = step_times(step, args.steps * args.repeats)
    print(json.dumps({"case": case.name, "ms": 1e3 * min(times)}))


def compiled(case: Case, steps: int) -> str:
    """torch.compile of lmcnb's model: compile time, step time, and whether two compiled runs
    (and the eager one) give the same weights."""
    eager, eager_step = trainer(case, LMCNB)
    for _ in range(steps):
        eager_step()
    runs = []
    for _ in range(2):
        torch._dynamo.reset()
        t, step = trainer(case, LMCNB)
        t.model.compile()  # in place: the state dict keeps its keys
        start = time.perf_counter()
        step()
        first = time.perf_counter() - start
        for _ in range(steps - 1):
            step()
        runs.append((t, first))
    repeat, _ = same_weights(runs[0][0].model, runs[1][0].model)
    as_eager, diff = same_weights(eager.model, runs[0][0].model)
    best = min(step_times(runs[-1][0].step, 5))
    return (f"first step (compiling) {runs[0][1]:.1f} s, then {best * 1e3:.1f} ms; two compiled "
            f"runs {'identical' if repeat else 'DIFFER'}; against eager "
            f"{'identical' if as_eager else f'max |Δ| {diff:.1e}'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--threads", type=int, default=TASK_THREADS, help="intra-op threads")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round and path")
    ap.add_argument("--repeats", type=int, default=5, help="rounds, the paths interleaved")
    ap.add_argument("--check-steps", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--profile-rows", type=int, default=12)
    ap.add_argument("--pair", action="store_true", help="also two processes side by side")
    ap.add_argument("--compile", action="store_true", help="also torch.compile (slow)")
    ap.add_argument("--data-dir", default=None, help="else $LMCNB_DATA")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        return worker(args)

    def load() -> str:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())

    print(f"load average at start: {load()}; {torch.get_num_threads()} thread(s), torch "
          f"{torch.__version__}")
    peaks = [matmul_peak()]
    rows, notes = [], []
    for i, name in enumerate(args.cases):
        case = make_case(name, args.data_dir)
        paths = {"today": trainer(case, TODAY), "lmcnb": trainer(case, LMCNB)}
        flops = step_flops(paths["lmcnb"][1])
        for _, step in paths.values():
            step_times(step, 2)  # warm-up
        times = {k: [] for k in paths}
        for _ in range(args.repeats):
            for k, (_, step) in paths.items():
                times[k] += step_times(step, args.steps)
        best = {k: min(v) for k, v in times.items()}
        row = {"case": name, "per step": case.unit, "GFLOP": flops / 1e9,
               **{f"{k} ms": 1e3 * v for k, v in best.items()},
               **{f"{k} median": 1e3 * statistics.median(v) for k, v in times.items()},
               "speed-up": best["today"] / best["lmcnb"], "GFLOP/s": flops / best["lmcnb"] / 1e9}
        if case.augment is not None:
            x, _ = case.data.batch(torch.arange(case.cfg.batch_size))
            row["aug today ms"] = augment_ms(case.old_augment, x)
            row["aug lmcnb ms"] = augment_ms(case.augment, x)
        if args.pair:
            row["pair ms"] = pair_ms(name, args)
        rows.append(row)
        notes.append((name, check_numbers(case, args.check_steps)))
        if args.profile:
            notes.append((name, "\n" + profile_table(paths["lmcnb"][1], 3, args.profile_rows)))
        if args.compile:
            notes.append((name, "torch.compile: " + compiled(case, args.check_steps)))
        if i == len(args.cases) // 2:
            peaks.append(matmul_peak())
        print(f"  {name} done, load {load()}", flush=True)
    peaks.append(matmul_peak())
    peak = max(peaks)
    print(f"\nfp32 matmul peak, {args.threads} thread(s), 2048², start / middle / end: "
          f"{' / '.join(f'{p:.1f}' for p in peaks)} GFLOP/s; best {peak:.1f}")
    print("\n| case | per step | GFLOP | today ms (median) | lmcnb ms (median) | speed-up | "
          "lmcnb GFLOP/s | share of peak | augmentation today → lmcnb | 2 processes, ms each |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        aug = (f"{r['aug today ms']:.1f} → {r['aug lmcnb ms']:.1f} ms "
               f"({r['aug lmcnb ms'] / r['lmcnb ms']:.0%} of the step)"
               if "aug lmcnb ms" in r else "")
        pair = " / ".join(f"{v:.1f}" for v in r["pair ms"]) if "pair ms" in r else ""
        print(f"| {r['case']} | {r['per step']} | {r['GFLOP']:.2f} | {r['today ms']:.1f} "
              f"({r['today median']:.1f}) | {r['lmcnb ms']:.1f} ({r['lmcnb median']:.1f}) | "
              f"{r['speed-up']:.2f}× | {r['GFLOP/s']:.1f} | {r['GFLOP/s'] / peak:.0%} | {aug} | "
              f"{pair} |")
    print(f"\nnumbers after {args.check_steps} steps, one change on today's path:")
    for name, note in notes:
        text = ", ".join(f"{k}: {v}" for k, v in note.items()) if isinstance(note, dict) else note
        print(f"  {name}: {text}")
    print(f"\nload average at end: {load()}")


if __name__ == "__main__":
    main()
