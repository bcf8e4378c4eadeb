"""Tests for lmcnb.models: parameter counts as stated, forward shapes at each input size."""

import re

import pytest
import torch

from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.models.cnn import CNN_MODELS, AlexNet, LeNet5, ReducedVGG, build_model, count_parameters

# (name, classes, input shape, parameters as built)
MODELS = [
    ("lenet5", 10, (1, 28, 28), 61_706),
    ("reduced_vgg", 10, (3, 32, 32), 860_130),
    ("alexnet", 200, (3, 64, 64), 1_489_160),
    ("alexnet", 20, (3, 64, 64), 1_396_820),
]


@pytest.mark.parametrize("name,classes,shape,count", MODELS)
def test_parameter_count_and_forward_shape(name, classes, shape, count):
    model = build_model(name, classes)
    assert count_parameters(model) == count
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(3, *shape))
    assert out.shape == (3, classes) and torch.isfinite(out).all()


def test_stated_parameter_counts_match():
    """A count written in a model's docstring is the count of the model as built."""
    for cls in (LeNet5, ReducedVGG, AlexNet):
        stated = re.search(r"([\d,]{5,}) parameters", cls.__doc__ or "")
        if stated:
            assert int(stated.group(1).replace(",", "")) == count_parameters(cls()), cls.__name__
    assert "61,706" in LeNet5.__doc__


def test_seed_003_sizes():
    """The issue's sizes: LeNet5 ~62K, ReducedVGG ~855K (within 1%)."""
    assert abs(count_parameters(LeNet5()) - 62_000) < 500
    assert abs(count_parameters(ReducedVGG()) - 855_000) / 855_000 < 0.01


def test_structure():
    alex = AlexNet(20)
    convs = [m for m in alex.features if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in alex.features if isinstance(m, torch.nn.BatchNorm2d)]
    linears = [m for m in alex.classifier if isinstance(m, torch.nn.Linear)]
    assert len(convs) == 5 and len(linears) == 3 and len(norms) == 2
    # BatchNorm follows the first two convs.
    seq = list(alex.features)
    assert (seq.index(norms[0]) == seq.index(convs[0]) + 1
            and seq.index(norms[1]) == seq.index(convs[1]) + 1)
    vgg = ReducedVGG()
    assert sum(isinstance(m, torch.nn.Conv2d) for m in vgg.modules()) == 2
    assert sum(isinstance(m, torch.nn.Linear) for m in vgg.modules()) == 2
    assert sum(isinstance(m, torch.nn.Dropout) for m in vgg.modules()) == 2


def test_dropout_is_active_in_train_mode_only():
    model = ReducedVGG()
    x = torch.randn(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))


def test_build_model_is_deterministic_inside_the_init_stream():
    def build(seed):
        with RngStreams(Seeds(init=seed)).active("init"):
            return build_model("lenet5", 10).state_dict()

    a, b, c = build(3), build(3), build(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_build_model_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        build_model("resnet20", 10)
    assert all(name in str(info.value) for name in CNN_MODELS)
    assert set(CNN_MODELS) == {"lenet5", "reduced_vgg", "alexnet"}
