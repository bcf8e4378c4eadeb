"""What the chapters report: numbers for the prose, verdicts against the threshold, claims of a
source against the book's measurements, and the stability summary of a study.

Every number a chapter states is glued here (`glue_all`), every comparison with a source study
is a `Claim` held as data, and the stability threshold is the one of `lmcnb.lmc.metrics`.
"""
from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..experiments.study import Results
from ..lmc.metrics import STABLE_THRESHOLD, mean_ci


def pct(value: float | None, ci: float | None = None, digits: int = 2) -> str:
    """`12.34% ± 1.20%`; the CI is left out when there is none (one replicate)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    text = f"{value:.{digits}%}"
    if ci is not None and not (isinstance(ci, float) and math.isnan(ci)):
        text += f" ± {ci:.{digits}%}"
    return text


def _bounds(value: float, ci: float | None) -> tuple[float, float]:
    half = 0.0 if ci is None or math.isnan(ci) else ci
    return value - half, value + half


def verdict(value: float, ci: float | None = None, threshold: float = STABLE_THRESHOLD) -> str:
    """"stable" when the whole 95% CI is below the threshold, "unstable" when it is all at or
    above, else "undecided"."""
    lo, hi = _bounds(value, ci)
    if hi < threshold:
        return "stable"
    if lo >= threshold:
        return "unstable"
    return "undecided"


def glue_all(values: Mapping[str, Any], prefix: str = "") -> Mapping[str, Any]:
    """Glue every value for the prose (`{glue:text}` roles), named `<prefix>_<key>`."""
    from myst_nb import glue

    for key, value in values.items():
        glue(f"{prefix}_{key}" if prefix else key, value, display=False)
    return values


_RULE = re.compile(r"^(stable|unstable|<\s*(?P<lt>[-\d.e]+)|>\s*(?P<gt>[-\d.e]+)|"
                   r"≈\s*(?P<x>[-\d.e]+)\s*±\s*(?P<tol>[\d.e]+))$")


@dataclass(frozen=True)
class Claim:
    """A source's published statement and the book's measurement of the same quantity.

    `rule` says what the source claims: `"stable"` / `"unstable"` (against the threshold),
    `"<x"`, `">x"`, or `"≈x±t"` (within t of x). `ci` is the half-width of the measurement's 95%
    CI over `n` replicates (or, for one run, a bootstrap CI over its evaluation examples); a
    measurement without a CI decides nothing. `note` names what the source did differently and
    what that does to its number. A measured value that is not a fraction (a loss) has
    `percent=False`.
    """

    source: str
    statement: str
    quantity: str
    measured: float | None
    ci: float | None = None
    rule: str = "stable"
    note: str = ""
    percent: bool = True  # the measured value is a fraction shown as a percentage
    n: int | None = None  # replicates behind the CI (None: a bootstrap CI, or none)

    def measured_text(self) -> str:
        """The measured value as the claims table shows it (a percentage, or a loss)."""
        if not self.percent and self.measured is not None:
            ci = "" if _missing(self.ci) else f" ± {self.ci:.3g}"
            return f"{self.measured:.3g}{ci}"
        return pct(self.measured, self.ci)

    def __post_init__(self) -> None:
        if not _RULE.match(self.rule):
            raise ValueError(f"unknown rule {self.rule!r}; valid: 'stable', 'unstable', '<x', "
                             "'>x', '≈x±t'")

    def _band(self) -> tuple[float, float]:
        """The values the claim allows, as an interval."""
        m = _RULE.match(self.rule)
        if self.rule == "stable":
            return -math.inf, STABLE_THRESHOLD
        if self.rule == "unstable":
            return STABLE_THRESHOLD, math.inf
        if m["x"] is not None:
            x, tol = float(m["x"]), float(m["tol"])
            return x - tol, x + tol
        return (-math.inf, float(m["lt"])) if m["lt"] is not None else (float(m["gt"]), math.inf)

    def outcome(self) -> str:
        """"agrees" when the whole 95% CI lies inside the claim's band (on its side of the
        threshold), "differs" when CI and band are disjoint, else "undecided"; "not measured"
        without a number. A wider CI never agrees more easily."""
        if _missing(self.measured):
            return "not measured"
        if _missing(self.ci):
            return "undecided"
        lo, hi = self.measured - self.ci, self.measured + self.ci
        low, high = self._band()
        if self.rule in ("stable",) or self.rule.startswith("<"):  # below an open edge
            inside, outside = hi < high, lo >= high
        elif self.rule == "unstable":  # at or above the threshold
            inside, outside = lo >= low, hi < low
        elif self.rule.startswith(">"):
            inside, outside = lo > low, hi <= low
        else:  # ≈x±t
            inside, outside = low <= lo and hi <= high, hi < low or lo > high
        return "agrees" if inside else "differs" if outside else "undecided"

    def to_decide(self) -> str:
        """For an undecided claim: why, and about how many replicates a decision would need at
        the measured spread (the t-interval shrinking until it clears the band's nearest edge)."""
        if self.outcome() != "undecided":
            return ""
        if _missing(self.ci):
            return "no confidence interval"
        edges = [e for e in self._band() if math.isfinite(e)]
        gap = min(abs(self.measured - e) for e in edges)
        if self.n is None or self.n < 2:
            return "a single run: more replicates"
        sd = self.ci * math.sqrt(self.n) / _t(self.n)
        needed = replicates_to_resolve(sd, gap)
        return (f"the CI spans the band's edge; about {needed} replicates at this spread"
                if needed else "the mean sits on the band's edge")


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _t(n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1))


