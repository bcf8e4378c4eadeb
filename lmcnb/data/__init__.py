"""Data: tensors, the image and text datasets, tokenizers, augmentation, verified files.

The names of the flat module `lmcnb.data` of lmcnb 0.1 resolve here, lazily, for one release.
"""
from __future__ import annotations

import importlib
from typing import Any

_OLD = {
    "data_root": "..core.env",
    "DatasetMissing": ".download",
    "fetch": ".download",
    "TensorData": ".tensors",
    "carve": ".tensors",
    "MEAN": ".vision",
    "SPLITS": ".vision",
    "STD": ".vision",
    "VISION_DATASETS": ".vision",
    "load_vision": ".vision",
    "require_vision": ".vision",
    "vision_files": ".vision",
}


def __getattr__(name: str) -> Any:
    if name in _OLD:
        return getattr(importlib.import_module(_OLD[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
