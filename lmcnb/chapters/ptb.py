"""The Penn Treebank chapter as data: hahacen's recipe and study, the noise ablation, R as the
seed computed it beside the book's R, the claims, and the next-word view of the α-slider.

hahacen's *Linear Mode Connectivity in Transformer Models* trained the PyTorch
word-LM tutorial's transformer (`lmcnb.models.transformer_lm`) on PTB's contiguous streams
(`lmcnb.data.words`) with SGD and a per-epoch step decay, and reported the relative perplexity
instability R = (max PPL − ½[PPL(0) + PPL(1)]) / max PPL of pairs of copies (`lmcnb.lmc.metrics`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..book.report import Claim, at_step, k_star_text, pct, verdict
from ..book.views import next_word_view
from ..core.checks import at_least, batches_or_all, check_positive, choose, flag
from ..core.ref import Ref
from ..core.steps import step_list
from ..data.text import load_text, require_text
from ..data.words import UNK
from ..experiments.catalog import build
from ..experiments.setup import NOISE, Setup
from ..experiments.study import Results, spawn_study
from ..lmc.metrics import (
    STABLE_THRESHOLD,
    aggregate,
    mean_ci,
    relative_ppl_instability,
    seed_relative_ppl_instability,
)
from ..models.transformer_lm import TransformerLMConfig
from ..train.recipe import TrainConfig

CHAPTER = "ptb_transformer"


SEED_GRID = 11  # the seed's α = 0, 0.1, …, 1


# The noise ablation: the RNG streams in which two children differ. "both" is the study's
# default (augmentation draws nothing for a language model).
NOISE_SOURCES = {"data_order": ("data_order",), "dropout": ("dropout",), "both": NOISE}


SOURCE = "hahacen"


SOURCE_R = {"train": 0.149, "test": 0.137}  # the seed's R at initialization


def seed_recipe(*, epochs: float, lr: float = 2.5, gamma: float = 0.95,
                grad_clip: float | None = 0.5) -> TrainConfig:
    """hahacen's SGD: no momentum, one chunk of streams × bptt tokens per step, gradient norm
    clipped at `grad_clip`, lr × γ^e in epoch e (a step milestone at every epoch's end), the
    validation split evaluated after every epoch."""
    if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs <= 0:
        raise ValueError(f"epochs must be a number > 0 (got {epochs!r})")
    if not isinstance(lr, (int, float)) or lr <= 0:
        raise ValueError(f"lr must be a number > 0 (got {lr!r})")
    if not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
        raise ValueError(f"gamma must be a number in (0, 1] (got {gamma!r})")
    if grad_clip is not None and (not isinstance(grad_clip, (int, float)) or grad_clip <= 0):
        raise ValueError(f"grad_clip must be a number > 0 or None (got {grad_clip!r})")
    return TrainConfig(batch_size=1, max_steps=f"{epochs}ep", optimizer="sgd", lr=lr,
                       momentum=0.0, schedule="step", step_gamma=gamma,
                       step_milestones=tuple(f"{e}ep" for e in range(1, math.ceil(epochs))),
                       grad_clip=grad_clip, eval_every="1ep")


def check_grid(n_alpha: int) -> int:
    """`n_alpha` if its evenly spaced grid holds the seed's 11 points (11, 21, 31, …)."""
    at_least("n_alpha", n_alpha, SEED_GRID)
    if (n_alpha - 1) % (SEED_GRID - 1):
        raise ValueError(f"n_alpha must be 11, 21, 31, … so that the grid holds the seed's "
                         f"α = 0, 0.1, …, 1 (got {n_alpha})")
    return n_alpha


def check_noise(names: Any) -> list[str]:
    """A non-empty list of noise sources, each one of `NOISE_SOURCES`."""
    if not isinstance(names, (list, tuple)) or not names:
        raise ValueError(f"noise must be a list of noise sources; valid: "
                         f"{', '.join(NOISE_SOURCES)} (got {names!r})")
    for name in names:
        choose("noise source", name, NOISE_SOURCES)
    return list(names)


def setup(p: Any, chapter: str = CHAPTER) -> Setup:
    """The study under resolved chapter parameters `p`, every value checked before any work.

    Training takes the first `train_chunks` chunks of `batch_size` streams (all if None), the
    best-validation endpoint the first `valid_chunks` of the valid split; test is evaluated as
    `eval_streams` streams. An evaluation batch holds about `eval_tokens` tokens.
    """
    require_text("ptb", p.data_dir)
    check_positive(batch_size=p.batch_size, eval_streams=p.eval_streams, bptt=p.bptt,
                   eval_tokens=p.eval_tokens,
                   **{k: getattr(p, k) for k in ("train_chunks", "valid_chunks")
                      if getattr(p, k) is not None})
    flag("eos", p.eos)
    at_least("n_inits", p.n_inits, 1)
    batches_or_all("eval_iters", p.eval_iters)
    check_noise(p.noise)
    recipe = seed_recipe(**p.train)
    vocab = build(Ref.of("tokenizer", "ptb_vocab", eos=p.eos), p.data_dir)
    config = asdict(TransformerLMConfig(vocab_size=len(vocab), **p.model))
    if config["d_model"] % config["n_head"]:
        raise ValueError(f"d_model ({config['d_model']}) must be a multiple of n_head "
                         f"({config['n_head']})")

    def streams(split: str, n: int, limit: int | None = None) -> Ref:
        return Ref.of("data", "ptb_streams", split=split, streams=n, bptt=p.bptt, eos=p.eos,
                      limit=limit)

    s = Setup(chapter=chapter, model="transformer_lm", dataset="ptb",
              net=Ref.of("model", "transformer_lm", config=config),
              train_data=streams("train", p.batch_size, p.train_chunks),
              test_data=streams("test", p.eval_streams),
              val_data=streams("valid", p.eval_streams, p.valid_chunks), train=recipe,
              runs_dir=p.runs_dir, model_args=tuple(sorted(config.items())),
              language_model=True, device=p.device or "auto", data_dir=p.data_dir, seed=p.seed,
              n_alpha=check_grid(p.n_alpha), eval_iters=p.eval_iters,
              eval_batch_size=max(1, p.eval_tokens // (p.bptt * max(p.batch_size,
                                                                     p.eval_streams))),
              endpoint=p.endpoint)
    ks = s.steps(step_list("spawn_steps", p.spawn_steps), "spawn_steps")
    extra = sorted(set(s.steps(step_list("noise_steps", p.noise_steps), "noise_steps")) - set(ks))
    if extra:
        raise ValueError(f"noise_steps {extra} are not among the spawn steps {ks}: the ablation's "
                         "'both' children are the study's own")
    return s


