"""Benchmark: weight matching, lmcnb's (torch, cached cost terms) against a straightforward float64
NumPy implementation of the same procedure, in one run, for each book model and two reference
shapes.

    python benchmarks/align.py [--models mlp vgg11 lenet5 ...] [--repeats 3] [--seed 0]
    python benchmarks/align.py --device cuda          # lmcnb's float64 arithmetic on a GPU
    python benchmarks/align.py --chapter runs --chapter-seconds 1558   # its share of a chapter

The models: a 784-512-512-512-10 MLP (Git Re-Basin's MNIST MLP), a VGG11-shaped nn.Sequential for
32×32 images (eight 3×3 convs 64…512 with ReLU and max-pools, one Linear; no BatchNorm, as in
REPAIR's VGG11), and the book's LeNet5, ReducedVGG, AlexNet (200 classes), the PTB TransformerLM
(the seed's shape, vocabulary 10,000), GPT-2 `CPUGPT` (65 characters) and ViT `MiniViT` and
`CPUViT` (10 classes). A and B are two random initializations (seeds 0 and 1), as in the notes'
timings ("random weights"); their permutation specs are lmcnb's.

**The two ways.** Both run Git Re-Basin's coordinate descent: from the identity, up to 100 sweeps,
each visiting the permutations in the order `numpy.random.default_rng(seed).permutation`, each
step one `scipy.optimize.linear_sum_assignment(cost, maximize=True)` per group (head), stopping
after a sweep without gain (> 1e-12).
- **reference** (`reference_weight_matching`, below): for each permutation p and each tensor axis
  p acts on, B's tensor with every other permutation applied by `np.take`, both tensors moved to
  (units, rest), `cost += W_A @ W_Bᵀ` in float64; every step rebuilds its whole cost matrix.
- **lmcnb** (`lmcnb.lmc.align.weight_matching`): each cost term cached in float64 and updated only
  through the entries another permutation moved; steps whose cost did not change are not solved
  again; columns reordered to put the current assignment on the diagonal before solving.

**What is timed.** The whole matching of each way, from the state dicts to the permutations and
the objective Σ⟨W_A, π(W_B)⟩ (lmcnb also builds the state dict π(θ_B)). Each way is run once as
a warm-up, then `--repeats` times
interleaved; the best time is reported. The time inside `linear_sum_assignment` is measured in
each way (a timer around the calls) and the ratio is printed with and without it. Both use one
thread (OPENBLAS_NUM_THREADS=1 for NumPy, set before it loads; lmcnb's fixed `TASK_THREADS` for
torch), the load average is printed at the start and the end: on this 2-core machine, anything
else running changes the times.

**What it prints.** Per model: sweeps, both times, their ratio (target ≥ 3×), the assignment time
of each, the ratio without it, the objective Σ⟨W_A, π(W_B)⟩ of each and their relative difference
(target ≤ 1e-6: the script exits with status 1 above it, after printing everything), and whether
the permutations are identical.

**`--chapter RUNS`** times instead lmcnb's weight matching on the trained pairs of the
independent-initializations chapter at its `book` profile (the trunks in the runs folder `RUNS`,
trained by executing the chapter) and multiplies each pair's time by the number of times the
chapter matches that pair (`CALLS`): their sum against the chapter's wall time
(`--chapter-seconds`) is the share of the chapter that weight matching takes.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads its BLAS

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lmcnb  # noqa: E402, F401  (sets the allocator options before torch allocates anything)

# isort: split
import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import lmcnb.lmc.align as align  # noqa: E402
from lmcnb.core.device import TASK_THREADS  # noqa: E402
from lmcnb.core.rng import RngStreams, Seeds  # noqa: E402
from lmcnb.lmc.permutation import PermutationSpec, permutation_spec  # noqa: E402
from lmcnb.models.cnn import AlexNet, LeNet5, ReducedVGG  # noqa: E402
from lmcnb.models.gpt import build_gpt, gpt_config, hf_config  # noqa: E402
from lmcnb.models.mlp import MLP  # noqa: E402
from lmcnb.models.transformer_lm import TransformerLM, TransformerLMConfig  # noqa: E402
from lmcnb.models.vit import build_vit, vit_config  # noqa: E402

TOLERANCE = 1e-6


def vgg11(num_classes: int = 10) -> nn.Sequential:
    """VGG11's convolutions for 32×32 images (no BatchNorm), then one Linear."""
    layers: list[nn.Module] = []
    width = 3
    for out in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        if out == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU()]
            width = out
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, num_classes))


