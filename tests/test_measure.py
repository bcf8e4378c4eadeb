"""`lmcnb.measure`: a user's pair gives the chapters' numbers; bad input fails before evaluation."""
from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lmcnb import measure as M
from lmcnb.book import widgets as W
from lmcnb.chapters.gpt import lm_setup
from lmcnb.core.ref import Ref
from lmcnb.data.tensors import TensorData
from lmcnb.experiments.catalog import build
from lmcnb.experiments.setup import Setup
from lmcnb.experiments.study import compare
from lmcnb.lmc import interpolate
from lmcnb.models.cnn import LeNet5, ReducedVGG
from lmcnb.models.gpt import GPTConfig, hf_config
from lmcnb.train.recipe import TrainConfig

pytestmark = pytest.mark.usefixtures("single_thread")
CURVE_COLUMNS = ["bn_reset", "split", "alpha", "loss", "error"]


def mnist(split: str) -> Ref:
    return Ref.of("data", "vision", name="mnist", split=split, limit=512)


def lenet(seed: int, num_classes: int = 10) -> nn.Module:
    torch.manual_seed(seed)
    return LeNet5(num_classes)


def loader(data: TensorData, batch_size: int) -> DataLoader:
    return DataLoader(TensorDataset(data.x, data.y), batch_size=batch_size)


