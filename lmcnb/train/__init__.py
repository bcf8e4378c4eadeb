"""Training: the recipe (`recipe`), the one trainer (`trainer`), evaluation (`evaluation`).

The names of the flat module `lmcnb.train` of lmcnb 0.1 resolve here, lazily, for one release.
"""
from __future__ import annotations

from ..core.compat import old_names

__getattr__ = old_names(__name__, {
    "..core.steps": ("parse_steps",),
    ".evaluation": ("evaluate", "logits_of", "loss_and_errors"),
    ".recipe": ("TrainConfig", "lr_at", "make_optimizer"),
    ".trainer": ("EpochSampler", "Hook", "Progress", "Trainer"),
})
