"""The ViT chapter as data: Han and Zhu's study of fine-tuned against scratch ViTs on CIFAR-10, a
ViT pretrained here and published like a hub checkpoint, the pruning and lottery-mask sections,
the claims.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import ViTConfig

from ..core.hub import from_hub
from ..data.images import NORMALIZATIONS
from ..models.vit import ViTShape, load_pretrained, save_pretrained, vit_shape


def _augment_ref(dataset: str, normalize: str, augment: dict[str, Any] | None) -> Any:
    from ..core.ref import Ref

    return Ref.of("augment", "vit", dataset=dataset, normalize=normalize, **(augment or {}))


def pretrain(shape: str, train: Any, runs_dir: str | Path, steps: Sequence[int | str], *,
             dataset: str = "tiny_imagenet", size: int = 32, augment: dict[str, Any] | None = None,
             device: str = "auto", seed: int = 0, data_dir: str | None = None,
             executor: Any = "serial") -> dict[int, str]:
    """Pretrain a ViT of `shape` on all classes of `dataset` at `size`×`size` (seed 004's
    augmentation when `train.augment`, with `augment`'s arguments) as a resumable run on
    `executor`, and publish its weights at each of `steps` (0 is the initialization) as a
    `save_pretrained` folder, `<runs_dir>/pretrained/<run id>-step<k>`. Returns {step: folder};
    `load_pretrained(folder, num_labels)` reads any of them as `from_pretrained` reads a hub id."""
    from ..core.ref import Ref
    from ..core.rng import Seeds
    from ..core.steps import parse_steps
    from ..experiments.catalog import build
    from ..experiments.executors import Task, get_executor
    from ..experiments.pretrain import publish_weights
    from ..experiments.runs import Run, RunSpec, data_fingerprint

    data = Ref.of("data", "vit_images", name=dataset, split="train", size=size)
    images = build(data, data_dir)
    net = Ref.of("model", "vit", shape=shape, num_labels=len(images.classes))
    aug = _augment_ref(dataset, "dataset", augment) if train.augment else None
    args = (("vit", tuple(sorted(asdict(vit_shape(shape)).items()))), ("size", size),
            ("num_labels", len(images.classes)), ("augment", aug.args if aug else None))
    spec = RunSpec(f"vit-{shape}", dataset, train, Seeds.from_base(seed, "pretrain"), args,
                   data_fingerprint(images))
    run = Run(spec, Path(runs_dir) / "train", net, data, device, aug, data_dir=data_dir)
    per_epoch = train.steps_per_epoch(len(images))
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
            return load_pretrained(str(folder), len(images.classes)).state_dict()

    root = Path(runs_dir) / "pretrained"
    return {k: str(publish_weights(run, k, root / f"{spec.run_id}-step{k}", save, load))
            for k in at}


def vit_setup(chapter: str, model: str, train: Any, runs_dir: str | Path, *,
              shape: str | None = None, pretrained: str | None = None, dataset: str = "cifar10",
              size: int | None = None, normalize: str = "dataset",
              augment: dict[str, Any] | None = None, data_dir: str | None = None,
              **setup_kwargs: Any) -> Any:
    """An image-classification `Setup` for a ViT: a random initialization of `shape`, or
    `pretrained` (a hub id or a `save_pretrained` directory) with a new head; either way the head
    is drawn once, in the trunk's init stream, and its children inherit it. Images are resized to
    `size` and normalized as `normalize` says (`pixel_stats`); with `train.augment`, seed 004's
    augmentation takes `augment`'s arguments (`crop_scale`, `jitter`)."""
    from ..core.ref import Ref
    from ..experiments.catalog import build
    from ..experiments.setup import Setup
    from ..models.pretrained import pretrained_id

    if (shape is None) == (pretrained is None):
        raise ValueError("give a ViT shape (random initialization) or a pretrained source, "
                         "not both")
    split = {s: Ref.of("data", "vit_images", name=dataset, split=s, size=size,
                       normalize=normalize) for s in ("train", "test")}
    labels = len(build(split["train"], data_dir).classes)
    if pretrained is not None:
        digest = pretrained_id(pretrained)
        net = Ref.of("model", "pretrained_vit", source=str(pretrained), num_labels=labels,
                     digest=digest)
        start = ("pretrained", digest)
    else:
        net = Ref.of("model", "vit", shape=shape, num_labels=labels)
        start = ("vit", tuple(sorted(asdict(vit_shape(shape)).items())))
    aug = _augment_ref(dataset, normalize, augment) if train.augment else None
    args = (start, ("num_labels", labels), ("images", (size, normalize)),
            ("augment", aug.args if aug else None))
    return Setup(chapter=chapter, model=model, dataset=dataset, net=net,
                 train_data=split["train"], test_data=split["test"], train=train,
                 runs_dir=str(runs_dir), augment=aug, model_args=args, data_dir=data_dir,
                 **setup_kwargs)


CHAPTER = "vit_platon"


OWN = "own"  # `pretrained="own"`: pretrain here, on Tiny ImageNet-20


SCORE_NAMES = {"platon": "PLATON", "magnitude": "magnitude"}


RECIPE_KEYS = ("batch_size", "max_steps", "lr", "warmup_steps", "schedule", "weight_decay",
               "log_every")


def recipe(section: dict[str, Any]) -> Any:
    """A section's training recipe: AdamW, seed 004's augmentation, and the section's
    `RECIPE_KEYS` (the loss is logged every `log_every` steps)."""
    from ..core.checks import at_least
    from ..core.steps import parse_steps
    from ..train.recipe import TrainConfig

    values = {k: v for k, v in section.items() if k in RECIPE_KEYS}
    at_least("batch_size", values.get("batch_size"), 1)
    parse_steps(values.get("max_steps"), 1)
    log_every = values.pop("log_every", "1ep")
    return TrainConfig(optimizer="adamw", augment=True, eval_every=log_every, **values)


def chapter_setup(p: Any, start: str, source: str | None = None) -> Any:
    """The chapter's CIFAR-10 `Setup` named `<shape>-<start>`: a random initialization of
    `p.shape` (`source=None`), or the pretrained model in `source` (of that shape), fine-tuned
    with `p.finetune`."""
    images = p.images
    if source is not None:
        c, want = from_hub(ViTConfig, source), vit_shape(p.shape)
        found = ViTShape(c.image_size, c.patch_size, c.hidden_size, c.num_hidden_layers,
                         c.num_attention_heads, c.intermediate_size, c.hidden_dropout_prob)
        if found != want:
            raise ValueError(f"the pretrained model {source} has shape {found}, but shape "
                             f"{p.shape!r} is {want}: the random-init control must match it")
    return vit_setup(CHAPTER, f"{p.shape}-{start}", recipe(p.finetune), p.runs_dir,
                     shape=p.shape if source is None else None, pretrained=source,
                     size=images.get("size"), normalize=images["normalize"],
                     augment={"crop_scale": images["crop_scale"],
                              "jitter": tuple(images["jitter"])},
                     data_dir=p.data_dir, device=p.device or "auto", seed=p.seed,
                     n_alpha=p.n_alpha, eval_iters=p.eval_iters, eval_batch_size=p.eval_batch)


def pruning_setup(p: Any, setup: Any) -> Any:
    """`setup` with the pruning section's length (seed 004 pruned for half the fine-tuning)."""
    from dataclasses import replace

    return replace(setup, train=replace(setup.train, max_steps=p.pruning["max_steps"]))


def pruning_hooks(p: Any, setup: Any) -> dict[str, Any]:
    """One hook per score and density of the pruning section, named like "PLATON 20%"."""
    from ..experiments.pruning import platon_hook

    ps, cfg = pruning_setup(p, setup), p.pruning
    return {f"{SCORE_NAMES[score]} {d:.0%}": platon_hook(
        ps, d, score=score, initial_warmup=cfg["initial_warmup"],
        final_warmup=cfg["final_warmup"], delta_t=cfg["delta_t"], beta1=cfg["beta1"],
        beta2=cfg["beta2"]) for score in cfg["scores"] for d in cfg["densities"]}


def check(p: Any) -> Any:
    """Check every chapter parameter before anything trains; returns the random-init setup."""
    from ..core.checks import at_least, choose, pretrained_source
    from ..core.steps import step_list
    from ..data.vision import require_vision
    from ..experiments.catalog import build
    from ..experiments.executors import get_executor
    from ..prune.platon import SCORES

    if p.pretrained != OWN:
        pretrained_source("pretrained", p.pretrained)
    vit_shape(p.shape)
    require_vision("cifar10", p.data_dir)
    if p.pretrained == OWN and not p.pretrain:
        raise ValueError("pretrained='own' needs the pretrain section (steps, checkpoints, ...)")
    if p.pretrain:
        require_vision("tiny_imagenet", p.data_dir)
        at_least("pretrain steps", p.pretrain["steps"], 1)
        at_least("pretrain n_inits", p.pretrain["n_inits"], 1)
        bad = [s for s in p.pretrain["checkpoints"] if not 0 <= s < p.pretrain["steps"]]
        if bad:
            raise ValueError(f"pretraining checkpoint(s) {bad} are not in [0, "
                             f"{p.pretrain['steps']}) (the last step is always kept)")
        recipe({**p.finetune, **p.pretrain, "max_steps": p.pretrain["steps"]})
    choose("normalize", p.images["normalize"], NORMALIZATIONS)
    build(_augment_ref("cifar10", p.images["normalize"], {
        "crop_scale": p.images["crop_scale"], "jitter": tuple(p.images["jitter"])}))
    at_least("n_inits", p.n_inits, 1)
    at_least("masked n_inits", p.masked["n_inits"], 1)
    at_least("eval_batch", p.eval_batch, 1)
    bad = [d for d in p.pruning["densities"] if not (isinstance(d, float) and 0 < d < 1)]
    if bad or not p.pruning["densities"]:
        raise ValueError(f"prune densities must be fractions in (0, 1) (got {bad})")
    for score in p.pruning["scores"]:
        choose("prune score", score, SCORES)
    get_executor(p.executor)
    scratch = chapter_setup(p, "scratch")
    scratch.steps(step_list("spawn_steps", p.spawn_steps), "spawn_steps")
    scratch.steps(step_list("scratch_steps", p.scratch_steps), "scratch_steps")
    for key in ("steps", "scratch_steps"):
        scratch.steps(step_list(f"masked {key}", p.masked[key]), f"masked {key}")
    pruning_hooks(p, scratch)
    return scratch


def own_checkpoints(p: Any) -> dict[int, str]:
    """{pretraining step: folder} of the model pretrained here: `p.shape` on Tiny ImageNet-20 at
    its image size for `p.pretrain["steps"]`, kept at every checkpoint step and at the end; {}
    without a pretrain section. `pretrained="own"` fine-tunes the last of them."""
    if not p.pretrain:
        return {}
    section = p.pretrain
    train = recipe({**p.finetune, **section, "max_steps": section["steps"]})
    augment = {"crop_scale": p.images["crop_scale"], "jitter": tuple(p.images["jitter"])}
    return pretrain(p.shape, train, p.runs_dir, [*section["checkpoints"], section["steps"]],
                    size=vit_shape(p.shape).image_size, augment=augment, device=p.device or "auto",
                    seed=p.seed, data_dir=p.data_dir, executor=p.executor)


def describe(setups: dict[str, Any]) -> Any:
    """The models and their data, one row per setup."""
    import pandas as pd

    from ..experiments.catalog import build

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


def pretraining_length(p: Any, checkpoints: dict[int, str],
                       executor: Any = "serial") -> dict[int, Any]:
    """{pretraining step: spawn study at k = 0} of children fine-tuned from each checkpoint
    (`p.pretrain["n_inits"]` replicates each)."""
    from ..experiments.study import spawn_study

    return {step: spawn_study(chapter_setup(p, f"pt{step}", folder), [0],
                              n_inits=p.pretrain["n_inits"], executor=executor)
            for step, folder in sorted(checkpoints.items())}


def pretraining_table(studies: dict[int, Any]) -> Any:
    """Per pretraining length: the instability of children spawned at k = 0 of fine-tuning, its
    verdict, and the children's accuracy."""
    import pandas as pd

    from ..book.report import accuracy, at_step, pct, verdict

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

    from ..book.report import at_step
    from ..lmc.metrics import STABLE_THRESHOLD

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
    import json

    import pandas as pd

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


def summary(results: dict[str, Any], length: dict[int, Any], pruning: Any,
            masked: dict[str, Any], random: Any, reinit: Any) -> dict[str, str]:
    """The numbers the chapter's prose states. `results`: the "fine-tuned" and "from scratch"
    spawn studies; `length`: `pretraining_length`; `pruning`: `prune.pruning_table` (first row
    dense); `masked`: spawn studies of masked children, the first of the fine-tuned model with
    the PLATON mask; its controls at k = 0: a `random` mask of the same per-layer density, and
    the same mask on a random initialization (`reinit`)."""
    from scipy.stats import spearmanr

    from ..book.report import accuracy, at_step, k_star_text, pct, verdict
    from .pruning import stability_and_accuracy

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


def claims(results: dict[str, Any], pruning: Any, masked: dict[str, Any], random: Any,
           reinit: Any) -> list[Any]:
    """Han & Zhu's statements (and Frankle et al.'s) against this chapter's measurements."""
    from ..book.report import Claim, at_step
    from .pruning import stability_and_accuracy

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
