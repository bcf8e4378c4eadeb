"""α-slider widgets: frames of θ(α), static links, live recomputation, the image view."""
from __future__ import annotations

import io
import sys

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

from lmcnb.book import views
from lmcnb.book import widgets as W
from lmcnb.data.tensors import TensorData
from lmcnb.data.vision import MEAN, STD
from lmcnb.lmc.interpolate import (
    Interpolator,
    alpha_grid,
    eval_subset,
    interpolate_state,
    interpolation_curve,
)
from lmcnb.models.cnn import build_model


@pytest.fixture(scope="module")
def pair(mnist_small):
    """A LeNet5 scratch model, two different states, a 5-point curve on real MNIST, and the test
    data."""
    train, test = mnist_small
    torch.manual_seed(0)
    model = build_model("lenet5", 10)
    a = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    b = build_model("lenet5", 10).state_dict()
    splits = {"train": eval_subset(train, 1, 256, "cpu"), "test": eval_subset(test, 1, 256, "cpu")}
    curves = interpolation_curve(model, a, b, splits, alpha_grid(5), batch_size=256,
                                 progress=False).frame
    return model, a, b, curves, test


class RecordingView:
    """A view that draws a line and remembers (α, the model's state) at each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, alpha, ax):
        self.calls.append((alpha, {k: v.clone() for k, v in model.state_dict().items()}))
        ax.plot([0, 1], [0, alpha])


def same_state(s, t) -> bool:
    return all(torch.equal(s[k], t[k]) for k in s)


def find(box: widgets.Widget, kind: type) -> list[widgets.Widget]:
    """All widgets of `kind` inside `box`, depth first."""
    out = [box] if isinstance(box, kind) else []
    for child in getattr(box, "children", ()):
        out += find(child, kind)
    return out


def decode(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return Image.open(io.BytesIO(png))


def test_static_slider_has_one_small_frame_of_theta_alpha_per_alpha(pair, monkeypatch):
    model, a, b, curves, _ = pair
    monkeypatch.setenv("LMCNB_LIVE", "0")
    view = RecordingView()
    box = W.alpha_slider(curves, model, a, b, view, title="test pair")
    alphas = sorted(curves.alpha.unique())
    assert W.CSS_CLASS in box._dom_classes
    (stack,) = find(box, widgets.Stack)
    frames = list(stack.children)
    assert len(frames) == len(alphas) == 5 and stack.selected_index == 0
    sizes = [len(f.value) for f in frames]
    assert max(sizes) <= W.FRAME_BYTES, sizes
    assert all(decode(f.value).mode == "P" for f in frames)  # palette PNGs
    assert len({f.value for f in frames}) == len(frames), "two frames are identical"
    assert [alpha for alpha, _ in view.calls] == alphas
    for alpha, state in view.calls:  # the view saw θ(α), exactly
        assert same_state(state, interpolate_state(a, b, alpha))


def test_static_slider_is_linked_in_javascript_without_python_callbacks(pair, monkeypatch):
    model, a, b, curves, _ = pair
    monkeypatch.setenv("LMCNB_LIVE", "0")
    box = W.alpha_slider(curves, model, a, b, RecordingView())
    (play,), (slider,), (stack,) = (find(box, widgets.Play), find(box, widgets.IntSlider),
                                    find(box, widgets.Stack))
    assert slider.max == play.max == len(stack.children) - 1
    links = [w for w in widgets.Widget.get_manager_state()["state"].values()
             if w["model_name"] == "LinkModel"]
    ends = {(tuple(w["state"]["source"]), tuple(w["state"]["target"])) for w in links}

    def ref(w, name):
        return (f"IPY_MODEL_{w.model_id}", name)

    assert (ref(play, "value"), ref(slider, "value")) in ends
    assert (ref(slider, "value"), ref(stack, "selected_index")) in ends
    assert not slider._trait_notifiers.get("value", {}).get("change"), (
        "static slider has a Python callback")


def test_live_slider_recomputes_at_any_alpha_including_extrapolation(pair):
    model, a, b, curves, _ = pair
    view = RecordingView()
    box = W.alpha_slider(curves, model, a, b, view, live=True, live_range=(-0.5, 1.5))
    (slider,), (image,) = find(box, widgets.FloatSlider), find(box, widgets.Image)
    assert (slider.min, slider.max) == (-0.5, 1.5)
    first = image.value
    slider.value = 1.3
    assert image.value != first
    alpha, state = view.calls[-1]
    assert alpha == pytest.approx(1.3)
    expected = interpolate_state(a, b, 1.3)
    assert all(torch.allclose(state[k].float(), expected[k].float(), atol=1e-6) for k in state)


def test_curves_of_one_pair_only_and_bn_reset_rows_left_out(pair, monkeypatch):
    model, a, b, curves, _ = pair
    monkeypatch.setenv("LMCNB_LIVE", "0")
    both = pd.concat([curves.assign(bn_reset=False),
                      curves.assign(bn_reset=True, loss=curves.loss + 1)])
    view = RecordingView()
    box = W.alpha_slider(both, model, a, b, view)
    assert len(find(box, widgets.Stack)[0].children) == curves.alpha.nunique()
    assert len(W.pair_curves(both)) == len(curves)
    with pytest.raises(ValueError, match="one pair"):
        W.alpha_slider(pd.concat([curves, curves]), model, a, b, view)


@pytest.mark.parametrize(("env", "jupyter", "expected"), [
    ("1", False, True), ("0", True, False), (None, True, True), (None, False, False)])
def test_live_default(monkeypatch, env, jupyter, expected):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    for name, value in (("LMCNB_LIVE", env),
                        ("JPY_SESSION_NAME", "chapter.ipynb" if jupyter else None)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert W.live_default() is expected


def test_image_view_marks_wrong_predictions_in_red():
    torch.manual_seed(0)
    x = torch.randn(10, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 3, 3, 3, 0, 1, 2, 3])
    data = TensorData(x, y, ("cat", "dog", "bird", "frog"))

    class AlwaysFrog(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, inputs):
            return torch.zeros(len(inputs), 4).index_fill_(1, torch.tensor([3]), 1.0) + self.w

    view = views.image_predictions_view(data, n=8, mean=MEAN["cifar10"], std=STD["cifar10"],
                                        columns=4)
    fig = Figure()
    ax = fig.add_subplot()
    view(AlwaysFrog(), 0.5, ax)
    wrong = int((y[:8] != 3).sum())
    assert len(ax.patches) == wrong
    reds = [t.get_text() for t in ax.texts if t.get_color() == "red"]
    assert reds == ["frog"] * wrong
    assert f"{wrong} wrong" in ax.get_title()


def test_display_pixels_undo_normalisation_or_rescale():
    mean, std = (0.5, 0.25, 0.1), (0.2, 0.3, 0.4)
    raw = torch.rand(2, 3, 4, 4)
    normalised = (raw - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    np.testing.assert_allclose(views.display_pixels(normalised, mean, std),
                               raw.permute(0, 2, 3, 1).numpy(), atol=1e-6)
    scaled = views.display_pixels(normalised)
    assert scaled.shape == (2, 4, 4, 3)
    np.testing.assert_allclose(scaled.reshape(2, -1).min(1), 0, atol=1e-6)
    np.testing.assert_allclose(scaled.reshape(2, -1).max(1), 1, atol=1e-6)


def test_noisy_frame_still_fits_the_size_limit(pair):
    """Worst case for PNG: a view of random colour noise; fewer colours keep the frame small."""
    model, a, b, curves, _ = pair
    rng = np.random.default_rng(0)

    def noise(model, alpha, ax):
        ax.imshow(rng.random((96, 160, 3)))

    drawer = W.FrameDrawer(W.pair_curves(curves), Interpolator(model, a, b), noise, "noise", (0, 1))
    png = drawer.draw(0.5)
    assert len(png) <= W.FRAME_BYTES
    assert len(decode(png).getcolors()) <= max(W.PALETTES)


def test_png_bytes_uses_fewer_colours_only_when_needed():
    fig = Figure(figsize=(2, 1), dpi=50)
    fig.add_subplot().plot([0, 1], [1, 0])
    small = W.png_bytes(fig)
    assert len(decode(small).getcolors()) <= W.PALETTES[0]
    fig.add_subplot().imshow(np.random.default_rng(1).random((50, 100, 3)))
    generous, tight = W.png_bytes(fig, limit=10**6), W.png_bytes(fig, limit=1)
    assert len(decode(tight).getcolors()) <= W.PALETTES[-1] < len(decode(generous).getcolors())
