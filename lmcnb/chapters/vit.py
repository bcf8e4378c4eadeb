"""The ViT chapter as data: Han and Zhu's study of fine-tuned against scratch ViTs on CIFAR-10, a
ViT pretrained here and published like a hub checkpoint, the pruning and lottery-mask sections,
the claims.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from ..book.params import ChapterConfig, Section, Steps, param
from ..book.report import Claim, accuracy, at_step, k_star_text, pct, verdict
from ..core.checks import pretrained_source
from ..core.hub import from_hub
from ..core.ref import Ref
from ..core.rng import Seeds
from ..core.steps import parse_steps
from ..data.vision import require_vision
from ..experiments.catalog import build
from ..experiments.executors import Task, get_executor
from ..experiments.pretrain import publish_weights
from ..experiments.pruning import platon_hook
from ..experiments.runs import Run, RunSpec, data_fingerprint
from ..experiments.setup import Setup
from ..experiments.study import Results, spawn_study
from ..lmc.metrics import STABLE_THRESHOLD
from ..models.pretrained import pretrained_id
from ..models.vit import ViTShape, load_pretrained, save_pretrained, vit_shape
from ..train.recipe import TrainConfig
from .common import SOURCE_HELP, DataSource, check_sources, source_of
from .pruning import stability_and_accuracy

CHAPTER = "vit_platon"
OWN = "own:tiny_imagenet"  # pretrain here, on Tiny ImageNet-20 (as the GPT chapter's "own:ptb")
SCORE_NAMES = {"platon": "PLATON", "magnitude": "magnitude"}
Schedule = Literal["constant", "cosine", "step"]


# -- the parameters ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Images(Section):
    """How the ViTs see CIFAR-10: size, normalization, and Han and Zhu's augmentation."""

    size: int | None = param("resize to size × size (None: the dataset's own)", min=1)
    normalize: Literal["dataset", "processor"] = param(
        "'dataset' statistics or the hub processor's (pixels to [-1, 1])")
    crop_scale: float = param("side of the random crop, as a fraction of the image's", gt=0,
                              max=1)
    jitter: list[float] = param("colour jitter: brightness, contrast, saturation, hue", min=0)

    def check(self, path: str) -> None:
        """Four jitter strengths, hue at most 0.5."""
        if len(self.jitter) != 4 or self.jitter[3] > 0.5:
            raise ValueError(f"{path}.jitter is (brightness, contrast, saturation, hue), hue "
                             f"<= 0.5 (got {self.jitter!r})")

    def augment(self, dataset: str) -> Ref:
        """The augmentation's registry entry for `dataset` normalized this way."""
        return Ref.of("augment", "vit", dataset=dataset, normalize=self.normalize,
                      crop_scale=self.crop_scale, jitter=tuple(self.jitter))


@dataclass(frozen=True, kw_only=True)
class FineTune(Section):
    """Fine-tuning: AdamW with Han and Zhu's augmentation (a random crop resized back, a
    horizontal flip, colour jitter; `Images`)."""

    batch_size: int = param("images per step", min=1)
    max_steps: Steps = param("length of fine-tuning", min=1)
    lr: float = param("AdamW learning rate", gt=0)
    warmup_steps: Steps = param("linear warm-up", min=0)
    schedule: Schedule = param("learning-rate schedule after the warm-up")
    weight_decay: float = param("AdamW's decoupled weight decay", default=0.0, min=0)
    log_every: Steps = param("training loss logged every so many steps", min=1)

    def recipe(self, **changes: Any) -> TrainConfig:
        """The `TrainConfig` of this section (fields replaced by `changes`)."""
        s = replace(self, **changes)
        return TrainConfig(optimizer="adamw", augment=True, eval_every=s.log_every,
                           batch_size=s.batch_size, max_steps=s.max_steps, lr=s.lr,
                           warmup_steps=s.warmup_steps, schedule=s.schedule,
                           weight_decay=s.weight_decay)