def describe(setup: Setup) -> dict[str, Any]:
    """The model and its data, for the chapter's first table."""
    config = dict(setup.model_args)
    train, test = setup.load(setup.train_data), setup.load(setup.test_data)
    with torch.device("meta"):
        n = sum(p.numel() for p in build(setup.net).parameters())
    return {"vocabulary": config["vocab_size"], "parameters": n,
            "layers × width × heads × FFN": (f"{config['n_layer']} × {config['d_model']} × "
                                             f"{config['n_head']} × {config['d_ff']}"),
            "train chunks (steps per epoch)": len(train),
            "tokens per step": train.x[0].numel(), "test tokens": test.y.numel(),
            "steps": setup.total_steps}


def noise_ablation(setup: Setup, main: Results, spawn_steps: Sequence[int | str],
                   sources: Sequence[str], n_inits: int,
                   executor: Any = "serial") -> pd.DataFrame:
    """The barrier rows of children spawned at `spawn_steps` that differ only in each noise
    source's streams, with a `noise` column. A source with the study's own streams takes
    `main`'s rows; the others are studies of their own, spawned from the same trunks."""
    ks = setup.steps(spawn_steps, "noise_steps")
    parts = []
    for name in check_noise(sources):
        streams = NOISE_SOURCES[name]
        if streams == setup.noise:
            rows = main.barriers[main.barriers.spawn_step.isin(ks)]
        else:
            rows = spawn_study(replace(setup, noise=streams), ks, n_inits=n_inits,
                               executor=executor).barriers
        parts.append(rows.assign(noise=name))
    return pd.concat(parts, ignore_index=True)


