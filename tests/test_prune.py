"""Masks and pruning (lmcnb.prune) and the trainer hooks they run as (lmcnb.train): PLATON's
schedule and score update against hand computations, exact final density, Q/K/V selected, masked
weights exactly zero under AdamW, bit-identical resumption (of a trainer and of a killed Run),
random masks, masked interpolation; hooks as registry refs and masks as files named by their
content, masked children of a dense trunk in a study, the kept-fraction picture's table; on a
re-run, damaged masks (PLATON's, the random control) re-made as a fresh folder makes them and a
damaged training log refused, naming it."""
import itertools
import json
import pickle
import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from helpers import assert_same
from safetensors.torch import load_file
from torch import nn

from lmcnb.chapters import pruning as prune
from lmcnb.core.checkpoint import CheckpointError, load_state, save_state
from lmcnb.core.ref import Ref
from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data.augment import vit_augment
from lmcnb.data.tensors import TensorData
from lmcnb.experiments.catalog import build, check
from lmcnb.experiments.pruning import hook_mask, mask_of, random_like
from lmcnb.experiments.runs import Run, RunSpec, hook_identity
from lmcnb.experiments.study import children, spawn_study
from lmcnb.lmc.interpolate import Interpolator, interpolate_state
from lmcnb.models import vit
from lmcnb.prune.mask import (
    MaskHook,
    apply_mask,
    density,
    final_mask,
    prunable,
    random_mask,
    save_mask,
    tensor_densities,
)
from lmcnb.prune.platon import CubicSchedule, Platon
from lmcnb.train.recipe import TrainConfig
from lmcnb.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")

TOY = vit.ViTShape(8, 4, 16, 2, 2, 32, dropout=0.1)  # 8×8 images, 5 tokens, dropout on
SELECTED = 2 * (4 * (16 * 16 + 16) + (16 * 32 + 32) + (32 * 16 + 16))  # Q, K, V, O, MLP in/out


def _data(n=64, seed=0) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))


SEEDS = Seeds(1, 2, 3, 4)


def _trainer(cfg: TrainConfig, hooks=(), seeds=SEEDS, start=None) -> Trainer:
    streams = RngStreams(seeds)
    with streams.active("init"):
        model = vit.build_vit(vit.vit_config(TOY, 10))
    if start is not None:
        model.load_state_dict(start)
    return Trainer(model, cfg, _data(), streams, augment=vit_augment((0.5,) * 3, (0.25,) * 3),
                   hooks=hooks)


# -- the schedule and the score ----------------------------------------------------------------
def test_cubic_schedule_matches_the_formula_at_chosen_steps():
    s = CubicSchedule(total_steps=100, final_density=0.2, initial_warmup=10, final_warmup=20,
                      delta_t=5)
    span = 100 - 10 - 20
    for t in (1, 5, 10):  # warm-up: everything kept, no pruning
        assert s.kept(t) == 1.0 and not s.prunes_at(t)
    for t in (11, 15, 33, 50, 79, 80):  # cubic decay, pruning every deltaT steps
        assert s.kept(t) == pytest.approx(0.2 + 0.8 * (1 - (t - 10) / span) ** 3)
        assert s.prunes_at(t) == (t % 5 == 0)
    assert s.kept(11) == pytest.approx(0.2 + 0.8 * (69 / 70) ** 3)
    assert s.kept(80) == pytest.approx(0.2)
    for t in (81, 82, 99, 100):  # final phase: the target density, pruning at every step
        assert s.kept(t) == 0.2 and s.prunes_at(t)
    kept = [s.kept(t) for t in range(1, 101)]
    assert all(a >= b for a, b in itertools.pairwise(kept))
    with pytest.raises(ValueError, match="cubic decay"):
        CubicSchedule(total_steps=30, final_density=0.2, initial_warmup=10, final_warmup=20)
    with pytest.raises(ValueError, match="final_density"):
        CubicSchedule(total_steps=30, final_density=0.0)


class _TwoTensors(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 1, bias=False), nn.Linear(2, 1, bias=False)