@dataclass(frozen=True, kw_only=True)
class Pretrain(Section):
    """Pretraining here, on Tiny ImageNet-20 at the shape's image size (for `pretrained=OWN`);
    the rest of the recipe is the fine-tuning section's."""

    steps: int = param("optimizer steps", min=1)
    checkpoints: list[int] = param("pretraining steps also published (0: the initialization)",
                                   min=0)
    batch_size: int = param("images per step", min=1)
    lr: float = param("AdamW learning rate", gt=0)
    warmup_steps: Steps = param("linear warm-up", min=0)
    schedule: Schedule = param("learning-rate schedule after the warm-up")
    n_inits: int = param("replicates of the pretraining-length study", min=1)

    def check(self, path: str) -> None:
        """Checkpoints before the last step."""
        bad = [s for s in self.checkpoints if s >= self.steps]
        if bad:
            raise ValueError(f"{path}.checkpoints {bad} are not in [0, {self.steps}) (the last "
                             "step is always kept)")


@dataclass(frozen=True, kw_only=True)
class Pruning(Section):
    """PLATON and magnitude pruning on one cubic schedule (`lmcnb.prune.platon`)."""

    max_steps: Steps = param("length of a pruning run", min=1)
    densities: list[float] = param("final densities", gt=0, lt=1)
    scores: list[Literal["platon", "magnitude"]] = param("the pruning scores compared")
    initial_warmup: Steps = param("steps before pruning starts", min=0)
    final_warmup: Steps = param("steps at the final density", min=0)
    delta_t: int = param("steps per importance window", min=1)
    beta1: float = param("EMA of the importance", min=0, lt=1)
    beta2: float = param("EMA of its uncertainty (1: none)", gt=0, max=1)

    def check(self, path: str) -> None:
        """At least one density and one score."""
        if not self.densities or not self.scores:
            raise ValueError(f"{path} needs at least one density and one score")


@dataclass(frozen=True, kw_only=True)
class Masked(Section):
    """Children of masked networks."""

    steps: list[Steps] = param("spawn steps of the fine-tuned model's masked children")
    scratch_steps: list[Steps] = param("spawn steps of the random init's masked children")
    n_inits: int = param("replicates", min=1)


@dataclass(frozen=True, kw_only=True)
class Config(ChapterConfig):
    """The ViT chapter's parameters."""

    pretrained: str = param("'own:tiny_imagenet' (pretrain here), a hub id or a "
                            "save_pretrained directory")
    shape: str = param("ViT shape (lmcnb.models.vit.VIT_SHAPES): the random-init control's and "
                       "the one pretrained here")
    images: Images = param("image size, normalization and augmentation")
    pretrain: Pretrain | None = param("pretraining here (None: no pretraining-length study)")
    finetune: FineTune = param("the fine-tuning recipe")
    spawn_steps: list[Steps] = param("spawn steps k of the fine-tuned children")
    scratch_steps: list[Steps] = param("spawn steps k of the children of the random init")
    n_inits: int = param("replicates: independent trunks per study", min=1)
    pruning: Pruning = param("the pruning section")
    masked: Masked = param("the masked children")
    n_alpha: int = param("points on the α grid, both ends included", min=2)
    eval_iters: int | Literal["all"] = param("'all', or evaluation batches per split", min=1)
    eval_batch: int = param("images per evaluation batch", min=1)
    seed: int = param("the base seed of every stream", min=0)
    data_source: DataSource = param(SOURCE_HELP, default="default",
                                    keys=("cifar10", "tiny_imagenet"))

    def check(self, path: str) -> None:
        """A known shape, a start that exists, the pretraining section 'own' needs."""
        super().check(path)
        vit_shape(self.shape)
        if self.pretrained != OWN:
            pretrained_source("pretrained", self.pretrained)
        elif self.pretrain is None:
            raise ValueError(f"pretrained={OWN!r} needs the pretrain section (steps, checkpoints, "
                             "…)")


