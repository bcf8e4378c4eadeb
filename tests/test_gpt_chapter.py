"""The GPT chapter rejects bad parameters before any training (pretraining included), naming the
parameter, by its own name or by the source's flag name."""
from __future__ import annotations

from pathlib import Path

import pytest

from lmcnb.chapters import gpt

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "gpt_shakespeare.ipynb"


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"sim_batch_size": 8.0}, ["train.sim_batch_size must be an integer >= 1 (got 8.0)"]),
    ({"sim_batch_size": 12}, ["train.sim_batch_size (12) must be a multiple of train.batch_size"]),
    ({"pretrained": "/nonexistent/dir"}, ["finetune.source: no directory '/nonexistent/dir'"]),
    ({"model_iters": 3}, ["spawn_steps must be a list, each a step count"]),  # a source's name
    ({"spawn_steps": [0, "x"]}, ["spawn_steps[1] must be a step count"]),
    ({"spawn_steps": [0, 100]}, ["spawn step(s) [100] are beyond the end of training"]),
    ({"train": {"optimizer": "sgd"}}, ["train.optimizer must be 'adam' or 'adamw' (got 'sgd')"]),
    ({"train": {"lr": -1.0}}, ["train.lr must be a number > 0 (got -1.0)"]),
    ({"finetune": {"n_pairs": 1}}, ["finetune.n_pairs must be an integer >= 2"]),
    ({"finetune": {"lr": 1e-3}}, ["unknown key(s) ['lr'] in finetune", "'train'"]),
    ({"finetune": {"train": {"warmup_steps": -5}}},
     ["finetune.train.warmup_steps must be an integer >= 0 (got -5)"]),
    ({"eval_iters": 0}, ["eval_iters must be an integer >= 1 or 'all' (got 0)"]),
    ({"fine_tune": "yes"}, ["finetune.enabled must be True or False (got 'yes')"]),
    ({"max_iter": 10}, ["unknown parameter(s) ['max_iter']", "n_alpha"]),
    ({"model": ["CPUGPT", "NanoGPT"]}, ["unknown model_config 'NanoGPT'"]),
    ({"pretrain": {"vocab": 100}}, ["pretrain.vocab must be an integer >= 257 or None"]),
])
def test_bad_parameter_is_refused_before_training(refuses, parameters, expected):
    message = refuses(gpt, **parameters)
    for text in expected:
        assert text in message, message


def test_the_notebook_refuses_first(fails_first):
    message = fails_first(NOTEBOOK, max_iters=0)
    assert "train.max_iters must be an integer >= 1 (got 0)" in message, message
