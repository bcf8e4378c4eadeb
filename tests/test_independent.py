"""Networks from different initializations, in the study layer and in `measure`: pairs of trunks
with their own seeds, compared naive, aligned and REPAIRed; a network against a permuted copy of
itself is connected once aligned."""
from __future__ import annotations

import pytest
import torch

from lmcnb import measure as M
from lmcnb.experiments.study import independent_study
from lmcnb.lmc.permutation import apply_permutation, permutation_spec, random_permutations
from lmcnb.models.mlp import MLP
from lmcnb.train.recipe import TrainConfig

pytestmark = pytest.mark.usefixtures("single_thread")


def test_an_independent_study_compares_every_pair_every_way(tmp_path, mnist_setup):
    setup = mnist_setup(tmp_path, n_train=1024, n_test=256,
                        train=TrainConfig(batch_size=64, max_steps=16), bn_reset_examples=256)
    r = independent_study(setup, 2, aligns=("none", "weights"), repairs=(False, True))
    test = r.barriers[r.barriers.split == "test"]
    assert sorted(set(zip(test["pair"], test["align"], test["repair"]))) == [
        (p, a, rp) for p in (0, 1) for a in ("none", "weights") for rp in (False, True)]
    trunks = {setup.trunk(i).spec.run_id for i in range(4)}
    assert len(trunks) == 4  # four initializations with their own seeds
    assert {"init", "data_order"} <= set(vars(setup.trunk(0).spec.seeds))
    seeds = [setup.trunk(i).spec.seeds for i in range(2)]
    assert seeds[0].init != seeds[1].init and seeds[0].data_order != seeds[1].data_order
    again = independent_study(setup, 2, aligns=("none", "weights"), repairs=(False, True))
    assert again.folder == r.folder and again.barriers.equals(r.barriers)  # cached
    with pytest.raises(ValueError, match="unknown alignment 'sinkhorn'"):
        independent_study(setup, 1, aligns=("sinkhorn",))


def test_measure_aligns_a_permuted_copy_to_a_zero_barrier(mnist_small):
    torch.manual_seed(0)
    net = MLP(784, (64, 64), 10)
    spec = permutation_spec(net)
    state = net.state_dict()
    permuted = apply_permutation(spec, state, random_permutations(spec, seed=1))
    train, test = mnist_small
    data = {"train": train, "test": test}
    naive = M.measure(state, permuted, data, model=net, n_alpha=5, progress=False)
    aligned = M.measure(state, permuted, data, model=net, n_alpha=5, align="weights",
                        progress=False)
    by_act = M.measure(state, permuted, data, model=net, n_alpha=5, align="activations",
                       repair=True, progress=False)
    def spread(m):  # how far the loss moves along the path
        return float(m.curves.groupby("split").loss.agg(lambda v: v.max() - v.min()).max())

    assert spread(naive) > 1e-3  # the same function at both ends, other functions between
    assert spread(aligned) < 1e-5 and spread(by_act) < 1e-4  # π(θ_B) = θ_A: one point
    with pytest.raises(ValueError, match="align must be None, 'weights' or 'activations'"):
        M.measure(state, permuted, data, model=net, align="sinkhorn")