def replicates_to_resolve(sd: float, gap: float, most: int = 10_000) -> int | None:
    """The smallest n whose 95% t-interval t·sd/√n is narrower than `gap` (None: never within
    `most`)."""
    if gap <= 0 or not math.isfinite(sd):
        return None
    n = 2
    while n <= most:
        if _t(n) * sd / math.sqrt(n) < gap:
            return n
        n += 1
    return None


def claims_table(claims: Iterable[Claim]) -> pd.DataFrame:
    """One row per claim: the source's statement, the book's number, the outcome (and what a
    decision would take), the note."""
    return pd.DataFrame([{"source": c.source, "statement": c.statement,
                          "this book": f"{c.quantity}: {c.measured_text()}",
                          "outcome": c.outcome() + (f" ({c.to_decide()})" if c.to_decide()
                                                    else ""),
                          "what differs": c.note} for c in claims])


def glue_claims(claims: Iterable[Claim], prefix: str):
    """The chapter's claims table for the page (`show`), glued as `<prefix>_claims` for the
    introduction to paste, with its outcome counts (`<prefix>_claims_decided`: "4 of 5 decided",
    and `<prefix>_claims_<outcome>` each); returns the table to display."""
    claims = list(claims)
    counts = outcome_counts(claims)
    decided = counts["agrees"] + counts["differs"]
    table = show(claims_table(claims))
    glue_all({"claims": table, "claims_decided": f"{decided} of {len(claims)} decided",
              **{f"claims_{k.replace(' ', '_')}": str(v) for k, v in counts.items()}}, prefix)
    return table


def single_run_ci(eval_sd: float) -> float:
    """The 95% CI half-width of one run's measurement from its evaluation bootstrap SD (normal
    approximation): the CI of a `Claim` measured on one pair."""
    return 1.96 * eval_sd


def cells_text(verdicts: Iterable[str]) -> str:
    """A table's verdicts counted, with the number of cells beside them: "2 stable, 1 unstable,
    3 undecided of 6 cells" (with many cells, an isolated decided one is what chance gives)."""
    verdicts = list(verdicts)
    counts = [f"{verdicts.count(v)} {v}" for v in ("stable", "unstable", "undecided")
              if verdicts.count(v)]
    return f"{', '.join(counts)} of {len(verdicts)} cells"


def deviations_table(rows: Iterable[tuple[str, str, str, str]]) -> pd.DataFrame:
    """What differs from the source: one row per deviation — the aspect, the source's choice,
    this book's, and what the difference does to the numbers."""
    return pd.DataFrame(list(rows), columns=["aspect", "the source", "this book",
                                             "what it changes"])


def outcome_counts(claims: Iterable[Claim]) -> dict[str, int]:
    """How many claims agree, differ, are undecided, and were not measured."""
    counts = {"agrees": 0, "differs": 0, "undecided": 0, "not measured": 0}
    for c in claims:
        counts[c.outcome()] += 1
    return counts


@functools.cache
def _shown() -> type:
    from pandas.io.formats.style import Styler  # jinja2: only where a table is shown

    class Shown(Styler):
        """A table as the page shows it; its HTML ids (pandas draws them at random) and its
        plain text are functions of the table, so an executed notebook is the same wherever it
        ran."""

        def __repr__(self) -> str:
            return self.data.to_string(index=False)

    return Shown


def show(table: pd.DataFrame, wrap: bool = True) -> Any:
    """`table` for the page (a pandas `Styler`): no index, numbers as given, long text wrapping
    inside its column (`wrap`) so that no cell is cut off; the same bytes for the same table."""
    uuid = hashlib.sha256(table.to_csv().encode()).hexdigest()[:8]
    styler = _shown()(table, uuid=uuid).hide(axis="index")
    return styler.set_table_attributes(f'class="dataframe lmcnb-table{" wrap" if wrap else ""}"')


