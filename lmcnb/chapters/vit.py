"""The ViT chapter as data: Han and Zhu's study of fine-tuned against scratch ViTs on CIFAR-10
asked at a scale two CPU cores can afford — a ViT pretrained here and published like a hub
checkpoint, pairs of children at matched seeds, PLATON and magnitude pruning over replicates, the
lottery mask against its controls, the pilot that sized it, the claims.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from ..book.params import ChapterConfig, Section, Steps, param
from ..book.report import Claim, at_step, evaluation_noise, pct, verdict
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
from ..experiments.study import Results, main_branch_study
from ..lmc.metrics import STABLE_THRESHOLD, mean_ci, paired_difference
from ..models.pretrained import pretrained_id
from ..models.vit import ViTShape, load_pretrained, save_pretrained, vit_shape
from ..train.recipe import TrainConfig
from .common import SOURCE_HELP, DataSource, check_sources, source_of
from .pruning import pruning_cost

CHAPTER = "vit_platon"
OWN = "own:tiny_imagenet"  # pretrain here, on Tiny ImageNet-20 (as the GPT chapter's "own:ptb")
SCORE_NAMES = {"platon": "PLATON", "magnitude": "magnitude"}
Schedule = Literal["constant", "cosine", "step"]
# The pilot's results (benchmarks/pilot_vit.py), committed; the profile section shows them.
PILOT = Path(__file__).resolve().parents[2] / "benchmarks" / "pilots" / "vit_platon.csv"


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
    the rest of the recipe (augmentation, weight decay) is the fine-tuning section's."""

    steps: int = param("optimizer steps", min=1)
    batch_size: int = param("images per step", min=1)
    lr: float = param("AdamW learning rate", gt=0)
    warmup_steps: Steps = param("linear warm-up", min=0)
    schedule: Schedule = param("learning-rate schedule after the warm-up")


@dataclass(frozen=True, kw_only=True)
class Pruning(Section):
    """PLATON and magnitude pruning on one cubic schedule (`lmcnb.prune.platon`), each run
    replicated from the dense trunks' seeds."""

    max_steps: Steps = param("length of a pruning run", min=1)
    densities: list[float] = param("final densities", gt=0, lt=1)
    scores: list[Literal["platon", "magnitude"]] = param("the pruning scores compared")
    initial_warmup: Steps = param("steps before pruning starts", min=0)
    final_warmup: Steps = param("steps at the final density", min=0)
    delta_t: int = param("steps per importance window", min=1)
    beta1: float = param("EMA of the importance", min=0, lt=1)
    beta2: float = param("EMA of its uncertainty (1: none)", gt=0, max=1)
    n_inits: int = param("replicates of every pruning run (the dense trunks' seeds)", min=1)

    def check(self, path: str) -> None:
        """At least one density and one score; PLATON first (its mask is the lottery's)."""
        if not self.densities or not self.scores:
            raise ValueError(f"{path} needs at least one density and one score")
        if self.scores[0] != "platon":
            raise ValueError(f"{path}.scores must start with 'platon': the lottery section "
                             f"takes the first score's mask at the first density (got "
                             f"{self.scores!r})")


@dataclass(frozen=True, kw_only=True)
class Masked(Section):
    """Children of masked networks: the first PLATON mask on the dense trunks' weights at each
    spawn step, and at k = 0 its controls (a random mask; the mask on a random init)."""

    steps: list[Steps] = param("spawn steps k of the masked children (0: the pretrained "
                               "weights, as the source's ticket)")
    n_inits: int = param("replicates (the dense trunks 0 … n − 1)", min=1)


@dataclass(frozen=True, kw_only=True)
class Config(ChapterConfig):
    """The ViT chapter's parameters."""

    pretrained: str = param("'own:tiny_imagenet' (pretrain here), a hub id or a "
                            "save_pretrained directory")
    shape: str = param("ViT shape (lmcnb.models.vit.VIT_SHAPES): the random-init control's and "
                       "the one pretrained here")
    images: Images = param("image size, normalization and augmentation")
    pretrain: Pretrain | None = param("pretraining here (for pretrained='own:tiny_imagenet')")
    finetune: FineTune = param("the fine-tuning recipe (both starts)")
    spawn_steps: list[Steps] = param("spawn steps k of the fine-tuned pairs")
    scratch_steps: list[Steps] = param("spawn steps k of the random init's pairs")
    n_inits: int = param("replicates: independent trunks (and pairs) per spawn step", min=1)
    pruning: Pruning = param("the pruning section")
    masked: Masked = param("the masked children")
    n_alpha: int = param("points on the α grid, both ends included", min=2)
    eval_iters: int | Literal["all"] = param("'all', or evaluation batches of the test split",
                                             min=1)
    train_eval_iters: int | Literal["all"] = param("'all', or evaluation batches of the train "
                                                   "split", min=1)
    eval_batch: int = param("images per evaluation batch", min=1)
    seed: int = param("the base seed of every stream", min=0)
    data_source: DataSource = param(SOURCE_HELP, default="default",
                                    keys=("cifar10", "tiny_imagenet"))

    def check(self, path: str) -> None:
        """A known shape, a start that exists, the pretraining section 'own' needs, spawn steps
        before the end (a pair is the trunk at the end and a child spawned at k), and replicates
        of the masked and pruned runs among the dense trunks."""
        super().check(path)
        vit_shape(self.shape)
        if self.pretrained != OWN:
            pretrained_source("pretrained", self.pretrained)
        elif self.pretrain is None:
            raise ValueError(f"pretrained={OWN!r} needs the pretrain section (steps, batch_size, "
                             "…)")
        for name, n in (("masked.n_inits", self.masked.n_inits),
                        ("pruning.n_inits", self.pruning.n_inits)):
            if n > self.n_inits:
                raise ValueError(f"{name} ({n}) must be at most n_inits ({self.n_inits}): its "
                                 "replicates are the dense trunks' and pair with them")


