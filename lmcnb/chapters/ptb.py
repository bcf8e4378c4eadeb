"""The Penn Treebank chapter as data: hahacen's recipe and study, the noise ablation, R as the
seed computed it beside the book's R, the claims, and the next-word view of the α-slider.

hahacen's *Linear Mode Connectivity in Transformer Models* trained the PyTorch
word-LM tutorial's transformer (`lmcnb.models.transformer_lm`) on PTB's contiguous streams
(`lmcnb.data.words`) with SGD and a per-epoch step decay, and reported the relative perplexity
instability R = (max PPL − ½[PPL(0) + PPL(1)]) / max PPL of pairs of copies (`lmcnb.lmc.metrics`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from ..book.params import ChapterConfig, Section, Steps, param
from ..book.report import (
    Claim,
    at_step,
    deviations_table,
    evaluation_noise,
    k_star_text,
    pct,
    step_claim,
    verdict,
)
from ..book.views import next_word_view
from ..core.checks import choose
from ..core.ref import Ref
from ..core.steps import parse_steps
from ..data.text import load_text, require_text
from ..data.words import UNK
from ..experiments.catalog import build
from ..experiments.setup import NOISE, Setup
from ..experiments.study import Results, spawn_study
from ..lmc.metrics import (
    STABLE_THRESHOLD,
    aggregate,
    mean_ci,
    paired_difference,
    relative_ppl_instability,
    seed_relative_ppl_instability,
)
from ..models.transformer_lm import TransformerLMConfig
from ..train.recipe import TrainConfig
from .common import SOURCE_HELP, check_sources, source_of

CHAPTER = "ptb_transformer"


SEED_GRID = 11  # the seed's α = 0, 0.1, …, 1


# The noise ablation: the RNG streams in which two children differ. "both" is the study's
# default (augmentation draws nothing for a language model).
NOISE_SOURCES = {"data_order": ("data_order",), "dropout": ("dropout",), "both": NOISE}


SOURCE = "hahacen"


SOURCE_R = {"train": 0.149, "test": 0.137}  # the seed's R at initialization


@dataclass(frozen=True, kw_only=True)
class Model(Section):
    """The transformer's shape (`lmcnb.models.transformer_lm.TransformerLMConfig`)."""

    d_model: int = param("embedding and residual width", min=1)
    n_head: int = param("attention heads", min=1)
    d_ff: int = param("feed-forward hidden width", min=1)
    n_layer: int = param("encoder layers", min=1)
    dropout: float = param("dropout rate", min=0, lt=1)

    def check(self, path: str) -> None:
        """A width that the heads divide."""
        if self.d_model % self.n_head:
            raise ValueError(f"{path}.d_model ({self.d_model}) must be a multiple of "
                             f"{path}.n_head ({self.n_head})")


@dataclass(frozen=True, kw_only=True)
class Recipe(Section):
    """hahacen's SGD: no momentum, one chunk of streams × bptt tokens per step, gradient norm
    clipped at `grad_clip`, lr × γ^e in epoch e (a step milestone at every epoch's end), the
    validation split evaluated after every epoch."""

    length: Steps = param("length of training: optimizer steps, or epochs as '8ep'", min=1)
    lr: float = param("learning rate", default=2.5, gt=0)
    gamma: float = param("per-epoch learning-rate decay", default=0.95, gt=0, max=1)
    grad_clip: float | None = param("gradient-norm clip (None: none)", default=0.5, gt=0)

    def recipe(self, steps_per_epoch: int) -> TrainConfig:
        """The `TrainConfig` of this recipe on a split of `steps_per_epoch` chunks."""
        epochs = parse_steps(self.length, steps_per_epoch) / steps_per_epoch
        return TrainConfig(batch_size=1, max_steps=self.length, optimizer="sgd", lr=self.lr,
                           momentum=0.0, schedule="step", step_gamma=self.gamma,
                           step_milestones=tuple(f"{e}ep" for e in range(1, math.ceil(epochs))),
                           grad_clip=self.grad_clip, eval_every="1ep")