MODELS: dict[str, Callable[[], nn.Module]] = {
    "mlp": lambda: MLP(784, (512, 512, 512), 10),
    "vgg11": vgg11,
    "lenet5": LeNet5,
    "reduced_vgg": ReducedVGG,
    "alexnet": lambda: AlexNet(num_classes=200),
    "transformer_lm": lambda: TransformerLM(TransformerLMConfig(
        vocab_size=10000, d_model=200, n_head=2, d_ff=200, n_layer=2)),
    "cpugpt": lambda: build_gpt(hf_config(gpt_config("CPUGPT"), vocab_size=65)),
    "minivit": lambda: build_vit(vit_config("MiniViT", num_labels=10)),
    "cpuvit": lambda: build_vit(vit_config("CPUViT", num_labels=10)),
}


class Timed:
    """`linear_sum_assignment` with a timer around each call."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, cost, maximize=False):
        t = time.perf_counter()
        try:
            return scipy.optimize.linear_sum_assignment(cost, maximize=maximize)
        finally:
            self.seconds += time.perf_counter() - t


# -- the reference ------------------------------------------------------------------------------
def reference_weight_matching(spec: PermutationSpec, state_a, state_b, seed: int,
                              assign: Callable, max_sweeps: int = 100):
    """Weight matching the straightforward way, in float64 NumPy: every step rebuilds its cost
    matrix from the state dicts. Returns the permutations, the number of sweeps and the
    objective."""
    keys = [k for k in spec.axes if k in spec.learned and k not in spec.tied]
    a = {k: state_a[k].double().numpy() for k in keys}
    b = {k: state_b[k].double().numpy() for k in keys}
    perms = {p: np.arange(n) for p, n in spec.sizes.items()}

    def index(axis) -> np.ndarray:
        parts, offset = [], 0
        for q in axis.perms:
            parts.append((perms[q][:, None] * axis.block + np.arange(axis.block)).ravel() + offset)
            offset += spec.sizes[q] * axis.block
        return np.concatenate(parts)

    rng = np.random.default_rng(seed)
    sweeps = 0
    while sweeps < max_sweeps:
        sweeps += 1
        progress = False
        for p in rng.permutation(list(spec.sizes)):
            n, g = spec.sizes[p], spec.groups.get(p, 1)
            m = n // g
            cost = np.zeros((g, m, m))
            for key in keys:
                axes = spec.axes[key]
                for dim, axis in enumerate(axes):
                    for chunk, q in enumerate(axis.perms if axis else ()):
                        if q != p:
                            continue
                        wb = b[key]
                        for d, other in enumerate(axes):
                            if other is not None and d != dim:
                                wb = np.take(wb, index(other), axis=d)
                        lo, hi = chunk * n * axis.block, (chunk + 1) * n * axis.block
                        wa = np.moveaxis(a[key], dim, 0)[lo:hi].reshape(g, m, -1)
                        wb = np.moveaxis(wb, dim, 0)[lo:hi].reshape(g, m, -1)
                        cost += wa @ wb.transpose(0, 2, 1)
            new = np.concatenate([assign(c, maximize=True)[1] + i * m for i, c in enumerate(cost)])
            rows = np.arange(n) % m
            groups = np.arange(n) // m
            old_total = cost[groups, rows, perms[p] % m].sum()
            new_total = cost[groups, rows, new % m].sum()
            progress = progress or new_total > old_total + 1e-12
            perms[p] = new
        if not progress:
            break
    return perms, sweeps, objective(spec, state_a, state_b, perms)


def objective(spec: PermutationSpec, state_a, state_b, perms) -> float:
    """Σ⟨W_A, π(W_B)⟩ over the learned tensors a permutation acts on (each tied tensor once), in
    float64 NumPy: lmcnb's `Alignment.objective`."""
    total = 0.0
    for key in (k for k in spec.axes if k in spec.learned and k not in spec.tied):
        wb = state_b[key].double().numpy()
        for d, axis in enumerate(spec.axes[key]):
            if axis is not None:
                idx, offset = [], 0
                for q in axis.perms:
                    idx.append((np.asarray(perms[q])[:, None] * axis.block
                                + np.arange(axis.block)).ravel() + offset)
                    offset += spec.sizes[q] * axis.block
                wb = np.take(wb, np.concatenate(idx), axis=d)
        total += float(np.vdot(state_a[key].double().numpy(), wb))
    return total