def test_platon_score_update_matches_a_hand_computation_over_two_windows():
    """deltaT = 2, β1 = 1/2, β2 = 3/4 (binary fractions: exact). Tensor b has 10× a's weights,
    so 10× its importances and 100× its scores: the one global threshold (the 2nd smallest of the
    four scores, k = int(4·(1 − 0.5))) lies in a, and the entry strictly below it is pruned, as the
    official pruner does — a per-tensor threshold would have pruned an entry of b too."""
    model = _TwoTensors()
    theta = [(1.0, -2.0), (2.0, 1.0), (1.0, 1.0), (0.5, 2.0)]  # after optimizer steps 1..4
    grad = [(0.5, 0.25), (-1.0, 1.0), (4.0, -3.0), (2.0, 2.0)]
    schedule = CubicSchedule(total_steps=8, final_density=0.5, initial_warmup=3, final_warmup=4,
                             delta_t=2)  # prunes first at step 4, to r = 0.5
    hook = Platon(schedule, beta1=0.5, beta2=0.75, include=("weight",))
    for step, (w, g) in enumerate(zip(theta, grad), start=1):
        for p, scale in ((model.a.weight, 1.0), (model.b.weight, 10.0)):
            p.data = torch.tensor([w]) * scale
            p.grad = torch.tensor([g])
        hook(SimpleNamespace(model=model, progress=SimpleNamespace(step=step)))
        if step == 2:  # window 1 = steps 0 (I = 0) and 1; folded, then step 2 opens window 2
            i1 = [abs(w * g) for w, g in zip(theta[0], grad[0])]  # (0.5, 0.5)
            mean = [(0 + x) / 2 for x in i1]
            ipt = [0.5 * 0 + 0.5 * m for m in mean]
            unc = [0.75 * 0 + 0.25 * abs(m - i) for m, i in zip(mean, ipt)]
            assert hook.ipt["a.weight"].tolist() == [ipt] and hook.unc["a.weight"].tolist() == [unc]
            assert hook.window["a.weight"].tolist() == [[2.0, 1.0]]  # I at step 2
    # Window 2 = steps 2 and 3, folded at step 4.
    i2, i3 = ([abs(w * g) for w, g in zip(theta[k], grad[k])] for k in (1, 2))
    mean = [(x + y) / 2 for x, y in zip(i2, i3)]  # (3, 2)
    ipt2 = [0.5 * i + 0.5 * m for i, m in zip(ipt, mean)]
    unc2 = [0.75 * u + 0.25 * abs(m - i) for u, m, i in zip(unc, mean, ipt2)]
    assert hook.ipt["a.weight"].tolist() == [ipt2] == [[1.5625, 1.0625]]
    assert hook.unc["a.weight"].tolist() == [unc2] == [[0.3828125, 0.2578125]]
    assert hook.ipt["b.weight"].tolist() == [[10 * x for x in ipt2]]
    scores = hook.scores(dict(model.named_parameters()))
    assert scores["a.weight"].tolist() == [[i * u for i, u in zip(ipt2, unc2)]]
    # Pruning at step 4: the scores strictly below the 2nd smallest, in a.
    assert model.a.weight.tolist() == [[0.5, 0.0]] and model.b.weight.tolist() == [[5.0, 20.0]]
    assert hook.history == [{"step": 4, "kept": 0.5, "threshold": float(scores["a.weight"].max())}]
    # β2 = 1: the score is Ī alone, and no uncertainty is kept.
    plain = Platon(schedule, beta1=0.5, beta2=1.0, include=("weight",))
    for step, (w, g) in enumerate(zip(theta[:2], grad[:2]), start=1):
        model.a.weight.data, model.a.weight.grad = torch.tensor([w]), torch.tensor([g])
        model.b.weight.data, model.b.weight.grad = torch.tensor([w]), torch.tensor([g])
        plain(SimpleNamespace(model=model, progress=SimpleNamespace(step=step)))
    assert plain.unc == {}
    assert plain.scores({"a.weight": model.a.weight})["a.weight"].tolist() == [ipt]


@pytest.mark.parametrize("kept", [0.5, 0.9, 1e-4])  # 0.5: the threshold falls among the ties
def test_one_global_threshold_zeroes_exactly_the_scores_below_the_kth(kept):
    """Magnitude scores over 40 orders of magnitude, with exact zeros and 5,000 ties: the
    threshold is the k-th smallest score, k = int(N·(1 − r)), and exactly the weights strictly
    below it are zeroed (the official pruner's count: k − 1 without ties)."""
    g = torch.Generator().manual_seed(0)
    values = torch.cat([10.0 ** (40 * torch.rand(30_000, generator=g) - 20), torch.zeros(2_000),
                        torch.full((5_000,), 0.5), -torch.rand(3_000, generator=g)])
    values = values[torch.randperm(len(values), generator=g)]
    model = _TwoTensors()
    model.a.weight.data = values[None, :15_000].clone()  # pruning writes in place
    model.b.weight.data = values[None, 15_000:].clone()
    hook = Platon(CubicSchedule(total_steps=3, final_density=kept, final_warmup=2),
                  include=("weight",), score="magnitude")
    hook(SimpleNamespace(model=model, progress=SimpleNamespace(step=2)))  # final phase: prunes
    after = torch.cat([model.a.weight.flatten(), model.b.weight.flatten()])
    k = int(len(values) * (1 - kept))
    threshold = float(values.abs().sort().values[k - 1])
    assert hook.history[0]["threshold"] == threshold
    below = values.abs() < threshold
    assert bool((after[below] == 0).all()) and torch.equal(after[~below], values[~below])