def noise_table(ablation: pd.DataFrame) -> pd.DataFrame:
    """Mean ± 95% CI of R per spawn step, split and noise source, with its verdict."""
    s = aggregate(ablation, ["spawn_step", "split", "noise"], ["relative_ppl_instability"])
    return pd.DataFrame([{"k": int(r.spawn_step), "split": r.split, "noise": r.noise, "n": r.n,
                          "R": pct(r.relative_ppl_instability, r.relative_ppl_instability_ci95),
                          "verdict": verdict(r.relative_ppl_instability,
                                             r.relative_ppl_instability_ci95)}
                         for r in s.itertuples()])


def seed_points(alphas: Sequence[float]) -> np.ndarray:
    """Positions of α = 0, 0.1, …, 1 in a sorted grid (as floats: within 1e-9)."""
    alphas = np.asarray(alphas, float)
    hits = [np.flatnonzero(np.isclose(alphas, i / 10, rtol=0, atol=1e-9)) for i in range(11)]
    if any(h.size != 1 for h in hits):
        raise ValueError("the α grid does not hold the seed's α = 0, 0.1, …, 1 (n_alpha must be "
                         "11, 21, 31, …)")
    return np.concatenate(hits)


def r_variants(curves: pd.DataFrame) -> pd.DataFrame:
    """Per pair and split: R on the book's grid, on the seed's 11 points (α = 1 as the end) and as
    the seed computed it (α = 0.9 as the end), the effect of each difference, and R's two parts.

    R = rise + gap: `rise` = (max PPL − the worse end's PPL) / max PPL is the barrier above both
    ends (0 for a path that never climbs above its ends), `gap` = ½|PPL(0) − PPL(1)| / max PPL
    is there whenever the two ends differ, even along a convex path.
    """
    curves = curves[~curves.get("bn_reset", pd.Series(False, index=curves.index)).astype(bool)]
    keys = [k for k in ("noise", "spawn_step", "replicate", "pair", "split") if k in curves]
    rows = []
    for key, c in curves.groupby(keys, sort=True):
        c = c.sort_values("alpha")
        loss = c.loss.to_numpy()
        on_seed, ppl = loss[seed_points(c.alpha)], np.exp(loss)
        rows.append({**dict(zip(keys, key)), "R": relative_ppl_instability(loss),
                     "R_11": relative_ppl_instability(on_seed),
                     "R_seed": seed_relative_ppl_instability(on_seed),
                     "rise": (ppl.max() - max(ppl[0], ppl[-1])) / ppl.max(),
                     "gap": abs(ppl[0] - ppl[-1]) / 2 / ppl.max()})
    out = pd.DataFrame(rows)
    out["grid_effect"] = out.R_11 - out.R
    out["end_effect"] = out.R_seed - out.R_11
    return out


