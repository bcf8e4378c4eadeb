"""The ViT chapter: it rejects bad parameters before any training (pretraining included), with a
message that names the parameter and the valid values; its `book` profile is sized as the issue
asks and by the committed pilot; its comparisons are made pair by pair at matched seeds; the
stability-and-prunability analysis runs only where a masked network is unstable; its claims decide
on the barrier."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lmcnb.book.params import help_table
from lmcnb.chapters import pruning as pruning_chapter
from lmcnb.chapters import vit
from lmcnb.experiments.study import BARRIER_COLUMNS, Results

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "vit_platon.ipynb"


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"shape": "ViT-Huge"}, ["unknown ViT shape 'ViT-Huge'", "MiniViT", "ViTB16"]),
    ({"images": {"normalize": "imagenet"}},
     ["images.normalize must be 'dataset' or 'processor' (got 'imagenet')"]),
    ({"images": {"jitter": [0.2, 0.2, 0.2, 0.7]}}, ["images.jitter is (brightness, contrast"]),
    ({"pruning": {"densities": [0.2, 1.5]}},
     ["pruning.densities[1] must be a number > 0 and < 1 (got 1.5)"]),
    ({"pruning": {"scores": ["random"]}}, ["pruning.scores[0] must be 'platon' or 'magnitude'"]),
    ({"pruning": {"scores": ["magnitude", "platon"]}}, ["pruning.scores must start with 'platon'"]),
    ({"pruning": {"final_warmup": 100}}, ["leave none of the 4 steps for the cubic decay"]),
    ({"pruning": {"n_inits": 3}}, ["pruning.n_inits (3) must be at most n_inits (2)"]),
    ({"masked": {"n_inits": 5}}, ["masked.n_inits (5) must be at most n_inits (2)"]),
    ({"pretrain": {"checkpoints": [0, 99]}}, ["unknown key(s) ['checkpoints'] in pretrain"]),
    ({"spawn_steps": [0, 10_000]}, ["spawn step(s) [10000] are beyond the end of training"]),
    ({"scratch_steps": [0, 4]}, ["scratch_steps [4] leave no training after the spawn"]),
    ({"masked": {"steps": [0, "x"]}}, ["masked.steps[1] must be a step count"]),
    ({"n_init": 3}, ["unknown parameter(s) ['n_init']", "n_inits"]),
    ({"finetune": {"schedule": "linear"}},
     ["finetune.schedule must be 'constant' or 'cosine' or 'step' (got 'linear')"]),
    ({"pretrain": {"schedule": "exp"}}, ["pretrain.schedule must be 'constant'"]),
    ({"finetune": {"lr": -1.0}}, ["finetune.lr must be a number > 0 (got -1.0)"]),
    ({"finetune": {"lr": "abc"}}, ["finetune.lr must be a number > 0 (got 'abc')"]),
    ({"finetune": {"warmup_steps": -5}}, ["finetune.warmup_steps must be a step count"]),
    ({"train_eval_iters": 0}, ["train_eval_iters must be an integer >= 1 or 'all' (got 0)"]),
    ({"device": "cuda:7"}, ["device 'cuda:7'"]),
])
def test_bad_parameter_is_refused_before_training(refuses, parameters, expected):
    message = refuses(vit, **parameters)
    for text in expected:
        assert text in message, message


def test_the_notebook_refuses_first(fails_first):
    message = fails_first(NOTEBOOK, finetune={"lr": -1.0})
    assert "finetune.lr must be a number > 0 (got -1.0)" in message, message


# -- the book profile ---------------------------------------------------------------------------
def test_the_book_profile_decides_with_enough_replicates_and_test_images():
    c = vit.Config.resolve("book")
    assert c.n_inits >= 5 and c.masked.n_inits >= 5 and c.pruning.n_inits >= 5
    assert c.eval_iters * c.eval_batch >= 5000  # the barrier's evaluation noise well below 2%
    assert c.spawn_steps[0] == 0 and c.scratch_steps[0] == 0 and 0 in c.masked.steps
    assert c.pruning.max_steps == c.finetune.max_steps // 2  # half the fine-tuning, as the source
    assert c.finetune.warmup_steps == 0 and c.finetune.schedule == "constant"  # the source's


def test_a_committed_pilot_measured_the_book_profile_and_a_missing_one_is_said():
    rows = vit.pilot_results()
    if rows is None:  # not run yet: the chapter says "not measured" instead of a table
        import json
        cells = json.loads((Path(vit.__file__).parents[2] / "notebooks" / "vit_platon.ipynb")
                           .read_text())["cells"]
        assert any("*Not measured*" in "".join(cell["source"]) for cell in cells)
        return
    c = vit.Config.resolve("book")
    ran = rows[np.isclose(rows.lr, c.finetune.lr)]
    assert not ran.empty, f"the pilot did not run lr {c.finetune.lr}"
    assert c.finetune.max_steps in set(ran.steps), "the book's length is a length the pilot ran"
    assert set(ran.start) == {"pretrained", "scratch"} and ran.replicate.nunique() >= 3
    assert (rows.batch_size == c.finetune.batch_size).all() if "batch_size" in rows else True
    summary = vit.pilot_summary(rows)
    assert {"error_barrier", "error_barrier_ci", "verdict", "transfer"} <= set(summary)


def test_the_pilots_cost_counts_only_the_training_it_did():
    def pair(replicate, train_cpu):  # two lengths; the cost sits on the longest row
        return [dict(start="scratch", lr=1e-3, replicate=replicate, steps=100, train_cpu_s=np.nan,
                     eval_cpu_s=np.nan, train_steps=np.nan, test_images=100, load=1.0),
                dict(start="scratch", lr=1e-3, replicate=replicate, steps=200,
                     train_cpu_s=train_cpu, eval_cpu_s=2.2, train_steps=400, test_images=100,
                     load=1.0)]
    table = pd.DataFrame(pair(0, 20.0) + pair(1, np.nan)).assign(pretrain_cpu_s=np.nan)
    cost = vit.pilot_cost(table)
    assert cost["ms_step"] == pytest.approx(50.0)  # 20 s over 400 steps; pair 1 was found trained
    assert (cost["pairs"], cost["pairs_trained"]) == (2, 1)
    assert cost["ms_image"] == pytest.approx(1e3 * 4.4 / (2 * 2 * 11 * 100))
    assert cost["cpu_min"] == pytest.approx((20.0 + 4.4) / 60)  # no pretraining was measured


def test_profiles_table_has_every_parameter_of_every_profile():
    table = vit.profiles_table()
    assert list(table.columns) == ["parameter", "smoke", "book", "paper", "what it is"]
    params = set(table.parameter)
    assert {"finetune.lr", "pruning.n_inits", "masked.steps", "train_eval_iters"} <= params
    assert table.set_index("parameter").loc["finetune.lr", "paper"] == "0.0002"
    assert all(table["what it is"].str.len() > 0)


def test_the_notebooks_profiles_and_set_up_cells_are_collapsed():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = {c.source.splitlines()[0]: c.metadata.get("tags", []) for c in code}
    assert "hide-cell" in tags["display(show(vit.profiles_table()))"]
    assert all("hide-cell" in t for t in list(tags.values())[:3])  # parameters, Colab, imports
    assert all("display(" not in c.source or "show(" in c.source or "Markdown" in c.source
               or "slider" in c.source or "glue_claims" in c.source for c in code)


def test_a_parameter_has_help():
    assert all(row["help"] for row in help_table(vit.Config))


# -- comparisons within a trunk -------------------------------------------------------------------
def results(barrier, accuracy, k=0, peak=1.0, loss=1.0):
    """A study's tables with one pair per replicate at spawn step `k`: its error barriers,
    accuracies (both ends the same), and a test loss curve peaking at `peak` × the ends' loss."""
    n = len(barrier)
    b = pd.DataFrame({"spawn_step": k, "k2": 10 - k, "replicate": range(n), "pair": 0,
                      "split": "test", "bn_reset": False, "error_barrier": barrier,
                      "error_a": [1 - a for a in accuracy], "error_b": [1 - a for a in accuracy],
                      "loss_a": loss, "loss_b": loss, "loss_barrier": loss * (peak - 1),
                      "error_barrier_eval_sd": 0.001})
    for col in BARRIER_COLUMNS:
        if col not in b:
            b[col] = b.error_barrier if col == "instability_error" else 0.0
    curves = pd.DataFrame([{"spawn_step": k, "replicate": i, "pair": 0, "split": "test",
                            "bn_reset": False, "alpha": a, "error": 0.5,
                            "loss": loss * (peak if a == 0.5 else 1.0)}
                           for i in range(n) for a in (0.0, 0.5, 1.0)])
    return Results(curves, b, Path("."))


