"""The Penn Treebank chapter: hahacen's recipe, the best-validation endpoint, the noise ablation
(children differ only in the named streams), R as the seed computed it, the next-word view, and
bad parameters failing before any training."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lmcnb.book import views
from lmcnb.chapters import ptb
from lmcnb.core.rng import Seeds
from lmcnb.core.steps import parse_steps
from lmcnb.data.tensors import TensorData
from lmcnb.data.words import Vocab
from lmcnb.experiments.catalog import build
from lmcnb.experiments.runs import Run, RunSpec
from lmcnb.train.recipe import TrainConfig, lr_at

pytestmark = pytest.mark.usefixtures("single_thread")
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "ptb_transformer.ipynb"


# -- the recipe --------------------------------------------------------------------------------
def _recipe(**values) -> TrainConfig:
    return ptb.Recipe.build(values, "train").recipe(10)  # a split of 10 chunks


def test_seed_recipe_decays_lr_by_gamma_every_epoch():
    cfg = _recipe(length="3ep")
    assert (cfg.optimizer, cfg.momentum, cfg.grad_clip, cfg.batch_size) == ("sgd", 0.0, 0.5, 1)
    total = parse_steps(cfg.max_steps, 10)
    assert total == 30
    lrs = [lr_at(cfg, step, total, 10) for step in range(total)]
    assert lrs == [2.5] * 10 + [2.5 * 0.95] * 10 + [2.5 * 0.95**2] * 10
    half = _recipe(length=25, lr=1.0, gamma=0.5)
    assert [lr_at(half, s, 25, 10) for s in (9, 10, 20, 24)] == [1.0, 0.5, 0.25, 0.25]


@pytest.mark.parametrize(("bad", "message"), [
    ({"length": 0}, r"train.length must be a step count .* >= 1 \(got 0\)"),
    ({"length": 10, "lr": -1}, "train.lr must be a number > 0"),
    ({"length": 10, "gamma": 1.5}, r"train.gamma must be a number > 0 and <= 1 \(got 1.5\)"),
    ({"length": 10, "grad_clip": 0}, "train.grad_clip must be a number > 0 or None"),
    ({"length": "3x"}, r"train.length must be a step count .* \(got '3x'\)"),
])
def test_seed_recipe_refuses_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        _recipe(**bad)


# -- the best-validation endpoint --------------------------------------------------------------
def _val_worsens() -> tuple[TensorData, TensorData]:
    """Training data whose fit makes validation loss fall, then rise (its labels shifted)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 8, generator=g), torch.randint(0, 4, (96,), generator=g)
    return TensorData(x, y), TensorData(x[:48], torch.where(torch.arange(48) % 3 == 0, y[:48],
                                                            (y[:48] + 1) % 4))


def _linear_run(root: Path, endpoint: str, **spec) -> Run:
    train, val = _val_worsens()
    cfg = TrainConfig(batch_size=16, max_steps=36, lr=0.05, eval_every=2)
    return Run(RunSpec("linear", "synthetic", cfg, Seeds(1, 2, 3, 4), **spec), root,
               lambda: nn.Linear(8, 4), train, val_data=val, endpoint=endpoint)


def test_best_val_endpoint_is_the_step_of_lowest_validation_loss(tmp_path):
    run = _linear_run(tmp_path, "best_val")
    best = run.ensure_trained().end_step()
    log = pd.read_csv(run.dir / "log.csv")
    assert best == int(log.step[log.val_loss.idxmin()]) and 0 < best < 36
    assert best in run.saved_steps()  # kept while training: nothing is trained again
    final = _linear_run(tmp_path, "final")
    assert final.dir == run.dir and final.ensure_trained().end_step() == 36
    assert torch.equal(run.ensure_weights()["weight"], run.ensure_state(best)["model"]["weight"])
    assert not torch.equal(run.ensure_weights()["weight"], final.ensure_weights()["weight"])


