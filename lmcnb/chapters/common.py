"""What the chapters share: where their data comes from, and the α-slider of a study's pair of
children."""
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


DataSource = str | dict[str, str]  # one source for the chapter's dataset, or one per dataset
SOURCE_HELP = ("where the data comes from: 'default' (the verified files), 'hub:<id>@<revision>', "
               "a save_to_disk folder or parquet files; a dict gives one per dataset")


def source_of(data_source: DataSource, dataset: str) -> dict[str, str]:
    """The `source=` argument of `dataset`'s registry refs: {} for the default verified files, so
    refs (and everything named after them) stay as they are."""
    source = data_source.get(dataset, "default") if isinstance(data_source, dict) else data_source
    return {} if source == "default" else {"source": source}


def check_sources(data_source: DataSource, datasets: tuple[str, ...],
                  data_dir: str | None) -> None:
    """Refuse, before any work, a source of one of `datasets` (those this run reads) that cannot
    be read (a hub id without a revision, a folder that holds no dataset), and one source for
    several datasets (which one it holds would be a guess)."""
    from ..data.sources import parse_source

    if isinstance(data_source, str) and data_source != "default" and len(datasets) > 1:
        raise ValueError(f"data_source {data_source!r} is one source, but this run reads "
                         f"{', '.join(datasets)}: give a dict, one source per dataset")
    for dataset in datasets:
        source = source_of(data_source, dataset).get("source")
        if source is not None:
            parse_source(source, data_dir)