def test_hooks_see_the_steps_clipped_gradients_and_updated_weights():
    """SGD with lr 1, no momentum, clipping at 0.01: a hook sees gradients of norm 0.01 and the
    weights after the update (previous weights − gradient); its step count starts at 1."""
    seen = []

    def record(trainer):
        p = trainer.model.classifier.weight
        grads = torch.cat([q.grad.flatten() for q in trainer.model.parameters()])
        seen.append((trainer.progress.step, p.grad.clone(), p.detach().clone(),
                     torch.linalg.vector_norm(grads)))

    cfg = TrainConfig(batch_size=16, max_steps=3, optimizer="sgd", lr=1.0, momentum=0.0,
                      grad_clip=0.01)
    t = _trainer(cfg, hooks=[record])
    before = t.model.classifier.weight.detach().clone()
    t.run(3)
    assert [s for s, *_ in seen] == [1, 2, 3]
    for _, grad, weight, norm in seen:
        assert norm == pytest.approx(0.01, rel=1e-4)
        assert torch.allclose(weight, before - grad, atol=1e-7, rtol=0)
        before = weight
    assert t.model.classifier.weight.grad is None  # cleared after the hooks


# -- which tensors -----------------------------------------------------------------------------
def test_vit_selection_holds_qkv_and_every_encoder_matrix_and_nothing_else(tmp_path):
    torch.manual_seed(0)
    model = vit.build_vit(vit.vit_config(TOY, 10))
    selected = prunable(model)
    qkv = [n for n, _ in model.named_parameters()
           if any(s in n for s in ("query", "key", "value", "q_proj", "k_proj", "v_proj"))]
    assert len(qkv) == 2 * 3 * 2 and set(qkv) <= set(selected)  # 2 layers, Q/K/V, weight and bias
    linears = [m for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and "classifier" not in name]
    assert sum(p.numel() for p in selected.values()) == sum(p.numel() for m in linears
                                                            for p in m.parameters()) == SELECTED
    never = ("embeddings", "layernorm", "classifier")
    assert not [n for n in selected if any(s in n for s in never)]
    # The same selection on a checkpoint saved by save_pretrained (transformers 4.x names there).
    vit.save_pretrained(model, tmp_path)
    on_disk = prunable(load_file(tmp_path / "model.safetensors"))
    assert sum(t.numel() for t in on_disk.values()) == SELECTED
    assert len([n for n in on_disk if "query" in n or "q_proj" in n]) == 4
    with pytest.raises(ValueError, match="no tensor name"):
        prunable(model, include=("attention.self",))  # BERT's Q/K/V name: absent from a ViT


# -- PLATON and magnitude pruning in training ---------------------------------------------------
@pytest.mark.parametrize("score", ["platon", "magnitude"])
def test_pruning_reaches_the_exact_final_density_over_the_selected_tensors(score):
    schedule = CubicSchedule(total_steps=40, final_density=0.2, initial_warmup=4, final_warmup=10,
                             delta_t=5)
    hook = Platon(schedule, score=score)
    t = _trainer(TrainConfig(batch_size=16, max_steps=40, optimizer="adamw", lr=1e-2), hooks=[hook])
    densities = {}
    t.run(40, on_step=lambda tr: densities.setdefault(tr.progress.step,
                                                      density(prunable(tr.model))))
    kept = SELECTED - (int(SELECTED * 0.8) - 1)  # the official count: k − 1 below the k-th score
    assert density(prunable(t.model)) == kept / SELECTED == pytest.approx(0.2, abs=1e-3)
    assert [row["step"] for row in hook.history] == [5, 10, 15, 20, 25, 30] + list(range(31, 41))
    middle = [schedule.kept(s) for s in (5, 10, 15, 20, 25, 30)]
    assert [row["kept"] for row in hook.history] == middle + [0.2] * 10
    assert densities[4] == 1.0 and densities[5] == pytest.approx(schedule.kept(5), abs=2 / SELECTED)
    assert densities[6] > densities[5]  # no mask: the optimizer moves zeroed weights again
    per_tensor = tensor_densities(prunable(t.model))
    assert min(per_tensor.values()) < 0.2 < max(per_tensor.values())  # one global threshold
    others = {n: p for n, p in t.model.named_parameters() if n not in prunable(t.model)}
    assert density(others) > 0.99


