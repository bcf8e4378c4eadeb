"""What the chapters report: formatting, verdicts on the whole interval, claims decided only by a
CI inside (or disjoint from) their band, and barrier-first stability tables."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmcnb.book.report import (
    Claim,
    at_step,
    claims_table,
    evaluation_noise,
    outcome_counts,
    pct,
    replicates_to_resolve,
    show,
    stability_table,
    step_claim,
    verdict,
)
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
    ("stable", 0.015, 0.01, "undecided"),
    ("unstable", 0.2, 0.01, "agrees"), ("unstable", 0.021, 0.01, "undecided"),
    ("unstable", 0.005, 0.004, "differs"),
    ("≈0.149±0.03", 0.13, 0.005, "agrees"), ("≈0.149±0.03", 0.10, 0.01, "differs"),
    ("≈0.149±0.03", 0.10, 0.02, "undecided"),  # overlapping the band is not agreeing
    ("≈0.149±0.03", 0.0393, 0.1031, "undecided"),  # a wide CI agrees with nothing
    ("<0.05", 0.01, 0.01, "agrees"), ("<0.05", 0.06, 0.005, "differs"),
    ("<0.05", 0.045, 0.01, "undecided"), (">0.5", 0.7, 0.1, "agrees"),
    (">0.5", 0.3, 0.1, "differs"),
    ("stable", 0.005, None, "undecided"),  # no CI decides nothing
    ("stable", None, None, "not measured")])
def test_claim_outcomes(rule, measured, ci, outcome):
    assert Claim("S", "s", "q", measured, ci, rule).outcome() == outcome


def test_an_undecided_claim_says_how_many_replicates_would_decide_it():
    claim = Claim("S", "s", "q", 0.03, 0.02, "unstable", n=3)  # sd = 0.02·√3 / t(2)
    sd = 0.02 * np.sqrt(3) / 4.302652729911275
    needed = replicates_to_resolve(sd, 0.01)
    assert needed == 5 and f"about {needed} replicates" in claim.to_decide()
    assert Claim("S", "s", "q", 0.005, 0.001, "stable", n=3).to_decide() == ""  # decided
    assert replicates_to_resolve(0.01, 0.0) is None


def test_claims_table_and_counts():
    with pytest.raises(ValueError, match="unknown rule 'about 3'"):
        Claim("S", "s", "q", 0.1, rule="about 3")
    claims = [Claim("Shapira", "LeNet5 stable at init", "test error barrier at k=0", 0.004, 0.002,
                    "stable", note="test set augmented"),
              Claim("S", "s", "q", 0.03, 0.02, "unstable", n=3)]
    table = claims_table(claims)
    assert table.iloc[0].to_dict() == {
        "source": "Shapira", "statement": "LeNet5 stable at init",
        "this book": "test error barrier at k=0: 0.40% ± 0.20%", "outcome": "agrees",
        "what differs": "test set augmented"}
    assert table.iloc[1].outcome.startswith("undecided (the CI spans the band's edge; about 5")
    assert outcome_counts(claims) == {"agrees": 1, "differs": 0, "undecided": 1,
                                      "not measured": 0}
    loss = Claim("S", "endpoint loss above chance", "loss", 4.7968, 0.01, ">2.996", percent=False)
    assert claims_table([loss]).iloc[0]["this book"] == "loss: 4.8 ± 0.01"
    html = show(table).to_html()
    assert "lmcnb-table wrap" in html and ">0<" not in html  # no index column


def _results(instability, barrier):
    rows = [{"spawn_step": k, "split": split, "replicate": r, "pair": 0, "bn_reset": False,
             **dict.fromkeys(BARRIER_COLUMNS, 0.0), "instability_error": v,
             "error_barrier": barrier[k][r], "error_a": 0.1, "error_b": 0.1,
             "error_barrier_eval_sd": 0.003 * (r + 1)}
            for k, vs in instability.items() for r, v in enumerate(vs)
            for split in ("train", "test")]
    return Results(curves=pd.DataFrame(), barriers=pd.DataFrame(rows), folder=Path("."))


def test_the_stability_table_decides_on_the_barrier_and_names_a_gap():
    r = _results({0: [0.30, 0.34], 100: [0.05, 0.051], 200: [0.005, 0.006]},
                 {0: [0.30, 0.34], 100: [0.001, 0.002], 200: [0.004, 0.005]})
    table = stability_table(r)
    assert table.k.tolist() == [0, 100, 200] and table.n.tolist() == [2, 2, 2]
    assert table.verdict.tolist() == ["unstable", "stable", "stable"]  # on the barrier
    assert table["its verdict"].tolist() == ["unstable", "unstable", "stable"]  # I_E
    assert table.note.tolist() == ["", "the gap between the ends, not a barrier", ""]
    # evaluation noise: the root mean square of the pairs' bootstrap SDs (0.003 and 0.006)
    assert table["evaluation noise (SD)"].tolist() == ["0.47%"] * 3
    assert evaluation_noise(r).tolist() == pytest.approx([np.sqrt((0.003**2 + 0.006**2) / 2)] * 3)
    claim = step_claim("S", "unstable at init", r, 0, "unstable", when="the start")
    assert (claim.quantity, claim.n, claim.outcome()) == (
        "error barrier, test, k = 0 (the start)", 2, "agrees")  # 32% ± 25%: all above 2%
    assert step_claim("S", "s", None, None, "stable").outcome() == "not measured"
    mean, ci = at_step(r, 0)  # the barrier
    assert mean == pytest.approx(0.32)
    assert ci == pytest.approx(12.7062047 * 0.02 * np.sqrt(2) / np.sqrt(2), rel=1e-6)
    assert at_step(r, 100, column="instability_error")[0] == pytest.approx(0.0505)
    with pytest.raises(ValueError, match=r"spawn step 7 not in the study; valid: \[0, 100, 200\]"):
        at_step(r, 7)


def test_cells_deviations_and_single_run_ci():
    from lmcnb.book.report import cells_text, deviations_table, single_run_ci

    assert cells_text(["stable", "undecided", "stable"]) == "2 stable, 1 undecided of 3 cells"
    t = deviations_table([("evaluation", "whole test set", "5,000 images", "noise 0.3 points")])
    assert t.columns.tolist() == ["aspect", "the source", "this book", "what it changes"]
    assert single_run_ci(0.01) == pytest.approx(0.0196)
    one = Claim("S", "s", "q", 0.005, single_run_ci(0.001), "stable")
    assert one.outcome() == "agrees" and one.to_decide() == ""


def test_a_shown_table_is_the_same_bytes_in_every_process():
    """pandas draws a Styler's HTML ids at random and its repr names an address: a table shown
    twice (here, in one process and in another) must give one HTML and one plain text."""
    import subprocess
    import sys

    code = ("import pandas as pd; from lmcnb.book.report import show; "
            "s = show(pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})); "
            "print(s.to_html()); print(repr(s))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1]
    assert "0x" not in runs[0] and 'id="T_' in runs[0]
