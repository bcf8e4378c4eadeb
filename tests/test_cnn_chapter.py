"""The CNN chapter rejects bad parameters before any training, naming the parameter and what is
valid — in its typed config, and when the notebook runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from lmcnb.chapters import cnn

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "cnn_baselines.ipynb"


@pytest.mark.parametrize(("parameters", "expected"), [
    ({"model": "resnet"},
     ["model must be 'lenet5' or 'reduced_vgg' or 'alexnet' or 'all' (got 'resnet')"]),
    ({"model": "lenet5", "spawn_steps": [0, 10_000]},
     ["spawn step(s) [10000]", "beyond the end of training"]),
    ({"model": "lenet5", "n_alpha": 1}, ["n_alpha must be an integer >= 2 (got 1)"]),
    ({"profile": "fast"}, ["unknown profile 'fast'", "smoke", "book", "paper"]),
    ({"n_child": 3}, ["unknown parameter(s) ['n_child']", "n_children"]),
    ({"model": "lenet5", "eval_iters": 0}, ["eval_iters must be an integer >= 1 or 'all'"]),
    ({"model": "lenet5", "n_inits": 0}, ["n_inits must be an integer >= 1"]),
    ({"model": "lenet5", "n_inits": {"lenet5": 0}}, ["n_inits.lenet5 must be an integer >= 1"]),
    ({"model": "lenet5", "spawn_steps": 4}, ["spawn_steps must be a list, each a step count",
                                             "(got 4)"]),
    ({"model": "lenet5", "spawn_steps": [0, "abc"]},
     ["spawn_steps[1] must be a step count (an int, '500it' or '2ep') (got 'abc')"]),
    ({"model": "lenet5", "spawn_steps": []}, ["spawn_steps is empty: give at least one step"]),
    ({"model": "lenet5", "k1_steps": [0], "k2_steps": []},
     ["k1_steps and k2_steps make one grid, give both or neither"]),
    ({"model": "lenet5", "executor": "locale"}, ["executor must be one of", '"serial"']),
    ({"train": {"resnet": {"max_steps": 3}}},
     ["unknown key(s) ['resnet'] in train", "'alexnet'", "'lenet5'", "'reduced_vgg'"]),
    ({"train": {"lenet5": {"max_step": 3}}},
     ["unknown key(s) ['max_step'] in train.lenet5; valid: ['batch_size', 'max_steps'"]),
    ({"train": 5}, ["train must be a mapping of names, each a mapping of batch_size", "(got 5)"]),
    ({"train": {"lenet5": {"batch_size": -1}}},
     ["train.lenet5.batch_size must be an integer >= 1"]),
    ({"holdout": 1.5}, ["holdout must be a number > 0 and < 1 (got 1.5)"]),
    ({"bn_reset": "yes"}, ["bn_reset must be True or False (got 'yes')"]),
])
def test_bad_parameter_is_refused_before_training(refuses, parameters, expected):
    message = refuses(cnn, **parameters)
    for text in expected:
        assert text in message, message


def test_the_notebook_refuses_first(fails_first):
    message = fails_first(NOTEBOOK, model="lenet5", spawn_steps=[0, "abc"])
    assert "spawn_steps[1] must be a step count" in message, message


def test_missing_dataset_names_files_and_folder(tmp_path, refuses, monkeypatch):
    monkeypatch.setenv("LMCNB_OFFLINE", "1")
    empty = tmp_path / "nodata"
    with pytest.raises(FileNotFoundError) as info:
        refuses(cnn, model="lenet5", data_dir=str(empty))
    message = str(info.value)
    assert "mnist" in message and "train-images-idx3-ubyte.gz" in message
    assert str(empty / "mnist") in message


def test_execute_refuses_an_unknown_parameter_before_running_anything(tmp_path, capsys):
    from lmcnb.book.execute import main

    with pytest.raises(SystemExit):
        main(["--profile", "smoke", "--out", str(tmp_path), "--only", "cnn_baselines",
              "-p", "n_child", "3"])
    assert "unknown parameter(s) ['n_child']" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_the_book_executor_goes_only_to_chapters_that_take_one():
    from lmcnb.book.execute import CHAPTERS, executor_of

    given = {c: executor_of(c, "local") for c in CHAPTERS}
    assert given["measure_your_own"] == {} and given["cnn_baselines"] == {"executor": "local"}
    assert all(executor_of(c, None) == {} for c in CHAPTERS)