def test_platon_refuses_to_prune_before_its_first_window_closes():
    schedule = CubicSchedule(total_steps=12, final_density=0.5, final_warmup=10, delta_t=5)
    t = _trainer(TrainConfig(batch_size=16, max_steps=12), hooks=[Platon(schedule)])
    t.step(), t.step()
    with pytest.raises(RuntimeError, match="first window"):
        t.step()  # step 3 is in the final phase, which prunes at every step


def test_killed_pruning_run_resumes_bit_identically(tmp_path):
    """Killed at step 13 (inside a window, mid-schedule), saved with save_state, resumed in a new
    trainer with a new hook: every tensor of the final state equals the uninterrupted run's."""
    schedule = CubicSchedule(total_steps=30, final_density=0.3, initial_warmup=3, final_warmup=8,
                             delta_t=5)
    cfg = TrainConfig(batch_size=8, max_steps=30, optimizer="adamw", lr=1e-2, weight_decay=0.1,
                      grad_clip=1.0, augment=True)
    straight = _trainer(cfg, hooks=[Platon(schedule)])
    straight.run(30)

    killed = _trainer(cfg, hooks=[Platon(schedule)])
    killed.run(13)
    save_state(tmp_path / "ckpt.safetensors", killed.state_dict())
    del killed
    state = load_state(tmp_path / "ckpt.safetensors")
    assert state["hooks"][0]["step"] == 13 and state["hooks"][0]["history"][-1]["step"] == 10
    resumed = _trainer(cfg, hooks=[Platon(schedule)], seeds=Seeds(9, 9, 9, 9))
    resumed.load_state_dict(state)
    resumed.run(30)
    assert_same(resumed.state_dict(), straight.state_dict())
    # The check can fail: resumed without PLATON's windows and averages, the run ends elsewhere.
    state["hooks"] = [None]
    amnesic = _trainer(cfg, hooks=[Platon(schedule)])
    amnesic.load_state_dict(state)
    amnesic.run(30)
    assert not torch.equal(amnesic.model.classifier.weight, straight.model.classifier.weight)
    with pytest.raises(RuntimeError, match="last saw step 30"):  # a used hook on a fresh trainer
        _trainer(cfg, hooks=straight.hooks).step()


def test_a_spawned_child_keeps_its_own_hook_state():
    schedule = CubicSchedule(total_steps=30, final_density=0.3, initial_warmup=3, delta_t=5)
    parent = _trainer(TrainConfig(batch_size=16, max_steps=30), hooks=[Platon(schedule)])
    parent.run(12)
    child = _trainer(TrainConfig(batch_size=16, max_steps=30), hooks=[Platon(schedule)])
    child.load_state_dict(parent.state_dict(), rng=False)
    assert child.hooks[0].ipt == {} and child.hooks[0].history == []
    with pytest.raises(ValueError, match="hook states"):
        _trainer(TrainConfig(batch_size=16, max_steps=30)).load_state_dict(parent.state_dict())


# -- masks -------------------------------------------------------------------------------------
def _mask(model, fraction=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(p.shape, generator=g) < fraction for n, p in prunable(model).items()}


def test_masked_weights_are_exactly_zero_after_every_adamw_step(tmp_path):
    cfg = TrainConfig(batch_size=16, max_steps=10, optimizer="adamw", lr=1e-2, weight_decay=0.1)
    off = []

    def check(trainer):
        params = dict(trainer.model.named_parameters())
        off.append([params[n].detach()[~m] for n, m in mask.items()])

    ticket_model = _trainer(cfg).model
    mask = _mask(ticket_model)
    ticket = apply_mask(ticket_model.state_dict(), mask)
    t = _trainer(cfg, hooks=[MaskHook(mask), check], start=ticket)
    t.run(5)
    save_state(tmp_path / "masked.safetensors", t.state_dict())  # the mask is the hook's state
    t = _trainer(cfg, hooks=[MaskHook({}), check])
    t.load_state_dict(load_state(tmp_path / "masked.safetensors"))
    assert all(torch.equal(t.hooks[0].mask[n], m) for n, m in mask.items())
    t.run(10)
    assert len(off) == 10
    for step in off:  # +0.0 exactly (no -0.0): the bits are all zero
        assert all(not v.view(torch.int32).any() for v in step)
    assert density(prunable(t.model)) == pytest.approx(density(mask), abs=1e-12)
    assert not torch.equal(t.model.classifier.weight, ticket["classifier.weight"])
    # The check can fail: without the hook, AdamW moves the pruned weights off zero at once.
    off.clear()
    _trainer(cfg, hooks=[check], start=ticket).step()
    assert any(bool((v != 0).any()) for v in off[0])


