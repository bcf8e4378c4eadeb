"""Tests for lmcnb.interpolate: the path θ(α), its endpoints, BatchNorm reset, curves, eval
subsets."""

import math

import numpy as np
import pytest
import torch

from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data.tensors import TensorData
from lmcnb.lmc.interpolate import (
    Interpolator,
    alpha_grid,
    eval_subset,
    interpolate_state,
    interpolation_curve,
)
from lmcnb.lmc.repair import has_batchnorm, reset_batchnorm
from lmcnb.models.cnn import AlexNet, LeNet5
from lmcnb.train.evaluation import evaluate

pytestmark = pytest.mark.usefixtures("single_thread")


def _clone(state):
    return {k: v.clone() for k, v in state.items()}


def _bn_model(seed: int, passes: int) -> AlexNet:
    """An AlexNet (BatchNorm) whose running stats and num_batches_tracked differ by seed/passes."""
    streams = RngStreams(Seeds(init=seed))
    with streams.active("init"):
        model = AlexNet(num_classes=20)
        x = torch.randn(4, 3, 64, 64) * (1 + seed) + seed
        model.train()
        with torch.no_grad():
            for _ in range(passes):
                model(x)
    return model


def _lenet(seed: int) -> LeNet5:
    with RngStreams(Seeds(init=seed)).active("init"):
        return LeNet5()


@pytest.fixture(scope="module")
def bn_pair():
    a, b = _bn_model(1, passes=2), _bn_model(2, passes=5)
    return _clone(a.state_dict()), _clone(b.state_dict())


def _images(n: int, classes: int, seed: int, size: int = 64) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.randn(n, 3, size, size, generator=g),
                      torch.randint(0, classes, (n,), generator=g))


# -- the path ---------------------------------------------------------------------------------
def test_endpoints_equal_a_and_b_exactly_with_batchnorm(bn_pair):
    sa, sb = bn_pair
    # The test is meaningful: float buffers and integer buffers differ between A and B.
    assert not torch.equal(sa["features.1.running_mean"], sb["features.1.running_mean"])
    assert not torch.equal(sa["features.5.running_var"], sb["features.5.running_var"])
    assert (int(sa["features.1.num_batches_tracked"]) == 2
            and int(sb["features.1.num_batches_tracked"]) == 5)

    model = _bn_model(3, passes=1)
    interp = Interpolator(model, sa, sb)
    for alpha in (0.0, 1.0, 0.0):  # and back again: the model is reused
        interp.set(alpha)
        state = model.state_dict()
        assert state.keys() == sa.keys()
        for key, value in state.items():
            if value.is_floating_point():
                expected = sa[key] if alpha == 0.0 else sb[key]
            else:
                expected = sa[key]  # integer buffers always come from A
            assert value.dtype == expected.dtype, key
            assert torch.equal(value, expected), (alpha, key)


def test_interpolate_state_endpoints_and_integer_buffers(bn_pair):
    sa, sb = bn_pair
    for alpha, ref in ((0.0, sa), (1.0, sb)):
        out = interpolate_state(sa, sb, alpha)
        for key, value in out.items():
            expected = ref[key] if value.is_floating_point() else sa[key]
            assert torch.equal(value, expected), (alpha, key)
    out = interpolate_state(sa, sb, 0.5)
    assert int(out["features.1.num_batches_tracked"]) == 2
    # A new state: changing it does not touch A.
    out["features.1.num_batches_tracked"] += 100
    out["features.0.weight"].zero_()
    assert (int(sa["features.1.num_batches_tracked"]) == 2
            and sa["features.0.weight"].abs().sum() > 0)


def test_midpoint_and_direction(bn_pair):
    sa, sb = bn_pair
    model = _bn_model(3, passes=1)
    interp = Interpolator(model, sa, sb)
    for alpha in (0.5, 0.3):
        interp.set(alpha)
        state = model.state_dict()
        for key, a in sa.items():
            if a.is_floating_point():
                expected = (1 - alpha) * a + alpha * sb[key]  # α = 0 is A
                torch.testing.assert_close(state[key], expected, rtol=0, atol=1e-6)
    interp.set(0.5)
    state = model.state_dict()
    for key, a in sa.items():
        if a.is_floating_point():
            assert (state[key] - 0.5 * (a + sb[key])).abs().max() <= 1e-6, key


