"""The page "measure your own models": its parameters, and the two example pairs it makes —
LeNet5 children on MNIST, saved as state dicts, and GPT children on Tiny Shakespeare, saved as
`save_pretrained` folders — before measuring them with `lmcnb.measure`, as a reader would."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..book.params import ChapterConfig, Steps, param
from ..core.ref import Ref
from ..data.vision import require_vision
from ..experiments.catalog import build
from ..experiments.setup import Setup
from ..models.gpt import gpt_config, hf_config
from ..train.recipe import TrainConfig
from .gpt import lm_setup

CHAPTER = "measure_your_own"


@dataclass(frozen=True, kw_only=True)
class Config(ChapterConfig):
    """The page's parameters."""

    n_alpha: int = param("points on the α grid, both ends included", min=2)
    lenet_steps: Steps = param("training steps of each LeNet5 checkpoint", min=1)
    examples: int | None = param("images per split to measure LeNet5 on (None: all)", min=1)
    gpt_model: str = param("the GPT shape: a configuration name of the GPT chapter")
    gpt_steps: int = param("training steps of each GPT checkpoint", min=1)
    chars: int | None = param("characters of each Tiny Shakespeare split used (None: all)",
                              min=1)
    sample_tokens: int = param("tokens the slider samples after its prompt", min=1)
    seed: int = param("the base seed of every stream", min=0)

    def check(self, path: str) -> None:
        """A known GPT shape."""
        super().check(path)
        gpt_config(self.gpt_model)


PROFILES = {  # examples: per split for LeNet5 (None: all); chars: of each split of the corpus
    "paper": dict(n_alpha=30, seed=0, lenet_steps="2ep", examples=None, gpt_model="CPUGPT",
                  gpt_steps=2000, chars=None, sample_tokens=100),
    "book": dict(n_alpha=30, seed=0, lenet_steps=300, examples=2000, gpt_model="TinyGPT",
                 gpt_steps=300, chars=20_000, sample_tokens=80),
    "smoke": dict(n_alpha=5, seed=0, lenet_steps=12, examples=256, gpt_model="TinyGPT",
                  gpt_steps=6, chars=4_000, sample_tokens=16),
}
Config.profiles = PROFILES
TOKENIZER = Ref.of("tokenizer", "char", corpus="shakespeare")


def setups(c: Config) -> dict[str, Setup]:
    """The two example setups, "lenet5" and "gpt" (checked against the data; nothing trains)."""
    require_vision("mnist", c.data_dir)
    mnist = {split: Ref.of("data", "vision", name="mnist", split=split)
             for split in ("train", "test")}
    lenet = Setup(chapter=CHAPTER, model="lenet5", dataset="mnist",
                  net=Ref.of("model", "lenet5", num_classes=10), train_data=mnist["train"],
                  test_data=mnist["test"],
                  train=TrainConfig(batch_size=128, max_steps=c.lenet_steps), runs_dir=c.runs_dir,
                  device=c.device or "auto", data_dir=c.data_dir, seed=c.seed)
    lenet.steps([0])
    config = gpt_config_of(c)
    lm = lm_setup(CHAPTER, c.gpt_model, config, TOKENIZER, "shakespeare",
                  TrainConfig(batch_size=32, max_steps=c.gpt_steps, lr=3e-3), c.runs_dir,
                  chars=c.chars, data_dir=c.data_dir, device=c.device or "auto", seed=c.seed)
    return {"lenet5": lenet, "gpt": lm}


def gpt_config_of(c: Config) -> Any:
    """The `transformers` configuration of the page's GPT (`c.gpt_model`, characters)."""
    return hf_config(gpt_config(c.gpt_model), len(build(TOKENIZER, c.data_dir)))
