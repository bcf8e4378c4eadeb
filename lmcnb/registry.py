"""Registries: models, datasets, tokenizers, augmentations and training hooks by name, so a run
is plain data.

A `Ref` names a registry entry and its keyword arguments. `build(ref, data_dir)` makes the object
in whichever process runs the task — a notebook, or a Dask worker on another machine that finds
the data under its own data root. Datasets and tokenizers are built once per process and cached;
models and hooks are built afresh at every call (models inside the caller's init stream).

    Ref.of("model", "lenet5", num_classes=10)
    Ref.of("data", "vision", name="mnist", split="train")
    Ref.of("data", "text_windows", corpus="shakespeare", split="train",
           tokenizer=Ref.of("tokenizer", "char", corpus="shakespeare"), block=64, stride=64)
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("model", "data", "tokenizer", "augment", "hook")
CACHED = ("data", "tokenizer")  # built once per process and data root
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in KINDS}


def _freeze(value: Any) -> Any:
    """Lists become tuples and dicts sorted tuples of pairs, so a `Ref` is hashable plain data."""
    if isinstance(value, dict):
        return ("__dict__", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and len(value) == 2 and value[0] == "__dict__":
        return {k: _thaw(v) for k, v in value[1]}
    if isinstance(value, tuple):
        return tuple(_thaw(v) for v in value)
    return value


@dataclass(frozen=True)
class Ref:
    """A registry entry by kind and name, with its arguments (plain, hashable data)."""

    kind: str
    name: str
    args: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, kind: str, entry: str, /, **kwargs: Any) -> Ref:
        entries = _entries(kind)
        if entry not in entries:
            raise ValueError(f"unknown {kind} {entry!r}; valid: {', '.join(sorted(entries))}")
        return cls(kind, entry, tuple(sorted((k, _freeze(v)) for k, v in kwargs.items())))

    def kwargs(self) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in self.args}

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs().items())
        return f"{self.kind}:{self.name}({args})"


def register(kind: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: `fn(data_dir, **args)` builds entry `name` of `kind`."""
    if kind not in KINDS:
        raise ValueError(f"unknown registry {kind!r}; valid: {', '.join(KINDS)}")

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[kind][name] = fn
        return fn

    return add


def _entries(kind: str) -> dict[str, Callable[..., Any]]:
    if kind not in KINDS:
        raise ValueError(f"unknown registry {kind!r}; valid: {', '.join(KINDS)}")
    from . import catalog  # noqa: F401  (registers the built-in entries)

    return _REGISTRY[kind]


def build(ref: Ref | Any, data_dir: str | os.PathLike | None = None) -> Any:
    """The object `ref` describes (anything that is not a `Ref` is returned as it is)."""
    if not isinstance(ref, Ref):
        return ref
    if ref.kind in CACHED:
        from .data import data_root

        return _cached(ref, str(data_root(data_dir)))
    return _entries(ref.kind)[ref.name](data_dir, **ref.kwargs())


@functools.lru_cache(maxsize=32)
def _cached(ref: Ref, root: str) -> Any:
    return _entries(ref.kind)[ref.name](root, **ref.kwargs())
