"""Networks from different initializations as data: the chapter's networks and recipes, the
setups of its studies (its own MLPs and CNNs, the transformers of the GPT and PTB chapters, a
same-parent pair of the CNN chapter), and what it reads off them — the comparison of naive,
aligned and renormalized paths, the variance collapse, layer-wise barriers, the claims.

Every pair is two trunks of one setup, inits 2i and 2i + 1, each with its own init, data-order,
augmentation and dropout seeds (`lmcnb.experiments.study.independent_study`).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..book.params import ChapterConfig, Section, Steps, param
from ..book.report import NAMES, Claim, pct, verdict
from ..core.ref import Ref
from ..core.steps import parse_steps
from ..experiments.catalog import build
from ..experiments.executors import Task, get_executor
from ..experiments.setup import Setup
from ..experiments.study import Results, _eval_data, children, independent_study
from ..experiments.tables import read_table, write_table
from ..lmc.align import aligned_state
from ..lmc.interpolate import alpha_grid, interpolate_state, pair_tables
from ..lmc.layerwise import cumulative_barriers, layerwise_barriers
from ..lmc.metrics import mean_ci
from ..lmc.repair import Repair, channel_stats, repair_layers
from ..train.recipe import TrainConfig
from .common import SOURCE_HELP, DataSource, check_sources, source_of

CHAPTER = "independent_inits"


# -- the parameters ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Recipe(Section):
    """How a network of the chapter trains: the optimizer at its peak learning rate, a linear
    warm-up, then a cosine decay to 0 (or a constant rate)."""

    optimizer: Literal["adam", "sgd"] = param("the optimizer (sgd: momentum 0.9)")
    lr: float = param("peak learning rate", gt=0)
    batch_size: int = param("images per optimizer step", min=1)
    max_steps: Steps = param("length of training (steps, '500it' or '2ep')", min=1)
    warmup: Steps = param("linear warm-up (steps or epochs)", default=0, min=0)
    schedule: Literal["cosine", "constant"] = param("after the warm-up", default="cosine")
    weight_decay: float = param("L2 weight decay", default=0.0, min=0)
    augment: bool = param("random crops and flips (CIFAR-10)", default=False)

    def recipe(self) -> TrainConfig:
        """The `TrainConfig` of this recipe."""
        return TrainConfig(optimizer=self.optimizer, lr=self.lr, batch_size=self.batch_size,
                           max_steps=self.max_steps, warmup_steps=self.warmup,
                           schedule=self.schedule, weight_decay=self.weight_decay,
                           momentum=0.9, augment=self.augment)


@dataclass(frozen=True, kw_only=True)
class MLPSection(Section):
    """The MNIST MLP: the main comparison at one width, and the barrier against width."""

    width: int = param("hidden units per layer of the main comparison", min=1)
    depth: int = param("hidden layers", min=1)
    n_pairs: int = param("independent pairs of the main comparison", min=1)
    widths: list[int] = param("the widths of the barrier-against-width sweep", min=1)
    width_pairs: int = param("pairs per width of the sweep (the main width takes the main "
                             "comparison's pairs)", min=1)
    stat_examples: int = param("training images seen by activation matching and REPAIR", min=1)
    train: Recipe = param("the recipe")


@dataclass(frozen=True, kw_only=True)
class CNNSection(Section):
    """The CIFAR-10 CNN (`lmcnb.models.convnet`) at two width multipliers."""

    width: int = param("the narrower width multiplier", min=1)
    wide: int = param("the wider width multiplier", min=1)
    n_pairs: int = param("independent pairs at the narrower width", min=1)
    wide_pairs: int = param("independent pairs at the wider width", min=1)
    stat_examples: int = param("training images seen by activation matching, REPAIR, the BN "
                               "reset and the activation statistics", min=1)
    train: Recipe = param("the recipe")

    def check(self, path: str) -> None:
        """A wider width that is wider."""
        if self.wide <= self.width:
            raise ValueError(f"{path}.wide ({self.wide}) must be larger than {path}.width "
                             f"({self.width})")


@dataclass(frozen=True, kw_only=True)
class TransformerSection(Section):
    """The GPT chapter's character model and the PTB chapter's transformer, as those chapters
    train them at the same profile (their runs are reused)."""

    gpt_model: Literal["CPUGPT", "TinyGPT"] = param("the GPT chapter's character model")
    n_pairs: int = param("independent pairs of each transformer", min=1)
    stat_tokens: int = param("training tokens seen by activation matching and REPAIR", min=1)


@dataclass(frozen=True, kw_only=True)
class Config(ChapterConfig):
    """The independent-initialization chapter's parameters."""

    mlp: MLPSection = param("the MNIST MLP")
    cnn: CNNSection = param("the CIFAR-10 CNN")
    transformers: TransformerSection = param("the two transformers")
    same_parent: Literal["reduced_vgg", "alexnet"] = param(
        "the CNN chapter's network whose children spawned at k = 0 are the same-parent pair")
    n_alpha: int = param("points on the α grid, both ends included (odd: α = ½ is on it)", min=3)
    eval_iters: int | Literal["all"] = param("'all', or evaluation batches per split (images)",
                                             min=1)
    eval_batch: int = param("images per evaluation batch", min=1)
    seed: int = param("the base seed of every stream", min=0)
    data_source: DataSource = param(SOURCE_HELP, default="default", keys=("mnist", "cifar10"))

    def check(self, path: str) -> None:
        """An α grid with α = ½ on it."""
        super().check(path)
        if self.n_alpha % 2 == 0:
            raise ValueError(f"n_alpha must be odd, so that α = ½ is on the grid (got "
                             f"{self.n_alpha})")


MLP_TRAIN = dict(optimizer="adam", lr=1e-3, batch_size=128, warmup=0, schedule="constant")
CNN_TRAIN = dict(optimizer="sgd", lr=0.05, batch_size=128, warmup=50, weight_decay=5e-4,
                 augment=True)
