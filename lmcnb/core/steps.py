"""Step counts: `500`, `"500it"` or `"2ep"` (epochs, may be fractional), and lists of them."""
from __future__ import annotations

from typing import Any


def parse_steps(value: int | str, steps_per_epoch: int) -> int:
    """`500`, `"500it"` or `"2ep"` (epochs, may be fractional) to optimizer steps."""
    if isinstance(value, bool):
        raise ValueError(f"not a step count: {value!r}")
    if isinstance(value, int):
        steps = value
    elif isinstance(value, str) and value.endswith("ep"):
        steps = round(float(value[:-2]) * steps_per_epoch)
    elif isinstance(value, str) and value.endswith("it"):
        steps = int(value[:-2])
    elif isinstance(value, str) and value.isdigit():
        steps = int(value)
    else:
        raise ValueError(f"not a step count: {value!r} (use an int, '500it' or '2ep')")
    if steps < 0:
        raise ValueError(f"step count must be >= 0, got {value!r}")
    return steps


def step_list(name: str, value: Any) -> list[int | str]:
    """A list of steps: ints, `"500it"` or `"2ep"` strings (checked for form, not for length)."""

    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list of steps, e.g. [0, 100, '1ep'] (got {value!r})")
    for v in value:
        try:
            parse_steps(v, 1)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return list(value)
