"""The CNN baselines of Shapira's study as data: each network's dataset and recipe, the `Setup`
of its study, and the study's own way of interpolating BatchNorm networks (for comparison)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch

from ..book.params import ChapterConfig, Section, Steps, param
from ..book.report import (
    Claim,
    accuracy,
    at_step,
    deviations_table,
    evaluation_noise,
    k_star_text,
    pct,
    single_run_ci,
    step_claim,
    verdict,
)
from ..core.ref import Ref
from ..data.tensors import TensorData
from ..data.vision import require_vision
from ..experiments.catalog import build
from ..experiments.setup import Setup
from ..experiments.study import Results, children
from ..measure import measure
from ..train.evaluation import evaluate
from ..train.recipe import TrainConfig
from .common import SOURCE_HELP, DataSource, check_sources, source_of

# Shapira's table: dataset, batch size, epochs, augmentation, Adam learning rate.
RECIPES = {
    "lenet5": dict(dataset="mnist", batch_size=1024, epochs=10, augment=False, lr=1e-3),
    "reduced_vgg": dict(dataset="cifar10", batch_size=128, epochs=29, augment=True, lr=1e-3),
    "alexnet": dict(dataset="tiny_imagenet", batch_size=64, epochs=9, augment=True, lr=5e-4),
}


# The chapter's profiles: `paper` is the study's recipe (for a GPU), `book` the published run on
# two CPU cores, `smoke` a check that everything runs.
PROFILES = {
    "paper": dict(model="all", n_children=2, n_inits=3, n_alpha=25, eval_iters="all",
                  eval_batch=1000, holdout=0.1, seed=0, bn_reset=True,
                  spawn_steps=[0, 25, 100, 500, "1ep", "3ep"], k1_steps=[0, 100, "1ep"],
                  k2_steps=[100, "1ep"],
                  train={m: dict(batch_size=r["batch_size"], max_steps=f"{r['epochs']}ep",
                                 patience=3) for m, r in RECIPES.items()}),
    # Initializations per network where the verdicts are drawn (k = 0 and one later k): five,
    # and for AlexNet at k = 100 what the spread of a five-init book run needed to decide (7).
    # ReducedVGG by its pilot (benchmarks/pilots/cnn_baselines-reduced_vgg.csv): at 600 steps its
    # k = 0 barrier is 6.0% (SD 1.9% over 3 inits) against 5.0% at 300 steps, and the eight-init
    # book run at 300 steps had a spread of 2.7%: at the pilot's spread six inits at 600 steps
    # would clear the 2% threshold (6.0% ± 2.0%) where eleven at 300 would be needed. Its first
    # three inits are the pilot's own runs (the same identities), so half the claim's sample
    # chose the length; the other three alone give 4.3% ± 4.2%.
    "book": dict(model="all", n_children=2, n_inits={"lenet5": 5, "reduced_vgg": 6, "alexnet": 7},
                 n_alpha=11, eval_iters={"lenet5": 3, "reduced_vgg": 2, "alexnet": 1},
                 eval_batch=1000, holdout=0.1, seed=0, bn_reset=True,
                 spawn_steps={"lenet5": [0, 20, 100], "reduced_vgg": [0, 75], "alexnet": [0, 100]},
                 k1_steps={"lenet5": [0, 30, 100]}, k2_steps={"lenet5": [30, 150]},
                 train={"lenet5": dict(batch_size=128, max_steps=300),  # 0.6 epochs
                        "reduced_vgg": dict(batch_size=64, max_steps=600),  # 0.8 epochs
                        "alexnet": dict(batch_size=32, max_steps=400)}),  # 1.3 epochs
    "smoke": dict(model="all", n_children=2, n_inits=1, n_alpha=5, eval_iters=1, eval_batch=100,
                  holdout=0.1, seed=0, bn_reset=True, spawn_steps=[0, 4],
                  k1_steps={"lenet5": [0, 4]}, k2_steps={"lenet5": [4]},
                  train={"lenet5": dict(batch_size=64, max_steps=12),
                         "reduced_vgg": dict(batch_size=16, max_steps=8),
                         "alexnet": dict(batch_size=8, max_steps=8)}),
}

DATASETS = {r["dataset"]: m for m, r in RECIPES.items()}  # dataset → its network


# The source's reported test accuracies of its fully trained networks.
SOURCE_ACCURACY = {"lenet5": 0.9818, "reduced_vgg": 0.7136, "alexnet": 0.4064}


StepLists = list[Steps] | dict[str, list[Steps]]  # one list for every model, or one per model


@dataclass(frozen=True, kw_only=True)
class Train(Section):
    """One network's training length and batch (the rest of its recipe is `RECIPES`')."""

    batch_size: int = param("images per optimizer step", min=1)
    max_steps: Steps = param("length of training (steps, '500it' or '2ep')", min=1)
    patience: int | None = param("early stopping: evaluations without improvement on the "
                                 "validation split (None: no early stopping)", default=None, min=1)


@dataclass(frozen=True, kw_only=True)
class Config(ChapterConfig):
    """The CNN chapter's parameters."""

    model: Literal["lenet5", "reduced_vgg", "alexnet", "all"] = param("the network, or all")
    train: dict[str, Train] = param("per network: batch size, length, early stopping",
                                    keys=tuple(RECIPES))
    spawn_steps: StepLists = param("spawn steps k (a list, or a dict per network)",
                                   keys=tuple(RECIPES))
    k1_steps: StepLists = param("main-branch grid: spawn steps on the main branch",
                             keys=tuple(RECIPES))
    k2_steps: StepLists = param("main-branch grid: steps each child trains", keys=tuple(RECIPES))
    n_children: int = param("children per spawn step; every pair is compared", min=2)
    n_inits: int | dict[str, int] = param("independent initializations (replicates)", min=1,
                                          keys=tuple(RECIPES))
    n_alpha: int = param("points on the α grid, both ends included", min=2)
    eval_iters: int | Literal["all"] | dict[str, int | Literal["all"]] = param(
        "'all', or a number of evaluation batches per split", min=1, keys=tuple(RECIPES))
    eval_batch: int = param("images per evaluation batch", min=1)
    holdout: float = param("fraction of the training split kept out for validation", gt=0, lt=1)
    seed: int = param("the base seed of every stream", min=0)
    bn_reset: bool = param("also evaluate with BatchNorm statistics reset after interpolation")
    data_source: DataSource = param(SOURCE_HELP, default="default", keys=tuple(DATASETS))

    @property
    def models(self) -> list[str]:
        """The networks this configuration studies."""
        return list(RECIPES) if self.model == "all" else [self.model]


