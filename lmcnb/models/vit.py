"""Vision transformers through `transformers`: named shapes, building and pretrained checkpoints.

Every model is a `ViTForImageClassification` (single-label classification; the forward returns
an output with `.logits`), so a checkpoint saved here loads with
`ViTForImageClassification.from_pretrained(<dir>)` exactly like the hub's ViTs. `transformers`
is imported by the functions that build or load one, not with the module.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.hub import from_hub, quiet

if TYPE_CHECKING:
    from transformers import ViTConfig, ViTForImageClassification


@dataclass(frozen=True)
class ViTShape:
    """A ViT's shape; it sees (image_size / patch_size)² patch tokens plus one CLS token."""

    image_size: int
    patch_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_size: int
    dropout: float = 0.0


VIT_SHAPES = {
    "ViTB16": ViTShape(224, 16, 768, 12, 12, 3072),  # the hub's ViT-B/16: 85.8M + head
    "CPUViT": ViTShape(32, 4, 192, 6, 3, 768),  # ViT-Ti's width, 6 layers, 65 tokens: 2.69M + head
    "MiniViT": ViTShape(32, 8, 128, 4, 4, 256),  # 16 patches of 8×8 px + CLS: 0.55M + head
    "ToyViT": ViTShape(8, 4, 16, 2, 2, 32),  # unit tests
}


def vit_shape(name: str) -> ViTShape:
    if name not in VIT_SHAPES:
        raise ValueError(f"unknown ViT shape {name!r}; valid: {', '.join(VIT_SHAPES)}")
    return VIT_SHAPES[name]


def _labels(num_labels: int) -> dict[str, Any]:
    """Config fields for a single-label head of `num_labels` classes."""
    id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    return {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()},
            "problem_type": "single_label_classification"}


def vit_config(shape: str | ViTShape, num_labels: int, num_channels: int = 3) -> ViTConfig:
    """The `transformers` configuration of a named (or given) shape with `num_labels` classes."""
    from transformers import ViTConfig

    s = vit_shape(shape) if isinstance(shape, str) else shape
    return ViTConfig(image_size=s.image_size, patch_size=s.patch_size, num_channels=num_channels,
                     hidden_size=s.hidden_size, num_hidden_layers=s.num_layers,
                     num_attention_heads=s.num_heads, intermediate_size=s.mlp_size,
                     hidden_dropout_prob=s.dropout, attention_probs_dropout_prob=s.dropout,
                     **_labels(num_labels))


def build_vit(config: ViTConfig) -> ViTForImageClassification:
    """A freshly initialized ViT (draws from torch's global RNG: call it in the init stream)."""
    from transformers import ViTForImageClassification

    return ViTForImageClassification(config)


def resize_inputs(model: ViTForImageClassification) -> ViTForImageClassification:
    """Resize input images to the model's `image_size` in its forward (bilinear, as
    `ViTImageProcessor` resizes), so 32×32 data feeds a 224×224 hub ViT; other sizes pass as
    they are. A forward pre-hook: the model and its state dict are unchanged."""
    from torchvision.transforms import v2

    size = model.config.image_size

    def resize(module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        key = "pixel_values" if "pixel_values" in kwargs else None
        x = kwargs[key] if key else args[0]
        if tuple(x.shape[-2:]) != (size, size):
            x = v2.functional.resize(x, [size, size], antialias=False)
        return ((), {**kwargs, key: x}) if key else ((x, *args[1:]), kwargs)

    model.register_forward_pre_hook(resize, with_kwargs=True)
    return model


def load_pretrained(source: str, num_labels: int) -> ViTForImageClassification:
    """A pretrained ViT (hub id or local directory) with a classification head for `num_labels`.

    A head of another size, or none (`google/vit-base-patch16-224-in21k`), is replaced by a new
    one drawn from torch's global RNG: call this inside the init stream, once, in the parent run,
    so that its children inherit one head. Offline, a hub id not in the cache fails at once.
    The replaced head is expected: `transformers`' load report is silenced.
    """
    from transformers import ViTForImageClassification

    return from_hub(ViTForImageClassification, source, ignore_mismatched_sizes=True,
                    **_labels(num_labels)).train()


def save_pretrained(model: ViTForImageClassification, folder: str | Path) -> Path:
    """Save config and weights (safetensors) the way the hub stores them."""
    folder = Path(folder)
    with quiet():
        model.save_pretrained(folder)
    return folder