def test_interpolate_state_and_interpolator_agree(bn_pair):
    sa, sb = bn_pair
    model = _bn_model(3, passes=1)
    interp = Interpolator(model, sa, sb)
    for alpha in alpha_grid(7):
        interp.set(float(alpha))
        got, want = model.state_dict(), interpolate_state(sa, sb, float(alpha))
        for key in want:
            assert torch.equal(got[key], want[key]), (alpha, key)


def test_interpolator_leaves_its_inputs_alone_even_when_a_is_the_models_own_state():
    model_a, sb = _lenet(1), _clone(_lenet(2).state_dict())
    original_a, original_b = _clone(model_a.state_dict()), _clone(sb)
    interp = Interpolator(model_a, model_a.state_dict(), sb)  # A aliases the model's own tensors
    interp.set(0.5)
    interp.set(0.0)
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, original_a[key]), key
    interp.set(1.0)
    for key, value in sb.items():
        assert torch.equal(value, original_b[key]), key
        assert torch.equal(model_a.state_dict()[key], original_b[key]), key


def test_interpolator_rejects_different_architectures():
    sa = _lenet(1).state_dict()
    sb = dict(sa)
    sb.pop("classifier.5.bias")
    with pytest.raises(ValueError, match="different state-dict keys"):
        Interpolator(_lenet(2), sa, sb)


# -- curves ------------------------------------------------------------------------------------
def test_curve_endpoints_reproduce_evaluate(mnist_small):
    train, test = mnist_small
    model_a, model_b = _lenet(1), _lenet(2)
    with torch.no_grad():  # make B a little better than chance so A and B differ in a real way
        model_b.classifier[-1].bias.add_(torch.linspace(-1, 1, 10))
    sa, sb = _clone(model_a.state_dict()), _clone(model_b.state_dict())
    splits = {"train": eval_subset(TensorData(train.x[:256], train.y[:256]), "all", 100, "cpu"),
              "test": eval_subset(test, "all", 100, "cpu")}
    path = interpolation_curve(_lenet(5), sa, sb, splits, alpha_grid(3), batch_size=100,
                               progress=False)
    curve, disagreement = path.frame, path.disagreement
    assert list(curve.columns) == ["split", "alpha", "loss", "error"]
    assert len(curve) == 6 and sorted(set(curve.alpha)) == [0.0, 0.5, 1.0]
    for split, data in splits.items():
        rows = curve[curve.split == split].set_index("alpha")
        for alpha, model in ((0.0, model_a), (1.0, model_b)):
            e = evaluate(model, data, 100)
            loss, error = e.loss, e.error
            assert (rows.loc[alpha, "loss"] == loss
                    and rows.loc[alpha, "error"] == error), (split, alpha)
            # and on the original (not channels-last) tensors, up to float rounding
            original = train if split == "train" else test
            e2 = evaluate(model, TensorData(original.x[:len(data)], original.y[:len(data)]), 100)
            assert (rows.loc[alpha, "loss"] == pytest.approx(e2.loss, abs=1e-5)
                    and rows.loc[alpha, "error"] == e2.error)
        mid = _lenet(9)
        mid.load_state_dict(interpolate_state(sa, sb, 0.5))
        mid_e = evaluate(mid, data, 100)
        assert (rows.loc[0.5, "loss"], rows.loc[0.5, "error"]) == (mid_e.loss, mid_e.error)
        # each example's values, at each α, average to the curve's (up to summation order)
        ex_loss, ex_error = path.examples[split]
        assert ex_loss.shape == ex_error.shape == (3, len(data))
        np.testing.assert_allclose(ex_loss.mean(1), rows.loss.to_numpy(), rtol=1e-6)
        np.testing.assert_allclose(ex_error.mean(1), rows.error.to_numpy(), rtol=0, atol=1e-12)
    pred_a = evaluate(model_a, splits["test"], 100, predictions=True).predictions
    pred_b = evaluate(model_b, splits["test"], 100, predictions=True).predictions
    assert 0 < disagreement < 1
    assert disagreement == float((pred_a != pred_b).float().mean())
    # Without a test split there is no disagreement.
    d = interpolation_curve(_lenet(5), sa, sb, {"train": splits["train"]}, [0.0, 1.0],
                            progress=False).disagreement
    assert math.isnan(d)


