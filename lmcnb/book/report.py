"""What the chapters report: numbers for the prose, verdicts against the threshold, claims of a
source against the book's measurements, and the stability summary of a study.

Every number a chapter states is glued here (`glue_all`), every comparison with a source study
is a `Claim` held as data, and the stability threshold is the one of `lmcnb.lmc.metrics`.
"""
from __future__ import annotations

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

    `rule` says when they agree: `"stable"` / `"unstable"` (against the threshold), `"<x"`,
    `">x"`, or `"≈x±t"` (within t, CI included). `note` names what the source did differently
    and what that does to its number. A measured value that is not a fraction (a loss) has
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

    def measured_text(self) -> str:
        """The measured value as the claims table shows it (a percentage, or a loss)."""
        if not self.percent and self.measured is not None:
            ci = "" if self.ci is None or math.isnan(self.ci) else f" ± {self.ci:.3g}"
            return f"{self.measured:.3g}{ci}"
        return pct(self.measured, self.ci)

    def __post_init__(self) -> None:
        if not _RULE.match(self.rule):
            raise ValueError(f"unknown rule {self.rule!r}; valid: 'stable', 'unstable', '<x', "
                             "'>x', '≈x±t'")

    def outcome(self) -> str:
        """"agrees", "differs", "undecided" (the CI spans the boundary) or "not measured"."""
        if self.measured is None or math.isnan(self.measured):
            return "not measured"
        m = _RULE.match(self.rule)
        lo, hi = _bounds(self.measured, self.ci)
        if m["x"] is not None:
            x, tol = float(m["x"]), float(m["tol"])
            return "agrees" if lo <= x + tol and hi >= x - tol else "differs"
        if self.rule in ("stable", "unstable"):
            found = verdict(self.measured, self.ci)
            return "undecided" if found == "undecided" else (
                "agrees" if found == self.rule else "differs")
        below = m["lt"] is not None
        bound = float(m["lt"] if below else m["gt"])
        if hi < bound:
            return "agrees" if below else "differs"
        if lo > bound:
            return "differs" if below else "agrees"
        return "undecided"


def claims_table(claims: Iterable[Claim]) -> pd.DataFrame:
    """One row per claim: the source's statement, the book's number, the outcome, the note."""
    return pd.DataFrame([{"source": c.source, "statement": c.statement,
                          "this book": f"{c.quantity}: {c.measured_text()}",
                          "outcome": c.outcome(), "what differs": c.note} for c in claims])


def instability_column(results: Results) -> str:
    """The chapter's instability: relative perplexity for language models, else error."""
    return ("relative_ppl_instability" if "relative_ppl_instability" in results.barriers
            else "instability_error")


def stability_table(results: Results, split: str = "test",
                    column: str | None = None) -> pd.DataFrame:
    """Per spawn step: replicates, mean ± 95% CI of the instability, and the verdict."""
    column = column or instability_column(results)
    s = results.summary()
    s = s[(s.split == split) & ~s.get("bn_reset", pd.Series(False, index=s.index)).astype(bool)]
    return pd.DataFrame([{"k": int(r.spawn_step), "n": int(r.n),
                          column: pct(getattr(r, column), getattr(r, f"{column}_ci95")),
                          "verdict": verdict(getattr(r, column), getattr(r, f"{column}_ci95"))}
                         for r in s.sort_values("spawn_step").itertuples()])


def at_step(results: Results, k: int, split: str = "test",
            column: str | None = None) -> tuple[float, float]:
    """Mean and 95% CI half-width of the instability at spawn step `k`."""
    column = column or instability_column(results)
    s = results.summary()
    row = s[(s.spawn_step == k) & (s.split == split)
            & ~s.get("bn_reset", pd.Series(False, index=s.index)).astype(bool)]
    if row.empty:
        raise ValueError(f"spawn step {k} not in the study; valid: "
                         f"{sorted(s.spawn_step.unique().tolist())}")
    return float(row[column].iloc[0]), float(row[f"{column}_ci95"].iloc[0])


def k_star_text(k_star: int | None) -> str:
    """k* as the prose states it ("none tested" when no spawn step qualifies)."""
    return "none tested" if k_star is None else str(k_star)


def accuracy(results: Results, split: str = "test") -> tuple[float, float]:
    """Mean accuracy of the children spawned at the first spawn step (each trained the whole
    length), with its 95% CI over pairs."""
    b = results.barriers
    first = b[(b.split == split) & (b.spawn_step == b.spawn_step.min())
              & ~b.get("bn_reset", pd.Series(False, index=b.index)).astype(bool)]
    return mean_ci(1 - (first.error_a + first.error_b) / 2)
