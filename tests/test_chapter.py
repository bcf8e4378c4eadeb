"""Tests for lmcnb.chapter: formatting, verdicts, claims held as data, the stability table."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmcnb.book.report import Claim, at_step, claims_table, pct, stability_table, verdict
from lmcnb.experiments.study import BARRIER_COLUMNS, Results


def test_pct_with_and_without_ci():
    assert pct(0.12345, 0.012) == "12.35% ± 1.20%"
    assert pct(0.5, float("nan")) == "50.00%"
    assert pct(0.5, digits=1) == "50.0%"
    assert pct(None) == "n/a"


@pytest.mark.parametrize("value, ci, expected", [
    (0.01, 0.005, "stable"), (0.01, 0.011, "undecided"), (0.03, 0.005, "unstable"),
    (0.02, None, "unstable"), (0.019, float("nan"), "stable")])
def test_verdict_uses_the_whole_interval(value, ci, expected):
    assert verdict(value, ci) == expected


@pytest.mark.parametrize("rule, measured, ci, outcome", [
    ("stable", 0.005, 0.004, "agrees"), ("stable", 0.2, 0.01, "differs"),
    ("unstable", 0.2, 0.01, "agrees"), ("unstable", 0.021, 0.01, "undecided"),
    ("≈0.149±0.03", 0.13, 0.0, "agrees"), ("≈0.149±0.03", 0.10, 0.01, "differs"),
    ("≈0.149±0.03", 0.10, 0.02, "agrees"),  # the CI reaches the tolerance band
    ("<0.05", 0.01, 0.01, "agrees"), ("<0.05", 0.06, 0.005, "differs"),
    ("<0.05", 0.045, 0.01, "undecided"), (">0.5", 0.7, 0.1, "agrees"),
    ("stable", None, None, "not measured")])
def test_claim_outcomes(rule, measured, ci, outcome):
    assert Claim("S", "s", "q", measured, ci, rule).outcome() == outcome


def test_claim_rejects_an_unknown_rule_and_the_table_has_one_row_per_claim():
    with pytest.raises(ValueError, match="unknown rule 'about 3'"):
        Claim("S", "s", "q", 0.1, rule="about 3")
    table = claims_table([Claim("Shapira", "LeNet5 stable at init", "test I_E at k=0", 0.004,
                                0.002, "stable", note="test set augmented")])
    assert table.iloc[0].to_dict() == {
        "source": "Shapira", "statement": "LeNet5 stable at init",
        "this book": "test I_E at k=0: 0.40% ± 0.20%", "outcome": "agrees",
        "what differs": "test set augmented"}
    loss = Claim("S", "endpoint loss above chance", "loss", 4.7968, None, ">2.996", percent=False)
    assert claims_table([loss]).iloc[0]["this book"] == "loss: 4.8" and loss.outcome() == "agrees"


def _results(values):
    rows = [{"spawn_step": k, "split": split, "replicate": r, "pair": 0, "bn_reset": False,
             **dict.fromkeys(BARRIER_COLUMNS, 0.0), "instability_error": v, "error_a": 0.1,
             "error_b": 0.1}
            for k, vs in values.items() for r, v in enumerate(vs) for split in ("train", "test")]
    barriers = pd.DataFrame(rows)
    return Results(curves=pd.DataFrame(), barriers=barriers, folder=Path("."))


def test_stability_table_and_at_step():
    r = _results({0: [0.30, 0.34], 100: [0.01, 0.012], 200: [0.005, 0.006]})
    table = stability_table(r)
    assert table.k.tolist() == [0, 100, 200] and table.n.tolist() == [2, 2, 2]
    assert table.verdict.tolist() == ["unstable", "undecided", "stable"]  # k=100: CI spans 2%
    mean, ci = at_step(r, 0)
    assert mean == pytest.approx(0.32)
    # two values 0.30, 0.34: t(0.975, 1) * s / sqrt(2), s = 0.02 * sqrt(2)
    assert ci == pytest.approx(12.7062047 * 0.02 * np.sqrt(2) / np.sqrt(2), rel=1e-6)
    with pytest.raises(ValueError, match=r"spawn step 7 not in the study; valid: \[0, 100, 200\]"):
        at_step(r, 7)