def test_differences_are_taken_pair_by_pair_at_matched_seeds():
    ft = results([0.00, 0.01, 0.00, 0.01, 0.00], [0.50, 0.52, 0.48, 0.50, 0.51])
    sc = results([0.05, 0.06, 0.05, 0.06, 0.05], [0.40, 0.42, 0.38, 0.40, 0.41])
    gap, ci, n = vit.paired(ft, sc, "error_barrier")
    assert gap == pytest.approx(0.05) and ci == pytest.approx(0.0) and n == 5
    transfer = vit.paired(sc, ft, "accuracy")  # fine-tuned − scratch: exactly 10 points each
    assert transfer[0] == pytest.approx(0.10) and transfer[1] == pytest.approx(0.0, abs=1e-12)
    table = vit.contrast_table(ft, sc)
    assert list(table.quantity) == list(vit.CONTRASTS.values())
    assert table.set_index("quantity").loc["test accuracy", "pairs"] == 5


def test_a_pair_without_its_partner_is_an_error():
    with pytest.raises(ValueError, match="no partner"):
        vit.paired(results([0.0] * 5, [0.5] * 5), results([0.0] * 4, [0.5] * 4), "accuracy")


def test_the_peak_loss_ratio_is_read_from_the_curves():
    r = results([0.0] * 3, [0.5] * 3, peak=2.5, loss=0.8)
    assert vit.test_rows(r).loss_peak_ratio.tolist() == pytest.approx([2.5] * 3)


