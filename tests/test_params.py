"""Tests for lmcnb.params: profiles, explicit overrides, and errors that list the valid values."""

import pytest
import torch

from lmcnb.book.params import PROFILES, resolve
from lmcnb.core.checks import at_least, choose
from lmcnb.core.device import pick_device
from lmcnb.core.env import runs_root

TABLE = {
    "smoke": {"n_alpha": 5, "spawn_steps": [0, 10], "model": "lenet5", "bn_reset": False},
    "book": {"n_alpha": 30, "spawn_steps": [0, 100, 1000], "model": "all", "bn_reset": True},
    "paper": {"n_alpha": 30, "spawn_steps": [0, "1ep"], "model": "all", "bn_reset": True},
}


def test_profile_names():
    assert PROFILES == ("smoke", "book", "paper")


def test_resolve_takes_the_profile_and_overrides_with_explicit_values(tmp_path):
    p = resolve(TABLE, "smoke")
    assert (p.n_alpha, p.spawn_steps, p.model, p.bn_reset, p.profile) == (
        5, [0, 10], "lenet5", False, "smoke")
    p = resolve(TABLE, "book", n_alpha=11, spawn_steps=["2ep"], bn_reset=False, model=None,
                runs_dir=str(tmp_path / "r"))
    assert p.n_alpha == 11 and p.spawn_steps == ["2ep"]
    assert p.bn_reset is False  # a falsy explicit value still overrides
    assert p.model == "all"  # None means "not given": the profile's value stays
    assert p.profile == "book"
    assert p.runs_dir == (tmp_path / "r").resolve()
    # The profile table is not modified.
    assert TABLE["book"]["n_alpha"] == 30 and TABLE["book"]["bn_reset"] is True


def test_resolve_unknown_profile_lists_valid_profiles():
    with pytest.raises(ValueError) as info:
        resolve(TABLE, "fast")
    msg = str(info.value)
    assert "'fast'" in msg and all(name in msg for name in ("smoke", "book", "paper"))


def test_resolve_unknown_parameter_lists_valid_parameters():
    with pytest.raises(ValueError) as info:
        resolve(TABLE, "smoke", n_alpah=3)
    msg = str(info.value)
    assert "n_alpah" in msg
    assert all(name in msg for name in ("n_alpha", "spawn_steps", "model", "bn_reset"))


def test_resolve_accepts_machine_parameters(tmp_path):
    p = resolve(TABLE, "smoke", data_dir=str(tmp_path), device="cpu")
    assert p.data_dir == str(tmp_path) and p.device == "cpu"


SECTIONS = {
    "smoke": {"n_alpha": 5, "finetune": {"lr": 1e-3, "steps": 4, "train": {"bs": 8, "wd": 0}},
              "n_inits": {"a": 1, "b": 2}},
    "book": {"n_alpha": 11, "finetune": {"lr": 3e-3, "steps": 150}, "n_inits": {"a": 3}},
    "paper": {"n_alpha": 30, "finetune": {"lr": 1e-4, "steps": 1000}, "n_inits": 3},
}


def test_resolve_reads_the_parameters_cell_namespace():
    cell = {"n_alpha": 7, "finetune": None, "n_inits": None, "colab": False, "unrelated": 1}
    p = resolve(SECTIONS, "book", cell)
    assert p.n_alpha == 7 and p.finetune == {"lr": 3e-3, "steps": 150}
    with pytest.raises(ValueError, match=r"\['finetune'\] are not declared"):
        resolve(SECTIONS, "book", {"n_alpha": None, "n_inits": None})


def test_resolve_merges_sections_key_by_key_and_checks_their_keys():
    cell = {"n_alpha": None, "finetune": {"steps": 10}, "n_inits": {"b": 4}}
    p = resolve(SECTIONS, "book", cell)
    assert p.finetune == {"lr": 3e-3, "steps": 10}  # the section's other keys stay
    assert p.n_inits == {"a": 3, "b": 4}
    assert SECTIONS["book"]["finetune"]["steps"] == 150  # the table is not modified
    p = resolve(SECTIONS, "book", {**cell, "n_inits": 5})  # a plain value replaces a section
    assert p.n_inits == 5
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['step'\] in finetune; valid: "
                                         r"\['lr', 'steps', 'train'\]"):
        resolve(SECTIONS, "book", {**cell, "finetune": {"step": 10}})


def test_resolve_aliases_name_a_key_or_a_section_key():
    cell = {"n_alpha": None, "finetune": None, "n_inits": None, "ft_iters": 12, "alphas": 9}
    p = resolve(SECTIONS, "smoke", cell,
                aliases={"ft_iters": "finetune.steps", "alphas": "n_alpha"})
    assert p.finetune["steps"] == 12 and p.finetune["lr"] == 1e-3 and p.n_alpha == 9
    p = resolve(SECTIONS, "smoke", {**cell, "finetune": {"train": {"wd": 0.1}}})
    assert p.finetune["train"] == {"bs": 8, "wd": 0.1}  # nested sections merge too


def test_choose():
    assert choose("model", "lenet5", ["lenet5", "alexnet"]) == "lenet5"
    assert choose("n", 2, range(5)) == 2
    with pytest.raises(ValueError) as info:
        choose("model", "resnet", ("lenet5", "reduced_vgg", "alexnet"))
    msg = str(info.value)
    assert "model" in msg and "'resnet'" in msg
    assert all(repr(v) in msg for v in ("lenet5", "reduced_vgg", "alexnet"))


def test_at_least():
    assert at_least("n_alpha", 2, 2) == 2
    assert at_least("n_children", 10, 2) == 10
    for bad in (1, 0, -4, 2.0, 2.5, "3", None, True):
        with pytest.raises(ValueError) as info:
            at_least("n_alpha", bad, 2)
        assert "n_alpha" in str(info.value) and ">= 2" in str(info.value)


def test_runs_root_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LMCNB_RUNS", raising=False)
    assert runs_root() == tmp_path.resolve() / "runs"
    monkeypatch.setenv("LMCNB_RUNS", str(tmp_path / "env"))
    assert runs_root() == (tmp_path / "env").resolve()
    assert runs_root(tmp_path / "given") == (tmp_path / "given").resolve()


def test_pick_device():
    assert pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():  # asked for and not there: refused, the parameter named
        with pytest.raises(ValueError, match="device 'cuda:1'.*no cuda device"):
            pick_device("cuda:1")
    assert pick_device() in ("cpu", "cuda", "mps") and pick_device("auto") == pick_device()
    with pytest.raises(ValueError) as info:
        pick_device("tpu")
    assert all(name in str(info.value) for name in ("cpu", "cuda", "mps"))
