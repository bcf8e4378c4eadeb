"""The GPT chapter rejects bad parameters in its first cells, before any training."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "gpt_shakespeare.ipynb"


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"sim_batch_size": 8.0}, ["sim_batch_size must be an integer >= 1 (got 8.0)"]),
    ({"pretrained": "/nonexistent/dir"}, ["pretrained: no directory '/nonexistent/dir'"]),
    ({"model_iters": 3}, ["model_iters must be a list of steps"]),
    ({"eval_iters": 0}, ["eval_iters must be an integer >= 1 (got 0)"]),
    ({"fine_tune": "yes"}, ["fine_tune must be True or False"]),
    ({"max_iter": 10}, ["unknown parameter(s) ['max_iter']", "max_iters"]),
])
def test_bad_parameter_fails_first(fails_first, parameters, expected):
    message = fails_first(NOTEBOOK, **parameters)
    for text in expected:
        assert text in message, message
