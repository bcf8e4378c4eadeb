"""The pilots that sized the `book` profiles (`benchmarks/pilot.py`), read back for the chapters.

A pilot's rows are committed beside the benchmarks (`benchmarks/pilots/<name>.csv`), so a
chapter run from a checkout (locally, on a cluster or in Colab) shows the measurement its
profile rests on.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import Markdown

from ..lmc.metrics import aggregate
from .report import pct, show

FOLDER = Path(__file__).resolve().parents[2] / "benchmarks" / "pilots"


def read_pilot(name: str) -> pd.DataFrame | None:
    """The rows of pilot `name`, or None where it has not been run."""
    path = FOLDER / f"{name}.csv"
    return pd.read_csv(path) if path.exists() else None


def show_pilot(name: str, barrier: str, split: str = "test") -> Any:
    """Pilot `name`'s table (`pilot_table`), or a line saying that it was not measured and how to
    measure it: a profile not sized by a pilot is never shown as if it were."""
    rows = read_pilot(name)
    if rows is None:
        return Markdown(f"*Not measured*: no pilot `{name}` has been run, so this profile's size "
                        f"is an estimate, not a measurement (`python benchmarks/pilot.py`, "
                        f"see `benchmarks/README.md`).")
    return show(pilot_table(rows, barrier, split), wrap=False)


def pilot_table(rows: pd.DataFrame, barrier: str, split: str = "test") -> pd.DataFrame:
    """Per spawn step k and training length: replicates, the barrier (mean ± 95% CI), its
    evaluation noise on the pilot's sample and on a quarter of it, the CPU time of a training
    step and of a pair's evaluation on one split (single-threaded tasks)."""
    rows = rows[rows.split == split].assign(
        ms_per_step=lambda t: 1000 * t.child_cpu_s / t.child_steps)
    s = aggregate(rows, ["k", "length"], [barrier])
    cost = rows.groupby(["k", "length"]).agg(
        noise=(f"{barrier}_eval_sd_1/1", lambda x: float((x ** 2).mean() ** 0.5)),
        quarter=(f"{barrier}_eval_sd_1/4", lambda x: float((x ** 2).mean() ** 0.5)),
        examples=("examples", "first"), per_step=("ms_per_step", "mean"),
        evaluation=("eval_cpu_s", "mean")).reset_index()
    s = s.merge(cost, on=["k", "length"])
    return pd.DataFrame([{
        "k": int(r.k), "length (steps)": int(r.length), "n": int(r.n),
        barrier.replace("_", " "): pct(getattr(r, barrier), getattr(r, f"{barrier}_ci95")),
        f"evaluation noise ({int(r.examples)} examples)": pct(r.noise),
        f"… on {int(r.examples) // 4}": pct(r.quarter),
        "CPU ms per step": f"{r.per_step:.0f}",
        "CPU s per pair and split evaluated": f"{r.evaluation:.0f}"} for r in s.itertuples()])
