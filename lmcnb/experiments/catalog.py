"""The catalog: every model, dataset view, tokenizer, augmentation and training hook a run can
name (`lmcnb.core.ref.Ref`), and how to build and check one.

It sits above its entries, as open_lth's registry does: it imports the models, data and hooks
(lazily, inside each entry, so a process imports only what it builds); nothing below it imports it.
`build(ref, data_dir)` makes the object in whichever process runs the task — a notebook, or a Dask
worker on another machine that finds the data under its own data root. Datasets and tokenizers are
built once per process and cached; models and hooks afresh at every call (models inside the
caller's init stream). `check(ref)` refuses an unknown name, in the ref or in the refs among its
arguments, before anything trains; setups and runs call it when they are built. Each entry takes
the data root first, then its own arguments; `register` adds one of your own.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from ..core.ref import KINDS, Ref, refs_in

CACHED = ("data", "tokenizer")  # built once per process and data root
_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {kind: {} for kind in KINDS}


def register(kind: str, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: `fn(data_dir, **args)` builds entry `name` of `kind`."""
    if kind not in KINDS:
        raise ValueError(f"unknown registry {kind!r}; valid: {', '.join(KINDS)}")

    def add(fn: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[kind][name] = fn
        return fn

    return add


def check(value: Any) -> Any:
    """`value` unchanged if every `Ref` in it names an entry of the catalog; else a ValueError
    naming the unknown one and the valid names."""
    for ref in refs_in(value):
        entries = _REGISTRY[ref.kind]
        if ref.name not in entries:
            raise ValueError(f"unknown {ref.kind} {ref.name!r}; "
                             f"valid: {', '.join(sorted(entries))}")
    return value


def build(ref: Ref | Any, data_dir: str | os.PathLike | None = None) -> Any:
    """The object `ref` describes (anything that is not a `Ref` is returned as it is)."""
    if not isinstance(ref, Ref):
        return ref
    check(ref)
    if ref.kind in CACHED:
        from ..core.env import data_root

        return _cached(ref, str(data_root(data_dir)))
    return _REGISTRY[ref.kind][ref.name](data_dir, **ref.kwargs())


@functools.lru_cache(maxsize=32)
def _cached(ref: Ref, root: str) -> Any:
    return _REGISTRY[ref.kind][ref.name](root, **ref.kwargs())


def _cnn(name: str):
    def make(data_dir: Any, num_classes: int):
        from ..models.cnn import build_model

        return build_model(name, num_classes)

    return make


for _name in ("lenet5", "reduced_vgg", "alexnet"):
    register("model", _name)(_cnn(_name))


@register("model", "gpt")
def _gpt(data_dir: Any, config: dict[str, Any]):
    """A freshly initialized GPT-2 of the given `transformers` configuration."""
    from transformers import GPT2Config

    from ..models.gpt import build_gpt

    return build_gpt(GPT2Config(**config))


@register("model", "pretrained_gpt")
def _pretrained_gpt(data_dir: Any, source: str, digest: str | None = None):
    """`GPT2LMHeadModel.from_pretrained(source)`: a hub id or a directory every worker can read;
    `digest` (a `pretrained_id`) refuses a directory whose weights changed since planning."""
    from ..models.gpt import load_pretrained
    from ..models.pretrained import pretrained_id

    if digest is not None and pretrained_id(source) != digest:
        raise ValueError(f"the pretrained model in {source} is {pretrained_id(source)}, but the "
                         f"study was planned on {digest}: its weights changed in between")
    return load_pretrained(source)


@register("data", "vision")
def _vision(data_dir: Any, name: str, split: str, limit: int | None = None,
            holdout: float | None = None, source: str = "default"):
    """An image dataset split; `limit` keeps its first examples.

    With `holdout` (a fraction of the training split), `"train"` leaves out a fixed random subset
    of that size and `"val"` is that subset: a validation split carved from the training data,
    the same in every process, for early stopping and best-checkpoint choices.
    `source`: where the dataset comes from (`lmcnb.data.sources`; default: the verified files).
    """
    from ..data.sources import vision_split
    from ..data.tensors import TensorData, carve

    if split == "val" and not holdout:
        raise ValueError("split 'val' is carved from the training data: give holdout, a fraction "
                         "in (0, 1)")
    data = vision_split(name, "train" if split == "val" else split, source, data_dir)
    if holdout:
        if split == "test":
            raise ValueError("holdout carves the training split; valid splits: 'train', 'val'")
        data = carve(data, holdout)[split]
    if limit is not None:
        data = TensorData(data.x[:limit].clone(), data.y[:limit].clone(), data.classes)
    return data


@register("data", "text_windows")
def _text_windows(data_dir: Any, corpus: str, split: str, tokenizer: Any, block: int,
                  stride: int | None = None, chars: int | None = None, source: str = "default"):
    """Token windows of a corpus split (its first `chars` characters if given), from `source`
    (`lmcnb.data.sources`)."""
    from ..data.sources import text_split
    from ..data.text import token_windows
    from ..data.tokenizers import encode

    text = text_split(corpus, split, source, data_dir)[:chars]
    return token_windows(encode(build(tokenizer, data_dir), text), block, stride)


@register("data", "token_blocks")
def _token_blocks(data_dir: Any, source: str, tokenizer: Any, block: int, split: str = "train",
                  column: str = "text", cache: str | None = None):
    """Windows of `block` tokens of a corpus larger than memory (`lmcnb.data.corpus`): split
    `split` of `source` (`lmcnb.data.sources`: hub, `save_to_disk` folder or parquet files),
    tokenized once into `cache` (default: ``tokens/`` in the runs folder) and memory-mapped."""
    from ..core.env import runs_root
    from ..data.corpus import token_blocks
    from ..data.sources import load_source

    splits = load_source(source, data_dir)
    if split not in splits:
        raise ValueError(f"data source {source!r} has no split {split!r} "
                         f"(it has {', '.join(splits)})")
    return token_blocks(splits[split], build(tokenizer, data_dir), block,
                        cache or runs_root() / "tokens", column)


@register("tokenizer", "char")
def _char(data_dir: Any, corpus: str, source: str = "default"):
    """The alphabet of the corpus's training split (from `source`)."""
    from ..data.sources import text_split
    from ..data.tokenizers import CharTokenizer

    return CharTokenizer.fit(text_split(corpus, "train", source, data_dir))


@register("tokenizer", "bpe")
def _bpe(data_dir: Any, corpus: str, hub_id: str = "gpt2", vocab_size: int = 50257,
         chars: int | None = None, source: str = "default"):
    """GPT-2's BPE by hub id; offline, a byte-level BPE trained on the training split (from
    `source`)."""
    from ..data.sources import text_split
    from ..data.tokenizers import bpe_tokenizer

    return bpe_tokenizer(text_split(corpus, "train", source, data_dir)[:chars], hub_id, vocab_size)


@register("tokenizer", "trained_bpe")
def _trained_bpe(data_dir: Any, corpus: str, vocab_size: int, chars: int | None = None,
                 source: str = "default"):
    """A byte-level BPE of `vocab_size` trained on the training split (its first `chars`; from
    `source`)."""
    from ..data.sources import text_split
    from ..data.tokenizers import train_bpe

    return train_bpe(text_split(corpus, "train", source, data_dir)[:chars], vocab_size)


@register("tokenizer", "pretrained")
def _pretrained_tokenizer(data_dir: Any, source: str):
    """The tokenizer stored with a pretrained model (hub id or directory)."""
    from ..models.gpt import load_tokenizer

    return load_tokenizer(source)


@register("augment", "crop_flip")
def _crop_flip(data_dir: Any, dataset: str):
    """Random crop with padding and horizontal flip, per image."""
    from ..data.augment import crop_and_flip

    return crop_and_flip(dataset)


@register("model", "transformer_lm")
def _transformer_lm(data_dir: Any, config: dict[str, Any]):
    """hahacen's `nn.TransformerEncoder` LM, freshly initialized, of a `TransformerLMConfig`."""
    from ..models.transformer_lm import TransformerLM, TransformerLMConfig

    return TransformerLM(TransformerLMConfig(**config))


@register("tokenizer", "ptb_vocab")
def _ptb_vocab(data_dir: Any, eos: bool = True, source: str = "default"):
    """The word vocabulary of PTB's training split (`<eos>` per line if `eos`; from `source`)."""
    from ..data.sources import text_split
    from ..data.words import Vocab

    return Vocab.build(text_split("ptb", "train", source, data_dir), eos)


@register("data", "ptb_streams")
def _ptb_streams(data_dir: Any, split: str, streams: int, bptt: int, eos: bool = True,
                 limit: int | None = None, source: str = "default"):
    """Chunks of `bptt` tokens of `streams` contiguous streams of a PTB split (`lmcnb.data.words`),
    in the training vocabulary; `limit` keeps the first chunks. `source`: where PTB comes from
    (`lmcnb.data.sources`), for the vocabulary too."""
    from ..core.checks import check_positive
    from ..core.ref import Ref
    from ..data.sources import text_split
    from ..data.tensors import TensorData
    from ..data.words import stream_chunks

    check_positive(streams=streams, bptt=bptt, **({} if limit is None else {"limit": limit}))
    vocab_args = {} if source == "default" else {"source": source}
    vocab = build(Ref.of("tokenizer", "ptb_vocab", eos=eos, **vocab_args), data_dir)
    data = stream_chunks(vocab.encode(text_split("ptb", split, source, data_dir)), streams, bptt)
    return data if limit is None else TensorData(data.x[:limit].clone(), data.y[:limit].clone())


@register("model", "vit")
def _vit(data_dir: Any, shape: str | dict[str, Any], num_labels: int):
    """A freshly initialized `ViTForImageClassification` of a named shape
    (`lmcnb.models.vit.VIT_SHAPES`) or of `ViTShape` fields."""
    from ..models.vit import ViTShape, build_vit, vit_config

    return build_vit(vit_config(shape if isinstance(shape, str) else ViTShape(**shape), num_labels))


@register("model", "pretrained_vit")
def _pretrained_vit(data_dir: Any, source: str, num_labels: int, digest: str | None = None):
    """`ViTForImageClassification.from_pretrained(source)` (hub id or directory) with a new head of
    `num_labels` classes, drawn in the caller's init stream; inputs are resized to the model's
    image size in its forward. `digest` refuses a directory whose weights changed."""
    from ..models.pretrained import check_digest
    from ..models.vit import load_pretrained, resize_inputs

    check_digest(source, digest)
    return resize_inputs(load_pretrained(source, num_labels))


@register("data", "vit_images")
def _vit_images(data_dir: Any, name: str, split: str, size: int | None = None,
                normalize: str = "dataset", source: str = "default"):
    """A split (from `source`) resized to `size` and normalized for a ViT
    (`lmcnb.data.images.vit_images`)."""
    from ..data.images import vit_images

    return vit_images(name, split, data_dir, size, normalize, source)


@register("augment", "vit")
def _vit_augment(data_dir: Any, dataset: str, normalize: str = "dataset", crop_scale: float = 0.75,
                 jitter: tuple[float, float, float, float] | None = None):
    """Han and Zhu's crop, resize, flip and colour jitter (`lmcnb.data.augment.vit_augment`) for
    inputs normalized as `lmcnb.data.images.pixel_stats(dataset, normalize)` says."""
    from ..data.augment import JITTER, vit_augment
    from ..data.images import pixel_stats

    return vit_augment(*pixel_stats(dataset, normalize), crop_scale, jitter or JITTER)


@register("hook", "platon")
def _platon(data_dir: Any, total_steps: int, final_density: float, initial_warmup: int = 0,
            final_warmup: int = 0, delta_t: int = 10, beta1: float = 0.85, beta2: float = 0.95,
            score: str = "platon", include: tuple[str, ...] | None = None):
    """PLATON (or magnitude pruning, `score="magnitude"`) on its cubic schedule; steps are
    optimizer steps of the run it prunes (`lmcnb.prune.Platon`)."""
    from ..prune.mask import VIT_PRUNABLE
    from ..prune.platon import CubicSchedule, Platon

    schedule = CubicSchedule(total_steps, final_density, initial_warmup, final_warmup, delta_t)
    return Platon(schedule, beta1, beta2, include or VIT_PRUNABLE, score)


@register("hook", "mask")
def _mask(data_dir: Any, digest: str, path: str):
    """Keep a fixed mask after every optimizer step (`lmcnb.prune.MaskHook`): the mask in file
    `path`, refused unless its content is `digest`."""
    from ..prune.mask import MaskHook, load_mask

    return MaskHook(load_mask(path, digest))


@register("model", "mlp")
def _mlp(data_dir: Any, hidden: tuple[int, ...], num_classes: int, in_features: int = 784,
         norm: str | None = None):
    """An image MLP (`lmcnb.models.mlp.MLP`) with hidden layers of the widths `hidden`."""
    from ..models.mlp import MLP

    return MLP(in_features, tuple(hidden), num_classes, norm)


@register("model", "convnet")
def _convnet(data_dir: Any, width: int, num_classes: int):
    """The VGG-like BatchNorm CNN of `lmcnb.models.convnet` at width multiplier `width`."""
    from ..models.convnet import convnet

    return convnet(width, num_classes)