JITTER = [0.2, 0.2, 0.2, 0.05]  # brightness, contrast, saturation, hue: the study gives none
PROFILES = {
    "paper": dict(
        pretrained="google/vit-base-patch16-224-in21k", shape="ViTB16",
        images=dict(size=None, normalize="processor", crop_scale=0.75, jitter=JITTER),
        pretrain=dict(steps=3000, checkpoints=[0, 300, 1000], batch_size=64, lr=5e-4,
                      warmup_steps=300, schedule="cosine", n_inits=3),
        finetune=dict(batch_size=32, max_steps="8ep", lr=2e-4, warmup_steps=0,
                      schedule="constant", log_every=50),
        spawn_steps=[0, "1ep", "4ep"], scratch_steps=[0, "1ep", "4ep"], n_inits=3,
        pruning=dict(max_steps="4ep", densities=[0.2, 0.05], scores=["platon", "magnitude"],
                     initial_warmup="0.5ep", final_warmup="1ep", delta_t=10, beta1=0.85,
                     beta2=0.95),
        masked=dict(steps=[0, "1ep", "4ep"], scratch_steps=[0, "4ep"], n_inits=3),
        n_alpha=25, eval_iters=10, eval_batch=500, seed=0),
    "book": dict(
        pretrained=OWN, shape="MiniViT",
        images=dict(size=None, normalize="dataset", crop_scale=0.75, jitter=JITTER),
        pretrain=dict(steps=600, checkpoints=[0, 100], batch_size=64, lr=1e-3, warmup_steps=30,
                      schedule="cosine", n_inits=2),
        finetune=dict(batch_size=64, max_steps=200, lr=1e-3, warmup_steps=10,
                      schedule="constant", log_every=5),
        spawn_steps=[0, 50, 150], scratch_steps=[0, 50, 100], n_inits=3,
        pruning=dict(max_steps=100, densities=[0.2, 0.05], scores=["platon", "magnitude"],
                     initial_warmup=10, final_warmup=25, delta_t=5, beta1=0.85, beta2=0.95),
        masked=dict(steps=[0, 50, 150], scratch_steps=[0, 100], n_inits=2),
        n_alpha=11, eval_iters=1, eval_batch=1000, seed=0),
    "smoke": dict(
        pretrained=OWN, shape="MiniViT",
        images=dict(size=None, normalize="dataset", crop_scale=0.75, jitter=JITTER),
        pretrain=dict(steps=3, checkpoints=[0], batch_size=8, lr=1e-3, warmup_steps=1,
                      schedule="cosine", n_inits=1),
        finetune=dict(batch_size=8, max_steps=4, lr=1e-3, warmup_steps=1, schedule="constant",
                      log_every=1),
        spawn_steps=[0, 2], scratch_steps=[0, 2], n_inits=2,
        pruning=dict(max_steps=4, densities=[0.2], scores=["platon", "magnitude"],
                     initial_warmup=1, final_warmup=1, delta_t=1, beta1=0.85, beta2=0.95),
        masked=dict(steps=[0, 2], scratch_steps=[0, 2], n_inits=1),
        n_alpha=3, eval_iters=1, eval_batch=32, seed=0),
}
Config.profiles = PROFILES


def pretrain(shape: str, train: TrainConfig, runs_dir: str | Path, steps: Sequence[int | str], *,
             images: Images, dataset: str = "tiny_imagenet", size: int = 32,
             source: str = "default", device: str = "auto", seed: int = 0,
             data_dir: str | None = None, executor: Any = "serial") -> dict[int, str]:
    """Pretrain a ViT of `shape` on all classes of `dataset` at `size`×`size` (Han and Zhu's
    augmentation as `images` says, when `train.augment`) as a resumable run on `executor`, and
    publish its weights at each of `steps` (0 is the initialization) as a `save_pretrained`
    folder, `<runs_dir>/pretrained/<run id>-step<k>`. Returns {step: folder};
    `load_pretrained(folder, num_labels)` reads any of them as `from_pretrained` reads a hub id."""
    data = Ref.of("data", "vit_images", name=dataset, split="train", size=size,
                  **source_of(source, dataset))
    labels = len(build(data, data_dir).classes)
    net = Ref.of("model", "vit", shape=shape, num_labels=labels)
    aug = replace(images, normalize="dataset").augment(dataset) if train.augment else None
    args = (("vit", tuple(sorted(asdict(vit_shape(shape)).items()))), ("size", size),
            ("num_labels", labels), ("augment", aug.args if aug else None))
    spec = RunSpec(f"vit-{shape}", dataset, train, Seeds.from_base(seed, "pretrain"), args,
                   data_fingerprint(build(data, data_dir)))
    run = Run(spec, Path(runs_dir) / "train", net, data, device, aug, data_dir=data_dir)
    per_epoch = train.steps_per_epoch(len(build(data, data_dir)))
    at = sorted({parse_steps(s, per_epoch) for s in steps})
    key = f"train-{spec.run_id}"
    get_executor(executor).run([Task(key, Run.ensure_trained, (run, tuple(at)))], [key])

    def save(weights: dict[str, torch.Tensor], folder: Path) -> None:
        with torch.random.fork_rng():
            model = build(net, data_dir)
        model.load_state_dict(weights)
        save_pretrained(model, folder)

    def load(folder: Path) -> dict[str, torch.Tensor]:
        with torch.random.fork_rng():
            return load_pretrained(str(folder), labels).state_dict()

    root = Path(runs_dir) / "pretrained"
    return {k: str(publish_weights(run, k, root / f"{spec.run_id}-step{k}", save, load))
            for k in at}


