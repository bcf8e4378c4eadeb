"""The ViT chapter rejects bad parameters before any training (pretraining included), with a
message that names the parameter and the valid values."""
from __future__ import annotations

from pathlib import Path

import pytest

from lmcnb.chapters import vit

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "vit_platon.ipynb"


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"shape": "ViT-Huge"}, ["unknown ViT shape 'ViT-Huge'", "MiniViT", "ViTB16"]),
    ({"images": {"normalize": "imagenet"}},
     ["images.normalize must be 'dataset' or 'processor' (got 'imagenet')"]),
    ({"images": {"jitter": [0.2, 0.2, 0.2, 0.7]}}, ["images.jitter is (brightness, contrast"]),
    ({"pruning": {"densities": [0.2, 1.5]}},
     ["pruning.densities[1] must be a number > 0 and < 1 (got 1.5)"]),
    ({"pruning": {"scores": ["random"]}}, ["pruning.scores[0] must be 'platon' or 'magnitude'"]),
    ({"pruning": {"final_warmup": 100}}, ["leave none of the 4 steps for the cubic decay"]),
    ({"pretrain": {"checkpoints": [0, 99]}}, ["pretrain.checkpoints [99] are not in [0, 3)"]),
    ({"spawn_steps": [0, 10_000]}, ["spawn step(s) [10000] are beyond the end of training"]),
    ({"masked": {"scratch_steps": [0, "x"]}}, ["masked.scratch_steps[1] must be a step count"]),
    ({"n_init": 3}, ["unknown parameter(s) ['n_init']", "n_inits"]),
    ({"finetune": {"schedule": "linear"}},
     ["finetune.schedule must be 'constant' or 'cosine' or 'step' (got 'linear')"]),
    ({"pretrain": {"schedule": "exp"}}, ["pretrain.schedule must be 'constant'"]),
    ({"finetune": {"lr": -1.0}}, ["finetune.lr must be a number > 0 (got -1.0)"]),
    ({"finetune": {"lr": "abc"}}, ["finetune.lr must be a number > 0 (got 'abc')"]),
    ({"finetune": {"warmup_steps": -5}}, ["finetune.warmup_steps must be a step count"]),
    ({"device": "cuda:7"}, ["device 'cuda:7'"]),
])
def test_bad_parameter_is_refused_before_training(refuses, parameters, expected):
    message = refuses(vit, **parameters)
    for text in expected:
        assert text in message, message


def test_the_notebook_refuses_first(fails_first):
    message = fails_first(NOTEBOOK, finetune={"lr": -1.0})
    assert "finetune.lr must be a number > 0 (got -1.0)" in message, message