def test_final_mask_random_mask_and_the_lottery_ticket():
    model = _trainer(TrainConfig(batch_size=16)).model
    mask = _mask(model, 0.25)
    # The ticket m ⊙ W_k: W_k on the mask, zero off it, untouched elsewhere.
    w_k = {n: p + 1.0 for n, p in model.state_dict().items()}  # no zeros in W_k
    ticket = apply_mask(w_k, mask)
    assert final_mask(ticket).keys() == mask.keys()
    assert all(torch.equal(final_mask(ticket)[n], m) for n, m in mask.items())
    for n, w in w_k.items():
        expected = torch.where(mask[n], w, torch.zeros_like(w)) if n in mask else w
        assert torch.equal(ticket[n], expected), n
    with pytest.raises(TypeError, match="bool"):
        apply_mask(w_k, {n: m.float() for n, m in mask.items()})
    # A random mask: the same number kept in every tensor, elsewhere; reproducible by generator.
    rand = random_mask(mask, torch.Generator().manual_seed(1))
    assert {n: int(m.sum()) for n, m in rand.items()} == {n: int(m.sum()) for n, m in mask.items()}
    assert tensor_densities(rand) == tensor_densities(mask)
    overlap = sum(int((rand[n] & mask[n]).sum()) for n in mask)
    assert overlap < 0.5 * sum(int(m.sum()) for m in mask.values())  # about 25% of the kept
    again = random_mask(mask, torch.Generator().manual_seed(1))
    assert all(torch.equal(again[n], rand[n]) for n in mask)


def test_the_interpolation_path_of_two_masked_children_stays_inside_the_mask():
    cfg = TrainConfig(batch_size=16, max_steps=8, optimizer="adamw", lr=1e-2, weight_decay=0.1)
    parent = _trainer(cfg).model
    mask = _mask(parent, 0.2)
    ticket = apply_mask(parent.state_dict(), mask)
    children = []
    for order in (5, 6):  # same initialization, different data order, augmentation and dropout
        child = _trainer(cfg, hooks=[MaskHook(mask)], seeds=Seeds(1, order, order, order),
                         start=ticket)
        child.run(8)
        children.append(child.model.state_dict())
    a, b = children
    assert not torch.equal(a["vit.layernorm.weight"], b["vit.layernorm.weight"])
    model = _trainer(cfg).model
    interp = Interpolator(model, a, b)
    for alpha in (0.0, 0.25, 0.5, 0.75, 1.0):
        path = interpolate_state(a, b, alpha)
        params = dict(interp.set(alpha).named_parameters())
        for n, m in mask.items():
            assert (path[n][~m] == 0).all() and (params[n].detach()[~m] == 0).all(), (alpha, n)
        assert density(prunable(path)) <= density(mask)


# -- hooks as registry refs, masks as files, in runs and studies --------------------------------
def _platon_ref(total=30, **kw):
    return Ref.of("hook", "platon", total_steps=total, final_density=0.3, initial_warmup=3,
                  final_warmup=8, delta_t=5, **kw)


def _toy_run(root, hooks, ckpt_every=5):
    spec = RunSpec("toyvit", "synthetic8",
                   TrainConfig(batch_size=8, max_steps=30, optimizer="adamw", lr=1e-2,
                               weight_decay=0.1, augment=True),
                   Seeds.from_base(3, "prune"), hooks=tuple(hook_identity(h) for h in hooks))
    return Run(spec, root, lambda: vit.build_vit(vit.vit_config(TOY, 10)), _data(),
               augment=vit_augment((0.5,) * 3, (0.25,) * 3), hooks=hooks, ckpt_every=ckpt_every)