def quantities(results: Results) -> tuple[str, str]:
    """The chapter's barrier and the sources' measure of the same pairs: the error barrier and
    Frankle's I_E for classifiers; the relative perplexity barrier and R for language models."""
    if "relative_ppl_instability" in results.barriers:
        return "relative_ppl_barrier", "relative_ppl_instability"
    return "error_barrier", "instability_error"


def instability_column(results: Results) -> str:
    """The sources' instability: relative perplexity for language models, else error."""
    return quantities(results)[1]


NAMES = {"error_barrier": "error barrier", "instability_error": "I_E (Frankle)",
         "relative_ppl_barrier": "PPL barrier / max PPL", "relative_ppl_instability": "R (hahacen)",
         "loss_barrier": "loss barrier"}


def _plain(table: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of `split` without a BatchNorm reset (the path as interpolated)."""
    reset = table.get("bn_reset", pd.Series(False, index=table.index)).astype(bool)
    return table[(table.split == split) & ~reset]


def evaluation_noise(results: Results, column: str | None = None, split: str = "test",
                     by: str = "spawn_step") -> pd.Series:
    """Per value of `by`: the evaluation noise of `column` (default: the barrier) — the root
    mean square over pairs of its per-pair bootstrap standard deviation over the evaluation
    examples (`lmcnb.lmc.metrics.bootstrap_sd`)."""
    column = column or quantities(results)[0]
    rows = _plain(results.barriers, split)
    return rows.groupby(by)[f"{column}_eval_sd"].apply(lambda sd: float((sd ** 2).mean() ** 0.5))


def stability_table(results: Results, split: str = "test") -> pd.DataFrame:
    """Per spawn step: replicates; the barrier (mean ± 95% CI) and its verdict — the verdict of
    the page; the barrier's evaluation noise (`evaluation_noise`); the sources' measure of the
    same pairs and its verdict; and a note where that measure exceeds the threshold only through
    the gap between the ends."""
    barrier, measure = quantities(results)
    s = _plain(results.summary(), split)
    noise = evaluation_noise(results, barrier, split)
    rows = []
    for r in s.sort_values("spawn_step").itertuples():
        b = (getattr(r, barrier), getattr(r, f"{barrier}_ci95"))
        m = (getattr(r, measure), getattr(r, f"{measure}_ci95"))
        vb, vm = verdict(*b), verdict(*m)
        note = ("the gap between the ends, not a barrier" if vm != "stable" and vb == "stable"
                else "")
        rows.append({"k": int(r.spawn_step), "n": int(r.n), NAMES[barrier]: pct(*b),
                     "verdict": vb, "evaluation noise (SD)": pct(noise.get(r.spawn_step)),
                     NAMES[measure]: pct(*m), "its verdict": vm, "note": note})
    return pd.DataFrame(rows)


def at_step(results: Results, k: int, split: str = "test",
            column: str | None = None) -> tuple[float, float]:
    """Mean and 95% CI half-width of `column` (default: the barrier, `quantities`) at spawn step
    `k` over the study's replicates."""
    column = column or quantities(results)[0]
    s = _plain(results.summary(), split)
    row = s[s.spawn_step == k]
    if row.empty:
        raise ValueError(f"spawn step {k} not in the study; valid: "
                         f"{sorted(s.spawn_step.unique().tolist())}")
    return float(row[column].iloc[0]), float(row[f"{column}_ci95"].iloc[0])


def step_claim(source: str, statement: str, results: Results | None, k: int | None, rule: str,
               note: str = "", split: str = "test", column: str | None = None,
               when: str = "") -> Claim:
    """A `Claim` on `column` (default: the barrier, `quantities`) at spawn step `k` of a study:
    its mean, 95% CI and number of replicates. Without the study (or `k`) the claim is "not
    measured". `when` says what k is in the source's terms ("0.4 epochs")."""
    if results is None or k is None:
        return Claim(source, statement, "not measured at this profile", None, rule=rule,
                     note=note)
    column = column or quantities(results)[0]
    mean, ci = at_step(results, k, split, column)
    s = _plain(results.summary(), split)
    n = int(s[s.spawn_step == k].n.iloc[0])
    quantity = f"{NAMES.get(column, column)}, {split}, k = {k}" + (f" ({when})" if when else "")
    return Claim(source, statement, quantity, mean, ci, rule, note, n=n)


def k_star_text(k_star: int | None) -> str:
    """k* as the prose states it ("none tested" when no spawn step qualifies)."""
    return "none tested" if k_star is None else str(k_star)


def accuracy(results: Results, split: str = "test") -> tuple[float, float]:
    """Mean accuracy of the children spawned at the first spawn step (each trained the whole
    length), with its 95% CI over pairs."""
    b = _plain(results.barriers, split)
    first = b[b.spawn_step == b.spawn_step.min()]
    return mean_ci(1 - (first.error_a + first.error_b) / 2)
