"""Pruning in studies: the hook refs of PLATON and of fixed masks, pruned runs trained on an
executor, the masks they leave, random controls, and accuracy on a setup's test sample.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..prune.mask import VIT_PRUNABLE, Mask, final_mask, load_mask, random_mask, save_mask


def platon_hook(setup: Any, final_density: float, *, score: str = "platon",
                initial_warmup: int | str = 0, final_warmup: int | str = 0, delta_t: int = 10,
                beta1: float = 0.85, beta2: float = 0.95) -> Any:
    """`Ref.of("hook", "platon", ...)` pruning every run of `setup` to `final_density` by its end;
    warm-ups in steps or `"1ep"` strings of `setup`'s training data. Built once here, so a bad
    value fails before anything trains."""
    from ..core.ref import Ref
    from ..core.steps import parse_steps
    from .catalog import build

    hook = Ref.of("hook", "platon", total_steps=setup.total_steps, final_density=final_density,
                  initial_warmup=parse_steps(initial_warmup, setup.steps_per_epoch),
                  final_warmup=parse_steps(final_warmup, setup.steps_per_epoch),
                  delta_t=delta_t, beta1=beta1, beta2=beta2, score=score)
    build(hook)
    return hook


def pruned_runs(setup: Any, hooks: Mapping[str, Any], executor: Any = "serial") -> dict[str, Any]:
    """{name: trunk 0 of `setup` trained with `hooks[name]`} (e.g. `platon_hook`s), finished: on
    `executor` (with its thread budget; in parallel on a Dask cluster)."""
    return {name: runs[0] for name, runs in pruned_replicates(setup, hooks, 1, executor).items()}


def pruned_replicates(setup: Any, hooks: Mapping[str, Any], n_inits: int,
                      executor: Any = "serial") -> dict[str, list[Any]]:
    """{name: [trunks 0 … n_inits − 1 of `setup` trained with `hooks[name]`]}, finished on
    `executor`. Trunk i has the seeds of `setup`'s dense trunk i (its head, data order and
    augmentation): a pruned run and the dense run of the same replicate are a matched pair."""
    from dataclasses import replace

    from .executors import Task, get_executor
    from .runs import Run

    runs = {name: [replace(setup, hooks=(hook,)).trunk(i) for i in range(n_inits)]
            for name, hook in hooks.items()}
    tasks = [Task(f"train-{run.spec.run_id}", Run.ensure_trained, (run,))
             for replicates in runs.values() for run in replicates]
    get_executor(executor).run(tasks, [t.key for t in tasks])
    return runs


def run_accuracies(setup: Any, runs: list[Any], executor: Any = "serial") -> list[float]:
    """`accuracy_of` the final weights of each finished run in `runs`, as tasks on `executor`."""
    from .executors import Task, get_executor

    tasks = [Task(f"accuracy-{run.spec.run_id}-{i}", _run_accuracy, (setup, run))
             for i, run in enumerate(runs)]
    return get_executor(executor).run(tasks, [t.key for t in tasks])


def _run_accuracy(setup: Any, run: Any) -> float:
    return accuracy_of(setup, finished_weights(run))


def finished_weights(run: Any) -> dict[str, torch.Tensor]:
    """The endpoint weights of a finished run (`NotTrained` if it has not finished); a checkpoint
    that fails verification is re-made (`Run.ensure_weights`), the only training this does."""
    run.final_step()
    return run.ensure_weights()


def mask_of(run: Any, include: tuple[str, ...] = VIT_PRUNABLE) -> Any:
    """The mask of a finished pruning run (its nonzero selected weights), saved in its folder;
    returns the hook that keeps it (`save_mask`: a damaged file is re-made, the same mask)."""
    return save_mask(final_mask(finished_weights(run), include), run.dir)


def random_like(mask_hook: Any, seed: int) -> Any:
    """A mask hook keeping as many entries of each tensor as `mask_hook`'s mask, at random places
    (drawn from `seed`), saved beside it (`save_mask`: a damaged file is re-made, the same
    draw)."""
    mask = random_mask(hook_mask(mask_hook), torch.Generator().manual_seed(seed))
    return save_mask(mask, Path(mask_hook.kwargs()["path"]).parent)


def hook_mask(mask_hook: Any) -> Mask:
    """The mask a `Ref.of("hook", "mask", ...)` keeps, verified (`load_mask`)."""
    args = mask_hook.kwargs()
    return load_mask(args["path"], args["digest"])


def accuracy_of(setup: Any, weights: Mapping[str, torch.Tensor]) -> float:
    """Accuracy of `weights` on the test sample `setup`'s curves use (`eval_iters` batches)."""
    from ..core.device import pick_device
    from ..lmc.interpolate import eval_subset
    from ..train.evaluation import evaluate
    from .catalog import build

    device, bs = pick_device(setup.device), setup.eval_batch_size
    with torch.random.fork_rng():
        model = build(setup.net, setup.data_dir)
    model.load_state_dict(weights)
    test = eval_subset(setup.load(setup.test_data), setup.eval_iters, bs, device, seed=2)
    return 1 - evaluate(model.to(device), test, bs).error