def model_pair(name: str) -> tuple[nn.Module, nn.Module]:
    models = []
    for seed in (0, 1):
        with RngStreams(Seeds(init=seed)).active("init"):
            models.append(MODELS[name]().eval())
    return models[0], models[1]


def measure(name: str, repeats: int, seed: int, device: str) -> dict:
    """Both ways on one model: best times, their assignment times, sweeps, objectives."""
    model_a, model_b = model_pair(name)
    spec = permutation_spec(model_a)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    timers = {"lmcnb": Timed(), "reference": Timed()}
    align.linear_sum_assignment = timers["lmcnb"]
    ways = {"lmcnb": lambda: align.weight_matching(model_a, model_b, spec=spec, seed=seed,
                                                   device=device),
            "reference": lambda: reference_weight_matching(spec, state_a, state_b, seed,
                                                           timers["reference"])}
    results, times, solves = {}, {w: [] for w in ways}, {w: [] for w in ways}
    for fn in ways.values():
        fn()  # warm-up
    for _ in range(repeats):  # interleaved, so that both ways see the same background load
        for way, fn in ways.items():
            timers[way].seconds = 0.0
            t = time.perf_counter()
            results[way] = fn()
            times[way].append(time.perf_counter() - t)
            solves[way].append(timers[way].seconds)
    best = {w: min(ts) for w, ts in times.items()}
    ref_perms, ref_sweeps, ref_objective = results["reference"]
    ours = results["lmcnb"]
    return {"model": name, "permutations": len(spec.sizes), "units": sum(spec.sizes.values()),
            "sweeps": ours.sweeps, "ref_sweeps": ref_sweeps, "ref": best["reference"],
            "ours": best["lmcnb"],
            **{f"solve_{w}": solves[w][times[w].index(best[w])] for w in ways},
            "objective": ours.objective, "ref_objective": ref_objective,
            "rel": abs(ours.objective - ref_objective) / abs(ref_objective),
            "same": all(np.array_equal(ours.perms[k].numpy(), ref_perms[k]) for k in ref_perms)}


# How often the chapter's book profile matches the weights of pair `i` of each setup
# (lmcnb/chapters/independent.py): the main MLP and the CNNs with and without REPAIR, the other MLP
# widths once, the CNNs' variance collapse, the narrower CNN's and GPT's first pair layer-wise, and
# the transformers' LayerNorm-REPAIR study.
CALLS = {"mlp": lambda i: 2, "mlp_*": lambda i: 1, "cnn": lambda i: 4, "cnn_wide": lambda i: 3,
         "gpt": lambda i: 3 if i == 0 else 2, "ptb": lambda i: 2}