@dataclass(frozen=True, kw_only=True)
class Config(ChapterConfig):
    """The Penn Treebank chapter's parameters."""

    model: Model = param("the transformer's shape")
    train: Recipe = param("the SGD recipe")
    eos: bool = param("an <eos> token after every line")
    batch_size: int = param("training streams (one chunk of them per step)", min=1)
    eval_streams: int = param("streams of the valid and test splits", min=1)
    bptt: int = param("tokens per chunk", min=1)
    train_chunks: int | None = param("training chunks used (None: all)", min=1)
    valid_chunks: int | None = param("validation chunks used (None: all)", min=1)
    endpoint: Literal["final", "best_val"] = param("the state compared: final or best on valid")
    spawn_steps: list[Steps] = param("spawn steps k")
    n_inits: int = param("independent initializations (replicates)", min=1)
    n_alpha: int = param("points on the α grid: 11, 21, 31, … (it holds the seed's 11)",
                         min=SEED_GRID)
    eval_iters: int | Literal["all"] = param("'all', or evaluation batches per split", min=1)
    eval_tokens: int = param("tokens per evaluation batch", min=1)
    noise: list[Literal["data_order", "dropout", "both"]] = param(
        "the noise ablation's sources: the streams in which two children differ")
    noise_steps: list[Steps] = param("spawn steps of the noise ablation (among spawn_steps)")
    seed: int = param("the base seed of every stream", min=0)
    data_source: str = param(SOURCE_HELP + " (here: of PTB)", default="default")

    def check(self, path: str) -> None:
        """A grid that holds the seed's 11 points, and at least one noise source."""
        super().check(path)
        if (self.n_alpha - 1) % (SEED_GRID - 1):
            raise ValueError(f"n_alpha must be 11, 21, 31, … so that the grid holds the seed's "
                             f"α = 0, 0.1, …, 1 (got {self.n_alpha})")
        if not self.noise:
            raise ValueError(f"noise must name one or more of {', '.join(NOISE_SOURCES)}")


SEED_MODEL = dict(d_model=200, n_head=2, d_ff=200, n_layer=2, dropout=0.2)
SEED_RECIPE = dict(length="8ep", lr=2.5, gamma=0.95, grad_clip=0.5)
PROFILES = {
    "paper": dict(model=SEED_MODEL, train=SEED_RECIPE, eos=True, batch_size=16, eval_streams=10,
                  bptt=35, train_chunks=None, valid_chunks=None, endpoint="best_val",
                  spawn_steps=[0, 100, 400, "1ep", "2ep", "3ep", "4ep", "5ep", "6ep", "7ep"],
                  n_inits=3, n_alpha=21, eval_iters="all", eval_tokens=8192,
                  noise=["data_order", "dropout", "both"], noise_steps=[0, "1ep"], seed=0),
    # Sized by the pilot (benchmarks/pilots/ptb_transformer.csv, 2 inits at 150 and 300 steps):
    # a step of 16 × 35 tokens takes 226 ms of one core; every path is convex (the relative
    # perplexity barrier −2% to −4% in all 6 pairs, its evaluation noise 0.5%), R is the gap
    # between the ends, 0.07–3.7% per pair. The barrier claims need few replicates, R's spread
    # (SD ≈ 1.7 points) needs more: 5 inits of 150 steps, children at k = 0 and 40, and the two
    # one-stream noise sources at k = 0 ("both" is the spawn study's own pairs) are
    # 5 × (150 + 2 × (150 + 110) + 2 × 2 × 150) = 6,350 steps ≈ 12 minutes on two cores, plus
    # ≈ 3 minutes of evaluation. Longer training costs replicates: 300 steps allows 3.
    "book": dict(model=SEED_MODEL, train=dict(SEED_RECIPE, length=150), eos=True, batch_size=16,
                 eval_streams=10, bptt=35, train_chunks=None, valid_chunks=7, endpoint="final",
                 spawn_steps=[0, 40], n_inits=5, n_alpha=11, eval_iters=1,
                 eval_tokens=4096, noise=["data_order", "dropout", "both"], noise_steps=[0],
                 seed=0),
    "smoke": dict(model=dict(SEED_MODEL, d_model=16, d_ff=16, n_layer=1),
                  train=dict(SEED_RECIPE, length="2ep"), eos=True, batch_size=16, eval_streams=10,
                  bptt=35, train_chunks=3, valid_chunks=1,
                  endpoint="best_val", spawn_steps=[0, 3], n_inits=2, n_alpha=11, eval_iters=1,
                  eval_tokens=600, noise=["data_order", "dropout", "both"], noise_steps=[0, 3],
                  seed=0),
}
Config.profiles = PROFILES