def vit_setup(chapter: str, model: str, train: TrainConfig, runs_dir: str | Path, *,
              images: Images, shape: str | None = None, pretrained: str | None = None,
              dataset: str = "cifar10", source: str = "default", data_dir: str | None = None,
              **setup_kwargs: Any) -> Setup:
    """An image-classification `Setup` for a ViT: a random initialization of `shape`, or
    `pretrained` (a hub id or a `save_pretrained` directory) with a new head; either way the head
    is drawn once, in the trunk's init stream, and its children inherit it. Images are resized and
    normalized as `images` says; with `train.augment`, Han and Zhu's augmentation takes its
    arguments."""
    if (shape is None) == (pretrained is None):
        raise ValueError("give a ViT shape (random initialization) or a pretrained source, "
                         "not both")
    split = {s: Ref.of("data", "vit_images", name=dataset, split=s, size=images.size,
                       normalize=images.normalize, **source_of(source, dataset))
             for s in ("train", "test")}
    labels = len(build(split["train"], data_dir).classes)
    if pretrained is not None:
        digest = pretrained_id(pretrained)
        net = Ref.of("model", "pretrained_vit", source=str(pretrained), num_labels=labels,
                     digest=digest)
        start = ("pretrained", digest)
    else:
        net = Ref.of("model", "vit", shape=shape, num_labels=labels)
        start = ("vit", tuple(sorted(asdict(vit_shape(shape)).items())))
    aug = images.augment(dataset) if train.augment else None
    args = (start, ("num_labels", labels), ("images", (images.size, images.normalize)),
            ("augment", aug.args if aug else None))
    return Setup(chapter=chapter, model=model, dataset=dataset, net=net,
                 train_data=split["train"], test_data=split["test"], train=train,
                 runs_dir=str(runs_dir), augment=aug, model_args=args, data_dir=data_dir,
                 **setup_kwargs)


def chapter_setup(c: Config, start: str, source: str | None = None) -> Setup:
    """The chapter's CIFAR-10 `Setup` named `<shape>-<start>`: a random initialization of
    `c.shape` (`source=None`), or the pretrained model in `source` (of that shape), fine-tuned
    with `c.finetune`."""
    if source is not None:
        check_shape(c, source)
    return vit_setup(CHAPTER, f"{c.shape}-{start}", c.finetune.recipe(), c.runs_dir,
                     images=c.images, shape=c.shape if source is None else None,
                     pretrained=source, data_dir=c.data_dir, device=c.device or "auto",
                     source=source_of(c.data_source, "cifar10").get("source", "default"),
                     seed=c.seed, n_alpha=c.n_alpha, eval_iters=c.eval_iters,
                     eval_batch_size=c.eval_batch)


def check_shape(c: Config, source: str) -> None:
    """Refuse a pretrained model whose shape is not `c.shape` (the random-init control's)."""
    from transformers import ViTConfig

    found_config, want = from_hub(ViTConfig, source), vit_shape(c.shape)
    f = found_config
    found = ViTShape(f.image_size, f.patch_size, f.hidden_size, f.num_hidden_layers,
                     f.num_attention_heads, f.intermediate_size, f.hidden_dropout_prob)
    if found != want:
        raise ValueError(f"the pretrained model {source} has shape {found}, but shape "
                         f"{c.shape!r} is {want}: the random-init control must match it")


def pruning_setup(c: Config, setup: Setup) -> Setup:
    """`setup` with the pruning section's length (Han and Zhu pruned for half the fine-tuning)."""
    return replace(setup, train=replace(setup.train, max_steps=c.pruning.max_steps))