def _table(curves: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Mean ± 95% CI over replicates of `r_variants` columns, per spawn step and split."""
    s = aggregate(r_variants(curves), ["spawn_step", "split"], list(columns))
    return pd.DataFrame([{"k": int(r.spawn_step), "split": r.split, "n": r.n,
                          **{title: pct(getattr(r, c), getattr(r, f"{c}_ci95"))
                             for c, title in columns.items()}} for r in s.itertuples()])


def seed_r_table(curves: pd.DataFrame) -> pd.DataFrame:
    """The book's R beside R on the seed's 11 points and R as the seed computed it, and the effect
    of its α = 0.9 end (paired: the same curves)."""
    return _table(curves, {"R": "R (book grid, α = 1 end)",
                           "R_11": "R (seed's 11 points, α = 1 end)",
                           "R_seed": "R as the seed computed it (α = 0.9 end)",
                           "end_effect": "α = 0.9 end − α = 1 end"})


def r_parts_table(curves: pd.DataFrame) -> pd.DataFrame:
    """R and its two parts: the rise above the worse end, and the gap between the ends."""
    return _table(curves, {"R": "R", "rise": "rise above the worse end",
                           "gap": "gap between the ends"})


def _ratio(results: Results, k: int, split: str = "test") -> tuple[float | None, float | None]:
    """Mean ± CI over replicates of R(k) / R(0) (None when k or 0 was not measured)."""
    b = results.barriers[results.barriers.split == split]
    at = {s: b[b.spawn_step == s].set_index("replicate").relative_ppl_instability
          for s in (0, k)}
    if at[0].empty or at[k].empty:
        return None, None
    return mean_ci((at[k] / at[0]).dropna())


def claims(setup: Setup, results: Results, ablation: pd.DataFrame, p: Any) -> list[Claim]:
    """The seed's statements against this chapter's measurements: R at initialization as the book
    measures it, as the seed computed it, and for children that differ in dropout only (the
    seed's own situation at k = 0); and the drop after the first epoch."""
    splits = ("train", "test")
    r0 = {s: at_step(results, 0, s) if 0 in set(results.barriers.spawn_step) else (None, None)
          for s in splits}
    variants = r_variants(results.curves)
    seed0 = {s: mean_ci(variants[(variants.spawn_step == 0) & (variants.split == s)].R_seed)
             for s in splits}
    dropout0 = {s: mean_ci(ablation[(ablation.noise == "dropout") & (ablation.spawn_step == 0)
                                    & (ablation.split == s)].relative_ppl_instability)
                for s in splits}
    scale = (f"the seed trained 8 epochs of the whole training split, this profile "
             f"{p.train['epochs']} epochs of {setup.steps_per_epoch} chunks")
    differs = ("the seed's copies at k = 0 saw the same minibatches (only dropout differed); it "
               "kept each run's best-validation state, and its children trained at a constant lr "
               "2.5 (an optimizer-reset bug); " + scale)

    def stated(s: str) -> str:
        return f"R = {SOURCE_R[s]:.1%} on {s} at initialization"

    return [
        *(Claim(SOURCE, stated(s), f"R at k = 0, {s}", *r0[s], f"≈{SOURCE_R[s]}±0.03", differs)
          for s in splits),
        *(Claim(SOURCE, stated(s) + ", as it computed R", f"R with α = 0.9 as the end, k = 0, {s}",
                *seed0[s], f"≈{SOURCE_R[s]}±0.03", "the same pairs, the seed's flaw included; "
                + scale) for s in splits),
        *(Claim(SOURCE, stated(s) + ", its copies differing in dropout only",
                f"R at k = 0, dropout only, {s}", *dropout0[s], f"≈{SOURCE_R[s]}±0.03",
                "the seed's noise at k = 0: the same minibatches, other dropout masks; " + scale)
          for s in splits),
        Claim(SOURCE, "R drops sharply after the first epoch",
              "R(k = 1 epoch) / R(k = 0), test", *_ratio(results, setup.steps_per_epoch), "<0.5",
              "the seed saw only whole epochs; the instability-vs-k figure shows where inside "
              "epoch 1 the drop happens"),
    ]


def summary(setup: Setup, results: Results, ablation: pd.DataFrame) -> dict[str, str]:
    """The numbers the chapter's prose states: R at the first spawn step, after one epoch and at
    the last one (train and test), k*, the noise ablation at its first and last spawn step, and
    the effect of the seed's α = 0.9 end at the first spawn step."""
    ks = sorted(int(k) for k in results.barriers.spawn_step.unique())
    epoch = setup.steps_per_epoch
    out = {"k_first": str(ks[0]), "k_last": str(ks[-1]), "steps_per_epoch": str(epoch),
           "steps": str(setup.total_steps), "verdict_first": verdict(*at_step(results, ks[0]))}
    for split in ("train", "test"):
        out[f"kstar_{split}"] = k_star_text(results.onset(split))
        out[f"R_first_{split}"] = pct(*at_step(results, ks[0], split))
        out[f"R_last_{split}"] = pct(*at_step(results, ks[-1], split))
        out[f"R_epoch_{split}"] = (pct(*at_step(results, epoch, split)) if epoch in ks
                                   else "not measured")
    a = aggregate(ablation, ["spawn_step", "split", "noise"], ["relative_ppl_instability"])
    noise_ks = sorted(int(k) for k in a.spawn_step.unique())
    out["noise_k_later"] = str(noise_ks[-1])
    out |= {f"noise_{source}_{when}_{split}": "not measured" for source in NOISE_SOURCES
            for when in ("first", "later") for split in ("train", "test")}
    for r in a.itertuples():
        when = "first" if r.spawn_step == noise_ks[0] else "later"
        out[f"noise_{r.noise}_{when}_{r.split}"] = pct(r.relative_ppl_instability,
                                                       r.relative_ppl_instability_ci95)
    seed = r_variants(results.curves)
    for split in ("train", "test"):
        first = seed[(seed.spawn_step == ks[0]) & (seed.split == split)]
        out[f"end_effect_{split}"] = pct(*mean_ci(first.end_effect))
        out[f"R_seed_{split}"] = pct(*mean_ci(first.R_seed))
        out[f"rise_{split}"] = pct(*mean_ci(first.rise))
        out[f"gap_{split}"] = pct(*mean_ci(first.gap))
    return out


def predictions_view(setup: Setup, top: int = 3):
    """`next_word_view` of the chapter's fixed test sentence in the study's vocabulary."""
    eos = setup.test_data.kwargs()["eos"]
    vocab = build(Ref.of("tokenizer", "ptb_vocab", eos=eos), setup.data_dir)
    return next_word_view(vocab, fixed_sentence(setup.data_dir), top)


def fixed_sentence(data_dir: Any = None, words: tuple[int, int] = (8, 12)) -> str:
    """The first line of PTB's test split with `words[0]`–`words[1]` words and no `<unk>`."""
    for line in load_text("ptb", "test", data_dir).splitlines():
        n = len(line.split())
        if words[0] <= n <= words[1] and UNK not in line.split():
            return line.strip()
    raise ValueError(f"no test line of {words[0]}-{words[1]} words without {UNK}")


def plot_noise(ablation: pd.DataFrame, title: str = ""):
    """R per noise source at each spawn step (mean ± 95% CI), train and test side by side."""
    import matplotlib.pyplot as plt

    a = aggregate(ablation, ["spawn_step", "split", "noise"], ["relative_ppl_instability"])
    ks, sources = sorted(a.spawn_step.unique()), list(dict.fromkeys(ablation.noise))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True, constrained_layout=True)
    width = 0.8 / len(sources)
    for ax, split in zip(axes, ("train", "test")):
        for j, source in enumerate(sources):
            sub = a[(a.split == split) & (a.noise == source)].set_index("spawn_step")
            x = np.arange(len(ks)) + (j - (len(sources) - 1) / 2) * width
            ax.bar(x, [sub.relative_ppl_instability.get(k, np.nan) for k in ks], width,
                   yerr=[np.nan_to_num(sub.relative_ppl_instability_ci95.get(k, np.nan))
                         for k in ks], capsize=3, label=source.replace("_", " "))
        ax.axhline(STABLE_THRESHOLD, color="red", lw=1, ls=":",
                   label=f"{STABLE_THRESHOLD:.0%} threshold")
        ax.set_xticks(range(len(ks)), [f"k = {k}" for k in ks])
        ax.set_title(split)
    axes[0].set_ylabel("relative perplexity instability R")
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    return fig
