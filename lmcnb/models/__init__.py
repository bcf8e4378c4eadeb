"""Models: the CNNs, GPT-2 and ViT through `transformers`, the PTB transformer, pretrained folders.

The names of the flat module `lmcnb.models` of lmcnb 0.1 resolve here, lazily, for one release.
"""
from __future__ import annotations

from ..core.compat import old_names

__getattr__ = old_names(__name__, {
    ".cnn": ("AlexNet", "CNN_MODELS", "LeNet5", "ReducedVGG", "build_model", "count_parameters"),
})
