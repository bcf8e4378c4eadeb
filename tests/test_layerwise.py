"""Tests for lmcnb.lmc.layerwise: layers are module prefixes, the barrier of a network with itself
is 0, one layer averaged is exactly that layer at the midpoint, the cumulative variant ends at the
whole-model midpoint; bad inputs fail before any evaluation."""

import pytest
from torch import nn

from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data.tensors import TensorData
from lmcnb.lmc.interpolate import interpolate_state
from lmcnb.lmc.layerwise import cumulative_barriers, layer_groups, layerwise_barriers
from lmcnb.models.mlp import MLP
from lmcnb.models.transformer_lm import TransformerLM, TransformerLMConfig
from lmcnb.train.evaluation import evaluate
from lmcnb.train.recipe import TrainConfig
from lmcnb.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def pair(mnist_small):
    """(model, θ_A, θ_B, splits): two BatchNorm MLPs from different inits, 60 Adam steps each on
    512 MNIST images; splits of 128 training and 256 test images."""
    train, test = mnist_small
    states = []
    for seed in (1, 2):
        streams = RngStreams(Seeds(init=seed, data_order=seed))
        with streams.active("init"):
            model = MLP(784, (16, 16), 10, "batchnorm")
        Trainer(model, TrainConfig(batch_size=64, max_steps=60, eval_every=60, lr=1e-2), train,
                streams).run(60)
        states.append({k: v.clone() for k, v in model.state_dict().items()})
    splits = {"train": TensorData(train.x[:128], train.y[:128]), "test": test}
    return MLP(784, (16, 16), 10, "batchnorm"), states[0], states[1], splits


def test_layers_are_module_prefixes_with_buffers_and_tied_tensors():
    groups = layer_groups(MLP(784, (8,), 10, "batchnorm"))
    assert groups == {"layers.1": ["layers.1.weight", "layers.1.bias"],
                      "layers.2": ["layers.2.weight", "layers.2.bias", "layers.2.running_mean",
                                   "layers.2.running_var", "layers.2.num_batches_tracked"],
                      "layers.4": ["layers.4.weight", "layers.4.bias"]}

    class Tied(nn.Module):  # an output layer tied to the embedding, as GPT-2's lm_head to wte
        def __init__(self):
            super().__init__()
            self.wte, self.lm_head = nn.Embedding(5, 3), nn.Linear(3, 5, bias=False)
            self.lm_head.weight = self.wte.weight

    assert layer_groups(Tied()) == {"wte": ["wte.weight", "lm_head.weight"]}


def test_the_layerwise_barrier_of_a_network_with_itself_is_zero(pair):
    model, state_a, _, splits = pair
    single = layerwise_barriers(model, state_a, state_a, splits)
    cumulative = cumulative_barriers(model, state_a, state_a, splits, order="random")
    for table in (single, cumulative):
        assert (table.loss_barrier == 0).all() and (table.error_barrier == 0).all()
    assert len(single) == (5 + 1) * 2 * 2  # (layers + "all") × bases × splits


def test_one_layer_averaged_is_that_layer_at_the_midpoint(pair):
    model, state_a, state_b, splits = pair
    table = layerwise_barriers(model, state_a, state_b, splits)
    mid = interpolate_state(state_a, state_b, 0.5)
    ends = {}
    for name, state in (("A", state_a), ("B", state_b)):
        model.load_state_dict(state)
        ends[name] = evaluate(model, splits["test"])
    layer = "layers.2"  # the first BatchNorm: its running statistics are averaged too
    for base, state in (("A", state_a), ("B", state_b)):
        model.load_state_dict({k: mid[k] if k.startswith(f"{layer}.") else t
                               for k, t in state.items()})
        expected = evaluate(model, splits["test"])
        row = table[(table.layer == layer) & (table.base == base) & (table.split == "test")]
        assert row.loss.item() == expected.loss and row.error.item() == expected.error
        assert row.loss_barrier.item() == pytest.approx(
            expected.loss - 0.5 * (ends["A"].loss + ends["B"].loss), abs=1e-12)
    model.load_state_dict(mid)
    whole = table[(table.layer == "all") & (table.split == "test")]
    assert (whole.loss == evaluate(model, splits["test"]).loss).all()
    assert (whole.loss_barrier > 0.01).all()  # two inits: the whole model has a barrier


def test_cumulative_barriers_add_layers_in_order_and_end_at_the_whole_model(pair):
    model, state_a, state_b, splits = pair
    single = layerwise_barriers(model, state_a, state_b, splits)
    layers = list(layer_groups(model))
    for order, first in (("input", layers), ("output", layers[::-1])):
        table = cumulative_barriers(model, state_a, state_b, splits, order=order)
        added = table[(table.base == "A") & (table.split == "test")].layer.tolist()
        assert added == first
        start = table[table.step == 1].set_index(["base", "split"]).loss
        alone = single[single.layer == first[0]].set_index(["base", "split"]).loss
        assert start.equals(alone)
        end = table[table.step == len(layers)].set_index(["base", "split"]).loss
        assert end.equals(single[single.layer == "all"].set_index(["base", "split"]).loss)
    shuffled = [cumulative_barriers(model, state_a, state_b, splits, order="random", seed=s)
                for s in (0, 0, 5)]
    orders = [t[(t.base == "A") & (t.split == "test")].layer.tolist() for t in shuffled]
    assert orders[0] == orders[1] and sorted(orders[2]) == sorted(layers)
    assert model.state_dict()["layers.1.weight"].shape == (16, 784)


def test_layerwise_rejects_bad_inputs_before_evaluating(pair):
    model, state_a, state_b, splits = pair
    wide = MLP(784, (16, 12), 10, "batchnorm").state_dict()
    with pytest.raises(ValueError, match="'layers.4.weight' of state_b has shape"):
        layerwise_barriers(model, state_a, wide, splits)
    lm = TransformerLM(TransformerLMConfig(vocab_size=20, d_model=8, n_head=2, d_ff=8, n_layer=1))
    with pytest.raises(ValueError, match="state_b lacks tensor 'layers.1.weight'"):
        cumulative_barriers(model, state_a, lm.state_dict(), splits)
    empty = {"test": TensorData(splits["test"].x[:0], splits["test"].y[:0])}
    with pytest.raises(ValueError, match="split 'test' is empty"):
        layerwise_barriers(model, state_a, state_b, empty)
    with pytest.raises(ValueError, match="no splits"):
        layerwise_barriers(model, state_a, state_b, {})
    with pytest.raises(ValueError, match="unknown order 'middle'"):
        cumulative_barriers(model, state_a, state_b, splits, order="middle")