PROFILES = {
    "paper": dict(mlp=dict(width=512, depth=3, n_pairs=10, widths=[64, 128, 256, 512, 1024, 2048],
                           width_pairs=5, stat_examples=10000,
                           train=dict(MLP_TRAIN, batch_size=500, max_steps="100ep")),
                  cnn=dict(width=2, wide=16, n_pairs=10, wide_pairs=5, stat_examples=5000,
                           train=dict(CNN_TRAIN, lr=0.08, batch_size=500, warmup="5ep",
                                      max_steps="100ep")),
                  transformers=dict(gpt_model="CPUGPT", n_pairs=5, stat_tokens=65536),
                  same_parent="reduced_vgg", n_alpha=25, eval_iters="all", eval_batch=1000,
                  seed=0),
    "book": dict(mlp=dict(width=512, depth=3, n_pairs=5, widths=[16, 32, 64, 128, 256, 512],
                          width_pairs=3, stat_examples=5000, train=dict(MLP_TRAIN,
                                                                        max_steps="2ep")),
                 cnn=dict(width=1, wide=2, n_pairs=5, wide_pairs=3, stat_examples=250,
                          train=dict(CNN_TRAIN, max_steps=195)),  # half an epoch
                 transformers=dict(gpt_model="CPUGPT", n_pairs=3, stat_tokens=8192),
                 same_parent="reduced_vgg", n_alpha=9, eval_iters=2, eval_batch=500, seed=0),
    "smoke": dict(mlp=dict(width=32, depth=3, n_pairs=1, widths=[16, 32], width_pairs=1,
                           stat_examples=100, train=dict(MLP_TRAIN, max_steps=10)),
                  cnn=dict(width=1, wide=2, n_pairs=1, wide_pairs=1, stat_examples=50,
                           train=dict(CNN_TRAIN, batch_size=16, warmup=2, max_steps=6)),
                  transformers=dict(gpt_model="CPUGPT", n_pairs=1, stat_tokens=512),
                  same_parent="reduced_vgg", n_alpha=3, eval_iters=1, eval_batch=100, seed=0),
}
Config.profiles = PROFILES


# -- setups --------------------------------------------------------------------------------------
def setups(c: Config) -> dict[str, Setup]:
    """Every study's setup, every value checked against the data first (nothing trains): "mlp"
    (the main comparison), "mlp_<width>" (the other widths of the sweep), "cnn" and "cnn_wide",
    "gpt" and "ptb" (the GPT and PTB chapters' setups at this profile), "same_parent" (the CNN
    chapter's)."""
    check_sources(c.data_source, ("mnist", "cifar10"), c.data_dir)
    out = {"mlp": _mlp_setup(c, c.mlp.width)}
    out |= {f"mlp_{w}": _mlp_setup(c, w) for w in c.mlp.widths if w != c.mlp.width}
    out |= {"cnn": _cnn_setup(c, c.cnn.width), "cnn_wide": _cnn_setup(c, c.cnn.wide)}
    out |= _transformer_setups(c)
    out["same_parent"] = same_parent_setup(c)
    return out


def _vision_setup(c: Config, section: str, model: str, dataset: str, net: dict[str, Any]) -> Setup:
    """A setup of this chapter for an image network of `section` ("mlp" or "cnn"; `net`: its
    registry name and arguments)."""
    from ..data.vision import require_vision

    src = source_of(c.data_source, dataset)
    if not src:
        require_vision(dataset, c.data_dir)

    def split(name: str) -> Ref:
        return Ref.of("data", "vision", name=dataset, split=name, **src)

    n_classes = len(build(split("train"), c.data_dir).classes)
    args = {**net, "num_classes": n_classes}
    recipe = getattr(c, section).train
    train = recipe.recipe()
    s = Setup(chapter=CHAPTER, model=model, dataset=dataset,
              net=Ref.of("model", args.pop("name"), **args), train_data=split("train"),
              test_data=split("test"), train=train, runs_dir=c.runs_dir,
              augment=(Ref.of("augment", "crop_flip", dataset=dataset) if train.augment
                       else None),
              model_args=tuple(sorted(args.items())), device=c.device or "auto",
              data_dir=c.data_dir, seed=c.seed, n_alpha=c.n_alpha, eval_iters=c.eval_iters,
              eval_batch_size=c.eval_batch,
              bn_reset_examples=getattr(c, section).stat_examples)
    warmup = parse_steps(recipe.warmup, s.steps_per_epoch)
    if warmup > s.total_steps:
        raise ValueError(f"{section}.train.warmup ({recipe.warmup!r} = {warmup} steps) is longer "
                         f"than training ({s.total_steps} steps = {recipe.max_steps!r})")
    return s


def _mlp_setup(c: Config, width: int) -> Setup:
    hidden = (width,) * c.mlp.depth
    return _vision_setup(c, "mlp", f"mlp_{c.mlp.depth}x{width}", "mnist",
                         {"name": "mlp", "hidden": hidden})


def _cnn_setup(c: Config, width: int) -> Setup:
    return _vision_setup(c, "cnn", f"convnet_{width}x", "cifar10",
                         {"name": "convnet", "width": width})


def _chapter_config(module: Any, c: Config, **given: Any) -> ChapterConfig:
    """Another chapter's config at this profile, on this machine's folders and device."""
    return module.Config.resolve(c.profile, data_dir=c.data_dir, runs_dir=c.runs_dir,
                                 device=c.device, executor=c.executor, **given)