def setups(c: Config, chapter: str = CHAPTER) -> dict[str, Setup]:
    """The study under `c` (one setup, "transformer_lm"), every value checked against the data
    first; nothing trains.

    Training takes the first `train_chunks` chunks of `batch_size` streams (all if None), the
    best-validation endpoint the first `valid_chunks` of the valid split; test is evaluated as
    `eval_streams` streams. An evaluation batch holds about `eval_tokens` tokens. A number of
    chunks beyond what the split holds is refused, with the maximum named.
    """
    check_sources(c.data_source, ("ptb",), c.data_dir)
    src = source_of(c.data_source, "ptb")
    if not src:
        require_text("ptb", c.data_dir)
    vocab = build(Ref.of("tokenizer", "ptb_vocab", eos=c.eos, **src), c.data_dir)
    config = asdict(TransformerLMConfig(vocab_size=len(vocab), **c.model.as_dict()))

    def streams(split: str, n: int, limit: int | None = None) -> Ref:
        return Ref.of("data", "ptb_streams", split=split, streams=n, bptt=c.bptt, eos=c.eos,
                      limit=limit, **src)

    chunks = {}
    for name, split, n in (("train_chunks", "train", c.batch_size),
                           ("valid_chunks", "valid", c.eval_streams)):
        available = len(build(streams(split, n), c.data_dir))
        if getattr(c, name) is not None and getattr(c, name) > available:
            raise ValueError(f"{name}={getattr(c, name)}: the {split} split holds {available} "
                             f"chunks of {n} streams × {c.bptt} tokens (at most {available})")
        chunks[split] = getattr(c, name) or available
    s = Setup(chapter=chapter, model="transformer_lm", dataset="ptb",
              net=Ref.of("model", "transformer_lm", config=config),
              train_data=streams("train", c.batch_size, c.train_chunks),
              test_data=streams("test", c.eval_streams),
              val_data=streams("valid", c.eval_streams, c.valid_chunks),
              train=c.train.recipe(chunks["train"]),
              runs_dir=c.runs_dir, model_args=tuple(sorted(config.items())),
              language_model=True, device=c.device or "auto", data_dir=c.data_dir, seed=c.seed,
              n_alpha=c.n_alpha, eval_iters=c.eval_iters,
              eval_batch_size=max(1, c.eval_tokens // (c.bptt * max(c.batch_size,
                                                                     c.eval_streams))),
              endpoint=c.endpoint)
    ks = s.steps(c.spawn_steps, "spawn_steps")
    extra = sorted(set(s.steps(c.noise_steps, "noise_steps")) - set(ks))
    if extra:
        raise ValueError(f"noise_steps {extra} are not among the spawn steps {ks}: the ablation's "
                         "'both' children are the study's own")
    return {"transformer_lm": s}


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
    for name in sources:
        choose("noise source", name, NOISE_SOURCES)
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