def test_pruning_costs_are_differences_within_a_replicate():
    rows = pd.DataFrame({"condition": ["dense"] * 3 + ["PLATON 20%"] * 3,
                         "replicate": [0, 1, 2] * 2, "density": [1.0] * 3 + [0.2] * 3,
                         "accuracy": [0.60, 0.70, 0.80, 0.57, 0.67, 0.77]})
    cost, ci, n = pruning_chapter.pruning_cost(rows, "PLATON 20%")
    assert cost == pytest.approx(0.03) and ci == pytest.approx(0.0, abs=1e-9) and n == 3
    table = pruning_chapter.pruning_table(rows)
    assert table.set_index("run").loc["PLATON 20%", "dense − it (same trunk)"] == "3.0% ± 0.0%"


# -- stability and prunability ---------------------------------------------------------------------
def test_prunability_is_not_analysed_without_an_unstable_network():
    stable = {"ticket": results([0.0, 0.001, 0.002, 0.0, 0.001], [0.5] * 5),
              "random": results([0.001, 0.0, 0.002, 0.001, 0.0], [0.4] * 5)}
    out = vit.prunability(stable)
    assert out["unstable"] == [] and np.isnan(out["rho"])
    assert "no masked condition is unstable" in vit.prunability_text(out)


def test_prunability_is_a_per_pair_correlation_with_a_bootstrap_interval():
    studies = {"ticket": results([0.00, 0.002, 0.004, 0.001, 0.003], [0.52, 0.51, 0.50, 0.515,
                                                                       0.505]),
               "reinit": results([0.10, 0.12, 0.14, 0.11, 0.13], [0.30, 0.29, 0.28, 0.295,
                                                                   0.285])}
    out = vit.prunability(studies)
    assert out["unstable"] == [("reinit", 0)] and len(out["pairs"]) == 10
    assert out["rho"] == pytest.approx(-1.0)  # every less stable pair reached less
    lo, hi = out["rho_ci"]
    assert lo - 1e-9 <= out["rho"] <= hi + 1e-9 and hi <= -0.5
    assert "Spearman" in vit.prunability_text(out)