JITTER = [0.2, 0.2, 0.2, 0.05]  # brightness, contrast, saturation, hue: the study gives none
# The book profile's length and learning rate of fine-tuning, as the pilot (benchmarks/pilot_vit.py,
# its rows in benchmarks/pilots/vit_platon.csv) sized them; the chapter shows what it measured.
BOOK_STEPS, BOOK_LR = 600, 1e-3
PROFILES = {
    "paper": dict(
        pretrained="google/vit-base-patch16-224-in21k", shape="ViTB16",
        images=dict(size=None, normalize="processor", crop_scale=0.75, jitter=JITTER),
        pretrain=dict(steps=2000, batch_size=64, lr=1e-3, warmup_steps=100,
                      schedule="cosine"),  # unused: the paper profile starts from the hub
        finetune=dict(batch_size=32, max_steps="8ep", lr=2e-4, warmup_steps=0,
                      schedule="constant", weight_decay=0.01, log_every=50),
        spawn_steps=[0, "1ep"], scratch_steps=[0, "1ep", "4ep"], n_inits=5,
        pruning=dict(max_steps="4ep", densities=[0.2, 0.05], scores=["platon", "magnitude"],
                     initial_warmup="0.5ep", final_warmup="1ep", delta_t=10, beta1=0.85,
                     beta2=0.95, n_inits=5),
        masked=dict(steps=[0, "1ep"], n_inits=5),
        n_alpha=25, eval_iters=10, train_eval_iters=5, eval_batch=500, seed=0),
    "book": dict(
        pretrained=OWN, shape="MiniViT",
        images=dict(size=None, normalize="dataset", crop_scale=0.75, jitter=JITTER),
        pretrain=dict(steps=2000, batch_size=64, lr=1e-3, warmup_steps=100, schedule="cosine"),
        finetune=dict(batch_size=32, max_steps=BOOK_STEPS, lr=BOOK_LR, warmup_steps=0,
                      schedule="constant", weight_decay=0.01, log_every=10),
        spawn_steps=[0], scratch_steps=[0], n_inits=7,
        pruning=dict(max_steps=BOOK_STEPS // 2, densities=[0.2, 0.05],
                     scores=["platon", "magnitude"], initial_warmup=BOOK_STEPS // 16,
                     final_warmup=BOOK_STEPS // 8, delta_t=10, beta1=0.85, beta2=0.95,
                     n_inits=5),
        masked=dict(steps=[0], n_inits=5),
        n_alpha=11, eval_iters=5, train_eval_iters=1, eval_batch=1000, seed=0),
    "smoke": dict(
        pretrained=OWN, shape="MiniViT",
        images=dict(size=None, normalize="dataset", crop_scale=0.75, jitter=JITTER),
        pretrain=dict(steps=3, batch_size=8, lr=1e-3, warmup_steps=1, schedule="cosine"),
        finetune=dict(batch_size=8, max_steps=4, lr=1e-3, warmup_steps=0, schedule="constant",
                      weight_decay=0.01, log_every=1),
        spawn_steps=[0], scratch_steps=[0, 2], n_inits=2,
        pruning=dict(max_steps=4, densities=[0.2], scores=["platon", "magnitude"],
                     initial_warmup=1, final_warmup=1, delta_t=1, beta1=0.85, beta2=0.95,
                     n_inits=2),
        masked=dict(steps=[0], n_inits=2),
        n_alpha=3, eval_iters=1, train_eval_iters=1, eval_batch=32, seed=0),
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
                     train_eval_iters=c.train_eval_iters, eval_batch_size=c.eval_batch)


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
    """One hook per score and density of the pruning section, named like "PLATON 20%" (the
    first is the lottery section's mask)."""
    ps, cfg = pruning_setup(c, setup), c.pruning
    return {f"{SCORE_NAMES[score]} {d:.0%}": platon_hook(
        ps, d, score=score, initial_warmup=cfg.initial_warmup, final_warmup=cfg.final_warmup,
        delta_t=cfg.delta_t, beta1=cfg.beta1, beta2=cfg.beta2)
        for score in cfg.scores for d in cfg.densities}


def pair_steps(setup: Setup, values: Sequence[int | str], name: str) -> list[int]:
    """Spawn steps of pairs (the trunk at its end against a child spawned at k), checked: each
    before the end of training."""
    steps = setup.steps(values, name)
    at_end = [k for k in steps if k >= setup.total_steps]
    if at_end:
        raise ValueError(f"{name} {at_end} leave no training after the spawn: a pair is the "
                         f"trunk at its end ({setup.total_steps} steps) and a child spawned at k, "
                         "so k must come before it")
    return steps


def setups(c: Config) -> dict[str, Setup]:
    """The random-init setup ("from scratch"), with every value of `c` checked against the data
    first — spawn steps against the length of training, the pruning schedule, a hub model's shape;
    nothing trains. The fine-tuned setup needs the pretrained model: `finetuned_setup`."""
    used = ("cifar10", "tiny_imagenet") if c.pretrained == OWN else ("cifar10",)
    check_sources(c.data_source, used, c.data_dir)
    for dataset in used:
        if not source_of(c.data_source, dataset):
            require_vision(dataset, c.data_dir)
    if c.pretrained != OWN:
        check_shape(c, c.pretrained)
    scratch = chapter_setup(c, "scratch")
    for name, steps in (("spawn_steps", c.spawn_steps), ("scratch_steps", c.scratch_steps),
                        ("masked.steps", c.masked.steps)):
        pair_steps(scratch, steps, name)
    pruning_hooks(c, scratch)
    return {"from scratch": scratch}


def own_source(c: Config) -> str | None:
    """The folder of the model pretrained here (`pretrained="own:tiny_imagenet"`): `c.shape` on
    Tiny ImageNet-20 at its image size for `c.pretrain.steps`, on the chapter's executor; None
    for another start."""
    pt = c.pretrain
    if c.pretrained != OWN or pt is None:
        return None
    train = c.finetune.recipe(batch_size=pt.batch_size, max_steps=pt.steps, lr=pt.lr,
                              warmup_steps=pt.warmup_steps, schedule=pt.schedule)
    return pretrain(c.shape, train, c.runs_dir, [pt.steps], images=c.images,
                    size=vit_shape(c.shape).image_size,
                    source=source_of(c.data_source, "tiny_imagenet").get("source", "default"),
                    device=c.device or "auto", seed=c.seed, data_dir=c.data_dir,
                    executor=c.executor)[pt.steps]


def finetuned_setup(c: Config, source: str | None) -> Setup:
    """The fine-tuned setup: from the model pretrained here (`source`, for `pretrained=OWN`),
    else from `c.pretrained`."""
    if c.pretrained == OWN:
        return chapter_setup(c, f"pt{c.pretrain.steps}", source)
    return chapter_setup(c, "pretrained", c.pretrained)


