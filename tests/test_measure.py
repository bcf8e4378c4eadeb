"""`lmcnb.measure`: a user's pair gives the chapters' numbers; bad input fails before evaluation."""
from __future__ import annotations

import math
import subprocess
import sys

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
                     eval_tokens=512, chars=1601, data_dir=str(data_dir), device="cpu")
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


def _as_dataset(data: TensorData, image: str = "pixel_values", label: str = "label"):
    from datasets import Dataset

    return Dataset.from_dict({image: data.x.numpy(), label: data.y.numpy()}).with_format("torch")


def test_a_hugging_face_dataset_gives_the_curves_of_the_same_tensors_byte_for_byte(small):
    from datasets import DatasetDict

    a, b = lenet(0), lenet(1)
    tensors = M.measure(a, b, small, n_alpha=5, progress=False)
    splits = DatasetDict({name: _as_dataset(d) for name, d in small.items()})
    for data, columns in ((splits, None), ({n: d for n, d in splits.items()}, None),
                          ({n: _as_dataset(d, "x", "y") for n, d in small.items()}, ("x", "y"))):
        hf = M.measure(a, b, data, n_alpha=5, progress=False, columns=columns)
        assert hf.curves.to_csv(index=False) == tensors.curves.to_csv(index=False)
        assert hf.barriers.to_csv(index=False) == tensors.barriers.to_csv(index=False)


def test_a_dataset_without_the_columns_fails_before_evaluating_naming_its_columns(small,
                                                                                  monkeypatch):
    monkeypatch.setattr(interpolate, "evaluate", lambda *a, **k: pytest.fail("evaluated"))
    data = _as_dataset(small["test"], "pixels", "target")
    with pytest.raises(ValueError) as info:
        M.measure(lenet(0), lenet(1), data, n_alpha=3, progress=False)
    assert "pixels" in str(info.value) and "target" in str(info.value)


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
    (lambda d: ("nowhere", "nowhere", d), "a: the folder 'nowhere' is missing"),
    # Both ends are checked, parameters and buffers: a nan weight, an inf running variance.
    (lambda d: (lenet(0), with_value(lenet(1), "features.0.weight", math.nan), d),
     "b: 'features.0.weight' holds 1 non-finite value(s)"),
    (lambda d: (with_value(bn_net(0), "1.running_var", math.inf), bn_net(1), d),
     "a: '1.running_var' holds 1 non-finite value(s)"),
    # Every batch: its inputs finite (split and batch named, the example within the batch) ...
    (lambda d: (lenet(0), lenet(1), loader(TensorData(with_nan(d.x, 70), d.y), 64)),
     "split 'test', batch 1: x holds non-finite values (nan or inf), first in example 6"),
    (lambda d: (lenet(0), lenet(1), TensorData(with_nan(d.x, 5), d.y)),
     "split 'test': x holds non-finite values (nan or inf), first in example 5"),
    # ... x and y of one length (a shorter y is not paired with the first x's) ...
    (lambda d: (lenet(0), lenet(1), [(d.x[:32], d.y[:16]), (d.x[32:48], d.y[32:48])]),
     "split 'test', batch 0: x holds 32 examples and y 16"),
    (lambda d: (lenet(0), lenet(1), [(d.x[:16], d.y[:10])]),
     "split 'test', batch 0: x holds 16 examples and y 10"),
    (lambda d: (lenet(0), lenet(1), TensorData(d.x[:48], d.y[:32])),
     "split 'test': x holds 48 examples and y 32"),
    # ... the shapes of batch 0, integer targets, targets the model has logits for.
    (lambda d: (lenet(0), lenet(1), [(d.x[:16], d.y[:16]), (d.x[16:32, :, :14], d.y[16:32])]),
     "split 'test', batch 1: x has shape (16, 1, 14, 28), but batch 0's examples have shape "
     "(1, 28, 28)"),
    (lambda d: (lenet(0), lenet(1), {"train": [(d.x[:16], d.y[:16]),
                                               (d.x[16:32], d.y[16:32, None])]}),
     "split 'train', batch 1: y has shape (16, 1), but batch 0's examples have shape ()"),
    (lambda d: (lenet(0), lenet(1), [(d.x[:16], d.y[:16]), (d.x[16:32], d.y[16:32].float())]),
     "split 'test', batch 1: targets must be class indices (integers), not torch.float32"),
    (lambda d: (lenet(0), lenet(1), [(d.x[:16], d.y[:16, None].repeat(1, 2))]),
     "split 'test', batch 0: the model's output ((2, 10)) is not logits with one row per target"),
    (lambda d: (lenet(0), lenet(1), d, {"bn_reset": [(d.x[:8], d.y[:4])]}),
     "split 'bn_reset', batch 0: x holds 8 examples and y 4"),
    # The other arguments, before a folder is looked at.
    (lambda d: ("nowhere", "nowhere", d, {"batch_size": 0}), "batch_size must be an integer >= 1"),
    (lambda d: ("nowhere", "nowhere", d, {"n_alpha": 2.5}), "n_alpha must be an integer >= 2"),
    (lambda d: ("nowhere", "nowhere", d, {"device": "cuda:99"}), "device 'cuda:99'"),
    (lambda d: ("nowhere", "nowhere", d, {"device": "tpu"}),
     "unknown device 'tpu'; valid: 'cpu', 'cuda', 'mps'"),
])
def test_bad_input_fails_before_any_evaluation(small, monkeypatch, case, expected):
    evaluated = []
    monkeypatch.setattr(interpolate, "interpolation_curve", lambda *a, **k: evaluated.append(1))
    a, b, data, *kwargs = case(small["test"])
    with pytest.raises((ValueError, TypeError)) as info:
        M.measure(a, b, data, **(kwargs[0] if kwargs else {}))
    assert expected in str(info.value)
    assert not evaluated