def pruning_hooks(c: Config, setup: Setup) -> dict[str, Ref]:
    """One hook per score and density of the pruning section, named like "PLATON 20%"."""
    ps, cfg = pruning_setup(c, setup), c.pruning
    return {f"{SCORE_NAMES[score]} {d:.0%}": platon_hook(
        ps, d, score=score, initial_warmup=cfg.initial_warmup, final_warmup=cfg.final_warmup,
        delta_t=cfg.delta_t, beta1=cfg.beta1, beta2=cfg.beta2)
        for score in cfg.scores for d in cfg.densities}


def setups(c: Config) -> dict[str, Setup]:
    """The random-init setup ("from scratch"), with every value of `c` checked against the data
    first — spawn steps against the length of training, the pruning schedule, a hub model's shape;
    nothing trains. The fine-tuned setup needs the pretrained model: `finetuned_setup`."""
    used = ("cifar10", "tiny_imagenet") if c.pretrain is not None else ("cifar10",)
    check_sources(c.data_source, used, c.data_dir)
    for dataset in used:
        if not source_of(c.data_source, dataset):
            require_vision(dataset, c.data_dir)
    if c.pretrained != OWN:
        check_shape(c, c.pretrained)
    scratch = chapter_setup(c, "scratch")
    for name, steps in (("spawn_steps", c.spawn_steps), ("scratch_steps", c.scratch_steps),
                        ("masked.steps", c.masked.steps),
                        ("masked.scratch_steps", c.masked.scratch_steps)):
        scratch.steps(steps, name)
    pruning_hooks(c, scratch)
    return {"from scratch": scratch}


def own_checkpoints(c: Config) -> dict[int, str]:
    """{pretraining step: folder} of the model pretrained here: `c.shape` on Tiny ImageNet-20 at
    its image size for `c.pretrain.steps`, kept at every checkpoint step and at the end; {}
    without a pretrain section. `pretrained="own:tiny_imagenet"` fine-tunes the last of them."""
    pt = c.pretrain
    if pt is None:
        return {}
    train = c.finetune.recipe(batch_size=pt.batch_size, max_steps=pt.steps, lr=pt.lr,
                              warmup_steps=pt.warmup_steps, schedule=pt.schedule)
    return pretrain(c.shape, train, c.runs_dir, [*pt.checkpoints, pt.steps], images=c.images,
                    size=vit_shape(c.shape).image_size,
                    source=source_of(c.data_source, "tiny_imagenet").get("source", "default"),
                    device=c.device or "auto", seed=c.seed, data_dir=c.data_dir,
                    executor=c.executor)


def finetuned_setup(c: Config, checkpoints: Mapping[int, str]) -> Setup:
    """The fine-tuned setup: from the last checkpoint pretrained here (`pretrained=OWN`), else
    from `c.pretrained`."""
    if c.pretrained == OWN:
        return chapter_setup(c, f"pt{max(checkpoints)}", checkpoints[max(checkpoints)])
    return chapter_setup(c, "pretrained", c.pretrained)


def describe(setups: dict[str, Any]) -> Any:
    """The models and their data, one row per setup."""
    rows = []
    for name, s in setups.items():
        with torch.random.fork_rng():
            net = build(s.net, s.data_dir)
        c = net.config
        start = ("random init" if s.net.name == "vit"
                 else f"pretrained: {Path(s.net.kwargs()['source']).name}")
        rows.append({"model": name, "start": start,
                     "image": f"{c.image_size}×{c.image_size}, patch {c.patch_size}",
                     "width × layers": f"{c.hidden_size} × {c.num_hidden_layers}",
                     "parameters": f"{sum(t.numel() for t in net.parameters()):,}",
                     "train images": len(s.load(s.train_data)),
                     "test images": len(s.load(s.test_data))})
    return pd.DataFrame(rows).set_index("model")


def pretraining_length(c: Config, checkpoints: Mapping[int, str]) -> dict[int, Results]:
    """{pretraining step: spawn study at k = 0} of children fine-tuned from each checkpoint
    (`c.pretrain.n_inits` replicates each), on the chapter's executor."""
    if c.pretrain is None:
        return {}
    return {step: spawn_study(chapter_setup(c, f"pt{step}", folder), [0],
                              n_inits=c.pretrain.n_inits, executor=c.executor)
            for step, folder in sorted(checkpoints.items())}


