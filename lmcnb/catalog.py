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
def _vision(data_dir: Any, name: str, split: str, limit: int | None = None,
            holdout: float | None = None):
    """An image dataset split; `limit` keeps its first examples.

    With `holdout` (a fraction of the training split), `"train"` leaves out a fixed random subset
    of that size and `"val"` is that subset: a validation split carved from the training data,
    the same in every process, for early stopping and best-checkpoint choices.
    """
    from .data import TensorData, carve, load_vision

    if split == "val" and not holdout:
        raise ValueError("split 'val' is carved from the training data: give holdout, a fraction "
                         "in (0, 1)")
    data = load_vision(name, "train" if split == "val" else split, data_dir)
    if holdout:
        if split == "test":
            raise ValueError("holdout carves the training split; valid splits: 'train', 'val'")
        data = carve(data, holdout)[split]
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


# -- Penn Treebank word-level language model (hahacen) -----------------------------------------
@register("model", "transformer_lm")
def _transformer_lm(data_dir: Any, config: dict[str, Any]):
    """hahacen's `nn.TransformerEncoder` LM, freshly initialized, of a `TransformerLMConfig`."""
    from .transformer_lm import TransformerLM, TransformerLMConfig

    return TransformerLM(TransformerLMConfig(**config))


@register("tokenizer", "ptb_vocab")
def _ptb_vocab(data_dir: Any, eos: bool = True):
    """The word vocabulary of PTB's training split (`<eos>` per line if `eos`)."""
    from .text import load_text
    from .wordlm import Vocab

    return Vocab.build(load_text("ptb", "train", data_dir), eos)


@register("data", "ptb_streams")
def _ptb_streams(data_dir: Any, split: str, streams: int, bptt: int, eos: bool = True,
                 limit: int | None = None):
    """Chunks of `bptt` tokens of `streams` contiguous streams of a PTB split (`lmcnb.wordlm`),
    in the training vocabulary; `limit` keeps the first chunks."""
    from .data import TensorData
    from .registry import Ref, build
    from .text import load_text
    from .wordlm import check_positive, stream_chunks

    check_positive(streams=streams, bptt=bptt, **({} if limit is None else {"limit": limit}))
    vocab = build(Ref.of("tokenizer", "ptb_vocab", eos=eos), data_dir)
    data = stream_chunks(vocab.encode(load_text("ptb", split, data_dir)), streams, bptt)
    return data if limit is None else TensorData(data.x[:limit].clone(), data.y[:limit].clone())


# -- vision transformers and pruning (Han and Zhu) ----------------------------------------------
@register("model", "vit")
def _vit(data_dir: Any, shape: str | dict[str, Any], num_labels: int):
    """A freshly initialized `ViTForImageClassification` of a named shape (`lmcnb.vit.VIT_SHAPES`)
    or of `ViTShape` fields."""
    from .vit import ViTShape, build_vit, vit_config

    return build_vit(vit_config(shape if isinstance(shape, str) else ViTShape(**shape), num_labels))


@register("model", "pretrained_vit")
def _pretrained_vit(data_dir: Any, source: str, num_labels: int, digest: str | None = None):
    """`ViTForImageClassification.from_pretrained(source)` (hub id or directory) with a new head of
    `num_labels` classes, drawn in the caller's init stream; inputs are resized to the model's
    image size in its forward. `digest` refuses a directory whose weights changed."""
    from .pretrained import check_digest
    from .vit import load_pretrained, resize_inputs

    check_digest(source, digest)
    return resize_inputs(load_pretrained(source, num_labels))


@register("data", "vit_images")
def _vit_images(data_dir: Any, name: str, split: str, size: int | None = None,
                normalize: str = "dataset"):
    """A split resized to `size` and normalized for a ViT (`lmcnb.vit.vit_images`)."""
    from .vit import vit_images

    return vit_images(name, split, data_dir, size, normalize)


@register("augment", "vit")
def _vit_augment(data_dir: Any, dataset: str, normalize: str = "dataset", crop_scale: float = 0.75,
                 jitter: tuple[float, float, float, float] | None = None):
    """Han and Zhu's crop, resize, flip and colour jitter (`lmcnb.augment.vit_augment`) for inputs
    normalized as `lmcnb.vit.pixel_stats(dataset, normalize)` says."""
    from .augment import JITTER, vit_augment
    from .vit import pixel_stats

    return vit_augment(*pixel_stats(dataset, normalize), crop_scale, jitter or JITTER)


@register("hook", "platon")
def _platon(data_dir: Any, total_steps: int, final_density: float, initial_warmup: int = 0,
            final_warmup: int = 0, delta_t: int = 10, beta1: float = 0.85, beta2: float = 0.95,
            score: str = "platon", include: tuple[str, ...] | None = None):
    """PLATON (or magnitude pruning, `score="magnitude"`) on its cubic schedule; steps are
    optimizer steps of the run it prunes (`lmcnb.prune.Platon`)."""
    from .prune import VIT_PRUNABLE, CubicSchedule, Platon

    schedule = CubicSchedule(total_steps, final_density, initial_warmup, final_warmup, delta_t)
    return Platon(schedule, beta1, beta2, include or VIT_PRUNABLE, score)


@register("hook", "mask")
def _mask(data_dir: Any, digest: str, path: str):
    """Keep a fixed mask after every optimizer step (`lmcnb.prune.MaskHook`): the mask in file
    `path`, refused unless its content is `digest`."""
    from .prune import MaskHook, load_mask

    return MaskHook(load_mask(path, digest))