Config.profiles = PROFILES


def per_model(value: Any, model: str) -> Any:
    """A profile value: one value for every model, or a dict of per-model values."""
    return value.get(model) if isinstance(value, dict) else value


def setups(c: Config, chapter: str = "cnn_baselines") -> dict[str, Setup]:
    """The study of every network of `c`, every value checked against the data first (nothing
    trains).

    With early stopping (`patience` in the network's `train` section) the validation split is a
    tenth of the training split, carved out (`holdout`) so the test split is never looked at.
    """
    missing = [m for m in c.models if m not in c.train]
    if missing:
        raise ValueError(f"train has no section for {missing}; give batch_size and max_steps")
    check_sources(c.data_source, tuple(RECIPES[m]["dataset"] for m in c.models), c.data_dir)
    return {m: _setup(m, c, chapter) for m in c.models}


def _setup(model: str, c: Config, chapter: str) -> Setup:
    recipe = RECIPES[model]
    dataset = recipe["dataset"]
    src = source_of(c.data_source, dataset)
    if not src:
        require_vision(dataset, c.data_dir)
    t = c.train[model]
    train = TrainConfig(optimizer="adam", lr=recipe["lr"], augment=recipe["augment"],
                        batch_size=t.batch_size, max_steps=t.max_steps, patience=t.patience)
    holdout = {"holdout": c.holdout} if train.patience else {}

    def split(name: str) -> Ref:
        return Ref.of("data", "vision", name=dataset, split=name, **holdout, **src)

    n_classes = len(build(split("train"), c.data_dir).classes)
    augment = Ref.of("augment", "crop_flip", dataset=dataset) if recipe["augment"] else None
    s = Setup(chapter=chapter, model=model, dataset=dataset,
              net=Ref.of("model", model, num_classes=n_classes), train_data=split("train"),
              test_data=Ref.of("data", "vision", name=dataset, split="test", **src), train=train,
              runs_dir=c.runs_dir, val_data=split("val") if train.patience else None,
              augment=augment,
              model_args=(("num_classes", n_classes),), device=c.device or "auto",
              data_dir=c.data_dir, seed=c.seed, n_alpha=c.n_alpha,
              eval_iters=per_model(c.eval_iters, model), eval_batch_size=c.eval_batch,
              bn_reset=c.bn_reset, bn_reset_examples=2 * c.eval_batch)
    s.steps(per_model(c.spawn_steps, model), "spawn_steps")
    grid = {key: s.steps(per_model(getattr(c, key), model) or [], key, optional=True)
            for key in ("k1_steps", "k2_steps")}
    if bool(grid["k1_steps"]) != bool(grid["k2_steps"]):
        raise ValueError(f"{model}: k1_steps and k2_steps make one grid, give both or neither "
                         f"(got k1_steps={grid['k1_steps']}, k2_steps={grid['k2_steps']})")
    return s


