"""Tests for REPAIR (lmcnb.lmc.repair): the identity at the endpoints, the midpoint's statistics
moved to their targets, with BatchNorm, LayerNorm or no normalization, Linear and Conv layers;
bad inputs."""

import pytest
import torch
from torch import nn

from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data.tensors import TensorData
from lmcnb.lmc.interpolate import Interpolator
from lmcnb.lmc.repair import Repair, channel_stats, repair_layers, reset_batchnorm
from lmcnb.models.cnn import AlexNet
from lmcnb.models.mlp import MLP
from lmcnb.models.transformer_lm import TransformerLM, TransformerLMConfig

pytestmark = pytest.mark.usefixtures("single_thread")

def _convnet() -> nn.Sequential:
    """Convolutions with and without BatchNorm, for 28×28 images."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(), nn.Flatten(),
                         nn.Linear(6 * 6 * 6, 10))


# An MLP of two hidden layers without normalization, with LayerNorm or BatchNorm; a small CNN.
NETS = {
    None: lambda: MLP(784, (32, 24), 10),
    "layernorm": lambda: MLP(784, (32, 24), 10, "layernorm"),
    "batchnorm": lambda: MLP(784, (32, 24), 10, "batchnorm"),
    "conv": _convnet,
}


def _net(kind: str | None, seed: int, data: TensorData) -> nn.Module:
    """A network of `kind` from init seed `seed`, BatchNorm statistics set on `data`."""
    with RngStreams(Seeds(init=seed)).active("init"):
        model = NETS[kind]()
    reset_batchnorm(model, data)
    return model.eval()


@pytest.fixture(scope="module")
def pairs(mnist_small):
    """kind → (model, θ_A, θ_B, data): two independent initializations, 256 MNIST images."""
    data = TensorData(mnist_small[0].x[:256], mnist_small[0].y[:256])
    out = {}
    for kind in NETS:
        a, b = _net(kind, 1, data), _net(kind, 2, data)
        out[kind] = (_net(kind, 3, data), {k: v.clone() for k, v in a.state_dict().items()},
                     {k: v.clone() for k, v in b.state_dict().items()}, data)
    return out


def test_repair_layers_are_the_pre_activations():
    assert repair_layers(MLP(784, (8, 8), 10)) == ["layers.1", "layers.3"]
    assert repair_layers(MLP(784, (8, 8), 10, "layernorm")) == ["layers.2", "layers.5"]
    assert repair_layers(_convnet()) == ["1", "3"]
    assert repair_layers(AlexNet(num_classes=4)) == [
        "features.1", "features.5", "features.8", "features.10", "features.12", "classifier.2",
        "classifier.5"]


@pytest.mark.parametrize("kind", NETS)
def test_repair_is_the_identity_at_the_endpoints(kind, pairs):
    model, state_a, state_b, data = pairs[kind]
    repair = Repair(model, state_a, state_b, data)
    interp = Interpolator(model, state_a, state_b)
    for alpha, end, stats in ((0.0, state_a, repair.ends[0]), (1.0, state_b, repair.ends[1])):
        repair.apply(interp.set(alpha), alpha)
        for key, t in model.state_dict().items():
            assert torch.equal(t, end[key]), (alpha, key)
        now = channel_stats(model, data, repair.layers)
        for name in repair.layers:
            assert torch.equal(now[name].mean, stats[name].mean)
            assert torch.equal(now[name].std, stats[name].std)


@pytest.mark.parametrize("kind", NETS)
def test_repair_moves_the_midpoint_statistics_to_their_targets(kind, pairs):
    model, state_a, state_b, data = pairs[kind]
    repair = Repair(model, state_a, state_b, data)
    interp = Interpolator(model, state_a, state_b)
    targets = repair.targets(0.5)
    before = channel_stats(interp.set(0.5), data, repair.layers)
    ratio = torch.cat([before[n].std / targets[n].std for n in repair.layers])
    assert (ratio - 1).abs().max() > 0.1  # the midpoint is off its targets before REPAIR
    if kind is None:  # variance collapse: the averaged network's channels are narrower
        assert ratio.median() < 0.9
    after = channel_stats(repair.apply(model, 0.5), data, repair.layers)
    for name in repair.layers:
        assert torch.allclose(after[name].std, targets[name].std, rtol=1e-4, atol=1e-6), name
        assert torch.allclose(after[name].mean, targets[name].mean, rtol=1e-4, atol=1e-5), name


def test_channel_statistics_are_the_population_mean_and_std(pairs):
    model, state_a, _, data = pairs["batchnorm"]
    model.load_state_dict(state_a)
    out = {}
    model.layers[1].register_forward_hook(lambda m, i, o: out.__setitem__("y", o))
    stats = channel_stats(model, data, ["layers.1"], batch_size=100)["layers.1"]  # 3 batches
    with torch.no_grad():
        model(data.x)
    y = out["y"].double()
    assert torch.allclose(stats.mean, y.mean(0), atol=1e-6)
    assert torch.allclose(stats.std, y.std(0, correction=0), rtol=1e-5)


@pytest.mark.parametrize("kind", NETS)
def test_stopping_each_pass_at_the_layer_gives_the_same_bytes(kind, pairs):
    model, state_a, _, data = pairs[kind]
    model.load_state_dict(state_a)
    layers = repair_layers(model)
    for name in layers:
        whole = channel_stats(model, data, [name], batch_size=100)[name]
        early = channel_stats(model, data, [name], batch_size=100, stop=True)[name]
        assert torch.equal(whole.mean, early.mean) and torch.equal(whole.std, early.std), name
    repair = Repair(model, state_a, pairs[kind][2], data)
    assert repair._stop  # every layer is called once per pass: REPAIR ends its passes early


def test_a_layer_called_twice_per_pass_is_measured_over_the_whole_pass(pairs):
    _, _, _, data = pairs[None]

    class Twice(nn.Module):  # one Linear applied twice: its statistics need both calls
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(784, 784)
            self.head = nn.Linear(784, 10)

        def forward(self, x):
            return self.head(self.inner(self.inner(x.flatten(1)).relu()))

    with RngStreams(Seeds(init=0)).active("init"):
        a, b = Twice(), Twice()
    repair = Repair(a, a.state_dict(), b.state_dict(), data, layers=["inner"])
    assert not repair._stop


def test_repair_rejects_bad_inputs(pairs):
    model, state_a, state_b, data = pairs[None]
    empty = TensorData(data.x[:0], data.y[:0])
    with pytest.raises(ValueError, match="data is empty"):
        Repair(model, state_a, state_b, empty)
    with pytest.raises(ValueError, match="'layers.9'.*got NoneType"):
        Repair(model, state_a, state_b, data, layers=["layers.9"])
    with pytest.raises(ValueError, match="'layers.2'.*got ReLU"):
        Repair(model, state_a, state_b, data, layers=["layers.2"])
    no_bias = nn.Sequential(nn.Flatten(), nn.Linear(784, 8, bias=False), nn.ReLU(),
                            nn.Linear(8, 10))
    with pytest.raises(ValueError, match="'1' must be .* with a weight and a bias"):
        Repair(no_bias, no_bias.state_dict(), no_bias.state_dict(), data)
    wide = MLP(784, (32, 30), 10).state_dict()
    with pytest.raises(ValueError, match="'layers.3.weight' of state_b has shape"):
        Repair(model, state_a, wide, data)
    lm = TransformerLM(TransformerLMConfig(vocab_size=20, d_model=8, n_head=2, d_ff=8, n_layer=1))
    with pytest.raises(ValueError, match="no default REPAIR layers for TransformerLM.*layers="):
        Repair(lm, lm.state_dict(), lm.state_dict(), data)