def _transformer_setups(c: Config) -> dict[str, Setup]:
    """The GPT chapter's character model and the PTB chapter's transformer as those chapters set
    them up (so their trunks are the same runs), evaluated on this chapter's α grid, with
    `stat_tokens` training tokens for activation matching and REPAIR."""
    from . import gpt, ptb

    model = c.transformers.gpt_model
    found = {"gpt": gpt.setups(_chapter_config(gpt, c, model=[model]))[model],
             "ptb": ptb.setups(_chapter_config(ptb, c))["transformer_lm"]}
    out = {}
    for name, s in found.items():
        tokens = s.load(s.train_data).x[0].numel()  # per example
        examples = max(s.eval_batch_size, c.transformers.stat_tokens // tokens)
        out[name] = dataclasses.replace(s, chapter=CHAPTER, n_alpha=c.n_alpha,
                                        bn_reset_examples=examples)
    return out


def same_parent_setup(c: Config) -> Setup:
    """The CNN chapter's setup of `c.same_parent` at this profile (its runs are reused; what
    this chapter computes from them is filed under this chapter)."""
    from . import cnn

    s = cnn.setups(_chapter_config(cnn, c, model=c.same_parent))[c.same_parent]
    return dataclasses.replace(s, chapter=CHAPTER)


# -- the studies ---------------------------------------------------------------------------------
def cnn_studies(setup: Setup, n_pairs: int, aligns: Sequence[str], executor: Any = "serial",
                reset: bool = True) -> list[Results]:
    """The CNN's pairs along every path of `aligns`: with the BatchNorm statistics interpolated
    with the weights (and, if `reset`, also recomputed on training images), and with REPAIR; two
    studies of the same trunks (trained by the first)."""
    plain = independent_study(dataclasses.replace(setup, bn_reset=reset), n_pairs, aligns,
                              (False,), executor)
    return [plain, independent_study(setup, n_pairs, aligns, (True,), executor)]


def norm_layers(model: nn.Module) -> list[str]:
    """A transformer's LayerNorms, in the order of the forward pass: where REPAIR rescales it
    (each LayerNorm's output channels, folded into its affine weight and bias)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)]


def layernorm_repair_study(setup: Setup, n_pairs: int, aligns: Sequence[str],
                           executor: Any = "serial") -> Results:
    """The transformer pairs of `independent_study` (trained there first) along the paths of
    `aligns` with REPAIR at every LayerNorm (`norm_layers`), each pair a task on `executor`;
    cached in the setup's study folder like a study's tables."""
    folder = setup.folder("independent-layernorm-repair",
                          {"n_pairs": n_pairs, "aligns": list(aligns)})
    curves, barriers = (read_table(folder / f"{t}.csv") for t in ("curves", "barriers"))
    if curves is None or barriers is None:
        keys = [f"repair-{folder.name}-{pair}-{how}" for pair in range(n_pairs) for how in aligns]
        tasks = [Task(key, _layernorm_repair_pair, (setup, pair, how))
                 for key, (pair, how) in zip(keys, [(p, h) for p in range(n_pairs)
                                                    for h in aligns])]
        parts = get_executor(executor).run(tasks, keys)
        curves = pd.concat([c for c, _ in parts], ignore_index=True)
        barriers = pd.concat([b for _, b in parts], ignore_index=True)
        write_table(folder / "curves.csv", curves)
        write_table(folder / "barriers.csv", barriers)
    return Results(curves, barriers, folder, setup.threshold)


def _layernorm_repair_pair(setup: Setup, pair: int, how: str) -> tuple[pd.DataFrame,
                                                                       pd.DataFrame]:
    """One pair's curves and barriers with B aligned by `how` and REPAIR at every LayerNorm,
    on the samples the setup's studies evaluate (`pair`, `align`, `repair` leading columns)."""
    ev = _eval_data(setup)  # the studies' own samples, and their scratch model
    model = ev["model"]
    a, b = pair_states(setup, pair, how)
    repair = Repair(model, a, b, ev["bn"], layers=norm_layers(model),
                    batch_size=setup.eval_batch_size)
    curves, barriers = pair_tables(model, a, b, ev["splits"], alpha_grid(setup.n_alpha),
                                   batch_size=setup.eval_batch_size, bn_reset_data=None,
                                   language_model=setup.language_model,
                                   threshold=setup.threshold, renormalize=repair.apply,
                                   progress=False)
    lead = {"chapter": setup.chapter, "model": setup.model, "dataset": setup.dataset,
            "pair": pair, "align": how, "repair": True}
    for df in (curves, barriers):
        for i, (col, val) in enumerate(lead.items()):
            df.insert(i, col, val)
    return curves, barriers


def pair_states(setup: Setup, pair: int,
                how: str = "none") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """θ_A and θ_B of independent pair `pair` (trunks 2·pair and 2·pair + 1, trained), B's units
    matched to A's by `how` exactly as the studies match them (same sample, same seed)."""
    a, b = (setup.trunk(2 * pair + i).ensure_weights() for i in (0, 1))
    ev = _eval_data(setup)
    return a, aligned_state(ev["model"], a, b, how, ev["bn"], setup.seed)


def variance_collapse(setup: Setup, n_pairs: int,
                      aligns: Sequence[str] = ("none", "weights")) -> pd.DataFrame:
    """Jordan et al.'s variance collapse: per pair, path and REPAIR layer (`repair_layers`, in
    forward order), the std of the midpoint θ(½)'s channels relative to the ends',
    σ_½ / ½(σ_A + σ_B), averaged over the channels (1: no collapse), on the studies' sample of
    training images; BatchNorm statistics interpolated with the weights."""
    ev = _eval_data(setup)
    model, data = ev["model"], ev["bn"]
    layers = repair_layers(model)
    rows = []
    for pair in range(n_pairs):
        for how in aligns:
            a, b = pair_states(setup, pair, how)
            stats = {}
            for end, state in (("A", a), ("B", b), ("½", interpolate_state(a, b, 0.5))):
                model.load_state_dict(state)
                stats[end] = channel_stats(model, data, layers, setup.eval_batch_size)
            for i, layer in enumerate(layers):
                ends = (stats["A"][layer].std + stats["B"][layer].std) / 2
                ratio = stats["½"][layer].std[ends > 0] / ends[ends > 0]
                rows.append({"pair": pair, "align": how, "layer": layer, "position": i,
                             "std_ratio": float(ratio.mean())})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Pair:
    """A pair of trained networks of `setup`, as plain data: independent pair `index` (trunks
    2·index and 2·index + 1, B matched to A by `align`), or the first two children of trunk
    `index` spawned at k = 0 (`children`, as the CNN chapter's spawn study makes them)."""

    setup: Setup
    index: int = 0
    align: str = "none"
    children: bool = False

    @property
    def label(self) -> str:
        """How tables and figures name the pair."""
        if self.children:
            return f"{self.setup.model}, same parent (trunk {self.index}, k = 0)"
        return f"{self.setup.model}, independent pair {self.index}, {ALIGN_NAMES[self.align]}"

    def states(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """θ_A and θ_B (trained already: `NotTrained` otherwise)."""
        if self.children:
            a, b = (kid.weights() for kid in children(self.setup, self.index, 0, 2))
            return a, b
        return pair_states(self.setup, self.index, self.align)


def layer_pairs(c: Config, setups: Mapping[str, Setup]) -> list[Pair]:
    """The pairs whose layers the chapter examines: every weight-matched pair of the narrower
    CNN (the replicates of the claim), its first pair naive, the same-parent pair of the CNN
    chapter, and the GPT model's first pair weight-matched."""
    cnn, gpt = setups["cnn"], setups["gpt"]
    return [*(Pair(cnn, i, "weights") for i in range(c.cnn.n_pairs)), Pair(cnn),
            Pair(setups["same_parent"], children=True), Pair(gpt, align="weights")]


def layerwise_study(pairs: Sequence[Pair], executor: Any = "serial",
                    split: str = "test") -> dict[Pair, tuple[pd.DataFrame, pd.DataFrame]]:
    """Adilova et al.'s layer-wise barriers of every pair (one task each on `executor`): each
    layer averaged alone at α = ½, the rest held at A and at B, and the layers averaged
    cumulatively from the input end (`lmcnb.lmc.layerwise`), on the studies' `split` sample;
    cached in the setup's study folder. Returns pair → (single, cumulative)."""
    keys = [f"layerwise-{pair.setup.model}-{pair.index}-{pair.align}-{pair.children}"
            for pair in pairs]
    tasks = [Task(key, _layerwise_task, (pair, split)) for key, pair in zip(keys, pairs)]
    return dict(zip(pairs, get_executor(executor).run(tasks, keys)))


def _layerwise_task(pair: Pair, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    folder = pair.setup.folder("layerwise", {"index": pair.index, "align": pair.align,
                                             "children": pair.children, "split": split})
    found = [read_table(folder / f"{t}.csv") for t in ("single", "cumulative")]
    if all(t is not None for t in found):
        return found[0], found[1]
    ev = _eval_data(pair.setup)
    a, b = pair.states()
    data, bs = {split: ev["splits"][split]}, pair.setup.eval_batch_size
    single = layerwise_barriers(ev["model"], a, b, data, batch_size=bs)
    cumulative = cumulative_barriers(ev["model"], a, b, data, batch_size=bs)
    write_table(folder / "single.csv", single)
    write_table(folder / "cumulative.csv", cumulative)
    return single, cumulative


def slider(setup: Setup, results: Results, pair: int = 0, how: str = "none",
           title: str = "", device: str = "cpu"):
    """The α-slider of independent pair `pair` along the path of `how` (without REPAIR): the
    study's curves, and 16 test images with θ(α)'s predictions."""
    from ..book.views import image_predictions_view
    from ..book.widgets import alpha_slider
    from ..data.vision import MEAN, STD

    view = image_predictions_view(setup.load(setup.test_data), n=16,
                                  mean=MEAN.get(setup.dataset), std=STD.get(setup.dataset))
    a, b = pair_states(setup, pair, how)
    c = results.curves
    curve = c[(c.pair == pair) & (c["align"] == how) & ~c.repair.astype(bool)]
    with torch.random.fork_rng():
        model = build(setup.net, setup.data_dir).to(device)
    return alpha_slider(curve, model, a, b, view, title=title)


# -- what the chapter shows ----------------------------------------------------------------------
ALIGN_NAMES = {"none": "naive", "weights": "weight matching", "activations": "activation matching"}
RENORMS = ("none", "BN reset", "REPAIR")  # what is done to θ(α) before it is evaluated


def path_name(align: str, renorm: str = "none") -> str:
    """A path as the tables name it: "weight matching + REPAIR"."""
    return ALIGN_NAMES[align] + ("" if renorm == "none" else f" + {renorm}")


def labelled(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Rows of one setup's studies (curves or barriers) in one frame, each with its `renorm`
    (none, BN reset, REPAIR) and its `path` (`path_name`), in the order of `ALIGN_NAMES` and
    `RENORMS`."""
    t = pd.concat(tables, ignore_index=True)
    reset = t.bn_reset.astype(bool) if "bn_reset" in t else pd.Series(False, index=t.index)
    renorm = pd.Series("none", index=t.index).mask(reset, "BN reset").mask(
        t.repair.astype(bool), "REPAIR")
    t = t.assign(renorm=renorm, path=[path_name(a, r) for a, r in zip(t["align"], renorm)])
    order = {path_name(a, r): i for i, (a, r) in enumerate(
        (a, r) for a in ALIGN_NAMES for r in RENORMS)}
    return t.sort_values("path", key=lambda s: s.map(order), kind="stable", ignore_index=True)


def barriers_of(results: Results | Sequence[Results]) -> pd.DataFrame:
    """The barrier rows of one setup's studies, `labelled`."""
    parts = [results] if isinstance(results, Results) else results
    return labelled([r.barriers for r in parts])


def curves_of(results: Results | Sequence[Results]) -> pd.DataFrame:
    """The curve rows of one setup's studies, `labelled`."""
    parts = [results] if isinstance(results, Results) else results
    return labelled([r.curves for r in parts])


def _ci(values: pd.Series) -> tuple[float, float]:
    return mean_ci(values.astype(float))


def _num(values: pd.Series, digits: int = 3) -> str:
    m, ci = _ci(values)
    return f"{m:.{digits}f}" + ("" if math.isnan(ci) else f" ± {ci:.{digits}f}")


def midpoint_error(b: pd.DataFrame) -> pd.Series:
    """The error at α = ½ of each pair: its midpoint barrier plus the mean error of its ends."""
    return b.midpoint_error + (b.error_a + b.error_b) / 2


def comparison_table(barriers: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per path (mean ± 95% CI over pairs): the barrier and its verdict first — the error
    barrier for a classifier, the relative perplexity barrier for a language model — then the
    loss barrier, the error at α = ½ and of the ends (and R, the next-token error barrier for a
    language model)."""
    b = barriers[barriers.split == split]
    lm = "relative_ppl_barrier" in b
    rows = []
    for path, g in b.groupby("path", sort=False):
        first = "relative_ppl_barrier" if lm else "error_barrier"
        row = {"path": path, "n": len(g), NAMES[first]: pct(*_ci(g[first])),
               "verdict": verdict(*_ci(g[first]))}
        if lm:
            row |= {"R": pct(*_ci(g.relative_ppl_instability)),
                    "next-token error barrier": pct(*_ci(g.error_barrier))}
        row |= {"loss barrier (nats)": _num(g.loss_barrier),
                f"{split} error at α = ½": pct(*_ci(midpoint_error(g))),
                f"{split} error of the ends": pct(*_ci((g.error_a + g.error_b) / 2))}
        rows.append(row)
    return pd.DataFrame(rows)


def plot_paths(curves: pd.DataFrame, split: str = "test", title: str = ""):
    """Loss and error along α per path (mean ± 95% CI over pairs): colour by alignment, line
    style by renormalization (solid none, dashed REPAIR, dotted BN reset)."""
    import matplotlib.pyplot as plt

    from ..book.plots import COLUMN_PX, DPI

    style = {"none": "-", "REPAIR": "--", "BN reset": ":"}
    colour = {a: f"C{i}" for i, a in enumerate(ALIGN_NAMES)}
    c = curves[curves.split == split]
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_PX / DPI, 4.0), dpi=DPI,
                             constrained_layout=True)
    for ax, metric in zip(axes, ("loss", "error")):
        for (path, align, renorm), g in c.groupby(["path", "align", "renorm"], sort=False):
            stats = [(a, *_ci(v[metric])) for a, v in g.groupby("alpha")]
            a, mean, half = (np.array(v) for v in zip(*stats))
            ax.plot(a, mean, style[renorm], color=colour[align], label=path)
            if np.isfinite(half).any():
                low = mean - half if metric == "loss" else np.clip(mean - half, 0, 1)
                high = mean + half if metric == "loss" else np.clip(mean + half, 0, 1)
                ax.fill_between(a, low, high, color=colour[align], alpha=0.12)
        ax.set_xlabel("α")
        ax.set_ylabel(f"{split} {metric}")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3,
               fontsize=7, frameon=False)
    fig.suptitle(title)
    return fig


def width_frame(by_width: Mapping[int, pd.DataFrame], split: str = "test") -> pd.DataFrame:
    """The naive and weight-matched rows (without renormalization) of `barriers_of` frames per
    width, with a `width` column."""
    parts = [b[(b.split == split) & (b.renorm == "none") & b["align"].isin(["none", "weights"])]
             .assign(width=w) for w, b in by_width.items()]
    return pd.concat(parts, ignore_index=True).sort_values("width", kind="stable")


def width_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per width: pairs, and the error and loss barriers of the naive and the weight-matched
    path (mean ± 95% CI)."""
    rows = []
    for w, g in frame.groupby("width", sort=True):
        naive, matched = g[g["align"] == "none"], g[g["align"] == "weights"]
        rows.append({"width": int(w), "n": len(naive),
                     "naive error barrier": pct(*_ci(naive.error_barrier)),
                     "matched error barrier": pct(*_ci(matched.error_barrier)),
                     "naive loss barrier": _num(naive.loss_barrier),
                     "matched loss barrier": _num(matched.loss_barrier)})
    return pd.DataFrame(rows)


def plot_width(frame: pd.DataFrame, title: str = ""):
    """Error and loss barrier against width (log axis), naive and weight-matched, mean ± 95% CI
    over pairs."""
    import matplotlib.pyplot as plt

    from ..book.plots import COLUMN_PX, DPI

    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_PX / DPI, 3.0), dpi=DPI,
                             constrained_layout=True)
    for ax, metric in zip(axes, ("error_barrier", "loss_barrier")):
        for align in ("none", "weights"):
            g = frame[frame["align"] == align]
            stats = [(w, *_ci(v[metric])) for w, v in g.groupby("width")]
            w, mean, half = (np.array(v) for v in zip(*stats))
            ax.errorbar(w, mean, yerr=np.nan_to_num(half), fmt="o-", capsize=3,
                        label=ALIGN_NAMES[align])
        ax.axhline(0, color="gray", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("hidden units per layer")
        ax.set_ylabel(NAMES[metric])
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return fig


def plot_collapse(tables: Mapping[str, pd.DataFrame], title: str = ""):
    """The midpoint's activation std relative to the ends' per layer (mean ± 95% CI over pairs),
    naive and aligned, one panel per network."""
    import matplotlib.pyplot as plt

    from ..book.plots import COLUMN_PX, DPI

    fig, axes = plt.subplots(1, len(tables), figsize=(COLUMN_PX / DPI, 3.0), dpi=DPI,
                             constrained_layout=True, sharey=True, squeeze=False)
    for ax, (name, t) in zip(axes[0], tables.items()):
        for align, g in t.groupby("align", sort=False):
            stats = [(p, *_ci(v.std_ratio)) for p, v in g.groupby("position")]
            x, mean, half = (np.array(v) for v in zip(*stats))
            ax.errorbar(x + 1, mean, yerr=np.nan_to_num(half), fmt="o-", capsize=3,
                        label=ALIGN_NAMES[align])
        ax.axhline(1, color="gray", lw=0.8)
        ax.set_xticks(range(1, t.position.max() + 2))
        ax.set_xlabel("BatchNorm layer (input end first)")
        ax.set_title(name, fontsize=9)
    axes[0][0].set_ylabel("σ at α = ½ / mean σ of the ends")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return fig


def collapse_table(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Per network and path: the std ratio at the first and the last REPAIR layer (mean ± 95%
    CI over pairs)."""
    rows = []
    for name, t in tables.items():
        for align, g in t.groupby("align", sort=False):
            first, last = g[g.position == 0], g[g.position == g.position.max()]
            rows.append({"network": name, "path": ALIGN_NAMES[align], "n": len(first),
                         "first layer": _num(first.std_ratio, 2),
                         "last layer": _num(last.std_ratio, 2)})
    return pd.DataFrame(rows)


def layer_rows(single: pd.DataFrame, cumulative: pd.DataFrame,
               split: str = "test") -> dict[str, float]:
    """One pair's layer-wise numbers: the whole-model midpoint loss and error barrier, the
    largest barrier of one layer averaged alone (over layers and both bases) and its layer, and
    the number of layers, added from the input end, that first reach half the whole model's
    loss barrier (nan if none does, or if the whole model has none)."""
    s, c = single[single.split == split], cumulative[cumulative.split == split]
    whole, one = s[s.layer == "all"], s[s.layer != "all"]
    steps = c.groupby("step").loss_barrier.mean()
    half = steps[steps >= whole.loss_barrier.mean() / 2] if whole.loss_barrier.mean() > 0 else []
    return {"whole_loss": float(whole.loss_barrier.mean()),
            "whole_error": float(whole.error_barrier.mean()),
            "one_loss": float(one.loss_barrier.max()),
            "one_loss_layer": str(one.loc[one.loss_barrier.idxmax()].layer),
            "one_error": float(one.error_barrier.max()),
            "to_half": float(half.index[0]) if len(half) else math.nan,
            "layers": len(steps)}


def layer_summary(tables: Mapping[Pair, tuple[pd.DataFrame, pd.DataFrame]],
                  split: str = "test") -> pd.DataFrame:
    """Per pair (`layer_rows`): the whole model's barriers beside the largest one-layer ones."""
    rows = []
    for pair, (single, cumulative) in tables.items():
        r = layer_rows(single, cumulative, split)
        rows.append({"pair": pair.label, "whole model: loss barrier": f"{r['whole_loss']:.3f}",
                     "error barrier": f"{r['whole_error']:.1%}",
                     "largest one-layer loss barrier":
                         f"{r['one_loss']:.3f} ({r['one_loss_layer']})",
                     "largest one-layer error barrier": f"{r['one_error']:.1%}",
                     "layers from the input end to half the loss barrier":
                         "—" if math.isnan(r["to_half"])
                         else f"{int(r['to_half'])} of {r['layers']}"})
    return pd.DataFrame(rows)


def describe(setups: Mapping[str, Setup]) -> pd.DataFrame:
    """One row per network the chapter trains: its dataset, parameters, recipe and length."""
    rows = []
    for key, s in setups.items():
        with torch.device("meta"):
            n = sum(p.numel() for p in build(s.net, s.data_dir).parameters())
        t = s.train
        rows.append({"setup": key, "network": s.model, "dataset": s.dataset,
                     "parameters": f"{n:,}", "optimizer": f"{t.optimizer}, lr {t.lr:g}",
                     "batch": t.batch_size,
                     "steps": f"{s.total_steps:,} ({s.total_steps / s.steps_per_epoch:.2g} ep)"})
    return pd.DataFrame(rows)


def _length(steps: Any) -> str:
    """A step count as the prose says it: "2 epochs", "500 steps"."""
    text = str(steps)
    if text.endswith("ep"):
        n = float(text[:-2])
        return f"{n:g} epoch{'s' * (n != 1)}"
    return f"{int(str(steps).removesuffix('it'))} steps"


def deviations(c: Config) -> pd.DataFrame:
    """What this profile does differently from the sources, and what that does to the numbers."""
    m, k = c.mlp, c.cnn
    batch = c.eval_batch if c.eval_iters == "all" else c.eval_iters * c.eval_batch
    rows = [
        ("the MLP (Ainsworth et al.)", "3 × 512 on MNIST, 100 epochs, batch 500 (as recalled, not "
         "checked in their code)", f"{m.depth} × {m.width}, {_length(m.train.max_steps)}, batch "
         f"{m.train.batch_size}, Adam at {m.train.lr:g}", "less trained: the pilot's naive "
         "barrier grows with training, so the sources' is larger"),
        ("the CNN (Jordan et al.)", "VGG11 and ResNet-18/20 at widths 1×–8×, 100+ epochs",
         f"a 6-convolution BatchNorm CNN at {k.width}× and {k.wide}× (8, 16, 32 channels at 1×), "
         f"{_length(k.train.max_steps)}", "ends near 50–60% accuracy instead of 92%: the "
         "barriers of a weaker network"),
        ("statistics for activation matching and REPAIR", "the augmented training loader",
         f"{m.stat_examples:,} (MLP) and {k.stat_examples:,} (CNN) unaugmented training images",
         "noisier correlations and statistics; fewer images per unit for the MLP's wide layers"),
        ("evaluation", "the whole test set", f"a fixed sample of {batch:,} images (and as many "
         "training images) per pair, the same at every α", "each barrier carries a sampling "
         "error, smaller than the spread between pairs"),
        ("α grid", "25 points (REPAIR) or more", f"{c.n_alpha} points, α = ½ among them",
         "a peak between grid points is missed"),
        ("REPAIR for transformers", "not tested by the sources (Theus et al. use orthogonal "
         "and invertible maps instead)", "REPAIR at every LayerNorm's output channels",
         "a renormalization of this book's choosing"),
        ("the PTB transformer's alignment", "GPT-2 and ViTs with learned positions (Theus et al.)",
         "heads and feed-forward units only: the sinusoidal positions pin the residual stream",
         "less of the symmetry can be removed"),
        ("layer-wise barriers (Adilova et al.)", "every checkpoint of training, train and test",
         "the final states, test split", "no view of when in training a barrier appears"),
    ]
    return pd.DataFrame(rows, columns=["what", "the sources", "this profile", "what it does"])


def width_sweep(c: Config, setups: Mapping[str, Setup], main: pd.DataFrame,
                executor: Any = "serial") -> pd.DataFrame:
    """`width_frame` of the MLP at every width of `c.mlp.widths`: `width_pairs` pairs compared
    naive and weight-matched; the main width takes the main comparison's rows (`main`)."""
    by_width = {w: main if w == c.mlp.width else barriers_of(independent_study(
        setups[f"mlp_{w}"], c.mlp.width_pairs, ("none", "weights"), (False,), executor))
        for w in c.mlp.widths}
    return width_frame(by_width)


# Test accuracy at α = ½ from REPAIR's saved figure data (Jordan et al. 2023), as percentages;
# "aligned" is REPAIR's permutation (activation matching).
PUBLISHED = (
    ("MNIST MLP, 12 hidden layers × 512, no normalization", "99.1% / 99.0%", 9.7, 82.4, 98.0),
    ("CIFAR-10 MLP, 512 hidden units", "57.3%", 10.2, 35.0, 52.9),
    ("VGG11 on CIFAR-10", "92.2%", 10.0, 61.3, 88.2),
    ("ResNet18 on CIFAR-10", "95.6%", 10.0, 66.0, 94.1),
)


def beside_published(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Test accuracy of the ends and at α = ½ (naive, activation-matched, and with REPAIR):
    Jordan et al.'s numbers, then this page's (mean ± 95% CI over pairs) for each
    `barriers_of` frame."""
    columns = ("setting", "ends", "naive", "aligned", "aligned + REPAIR")
    rows = [dict(zip(columns, (name, ends, *(f"{v:.1f}%" for v in at))),
                 source="Jordan et al.") for name, ends, *at in PUBLISHED]
    for name, b in frames.items():
        t = b[b.split == "test"]

        def at_half(path: str, t: pd.DataFrame = t) -> str:
            g = t[t.path == path]
            return pct(*_ci(1 - midpoint_error(g)), digits=1) if len(g) else "not measured"

        ends = t[t.path == "naive"]
        rows.append({"setting": name, "ends": pct(*_ci(1 - (ends.error_a + ends.error_b) / 2),
                                                  digits=1),
                     "naive": at_half("naive"), "aligned": at_half("activation matching"),
                     "aligned + REPAIR": at_half("activation matching + REPAIR"),
                     "source": "this page"})
    return pd.DataFrame(rows)[["source", *columns]]


# -- claims and the numbers of the prose ---------------------------------------------------------
def _test(b: pd.DataFrame, path: str) -> pd.DataFrame:
    return b[(b.split == "test") & (b.path == path)].sort_values("pair")


def _barrier(b: pd.DataFrame) -> str:
    return "relative_ppl_barrier" if "relative_ppl_barrier" in b else "error_barrier"


def _stat(b: pd.DataFrame, path: str, column: str | None = None) -> tuple[float, float, int]:
    """Mean, 95% CI and n over pairs of `column` (default: the barrier) on the test split."""
    g = _test(b, path)
    return (*_ci(g[column or _barrier(b)]), len(g))


def _welch(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """mean(a) − mean(b) and the half-width of its 95% Welch interval (nan below 2 each)."""
    from scipy import stats

    diff = float(a.mean() - b.mean())
    if min(len(a), len(b)) < 2:
        return diff, math.nan
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return diff, float(high - low) / 2


def repair_share(b: pd.DataFrame, align: str = "activations") -> pd.Series:
    """Per pair, the share of the aligned path's error barrier that REPAIR removes:
    (B_aligned − B_aligned+REPAIR) / B_aligned, on the test split."""
    plain = _test(b, path_name(align)).set_index("pair").error_barrier
    fixed = _test(b, path_name(align, "REPAIR")).set_index("pair").error_barrier
    return ((plain - fixed) / plain).dropna()


def claims(c: Config, measured: Mapping[str, Any]) -> list[Claim]:
    """The sources' statements against this chapter's measurements. `measured`: the `barriers_of`
    frames of "mlp", "cnn" (per setup key), "lm" (per setup key) and the width sweep
    ("widths", `width_frame`); the `variance_collapse` tables ("collapse", per model); the
    `layerwise_study` tables ("layers")."""
    mlp, cnn, lm, widths = (measured[k] for k in ("mlp", "cnn", "lm", "widths"))
    narrow, wide = cnn["cnn"], cnn["cnn_wide"]
    short = f"{_length(c.mlp.train.max_steps)} of training (the sources: 100)"
    cnn_scale = (f"a {c.cnn.width}× BatchNorm CNN of 6 convolutions trained "
                 f"{_length(c.cnn.train.max_steps)}, not VGG11 or a ResNet trained 100+ epochs")
    rows = [
        Claim("Entezari et al.", "Networks trained from different initializations are not "
              "linearly connected", "MLP, naive test error barrier", *_stat(mlp, "naive")[:2],
              "unstable", short, n=_stat(mlp, "naive")[2]),
        Claim("Entezari et al.", "Networks trained from different initializations are not "
              "linearly connected", "CNN, naive test error barrier",
              *_stat(narrow, "naive")[:2], "unstable", cnn_scale, n=_stat(narrow, "naive")[2]),
        Claim("Entezari et al.", "With the right permutation of hidden units the barrier "
              "(most likely) vanishes", "MLP, weight-matched test error barrier",
              *_stat(mlp, "weight matching")[:2], "stable", short,
              n=_stat(mlp, "weight matching")[2]),
        Claim("Entezari et al.", "With the right permutation of hidden units the barrier "
              "(most likely) vanishes", "CNN, activation-matched test error barrier, BatchNorm "
              "statistics reset", *_stat(narrow, "activation matching + BN reset")[:2],
              "stable", cnn_scale + "; the best permutation is not known, a matching is "
              "a lower bound on what it achieves",
              n=_stat(narrow, "activation matching + BN reset")[2]),
        Claim("Ainsworth et al.", "Weight matching connects 3×512 MLPs on MNIST with a "
              "near-zero loss barrier", "MLP, weight-matched test loss barrier (nats)",
              *_stat(mlp, "weight matching", "loss_barrier")[:2], "<0.1",
              short + "; 'near zero' read as below 0.1 nats", percent=False,
              n=_stat(mlp, "weight matching")[2]),
    ]
    m = widths[widths["align"] == "weights"]
    lo, hi = m.width.min(), m.width.max()
    rows.append(Claim("Ainsworth et al.", "The matched barrier falls as the network gets wider",
                      f"MLP, matched test loss barrier at width {hi} minus at {lo} (nats)",
                      *_welch(m[m.width == hi].loss_barrier, m[m.width == lo].loss_barrier),
                      "<0", short + f"; {c.mlp.width_pairs} pairs at width {lo}",
                      percent=False,
                      n=int((m.width == hi).sum())))
    rows.append(Claim("Ainsworth et al.", "The matched barrier falls as the network gets wider",
                      f"CNN, activation-matched + REPAIR test error barrier, {c.cnn.wide}× minus "
                      f"{c.cnn.width}×",
                      *_welch(_test(wide, "activation matching + REPAIR").error_barrier,
                              _test(narrow, "activation matching + REPAIR").error_barrier),
                      "<0", cnn_scale + f"; {c.cnn.wide_pairs} pairs at {c.cnn.wide}×",
                      n=len(_test(wide, "activation matching + REPAIR"))))
    share = repair_share(narrow)
    rows += [
        Claim("Jordan et al.", "REPAIR removes most of the barrier left after alignment "
              "(VGG11: 87% of it)", "CNN, share of the activation-matched error barrier "
              "REPAIR removes", *_ci(share), ">0.5", cnn_scale, n=len(share)),
        Claim("Jordan et al.", "REPAIR without alignment does not connect the networks (VGG11: "
              "35.0% at α = ½)", "CNN, naive + REPAIR test error barrier",
              *_stat(narrow, "naive + REPAIR")[:2], "unstable", cnn_scale,
              n=_stat(narrow, "naive + REPAIR")[2]),
    ]
    collapse = next(iter(measured["collapse"].values()))
    last = collapse[(collapse["align"] == "none")
                    & (collapse.position == collapse.position.max())].std_ratio
    rows.append(Claim("Jordan et al.", "The midpoint of a naive path has collapsed activations: "
                      "their std shrinks with depth", "CNN, σ at α = ½ / mean σ of the ends, "
                      "last BatchNorm layer, naive", *_ci(last), "<0.5", cnn_scale,
                      percent=False, n=len(last)))
    matched = [layer_rows(*t) for pair, t in measured["layers"].items()
               if pair.setup.model == narrow.model.iloc[0] and pair.align == "weights"]
    one = pd.Series([r["one_error"] for r in matched])
    rows.append(Claim("Adilova et al.", "Averaging any single layer gives (almost) no barrier, "
                      "even where the whole model has one", "CNN, weight-matched: largest "
                      "test error barrier of one layer averaged alone", *_ci(one), "stable",
                      "final states only (the source: every checkpoint of training); "
                      + cnn_scale, n=len(one)))
    for key, name in (("gpt", "GPT character model"), ("ptb", "PTB transformer")):
        b = lm[key]
        rows.append(Claim("Theus et al.", "Permutations alone do not connect independently "
                          "trained transformers", f"{name}, activation-matched test PPL "
                          "barrier / max PPL", *_stat(b, "activation matching")[:2],
                          "unstable", "GPT-2 and ViTs in the source; here CPU-sized models "
                          "trained for minutes" + ("; the PTB model's residual stream cannot "
                                                   "be permuted" if key == "ptb" else ""),
                          n=_stat(b, "activation matching")[2]))
    return rows


def summary(c: Config, measured: Mapping[str, Any]) -> dict[str, str]:
    """The numbers the prose states (`measured` as for `claims`): per network and path, the
    barrier ("<net>_<path>": error barrier, or relative PPL barrier for a language model) and the
    loss barrier ("<net>_<path>_loss"), with 95% CIs; test accuracy of the ends; pairs; the
    width sweep's matched barriers at its ends; the variance collapse; the layer-wise
    numbers of the first pair of each kind."""
    def slug(path: str) -> str:
        words = {"naive": "naive", "weight matching": "weights",
                 "activation matching": "activations", "REPAIR": "repair", "BN reset": "reset"}
        return "_".join(words[w] for w in path.split(" + "))

    out: dict[str, str] = {}
    frames = {"mlp": measured["mlp"], **measured["cnn"], **measured["lm"]}
    for net, b in frames.items():
        t = b[b.split == "test"]
        for path in dict.fromkeys(t.path):
            g = t[t.path == path]
            out[f"{net}_{slug(path)}"] = pct(*_ci(g[_barrier(b)]), digits=1)
            out[f"{net}_{slug(path)}_loss"] = _num(g.loss_barrier, 2)
        ends = t[t.path == "naive"]
        out[f"{net}_pairs"] = str(len(ends))
        out[f"{net}_acc"] = pct(*_ci(1 - (ends.error_a + ends.error_b) / 2), digits=1)
        if "relative_ppl_barrier" in b:
            out[f"{net}_ppl"] = _num(np.exp((ends.loss_a + ends.loss_b) / 2), 1)
            out[f"{net}_R"] = pct(*_ci(ends.relative_ppl_instability), digits=1)
    share = repair_share(measured["cnn"]["cnn"])
    out["cnn_repair_share"] = pct(*_ci(share), digits=0)
    m = measured["widths"]
    for align in ("none", "weights"):
        for end, w in (("narrow", m.width.min()), ("wide", m.width.max())):
            g = m[(m["align"] == align) & (m.width == w)]
            out[f"width_{align}_{end}"] = _num(g.loss_barrier, 2)
    out |= {"width_narrow": str(m.width.min()), "width_wide": str(m.width.max())}
    for model, t in measured["collapse"].items():
        last = t[t.position == t.position.max()]
        for align in ("none", "weights"):
            out[f"collapse_{model}_{align}"] = _num(last[last["align"] == align].std_ratio, 2)
    seen = set()
    for pair, tables in measured["layers"].items():
        kind = (pair.setup.model, pair.align, pair.children)
        if kind in seen:
            continue
        seen.add(kind)
        r = layer_rows(*tables)
        key = f"layers_{pair.setup.model}_{'children' if pair.children else pair.align}"
        out |= {f"{key}_whole": f"{r['whole_loss']:.2f}", f"{key}_whole_error":
                f"{r['whole_error']:.1%}", f"{key}_one": f"{r['one_loss']:.2f}",
                f"{key}_one_error": f"{r['one_error']:.1%}"}
    return out