def epochs_text(setup: Setup, k: int) -> str:
    """A number of steps as a fraction of a real epoch of the training split: "0.18 epochs"."""
    return f"{k / setup.steps_per_epoch:.2g} epochs"


def noise_paired(ablation: pd.DataFrame, column: str = "relative_ppl_instability",
                 first: str = "dropout", second: str = "data_order") -> pd.DataFrame:
    """Per spawn step and split: `column` of the children that differ in `second` only minus
    that of those that differ in `first` only, paired within each trunk (the same initialization
    and spawn step), with its 95% CI."""
    plain = ablation[~ablation.get("bn_reset", pd.Series(False, index=ablation.index))
                     .astype(bool)]
    parts = []
    for split, rows in plain.groupby("split"):
        d = paired_difference(rows[rows.noise == first], rows[rows.noise == second], column)
        parts.append(d.assign(split=split))
    return pd.concat(parts, ignore_index=True)


def noise_paired_table(ablation: pd.DataFrame) -> pd.DataFrame:
    """The paired differences of `noise_paired` for the barrier and for R."""
    rows = []
    for column, name in (("relative_ppl_barrier", "PPL barrier / max PPL"),
                         ("relative_ppl_instability", "R")):
        for r in noise_paired(ablation, column).itertuples():
            value, ci = getattr(r, column), getattr(r, f"{column}_ci95")
            rows.append({"k": int(r.spawn_step), "split": r.split, "n": r.n, "quantity": name,
                         "data order only − dropout only": pct(value, ci),
                         "decided": "yes" if verdict_of_sign(value, ci) else "no"})
    return pd.DataFrame(rows)


def verdict_of_sign(value: float, ci: float) -> bool:
    """Whether a difference's 95% CI excludes 0."""
    return not (math.isnan(ci) or value - ci <= 0 <= value + ci)


def claims(c: Config, measured: Mapping[str, Any]) -> list[Claim]:
    """The seed's statements against this chapter's measurements, barrier first: copies unstable
    at initialization (on the relative perplexity barrier, on the next-token error barrier, and
    as R: the book's, as the seed computed it, and for copies that differ in dropout only); the
    drop after the first epoch; and the open question of which noise matters, as a paired
    difference. `measured`: the `setup`, its spawn study (`spawn`) and the noise ablation's rows
    (`ablation`)."""
    setup, results, ablation = measured["setup"], measured["spawn"], measured["ablation"]
    ks = sorted(int(k) for k in results.barriers.spawn_step.unique())
    k0 = 0 if 0 in ks else None
    scale = (f"the seed trained 8 epochs of the whole training split and kept each run's "
             f"best-validation state; this profile trains {epochs_text(setup, setup.total_steps)} "
             "and compares the final states")
    copies = ("the seed's copies at k = 0 saw the same minibatches (only dropout differed) and "
              "its children trained at a constant lr 2.5 (an optimizer-reset bug); " + scale)
    when = epochs_text(setup, 0)

    def stated(split: str) -> str:
        return f"copies are unstable at initialization (R = {SOURCE_R[split]:.1%} on {split})"

    def r_claim(split: str, statement: str, rows: pd.DataFrame, quantity: str,
                note: str) -> Claim:
        n = len(rows)
        mean, ci = mean_ci(rows) if n else (None, None)
        return Claim(SOURCE, statement, quantity, mean, ci, f"≈{SOURCE_R[split]}±0.03", note,
                     n=n or None)

    variants = r_variants(results.curves)
    out = []
    for split in ("test", "train"):
        out.append(step_claim(SOURCE, stated(split), results, k0, "unstable", copies, split,
                              "relative_ppl_barrier", when))
    out.append(step_claim(SOURCE, stated("test") + ", on the next-token error", results, k0,
                          "unstable", "the seed measured perplexity only; " + scale, "test",
                          "error_barrier", when))
    for split in ("test", "train"):
        r0 = variants[(variants.spawn_step == 0) & (variants.split == split)]
        out.append(r_claim(split, f"R = {SOURCE_R[split]:.1%} on {split} at initialization",
                           r0.R, f"R at k = 0, {split}", copies))
        out.append(r_claim(split, f"R = {SOURCE_R[split]:.1%} on {split} at initialization, as "
                           "the seed computed it", r0.R_seed,
                           f"R with α = 0.9 as the end, k = 0, {split}",
                           "the same pairs, the seed's flaw included; " + scale))
        dropout = ablation[(ablation.noise == "dropout") & (ablation.spawn_step == 0)
                           & (ablation.split == split)]
        out.append(r_claim(split, f"R = {SOURCE_R[split]:.1%} on {split} for copies that differ "
                           "in dropout only (the seed's situation at k = 0)",
                           dropout.relative_ppl_instability,
                           f"R at k = 0, dropout only, {split}",
                           "the same minibatches, other dropout masks; " + scale))
    epoch = setup.steps_per_epoch
    out.append(step_claim(SOURCE, "R drops sharply after the first epoch", results,
                          epoch if epoch in ks else None, "stable",
                          f"spawning at one epoch ({epoch} steps) and training on is beyond this "
                          "profile's budget on two cores; the paper profile spawns at every epoch"))
    paired = noise_paired(ablation)
    at0 = paired[(paired.spawn_step == 0) & (paired.split == "test")]
    out.append(Claim("open question (no source separates them)", "Children that differ in data "
                     "order only are less connected than those that differ in dropout only",
                     "R, data order only − dropout only, test, k = 0 (paired by trunk)",
                     *((float(at0.relative_ppl_instability.iloc[0]),
                        float(at0.relative_ppl_instability_ci95.iloc[0])) if len(at0)
                       else (None, None)),
                     ">0", "both from the same trunks and spawn step; the difference's CI",
                     n=int(at0.n.iloc[0]) if len(at0) else None))
    return out


