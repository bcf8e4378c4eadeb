"""Every barrier of the LMC definitions, computed from one interpolation curve.

One function per quantity; `barriers` gathers them for a curve, `aggregate` gives mean and
95% CI over replicates, `onset` finds k*.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

STABLE_THRESHOLD = 0.02


def gap(alphas: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Interpolation gap: value(α) − [(1 − α)·value(0) + α·value(1)]."""
    alphas, values = np.asarray(alphas, float), np.asarray(values, float)
    return values - ((1 - alphas) * values[0] + alphas * values[-1])


def barrier(alphas: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Signed barrier max_α gap(α) over the interior 0 < α < 1, and the α where it is reached.

    The gap is 0 at both endpoints by construction, so they are left out of the max: otherwise
    the barrier could never be negative (a convex path). A grid of only the endpoints gives 0.
    """
    a, g = np.asarray(alphas, float), gap(alphas, values)
    inside = (a > 0) & (a < 1)
    if inside.any():
        a, g = a[inside], g[inside]
    i = int(np.argmax(g))
    return float(g[i]), float(a[i])


def instability(values: np.ndarray) -> float:
    """Frankle et al.: sup over α minus the mean of the endpoints."""
    values = np.asarray(values, float)
    return float(values.max() - 0.5 * (values[0] + values[-1]))


def relative_ppl_instability(losses: np.ndarray) -> float:
    """hahacen's study: (max PPL − mean endpoint PPL) / max PPL, with PPL = exp(loss)."""
    ppl = np.exp(np.asarray(losses, float))
    return float((ppl.max() - 0.5 * (ppl[0] + ppl[-1])) / ppl.max())


def relative_ppl_barrier(alphas: np.ndarray, losses: np.ndarray) -> float:
    """The barrier of the perplexity path, relative: max over 0 < α < 1 of
    PPL(α) − [(1 − α)·PPL(0) + α·PPL(1)], divided by max PPL (signed; PPL = exp(loss)).

    R's barrier-first companion: R measures the peak against the mean of the ends, so two ends of
    different perplexity give R > 0 along a straight (or convex) path; this is 0 there, and it
    rises only where the path climbs above the line between its ends.
    """
    ppl = np.exp(np.asarray(losses, float))
    return barrier(alphas, ppl)[0] / float(ppl.max())


def seed_relative_ppl_instability(losses: np.ndarray) -> float:
    """R as hahacen's code computed it: |max PPL − ½(PPL₀ + PPL₉)| / max PPL, PPL = exp(loss).

    `losses` is its 11-point curve, α = 0, 0.1, …, 1 accumulated as floats (so the points are
    0.30000000000000004, …, 0.9999999999999999: a difference under 2e-16). The max runs over all
    11 points, but the flaw: the "end" of the mean is point 9, α = 0.9, not α = 1. The absolute
    value changes nothing, as the max is at least PPL₀ and PPL₉. Use `relative_ppl_instability`.
    """
    ppl = np.exp(np.asarray(losses, float))
    if ppl.shape != (11,):
        raise ValueError(f"the seed's curve has 11 points (α = 0, 0.1, …, 1), got {ppl.shape}")
    return float(abs(ppl.max() - 0.5 * (ppl[0] + ppl[9])) / ppl.max())


def midpoint(alphas: np.ndarray, values: np.ndarray) -> float:
    """Adilova et al.: value(½) − ½[value(0) + value(1)] (α = ½ must be on the grid)."""
    alphas, values = np.asarray(alphas, float), np.asarray(values, float)
    hits = np.flatnonzero(np.isclose(alphas, 0.5))
    if hits.size == 0:
        return float(np.interp(0.5, alphas, values) - 0.5 * (values[0] + values[-1]))
    return float(values[hits[0]] - 0.5 * (values[0] + values[-1]))


def barriers(alphas: Sequence[float], loss: Sequence[float], error: Sequence[float],
             language_model: bool = False,
             threshold: float = STABLE_THRESHOLD) -> dict[str, float | bool]:
    """All per-curve quantities; `stable` uses I_E for classifiers and R for language models.

    A point whose loss or error is not finite was not measured (the model's output there was not
    finite, so its top-1 error is not one either): every quantity that reads it is +inf, its α
    is the quantity's α*, and the pair is not stable. `nonfinite_alpha` is the first such α (nan
    when every point is finite).
    """
    a = np.asarray(alphas, float)
    loss, error = np.asarray(loss, float), np.asarray(error, float)
    measured = np.isfinite(loss) & np.isfinite(error)
    nonfinite = float(a[~measured][0]) if not measured.all() else float("nan")
    # Unmeasured points as nan: each quantity is then nan (or ±inf) exactly where it reads one.
    loss, error = np.where(measured, loss, np.nan), np.where(measured, error, np.nan)

    def worst(value: float) -> float:
        return value if math.isfinite(value) else math.inf

    def peak(values: np.ndarray) -> tuple[float, float]:
        b, at = barrier(a, values)
        return (b, at) if math.isfinite(b) else (math.inf, nonfinite)

    loss_b, loss_at = peak(loss)
    err_b, err_at = peak(error)
    out: dict[str, float | bool] = {
        "loss_barrier": loss_b, "alpha_star_loss": loss_at,
        "error_barrier": err_b, "alpha_star_error": err_at,
        "instability_loss": worst(instability(loss)),
        "instability_error": worst(instability(error)),
        "midpoint_loss": worst(midpoint(a, loss)), "midpoint_error": worst(midpoint(a, error)),
        "alpha_star": float(a[int(np.argmax(error))]),  # argmax: the first nan, if any
        "nonfinite_alpha": nonfinite,
    }
    if language_model:
        out["relative_ppl_instability"] = worst(relative_ppl_instability(loss))
        out["relative_ppl_barrier"] = worst(relative_ppl_barrier(a, loss))
        out["stable"] = out["relative_ppl_instability"] < threshold
    else:
        out["stable"] = out["instability_error"] < threshold
    return out


BOOTSTRAP_RESAMPLES = 200


def bootstrap_sd(alphas: Sequence[float], example_loss: np.ndarray, example_error: np.ndarray,
                 language_model: bool = False, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 0) -> dict[str, float]:
    """Evaluation noise: the bootstrap standard deviation of each barrier of one path over its
    evaluation examples.

    `example_loss` and `example_error` hold each example's loss and error at each α (shape
    α × example). A resample draws the examples with replacement — the same draw at every α, so
    the path keeps its shape — and recomputes the barriers from its means; `resamples` draws from
    a generator seeded with `seed` (the same numbers on every machine). nan where an example's
    value is not finite.
    """
    a = np.asarray(alphas, float)
    loss, error = np.asarray(example_loss, float), np.asarray(example_error, float)
    keys = ["loss_barrier", "error_barrier", "instability_loss", "instability_error"]
    keys += ["relative_ppl_instability", "relative_ppl_barrier"] if language_model else []
    if not (np.isfinite(loss).all() and np.isfinite(error).all()):
        return dict.fromkeys(keys, math.nan)
    n = loss.shape[1]
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)
    curves = {"loss": counts @ loss.T / n, "error": counts @ error.T / n}  # resample × α
    line = {k: np.outer(v[:, 0], 1 - a) + np.outer(v[:, -1], a) for k, v in curves.items()}
    inside = (a > 0) & (a < 1) if ((a > 0) & (a < 1)).any() else np.ones_like(a, bool)

    def peak(values: np.ndarray, ends: np.ndarray) -> np.ndarray:
        return (values - ends)[:, inside].max(1)

    draws = {"loss_barrier": peak(curves["loss"], line["loss"]),
             "error_barrier": peak(curves["error"], line["error"]),
             "instability_loss": curves["loss"].max(1) - curves["loss"][:, [0, -1]].mean(1),
             "instability_error": curves["error"].max(1) - curves["error"][:, [0, -1]].mean(1)}
    if language_model:
        ppl = np.exp(curves["loss"])
        top = ppl.max(1)
        ppl_line = np.outer(ppl[:, 0], 1 - a) + np.outer(ppl[:, -1], a)
        draws["relative_ppl_instability"] = (top - ppl[:, [0, -1]].mean(1)) / top
        draws["relative_ppl_barrier"] = peak(ppl, ppl_line) / top
    return {k: float(draws[k].std(ddof=1)) for k in keys}