def with_value(net: nn.Module, name: str, value: float) -> nn.Module:
    """`net` with the first entry of its tensor `name` set to `value`."""
    net.state_dict()[name].view(-1)[0] = value
    return net


def with_nan(x: torch.Tensor, example: int) -> torch.Tensor:
    x = x.clone()
    x[example].view(-1)[100] = math.nan
    return x


def test_a_missing_folder_is_reported_missing_and_a_foreign_one_as_not_save_pretrained(tmp_path,
                                                                                      small):
    (tmp_path / "weights").mkdir()
    (tmp_path / "file").write_text("")
    for a, expected in ((tmp_path / "gone", f"a: the folder '{tmp_path / 'gone'}' is missing "
                         "(give a folder written by save_pretrained)"),
                        (tmp_path / "file", f"a: '{tmp_path / 'file'}' is a file, not a folder "
                         "written by save_pretrained"),
                        (tmp_path / "weights", f"a: '{tmp_path / 'weights'}' is not a folder "
                         "written by save_pretrained (no config.json)")):
        with pytest.raises(ValueError) as info:
            M.measure(a, tmp_path / "weights", small["test"], progress=False)
        assert str(info.value) == expected
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="^b: the folder .* is missing"):  # before a is loaded
        M.measure(tmp_path / "model", tmp_path / "gone", small["test"], progress=False)


class Reciprocal(nn.Module):
    """Logits (W x) / s: finite at both ends (s = 1 and s = −1), infinite halfway (s = 0)."""

    def __init__(self, s: float):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(28 * 28, 10)
        self.s = nn.Parameter(torch.tensor(s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)) / self.s


@pytest.mark.parametrize("language_model", [False, True])
def test_a_loss_that_is_not_finite_inside_the_path_is_an_infinite_barrier(small,
                                                                           language_model):
    m = M.measure(Reciprocal(1.0), Reciprocal(-1.0), small, n_alpha=5,
                  language_model=language_model, progress=False)
    halfway = m.curves[m.curves.alpha == 0.5]
    assert halfway.loss.isna().all() and halfway.error.isna().all()  # not measured: not reported
    assert np.isfinite(m.curves[m.curves.alpha != 0.5][["loss", "error"]]).all(axis=None)
    for row in m.barriers.itertuples():
        assert row.nonfinite_alpha == 0.5 and not row.stable
        assert row.alpha_star_loss == row.alpha_star_error == row.alpha_star == 0.5
        for name in ("loss_barrier", "error_barrier", "instability_loss", "instability_error",
                     "midpoint_loss", "midpoint_error"):
            assert getattr(row, name) == math.inf, name
    if language_model:
        assert (m.barriers.relative_ppl_instability == math.inf).all()
    # A finite path names no α.
    assert M.measure(lenet(0), lenet(1), small, n_alpha=3,
                     progress=False).barriers.nonfinite_alpha.isna().all()


def test_importing_measure_loads_no_plotting_widgets_or_transformers():
    code = ("import sys, lmcnb.measure; print(sorted(m for m in ('ipywidgets', 'matplotlib', "
            "'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