def test_hook_refs_are_plain_data_and_a_mask_is_identified_by_its_content(tmp_path):
    model = vit.build_vit(vit.vit_config(TOY, 10))
    mask = _mask(model, 0.3)
    ref = save_mask(mask, tmp_path / "a")
    moved = tmp_path / "b" / Path(ref.kwargs()["path"]).name
    moved.parent.mkdir()
    shutil.copy(ref.kwargs()["path"], moved)
    same = Ref.of("hook", "mask", path=str(moved), digest=ref.kwargs()["digest"])
    assert pickle.loads(pickle.dumps(ref)) == ref  # a worker rebuilds it from plain data
    assert hook_identity(same) == hook_identity(ref)  # where the file lies is not what it is
    assert all(torch.equal(hook_mask(same)[n], m) for n, m in mask.items())
    other = save_mask(_mask(model, 0.3, seed=1), tmp_path / "a")
    assert hook_identity(other) != hook_identity(ref)
    ids = {_toy_run(tmp_path, hooks).spec.run_id
           for hooks in [(), (ref,), (same,), (other,), (_platon_ref(),),
                         (_platon_ref(score="magnitude"),)]}
    assert len(ids) == 5
    # No hooks: the identity is what it was before hooks were data (existing run ids stand).
    assert "hooks" not in _toy_run(tmp_path, ()).spec.identity()
    # The file is verified: another mask under this digest's name is refused.
    save_state(moved, {"mask": _mask(model, 0.5, seed=2)}, identity={"mask": "0" * 16})
    with pytest.raises(CheckpointError, match="belongs to"):
        hook_mask(same)
    with pytest.raises(ValueError, match="unknown hook 'platonn'"):
        check(Ref.of("hook", "platonn"))  # a setup or a run checks its refs when built


def test_killed_pruning_run_resumes_bit_identically_from_its_last_checkpoint(tmp_path,
                                                                             monkeypatch):
    """A Run with a PLATON hook ref, interrupted at step 13 (its last checkpoint is step 10,
    mid-schedule, inside a window), resumed by a new Run object: the final weights and PLATON's
    state equal an uninterrupted run's, bit for bit."""
    straight = _toy_run(tmp_path / "straight", (_platon_ref(),))
    killed = _toy_run(tmp_path / "killed", (_platon_ref(),))
    assert straight.spec.run_id == killed.spec.run_id
    step = Trainer.step

    def dies_at_14(trainer):
        if trainer.progress.step == 13:
            raise KeyboardInterrupt("killed")
        return step(trainer)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "step", dies_at_14)
        with pytest.raises(KeyboardInterrupt):
            killed.ensure_trained().final_step()
    last = load_state(killed.dir / "last.safetensors")
    assert last["progress"]["step"] == 10 and last["hooks"][0]["step"] == 10
    assert _toy_run(tmp_path / "killed", (_platon_ref(),)).ensure_trained().final_step() == 30
    a, b = straight.ensure_state(30), killed.ensure_state(30)
    assert_same(a["model"], b["model"], "model")
    assert_same(a["hooks"], b["hooks"], "hooks")
    assert density(prunable(b["model"])) == pytest.approx(0.3, abs=1e-3)
    events = [line for line in (killed.dir / "events.jsonl").read_text().splitlines()]
    assert '"event": "resume"' in events[-2] and '"step": 10' in events[-2]


def test_masked_children_of_a_dense_trunk_start_and_stay_inside_the_mask(tmp_path,
                                                                           mnist_setup):
    """child_hooks: the trunk trains dense (its id unchanged), every child starts from m ⊙ W_k
    and keeps the pruned weights exactly zero, and the interpolation path stays in the mask."""
    dense = mnist_setup(tmp_path)
    with torch.random.fork_rng():
        shapes = {n: p.shape for n, p in build(dense.net).named_parameters()}
    g = torch.Generator().manual_seed(0)
    mask = {n: torch.rand(shapes[n], generator=g) < 0.3
            for n in ("classifier.1.weight", "classifier.3.weight")}
    masked = replace(dense, child_hooks=(save_mask(mask, tmp_path / "masks"),))
    assert masked.trunk(0).spec.run_id == dense.trunk(0).spec.run_id
    results = spawn_study(masked, [0, 4], n_children=2)
    kids = {k: children(masked, 0, k, 2) for k in (0, 4)}
    assert kids[0][0].spec.run_id != children(dense, 0, 0, 2)[0].spec.run_id
    trunk = masked.trunk(0).ensure_weights()
    assert all(bool((trunk[n][~m] != 0).all()) for n, m in mask.items())  # dense
    for k, (a, b) in kids.items():
        wa, wb = a.ensure_weights(), b.ensure_weights()
        assert not torch.equal(wa["classifier.5.weight"], wb["classifier.5.weight"])
        start = a.ensure_state(k)  # the child's first checkpoint: m ⊙ W_k
        for n, m in mask.items():
            assert not start["model"][n][~m].any() and torch.equal(
                start["model"][n][m], masked.trunk(0).ensure_weights(k)[n][m])
        for alpha in (0.0, 0.3, 0.5, 1.0):
            path = interpolate_state(wa, wb, alpha)
            assert all(not path[n][~m].any() for n, m in mask.items()), (k, alpha)
    assert set(results.barriers.spawn_step) == {0, 4}
    assert "child_hooks" in json.loads((results.folder / "study.json").read_text())


