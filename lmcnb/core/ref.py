"""A reference to a registry entry — a model, a dataset view, a tokenizer, an augmentation or a
training hook — by kind and name, with its keyword arguments: plain, hashable data, so a run is
plain data that any process can rebuild. What the names mean is the catalog's business
(`lmcnb.experiments.catalog`, which builds and checks refs); this module knows only the kinds.

    Ref.of("model", "lenet5", num_classes=10)
    Ref.of("data", "vision", name="mnist", split="train")
    Ref.of("data", "text_windows", corpus="shakespeare", split="train",
           tokenizer=Ref.of("tokenizer", "char", corpus="shakespeare"), block=64, stride=64)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("model", "data", "tokenizer", "augment", "hook")


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
        """`Ref(kind, entry, kwargs)` with its arguments frozen; the entry's name is checked by the
        catalog (`lmcnb.experiments.catalog.check`), when a setup or a run is built from it."""
        if kind not in KINDS:
            raise ValueError(f"unknown registry {kind!r}; valid: {', '.join(KINDS)}")
        return cls(kind, entry, tuple(sorted((k, _freeze(v)) for k, v in kwargs.items())))

    def kwargs(self) -> dict[str, Any]:
        """The entry's keyword arguments, as plain lists and dicts again."""
        return {k: _thaw(v) for k, v in self.args}

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs().items())
        return f"{self.kind}:{self.name}({args})"


def refs_in(value: Any) -> list[Ref]:
    """Every `Ref` in `value` and in the arguments of the refs found, outermost first."""
    if isinstance(value, Ref):
        return [value, *refs_in([v for _, v in value.args])]
    if isinstance(value, (list, tuple)):
        return [r for v in value for r in refs_in(v)]
    return []