def chapter_share(runs: Path, chapter_seconds: float | None) -> None:
    """Weight matching's time in the independent chapter at `book` (see the docstring)."""
    from lmcnb.chapters import independent as ind
    from lmcnb.experiments.catalog import build

    c = ind.Config.resolve("book", None, runs_dir=str(runs))
    setups = ind.setups(c)
    pairs = {"mlp": c.mlp.n_pairs, "cnn": c.cnn.n_pairs, "cnn_wide": c.cnn.wide_pairs,
             "gpt": c.transformers.n_pairs, "ptb": c.transformers.n_pairs}
    pairs |= {f"mlp_{w}": c.mlp.width_pairs for w in c.mlp.widths if w != c.mlp.width}
    print("| setup | model | pairs | s per matching (mean) | matchings | total s |")
    print("|---|---|---:|---:|---:|---:|")
    total = 0.0
    for key, n in pairs.items():
        s = setups[key]
        calls = CALLS["mlp_*" if key.startswith("mlp_") else key]
        model = build(s.net, s.data_dir)
        times = []
        for i in range(n):
            a, b = (s.trunk(2 * i + j).weights() for j in (0, 1))
            start = time.perf_counter()
            align.aligned_state(model, a, b, "weights", None, s.seed)
            times.append(time.perf_counter() - start)
        spent = sum(t * calls(i) for i, t in enumerate(times))
        total += spent
        print(f"| {key} | {s.model} | {n} | {np.mean(times):.3f} | "
              f"{sum(calls(i) for i in range(n))} | {spent:.1f} |", flush=True)
    share = f" of the chapter's {chapter_seconds:.0f} s: {total / chapter_seconds:.1%}" \
        if chapter_seconds else ""
    print(f"weight matching in the chapter: {total:.1f} s{share}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS),
                   help="models to match (default: all)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed repeats per way, after one warm-up (default 3)")
    p.add_argument("--seed", type=int, default=0, help="the order of the sweeps (default 0)")
    p.add_argument("--device", default="cpu", help="lmcnb's float64 arithmetic (default cpu)")
    p.add_argument("--chapter", type=Path, default=None,
                   help="a runs folder: time the independent chapter's matchings instead")
    p.add_argument("--chapter-seconds", type=float, default=None,
                   help="the chapter's measured wall time, for the share")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("need --repeats >= 1")

    load = os.getloadavg()
    if args.chapter is not None:
        print(f"{TASK_THREADS} torch thread(s); load average at start {load[0]:.2f}")
        chapter_share(args.chapter, args.chapter_seconds)
        print(f"load average at end {os.getloadavg()[0]:.2f}")
        return 0
    print(f"torch {torch.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs; torch "
          f"threads {TASK_THREADS} (lmcnb's TASK_THREADS), OPENBLAS_NUM_THREADS="
          f"{os.environ['OPENBLAS_NUM_THREADS']}; lmcnb on {args.device}; load average at start "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rows = []
    for name in args.models:
        r = measure(name, args.repeats, args.seed, args.device)
        rows.append(r)
        print(f"{name}: {r['permutations']} permutations, {r['units']} units; sweeps lmcnb "
              f"{r['sweeps']}, reference {r['ref_sweeps']}; best of {args.repeats}: reference "
              f"{r['ref']:.3f} s (assignments {r['solve_reference']:.3f} s), lmcnb "
              f"{r['ours']:.3f} s (assignments {r['solve_lmcnb']:.3f} s); objective "
              f"{r['objective']:.9g} vs {r['ref_objective']:.9g}", flush=True)
    load = os.getloadavg()
    print("\n| model | units | sweeps | reference s | lmcnb s | ratio | assignments ref / lmcnb s "
          "| ratio without them | objective rel. diff | same perms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['units']} | {r['sweeps']} ({r['ref_sweeps']}) | "
              f"{r['ref']:.3f} | {r['ours']:.3f} | {r['ref'] / r['ours']:.2f}x | "
              f"{r['solve_reference']:.3f} / {r['solve_lmcnb']:.3f} | "
              f"{(r['ref'] - r['solve_reference']) / (r['ours'] - r['solve_lmcnb']):.2f}x | "
              f"{r['rel']:.1e} | {r['same']} |")
    total_ref, total_ours = sum(r["ref"] for r in rows), sum(r["ours"] for r in rows)
    print(f"all models: reference {total_ref:.2f} s, lmcnb {total_ours:.2f} s, ratio "
          f"{total_ref / total_ours:.2f}x")
    print(f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if max(r["rel"] for r in rows) > TOLERANCE:
        print(f"FAIL: an objective differs by more than {TOLERANCE:g} (relative)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