def l2_distance(state_a: dict[str, torch.Tensor],
                state_b: dict[str, torch.Tensor]) -> tuple[float, float]:
    """‖θ_A − θ_B‖₂ and ‖θ_A − θ_B‖₂ / ‖θ_A‖₂ over the floating-point tensors."""
    diff = norm_a = 0.0
    for key, a in state_a.items():
        if a.is_floating_point():
            diff += float((a.double() - state_b[key].double()).pow(2).sum())
            norm_a += float(a.double().pow(2).sum())
    return math.sqrt(diff), math.sqrt(diff) / math.sqrt(norm_a) if norm_a else float("nan")


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (nan for one value)."""
    from scipy import stats  # ~0.6 s to import: only where an interval is computed

    x = np.asarray(values, float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float("nan")
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean()), float(half)


def aggregate(table: pd.DataFrame, by: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Mean, 95% CI half-width and replicate count of `columns`, grouped by `by`."""
    rows = []
    for key, group in table.groupby(list(by), sort=True):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["n"] = len(group)
        for col in columns:
            row[col], row[f"{col}_ci95"] = mean_ci(group[col].astype(float))
        rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(a: pd.DataFrame, b: pd.DataFrame, column: str,
                      on: Sequence[str] = ("spawn_step", "replicate", "pair"),
                      by: Sequence[str] = ("spawn_step",)) -> pd.DataFrame:
    """`column` of B minus `column` of A, matched row by row on `on` (the same trunk, spawn step
    and pair: a comparison within a trunk), with mean, 95% CI and count per `by` — the columns
    `aggregate` gives, the difference under the name `column`.

    Both tables must hold the same keys once each: a row without its partner is an error, not a
    smaller sample.
    """
    on = list(on)
    for name, t in (("A", a), ("B", b)):
        if t.duplicated(on).any():
            raise ValueError(f"table {name} holds a key of {on} more than once: filter it to one "
                             "condition (split, bn_reset) first")
    joined = a[on + [column]].merge(b[on + [column]], on=on, how="outer", suffixes=("_a", "_b"),
                                    indicator=True)
    alone = joined[joined._merge != "both"]
    if len(alone):
        raise ValueError(f"{len(alone)} rows have no partner on {on}: "
                         f"{alone[on].head(3).to_dict('records')}")
    joined[column] = joined[f"{column}_b"] - joined[f"{column}_a"]
    return aggregate(joined, by, [column])


def onset(steps: Sequence[int], mean_instability: Sequence[float],
          threshold: float = STABLE_THRESHOLD) -> int | None:
    """k*: the smallest spawn step below threshold that stays below for every larger step."""
    order = np.argsort(steps)
    k_star = None
    for i in order[::-1]:
        if mean_instability[i] < threshold:
            k_star = int(steps[i])
        else:
            break
    return k_star
