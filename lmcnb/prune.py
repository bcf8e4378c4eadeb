"""Masks and pruning: PLATON and magnitude pruning on one cubic schedule, masks kept after every
optimizer step, random masks of the same per-tensor density, and lottery tickets m ⊙ W_k.

A mask maps parameter names to bool tensors (True = kept). It is a plain dict, so it goes into
checkpoints as it is, and into a file of its own named by its content (`save_mask`), which a
`Ref.of("hook", "mask", ...)` names by path and digest. Pruning hooks run after every optimizer
step (see `lmcnb.train.Hook`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

Mask = dict[str, torch.Tensor]

# What PLATON prunes in a ViT, by substring of the parameter name (weights and biases): the
# attention's Q/K/V and output projection, and both MLP matrices. transformers 4.x names them
# `attention.attention.{query,key,value}`, `attention.output.dense`, `intermediate.dense`,
# `output.dense` (the BERT list `attention.self` misses Q/K/V); 5.x renames them in memory to
# `attention.{q,k,v,o}_proj`, `mlp.fc1`, `mlp.fc2` (its checkpoints keep the 4.x names).
VIT_PRUNABLE = ("attention.attention", "attention.output.dense", "intermediate.dense",
                "output.dense", "attention.q_proj", "attention.k_proj", "attention.v_proj",
                "attention.o_proj", "mlp.fc1", "mlp.fc2")
# Never pruned, whatever `include` says (matched in the lower-cased name).
NEVER_PRUNED = ("embeddings", "layernorm", "layer_norm", "pooler", "classifier")
SCORES = ("platon", "magnitude")


def prunable(model: nn.Module | Mapping[str, torch.Tensor],
             include: tuple[str, ...] = VIT_PRUNABLE) -> dict[str, torch.Tensor]:
    """The tensors selected for pruning: names containing any of `include`, none of NEVER_PRUNED.

    `model` is a module (its parameters) or a state dict.
    """
    tensors = dict(model.named_parameters()) if isinstance(model, nn.Module) else model
    chosen = {name: t for name, t in tensors.items() if any(s in name for s in include)
              and not any(s in name.lower() for s in NEVER_PRUNED)}
    if not chosen:
        raise ValueError(f"no tensor name contains any of {include}")
    return chosen


def density(tensors: Mapping[str, torch.Tensor]) -> float:
    """Fraction of nonzero entries over all `tensors` together (of a mask: the kept fraction)."""
    kept = sum(int(torch.count_nonzero(t)) for t in tensors.values())
    return kept / sum(t.numel() for t in tensors.values())


def tensor_densities(tensors: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of nonzero entries of each tensor."""
    return {name: int(torch.count_nonzero(t)) / t.numel() for name, t in tensors.items()}


# -- masks -------------------------------------------------------------------------------------
def _check(mask: Mapping[str, torch.Tensor]) -> None:
    wrong = [name for name, m in mask.items() if m.dtype != torch.bool]
    if wrong:
        raise TypeError(f"a mask holds bool tensors; not so for {wrong[:3]}")


def final_mask(model: nn.Module | Mapping[str, torch.Tensor],
               include: tuple[str, ...] = VIT_PRUNABLE) -> Mask:
    """The mask of a pruned model: True where a selected tensor's entry is nonzero."""
    return {name: t.detach() != 0 for name, t in prunable(model, include).items()}


def random_mask(mask: Mapping[str, torch.Tensor], generator: torch.Generator) -> Mask:
    """A mask that keeps as many entries of each tensor as `mask`, at uniformly random places.

    Draws one permutation per tensor from `generator` (a CPU generator), in the mask's order.
    """
    _check(mask)
    out = {}
    for name, m in mask.items():
        keep = torch.zeros(m.numel(), dtype=torch.bool)
        keep[torch.randperm(m.numel(), generator=generator)[:int(m.sum())]] = True
        out[name] = keep.view(m.shape).to(m.device)
    return out


