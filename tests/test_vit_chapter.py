"""The ViT chapter rejects bad parameters in its first cells, before any training (pretraining
included), with a message that names the valid values."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "vit_platon.ipynb"


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"shape": "ViT-Huge"}, ["unknown ViT shape 'ViT-Huge'", "MiniViT", "ViTB16"]),
    ({"images": {"normalize": "imagenet"}}, ["unknown normalize 'imagenet'", "'processor'"]),
    ({"images": {"jitter": [0.2, 0.2, 0.2, 0.7]}}, ["jitter is (brightness, contrast"]),
    ({"pruning": {"densities": [0.2, 1.5]}}, ["prune densities must be fractions in (0, 1)"]),
    ({"pruning": {"scores": ["random"]}}, ["unknown prune score 'random'", "'magnitude'"]),
    ({"pruning": {"final_warmup": 100}}, ["leave none of the 4 steps for the cubic decay"]),
    ({"pretrain": {"checkpoints": [0, 99]}}, ["pretraining checkpoint(s) [99] are not in [0, 3)"]),
    ({"spawn_steps": [0, 10_000]}, ["spawn step(s) [10000] are beyond the end of training"]),
    ({"masked": {"scratch_steps": [0, "x"]}}, ["masked scratch_steps: not a step count: 'x'"]),
    ({"n_init": 3}, ["unknown parameter(s) ['n_init']", "n_inits"]),
])
def test_bad_parameter_fails_first(fails_first, parameters, expected):
    message = fails_first(NOTEBOOK, **parameters)
    for text in expected:
        assert text in message, message