DEVIATIONS = deviations_table([
    ("training length", "8 epochs of the whole split (1,659 steps each)",
     "the book profile: a fraction of the first epoch, each chunk seen once",
     "the models compared are early in training (perplexity in the hundreds)"),
    ("endpoint", "each run's best-validation state", "the final state (best_val in paper)",
     "inside the first epoch there is no validation point to choose"),
    ("noise at k = 0", "the same minibatches, other dropout masks (columns permuted)",
     "children draw data order and dropout from their own streams; the ablation varies each",
     "the seed's k = 0 noise is the ablation's 'dropout only' row"),
    ("children's learning rate", "a constant 2.5 (the optimizer reset by a bug)",
     "the trunk's schedule, inherited", "no effect inside the first epoch (γ applies per epoch)"),
    ("R's second end", "α = 0.9 (an indexing flaw)", "α = 1, the seed's way shown beside",
     "the effect is measured per pair (the α grid section)"),
    ("verdict", "R < 2%", "the relative perplexity barrier's 95% CI against 2%, R beside",
     "R counts the gap between the ends, which a barrier does not"),
    ("<eos>", "none", "an <eos> token after every line (eos=False removes it)",
     "a 10,000-word vocabulary either way"),
    ("replicates", "one pair per spawn epoch", "independent initializations, each with four "
     "named RNG streams", "means with 95% CIs"),
    ("evaluation", "the whole train and test splits", "a fixed sample of chunks of each split",
     "its noise is measured (the evaluation noise column)"),
])



