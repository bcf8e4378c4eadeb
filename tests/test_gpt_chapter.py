"""The GPT chapter rejects bad parameters in its first cells, before any training."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "gpt_shakespeare.ipynb"


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"sim_batch_size": 8.0}, ["sim_batch_size must be an integer >= 1 (got 8.0)"]),
    ({"pretrained": "/nonexistent/dir"}, ["pretrained: no directory '/nonexistent/dir'"]),
    ({"model_iters": 3}, ["spawn_steps must be a list of steps"]),  # the source's name: an alias
    ({"spawn_steps": [0, "x"]}, ["spawn_steps: not a step count: 'x'"]),
    ({"train": {"optimizer": "sgd"}}, ["unknown optimizer 'sgd'; valid: 'adam', 'adamw'"]),
    ({"finetune": {"n_children": 1}}, ["finetune n_children must be an integer >= 2"]),
    ({"finetune": {"lr": 1e-3}}, ["unknown key(s) ['lr'] in finetune", "'train'"]),
    ({"eval_iters": 0}, ["eval_iters must be an integer >= 1 (got 0)"]),
    ({"fine_tune": "yes"}, ["fine_tune must be True or False"]),
    ({"max_iter": 10}, ["unknown parameter(s) ['max_iter']", "max_iters"]),
])
def test_bad_parameter_fails_first(fails_first, parameters, expected):
    message = fails_first(NOTEBOOK, **parameters)
    for text in expected:
        assert text in message, message
