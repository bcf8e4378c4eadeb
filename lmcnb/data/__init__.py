"""Data: tensors, the image and text datasets, tokenizers, augmentation, verified files.

The names of the flat module `lmcnb.data` of lmcnb 0.1 resolve here, lazily, for one release.
"""
from __future__ import annotations

from ..core.compat import old_names

__getattr__ = old_names(__name__, {
    "..core.env": ("data_root",),
    ".download": ("DatasetMissing", "fetch"),
    ".tensors": ("TensorData", "carve"),
    ".vision": ("MEAN", "SPLITS", "STD", "VISION_DATASETS", "load_vision", "require_vision",
                "vision_files"),
})
