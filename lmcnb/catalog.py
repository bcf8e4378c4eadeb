"""The built-in registry entries (see `lmcnb.registry`): every model, dataset view, tokenizer and
augmentation a chapter names. Each entry takes the data root first, then its own arguments."""
from __future__ import annotations

from typing import Any

from .registry import register


# -- models ------------------------------------------------------------------------------------
def _cnn(name: str):
    def make(data_dir: Any, num_classes: int):
        from .models import build_model

        return build_model(name, num_classes)

    return make


for _name in ("lenet5", "reduced_vgg", "alexnet"):
    register("model", _name)(_cnn(_name))


@register("model", "gpt")
def _gpt(data_dir: Any, config: dict[str, Any]):
    """A freshly initialized GPT-2 of the given `transformers` configuration."""
    from transformers import GPT2Config

    from .gpt import build_gpt

    return build_gpt(GPT2Config(**config))


@register("model", "pretrained_gpt")
def _pretrained_gpt(data_dir: Any, source: str, digest: str | None = None):
    """`GPT2LMHeadModel.from_pretrained(source)`: a hub id or a directory every worker can read;
    `digest` (a `pretrained_id`) refuses a directory whose weights changed since planning."""
    from .gpt import load_pretrained
    from .pretrained import pretrained_id

    if digest is not None and pretrained_id(source) != digest:
        raise ValueError(f"the pretrained model in {source} is {pretrained_id(source)}, but the "
                         f"study was planned on {digest}: its weights changed in between")
    return load_pretrained(source)


# -- datasets ----------------------------------------------------------------------------------
@register("data", "vision")
def _vision(data_dir: Any, name: str, split: str, limit: int | None = None):
    """An image dataset split; `limit` keeps its first examples."""
    from .data import TensorData, load_vision

    data = load_vision(name, split, data_dir)
    if limit is not None:
        data = TensorData(data.x[:limit].clone(), data.y[:limit].clone(), data.classes)
    return data


@register("data", "text_windows")
def _text_windows(data_dir: Any, corpus: str, split: str, tokenizer: Any, block: int,
                  stride: int | None = None, chars: int | None = None):
    """Token windows of a corpus split (its first `chars` characters if given)."""
    from .registry import build
    from .text import encode, load_text, token_windows

    text = load_text(corpus, split, data_dir)[:chars]
    return token_windows(encode(build(tokenizer, data_dir), text), block, stride)


# -- tokenizers --------------------------------------------------------------------------------
@register("tokenizer", "char")
def _char(data_dir: Any, corpus: str):
    """The alphabet of the corpus's training split."""
    from .text import CharTokenizer, load_text

    return CharTokenizer.fit(load_text(corpus, "train", data_dir))


@register("tokenizer", "bpe")
def _bpe(data_dir: Any, corpus: str, hub_id: str = "gpt2", vocab_size: int = 50257,
         chars: int | None = None):
    """GPT-2's BPE by hub id; offline, a byte-level BPE trained on the training split."""
    from .text import bpe_tokenizer, load_text

    return bpe_tokenizer(load_text(corpus, "train", data_dir)[:chars], hub_id, vocab_size)


@register("tokenizer", "trained_bpe")
def _trained_bpe(data_dir: Any, corpus: str, vocab_size: int, chars: int | None = None):
    """A byte-level BPE of `vocab_size` trained on the training split (its first `chars`)."""
    from .text import load_text, train_bpe

    return train_bpe(load_text(corpus, "train", data_dir)[:chars], vocab_size)


@register("tokenizer", "pretrained")
def _pretrained_tokenizer(data_dir: Any, source: str):
    """The tokenizer stored with a pretrained model (hub id or directory)."""
    from .gpt import load_tokenizer

    return load_tokenizer(source)


# -- augmentations -----------------------------------------------------------------------------
@register("augment", "crop_flip")
def _crop_flip(data_dir: Any, dataset: str):
    """Random crop with padding and horizontal flip, per image."""
    from .augment import crop_and_flip

    return crop_and_flip(dataset)
