"""One 11-α curve of hahacen's transformer LM over the whole PTB train and test streams, two ways.

    python benchmarks/ptb_interpolation.py [--train-steps 100] [--batch-tokens 8192] [--chunks N]
                                           [--quick]

The endpoints A and B are two quick trainings with lmcnb's `Trainer` from different inits (seed
001's recipe: SGD lr 2.5, no momentum, clip 0.5; one chunk of 16 streams × 35 tokens per step,
`--train-steps` steps each). θ(α) is then evaluated on train (16 streams) and test (10 streams):

* hahacen's way: α = 0, 0.1, … accumulated as floats; per α a fresh deep copy of the model
  loads the interpolated parameters; each split is fed one bptt-35 chunk of all its streams per
  forward pass (eval mode, no_grad);
* lmcnb's way: `lmcnb.interpolate.interpolation_curve` over `alpha_grid(11)`: one model rewritten
  in place with `lerp`, the chunks preloaded as rows of 35 tokens, `--batch-tokens` per forward.

Both ways predict the same tokens: every full chunk, not the tail of (L − 1) mod 35 positions per
stream that `lmcnb.wordlm` leaves out (the tutorial loop fed it as a shorter last chunk). FLOPs are
analytic (`lmcnb.transformer_lm.forward_flops_per_token`, checked against torch's counter in
`tests/test_wordlm.py`); a training step is 3× the forward FLOPs of its tokens. Achieved GFLOP/s
are set against the best of three fp32 matmul peaks measured in the same run. Exits with status 1
if the curves differ by more than 1e-5. `--chunks N` evaluates the first N chunks of each split;
`--quick` evaluates the first 4 chunks of each split and trains 10 steps (under a minute); its
times are not the benchmark's figures. The full run evaluates 11 × 1,011,290 tokens each way (5.0
MFLOP each): tens of minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from peak import matmul_peak, step_seconds  # benchmarks/peak.py, beside this script

import lmcnb  # noqa: F401  (sets the allocator options)
from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data.tensors import TensorData
from lmcnb.data.text import load_text
from lmcnb.data.words import batchify, load_ptb
from lmcnb.lmc.interpolate import alpha_grid, interpolation_curve
from lmcnb.lmc.metrics import relative_ppl_instability, seed_relative_ppl_instability
from lmcnb.models.transformer_lm import TransformerLM, TransformerLMConfig, forward_flops_per_token
from lmcnb.train.recipe import TrainConfig
from lmcnb.train.trainer import Trainer

TOLERANCE = 1e-5
BPTT, STREAMS = 35, {"train": 16, "test": 10}
RECIPE = {"batch_size": 1, "optimizer": "sgd", "lr": 2.5, "momentum": 0.0, "grad_clip": 0.5}


def seed_way(model, state_a, state_b, streams: dict[str, torch.Tensor], n_chunks: dict[str, int]):
    """Per α a fresh copy loading θ(α), one chunk per forward; rows of (split, loss, error)."""
    alphas, alpha = [], 0.0
    for _ in range(11):
        alphas.append(alpha)
        alpha += 0.1
    rows = []
    for alpha in alphas:
        net = copy.deepcopy(model)
        net.load_state_dict({k: (1 - alpha) * a + alpha * state_b[k] for k, a in state_a.items()})
        net.eval()
        with torch.no_grad():
            for split, source in streams.items():
                loss = errors = 0.0
                for i in range(0, n_chunks[split] * BPTT, BPTT):
                    x, y = source[:, i:i + BPTT], source[:, i + 1:i + 1 + BPTT]  # (S, T)
                    logits = net(x)  # (S, T, V)
                    loss += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(),
                                                  reduction="sum"))
                    errors += float((logits.argmax(-1) != y).sum())
                n = n_chunks[split] * BPTT * source.shape[0]
                rows.append((split, loss / n, errors / n))
    return rows


def trainer(cfg: TransformerLMConfig, data: TensorData, steps: int, seed: int) -> Trainer:
    streams = RngStreams(Seeds.from_base(seed, "benchmark"))
    with streams.active("init"):
        model = TransformerLM(cfg)
    return Trainer(model, TrainConfig(max_steps=steps, **RECIPE), data, streams)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-steps", type=int, default=100, help="steps each endpoint trains")
    ap.add_argument("--timed-steps", type=int, default=20, help="training steps timed for tokens/s")
    ap.add_argument("--batch-tokens", type=int, default=8192, help="tokens per forward (lmcnb)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--chunks", type=int, default=None,
                    help="evaluate the first N chunks of each split (default: all)")
    ap.add_argument("--quick", action="store_true", help="4 chunks per split, 10 training steps")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.train_steps, args.timed_steps, args.chunks = 10, 5, 4
    if args.chunks is not None and args.chunks < 1:
        ap.error(f"--chunks must be >= 1, got {args.chunks}")

    vocab, chunks = load_ptb(args.data_dir, batch_size=STREAMS["train"], bptt=BPTT)
    n_chunks = {s: min(args.chunks or len(chunks[s]), len(chunks[s])) for s in STREAMS}
    chunks = {s: TensorData(chunks[s].x[:n_chunks[s]], chunks[s].y[:n_chunks[s]]) for s in STREAMS}
    rows = {s: TensorData(d.x.flatten(0, 1), d.y.flatten(0, 1)) for s, d in chunks.items()}
    cfg = TransformerLMConfig(vocab_size=len(vocab))
    per_token = forward_flops_per_token(cfg, BPTT)
    tokens = {s: d.y.numel() for s, d in chunks.items()}
    print(f"hahacen's model: {sum(p.numel() for p in TransformerLM(cfg).parameters()):,} "
          f"parameters, {per_token / 1e6:.3f} MFLOP forward per token (bptt {BPTT}); "
          + ", ".join(f"{s} {n_chunks[s]} chunks × {STREAMS[s]} × {BPTT} = {tokens[s]:,} tokens"
                      for s in STREAMS)
          + f"; {torch.get_num_threads()} threads{' (--quick)' if args.quick else ''}")

    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    peaks = [matmul_peak()]
    step_s = step_seconds(trainer(cfg, chunks["train"], args.timed_steps + 3, seed=2),
                          args.timed_steps)
    peaks.append(matmul_peak())
    states = []
    for seed in (0, 1):
        t = trainer(cfg, chunks["train"], args.train_steps, seed)
        for _ in range(args.train_steps):
            t.step()
        states.append(t.model.state_dict())
    state_a, state_b = states
    with torch.random.fork_rng():
        model = TransformerLM(cfg)

    start = time.perf_counter()
    ours = interpolation_curve(model, state_a, state_b, rows, alpha_grid(11),
                               batch_size=max(1, args.batch_tokens // BPTT), progress=False).frame
    ours_s = time.perf_counter() - start
    # The seed's streams, cut from the same token ids (the tail of `len % streams` dropped).
    text_ids = {s: vocab.encode(load_text("ptb", s, args.data_dir)) for s in STREAMS}
    streams = {s: batchify(text_ids[s], STREAMS[s]) for s in STREAMS}
    start = time.perf_counter()
    seed_rows = seed_way(model, state_a, state_b, streams, n_chunks)
    seed_s = time.perf_counter() - start
    peaks.append(matmul_peak())

    peak = max(peaks)
    print(f"matmul peak (fp32, 2048², best of start/middle/end: "
          f"{' / '.join(f'{p:.1f}' for p in peaks)}): {peak:.1f} GFLOP/s")
    step_flops = 3 * per_token * STREAMS["train"] * BPTT
    print(f"training step (16 × {BPTT} tokens, SGD, clip 0.5): {step_s * 1e3:.1f} ms, "
          f"{STREAMS['train'] * BPTT / step_s:,.0f} tokens/s, "
          f"{step_flops / step_s / 1e9:.1f} GFLOP/s "
          f"= {step_flops / step_s / 1e9 / peak:.0%} of peak")
    curve_flops = per_token * sum(tokens.values()) * 11
    ours_table = ours.set_index(["split", "alpha"]).sort_index()
    seed_curve = np.array([(loss, err) for _, loss, err in seed_rows])
    ours_curve = np.array([ours_table.loc[(s, float(a))].to_numpy()
                           for a in alpha_grid(11) for s in STREAMS])
    diff = np.abs(ours_curve - seed_curve).max(axis=0)
    print(f"hahacen's way: {seed_s:7.1f} s  ({curve_flops / seed_s / 1e9:.1f} GFLOP/s = "
          f"{curve_flops / seed_s / 1e9 / peak:.0%} of peak; one chunk per forward)")
    print(f"lmcnb's way:    {ours_s:7.1f} s  ({curve_flops / ours_s / 1e9:.1f} GFLOP/s = "
          f"{curve_flops / ours_s / 1e9 / peak:.0%} of peak; {args.batch_tokens:,}-token batches)")
    print(f"speed-up: {seed_s / ours_s:.2f}x; max |Δ| loss {diff[0]:.2e}, error {diff[1]:.2e}")
    for s in STREAMS:
        loss = ours[ours.split == s].loss.to_numpy()
        print(f"{s}: loss {loss[0]:.4f} (α=0) … {loss.max():.4f} (max) … {loss[-1]:.4f} (α=1); "
              f"R {relative_ppl_instability(loss):.2%}, seed-style R (α=0.9 as end) "
              f"{seed_relative_ppl_instability(loss):.2%}")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if max(diff) > TOLERANCE:
        sys.exit(1)


if __name__ == "__main__":
    main()
