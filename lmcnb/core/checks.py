"""Checks of single values, each with a message that names the value and what is valid."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


def choose(name: str, value: Any, valid: Iterable[Any]) -> Any:
    """`value` if it is one of `valid`, else a ValueError listing them."""
    valid = list(valid)
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(repr, valid))}")
    return value


def at_least(name: str, value: Any, minimum: int) -> int:
    """`value` if it is an integer >= `minimum`, else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return value


def batches_or_all(name: str, value: Any) -> int | str:
    """`"all"` or a number of evaluation batches (an integer >= 1)."""
    if value != "all":
        at_least(name, value, 1)
    return value


def flag(name: str, value: Any) -> bool:
    """`value` if it is True or False, else a ValueError naming it."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False (got {value!r})")
    return value


def pretrained_source(name: str, value: Any) -> str:
    """A hub id (`"gpt2"`, `"org/model"`) or a directory written by `save_pretrained` that
    exists."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a hub id or a directory (got {value!r})")
    looks_like_path = value.startswith(("/", ".", "~")) or value.count("/") > 1
    if looks_like_path and not Path(value).expanduser().is_dir():
        raise ValueError(f"{name}: no directory {value!r} (give a hub id such as 'gpt2', or a "
                         "directory written by save_pretrained)")
    return value


def check_positive(**values: object) -> None:
    """Each value an integer >= 1, else a ValueError naming it."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1 (valid: 1, 2, 3, …), got {value!r}")
