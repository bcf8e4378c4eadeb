"""Chapter parameters: typed configs built from a profile and explicit values, every field checked
(type and range) with a message that names it, sections merged key by key, and the notebooks'
parameters cells declaring exactly the configs' names."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import torch

from lmcnb.book.params import (
    MACHINE_PARAMETERS,
    PROFILES,
    ChapterConfig,
    Section,
    Steps,
    declared_in,
    help_table,
    param,
)
from lmcnb.chapters import cnn, gpt, independent, own, ptb, vit
from lmcnb.core.checks import at_least, choose
from lmcnb.core.device import pick_device
from lmcnb.core.env import runs_root

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@dataclass(frozen=True, kw_only=True)
class Train(Section):
    lr: float = param("learning rate", gt=0)
    steps: Steps = param("length", min=1)
    wd: float = param("weight decay", default=0.0, min=0)


@dataclass(frozen=True, kw_only=True)
class Toy(ChapterConfig):
    n_alpha: int = param("α points", min=2)
    model: Literal["lenet5", "all"] = param("the model")
    finetune: Train = param("fine-tuning")
    n_inits: int | dict[str, int] = param("replicates", min=1, keys=("a", "b"))
    spawn_steps: list[Steps] = param("spawn steps")

    aliases = {"ft_lr": "finetune.lr", "alphas": "n_alpha"}


Toy.profiles = {
    "smoke": dict(n_alpha=5, model="lenet5", finetune=dict(lr=1e-3, steps=4),
                  n_inits={"a": 1, "b": 2}, spawn_steps=[0, 2]),
    "book": dict(n_alpha=11, model="all", finetune=dict(lr=3e-3, steps=150), n_inits={"a": 3},
                 spawn_steps=[0, "1ep"]),
    "paper": dict(n_alpha=30, model="all", finetune=dict(lr=1e-4, steps="8ep"), n_inits=3,
                  spawn_steps=[0, 100]),
}


def test_profile_names():
    assert PROFILES == ("smoke", "book", "paper")


def test_resolve_takes_the_profile_and_overrides_with_explicit_values(tmp_path):
    c = Toy.resolve("smoke")
    assert (c.n_alpha, c.model, c.finetune, c.profile) == (5, "lenet5", Train(lr=1e-3, steps=4),
                                                           "smoke")
    c = Toy.resolve("book", n_alpha=7, model=None, runs_dir=str(tmp_path / "r"))
    assert c.n_alpha == 7 and c.model == "all"  # None means "not given": the profile's value stays
    assert c.runs_dir == str((tmp_path / "r").resolve())
    assert Toy.profiles["book"]["n_alpha"] == 11  # the profile is not modified


def test_resolve_reads_the_parameters_cell_and_merges_sections_key_by_key():
    cell = {"n_alpha": None, "model": None, "finetune": {"steps": 10}, "n_inits": {"b": 4},
            "spawn_steps": None, "colab": False}
    c = Toy.resolve("book", cell)
    assert c.finetune == Train(lr=3e-3, steps=10)  # the section's other keys stay
    assert c.n_inits == {"a": 3, "b": 4}
    assert Toy.resolve("book", {**cell, "n_inits": 5}).n_inits == 5  # a plain value replaces it
    with pytest.raises(ValueError, match=r"\['spawn_steps'\] are not declared"):
        Toy.resolve("book", {k: v for k, v in cell.items() if k != "spawn_steps"})


def test_aliases_name_a_field_or_a_section_field():
    c = Toy.resolve("smoke", ft_lr=0.5, alphas=9)
    assert c.finetune.lr == 0.5 and c.finetune.steps == 4 and c.n_alpha == 9


@pytest.mark.parametrize(("given", "message"), [
    ({"profile_": 1}, r"unknown parameter\(s\) \['profile_'\]; valid: .*'n_alpha'"),
    ({"n_alpha": 1}, r"n_alpha must be an integer >= 2 \(got 1\)"),
    ({"n_alpha": 2.0}, r"n_alpha must be an integer >= 2 \(got 2.0\)"),
    ({"n_alpha": True}, r"n_alpha must be an integer >= 2 \(got True\)"),
    ({"model": "resnet"}, r"model must be 'lenet5' or 'all' \(got 'resnet'\)"),
    ({"finetune": {"lr": -1.0}}, r"finetune.lr must be a number > 0 \(got -1.0\)"),
    ({"finetune": {"lr": "abc"}}, r"finetune.lr must be a number > 0 \(got 'abc'\)"),
    ({"finetune": {"lr": float("nan")}}, r"finetune.lr must be a number > 0 \(got nan\)"),
    ({"finetune": {"step": 10}}, r"unknown key\(s\) \['step'\] in finetune; valid: "
                                 r"\['lr', 'steps', 'wd'\]"),
    ({"finetune": 5}, r"finetune must be a mapping of lr, steps, wd \(got 5\)"),
    ({"finetune": {"steps": "3x"}}, r"finetune.steps must be a step count"),
    ({"n_inits": {"c": 1}}, r"unknown key\(s\) \['c'\] in n_inits; valid: \['a', 'b'\]"),
    ({"spawn_steps": [0, -1]}, r"spawn_steps\[1\] must be a step count"),
    ({"device": "tpu"}, r"unknown device 'tpu'"),
    ({"executor": "locale"}, r"executor must be one of"),
])
def test_every_field_is_checked_and_named(given, message):
    with pytest.raises(ValueError, match=message):
        Toy.resolve("paper", **given)


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown profile 'fast'; valid: smoke, book, paper"):
        Toy.resolve("fast")


def test_help_table_has_every_field_with_its_type_and_range():
    rows = {r["parameter"]: r for r in help_table(Toy)}
    assert rows["n_alpha"]["type"] == "an integer >= 2" and rows["n_alpha"]["help"] == "α points"
    assert set(rows) == {"n_alpha", "model", "finetune", "n_inits", "spawn_steps", "profile",
                         *MACHINE_PARAMETERS}


@pytest.mark.parametrize(("notebook", "chapter"), [
    ("cnn_baselines", cnn), ("gpt_shakespeare", gpt), ("ptb_transformer", ptb),
    ("vit_platon", vit), ("independent_inits", independent), ("measure_your_own", own)])
def test_a_notebooks_parameters_cell_declares_its_configs_names(notebook, chapter):
    declared = declared_in(NOTEBOOKS / f"{notebook}.ipynb") - {"colab", "drive_dir"}
    fields = {f["parameter"] for f in help_table(chapter.Config)} | set(chapter.Config.aliases)
    assert declared == fields - ({"executor"} if notebook == "measure_your_own" else set())
    for profile in PROFILES:  # every profile builds
        chapter.Config.resolve(profile)


def test_choose():
    assert choose("model", "lenet5", ["lenet5", "alexnet"]) == "lenet5"
    with pytest.raises(ValueError) as info:
        choose("model", "resnet", ("lenet5", "reduced_vgg", "alexnet"))
    assert all(repr(v) in str(info.value) for v in ("resnet", "lenet5", "alexnet"))


def test_at_least():
    assert at_least("n_alpha", 2, 2) == 2
    for bad in (1, 0, -4, 2.0, 2.5, "3", None, True):
        with pytest.raises(ValueError, match="n_alpha must be an integer >= 2"):
            at_least("n_alpha", bad, 2)


def test_pick_device():
    assert pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():  # asked for and not there: refused, the parameter named
        with pytest.raises(ValueError, match="device 'cuda:1'.*no cuda device"):
            pick_device("cuda:1")
    assert pick_device() in ("cpu", "cuda", "mps") and pick_device("auto") == pick_device()
    with pytest.raises(ValueError) as info:
        pick_device("tpu")
    assert all(name in str(info.value) for name in ("cpu", "cuda", "mps"))


def test_runs_root_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LMCNB_RUNS", raising=False)
    assert runs_root() == tmp_path.resolve() / "runs"
    monkeypatch.setenv("LMCNB_RUNS", str(tmp_path / "env"))
    assert runs_root() == (tmp_path / "env").resolve()
    assert runs_root(tmp_path / "given") == (tmp_path / "given").resolve()