def test_a_childs_best_state_is_its_own(tmp_path):
    parent = _linear_run(tmp_path, "best_val")
    k = 30  # after the parent's best step
    assert parent.ensure_trained().end_step() < k
    spec = replace(parent.spec, seeds=parent.spec.seeds.replace(data_order=9),
                   parent=(parent.spec.run_id, k), stop_at=36)
    child = replace(parent, spec=spec, parent=parent)
    assert k < child.ensure_trained().end_step() <= 36


def test_best_val_needs_validation_data_and_a_known_endpoint(tmp_path):
    train, _ = _val_worsens()
    spec = RunSpec("linear", "synthetic", TrainConfig(batch_size=16, max_steps=4))
    with pytest.raises(ValueError, match="endpoint='best_val' needs val_data"):
        Run(spec, tmp_path, lambda: nn.Linear(8, 4), train, endpoint="best_val")
    with pytest.raises(ValueError, match="unknown endpoint 'best'; valid: 'final', 'best_val'"):
        Run(spec, tmp_path, lambda: nn.Linear(8, 4), train, endpoint="best")


# -- the noise ablation ------------------------------------------------------------------------
def _params(tmp_path: Path, data_dir: Path, **overrides) -> ptb.Config:
    """Chapter parameters of a tiny study on the real PTB files."""
    values = dict(data_dir=str(data_dir), runs_dir=str(tmp_path / "runs"), device="cpu",
                  model={"d_model": 16, "n_head": 2, "d_ff": 16, "n_layer": 1, "dropout": 0.2},
                  eos=True, batch_size=4, eval_streams=4, bptt=8,
                  train={"length": "1ep", "lr": 2.5, "gamma": 0.95, "grad_clip": 0.5},
                  train_chunks=6, valid_chunks=2, endpoint="final", spawn_steps=[0, 2],
                  n_inits=1, n_alpha=11, eval_iters=1, eval_tokens=64,
                  noise=["data_order", "dropout", "both"], noise_steps=[0, 2], seed=0)
    return ptb.Config.build({**values, **overrides})


class _RecordingDropout(nn.Dropout):
    """Dropout that keeps the masks it draws (from torch's generator: the run's dropout stream)."""

    def __init__(self, p: float, masks: list[torch.Tensor]):
        super().__init__(p)
        self.masks = masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = torch.empty_like(x).bernoulli_(1 - self.p)
        self.masks.append(keep.bool())
        return x * keep / (1 - self.p)


def _drawn(setup, k: int) -> list[dict[str, list[torch.Tensor]]]:
    """The input batches and dropout masks that two children spawned at `k` drew in training."""
    trunk = setup.trunk(0)
    logs = []
    for c in range(2):
        log: dict[str, list[torch.Tensor]] = {"x": [], "mask": []}

        def model(log=log):
            net = build(setup.net)
            net.register_forward_pre_hook(
                lambda m, args: log["x"].append(args[0].clone()) if m.training else None)
            for name, module in list(net.named_modules()):
                if isinstance(module, nn.Dropout):
                    parent, _, attr = name.rpartition(".")
                    setattr(net.get_submodule(parent), attr, _RecordingDropout(module.p,
                                                                               log["mask"]))
            return net

        child = setup.child(trunk, k, setup.total_steps, "ablation-test", c)
        replace(child, build=model).ensure_trained().final_step()
        logs.append(log)
    return logs


@pytest.mark.parametrize("k", [0, 2])
def test_noise_ablation_children_differ_only_in_the_named_streams(tmp_path, data_dir, k):
    base = ptb.setups(_params(tmp_path, data_dir))["transformer_lm"]
    for source, (x_differ, masks_differ) in {"data_order": (True, False),
                                             "dropout": (False, True),
                                             "both": (True, True)}.items():
        a, b = _drawn(replace(base, noise=ptb.NOISE_SOURCES[source]), k)
        assert len(a["x"]) == len(b["x"]) == base.total_steps - k
        assert len(a["mask"]) == len(b["mask"]) == 4 * len(a["x"])  # 4 dropouts per forward
        same_x = [torch.equal(u, v) for u, v in zip(a["x"], b["x"])]
        same_mask = [torch.equal(u, v) for u, v in zip(a["mask"], b["mask"])]
        assert (not all(same_x)) == x_differ, source
        assert (not all(same_mask)) == masks_differ, source
        if not x_differ:
            assert all(same_x), source
        if not masks_differ:
            assert all(same_mask), source


