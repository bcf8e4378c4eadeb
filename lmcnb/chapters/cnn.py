"""The CNN baselines of Shapira's study as data: each network's dataset and recipe, the `Setup`
of its study, and the study's own way of interpolating BatchNorm networks (for comparison)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from ..book.report import Claim, accuracy, at_step, k_star_text, pct, verdict
from ..core.checks import at_least, batches_or_all
from ..core.ref import Ref
from ..core.steps import step_list
from ..data.tensors import TensorData
from ..data.vision import load_vision, require_vision
from ..experiments.catalog import build
from ..experiments.setup import Setup
from ..experiments.study import Results, children
from ..measure import measure
from ..train.recipe import TrainConfig

# Shapira's table: dataset, batch size, epochs, augmentation, Adam learning rate.
RECIPES = {
    "lenet5": dict(dataset="mnist", batch_size=1024, epochs=10, augment=False, lr=1e-3),
    "reduced_vgg": dict(dataset="cifar10", batch_size=128, epochs=29, augment=True, lr=1e-3),
    "alexnet": dict(dataset="tiny_imagenet", batch_size=64, epochs=9, augment=True, lr=5e-4),
}


# The source's reported test accuracies of its fully trained networks.
SOURCE_ACCURACY = {"lenet5": 0.9818, "reduced_vgg": 0.7136, "alexnet": 0.4064}


def per_model(value: Any, model: str) -> Any:
    """A profile value: one value for every model, or a dict of per-model values."""
    return value.get(model) if isinstance(value, dict) else value


def setup(model: str, p: Any, chapter: str = "cnn_baselines") -> Setup:
    """The study of `model` under resolved chapter parameters `p`, every value checked first.

    With early stopping (`patience` in the model's `train` section) the validation split is a
    tenth of the training split, carved out (`holdout`) so the test split is never looked at.
    """
    recipe = RECIPES[model]
    dataset = recipe["dataset"]
    require_vision(dataset, p.data_dir)
    at_least("n_inits", per_model(p.n_inits, model), 1)
    batches_or_all("eval_iters", per_model(p.eval_iters, model))
    train = TrainConfig(optimizer="adam", lr=recipe["lr"], augment=recipe["augment"],
                        **p.train[model])
    holdout = {"holdout": p.holdout} if train.patience else {}

    def split(name: str) -> Ref:
        return Ref.of("data", "vision", name=dataset, split=name, **holdout)

    n_classes = len(load_vision(dataset, "train", p.data_dir).classes)
    augment = Ref.of("augment", "crop_flip", dataset=dataset) if recipe["augment"] else None
    s = Setup(chapter=chapter, model=model, dataset=dataset,
              net=Ref.of("model", model, num_classes=n_classes), train_data=split("train"),
              test_data=Ref.of("data", "vision", name=dataset, split="test"), train=train,
              runs_dir=p.runs_dir, val_data=split("val") if train.patience else None,
              augment=augment,
              model_args=(("num_classes", n_classes),), device=p.device or "auto",
              data_dir=p.data_dir, seed=p.seed, n_alpha=p.n_alpha,
              eval_iters=per_model(p.eval_iters, model), eval_batch_size=p.eval_batch,
              bn_reset=p.bn_reset, bn_reset_examples=2 * p.eval_batch)
    for key in ("spawn_steps", "k1_steps", "k2_steps"):
        s.steps(step_list(key, per_model(getattr(p, key), model) or []), key)
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
    untrained (the source)."""
    a, b = (kid.weights() for kid in children(setup, 0, 0, n_children)[:2])
    examples = (None if setup.eval_iters == "all"
                else setup.eval_iters * setup.eval_batch_size)
    test = setup.load(setup.test_data)
    test = TensorData(test.x[:examples], test.y[:examples], test.classes)
    ways = {"statistics interpolated (this book)": (a, b),
            "statistics never copied (the source)": (untrained_statistics(setup, a),
                                                     untrained_statistics(setup, b))}
    rows = []
    for way, (sa, sb) in ways.items():
        m = measure(sa, sb, test, model=build(setup.net, setup.data_dir), n_alpha=setup.n_alpha,
                    device=setup.device, progress=False)
        c, r = m.curves, m.barriers.iloc[0]
        rows.append({"way": way, "loss at α=0": c.loss.iloc[0], "loss at α=1": c.loss.iloc[-1],
                     "max loss": c.loss.max(), "error at α=0": c.error.iloc[0],
                     "error at α=1": c.error.iloc[-1], "error barrier": r.error_barrier,
                     "chance loss": math.log(len(test.classes))})
    return pd.DataFrame(rows).set_index("way")


def claims(results: Mapping[str, Results], statistics: pd.DataFrame | None = None) -> list[Claim]:
    """The source's statements (and Frankle et al.'s) against this book's measurements."""
    def first(m: str) -> tuple[float | None, float | None]:
        return at_step(results[m], int(results[m].barriers.spawn_step.min())) if m in results \
            else (None, None)

    def last(m: str) -> tuple[float | None, float | None]:
        return at_step(results[m], int(results[m].barriers.spawn_step.max())) if m in results \
            else (None, None)

    augmented = ("the source also augmented its test images and its barrier (a maximum over α "
                 "that includes the ends) can never be negative")
    rows = [
        Claim("Shapira", "LeNet5 on MNIST is stable from initialization (normalized train-loss "
              "barrier ≤ 0.02 at k1 = 0)", "test I_E at the first k", *first("lenet5"), "stable",
              augmented),
        Claim("Frankle et al. 2020", "LeNet on MNIST is stable at initialization",
              "test I_E at the first k", *first("lenet5"), "stable", "iterative magnitude pruning "
              "setting; 300 vs ~24k steps"),
        Claim("Shapira", "ReducedVGG on CIFAR-10 is unstable from initialization (test error "
              "barrier 0.093 after 29 epochs)", "test I_E at the first k", *first("reduced_vgg"),
              "unstable", augmented + "; this book's profile trains a fraction of 29 epochs"),
        Claim("Shapira", "ReducedVGG is stable when spawned after training starts (≤ 0.016 from "
              "epoch 5)", "test I_E at the last k", *last("reduced_vgg"), "stable",
              "the book's last k is far earlier than epoch 5"),
    ]
    if statistics is not None:
        chance = statistics["chance loss"].iloc[0]
        source = statistics.loc["statistics never copied (the source)", "loss at α=0"]
        rows.append(Claim("Shapira", "AlexNet's endpoints have test loss ≈ 8.9, worse than "
                          "chance (ln 1000 ≈ 6.9)", "loss at α=0 with statistics never copied",
                          float(source), None, f">{chance:.3f}",
                          "BatchNorm statistics were neither interpolated nor copied: they stay "
                          "at 0 and 1, so even the trained endpoints are evaluated wrongly",
                          percent=False))
    return rows


def summary(results: Mapping[str, Results]) -> dict[str, str]:
    """The numbers the chapter's prose states, per model: accuracy, instability at the first
    and last spawn step, its verdict, k*."""
    out = {}
    for m, r in results.items():
        ks = sorted(r.barriers.spawn_step.unique())
        first, last = at_step(r, int(ks[0])), at_step(r, int(ks[-1]))
        out |= {f"{m}_test_acc": pct(*accuracy(r), digits=1),
                f"{m}_instability_k0": pct(*first), f"{m}_verdict_k0": verdict(*first),
                f"{m}_instability_last": f"{pct(*last)} (k = {ks[-1]})",
                f"{m}_kstar": k_star_text(r.onset("test"))}
    return out


def accuracy_table(results: Mapping[str, Results]) -> pd.DataFrame:
    """Test accuracy of the children trained the whole length, beside the source's."""
    return pd.DataFrame([{"model": m, "this book": pct(*accuracy(r), digits=1),
                          "Shapira (full recipe)": f"{SOURCE_ACCURACY[m]:.2%}"}
                         for m, r in results.items()]).set_index("model")