def test_curve_with_batchnorm_reset(bn_pair):
    sa, sb = bn_pair
    data = {"test": _images(24, 20, seed=0)}
    bn_data = _images(32, 20, seed=1)
    plain = interpolation_curve(_bn_model(3, 1), sa, sb, data, [0.0, 1.0], batch_size=16,
                                progress=False).frame
    reset = interpolation_curve(_bn_model(3, 1), sa, sb, data, [0.0, 1.0], batch_size=16,
                                bn_reset_data=bn_data, progress=False).frame
    for i, state in enumerate((sa, sb)):
        ref = _bn_model(4, 1)
        ref.load_state_dict(state)
        assert plain.loss[i] == evaluate(ref, data["test"], 16).loss
        reset_batchnorm(ref, bn_data, 16)
        assert reset.loss[i] == evaluate(ref, data["test"], 16).loss
        assert reset.loss[i] != plain.loss[i]


# -- BatchNorm reset ---------------------------------------------------------------------------
def test_reset_batchnorm_recomputes_running_stats_and_leaves_weights(bn_pair):
    sa, sb = bn_pair
    model = _bn_model(3, passes=1)
    Interpolator(model, sa, sb).set(0.5)
    model.eval()
    before = _clone(model.state_dict())
    data = _images(40, 20, seed=7)
    reset_batchnorm(model, data, batch_size=20)  # two batches
    after = model.state_dict()
    for name, _ in model.named_parameters():
        assert torch.equal(after[name], before[name]), name
    for key in ("features.1.running_mean", "features.1.running_var", "features.5.running_mean"):
        assert not torch.equal(after[key], before[key]), key
    # Cumulative average over the two equal batches = the statistics of the first BN's input.
    with torch.no_grad():
        h = model.features[0](data.x)
        m1, m2 = h[:20].mean(dim=(0, 2, 3)), h[20:].mean(dim=(0, 2, 3))
        v1, v2 = h[:20].var(dim=(0, 2, 3)), h[20:].var(dim=(0, 2, 3))
    torch.testing.assert_close(after["features.1.running_mean"], (m1 + m2) / 2, rtol=1e-4,
                               atol=1e-5)
    torch.testing.assert_close(after["features.1.running_var"], (v1 + v2) / 2, rtol=1e-4, atol=1e-5)
    assert int(after["features.1.num_batches_tracked"]) == 2
    # Momentum and the train/eval flag are restored.
    assert model.features[1].momentum == 0.1 and not model.training


def test_reset_batchnorm_is_a_no_op_without_batchnorm(mnist_small):
    model = _lenet(1)
    before = _clone(model.state_dict())
    reset_batchnorm(model, mnist_small[0], 128)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert has_batchnorm(_bn_model(1, 0)) and not has_batchnorm(model)


# -- grid and subsets --------------------------------------------------------------------------
def test_alpha_grid():
    np.testing.assert_array_equal(alpha_grid(5), [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(alpha_grid(2), [0.0, 1.0])
    g = alpha_grid(30)
    assert len(g) == 30 and g[0] == 0.0 and g[-1] == 1.0 and np.all(np.diff(g) > 0)
    for bad in (1, 0, -3, 2.5, "10", None, True):
        with pytest.raises(ValueError, match="n_alpha"):
            alpha_grid(bad)


def test_eval_subset_all_int_and_bad_values():
    n = 50
    data = TensorData(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
                      .expand(n, 3, 2, 2).contiguous(),
                      torch.arange(n))
    everything = eval_subset(data, "all", 8, "cpu")
    assert torch.equal(everything.y, data.y) and torch.equal(everything.x, data.x)
    assert everything.x.is_contiguous(memory_format=torch.channels_last)

    sub = eval_subset(data, 3, 8, "cpu", seed=1)  # 3 batches of 8
    assert len(sub) == 24 and len(set(sub.y.tolist())) == 24
    assert sub.y.tolist() == sorted(sub.y.tolist())  # in dataset order
    assert torch.equal(sub.x[:, 0, 0, 0], sub.y.float())  # x and y stay paired
    assert torch.equal(eval_subset(data, 3, 8, "cpu", seed=1).y, sub.y)  # a fixed sample
    assert not torch.equal(eval_subset(data, 3, 8, "cpu", seed=2).y, sub.y)
    assert len(eval_subset(data, 100, 8, "cpu")) == n  # more than the split: the whole split

    tokens = TensorData(torch.zeros(10, 6, dtype=torch.long), torch.zeros(10, 6, dtype=torch.long))
    assert eval_subset(tokens, 1, 4, "cpu").x.shape == (4, 6)

    for bad in (0, -1, 2.5, "10", "ALL", None):
        with pytest.raises(ValueError, match="eval_iters"):
            eval_subset(data, bad, 8, "cpu")