def summary(c: Config, measured: Mapping[str, Any]) -> dict[str, str]:
    """The numbers the chapter's prose states (`measured` as for `claims`): the barrier and R at
    the first spawn step with their verdicts, at the last one, R's parts, k*, the evaluation
    noise, the noise ablation's paired difference, the seed's α = 0.9 end, the length."""
    setup, results, ablation = measured["setup"], measured["spawn"], measured["ablation"]
    ks = sorted(int(k) for k in results.barriers.spawn_step.unique())
    out = {"k_first": str(ks[0]), "k_last": f"{ks[-1]} ({epochs_text(setup, ks[-1])})",
           "steps_per_epoch": f"{setup.steps_per_epoch:,}",
           "steps": f"{setup.total_steps:,} ({epochs_text(setup, setup.total_steps)})",
           "noise": pct(float(evaluation_noise(results).max()))}
    for split in ("train", "test"):
        b0, bl = at_step(results, ks[0], split), at_step(results, ks[-1], split)
        r0 = at_step(results, ks[0], split, "relative_ppl_instability")
        out |= {f"barrier_first_{split}": pct(*b0), f"verdict_first_{split}": verdict(*b0),
                f"barrier_last_{split}": pct(*bl), f"verdict_last_{split}": verdict(*bl),
                f"R_first_{split}": pct(*r0), f"R_verdict_first_{split}": verdict(*r0),
                f"R_last_{split}": pct(*at_step(results, ks[-1], split,
                                                 "relative_ppl_instability")),
                f"kstar_{split}": k_star_text(results.onset(split))}
    e0 = at_step(results, ks[0], "test", "error_barrier")
    out |= {"error_barrier_first": pct(*e0), "error_verdict_first": verdict(*e0)}
    seed = r_variants(results.curves)
    for split in ("train", "test"):
        first = seed[(seed.spawn_step == ks[0]) & (seed.split == split)]
        out[f"end_effect_{split}"] = pct(*mean_ci(first.end_effect))
        out[f"R_seed_{split}"] = pct(*mean_ci(first.R_seed))
        out[f"rise_{split}"] = pct(*mean_ci(first.rise))
        out[f"gap_{split}"] = pct(*mean_ci(first.gap))
    paired = noise_paired(ablation)
    for r in paired[paired.split == "test"].itertuples():
        out[f"noise_diff_k{int(r.spawn_step)}"] = pct(r.relative_ppl_instability,
                                                      r.relative_ppl_instability_ci95)
    a = aggregate(ablation, ["spawn_step", "split", "noise"], ["relative_ppl_instability"])
    for r in a[a.split == "test"].itertuples():
        out[f"noise_{r.noise}_k{int(r.spawn_step)}"] = pct(r.relative_ppl_instability,
                                                           r.relative_ppl_instability_ci95)
    return out


def verdicts_table(setup: Setup, results: Results) -> pd.DataFrame:
    """The chapter's answer per spawn step and split: the barrier with its verdict, the next-token
    error barrier, R with its verdict, and R's parts (the rise above the worse end, the gap)."""
    parts = aggregate(r_variants(results.curves), ["spawn_step", "split"], ["rise", "gap"])
    s = results.summary()
    s = s[~s.get("bn_reset", pd.Series(False, index=s.index)).astype(bool)]
    s = s.merge(parts, on=["spawn_step", "split"])
    return pd.DataFrame([{
        "k": f"{int(r.spawn_step)} ({epochs_text(setup, int(r.spawn_step))})", "split": r.split,
        "n": int(r.n_x),
        "PPL barrier / max PPL": f"{pct(r.relative_ppl_barrier, r.relative_ppl_barrier_ci95)}: "
                                 f"{verdict(r.relative_ppl_barrier, r.relative_ppl_barrier_ci95)}",
        "next-token error barrier": pct(r.error_barrier, r.error_barrier_ci95),
        "R": f"{pct(r.relative_ppl_instability, r.relative_ppl_instability_ci95)}: "
             f"{verdict(r.relative_ppl_instability, r.relative_ppl_instability_ci95)}",
        "rise above the worse end": pct(r.rise, r.rise_ci95),
        "gap between the ends": pct(r.gap, r.gap_ci95)}
        for r in s.sort_values(["split", "spawn_step"]).itertuples()])


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