def assert_same_tables(ours: M.Measurement, curves: pd.DataFrame, table: pd.DataFrame) -> None:
    """Our tables hold the chapter's columns (without its study keys) and its numbers to 1e-9."""
    pd.testing.assert_frame_equal(ours.curves, curves[CURVE_COLUMNS], check_exact=False,
                                  rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(ours.barriers, table[list(ours.barriers.columns)],
                                  check_exact=False, rtol=0, atol=1e-9)
    study_keys = {"chapter", "model", "dataset", "pair"}
    assert set(table.columns) - set(ours.barriers.columns) == study_keys


def test_dataloader_pair_gives_the_numbers_of_the_chapter_path(tmp_path, data_dir):
    setup = Setup(chapter="t", model="lenet5", dataset="mnist",
                  net=Ref.of("model", "lenet5", num_classes=10), train_data=mnist("train"),
                  test_data=mnist("test"), train=TrainConfig(), runs_dir=str(tmp_path),
                  device="cpu", data_dir=str(data_dir), eval_batch_size=256)
    a, b = lenet(0), lenet(1)
    curves, table = compare(setup, a.state_dict(), b.state_dict(), tmp_path, {"pair": 0})
    data = {s: loader(build(mnist(s), str(data_dir)), 256) for s in ("train", "test")}
    ours = M.measure(a, b, data, device="cpu", progress=False)
    assert_same_tables(ours, curves, table)
    assert ours.curves.alpha.nunique() == 30 and 0 < ours.barriers.disagreement.iloc[0] < 1


def test_save_pretrained_folders_give_the_numbers_of_the_chapter_path(tmp_path, data_dir):
    tokenizer = Ref.of("tokenizer", "char", corpus="shakespeare")
    config = hf_config(GPTConfig(2, 2, 32, 8, "char"), len(build(tokenizer, str(data_dir))))
    setup = lm_setup("t", "tiny", config, tokenizer, "shakespeare", TrainConfig(), tmp_path,
                     eval_batch_tokens=512, chars=1601, data_dir=str(data_dir), device="cpu")
    folders, states = [], []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = build(setup.net)
        folders.append(tmp_path / f"gpt-{seed}")
        net.save_pretrained(folders[-1])
        states.append(net.state_dict())
    curves, table = compare(setup, *states, tmp_path, {"pair": 0})
    data = {"train": setup.load(setup.train_data), "test": setup.load(setup.test_data)}
    ours = M.measure(*folders, data, language_model=True, batch_size=setup.eval_batch_size,
                     device="cpu", progress=False)
    assert type(ours.model).__name__ == "GPT2LMHeadModel"
    assert_same_tables(ours, curves, table)
    assert "relative_ppl_instability" in ours.barriers
    assert (ours.barriers.stable == (ours.barriers.relative_ppl_instability < 0.02)).all()


@pytest.fixture(scope="module")
def small(mnist_small) -> dict[str, TensorData]:
    train, test = mnist_small
    return {"train": TensorData(train.x[:128], train.y[:128]),
            "test": TensorData(test.x[:128], test.y[:128])}


def test_safetensors_state_dicts_with_a_model_equal_the_modules_and_touch_nothing(tmp_path, small):
    a, b, scratch = lenet(0), lenet(1), lenet(2)
    before = {k: v.clone() for k, v in scratch.state_dict().items()}
    for name, net in (("a", a), ("b", b)):
        save_file(net.state_dict(), tmp_path / f"{name}.safetensors")
    state_a, state_b = (load_file(tmp_path / f"{n}.safetensors") for n in ("a", "b"))
    from_files = M.measure(state_a, state_b, small, model=scratch, n_alpha=5, progress=False)
    from_modules = M.measure(a, b, small, n_alpha=5, progress=False)
    pd.testing.assert_frame_equal(from_files.curves, from_modules.curves, check_exact=True)
    pd.testing.assert_frame_equal(from_files.barriers, from_modules.barriers, check_exact=True)
    assert all(torch.equal(v, scratch.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in state_a.items())
    assert from_files.model is not scratch


class WithFeatures(nn.Module):
    """Returns (logits, features), as many research models do."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net(x), x.flatten(1)


def test_a_logits_hook_reads_other_outputs(small):
    plain = M.measure(lenet(0), lenet(1), small["test"], n_alpha=4, progress=False)
    hooked = M.measure(WithFeatures(lenet(0)), WithFeatures(lenet(1)), small["test"], n_alpha=4,
                       logits=lambda out: out[0], progress=False)
    pd.testing.assert_frame_equal(plain.barriers, hooked.barriers, check_exact=True)
    with pytest.raises(ValueError, match=r"not logits .* pass logits="):
        M.measure(WithFeatures(lenet(0)), WithFeatures(lenet(1)), small["test"], progress=False)


def bn_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


def test_batchnorm_reset_adds_the_reset_curve(small):
    a, b = bn_net(0), bn_net(1)
    a.train()(small["train"].x[:64])  # running statistics of their own
    b.train()(small["train"].x[64:] * 2)
    plain = M.measure(a, b, small, n_alpha=5, progress=False)
    both = M.measure(a, b, small, n_alpha=5, bn_reset=True, progress=False)
    assert both.curves.bn_reset.tolist() == [False] * 10 + [True] * 10
    pd.testing.assert_frame_equal(both.barriers[~both.barriers.bn_reset], plain.barriers)
    reset = both.curves[both.curves.bn_reset]
    assert not np.allclose(reset.loss, plain.curves.loss)
    on_test = M.measure(a, b, small, n_alpha=5, bn_reset=small["test"], progress=False)
    assert not np.allclose(on_test.curves.loss[10:], reset.loss)


def test_plot_and_slider_show_the_pair(small):
    m = M.measure(lenet(0), lenet(1), small, n_alpha=3, progress=False)
    fig = m.plot(title="pair")
    assert isinstance(fig, Figure) and [ax.get_ylabel() for ax in fig.axes] == ["loss", "error"]
    box = m.slider(lambda model, alpha, ax: ax.set_axis_off(), live=False)
    assert W.CSS_CLASS in box._dom_classes
    stack = box.children[1]
    assert isinstance(stack, widgets.Stack) and len(stack.children) == 3


def empty_loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)))


@pytest.mark.parametrize(("case", "expected"), [
    (lambda d: (lenet(0), ReducedVGG(), d), "different architectures: LeNet5 and ReducedVGG"),
    (lambda d: (lenet(0), lenet(1, num_classes=5), d),
     "'classifier.5.weight' has shape (10, 84) in a, (5, 84) in b"),
    (lambda d: ({k: v for k, v in lenet(0).state_dict().items() if k != "features.0.bias"},
                lenet(1).state_dict(), d, {"model": lenet(2)}),
     "keys only in model=: ['features.0.bias']"),
    (lambda d: (lenet(0).state_dict(), lenet(1).state_dict(), d), "pass model="),
    (lambda d: (lenet(0), lenet(1).state_dict(), d), "got a module and a state dict"),
    (lambda d: (lenet(0), lenet(1), empty_loader()), "split 'test' is empty"),
    (lambda d: (lenet(0), lenet(1), d, {"n_alpha": 1}), "n_alpha must be an integer >= 2"),
    (lambda d: (lenet(0), lenet(1), [{"x": d.x, "y": d.y}]), "an (x, y) pair of tensors"),
    (lambda d: (lenet(0), lenet(1), TensorData(d.x, d.y + 10)), "targets run from 10 to 19"),
    (lambda d: (lenet(0), lenet(1), d, {"bn_reset": True}), "no BatchNorm layer"),
    (lambda d: ("nowhere", "nowhere", d), "not a folder written by save_pretrained"),
])
def test_bad_input_fails_before_any_evaluation(small, monkeypatch, case, expected):
    evaluated = []
    monkeypatch.setattr(interpolate, "interpolation_curve", lambda *a, **k: evaluated.append(1))
    a, b, data, *kwargs = case(small["test"])
    with pytest.raises((ValueError, TypeError)) as info:
        M.measure(a, b, data, **(kwargs[0] if kwargs else {}))
    assert expected in str(info.value)
    assert not evaluated
