"""One 30-α interpolation curve of a GPT over the whole Tiny Shakespeare test split, two ways.

    python benchmarks/lm_interpolation.py [--model CPUGPT] [--n-alpha 30] [--train-steps 100]

* james-hx-song's way: for every α a fresh deep copy of the model loads θ(α); the test split is fed
  one sequence per forward pass;
* lmcnb's way: `lmcnb.interpolate.interpolation_curve`: one model rewritten in place with
  `lerp`, windows preloaded as one tensor and evaluated in batches under inference mode.

Both curves are computed in one run and compared (time ratio, max |Δ| of loss and error). FLOPs
are counted analytically with `lmcnb.gpt.count_flops`: forward per token
2·(12·L·d² + d·V) + 4·L·T·d (the matmuls, plus QKᵀ and A·V over the full T×T scores); a
training step is 3× the forward FLOPs of its tokens. Achieved GFLOP/s are set against a
fp32 matrix-multiply peak measured in the same run, for the curve and for one training step.
"""
from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from peak import matmul_peak, step_seconds  # benchmarks/peak.py, beside this script

import lmcnb  # noqa: F401  (sets the allocator options)
from lmcnb.chapters import gpt as gpt_chapter
from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data import text, tokenizers
from lmcnb.lmc.interpolate import alpha_grid, interpolation_curve
from lmcnb.models import gpt
from lmcnb.train.trainer import Trainer


def _recipe(**values):
    """The GPT chapter's recipe of `values` (`lmcnb.chapters.gpt.LMTrain`)."""
    return gpt_chapter.LMTrain.build(values, "train").recipe()



def seed_way(model, state_a, state_b, test, alphas) -> np.ndarray:
    """A fresh copy per α, one sequence per forward pass; rows of (loss, error)."""
    rows = []
    for alpha in alphas:
        net = copy.deepcopy(model)
        net.load_state_dict({k: (1 - alpha) * a + alpha * state_b[k] if a.is_floating_point() else a
                             for k, a in state_a.items()})
        net.eval()
        loss = errors = 0.0
        with torch.no_grad():
            for x, y in zip(test.x, test.y, strict=True):
                logits = net(x[None]).logits[0]
                loss += float(F.cross_entropy(logits, y, reduction="sum"))
                errors += float((logits.argmax(-1) != y).sum())
        rows.append((loss / test.y.numel(), errors / test.y.numel()))
    return np.array(rows)


def trainer(config, data, batch_size: int, steps: int, seed: int) -> Trainer:
    """A `Trainer` for a fresh model with the book's recipe (AdamW, warmup + cosine, clipping)."""
    cfg = _recipe(batch_size=batch_size, sim_batch_size=batch_size, max_iters=steps,
                  warmup_steps=10, lr=3e-3, min_lr=3e-4)
    streams = RngStreams(Seeds.from_base(seed, "benchmark"))
    with streams.active("init"):
        model = gpt.build_gpt(config)
    return Trainer(model, cfg, data, streams)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    chars = [n for n, c in gpt.GPT_CONFIGS.items() if c.tokenizer == "char"]
    ap.add_argument("--model", default="CPUGPT", choices=chars)
    ap.add_argument("--n-alpha", type=int, default=30)
    ap.add_argument("--train-steps", type=int, default=100, help="steps each endpoint trains")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32],
                    help="training steps timed at these batch sizes "
                         "(the first trains the endpoints)")
    ap.add_argument("--batch-tokens", type=int, default=32768,
                    help="tokens per evaluation batch (lmcnb)")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()

    train_text, test_text = (text.load_text("shakespeare", s, args.data_dir)
                             for s in ("train", "test"))
    tok = tokenizers.CharTokenizer.fit(train_text)
    config = gpt.hf_config(gpt.gpt_config(args.model), len(tok))
    block = config.n_positions
    train = text.token_windows(tokenizers.encode(tok, train_text), block)
    test = text.token_windows(tokenizers.encode(tok, test_text), block)
    flops = gpt.count_flops(config)
    print(f"{args.model}: {flops['matmul_params']:,} matmul weights, "
          f"{flops['forward_per_token'] / 1e6:.3f} MFLOP forward per token; "
          f"test split {len(test)} windows × {block} = {test.y.numel():,} tokens; "
          f"{torch.get_num_threads()} threads")

    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    peaks = [matmul_peak()]
    steps = [(batch, step_seconds(trainer(config, train, batch, 23, seed=2), 20))
             for batch in args.batch_sizes]
    peaks.append(matmul_peak())
    states = []
    for seed in (0, 1):
        t = trainer(config, train, args.batch_sizes[0], args.train_steps, seed)
        for _ in range(args.train_steps):
            t.step()
        states.append(t.model.state_dict())
    state_a, state_b = states

    alphas = alpha_grid(args.n_alpha)
    with torch.random.fork_rng():
        model = gpt.build_gpt(config)

    start = time.perf_counter()
    ours = interpolation_curve(model, state_a, state_b, {"test": test}, alphas,
                               batch_size=max(1, args.batch_tokens // block),
                               progress=False).frame
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    seed_curve = seed_way(model, state_a, state_b, test, alphas)
    seed_s = time.perf_counter() - start
    peaks.append(matmul_peak())

    # The best of the three peak measurements: a busy or throttled moment lowers a measurement,
    # and the highest one gives the most conservative fractions.
    peak = max(peaks)
    print(f"matmul peak (fp32, 2048², best of start/middle/end: "
          f"{' / '.join(f'{p:.1f}' for p in peaks)}): {peak:.1f} GFLOP/s")
    for batch, step_s in steps:
        step_flops = flops["train_per_token"] * batch * block
        print(f"training step (batch {batch} × {block}): {step_s * 1e3:.1f} ms, "
              f"{step_flops / step_s / 1e9:.1f} GFLOP/s = "
              f"{step_flops / step_s / 1e9 / peak:.0%} of peak")
    curve_flops = flops["forward_per_token"] * test.y.numel() * len(alphas)
    diff = np.abs(ours[["loss", "error"]].to_numpy() - seed_curve).max(axis=0)
    print(f"james-hx-song's way: {seed_s:7.1f} s  ({curve_flops / seed_s / 1e9:.1f} GFLOP/s)")
    print(f"lmcnb's way:    {ours_s:7.1f} s  ({curve_flops / ours_s / 1e9:.1f} GFLOP/s = "
          f"{curve_flops / ours_s / 1e9 / peak:.0%} of peak; {args.batch_tokens:,}-token batches)")
    print(f"speed-up: {seed_s / ours_s:.1f}x; max |Δ| loss {diff[0]:.2e}, error {diff[1]:.2e}")
    print(f"curve: loss {ours.loss.iloc[0]:.4f} (α=0) … {ours.loss.max():.4f} (max) … "
          f"{ours.loss.iloc[-1]:.4f} (α=1)")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
