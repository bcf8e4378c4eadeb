"""Tests for lmcnb.metrics: every barrier of the LMC definitions on hand-computed curves."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from lmcnb.lmc.metrics import (
    STABLE_THRESHOLD,
    aggregate,
    barrier,
    barriers,
    gap,
    instability,
    l2_distance,
    mean_ci,
    midpoint,
    onset,
    relative_ppl_instability,
)

ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]
# Loss: linear part [1.0, 1.5, 2.0, 2.5, 3.0]; gap [0, 0.3, -0.4, -0.5, 0].
LOSS = [1.0, 1.8, 1.6, 2.0, 3.0]
# Error: linear part [0.10, 0.15, 0.20, 0.25, 0.30]; gap [0, 0.17, 0.05, -0.05, 0].
ERROR = [0.10, 0.32, 0.25, 0.20, 0.30]


def test_stable_threshold_is_two_percentage_points():
    assert STABLE_THRESHOLD == 0.02


def test_gap_by_hand():
    np.testing.assert_allclose(gap(ALPHAS, LOSS), [0.0, 0.3, -0.4, -0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(gap(ALPHAS, ERROR), [0.0, 0.17, 0.05, -0.05, 0.0], atol=1e-12)
    # Exactly zero at the endpoints.
    g = gap(ALPHAS, LOSS)
    assert g[0] == 0.0 and g[-1] == 0.0


def test_barrier_and_alpha_star_by_hand():
    b, at = barrier(ALPHAS, LOSS)
    assert b == pytest.approx(0.3, abs=1e-12) and at == 0.25
    b, at = barrier(ALPHAS, ERROR)
    assert b == pytest.approx(0.17, abs=1e-12) and at == 0.25
    # Peak in the second half.
    b, at = barrier(ALPHAS, [0.0, 0.1, 0.2, 0.9, 0.4])
    assert b == pytest.approx(0.9 - 0.3, abs=1e-12) and at == 0.75


def test_convex_path_gives_a_negative_signed_barrier():
    # Loss below the straight line everywhere inside (0, 1): linear part
    # [1.0, 1.05, 1.1, 1.15, 1.2], gap [0, -0.45, -0.6, -0.45, 0]. The definitions ask for the
    # signed value: -0.45 at α = 0.25.
    convex = [1.0, 0.6, 0.5, 0.7, 1.2]
    b, at = barrier(ALPHAS, convex)
    assert b == pytest.approx(-0.45, abs=1e-12)
    assert at in (0.25, 0.75)
    out = barriers(ALPHAS, convex, [0.1, 0.05, 0.04, 0.06, 0.1])
    assert out["loss_barrier"] == pytest.approx(-0.45, abs=1e-12)
    # error: linear part 0.1 everywhere, gap [0, -0.05, -0.06, -0.04, 0] -> -0.04 at α = 0.75.
    assert out["error_barrier"] == pytest.approx(-0.04, abs=1e-12)
    assert out["alpha_star_error"] == 0.75


def test_two_point_grid_has_zero_barrier():
    assert barrier([0.0, 1.0], [1.0, 2.0]) == (0.0, 0.0)


def test_instability_frankle_sup_minus_expected():
    assert instability(LOSS) == pytest.approx(3.0 - 0.5 * (1.0 + 3.0))
    assert instability(ERROR) == pytest.approx(0.32 - 0.5 * (0.10 + 0.30))
    # Never negative: the sup includes the endpoints.
    assert instability([0.2, 0.1, 0.1, 0.3]) == pytest.approx(0.3 - 0.25)


def test_relative_perplexity_instability_by_hand():
    losses = [1.0, 1.5, 1.2]
    ppl_max, ppl_ends = math.exp(1.5), 0.5 * (math.exp(1.0) + math.exp(1.2))
    assert relative_ppl_instability(losses) == pytest.approx((ppl_max - ppl_ends) / ppl_max,
                                                             rel=1e-12)
    # A flat curve is perfectly stable.
    assert relative_ppl_instability([2.0, 2.0, 2.0]) == 0.0


def test_midpoint_on_and_off_grid():
    assert midpoint(ALPHAS, LOSS) == pytest.approx(1.6 - 0.5 * (1.0 + 3.0))
    assert midpoint(ALPHAS, ERROR) == pytest.approx(0.25 - 0.5 * (0.10 + 0.30))
    # Without α = ½ on the grid (4 points), the value at ½ is linearly interpolated.
    alphas = [0.0, 1 / 3, 2 / 3, 1.0]
    values = [1.0, 2.0, 4.0, 1.0]
    assert midpoint(alphas, values) == pytest.approx(3.0 - 1.0)


def test_barriers_dict_for_a_classifier():
    out = barriers(ALPHAS, LOSS, ERROR)
    expected = {
        "loss_barrier": 0.3, "alpha_star_loss": 0.25,
        "error_barrier": 0.17, "alpha_star_error": 0.25,
        "instability_loss": 1.0, "instability_error": 0.12,
        "midpoint_loss": -0.4, "midpoint_error": 0.05,
        "alpha_star": 0.25,  # argmax of E(α)
    }
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-12), key
    assert out["stable"] is False  # I_E = 0.12 >= 0.02, a plain bool
    assert "relative_ppl_instability" not in out
    # Accepts pandas Series, as the study passes them.
    out_series = barriers(pd.Series(ALPHAS), pd.Series(LOSS), pd.Series(ERROR))
    assert out_series["loss_barrier"] == pytest.approx(0.3)


def test_a_point_that_is_not_finite_makes_what_reads_it_infinite_and_the_pair_unstable():
    """One nan loss at α = 0.25 (its error, from the same non-finite output, looks fine): every
    quantity over the whole path is +inf, the midpoint (α = 0, ½, 1) stays measured."""
    loss = [1.0, math.nan, 1.6, 2.0, 3.0]
    out = barriers(ALPHAS, loss, ERROR)
    for key in ("loss_barrier", "error_barrier", "instability_loss", "instability_error"):
        assert out[key] == math.inf, key
    assert out["alpha_star_loss"] == out["alpha_star_error"] == out["alpha_star"] == 0.25
    assert out["nonfinite_alpha"] == 0.25 and out["stable"] is False
    assert out["midpoint_loss"] == pytest.approx(1.6 - 2.0)
    assert out["midpoint_error"] == pytest.approx(0.25 - 0.2)
    # At an end, inf included: everything reads the ends, nothing is stable, not even an LM.
    for bad in (math.inf, math.nan):
        out = barriers(ALPHAS, [1.0, 1.8, 1.6, 2.0, bad], ERROR, language_model=True)
        assert out["nonfinite_alpha"] == 1.0 and out["alpha_star_loss"] == 1.0
        assert out["relative_ppl_instability"] == out["midpoint_loss"] == math.inf
        assert out["midpoint_error"] == math.inf and out["stable"] is False
    # A finite curve names no α; a flat one is stable.
    assert math.isnan(barriers(ALPHAS, LOSS, ERROR)["nonfinite_alpha"])
    assert barriers([0.0, 0.5, 1.0], [0.5, 0.5, 0.5], [0.1, 0.1, 0.1])["stable"] is True


def test_stable_flag_threshold_for_classifier():
    alphas = [0.0, 0.5, 1.0]
    loss = [0.5, 0.6, 0.5]
    assert barriers(alphas, loss, [0.10, 0.115, 0.10])["stable"]  # I_E = 0.015 < 0.02
    assert not barriers(alphas, loss, [0.10, 0.125, 0.10])["stable"]  # I_E = 0.025
    # The threshold is a parameter.
    assert barriers(alphas, loss, [0.10, 0.125, 0.10], threshold=0.03)["stable"]
    assert not barriers(alphas, loss, [0.10, 0.115, 0.10], threshold=0.01)["stable"]


def test_stable_flag_for_language_model_uses_relative_perplexity():
    alphas = [0.0, 0.5, 1.0]
    loss = [2.0, 2.01, 2.0]  # R = 1 - exp(-0.01) ≈ 0.00995
    error = [0.5, 0.6, 0.5]  # I_E = 0.1: unstable for a classifier
    lm = barriers(alphas, loss, error, language_model=True)
    assert lm["relative_ppl_instability"] == pytest.approx(1 - math.exp(-0.01), rel=1e-9)
    assert lm["stable"]
    assert lm["instability_error"] == pytest.approx(0.1)  # also reported for LMs
    assert not barriers(alphas, loss, error)["stable"]
    assert not barriers(alphas, loss, error, language_model=True, threshold=0.005)["stable"]
    # R above the threshold with a tiny I_E: unstable as a language model.
    lm2 = barriers(alphas, [2.0, 2.1, 2.0], [0.5, 0.5, 0.5], language_model=True)
    assert lm2["relative_ppl_instability"] == pytest.approx(1 - math.exp(-0.1), rel=1e-9)
    assert not lm2["stable"]


def test_l2_distance_and_relative():
    a = {"w": torch.tensor([1.0, 2.0, 2.0]), "b": torch.tensor([0.0]),
         "n": torch.tensor(7)}  # integer buffers are not weights
    b = {"w": torch.tensor([1.0, 5.0, 6.0]), "b": torch.tensor([0.0]), "n": torch.tensor(1000)}
    dist, rel = l2_distance(a, b)
    assert dist == pytest.approx(5.0, rel=1e-12)  # sqrt(0 + 9 + 16)
    assert rel == pytest.approx(5.0 / 3.0, rel=1e-12)  # ‖θ_A‖ = 3
    assert l2_distance(a, a) == (0.0, 0.0)
    # Spread over several tensors, half precision accumulated in double.
    a2 = {"x": torch.tensor([3.0], dtype=torch.float16), "y": torch.tensor([[4.0]])}
    b2 = {"x": torch.tensor([0.0], dtype=torch.float16), "y": torch.tensor([[0.0]])}
    assert l2_distance(a2, b2) == pytest.approx((5.0, 1.0))


def test_mean_ci_against_a_hand_value():
    # mean 2.5, sd = sqrt(5/3); t(0.975, df=3) = 3.182446305284263 (tables / scipy.stats.t.ppf).
    mean, half = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert half == pytest.approx(3.182446305284263 * math.sqrt(5 / 3) / 2, rel=1e-9)
    # 90% level: t(0.95, 3) = 2.353363434801823.
    assert mean_ci([1.0, 2.0, 3.0, 4.0], level=0.9)[1] == pytest.approx(
        2.353363434801823 * math.sqrt(5 / 3) / 2, rel=1e-9)
    # Two values: t(0.975, 1) = 12.706204736174707, sd = |a - b| / sqrt(2).
    assert mean_ci([0.1, 0.3]) == pytest.approx(
        (0.2, 12.706204736174707 * (0.2 / math.sqrt(2)) / math.sqrt(2)))


def test_mean_ci_edge_cases():
    mean, half = mean_ci([0.7])
    assert mean == 0.7 and math.isnan(half)
    mean, half = mean_ci([])
    assert math.isnan(mean) and math.isnan(half)
    # NaNs are dropped before counting.
    assert mean_ci([1.0, float("nan"), 3.0]) == pytest.approx(mean_ci([1.0, 3.0]))
    # Identical replicates: zero width.
    assert mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.0)


def test_aggregate_mean_ci_and_count():
    table = pd.DataFrame({
        "spawn_step": [0, 0, 0, 0, 10, 10],
        "split": ["test", "test", "test", "test", "test", "train"],
        "instability_error": [1.0, 2.0, 3.0, 4.0, 0.5, 0.25],
        "loss_barrier": [0.0, 0.0, 0.0, 0.0, 1.0, 2.0],
    })
    out = aggregate(table, ["spawn_step", "split"], ["instability_error", "loss_barrier"])
    assert list(out.columns) == ["spawn_step", "split", "n",
                                 "instability_error", "instability_error_ci95",
                                 "loss_barrier", "loss_barrier_ci95"]
    assert out[["spawn_step", "split"]].values.tolist() == [[0, "test"], [10, "test"],
                                                            [10, "train"]]
    assert out.n.tolist() == [4, 1, 1]
    first = out.iloc[0]
    assert first.instability_error == 2.5
    assert first.instability_error_ci95 == pytest.approx(3.182446305284263 * math.sqrt(5 / 3) / 2,
                                                         rel=1e-9)
    assert first.loss_barrier == 0.0 and first.loss_barrier_ci95 == 0.0
    assert out.iloc[1].instability_error == 0.5 and math.isnan(out.iloc[1].instability_error_ci95)
    # A single grouping column works too.
    by_step = aggregate(table, ["spawn_step"], ["loss_barrier"])
    assert by_step.spawn_step.tolist() == [0, 10] and by_step.loss_barrier.tolist() == [0.0, 1.5]


def test_onset_k_star():
    u, s = 0.05, 0.01  # unstable, stable
    steps = [0, 10, 100, 1000, 5000]
    # unstable, stable, unstable, stable, stable -> k* is the 4th step
    assert onset(steps, [u, s, u, s, s]) == 1000
    assert onset(steps, [s, s, s, s, s]) == 0
    assert onset(steps, [u, u, u, u, u]) is None
    # Stable at the end only, then unstable at the largest k: never stays stable.
    assert onset(steps, [s, s, s, s, u]) is None
    # Order of the input does not matter.
    assert onset([1000, 0, 5000, 100, 10], [s, u, s, u, s]) == 1000
    # The threshold is a parameter, and "below" is strict.
    assert onset(steps, [u, s, u, s, s], threshold=0.1) == 0
    assert onset([0, 1], [0.02, 0.02]) is None
    # A nan mean (no replicate) does not count as stable.
    assert onset([0, 1, 2], [s, float("nan"), s]) == 2


# -- evaluation noise ---------------------------------------------------------------------------
def test_bootstrap_sd_is_the_sampling_noise_of_the_examples():
    from lmcnb.lmc.metrics import bootstrap_sd

    a = np.linspace(0, 1, 5)
    n, p = 4000, 0.3
    rng = np.random.default_rng(3)
    error = np.zeros((5, n))
    error[2] = rng.random(n) < p  # the ends and the quarter points make no error, the middle p
    loss = error * 2.0
    sd = bootstrap_sd(a, loss, error, resamples=400)
    theory = math.sqrt(p * (1 - p) / n)  # the binomial standard error of the middle's error
    assert sd["error_barrier"] == pytest.approx(theory, rel=0.15)
    assert sd["instability_error"] == pytest.approx(theory, rel=0.15)
    assert sd["loss_barrier"] == pytest.approx(2 * theory, rel=0.15)
    assert bootstrap_sd(a, loss, error, resamples=400) == sd  # a seeded generator: same draws
    assert bootstrap_sd(a, loss, error, resamples=400, seed=1) != sd
    # examples that all agree leave nothing to resample
    flat = bootstrap_sd(a, np.ones((5, 50)), np.zeros((5, 50)))
    assert all(v == 0.0 for v in flat.values())


def test_bootstrap_sd_of_language_models_and_of_unmeasured_paths():
    from lmcnb.lmc.metrics import bootstrap_sd

    a = np.linspace(0, 1, 3)
    rng = np.random.default_rng(0)
    loss, error = 3 + rng.random((3, 200)), rng.random((3, 200))
    sd = bootstrap_sd(a, loss, error, language_model=True)
    assert {"relative_ppl_instability", "relative_ppl_barrier"} <= sd.keys()
    assert all(v > 0 for v in sd.values())
    loss[1, 7] = math.inf  # one example's output was not finite: no noise figure is measured
    assert all(math.isnan(v) for v in bootstrap_sd(a, loss, error, True).values())


def test_paired_difference_matches_rows_of_the_same_trunk():
    from lmcnb.lmc.metrics import paired_difference

    keys = [{"spawn_step": k, "replicate": r, "pair": 0} for k in (0, 10) for r in range(4)]
    a = pd.DataFrame([{**k, "x": 0.1 * k["replicate"]} for k in keys])
    b = pd.DataFrame([{**k, "x": 0.1 * k["replicate"] + 0.01 * (1 + k["spawn_step"])}
                      for k in keys])
    d = paired_difference(a, b.sample(frac=1, random_state=0), "x")  # order does not matter
    assert d.spawn_step.tolist() == [0, 10] and d.n.tolist() == [4, 4]
    assert d.x.tolist() == pytest.approx([0.01, 0.11])
    assert d.x_ci95.tolist() == pytest.approx([0, 0], abs=1e-12)  # the trunk's spread cancels
    with pytest.raises(ValueError, match="1 rows have no partner"):
        paired_difference(a, b.iloc[1:], "x")
    with pytest.raises(ValueError, match="more than once"):
        paired_difference(pd.concat([a, a]), b, "x")
