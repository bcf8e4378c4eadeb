"""Training: the recipe (`recipe`), the one trainer (`trainer`), evaluation (`evaluation`).

The names of the flat module `lmcnb.train` of lmcnb 0.1 resolve here, lazily, for one release.
"""
from __future__ import annotations

import importlib
from typing import Any

_OLD = {
    "parse_steps": "..core.steps",
    "evaluate": ".evaluation",
    "logits_of": ".evaluation",
    "loss_and_errors": ".evaluation",
    "TrainConfig": ".recipe",
    "lr_at": ".recipe",
    "make_optimizer": ".recipe",
    "EpochSampler": ".trainer",
    "Hook": ".trainer",
    "Progress": ".trainer",
    "Trainer": ".trainer",
}


def __getattr__(name: str) -> Any:
    if name in _OLD:
        return getattr(importlib.import_module(_OLD[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