def test_noise_ablation_table_takes_both_from_the_study(tmp_path, data_dir):
    from lmcnb.experiments.study import spawn_study

    p = _params(tmp_path, data_dir, noise_steps=[2])
    s = ptb.setups(p)["transformer_lm"]
    main = spawn_study(s, p.spawn_steps, n_inits=1)
    table = ptb.noise_ablation(s, main, p.noise_steps, p.noise, p.n_inits)
    assert sorted(table.noise.unique()) == ["both", "data_order", "dropout"]
    assert set(table.spawn_step) == {2} and len(table) == 3 * 2  # 3 sources × (train, test)
    both = table[table.noise == "both"].drop(columns="noise").reset_index(drop=True)
    expected = main.barriers[main.barriers.spawn_step == 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(both, expected)
    assert list(ptb.noise_table(table).columns) == ["k", "split", "noise", "n", "R", "verdict"]
    measured = {"setup": s, "spawn": main, "ablation": table}
    claims = ptb.claims(p, measured)
    quantities = [c.quantity for c in claims]
    assert quantities[0].startswith("PPL barrier / max PPL, test, k = 0")  # barrier first
    r = claims[quantities.index("R at k = 0, test")]  # the source's measure beside it
    assert r.measured == main.barriers[(main.barriers.spawn_step == 0)
                                       & (main.barriers.split == "test")
                                       ].relative_ppl_instability.iloc[0]
    dropout = claims[quantities.index("R at k = 0, dropout only, test")]
    assert dropout.outcome() == "not measured"  # dropout only at k = 0: not in this ablation
    values = ptb.summary(p, measured)
    assert values["noise_dropout_k2"].endswith("%")  # k = 2, the only ablation step
    assert not any(k.endswith("_k0") and k.startswith("noise_") for k in values)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"noise": ["data_order", "weights"]},
     r"noise\[1\] must be 'data_order' or 'dropout' or 'both' \(got 'weights'\)"),
    ({"bptt": 0}, "bptt must be an integer >= 1"),
    ({"n_alpha": 30}, "n_alpha must be 11, 21, 31"),
    ({"noise_steps": [1]}, r"noise_steps \[1\] are not among the spawn steps \[0, 2\]"),
    ({"noise_steps": []}, r"noise_steps is empty: give at least one step"),
    ({"model": {"d_model": 15, "n_head": 2, "d_ff": 16, "n_layer": 1, "dropout": 0.2}},
     r"model.d_model \(15\) must be a multiple of model.n_head"),
    ({"train_chunks": 100_000}, r"train_chunks=100000: the train split holds \d+ chunks .*at most"),
    ({"endpoint": "best"}, "endpoint must be 'final' or 'best_val'"),
])
def test_setup_refuses_bad_parameters_before_training(tmp_path, data_dir, overrides, message):
    with pytest.raises(ValueError, match=message):
        ptb.setups(_params(tmp_path, data_dir, **overrides))
    assert not (tmp_path / "runs" / "train").exists()


# -- R as the seed computed it -----------------------------------------------------------------
def test_seed_r_on_a_hand_made_curve():
    # PPL on 21 points (α = i/20); the peak 22 at α = 0.55 is not on the seed's grid, whose
    # points (even i) peak at 20 (α = 0.5); PPL(0.9) = 12, PPL(1) = 10.
    ppl = [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 19, 17, 16, 15, 14, 13, 12, 11, 10]
    curves = pd.DataFrame({"spawn_step": 0, "replicate": 0, "pair": 0, "split": "test",
                           "bn_reset": False, "alpha": np.linspace(0, 1, 21),
                           "loss": np.log(ppl)})
    row = ptb.r_variants(curves).iloc[0]
    assert row.R == pytest.approx((22 - 10) / 22)
    assert (row.rise, row.gap) == (pytest.approx(12 / 22), 0)
    assert row.R_11 == pytest.approx((20 - 10) / 20)
    assert row.R_seed == pytest.approx((20 - (10 + 12) / 2) / 20)
    assert row.grid_effect == pytest.approx(0.5 - 12 / 22)
    assert row.end_effect == pytest.approx(0.45 - 0.5)


