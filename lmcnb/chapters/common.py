"""What the chapters share: the α-slider of a study's pair of children."""
from __future__ import annotations

from typing import Any

from ..experiments.setup import Setup
from ..experiments.study import Results, children


def pair_slider(setup: Setup, results: Results, view: Any = None, k: int = 0, *, init: int = 0,
                n_children: int = 2, device: str = "cpu", title: str | None = None):
    """The α-slider of the first pair of children spawned at `k` (replicate `init`); `view`
    defaults to 16 test images with the interpolated network's predictions."""
    from ..book.views import image_predictions_view
    from ..book.widgets import alpha_slider
    from ..data.vision import MEAN, STD
    from ..experiments.catalog import build

    if view is None:
        view = image_predictions_view(setup.load(setup.test_data), n=16,
                                      mean=MEAN.get(setup.dataset), std=STD.get(setup.dataset))
    a, b = (kid.weights() for kid in children(setup, init, k, n_children)[:2])
    c = results.curves
    curve = c[(c.spawn_step == k) & (c.replicate == init) & (c.pair == 0)]
    return alpha_slider(curve, build(setup.net, setup.data_dir).to(device), a, b, view,
                        title=title or f"{setup.model}, children spawned at k={k}")