def apply_mask(state: Mapping[str, torch.Tensor],
               mask: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """m ⊙ W: a copy of the state dict with every entry off the mask set to zero.

    Applied to the weights W_k of step k it gives the lottery ticket rewound to k.
    """
    _check(mask)
    unknown = sorted(mask.keys() - state.keys())
    if unknown:
        raise KeyError(f"the mask names tensors the state does not have: {unknown[:3]}")
    return {name: t.masked_fill(~mask[name].to(t.device), 0) if name in mask else t.clone()
            for name, t in state.items()}


def mask_digest(mask: Mapping[str, torch.Tensor]) -> str:
    """What identifies a mask: a hash of its tensor names, shapes and bits."""
    from .checkpoint import tensor_digest

    _check(mask)
    return tensor_digest(dict(mask))[:16]


def save_mask(mask: Mapping[str, torch.Tensor], folder: str | Path) -> Any:
    """Write `mask` to `<folder>/mask-<digest>.safetensors` (atomically, verified on load) and
    return the hook that keeps it: `Ref.of("hook", "mask", path=..., digest=...)`. A run's
    identity holds the digest, not the path."""
    from .checkpoint import save_state
    from .registry import Ref

    digest = mask_digest(mask)
    path = Path(folder) / f"mask-{digest}.safetensors"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        save_state(path, {"mask": {name: m.cpu() for name, m in mask.items()}},
                   identity={"mask": digest})
    return Ref.of("hook", "mask", path=str(path), digest=digest)


def load_mask(path: str | Path, digest: str) -> Mask:
    """The mask `save_mask` wrote to `path`, refused (a `CheckpointError`) unless it is `digest`."""
    from .checkpoint import load_state

    mask = load_state(path, identity={"mask": digest})["mask"]
    _check(mask)
    return mask


class MaskHook:
    """A trainer hook that keeps a masked network masked: after every optimizer step it sets the
    weights off the mask to exactly zero. (The step moves them: their gradients are not zero and
    momentum carries earlier ones; AdamW's decoupled weight decay alone would keep a zero at zero.)
    Their gradients are not masked, so with `grad_clip` they count in the global norm.

    It also masks the starting weights (`start`, called when training starts from an
    initialization or a spawn point), so the first forward pass sees m ⊙ W too. The mask is the
    hook's state, saved in the trainer's checkpoints.
    """

    def __init__(self, mask: Mapping[str, torch.Tensor]):
        _check(mask)
        self.mask = dict(mask)

    @torch.no_grad()
    def __call__(self, trainer: Any) -> None:
        params = dict(trainer.model.named_parameters())
        for name, m in self.mask.items():
            p = params[name]
            self.mask[name] = m = m.to(p.device)  # once: a no-op afterwards
            p.masked_fill_(~m, 0)

    start = __call__

    def state_dict(self) -> dict[str, Any]:
        return {"mask": dict(self.mask)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check(state["mask"])
        self.mask = dict(state["mask"])


# -- the schedule and the pruning hook ---------------------------------------------------------
@dataclass(frozen=True)
class CubicSchedule:
    """PLATON's kept fraction r(t) at optimizer step t = 1..T, and when to prune.

    t ≤ t_i: r = 1, no pruning.
    t_i < t ≤ T − t_f: r = r_T + (1 − r_T)·(1 − (t − t_i)/(T − t_i − t_f))³, pruning when
    t % deltaT == 0. t > T − t_f: r = r_T, pruning at every step.
    (t_i = `initial_warmup`, t_f = `final_warmup`, r_T = `final_density`, all steps.)
    """

    total_steps: int
    final_density: float
    initial_warmup: int = 0
    final_warmup: int = 0
    delta_t: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.final_density <= 1:
            raise ValueError(f"final_density must be in (0, 1], got {self.final_density}")
        if self.delta_t < 1 or min(self.initial_warmup, self.final_warmup) < 0:
            raise ValueError("delta_t must be >= 1 and the warmups >= 0")
        if self.total_steps - self.initial_warmup - self.final_warmup <= 0:
            raise ValueError(f"initial_warmup + final_warmup ({self.initial_warmup} + "
                             f"{self.final_warmup}) leave none of the {self.total_steps} steps "
                             "for the cubic decay")

    def kept(self, step: int) -> float:
        """r(t), the fraction of the selected weights kept after pruning at step t."""
        r_t, t_i = self.final_density, self.initial_warmup
        if step <= t_i:
            return 1.0
        if step > self.total_steps - self.final_warmup:
            return r_t
        span = self.total_steps - t_i - self.final_warmup
        return r_t + (1 - r_t) * (1 - (step - t_i) / span) ** 3

    def prunes_at(self, step: int) -> bool:
        if step <= self.initial_warmup:
            return False
        return step > self.total_steps - self.final_warmup or step % self.delta_t == 0


class Platon:
    """PLATON (Zhang et al., ICML 2022) as a trainer hook, as its official code does it.

    At every step t (after the optimizer step, before the gradients are cleared) the importance
    I = |θ ⊙ ∇θL| of each selected weight joins the current window. When t % deltaT == 0 the
    window's mean Ī_w (its sum over deltaT; the first window counts a step 0 with I = 0) updates
    Ī ← β1·Ī + (1 − β1)·Ī_w, then Ū ← β2·Ū + (1 − β2)·|Ī_w − Ī|, and a new window starts with
    this step's I. The score is Ī·Ū (Ī alone for β2 = 1). When the schedule prunes, the selected
    weights with the lowest (1 − r(t))·N scores, over all tensors at once (one global threshold),
    are set to zero in place; no mask is kept, so a weight may come back. Ties at the threshold
    are broken by position, so exactly round((1 − r)·N) weights are zeroed.

    `score="magnitude"` ranks by |θ| instead, on the same schedule. The windows, moving averages,
    the last step seen and the pruning history are the hook's state, saved in the trainer's
    checkpoints. A hook serves one trainer: fresh, it may start at any step; once used, only at
    the next step (or after `load_state_dict`).
    """

    def __init__(self, schedule: CubicSchedule, beta1: float = 0.85, beta2: float = 0.95,
                 include: tuple[str, ...] = VIT_PRUNABLE, score: str = "platon"):
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; valid: {', '.join(SCORES)}")
        if not (0 <= beta1 < 1 and 0 < beta2 <= 1):
            raise ValueError(f"need 0 <= beta1 < 1 and 0 < beta2 <= 1, got {beta1}, {beta2}")
        self.schedule, self.beta1, self.beta2 = schedule, beta1, beta2
        self.include, self.score = tuple(include), score
        self.window: dict[str, torch.Tensor] = {}  # sum of I over the current window
        self.ipt: dict[str, torch.Tensor] = {}  # Ī
        self.unc: dict[str, torch.Tensor] = {}  # Ū
        self.history: list[dict[str, float]] = []  # one row per pruning event
        self.step: int | None = None  # the last step accounted for

    def __call__(self, trainer: Any) -> None:
        self.update(trainer.model, trainer.progress.step)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Account for optimizer step `step` (1-based); its gradients must still be in `.grad`."""
        if self.step is not None and step != self.step + 1:
            raise RuntimeError(f"this PLATON hook last saw step {self.step}, not {step - 1}: give "
                               "every trainer its own hook, or restore it with the trainer's state")
        self.step = step
        params = prunable(model, self.include)
        if self.score == "platon":
            self._accumulate(params, step)
        if self.schedule.prunes_at(step):
            self._prune(params, step)

    def scores(self, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The current score of every entry of `params` (low scores are pruned first)."""
        if self.score == "magnitude":
            return {name: p.detach().abs() for name, p in params.items()}
        if self.beta2 == 1:
            return {name: self.ipt[name] for name in params}
        return {name: self.ipt[name] * self.unc[name] for name in params}

    def _accumulate(self, params: dict[str, torch.Tensor], step: int) -> None:
        for name, p in params.items():
            importance = (p * p.grad).abs_()
            window = _entry(self.window, name, p)
            if step % self.schedule.delta_t:
                window.add_(importance)
                continue
            mean = window.div_(self.schedule.delta_t)
            ipt = _entry(self.ipt, name, p).mul_(self.beta1).add_(mean, alpha=1 - self.beta1)
            if self.beta2 < 1:
                unc = _entry(self.unc, name, p).mul_(self.beta2)
                unc.add_((mean - ipt).abs_(), alpha=1 - self.beta2)
            self.window[name] = importance

    def _prune(self, params: dict[str, torch.Tensor], step: int) -> None:
        if self.score == "platon" and not self.ipt:
            raise RuntimeError(f"PLATON would prune at step {step}, before its first window of "
                               f"{self.schedule.delta_t} steps closed: lengthen initial_warmup or "
                               "shorten final_warmup")
        kept = self.schedule.kept(step)
        flat = torch.cat([s.flatten().float() for s in self.scores(params).values()])
        n_prune = round(flat.numel() * (1 - kept))
        if n_prune == 0:
            return
        threshold = _kth_smallest(flat, n_prune)
        drop = flat <= threshold
        extra = int(drop.sum()) - n_prune  # ties at the threshold: keep the last ones
        if extra:
            drop[(flat == threshold).nonzero().flatten()[-extra:]] = False
        for p, d in zip(params.values(), drop.split([p.numel() for p in params.values()])):
            p.masked_fill_(d.view(p.shape), 0)
        self.history.append({"step": step, "kept": kept, "threshold": float(threshold)})

    def state_dict(self) -> dict[str, Any]:
        return {"window": dict(self.window), "ipt": dict(self.ipt), "unc": dict(self.unc),
                "step": self.step, "history": [dict(row) for row in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window, self.ipt, self.unc = ({name: t.clone() for name, t in state[k].items()}
                                           for k in ("window", "ipt", "unc"))
        self.step = state["step"]
        self.history = [dict(row) for row in state["history"]]


def _kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest (1-based) of non-negative float32 `values`, as `values.kthvalue(k)` but
    several times faster on millions of scores: non-negative floats order like their bit patterns,
    so one histogram of the top 16 bits finds the bucket that holds it; `kthvalue` searches that."""
    bucket = values.view(torch.int32) >> 16
    below = torch.bincount(bucket, minlength=1 << 15).cumsum(0)
    b = int(torch.searchsorted(below, k))  # the first bucket with at least k values up to it
    return values[bucket == b].kthvalue(k - (int(below[b - 1]) if b else 0)).values


def _entry(store: dict[str, torch.Tensor], name: str, p: torch.Tensor) -> torch.Tensor:
    """`store[name]` on `p`'s device, zeros like `p` at first."""
    t = store.get(name)
    store[name] = t = torch.zeros_like(p) if t is None else t.to(p.device)
    return t


# -- pruning in a study ------------------------------------------------------------------------
def platon_hook(setup: Any, final_density: float, *, score: str = "platon",
                initial_warmup: int | str = 0, final_warmup: int | str = 0, delta_t: int = 10,
                beta1: float = 0.85, beta2: float = 0.95) -> Any:
    """`Ref.of("hook", "platon", ...)` pruning every run of `setup` to `final_density` by its end;
    warm-ups in steps or `"1ep"` strings of `setup`'s training data. Built once here, so a bad
    value fails before anything trains."""
    from .registry import Ref, build
    from .train import parse_steps

    hook = Ref.of("hook", "platon", total_steps=setup.total_steps, final_density=final_density,
                  initial_warmup=parse_steps(initial_warmup, setup.steps_per_epoch),
                  final_warmup=parse_steps(final_warmup, setup.steps_per_epoch),
                  delta_t=delta_t, beta1=beta1, beta2=beta2, score=score)
    build(hook)
    return hook


def pruned_runs(setup: Any, hooks: Mapping[str, Any], executor: Any = "serial") -> dict[str, Any]:
    """{name: trunk 0 of `setup` trained with `hooks[name]`} (e.g. `platon_hook`s), finished: on
    `executor` (with its thread budget; in parallel on a Dask cluster)."""
    from dataclasses import replace

    from .executors import Task, get_executor
    from .runs import Run

    runs = {name: replace(setup, hooks=(hook,)).trunk(0) for name, hook in hooks.items()}
    tasks = [Task(f"train-{run.spec.run_id}", Run.final_step, (run,)) for run in runs.values()]
    get_executor(executor).run(tasks, [t.key for t in tasks])
    return runs


def mask_of(run: Any, include: tuple[str, ...] = VIT_PRUNABLE) -> Any:
    """The mask of a finished pruning run (its nonzero selected weights), saved in its folder;
    returns the hook that keeps it (`save_mask`)."""
    return save_mask(final_mask(run.weights(), include), run.dir)


def random_like(mask_hook: Any, seed: int) -> Any:
    """A mask hook keeping as many entries of each tensor as `mask_hook`'s mask, at random places
    (drawn from `seed`), saved beside it."""
    mask = random_mask(hook_mask(mask_hook), torch.Generator().manual_seed(seed))
    return save_mask(mask, Path(mask_hook.kwargs()["path"]).parent)


def hook_mask(mask_hook: Any) -> Mask:
    """The mask a `Ref.of("hook", "mask", ...)` keeps."""
    args = mask_hook.kwargs()
    return load_mask(args["path"], args["digest"])


def accuracy_of(setup: Any, weights: Mapping[str, torch.Tensor]) -> float:
    """Accuracy of `weights` on the test sample `setup`'s curves use (`eval_iters` batches)."""
    from .interpolate import eval_subset
    from .params import pick_device
    from .registry import build
    from .train import evaluate

    device, bs = pick_device(setup.device), setup.eval_batch_size
    with torch.random.fork_rng():
        model = build(setup.net, setup.data_dir)
    model.load_state_dict(weights)
    test = eval_subset(setup.load(setup.test_data), setup.eval_iters, bs, device, seed=2)
    return 1 - evaluate(model.to(device), test, bs)[1]


def pruning_table(setup: Any, runs: Mapping[str, Any],
                  include: tuple[str, ...] = VIT_PRUNABLE) -> Any:
    """One row per run: density over the selected tensors, over all parameters, and test
    accuracy of its final weights (`accuracy_of`)."""
    import pandas as pd

    rows = []
    for name, run in runs.items():
        weights = run.weights()
        rows.append({"run": name, "density (selected)": density(prunable(weights, include)),
                     "density (all)": density(weights),
                     "test accuracy": accuracy_of(setup, weights)})
    return pd.DataFrame(rows)


# -- pictures ----------------------------------------------------------------------------------
MATRIX_TYPES = {"Q": ("query", "q_proj"), "K": ("key", "k_proj"), "V": ("value", "v_proj"),
                "O": ("attention.output.dense", "o_proj"), "MLP in": ("intermediate.dense", "fc1"),
                "MLP out": ("output.dense", "fc2")}  # first match wins: O before MLP out


def kept_by_layer(mask: Mapping[str, torch.Tensor]) -> Any:
    """Kept fraction of a ViT mask per encoder layer (rows) and matrix type (columns), weights
    and biases together."""
    import re

    import pandas as pd

    kept: dict[tuple[int, str], list[int]] = {}
    for name, m in mask.items():
        layer = re.search(r"layers?\.(\d+)\.", name)
        kind = next((k for k, subs in MATRIX_TYPES.items() if any(s in name for s in subs)), None)
        if layer is None or kind is None:
            raise ValueError(f"{name!r} is not a ViT encoder matrix")
        count = kept.setdefault((int(layer[1]), kind), [0, 0])
        count[0], count[1] = count[0] + int(m.sum()), count[1] + m.numel()
    table = pd.Series({key: k / n for key, (k, n) in kept.items()}).unstack()
    return table[[k for k in MATRIX_TYPES if k in table.columns]].rename_axis("layer")


def plot_kept(mask: Mapping[str, torch.Tensor], title: str = "") -> Any:
    """A heatmap of `kept_by_layer(mask)`, the kept fraction printed in each cell."""
    import matplotlib.pyplot as plt

    table = kept_by_layer(mask)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * table.shape[1], 0.9 + 0.4 * table.shape[0]))
    im = ax.imshow(table.values, cmap="viridis", vmin=0, aspect="auto")
    for (i, j), v in np.ndenumerate(table.values):
        ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7,
                color="white" if v < 0.6 * table.values.max() else "black")
    ax.set_xticks(range(table.shape[1]), table.columns)
    ax.set_yticks(range(table.shape[0]), table.index)
    ax.set_xlabel("matrix")
    ax.set_ylabel("encoder layer")
    ax.set_title(title or f"kept fraction (overall {density(mask):.1%})", fontsize=9)
    fig.colorbar(im, ax=ax, format=lambda v, _: f"{v:.0%}")
    fig.tight_layout()
    return fig


def plot_training_loss(runs: Mapping[str, Any], ema: float = 0.9, title: str = "") -> Any:
    """Each run's logged training loss (thin) and its exponential moving average (weight `ema`
    on the past; thick), against the optimizer step."""
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for i, (name, run) in enumerate(runs.items()):
        run.final_step()
        log = pd.read_csv(run.dir / "log.csv")
        color = f"C{i}"
        ax.plot(log.step, log.train_loss, color=color, lw=0.6, alpha=0.35)
        ax.plot(log.step, log.train_loss.ewm(alpha=1 - ema).mean(), color=color, lw=1.6,
                label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(title or f"training loss and its EMA (β = {ema})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# -- masked networks: stability and accuracy ---------------------------------------------------
def stability_and_accuracy(results: Any, split: str = "test") -> Any:
    """Per spawn step of a study (of masked children, say): pairs, mean test-error instability
    and mean accuracy of the children, each with its 95% CI half-width."""
    import pandas as pd

    from .metrics import mean_ci

    b = results.barriers[results.barriers.split == split]
    rows = []
    for k, group in b.groupby("spawn_step"):
        inst, inst_ci = mean_ci(group.instability_error)
        acc, acc_ci = mean_ci(1 - (group.error_a + group.error_b) / 2)
        rows.append({"k": int(k), "pairs": len(group), "instability": inst,
                     "instability_ci": inst_ci, "accuracy": acc, "accuracy_ci": acc_ci})
    return pd.DataFrame(rows)


def masked_table(studies: Mapping[str, Any], split: str = "test") -> Any:
    """One row per study and spawn step: the children's accuracy and their instability, as
    "mean ± CI", with the stability verdict."""
    import pandas as pd

    from .chapter import pct, verdict

    rows = [{"children": name, "k": r.k, "pairs": r.pairs,
             "accuracy": pct(r.accuracy, r.accuracy_ci, digits=1),
             "instability (test error)": pct(r.instability, r.instability_ci),
             "verdict": verdict(r.instability, r.instability_ci)}
            for name, results in studies.items()
            for r in stability_and_accuracy(results, split).itertuples()]
    return pd.DataFrame(rows)


def plot_stability_vs_accuracy(studies: Mapping[str, Any], split: str = "test",
                               title: str = "") -> Any:
    """Accuracy of masked children against the instability of their pair, one point per spawn
    step k (labelled), one colour per study, with 95% CIs both ways and the threshold."""
    import matplotlib.pyplot as plt

    from .metrics import STABLE_THRESHOLD

    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for i, (name, results) in enumerate(studies.items()):
        t = stability_and_accuracy(results, split)
        ax.errorbar(t.instability, t.accuracy, xerr=t.instability_ci.fillna(0),
                    yerr=t.accuracy_ci.fillna(0), fmt="o", color=f"C{i}", capsize=3, label=name)
        for r in t.itertuples():
            ax.annotate(f"k={r.k}", (r.instability, r.accuracy), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
    ax.axvline(STABLE_THRESHOLD, color="red", lw=1, ls=":",
               label=f"{STABLE_THRESHOLD:.0%} threshold")
    ax.set_xlabel(f"instability of the masked pair ({split} error)")
    ax.set_ylabel(f"accuracy of the masked children ({split})")
    ax.set_title(title or "stability and prunability", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
