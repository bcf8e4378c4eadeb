"""Every model of the book trains, checkpoints, reproduces and interpolates on every device this
machine has (cpu always; cuda and mps where present), through the one training engine.

On a CPU-only machine this checks the CPU path; on a GPU machine the same tests check that nothing
in the engine (RNG streams, checkpoints, evaluation) assumes the CPU, and that a run repeats bit
for bit there too.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lmcnb.core.rng import Seeds
from lmcnb.data.tensors import TensorData
from lmcnb.experiments.runs import Run, RunSpec
from lmcnb.lmc.interpolate import alpha_grid, eval_subset, interpolation_curve
from lmcnb.models import cnn as models
from lmcnb.models import gpt, transformer_lm, vit
from lmcnb.train.recipe import TrainConfig

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (
    ["mps"] if torch.backends.mps.is_available() else [])


def _images(n: int, channels: int, size: int, classes: int) -> TensorData:
    g = torch.Generator().manual_seed(0)
    return TensorData(torch.randn(n, channels, size, size, generator=g),
                      torch.randint(0, classes, (n,), generator=g))


def _tokens(n: int, length: int, vocab: int) -> TensorData:
    x = torch.randint(0, vocab, (n, length + 1), generator=torch.Generator().manual_seed(0))
    return TensorData(x[:, :-1].contiguous(), x[:, 1:].contiguous())


MODELS = {
    "lenet5": (lambda: models.build_model("lenet5", 10), lambda: _images(64, 1, 28, 10)),
    "reduced_vgg": (lambda: models.build_model("reduced_vgg", 10), lambda: _images(64, 3, 32, 10)),
    "alexnet": (lambda: models.build_model("alexnet", 20), lambda: _images(64, 3, 64, 20)),
    "gpt": (lambda: gpt.build_gpt(gpt.hf_config(gpt.gpt_config("TinyGPT"), 65)),
            lambda: _tokens(64, 8, 65)),
    "transformer_lm": (lambda: transformer_lm.TransformerLM(transformer_lm.TransformerLMConfig(
        vocab_size=50, d_model=32, n_head=2, d_ff=32)), lambda: _tokens(64, 12, 50)),
    "vit": (lambda: vit.build_vit(vit.vit_config("ToyViT", 10)), lambda: _images(64, 3, 8, 10)),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MODELS)
def test_model_trains_reproducibly_and_interpolates(tmp_path: Path, device: str, name: str):
    build, data = MODELS[name]
    data = data()
    cfg = TrainConfig(batch_size=16, max_steps=6, lr=1e-3)
    spec = RunSpec(name, "synthetic", cfg, Seeds(), data="synthetic")
    run = Run(spec, tmp_path, build, data, device, ckpt_every=3)
    run.ensure_trained((3,))
    weights = run.ensure_weights()
    assert all(t.device.type == "cpu" for t in weights.values())  # checkpoints live on the CPU
    # The same seeds give the same weights, bit for bit, on every device (deterministic kernels on
    # accelerators: lmcnb.rng.deterministic_kernels).
    (tmp_path / "again").mkdir()
    again = Run(spec, tmp_path / "again", build, data, device, ckpt_every=3)
    for key, value in again.ensure_weights().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0, msg=key)
    net = build().to(device).eval()
    split = eval_subset(data, "all", 32, device)
    path = interpolation_curve(net, run.ensure_weights(3), weights, {"test": split},
                               alpha_grid(3), batch_size=32, progress=False)
    assert len(path.frame) == 3 and path.frame.loss.map(math.isfinite).all()
    assert 0.0 <= path.disagreement <= 1.0
    assert path.examples["test"][0].shape == (3, len(split))