def source_accuracy(c: Config, source: str | None) -> tuple[float, float] | None:
    """Test accuracy of the model pretrained here on its own task (Tiny ImageNet-20's test split
    at its image size, with its own head) and its 95% CI over the test images; None for a start
    pretrained elsewhere."""
    from ..core.device import pick_device
    from ..train.evaluation import evaluate

    if source is None:
        return None
    test = build(Ref.of("data", "vit_images", name="tiny_imagenet", split="test",
                        size=vit_shape(c.shape).image_size,
                        **source_of(c.data_source, "tiny_imagenet")), c.data_dir)
    with torch.random.fork_rng():
        model = load_pretrained(source, len(test.classes))
    device = pick_device(c.device)
    ev = evaluate(model.to(device), test.to(device), c.eval_batch)
    errors = ev.example_error.double()
    return 1 - float(errors.mean()), 1.96 * float(errors.std()) / math.sqrt(len(errors))


def profiles_table() -> pd.DataFrame:
    """The three profiles side by side, one row per parameter (a section's keys as
    `section.key`), with its help text."""
    def flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, Mapping):
                out |= flat(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value
        return out

    resolved = {name: flat(Config.resolve(name).as_dict()) for name in ("smoke", "book", "paper")}
    helps = {r["parameter"]: r["help"] for r in _help_rows(Config)}
    keys = [k for k in resolved["paper"] | resolved["book"] if k.split(".")[0] in PROFILES["book"]]
    return pd.DataFrame([{"parameter": k, **{name: _cell(v.get(k, "—"))
                                             for name, v in resolved.items()},
                          "what it is": helps.get(k, "")} for k in keys])


def _help_rows(cls: type, prefix: str = "") -> list[dict[str, str]]:
    import dataclasses
    import typing

    from ..book.params import help_table

    rows = []
    hints = typing.get_type_hints(cls)
    for row, f in zip(help_table(cls), dataclasses.fields(cls)):
        rows.append({"parameter": prefix + row["parameter"], "help": row["help"]})
        section = next((h for h in typing.get_args(hints[f.name]) or (hints[f.name],)
                        if isinstance(h, type) and issubclass(h, Section)), None)
        if section is not None:
            rows += _help_rows(section, f"{prefix}{f.name}.")
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "None" if value is None else str(value)


def describe(setups: dict[str, Setup]) -> pd.DataFrame:
    """The models and their data, one row per setup."""
    rows = []
    for name, s in setups.items():
        with torch.random.fork_rng():
            net = build(s.net, s.data_dir)
        cfg = net.config
        start = ("random init" if s.net.name == "vit"
                 else f"pretrained: {Path(s.net.kwargs()['source']).name}")
        rows.append({"model": name, "start": start,
                     "image": f"{cfg.image_size}×{cfg.image_size}, patch {cfg.patch_size}",
                     "width × layers": f"{cfg.hidden_size} × {cfg.num_hidden_layers}",
                     "parameters": f"{sum(t.numel() for t in net.parameters()):,}",
                     "train images": f"{len(s.load(s.train_data)):,}",
                     "fine-tuning": f"{s.total_steps:,} steps of {s.train.batch_size} "
                                    f"({s.total_steps / s.steps_per_epoch:.2f} epochs)"})
    return pd.DataFrame(rows)


# -- pairs of children and the comparisons within a trunk -----------------------------------------
KEYS = ("spawn_step", "replicate", "pair")


def pair_study(setup: Setup, spawn_steps: Sequence[int | str], n_inits: int,
               executor: Any = "serial") -> Results:
    """Frankle's pairs at each spawn step k, one per replicate: the trunk at its end T against a
    child spawned from it at k and trained to T with its own data order and augmentation (the
    main branch and one branch, `main_branch_study` with k2 = T − k). The pair is what two
    children spawned at k are, in distribution — both continue the trunk's state at k with noise
    of their own — at two runs per pair instead of three."""
    total = setup.total_steps
    parts = [main_branch_study(setup, [k], [total - k], n_inits=n_inits, executor=executor)
             for k in pair_steps(setup, spawn_steps, "spawn steps")]
    if len(parts) == 1:
        return parts[0]
    return Results(pd.concat([p.curves for p in parts], ignore_index=True),
                   pd.concat([p.barriers for p in parts], ignore_index=True), parts[0].folder,
                   setup.threshold)


def pair_runs(setup: Setup, init: int, k: int) -> tuple[Run, Run]:
    """The two runs of `pair_study`'s pair of replicate `init` at spawn step `k` (finished)."""
    trunk = setup.trunk(init)
    total = trunk.final_step()
    return trunk, setup.child(trunk, k, total, "branch", init, k, total - k)


def test_rows(results: Results) -> pd.DataFrame:
    """A study's test rows (no BatchNorm reset: the ViT has none), with the pair's mean accuracy
    (`accuracy`) and the peak test loss over the endpoints' mean (`loss_peak_ratio`, the source's
    "over twice the endpoints' mean")."""
    b = results.barriers
    rows = b[(b.split == "test") & ~b.get("bn_reset", pd.Series(False, index=b.index))
             .astype(bool)].copy()
    rows["accuracy"] = 1 - (rows.error_a + rows.error_b) / 2
    c = results.curves
    c = c[(c.split == "test") & ~c.get("bn_reset", pd.Series(False, index=c.index)).astype(bool)]
    keys = [k for k in KEYS if k in c]
    peak = c.groupby(keys).loss.max().rename("peak_loss").reset_index()
    rows = rows.merge(peak, on=keys, how="left")
    rows["loss_peak_ratio"] = rows.peak_loss / ((rows.loss_a + rows.loss_b) / 2)
    return rows


def mean_at(results: Results, column: str, k: int = 0) -> tuple[float, float, int]:
    """Mean, 95% CI half-width and number of pairs of `column` (of `test_rows`) at spawn step
    `k`."""
    rows = test_rows(results)
    values = rows[rows.spawn_step == k][column]
    return (*mean_ci(values), len(values))


def paired(a: Results | pd.DataFrame, b: Results | pd.DataFrame, column: str,
           k: int = 0) -> tuple[float, float, int]:
    """B − A of `column` at spawn step `k`, pair by pair (the same replicate and pair: matched
    seeds), with its 95% CI and the number of pairs (`lmcnb.lmc.metrics.paired_difference`)."""
    ta, tb = (x if isinstance(x, pd.DataFrame) else test_rows(x) for x in (a, b))
    ta, tb = ta[ta.spawn_step == k], tb[tb.spawn_step == k]
    on = [key for key in KEYS if key in ta and key in tb]
    d = paired_difference(ta, tb, column, on=on).iloc[0]
    return float(d[column]), float(d[f"{column}_ci95"]), int(d.n)


def _value(x: tuple[float, float, int], percent: bool = True) -> str:
    if percent:
        return pct(x[0], x[1])
    return f"{x[0]:.3f} ± {x[1]:.3f}" if math.isfinite(x[1]) else f"{x[0]:.3f}"


CONTRASTS = {"error_barrier": "error barrier (test)", "instability_error": "I_E (Frankle)",
             "loss_barrier": "loss barrier (test)", "loss_peak_ratio": "peak loss / ends' mean",
             "accuracy": "test accuracy"}


def contrast_table(finetuned: Results, scratch: Results, k: int = 0) -> pd.DataFrame:
    """At spawn step `k`: each quantity of the fine-tuned pairs and of the pairs from scratch
    (mean ± 95% CI over replicates), and their difference pair by pair at matched seeds (the
    same trunk seeds, data orders and augmentation)."""
    rows = []
    for column, name in CONTRASTS.items():
        percent = column not in ("loss_barrier", "loss_peak_ratio")
        ft, sc = mean_at(finetuned, column, k), mean_at(scratch, column, k)
        d = paired(finetuned, scratch, column, k)
        rows.append({"quantity": name, "fine-tuned": _value(ft, percent),
                     "from scratch": _value(sc, percent),
                     "from scratch − fine-tuned (matched seeds)": _value(d, percent),
                     "pairs": d[2]})
    return pd.DataFrame(rows)


# -- the pilot ------------------------------------------------------------------------------------
def pilot_results(path: str | Path = PILOT) -> pd.DataFrame | None:
    """The pilot's rows (`benchmarks/pilot_vit.py`), or None where the file is not (an installed
    package has no benchmarks folder)."""
    path = Path(path)
    return pd.read_csv(path) if path.is_file() else None


def pilot_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per start, learning rate and length of the pilot: pairs, the error barrier (mean, 95% CI)
    and its verdict, its evaluation noise (root mean square of the pairs' bootstrap SDs), I_E,
    the peak loss over the ends' mean, the children's accuracy and, for the pretrained start,
    the transfer (its accuracy minus the scratch pair's of the same replicate)."""
    t = table.assign(accuracy=(table.accuracy_a + table.accuracy_b) / 2)
    rows = []
    for (start, lr, steps), g in t.groupby(["start", "lr", "steps"], sort=True):
        b, b_ci = mean_ci(g.error_barrier)
        acc, acc_ci = mean_ci(g.accuracy)
        row = {"start": start, "lr": lr, "steps": int(steps), "epochs": float(g.epochs.iloc[0]),
               "n": len(g), "error_barrier": b, "error_barrier_ci": b_ci,
               "verdict": verdict(b, b_ci),
               "eval_sd": float(np.sqrt((g.error_barrier_eval_sd ** 2).mean())),
               "test_images": int(g.test_images.iloc[0]),
               "instability_error": float(g.instability_error.mean()),
               "loss_peak_ratio": float(g.loss_peak_ratio.mean()),
               "accuracy": acc, "accuracy_ci": acc_ci,
               "transfer": float("nan"), "transfer_ci": float("nan")}
        if start == "pretrained":
            s = t[(t.start == "scratch") & (t.lr == lr) & (t.steps == steps)]
            joined = g.merge(s, on="replicate", suffixes=("", "_s"))
            row["transfer"], row["transfer_ci"] = mean_ci(joined.accuracy - joined.accuracy_s)
        rows.append(row)
    return pd.DataFrame(rows)


def pilot_table(summary: pd.DataFrame) -> pd.DataFrame:
    """`pilot_summary` for the page: one row per start, learning rate and length."""
    return pd.DataFrame([{
        "start": r.start, "lr": f"{r.lr:g}", "steps (epochs)": f"{r.steps:,} ({r.epochs:.2f})",
        "pairs": r.n, "error barrier": pct(r.error_barrier, r.error_barrier_ci),
        "verdict": r.verdict, f"evaluation noise (SD, {r.test_images:,} images)": pct(r.eval_sd),
        "accuracy": pct(r.accuracy, r.accuracy_ci, digits=1),
        "transfer (− scratch)": pct(r.transfer, r.transfer_ci, digits=1)}
        for r in summary.itertuples()])


def choice_text(c: Config, pilot: pd.DataFrame) -> dict[str, str]:
    """What the pilot says at the profile's length and learning rate (the pilot's nearest
    length at that rate): each start's barrier and verdict, the transfer, and the evaluation
    noise projected to the profile's test sample (the bootstrap SD shrinks as 1/√images)."""
    ft = c.finetune
    at = pilot[np.isclose(pilot.lr, ft.lr)]
    if at.empty:
        return {"choice": f"the pilot did not run the profile's learning rate ({ft.lr:g})."}
    steps = int(parse_steps(ft.max_steps, 50_000 // ft.batch_size))
    near = int(at.steps.iloc[(at.steps - steps).abs().argmin()])
    rows = {r.start: r for r in at[at.steps == near].itertuples()}
    images = _count(c.eval_iters, c.eval_batch)
    parts = [f"{start} {pct(r.error_barrier, r.error_barrier_ci)} ({r.verdict})"
             for start, r in sorted(rows.items(), reverse=True)]
    text = (f"at lr {ft.lr:g} and {near:,} steps the pilot's pairs have an error barrier of "
            + " and ".join(parts))
    pre = rows.get("pretrained")
    if pre is not None and math.isfinite(pre.transfer):
        text += f", and the transfer is {pct(pre.transfer, pre.transfer_ci, digits=1)}"
    if images:
        noise = float(np.sqrt((at[at.steps == near].eval_sd ** 2).mean()))
        scale = math.sqrt(int(at.test_images.iloc[0]) / images)
        text += (f"; on {images:,} test images the barrier's evaluation noise is about "
                 f"{pct(noise * scale)} (the pilot's {pct(noise)} on "
                 f"{int(at.test_images.iloc[0]):,}).")
    return {"choice": text}


def _count(iters: int | str, batch: int) -> int | None:
    return None if iters == "all" else iters * batch


def pilot_cost(table: pd.DataFrame) -> dict[str, float]:
    """The pilot's costs: CPU ms per fine-tuning step (over the pairs it trained itself, whose
    training CPU seconds are recorded) and per evaluated image and α, the pretraining's CPU
    seconds (NaN where it was found trained), the mean load average while it ran, and the CPU
    minutes of what it did."""
    pairs = table.dropna(subset=["train_steps"])  # one row per pair, its longest length
    trained = pairs.dropna(subset=["train_cpu_s"])
    lengths = table.groupby(["start", "lr", "replicate"]).size().iloc[0]
    n_alpha = 11
    pretrain = float(table.pretrain_cpu_s.iloc[0])
    return {"ms_step": 1e3 * trained.train_cpu_s.sum() / trained.train_steps.sum(),
            "ms_image": 1e3 * pairs.eval_cpu_s.sum()
            / (len(pairs) * lengths * n_alpha * pairs.test_images.iloc[0]),
            "pretrain_s": pretrain, "load": float(table.load.mean()),
            "pairs": len(pairs), "pairs_trained": len(trained),
            "cpu_min": float(trained.train_cpu_s.sum() + pairs.eval_cpu_s.sum()
                             + np.nan_to_num(pretrain)) / 60}


def plot_pilot(summary: pd.DataFrame) -> Any:
    """The pilot: the error barrier (±95% CI) and the children's accuracy against the length of
    fine-tuning, one line per start and learning rate, with the stability threshold."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7.6, 3.2), constrained_layout=True)
    for i, ((start, lr), g) in enumerate(summary.groupby(["start", "lr"], sort=True)):
        style = "-" if start == "pretrained" else "--"
        label = f"{start}, lr {lr:g}"
        for ax, col in zip(axes, ("error_barrier", "accuracy")):
            ax.errorbar(g.steps, g[col], yerr=np.nan_to_num(g[f"{col}_ci"]), fmt="o" + style,
                        color=f"C{i}", capsize=3, ms=3, label=label)
    axes[0].axhline(STABLE_THRESHOLD, color="red", ls=":", lw=1,
                    label=f"{STABLE_THRESHOLD:.0%} threshold")
    axes[0].set_ylabel("error barrier (test)")
    axes[1].set_ylabel("children's test accuracy")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("fine-tuning steps (batch 32)")
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    axes[0].legend(fontsize=7)
    return fig


# -- pruning --------------------------------------------------------------------------------------
def pruning_runs(c: Config, setup: Setup) -> dict[str, list[Run]]:
    """{"PLATON 20%": [its runs], …}: every score and density of the pruning section, each
    replicated from the dense trunks' seeds (`pruning.n_inits`), trained on the executor."""
    from ..experiments.pruning import pruned_replicates

    return pruned_replicates(pruning_setup(c, setup), pruning_hooks(c, setup), c.pruning.n_inits,
                             c.executor)


def dense_rows(dense: Results) -> pd.DataFrame:
    """The dense runs as rows of `pruning.pruning_results`: the trunks at their end (endpoint A
    of `dense`'s pairs at k = 0), replicate by replicate."""
    d = test_rows(dense)
    d = d[d.spawn_step == 0]
    return pd.DataFrame({"condition": "dense", "replicate": d.replicate.astype(int),
                         "density": 1.0, "accuracy": 1 - d.error_a}).reset_index(drop=True)


# -- the lottery mask -----------------------------------------------------------------------------
def lottery_masks(pruned: Mapping[str, list[Run]], seed: int) -> tuple[Ref, Ref]:
    """The hooks of the first PLATON run's mask (replicate 0: "the" mask, as the source has one)
    and of a random mask of the same per-tensor density drawn from `seed`."""
    from ..experiments.pruning import mask_of, random_like

    ticket = mask_of(next(iter(pruned.values()))[0])
    return ticket, random_like(ticket, seed)


def lottery_studies(c: Config, finetuned: Setup, scratch: Setup, ticket: Ref,
                    control: Ref) -> dict[str, Results]:
    """Pairs of masked children, spawned from the dense trunks of the first `masked.n_inits`
    replicates: the ticket (the mask on the fine-tuned trunk's weights at each `masked.steps`),
    and at k = 0 its controls — a random mask of the same per-tensor density on the same trunk,
    and the mask on the random initialization of the same seeds. Children of one replicate share
    their seeds across the three, so each control is a matched pair."""
    from ..experiments.study import spawn_study

    kw = dict(n_inits=c.masked.n_inits, executor=c.executor)
    return {"PLATON mask": spawn_study(replace(finetuned, child_hooks=(ticket,)),
                                       c.masked.steps, **kw),
            "random mask, same per-tensor density": spawn_study(
                replace(finetuned, child_hooks=(control,)), [0], **kw),
            "PLATON mask on a random init": spawn_study(replace(scratch, child_hooks=(ticket,)),
                                                        [0], **kw)}


def masked_table(studies: Mapping[str, Results]) -> pd.DataFrame:
    """Per masked condition and spawn step: pairs, the children's accuracy, the error barrier
    with its verdict and evaluation noise, and Frankle's I_E."""
    rows = []
    for name, r in studies.items():
        noise = evaluation_noise(r)
        for k in sorted(test_rows(r).spawn_step.unique()):
            b = at_step(r, int(k))
            acc = mean_at(r, "accuracy", int(k))
            rows.append({"children": name, "k": int(k), "pairs": acc[2],
                         "accuracy": pct(acc[0], acc[1], digits=1), "error barrier": pct(*b),
                         "verdict": verdict(*b), "evaluation noise (SD)": pct(noise.get(k)),
                         "I_E (Frankle)": pct(*at_step(r, int(k), column="instability_error"))})
    return pd.DataFrame(rows)


def ticket_rows(ticket: Results, pruning: pd.DataFrame, condition: str) -> tuple[pd.DataFrame,
                                                                                   pd.DataFrame]:
    """The ticket's pairs at k = 0 and the pruning runs of `condition`, as rows keyed by
    replicate (for `paired`)."""
    t = test_rows(ticket)
    t = t[t.spawn_step == 0][["spawn_step", "replicate", "pair", "accuracy"]]
    p = pruning[pruning.condition == condition].assign(spawn_step=0, pair=0)
    return t, p[p.replicate.isin(t.replicate)][["spawn_step", "replicate", "pair", "accuracy"]]


def lottery_table(studies: Mapping[str, Results], pruning: pd.DataFrame,
                  platon: str) -> pd.DataFrame:
    """The ticket against its controls and against the pruned network it came from: each
    difference of test accuracy pair by pair (matched seeds), with its 95% CI."""
    names = list(studies)
    ticket = studies[names[0]]
    rows = [{"comparison": f"ticket − {name}", "pairs": d[2], "accuracy difference": pct(d[0],
             d[1], digits=1)} for name in names[1:]
            for d in [paired(studies[name], ticket, "accuracy")]]
    t, p = ticket_rows(ticket, pruning, platon)
    d = paired(p, t, "accuracy")
    rows.append({"comparison": f"ticket − {platon} (the run it came from)", "pairs": d[2],
                 "accuracy difference": pct(d[0], d[1], digits=1)})
    return pd.DataFrame(rows)


# -- stability and prunability --------------------------------------------------------------------
def prunability(studies: Mapping[str, Results], resamples: int = 2000,
                seed: int = 0) -> dict[str, Any]:
    """Do stability and prunability go together? Per pair of masked children: its error barrier
    and the accuracy the children reach. Analysed only where some condition is unstable (its
    whole barrier CI at or above the threshold): then Spearman's ρ over the pairs, with a
    bootstrap 95% interval (pairs resampled within each condition, `resamples` draws from
    `seed`). Returns the per-pair table, the verdicts, and ρ (nan when not analysed)."""
    from scipy.stats import spearmanr

    pairs = pd.concat([test_rows(r).assign(children=name) for name, r in studies.items()],
                      ignore_index=True)
    verdicts = {(name, int(k)): verdict(*at_step(r, int(k))) for name, r in studies.items()
                for k in test_rows(r).spawn_step.unique()}
    out = {"pairs": pairs, "verdicts": verdicts, "rho": float("nan"), "rho_ci": (math.nan,) * 2,
           "unstable": [key for key, v in verdicts.items() if v == "unstable"]}
    if not out["unstable"] or len(pairs) < 4:
        return out
    x, y = pairs.error_barrier.to_numpy(), pairs.accuracy.to_numpy()
    out["rho"] = float(spearmanr(x, y).statistic)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero((pairs.children == n).to_numpy()) for n in studies]
    draws = []
    for _ in range(resamples):
        idx = np.concatenate([rng.choice(g, len(g)) for g in groups if len(g)])
        draws.append(spearmanr(x[idx], y[idx]).statistic)
    out["rho_ci"] = tuple(float(q) for q in np.nanpercentile(draws, [2.5, 97.5]))
    return out


def plot_prunability(analysis: Mapping[str, Any]) -> Any:
    """Each pair of masked children: the accuracy they reach against their error barrier, one
    colour per condition, with the threshold."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.4), constrained_layout=True)
    for i, (name, g) in enumerate(analysis["pairs"].groupby("children", sort=False)):
        ax.scatter(g.error_barrier, g.accuracy, color=f"C{i}", s=18, label=name)
    ax.axvline(STABLE_THRESHOLD, color="red", lw=1, ls=":",
               label=f"{STABLE_THRESHOLD:.0%} threshold")
    ax.set_xlabel("error barrier of the masked pair (test)")
    ax.set_ylabel("accuracy of its children (test)")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.legend(fontsize=7)
    return fig


# -- the page's widgets and timing ----------------------------------------------------------------
def pair_slider(setup: Setup, results: Results, view: Any, k: int = 0, *, init: int = 0,
                device: str = "cpu", title: str = "") -> Any:
    """The α-slider of replicate `init`'s pair at spawn step `k` (`pair_runs`)."""
    from ..book.widgets import alpha_slider

    trunk, child = pair_runs(setup, init, k)
    c = results.curves
    curve = c[(c.spawn_step == k) & (c.replicate == init) & (c.pair == 0)]
    with torch.random.fork_rng():
        model = build(setup.net, setup.data_dir).to(device)
    return alpha_slider(curve, model, trunk.weights(), child.weights(), view,
                        title=title or f"{setup.model}, pair at k={k}")


def step_timing(runs: Mapping[str, Run]) -> pd.DataFrame:
    """Seconds per optimizer step of finished runs, from their `events.jsonl` (each stretch from
    a start — init, spawn or resume — to `done`; checkpoint writes and logging included; wall
    time of the worker, so a loaded machine shows in it)."""
    rows = []
    for name, run in runs.items():
        events = [json.loads(line) for line in (run.dir / "events.jsonl").read_text().splitlines()]
        steps = seconds = 0.0
        for start, end in zip(events, events[1:]):
            if start["event"] in ("init", "spawn", "resume") and end["event"] == "done":
                steps += end["step"] - start["step"]
                seconds += end["time"] - start["time"]
        rows.append({"run": name, "steps timed": int(steps),
                     "ms per step": f"{1e3 * seconds / steps:.0f}" if steps else "n/a"})
    return pd.DataFrame(rows)


# -- what differs, what was measured, the claims --------------------------------------------------
SOURCE = "Han & Zhu"
# What Han & Zhu report (ViT-B/16 from the hub, CIFAR-10 at 224×224; test accuracy).
SOURCE_ACCURACY = {"dense": 0.98, "PLATON 20%": 0.953, "PLATON 5%": 0.937, "ticket 20%": 0.936}


def deviations(c: Config, finetuned: Setup) -> pd.DataFrame:
    """What differs from the source, one row per deviation (`report.deviations_table`)."""
    from ..book.report import deviations_table

    ft, shape = c.finetune, vit_shape(c.shape)
    epochs = finetuned.total_steps / finetuned.steps_per_epoch
    pruning = parse_steps(c.pruning.max_steps, finetuned.steps_per_epoch)
    masked_later = [k for k in finetuned.steps(c.masked.steps) if k > 0]
    own = c.pretrained == OWN
    rows = [
        ("pretrained model", "the hub's ViT-B/16 (85.8M parameters), ImageNet-21k",
         (f"{c.shape} ({shape.hidden_size} wide, {shape.num_layers} layers, patch "
          f"{shape.patch_size}) pretrained here for {c.pretrain.steps:,} steps on Tiny "
          "ImageNet-20 (10,000 images)") if own else c.pretrained,
         "far lower accuracies; a weaker source, so the transfer is shown, not assumed"),
        ("images", "224×224, the processor's normalization",
         f"{shape.image_size}×{shape.image_size}, the dataset's statistics",
         "a smaller input; the same augmentation"),
        ("fine-tuning length", "8 epochs",
         f"{finetuned.total_steps:,} steps of {ft.batch_size} ({epochs:.2f} epochs), chosen "
         "by the pilot", "children have less time to drift apart (the pilot shows how the "
         "barrier grows with length)"),
        ("learning rate", "AdamW 2·10⁻⁴, no schedule given",
         f"AdamW {ft.lr:g}, {ft.schedule}, {ft.warmup_steps} warm-up steps"
         + (", chosen by the pilot" if ft.lr != 2e-4 else " (the source's)"),
         "the pilot measures both rates" if ft.lr != 2e-4 else "none"),
        ("weight decay", "not given (torch's AdamW default is 0.01)", f"{ft.weight_decay:g}",
         "none at this length: the decay multiplies weights by "
         f"{(1 - ft.lr * ft.weight_decay) ** finetuned.total_steps:.4f} over the run"),
        ("batch size", "not given", str(ft.batch_size), "SGD noise per step"),
        ("pairs", "two children spawned at k", "the trunk at its end and one child spawned at "
         "k (the same distribution)", "two runs per pair instead of three"),
        ("replicates", "one pair per figure", f"{c.n_inits} pairs per start, 95% t-intervals, "
         "differences at matched seeds", "verdicts with confidence intervals"),
        ("evaluation", "the test set",
         f"{_images(c.eval_iters, c.eval_batch)} test and "
         f"{_images(c.train_eval_iters, c.eval_batch)} train images, {c.n_alpha} α; the "
         "error barrier's bootstrap SD shown", "a barrier known to its evaluation noise"),
        ("pruning", "4 of the 8 epochs, density reached by the end of epoch 3",
         f"{pruning:,} steps (half the fine-tuning), the final density held for the last "
         f"{parse_steps(c.pruning.final_warmup, finetuned.steps_per_epoch)}; "
         f"{c.pruning.n_inits} replicates", "the same schedule, scaled"),
        ("the lottery ticket's optimizer",
         "the mask on the pretrained weights, retrained (weights and gradients zeroed)",
         "children spawned from the dense trunk at k with the mask kept after every step; at "
         "k = 0 their AdamW moments are zero (a fresh optimizer)"
         + (f"; at k = {', '.join(map(str, masked_later))} they continue the dense trunk's "
            "moments and schedule" if masked_later else ""),
         "none at k = 0; at k > 0 BERT-Tickets and open_lth start a fresh optimizer at the "
         "rewind point, this book does not" if masked_later else
         "none: the book's masked children all start at k = 0"),
        ("masks", "one mask", f"one mask, from replicate 0's {SCORE_NAMES[c.pruning.scores[0]]} "
         f"{c.pruning.densities[0]:.0%} run, in every replicate",
         "the CI covers training noise, not the noise of finding the mask"),
    ]
    return deviations_table(rows)


def _images(iters: int | str, batch: int) -> str:
    return "all" if iters == "all" else f"{iters * batch:,}"


def summary(c: Config, measured: Mapping[str, Any]) -> dict[str, str]:
    """The numbers the chapter's prose states. `measured`: `spawn` ({"fine-tuned", "from
    scratch"}: `pair_study`s), `pruning` (`pruning_results`), `masked` (`lottery_studies`),
    `prunability` (`prunability`), `source_accuracy`, `pilot` (`pilot_summary`, or None)."""
    spawn, pruning, masked = measured["spawn"], measured["pruning"], measured["masked"]
    ft, sc = spawn["fine-tuned"], spawn["from scratch"]
    out: dict[str, str] = {}
    for key, r in (("ft", ft), ("scratch", sc)):
        b = at_step(r, 0)
        noise = evaluation_noise(r).get(0, float("nan"))
        acc = mean_at(r, "accuracy")
        out |= {f"{key}_k0": pct(*b), f"{key}_k0_verdict": verdict(*b),
                f"{key}_noise": pct(noise), f"{key}_acc": pct(acc[0], acc[1], digits=1),
                f"{key}_n": str(acc[2])}
    gap = paired(ft, sc, "error_barrier")
    transfer = paired(sc, ft, "accuracy")
    out["gap"] = pct(gap[0], gap[1])
    out["transfer"] = pct(transfer[0], transfer[1], digits=1)
    out["transfer_verdict"] = ("transfers" if transfer[0] - transfer[1] > 0.05 else
                               "does not transfer" if transfer[0] + transfer[1] < 0.05 else
                               "may or may not transfer")
    src = measured.get("source_accuracy")
    out["source_acc"] = pct(*src, digits=1) if src else "n/a (pretrained elsewhere)"
    out["answer"] = (f"children fine-tuned from the pretrained ViT are {out['ft_k0_verdict']} at "
                     f"k = 0 (error barrier {out['ft_k0']}), children of a random initialization "
                     f"are {out['scratch_k0_verdict']} ({out['scratch_k0']}); n = {out['ft_n']} "
                     "pairs each")
    for name in pruning.condition.unique():
        if name != "dense":
            cost = pruning_cost(pruning, name)
            out[f"cost_{name.replace(' ', '_').replace('%', '')}"] = pct(cost[0], cost[1],
                                                                          digits=1)
    names = list(masked)
    for key, name in zip(("ticket", "random", "reinit"), names):
        acc = mean_at(masked[name], "accuracy")
        out[f"{key}_acc"] = pct(acc[0], acc[1], digits=1)
    for key, name in zip(("vs_random", "vs_reinit"), names[1:]):
        d = paired(masked[name], masked[names[0]], "accuracy")
        out[f"ticket_{key}"] = pct(d[0], d[1], digits=1)
    out["prunability"] = prunability_text(measured["prunability"])
    pilot = measured.get("pilot")
    out["pilot"] = (pilot_text(pilot) if pilot is not None else "Not measured: the pilot has "
                    "not been run, so this section has no answer along the length yet")
    out["pilot_span"] = (f"for {pilot.epochs.max():.2f} epochs ({int(pilot.steps.max()):,} steps)"
                         if pilot is not None else "not at all (it has not been run)")
    setup = measured["finetuned"]
    with torch.random.fork_rng():
        net = build(setup.net, setup.data_dir)
    out["params"] = f"{sum(t.numel() for t in net.parameters()) / 1e6:.2f} million"
    out["epochs"] = f"{_epochs(measured):.2f}"
    out["test_images"] = _images(c.eval_iters, c.eval_batch)
    return out


def _epochs(measured: Mapping[str, Any]) -> float:
    setup = measured["finetuned"]
    return setup.total_steps / setup.steps_per_epoch


def prunability_text(analysis: Mapping[str, Any]) -> str:
    """What the stability-and-prunability analysis found, or why it is not shown."""
    if not analysis["unstable"]:
        pairs = analysis["pairs"]
        return (f"not analysed: no masked condition is unstable (the largest pair's error "
                f"barrier is {pct(pairs.error_barrier.max())}), so there is no unstable "
                "network to set against the stable ones — the source could not prune one either")
    lo, hi = analysis["rho_ci"]
    return (f"Spearman's ρ between a pair's error barrier and its children's accuracy is "
            f"{analysis['rho']:.2f} (bootstrap 95% interval {lo:.2f} to {hi:.2f}) over "
            f"{len(analysis['pairs'])} pairs; the unstable condition(s): "
            + ", ".join(f"{name} at k = {k}" for name, k in analysis["unstable"])
            + " — a comparison across conditions, not within one")


def pilot_text(pilot: pd.DataFrame) -> str:
    """The pilot's answer in one sentence: the barrier at k = 0 at the longest length, per start
    and learning rate."""
    longest = pilot[pilot.steps == pilot.steps.max()]
    parts = [f"{r.start} at lr {r.lr:g}, {pct(r.error_barrier, r.error_barrier_ci)} "
             f"({r.verdict})" for r in longest.itertuples()]
    return (f"After {int(longest.steps.iloc[0]):,} steps ({longest.epochs.iloc[0]:.2f} epochs) "
            "the error barrier of pairs spawned at k = 0 is: " + "; ".join(parts))


def claims(c: Config, measured: Mapping[str, Any]) -> list[Claim]:
    """Han & Zhu's statements (and Frankle et al.'s, Zhang et al.'s) against this chapter's
    measurements (`measured` as for `summary`)."""
    spawn, pruning, masked = measured["spawn"], measured["pruning"], measured["masked"]
    ft, sc = spawn["fine-tuned"], spawn["from scratch"]
    scale = (f"a {vit_shape(c.shape).hidden_size}-wide ViT pretrained here, fine-tuned "
             f"{_epochs(measured):.2f} epochs; the source: the hub's ViT-B/16 for 8")
    names = list(masked)
    ticket = masked[names[0]]
    platon = f"PLATON {c.pruning.densities[0]:.0%}"

    def n_of(x: tuple[float, float, int]) -> tuple[float, float]:
        return x[0], x[1]

    def barrier(r: Results) -> dict[str, Any]:
        m, ci = at_step(r, 0)
        return {"measured": m, "ci": ci, "n": mean_at(r, "error_barrier")[2]}

    src = SOURCE_ACCURACY
    out = [
        Claim(SOURCE, "children fine-tuned from the pretrained ViT are linearly connected",
              "error barrier (test) at k = 0", **barrier(ft), rule="stable", note=scale),
        Claim(SOURCE, "… test loss even falls along the path", "loss barrier (test) at k = 0",
              *n_of(mean_at(ft, "loss_barrier")), "<0", scale, percent=False,
              n=mean_at(ft, "loss_barrier")[2]),
        Claim(SOURCE, "children of a random initialization are not", "error barrier (test) at "
              "k = 0", **barrier(sc), rule="unstable", note=scale),
        Claim(SOURCE, "… their loss peaks near α = 0.5 at over twice the endpoints' mean",
              "peak test loss / ends' mean at k = 0", *n_of(mean_at(sc, "loss_peak_ratio")),
              ">2", scale, percent=False, n=mean_at(sc, "loss_peak_ratio")[2]),
        Claim(SOURCE, "fine-tuned children are more connected than children from scratch",
              "scratch − fine-tuned error barrier, matched seeds",
              *n_of(paired(ft, sc, "error_barrier")), ">0", "the contrast the source draws",
              n=paired(ft, sc, "error_barrier")[2]),
        Claim("this chapter's premise", "the pretrained source transfers: fine-tuned children "
              "are at least 5 points more accurate than children from scratch",
              "fine-tuned − scratch test accuracy, matched seeds",
              *n_of(paired(sc, ft, "accuracy")), ">0.05",
              "the source's 98% after 8 epochs; without transfer the contrast means little",
              n=paired(sc, ft, "accuracy")[2]),
    ]
    for name in (f"PLATON {d:.0%}" for d in c.pruning.densities):
        if name in src and name in set(pruning.condition):
            cost = pruning_cost(pruning, name)
            out.append(Claim(SOURCE, f"{name} costs {src['dense'] - src[name]:.1%} of test "
                             f"accuracy ({src[name]:.1%} vs {src['dense']:.0%})",
                             f"dense − {name}, same trunk", cost[0], cost[1],
                             f"≈{src['dense'] - src[name]:.3f}±0.02",
                             "pruned for half the dense fine-tuning, as the source; " + scale,
                             n=cost[2]))
    t, p = ticket_rows(ticket, pruning, platon)
    d = paired(p, t, "accuracy")
    out.append(Claim(SOURCE, f"the {c.pruning.densities[0]:.0%} mask on the pretrained weights, "
                     "retrained, reaches 93.6%, 1.7 points below PLATON's own network",
                     f"ticket − {platon}, same replicate", d[0], d[1],
                     f"≈{src['ticket 20%'] - src['PLATON 20%']:.3f}±0.02",
                     "the ticket trains as long as the dense model, PLATON half as long",
                     n=d[2]))
    for name, statement in zip(names[1:], (
            "a pruning mask beats a random mask of the same per-layer density",
            "a mask needs the weights it was found on: on a random initialization it does "
            "worse")):
        d = paired(masked[name], ticket, "accuracy")
        out.append(Claim("Frankle et al. 2020", statement, f"ticket − {name}, matched seeds",
                         d[0], d[1], ">0", "children at k = 0; one mask", n=d[2]))
    magnitude = f"magnitude {c.pruning.densities[0]:.0%}"
    if magnitude in set(pruning.condition):
        rows = pruning[pruning.condition.isin([platon, magnitude])].assign(spawn_step=0)
        d = paired_difference(rows[rows.condition == magnitude], rows[rows.condition == platon],
                              "accuracy", on=("spawn_step", "replicate")).iloc[0]
        out.append(Claim("Zhang et al. 2022", f"PLATON keeps more accuracy than magnitude "
                         f"pruning (at {c.pruning.densities[0]:.0%} density)",
                         f"{platon} − {magnitude}, same trunk", float(d.accuracy),
                         float(d.accuracy_ci95), ">0", "the same cubic schedule", n=int(d.n)))
    analysis = measured["prunability"]
    out.append(Claim(f"{SOURCE} (open question)", "do stability and prunability go together? "
                     "(more unstable masked pairs reach lower accuracy)",
                     "Spearman's ρ, barrier vs accuracy, per masked pair",
                     analysis["rho"] if analysis["unstable"] else None,
                     _half_width(analysis["rho"], analysis["rho_ci"]), "<0",
                     prunability_text(analysis), percent=False))
    return out


def _half_width(rho: float, interval: tuple[float, float]) -> float | None:
    """The larger distance from ρ to an end of its bootstrap interval (a symmetric CI that
    holds the percentile interval)."""
    lo, hi = interval
    return None if math.isnan(lo) else max(rho - lo, hi - rho)
