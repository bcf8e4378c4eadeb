"""Models: the CNNs, GPT-2 and ViT through `transformers`, the PTB transformer, pretrained folders.

The names of the flat module `lmcnb.models` of lmcnb 0.1 resolve here, lazily, for one release.
"""
from __future__ import annotations

import importlib
from typing import Any

_OLD = {
    "AlexNet": ".cnn",
    "CNN_MODELS": ".cnn",
    "LeNet5": ".cnn",
    "ReducedVGG": ".cnn",
    "build_model": ".cnn",
    "count_parameters": ".cnn",
}


def __getattr__(name: str) -> Any:
    if name in _OLD:
        return getattr(importlib.import_module(_OLD[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