def pretraining_table(studies: dict[int, Any]) -> Any:
    """Per pretraining length: the instability of children spawned at k = 0 of fine-tuning, its
    verdict, and the children's accuracy."""
    return pd.DataFrame([{"pretraining steps": step, "pairs": int((r.barriers.split == "test")
                                                                  .sum()),
                          "instability at k=0 (test error)": pct(*at_step(r, 0)),
                          "verdict": verdict(*at_step(r, 0)),
                          "accuracy": pct(*accuracy(r), digits=1)}
                         for step, r in studies.items()]).set_index("pretraining steps")


def plot_pretraining_length(studies: dict[int, Any], scratch: Any | None = None) -> Any:
    """Instability of fine-tuning children (k = 0) against the pretraining length of their
    starting model, with the threshold and, dashed, the random-init control at k = 0."""
    import matplotlib.pyplot as plt

    steps = sorted(studies)
    mean, ci = zip(*(at_step(studies[s], 0) for s in steps))
    fig, ax = plt.subplots(figsize=(5.0, 3.3))
    ax.errorbar(steps, mean, yerr=np.nan_to_num(ci), fmt="o-", capsize=3,
                label="fine-tuning children, k = 0")
    if scratch is not None:
        ax.axhline(at_step(scratch, 0)[0], color="gray", ls="--", lw=1,
                   label="random init of the same shape, k = 0")
    ax.axhline(STABLE_THRESHOLD, color="red", ls=":", lw=1,
               label=f"{STABLE_THRESHOLD:.0%} threshold")
    ax.set_xlabel("pretraining steps on Tiny ImageNet-20 (32×32)")
    ax.set_ylabel("instability (test error)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def step_timing(runs: dict[str, Any]) -> Any:
    """Seconds per optimizer step of finished runs, from their `events.jsonl` (each stretch from
    a start — init, spawn or resume — to `done`; checkpoint writes and logging included)."""

    rows = []
    for name, run in runs.items():
        events = [json.loads(line) for line in (run.dir / "events.jsonl").read_text().splitlines()]
        steps = seconds = 0.0
        for start, end in zip(events, events[1:]):
            if start["event"] in ("init", "spawn", "resume") and end["event"] == "done":
                steps += end["step"] - start["step"]
                seconds += end["time"] - start["time"]
        rows.append({"run": name, "steps timed": int(steps),
                     "ms per step": 1e3 * seconds / steps if steps else float("nan")})
    return pd.DataFrame(rows).set_index("run")


# What Han & Zhu report (ViT-B/16 from the hub, CIFAR-10 at 224×224; test accuracy).
SOURCE = "Han & Zhu"


SOURCE_ACCURACY = {"dense": 0.98, "PLATON 20%": 0.953, "PLATON 5%": 0.937, "ticket 20%": 0.936}


def _row(table: Any, run: str) -> float | None:
    found = table[table.run == run]
    return None if found.empty else float(found["test accuracy"].iloc[0])


def summary(c: Config, measured: Mapping[str, Any]) -> dict[str, str]:
    """The numbers the chapter's prose states. `measured`: `spawn`, the "fine-tuned" and "from
    scratch" spawn studies; `length`: `pretraining_length`; `pruning`: the pruning table (first
    row dense); `masked`: spawn studies of masked children, the first of the fine-tuned model
    with the PLATON mask; its controls at k = 0: a `random` mask of the same per-layer density,
    and the same mask on a random initialization (`reinit`)."""
    results, length, pruning = measured["spawn"], measured["length"], measured["pruning"]
    masked, random, reinit = measured["masked"], measured["random"], measured["reinit"]
    from scipy.stats import spearmanr

    out = {}
    for key, name in (("ft", "fine-tuned"), ("scratch", "from scratch")):
        r = results[name]
        ks = sorted(r.barriers.spawn_step.unique())
        first, last = at_step(r, int(ks[0])), at_step(r, int(ks[-1]))
        out |= {f"{key}_k0": pct(*first), f"{key}_k0_verdict": verdict(*first),
                f"{key}_klast": f"{pct(*last)} at k = {ks[-1]} ({verdict(*last)})",
                f"{key}_acc": pct(*accuracy(r), digits=1), f"{key}_kstar": k_star_text(r.onset())}
    out["length"] = "; ".join(f"{step} steps: {pct(*at_step(r, 0))} ({verdict(*at_step(r, 0))})"
                              for step, r in length.items()) or "not measured"
    out["pruning"] = "; ".join(f"{run} {acc:.1%}"
                               for run, acc in zip(pruning.run, pruning["test accuracy"]))
    for key, r in (("ticket", next(iter(masked.values()))), ("random", random),
                   ("reinit", reinit)):
        t = stability_and_accuracy(r)
        first = t[t.k == t.k.min()].iloc[0]
        out[f"{key}_acc"] = pct(first.accuracy, first.accuracy_ci, digits=1)
    points = [(name, row) for name, r in masked.items()
              for row in stability_and_accuracy(r).itertuples()]
    out["prunability"] = "; ".join(
        f"{name}, k = {r.k}: {r.accuracy:.1%} at instability {pct(r.instability, r.instability_ci)}"
        for name, r in points)
    rho = (spearmanr([r.instability for _, r in points], [r.accuracy for _, r in points]).statistic
           if len(points) > 2 else float("nan"))
    out["rho"] = f"{rho:.2f} over {len(points)} points"
    return out


def claims(c: Config, measured: Mapping[str, Any]) -> list[Claim]:
    """Han & Zhu's statements (and Frankle et al.'s) against this chapter's measurements
    (`measured` as for `summary`)."""
    results, pruning, masked = measured["spawn"], measured["pruning"], measured["masked"]
    random, reinit = measured["random"], measured["reinit"]
    def gap(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    dense, platon = _row(pruning, "dense"), _row(pruning, "PLATON 20%")
    first = {name: stability_and_accuracy(r).iloc[0] for name, r in
             (("ticket", next(iter(masked.values()))), ("random", random), ("reinit", reinit))}

    def beats(control: str) -> tuple[float, float]:
        a, b = first["ticket"], first[control]
        return float(a.accuracy - b.accuracy), float(np.hypot(a.accuracy_ci, b.accuracy_ci))

    scale = ("the book fine-tunes a 0.5M-parameter ViT pretrained here for a fraction of an epoch; "
             "the source, the hub's ViT-B/16 for 8 epochs")
    src = SOURCE_ACCURACY
    return [
        Claim(SOURCE, "children fine-tuned from the pretrained ViT are linearly connected (test "
              "loss even falls along the path)", "test I_E at k = 0",
              *at_step(results["fine-tuned"], 0), "stable", scale),
        Claim(SOURCE, "children of a random initialization are not: the loss peaks near α = 0.5 "
              "at over twice the endpoints' mean", "test I_E at k = 0",
              *at_step(results["from scratch"], 0), "unstable", scale),
        Claim(SOURCE, "PLATON to 20% density costs 2.7 points of test accuracy (95.3% vs 98%)",
              "dense − PLATON 20%", gap(dense, platon), None,
              f"≈{src['dense'] - src['PLATON 20%']:.3f}±0.02", "pruned for half the dense "
              "fine-tuning, as the source did; " + scale),
        Claim(SOURCE, "PLATON to 5% density costs 4.3 points (93.7%)", "dense − PLATON 5%",
              gap(dense, _row(pruning, "PLATON 5%")), None,
              f"≈{src['dense'] - src['PLATON 5%']:.3f}±0.02", scale),
        Claim(SOURCE, "the 20% mask on the pretrained weights, retrained, reaches 93.6%, 1.7 "
              "points below PLATON's own 20% network", "ticket − PLATON 20%",
              gap(float(first["ticket"].accuracy), platon), None,
              f"≈{src['ticket 20%'] - src['PLATON 20%']:.3f}±0.02",
              "the ticket trains as long as the dense model, PLATON half as long"),
        Claim("Frankle et al. 2020", "a pruning mask beats a random mask of the same per-layer "
              "density", "ticket − random mask at k = 0", *beats("random"), ">0",
              "CI: the two accuracies' CIs combined in quadrature"),
        Claim("Frankle et al. 2020", "a mask needs the weights it was found on: on a random "
              "initialization it does worse", "ticket − same mask reinitialized",
              *beats("reinit"), ">0", "CI: the two accuracies' CIs combined in quadrature"),
    ]