def untrained_statistics(setup: Setup, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with every buffer (BatchNorm running statistics) of a freshly built network, as
    the source left them: it interpolated parameters only and never copied the statistics."""
    fresh = build(setup.net, setup.data_dir)
    buffers = dict(fresh.named_buffers())
    return {k: buffers[k].clone() if k in buffers else v for k, v in state.items()}


def describe(setup: Setup) -> dict[str, Any]:
    """The network and its data, for the chapter's first table."""
    train, test = setup.load(setup.train_data), setup.load(setup.test_data)
    return {"model": setup.model, "dataset": setup.dataset, "classes": len(train.classes),
            "train images": len(train), "test images": len(test),
            "parameters": sum(p.numel() for p in build(setup.net, setup.data_dir).parameters())}


def statistics_effect(setup: Setup, n_children: int = 2) -> pd.DataFrame:
    """The first pair of children spawned at k = 0 measured on the test images the study
    evaluates, twice: BatchNorm statistics interpolated with the weights (this book) and left
    untrained (the source). Each endpoint loss has the 95% CI of its mean over the images."""
    a, b = (kid.weights() for kid in children(setup, 0, 0, n_children)[:2])
    examples = (None if setup.eval_iters == "all"
                else setup.eval_iters * setup.eval_batch_size)
    test = setup.load(setup.test_data)
    test = TensorData(test.x[:examples], test.y[:examples], test.classes)
    ways = {"statistics interpolated (this book)": (a, b),
            "statistics never copied (the source)": (untrained_statistics(setup, a),
                                                     untrained_statistics(setup, b))}
    net = build(setup.net, setup.data_dir)
    rows = []
    for way, (sa, sb) in ways.items():
        m = measure(sa, sb, test, model=net, n_alpha=setup.n_alpha, device=setup.device,
                    progress=False)
        c, r = m.curves, m.barriers.iloc[0]
        net.load_state_dict(sa)
        end = evaluate(net, test, setup.eval_batch_size)
        rows.append({"way": way, "loss at α=0": c.loss.iloc[0],
                     "its 95% CI": single_run_ci(float(end.example_loss.std()) / len(test) ** 0.5),
                     "loss at α=1": c.loss.iloc[-1], "max loss": c.loss.max(),
                     "error at α=0": c.error.iloc[0], "error at α=1": c.error.iloc[-1],
                     "error barrier": r.error_barrier, "chance loss": math.log(len(test.classes))})
    return pd.DataFrame(rows)


def epochs_text(setup: Setup, k: int) -> str:
    """A spawn step in the source's unit: "0.41 epochs"."""
    return f"{k / setup.steps_per_epoch:.2g} epochs"


def claims(c: Config, measured: Mapping[str, Any]) -> list[Claim]:
    """The source's statements (and Frankle et al.'s) against this chapter's measurements, barrier
    first: `measured["setups"]` and `measured["spawn"]` (per network, its setup and spawn study),
    `measured["statistics"]` (the `statistics_effect` table, or None)."""
    setups, results = measured["setups"], measured["spawn"]
    statistics = measured.get("statistics")

    def at(m: str, last: bool, source: str, statement: str, rule: str, note: str) -> Claim:
        r = results.get(m)
        ks = sorted(int(k) for k in r.barriers.spawn_step.unique()) if r is not None else [None]
        k = ks[-1] if last else ks[0]
        if last and len(ks) < 2:
            r = k = None  # one spawn step: no later one was measured
        return step_claim(source, statement, r, k, rule, note,
                          when=epochs_text(setups[m], k) if k is not None else "")

    augmented = ("the source's barrier is the main branch's normalized train-loss rise, a maximum "
                 "over α that includes the ends (never negative), on augmented test images; here "
                 "two children's signed test-error barrier")
    short = "this profile trains {} of the source's {} epochs"

    def scale(m: str) -> str:
        s = setups.get(m)
        return short.format(epochs_text(s, s.total_steps), RECIPES[m]["epochs"]) if s else ""

    rows = [
        at("lenet5", False, "Shapira", "LeNet5 on MNIST is stable from initialization "
           "(normalized train-loss barrier ≤ 0.02 at k1 = 0)", "stable",
           f"{augmented}; {scale('lenet5')}"),
        at("lenet5", False, "Frankle et al. 2020", "LeNet on MNIST is stable at initialization",
           "stable", f"their LeNet is an MLP trained ~24k steps; {scale('lenet5')}"),
        at("reduced_vgg", False, "Shapira", "ReducedVGG on CIFAR-10 is unstable from "
           "initialization (test error barrier 0.093 after 29 epochs)", "unstable",
           f"{augmented}; {scale('reduced_vgg')}"),
        at("reduced_vgg", True, "Shapira", "ReducedVGG is stable when spawned after training "
           "starts (≤ 0.016 from epoch 5)", "stable", "the source's k is epoch 5 or later; this "
           f"k is far earlier: whether stability has begun by then; {scale('reduced_vgg')}"),
        at("alexnet", False, "Frankle et al. 2020 (open question here)", "Beyond LeNet on MNIST, "
           "children spawned at initialization are unstable: is AlexNet on Tiny ImageNet?",
           "unstable", "the source's AlexNet curves are not measurements (BatchNorm statistics "
           f"never copied); {scale('alexnet')}"),
        at("alexnet", True, "Frankle et al. 2020 (open question here)", "Stability arrives "
           "early in training: is AlexNet stable when spawned later?", "stable",
           f"Frankle et al. find it at 1–3% of training for CIFAR-10 ResNets; {scale('alexnet')}"),
    ]
    if statistics is not None:
        never = statistics.iloc[1]
        rows.append(Claim("Shapira", "AlexNet's endpoints have test loss ≈ 8.9, worse than "
                          "chance (ln 1000 ≈ 6.9)", "test loss at α=0, statistics never copied",
                          float(never["loss at α=0"]), float(never["its 95% CI"]),
                          f">{never['chance loss']:.3f}",
                          "BatchNorm statistics were neither interpolated nor copied: they stay "
                          "at 0 and 1, so even the trained endpoints are evaluated wrongly; one "
                          "pair, CI over the test images; chance here is ln(classes)",
                          percent=False))
    return rows


DEVIATIONS = deviations_table([
    ("training length", "10 / 29 / 9 epochs (LeNet5 / ReducedVGG / AlexNet), early stopping",
     "the book profile: a fraction of an epoch to two epochs, fixed length",
     "the networks are compared early in training, below the source's accuracy"),
    ("batch size", "1024 / 128 / 64", "the book profile's (see the profiles)",
     "more steps per image on 2 cores; Adam and its learning rate unchanged"),
    ("what is compared", "the main branch at k1 + k2 against one branch (k1, k2)",
     "two children spawned at k (Frankle et al.'s spawn study); the main-branch grid for LeNet5",
     "two children carry the same noise; the grid mixes a trained branch with a fresh one"),
    ("barrier", "normalized train-loss rise, max over α including the ends",
     "signed error barrier over 0 < α < 1, with Frankle's I_E beside it",
     "the source's can never be negative, and rises with the gap between the ends"),
    ("BatchNorm statistics", "neither interpolated nor copied (0 and 1)",
     "interpolated with the weights (and, with bn_reset, recomputed per α)",
     "the source's AlexNet losses, endpoints included, are not measurements"),
    ("test images", "augmented (flip, crop) like the training images",
     "not augmented", "the source's test error is that of transformed images"),
    ("AlexNet", "200 classes resized to 224 × 224, 1,000 outputs",
     "a 20-class subset of Tiny ImageNet at 64 × 64, one output per class",
     "a smaller problem; chance is ln 20, not ln 1000"),
    ("evaluation", "the whole splits, 25 α", "a fixed sample of each split, 11 α",
     "the sample's noise is measured (evaluation noise column)"),
    ("replicates", "one run, no seeds", "independent initializations with four named RNG "
     "streams", "means with 95% CIs; the same bytes on every run"),
])



def summary(c: Config, measured: Mapping[str, Any]) -> dict[str, str]:
    """The numbers the chapter's prose states, per network: accuracy, the barrier at the first
    and last spawn step with their verdicts, the evaluation noise, k*, the length of training."""
    setups, results = measured["setups"], measured["spawn"]
    out = {}
    for m, r in results.items():
        ks = sorted(int(k) for k in r.barriers.spawn_step.unique())
        first, last = at_step(r, ks[0]), at_step(r, ks[-1])
        noise = evaluation_noise(r)
        out |= {f"{m}_test_acc": pct(*accuracy(r), digits=1),
                f"{m}_barrier_k0": pct(*first), f"{m}_verdict_k0": verdict(*first),
                f"{m}_barrier_last": pct(*last), f"{m}_verdict_last": verdict(*last),
                f"{m}_k_last": f"{ks[-1]} ({epochs_text(setups[m], ks[-1])})",
                f"{m}_noise": pct(float(noise.max())),
                f"{m}_length": f"{setups[m].total_steps} steps "
                               f"({epochs_text(setups[m], setups[m].total_steps)})",
                f"{m}_kstar": k_star_text(r.onset("test"))}
    return out


def verdicts_table(setups: Mapping[str, Setup], results: Mapping[str, Results]) -> pd.DataFrame:
    """The chapter's answer, one row per network: its length of training, test accuracy, and at
    the first and the last spawn step the barrier with its verdict; k*."""
    rows = []
    for m, r in results.items():
        s = setups[m]
        ks = sorted(int(k) for k in r.barriers.spawn_step.unique())
        row = {"network": m, "trained": epochs_text(s, s.total_steps),
               "test accuracy": pct(*accuracy(r), digits=1)}
        for label, k in (("first", ks[0]), ("last", ks[-1])):
            b = at_step(r, k)
            row[f"barrier at the {label} k"] = f"{pct(*b)} (k = {k}): {verdict(*b)}"
        row["k*"] = k_star_text(r.onset("test"))
        rows.append(row)
    return pd.DataFrame(rows)


def grid_table(grid: Results) -> pd.DataFrame:
    """The main-branch grid, one row per (k1, k2) and split: replicates, the error barrier and
    I_E (mean ± 95% CI) and the barrier's verdict."""
    s = grid.summary(("spawn_step", "k2", "split", "bn_reset"))
    s = s[~s.get("bn_reset", pd.Series(False, index=s.index)).astype(bool)]
    return pd.DataFrame([{"k1": int(r.spawn_step), "k2": int(r.k2), "split": r.split, "n": r.n,
                          "error barrier": pct(r.error_barrier, r.error_barrier_ci95),
                          "verdict": verdict(r.error_barrier, r.error_barrier_ci95),
                          "I_E (Frankle)": pct(r.instability_error, r.instability_error_ci95)}
                         for r in s.itertuples()])


def accuracy_table(results: Mapping[str, Results]) -> pd.DataFrame:
    """Test accuracy of the children trained the whole length, beside the source's."""
    return pd.DataFrame([{"model": m, "this book": pct(*accuracy(r), digits=1),
                          "Shapira (full recipe)": f"{SOURCE_ACCURACY[m]:.2%}"}
                         for m, r in results.items()])