# -- the claims -----------------------------------------------------------------------------------
def measured(ft_barrier, scratch_barrier):
    ft = results(ft_barrier, [0.50, 0.52, 0.48, 0.50, 0.51], loss=1.0, peak=0.9)
    sc = results(scratch_barrier, [0.40, 0.42, 0.38, 0.40, 0.41], loss=1.5, peak=1.2)
    pruning = pd.DataFrame({"condition": ["dense"] * 5 + ["PLATON 20%"] * 5 + ["PLATON 5%"] * 5
                            + ["magnitude 20%"] * 5, "replicate": list(range(5)) * 4,
                            "density": [1.0] * 5 + [0.2] * 5 + [0.05] * 5 + [0.2] * 5,
                            "accuracy": [0.5, 0.52, 0.48, 0.5, 0.51] * 2
                            + [0.45, 0.47, 0.43, 0.45, 0.46] + [0.4, 0.42, 0.38, 0.4, 0.41]})
    masked = {"PLATON mask": results([0.0] * 5, [0.50, 0.52, 0.48, 0.50, 0.51]),
              "random mask": results([0.0] * 5, [0.30, 0.32, 0.28, 0.30, 0.31]),
              "on a random init": results([0.0] * 5, [0.35, 0.37, 0.33, 0.35, 0.36])}
    return {"spawn": {"fine-tuned": ft, "from scratch": sc}, "pruning": pruning,
            "masked": masked, "prunability": vit.prunability(masked),
            "finetuned": SimpleNamespace(total_steps=600, steps_per_epoch=1562)}


def test_claims_decide_on_the_error_barrier_with_n_and_ci():
    c = vit.Config.resolve("book")
    claims = {cl.statement: cl for cl in vit.claims(c, measured([0.002, 0.004, 0.003, 0.002,
                                                                 0.004], [0.10, 0.12, 0.11,
                                                                          0.10, 0.12]))}
    ft = claims["children fine-tuned from the pretrained ViT are linearly connected"]
    assert ft.quantity.startswith("error barrier") and ft.n == 5 and ft.outcome() == "agrees"
    assert claims["children of a random initialization are not"].outcome() == "agrees"
    more = claims["fine-tuned children are more connected than children from scratch"]
    assert more.outcome() == "agrees" and more.n == 5
    peak = next(cl for s, cl in claims.items() if "twice the endpoints' mean" in s)
    assert peak.measured == pytest.approx(1.2) and peak.outcome() == "differs"
    falls = next(cl for s, cl in claims.items() if "loss even falls" in s)
    assert falls.outcome() == "agrees"  # a convex path: the loss barrier is below 0
    transfer = next(cl for s, cl in claims.items() if "transfers" in s)
    assert transfer.measured == pytest.approx(0.10) and transfer.outcome() == "agrees"
    cost = next(cl for s, cl in claims.items() if s.startswith("PLATON 20% costs"))
    assert cost.measured == pytest.approx(0.0) and cost.outcome() == "differs"  # 0 vs 2.7 ± 2
    random = next(cl for s, cl in claims.items() if "random mask" in s)
    assert random.measured == pytest.approx(0.20) and random.outcome() == "agrees"
    open_question = next(cl for s, cl in claims.items() if "prunability" in s)
    assert open_question.outcome() == "not measured"  # no unstable masked network
    assert "no masked condition is unstable" in open_question.note


def test_an_unstable_fine_tuned_pair_makes_the_claim_differ():
    c = vit.Config.resolve("book")
    claims = vit.claims(c, measured([0.10, 0.12, 0.11, 0.10, 0.12], [0.10, 0.12, 0.11, 0.10,
                                                                     0.12]))
    assert claims[0].outcome() == "differs"
    more = next(cl for cl in claims if "more connected" in cl.statement)
    assert more.outcome() == "differs"  # the same barrier at matched seeds: no contrast


def test_the_deviations_table_names_the_inherited_adamw_moments_of_later_masked_children():
    c = vit.Config.resolve("book", masked={"steps": [0, 100]})
    setup = SimpleNamespace(total_steps=600, steps_per_epoch=1562,
                            steps=lambda values: [int(v) for v in values])
    table = vit.deviations(c, setup).set_index("aspect")
    row = table.loc["the lottery ticket's optimizer"]
    assert "k = 100 they continue the dense trunk's moments" in row["this book"]
    assert "fresh optimizer" in row["what it changes"]
    plain = vit.deviations(vit.Config.resolve("book"), setup).set_index("aspect")
    assert "all start at k = 0" in plain.loc["the lottery ticket's optimizer", "what it changes"]
    assert {"learning rate", "weight decay", "fine-tuning length", "pairs"} <= set(table.index)