def test_r_is_the_rise_above_the_worse_end_plus_the_gap_between_the_ends():
    # A convex path with unequal ends: no barrier, yet R > 0.
    ppl = np.array([12, 10, 9, 8.5, 8.4, 8.5, 8.7, 9, 9.5, 10, 11.0])
    curves = pd.DataFrame({"spawn_step": 0, "replicate": 0, "pair": 0, "split": "train",
                           "alpha": np.linspace(0, 1, 11), "loss": np.log(ppl)})
    row = ptb.r_variants(curves).iloc[0]
    assert row.R == pytest.approx((12 - 11.5) / 12) and row.rise == 0
    assert row.gap == pytest.approx(0.5 / 12) and row.R == pytest.approx(row.rise + row.gap)
    assert row.grid_effect == 0 and row.R_seed == pytest.approx((12 - (12 + 10) / 2) / 12)


def test_seed_points_need_the_seeds_grid():
    assert ptb.seed_points(np.linspace(0, 1, 31)).tolist() == list(range(0, 31, 3))
    with pytest.raises(ValueError, match="does not hold the seed's"):
        ptb.seed_points(np.linspace(0, 1, 30))


# -- the next-word view ------------------------------------------------------------------------
class _NextId(nn.Module):
    """Predicts id + 1 after every id, <unk> second (a stand-in language model)."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.scale = nn.Parameter(torch.tensor(10.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = nn.functional.one_hot((x + 1) % self.vocab_size, self.vocab_size)
        return self.scale * (first + 0.6 * nn.functional.one_hot(torch.zeros_like(x),
                                                                 self.vocab_size)).float()


def test_next_word_view_marks_wrong_predictions():
    vocab = Vocab.build(" a b c \n b c d \n a \n")  # <unk> <eos> a b c d = 0 … 5
    view = views.next_word_view(vocab, " a b c ", top=2)  # ids 2 3 4 <eos>: next 3 4 1
    fig, ax = plt.subplots()
    view(_NextId(len(vocab)), 0.5, ax)
    assert ax.get_title() == "next-word predictions: 2/3 top-1 right"  # b, c right; d ≠ <eos>
    marked = [(t.get_text(), t.get_color()) for t in ax.texts if t.get_text()[0] in "✓✗"]
    assert len(marked) == 3 * 2  # positions × top
    # After "a" and "b" the top guess is right; after "c" it guesses "d", not <eos>. The second
    # guess, <unk>, is always wrong.
    assert marked == [("✓b 98%", "tab:green"), ("✗<unk> 2%", "tab:red"),
                      ("✓c 98%", "tab:green"), ("✗<unk> 2%", "tab:red"),
                      ("✗d 98%", "tab:red"), ("✗<unk> 2%", "tab:red")]
    plt.close(fig)


# -- the notebook ------------------------------------------------------------------------------
@pytest.mark.parametrize(("parameters", "expected"), [
    ({"train": {"epochs": 2}}, ["unknown key(s) ['epochs'] in train", "length"]),
    ({"n_init": 3}, ["unknown parameter(s) ['n_init']", "n_inits"]),
])
def test_chapter_bad_parameter_fails_first(fails_first, parameters, expected):
    message = fails_first(NOTEBOOK, **parameters)
    for text in expected:
        assert text in message, message


def test_chapter_missing_ptb_names_files_and_folder(tmp_path, fails_first, monkeypatch):
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # no download, network or not
    empty = tmp_path / "nodata"
    message = fails_first(NOTEBOOK, data_dir=str(empty))
    assert "DatasetMissing" in message and str(empty / "ptb") in message
    assert all(f"ptb.{s}.txt" in message for s in ("train", "valid", "test"))
