"""The CNN chapter rejects bad parameters in its first cells, before any training."""
from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "cnn_baselines.ipynb"


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"model": "resnet"},
     ["unknown model 'resnet'", "'lenet5'", "'reduced_vgg'", "'alexnet'", "'all'"]),
    ({"model": "lenet5", "spawn_steps": [0, 10_000]},
     ["spawn step(s) [10000]", "beyond the end of training"]),
    ({"model": "lenet5", "n_alpha": 1}, ["n_alpha must be an integer >= 2"]),
    ({"profile": "fast"}, ["unknown profile 'fast'", "smoke", "book", "paper"]),
    ({"n_child": 3}, ["unknown parameter(s) ['n_child']", "n_children"]),
    ({"model": "lenet5", "eval_iters": 0}, ["eval_iters must be an integer >= 1 (got 0)"]),
    ({"model": "lenet5", "n_inits": 0}, ["n_inits must be an integer >= 1 (got 0)"]),
    ({"model": "lenet5", "spawn_steps": 4}, ["spawn_steps must be a list of steps", "(got 4)"]),
    ({"model": "lenet5", "spawn_steps": "abc"}, ["spawn_steps must be a list of steps", "'abc'"]),
    ({"model": "lenet5", "spawn_steps": [0, "abc"]}, ["spawn_steps: not a step count: 'abc'"]),
    ({"model": "lenet5", "executor": "locale"}, ["executor must be one of", '"serial"']),
    ({"train": {"resnet": {"max_steps": 3}}},
     ["unknown key(s) ['resnet'] in train", "'alexnet'", "'lenet5'", "'reduced_vgg'"]),
    ({"model": "lenet5", "train": {"lenet5": {"max_step": 3}}}, ["max_step"]),
    ({"model": "lenet5", "train": {"lenet5": {"batch_size": 64, "max_steps": 12, "patience": 2}},
      "holdout": 1.5}, ["holdout fraction must be in (0, 1), got 1.5"]),
])
def test_bad_parameter_fails_first(fails_first, parameters, expected):
    message = fails_first(NOTEBOOK, **parameters)
    for text in expected:
        assert text in message, message


def test_missing_dataset_names_files_and_folder(tmp_path, fails_first, monkeypatch):
    monkeypatch.setenv("LMCNB_OFFLINE", "1")
    empty = tmp_path / "nodata"
    message = fails_first(NOTEBOOK, model="lenet5", data_dir=str(empty))
    assert "DatasetMissing" in message and "mnist" in message
    assert "train-images-idx3-ubyte.gz" in message and str(empty / "mnist") in message


def test_execute_refuses_an_unknown_parameter_before_running_anything(tmp_path, capsys):
    from lmcnb.book.execute import main

    with pytest.raises(SystemExit):
        main(["--profile", "smoke", "--out", str(tmp_path), "--only", "cnn_baselines",
              "-p", "n_child", "3"])
    assert "unknown parameter(s) ['n_child']" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
