"""The independent-initialization chapter: bad parameters fail before any training, the CNN is a
plain Sequential whose permutation spec is derived, paths are named and ordered, the tables put
the barrier first, and the claims' paired and unpaired differences are computed as stated."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from lmcnb.chapters import independent as ind
from lmcnb.lmc.permutation import invariance_gap, permutation_spec
from lmcnb.lmc.repair import repair_layers
from lmcnb.models.convnet import convnet

pytestmark = pytest.mark.usefixtures("single_thread")
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "independent_inits.ipynb"


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"n_alpha": 4}, ["n_alpha must be odd, so that α = ½ is on the grid (got 4)"]),
    ({"n_alpha": 1}, ["n_alpha must be an integer >= 3 (got 1)"]),
    ({"cnn": {"wide": 1}}, ["cnn.wide (1) must be larger than cnn.width (1)"]),
    ({"cnn": {"widht": 2}}, ["unknown key(s) ['widht'] in cnn"]),
    ({"mlp": {"train": {"lr": 0}}}, ["mlp.train.lr must be a number > 0 (got 0)"]),
    ({"mlp": {"train": {"optimizer": "lion"}}}, ["mlp.train.optimizer must be 'adam' or 'sgd'"]),
    ({"mlp": {"widths": [64, 0]}}, ["mlp.widths[1] must be an integer >= 1 (got 0)"]),
    ({"mlp": {"train": {"max_steps": "3x"}}}, ["mlp.train.max_steps must be a step count"]),
    ({"mlp": {"train": {"warmup": 100}}},
     ["mlp.train.warmup (100 = 100 steps) is longer than training (10 steps = 10)"]),
    ({"transformers": {"gpt_model": "GPT2"}},
     ["transformers.gpt_model must be 'CPUGPT' or 'TinyGPT' (got 'GPT2')"]),
    ({"same_parent": "lenet5"}, ["same_parent must be 'reduced_vgg' or 'alexnet'"]),
    ({"eval_iters": 0}, ["eval_iters must be an integer >= 1 or 'all'"]),
    ({"data_source": {"ptb": "hub:x@1"}}, ["unknown key(s) ['ptb'] in data_source"]),
    ({"n_pair": 3}, ["unknown parameter(s) ['n_pair']"]),
])
def test_bad_parameter_is_refused_before_training(refuses, parameters, expected):
    message = refuses(ind, **parameters)
    for text in expected:
        assert text in message, message


def test_the_notebook_refuses_first(fails_first):
    message = fails_first(NOTEBOOK, n_alpha=4, executor="serial")
    assert "n_alpha must be odd" in message, message


def test_every_profile_builds_and_the_paper_profile_is_the_larger():
    c = {name: ind.Config.resolve(name) for name in ind.PROFILES}
    assert c["smoke"].mlp.n_pairs <= c["book"].mlp.n_pairs <= c["paper"].mlp.n_pairs
    assert c["book"].mlp.n_pairs >= 5 and c["book"].cnn.wide > c["book"].cnn.width


@pytest.mark.parametrize("width", [1, 2])
def test_the_cnn_is_a_sequential_whose_spec_and_repair_layers_are_derived(width):
    torch.manual_seed(0)
    net = convnet(width).eval()
    spec = permutation_spec(net)
    assert list(spec.sizes) == [f"conv{i}" for i in range(1, 7)]
    assert spec.sizes["conv6"] == 32 * width
    assert repair_layers(net) == [f"bn{i}" for i in range(1, 7)]
    for bn in net.modules():  # statistics that are not the identity, so they are checked too
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    assert invariance_gap(net, spec, torch.randn(4, 3, 32, 32)) < 1e-5
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        convnet(0)


def _rows(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"split": ["test"] * n, "bn_reset": [False] * n, "repair": [False] * n}
    return pd.DataFrame({**base, **columns})


def test_paths_are_named_and_ordered_naive_first():
    t = ind.labelled([_rows(align=["activations", "weights", "none", "none"],
                            repair=[True, False, False, True]),
                      _rows(align=["none"], bn_reset=[True])])
    assert t.path.tolist() == ["naive", "naive + BN reset", "naive + REPAIR", "weight matching",
                               "activation matching + REPAIR"]
    assert t.renorm.tolist() == ["none", "BN reset", "REPAIR", "none", "REPAIR"]


def test_comparison_table_puts_the_barrier_and_its_verdict_first():
    b = ind.labelled([_rows(align=["none"] * 3 + ["weights"] * 3, pair=[0, 1, 2] * 2,
                            error_barrier=[0.30, 0.32, 0.31, 0.0, 0.002, -0.002],
                            loss_barrier=[1.0] * 6, midpoint_error=[0.3] * 6,
                            error_a=[0.1] * 6, error_b=[0.1] * 6)])
    table = ind.comparison_table(b)
    assert list(table.columns[:4]) == ["path", "n", "error barrier", "verdict"]
    assert table.verdict.tolist() == ["unstable", "stable"]
    assert table["test error at α = ½"].iloc[0].startswith("40.00%")


def test_repair_share_is_paired_by_pair():
    b = ind.labelled([_rows(align=["activations"] * 4, pair=[0, 1, 0, 1],
                            repair=[False, False, True, True],
                            error_barrier=[0.4, 0.2, 0.1, 0.1])])
    assert ind.repair_share(b).tolist() == pytest.approx([0.75, 0.5])


def test_the_welch_difference_is_the_difference_of_means_with_its_interval():
    from scipy import stats

    a, b = pd.Series([0.1, 0.2, 0.15]), pd.Series([0.3, 0.35, 0.5, 0.4])
    diff, half = ind._welch(a, b)
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval()
    assert diff == pytest.approx(a.mean() - b.mean())
    assert (diff - half, diff + half) == pytest.approx((low, high))
    assert np.isnan(ind._welch(a[:1], b)[1])


def test_layer_rows_find_the_worst_single_layer_and_the_depth_of_half_the_barrier():
    single = pd.DataFrame({"layer": ["a", "b", "all"] * 2, "base": ["A"] * 3 + ["B"] * 3,
                           "split": "test", "loss_barrier": [0.1, 0.3, 2.0, 0.2, 0.0, 2.0],
                           "error_barrier": [0.01, 0.02, 0.4, 0.0, 0.0, 0.4],
                           "position": [0, 1, 2] * 2})
    cumulative = pd.DataFrame({"step": [1, 2] * 2, "base": ["A", "A", "B", "B"],
                               "split": "test", "loss_barrier": [0.5, 2.0, 0.3, 2.0]})
    r = ind.layer_rows(single, cumulative)
    assert (r["whole_loss"], r["one_loss"], r["one_loss_layer"], r["to_half"]) == (
        2.0, 0.3, "b", 2.0)