def test_kept_fraction_per_layer_and_matrix_type():
    model = vit.build_vit(vit.vit_config(TOY, 10))
    mask = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in prunable(model).items()}
    for n, m in mask.items():
        if ".1." in n and ("q_proj" in n or "query" in n):
            m.fill_(True)  # layer 1's Q, weight and bias
        if ".0." in n and ("fc2" in n or ("output.dense" in n and "attention" not in n)):
            m.view(-1)[: m.numel() // 4] = True  # a quarter of layer 0's MLP out
    table = prune.kept_by_layer(mask)
    assert list(table.columns) == ["Q", "K", "V", "O", "MLP in", "MLP out"]
    assert list(table.index) == [0, 1]
    assert table.loc[1, "Q"] == 1.0 and table.loc[0, "Q"] == 0.0
    assert table.loc[0, "MLP out"] == pytest.approx((16 * 32 // 4 + 16 // 4) / (16 * 32 + 16))
    assert table.drop(columns=["Q", "MLP out"]).to_numpy().sum() == 0


# -- a re-run verifies every file it reads, and re-makes the ones it can -------------------------
@pytest.fixture(scope="module")
def pruned_run_folder(tmp_path_factory) -> Path:
    """The root of a finished PLATON run of the toy ViT, trained once: tests copy it."""
    root = tmp_path_factory.mktemp("pruned")
    _toy_run(root, (_platon_ref(),)).ensure_trained()
    return root


def _copy_of(pruned_run_folder: Path, root: Path) -> Run:
    shutil.copytree(pruned_run_folder, root)
    return _toy_run(root, (_platon_ref(),))


def _damage(path: Path, how: str) -> bytes:
    """Flip a bit of the last tensor byte ("bits": fails the checksum), cut the file short, or
    write another mask under this one's name ("other")."""
    data = bytearray(path.read_bytes())
    if how == "bits":
        data[-1] ^= 1
        path.write_bytes(bytes(data))
    elif how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:
        other = {n: ~m for n, m in load_state(path)["mask"].items()}
        save_state(path, {"mask": other}, identity=json.loads(_header(path)["identity"]))
    return path.read_bytes()


def _header(path: Path) -> dict:
    data = path.read_bytes()
    return json.loads(data[8:8 + int.from_bytes(data[:8], "little")])["__metadata__"]


def _same_file(a: Path, b: Path) -> None:
    """The same safetensors bytes: header (as data: safetensors writes its metadata keys in any
    order) and every tensor byte."""
    da, db = a.read_bytes(), b.read_bytes()
    na, nb = (int.from_bytes(d[:8], "little") for d in (da, db))
    assert json.loads(da[8:8 + na]) == json.loads(db[8:8 + nb]) and da[8 + na:] == db[8 + nb:]


def _events(run: Run) -> list[dict]:
    return [json.loads(line) for line in (run.dir / "events.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("how", ["bits", "truncated", "other"])
def test_a_damaged_platon_mask_is_moved_aside_and_remade_as_a_fresh_folder_makes_it(
        tmp_path, pruned_run_folder, capsys, how):
    run = _copy_of(pruned_run_folder, tmp_path / "runs")
    ref = mask_of(run)
    path = Path(ref.kwargs()["path"])
    damaged = _damage(path, how)
    with pytest.raises(CheckpointError, match=str(path)):
        build(ref)  # a trainer building the hook verifies the file
    before = _events(run)
    capsys.readouterr()
    assert mask_of(run) == ref
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"lmcnb: set aside {path} (")
    assert out[0].endswith("; it is re-made from the mask")
    assert path.with_suffix(".damaged").read_bytes() == damaged
    fresh = _copy_of(pruned_run_folder, tmp_path / "fresh")
    _same_file(path, Path(mask_of(fresh).kwargs()["path"]))
    new = _events(run)[len(before):]  # nothing trained: one event, the mask's
    assert [(e["event"], e["file"]) for e in new] == [("remade", path.name)]
    remade = hook_mask(mask_of(fresh))
    assert all(torch.equal(m, remade[n]) for n, m in build(ref).mask.items())  # the hook builds
    capsys.readouterr()
    mask_of(run)  # a verified file: nothing to say, nothing written
    assert capsys.readouterr().out == "" and len(_events(run)) == len(before) + 1


@pytest.mark.parametrize("how", ["bits", "other"])
def test_a_damaged_random_control_is_verified_on_a_rerun_and_remade_the_same_draw(
        tmp_path, pruned_run_folder, capsys, how):
    run = _copy_of(pruned_run_folder, tmp_path / "runs")
    control = random_like(mask_of(run), seed=3)
    path = Path(control.kwargs()["path"])
    _damage(path, how)
    capsys.readouterr()
    assert random_like(mask_of(run), seed=3) == control
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"lmcnb: set aside {path} (")
    fresh = _copy_of(pruned_run_folder, tmp_path / "fresh")
    _same_file(path, Path(random_like(mask_of(fresh), seed=3).kwargs()["path"]))
    assert _events(run)[-1]["event"] == "remade" and path.with_suffix(".damaged").exists()
    assert all(torch.equal(m, hook_mask(control)[n]) for n, m in build(control).mask.items())


def test_a_damaged_final_checkpoint_is_remade_before_its_mask_is_read(tmp_path,
                                                                       pruned_run_folder):
    run = _copy_of(pruned_run_folder, tmp_path / "runs")
    final = run.ckpt_path(run.final_step())
    _damage(final, "bits")
    ref = mask_of(run)
    fresh = _copy_of(pruned_run_folder, tmp_path / "fresh")
    assert ref.kwargs()["digest"] == mask_of(fresh).kwargs()["digest"]
    assert final.with_suffix(".damaged").exists()
    assert [e["event"] for e in _events(run)][-2:] == ["damaged", "init"]  # re-made by training


def test_a_training_log_that_is_missing_or_fails_its_digest_is_re_made_from_the_checkpoint(
        tmp_path, pruned_run_folder, capsys):
    run = _copy_of(pruned_run_folder, tmp_path / "runs")
    log, digest = run.dir / "log.csv", run.dir / "log.csv.sha256"
    assert list(prune.training_log(run).columns[:2]) == ["step", "train_loss"]  # as written
    written, steps, events = log.read_bytes(), run.saved_steps(), _events(run)
    log.write_text(log.read_text() + "a stray line\n")  # pandas: "No numeric types to aggregate"
    prune.plot_training_loss({"PLATON": run})
    out = capsys.readouterr().out
    assert f"set aside {log} (it does not match its digest)" in out
    assert f"re-made {log} from the final checkpoint" in out
    assert log.read_bytes() == written and log.with_suffix(".damaged").exists()
    digest.unlink()
    assert prune.training_log(run).equals(pd.read_csv(log)) and log.read_bytes() == written
    log.unlink()
    prune.training_log(run)
    assert log.read_bytes() == written
    assert run.saved_steps() == steps and _events(run) == events  # nothing trained


def test_replicated_pruning_runs_pair_with_the_dense_trunks_and_are_evaluated_as_tasks(
        tmp_path, mnist_setup):
    """pruned_replicates: replicate i of a pruning run has dense trunk i's seeds (its init, data
    order and augmentation), so dense − pruned is a difference within a replicate; run_accuracies
    gives accuracy_of each run's final weights. A trunk's state at step 0 holds no optimizer
    moments: masked children spawned at k = 0 start from a fresh AdamW."""
    from lmcnb.experiments.pruning import (
        accuracy_of,
        finished_weights,
        pruned_replicates,
        run_accuracies,
    )

    dense = mnist_setup(tmp_path)
    hook = Ref.of("hook", "platon", total_steps=8, final_density=0.5, final_warmup=2,
                  delta_t=2, score="magnitude", include=("features",))
    runs = pruned_replicates(dense, {"magnitude 50%": hook}, 2)["magnitude 50%"]
    assert [r.spec.seeds for r in runs] == [dense.trunk(i).spec.seeds for i in range(2)]
    assert runs[0].spec.seeds != runs[1].spec.seeds
    assert runs[0].spec.run_id != dense.trunk(0).spec.run_id  # the hook is in its identity
    for run in runs:
        assert density(prunable(finished_weights(run), ("features",))) == pytest.approx(0.5,
                                                                                      abs=0.01)
    assert run_accuracies(dense, runs) == [accuracy_of(dense, finished_weights(r)) for r in runs]
    assert dense.trunk(0).ensure_trained((0,)).state(0)["optimizer"]["state"] == {}
    assert dense.trunk(0).state(8)["optimizer"]["state"] != {}
