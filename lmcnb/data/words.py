"""Word-level Penn Treebank: a vocabulary from the training split and contiguous token streams.

The layout of the PyTorch word-LM tutorial. The split's tokens (the words of every line, each
line followed by ``<eos>`` if `eos`) are cut into `batch_size` contiguous **streams** of equal
length L, the last ``len % batch_size`` tokens dropped::

    tokens  t0 t1 … t(L−1) | tL … t(2L−1) | …     streams[s, j] = tokens[s·L + j]

An example is one **chunk**: columns [i·bptt, (i + 1)·bptt) of all streams at once, shape
(streams, bptt), its target the same columns shifted by one token. A split is a
:class:`~lmcnb.data.TensorData` of N = (L − 1) // bptt chunks, x and y of shape (N, streams, bptt),
so `lmcnb.train.Trainer` with ``TrainConfig(batch_size=1)`` takes one chunk per step and
`lmcnb.train.evaluate` sums the loss over every token of every chunk. Batch sizes of `evaluate`
count chunks: with a 10,000-word vocabulary each token's logits take 40 kB, so ~8,192 tokens per
forward (23 test chunks of 10 × 35) rather than `evaluate`'s default of 1,000 examples.

* **Order.** The tutorial (and hahacen's code) walks the chunks in order 0, 1, …, N − 1 every
  epoch; `Trainer` draws a fresh permutation of the chunk indices from the data-order stream
  every epoch. A chunk's content (which tokens sit side by side in one batch) is the same under
  both orders.
* **Tail.** The last (L − 1) mod bptt predictions of each stream (fewer than `bptt`) belong to no
  chunk, in every split: they are neither trained on nor evaluated. The tutorial fed them as a
  shorter last chunk; here every example has one shape. PTB test with ``<eos>``, 10 streams,
  bptt 35: 170 of 82,420 predictions.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from ..core.checks import check_positive
from .tensors import TensorData
from .text import load_text

UNK, EOS = "<unk>", "<eos>"


def split_words(text: str, eos: bool = True) -> list[str]:
    """The whitespace-separated words of `text`, with `EOS` after every line if `eos`."""
    if not eos:
        return text.split()
    return [w for line in text.splitlines() for w in (*line.split(), EOS)]


@dataclass(frozen=True)
class Vocab:
    """Word ids: `UNK` is 0, `EOS` is 1 (if present), then the other words by decreasing count in
    the text the vocabulary was built from, ties in alphabetical (code point) order."""

    words: tuple[str, ...]

    @classmethod
    def build(cls, text: str, eos: bool = True) -> Vocab:
        """The vocabulary of `text`'s words (and `EOS` if `eos`)."""
        counts = Counter(split_words(text, eos))
        specials = (UNK, EOS) if eos else (UNK,)
        rest = sorted(set(counts) - set(specials), key=lambda w: (-counts[w], w))
        return cls((*specials, *rest))

    @cached_property
    def index(self) -> dict[str, int]:
        """Word → id."""
        return {w: i for i, w in enumerate(self.words)}

    @property
    def eos(self) -> bool:
        """Whether the vocabulary ends lines with `EOS`."""
        return EOS in self.index

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> torch.Tensor:
        """`text` as int64 ids (`EOS` per line if this vocabulary has it; unknown words → `UNK`)."""
        unk = self.index[UNK]
        ids = [self.index.get(w, unk) for w in split_words(text, self.eos)]
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """The words of `ids`."""
        return [self.words[int(i)] for i in ids]


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """`ids` as `batch_size` contiguous streams, shape (batch_size, len(ids) // batch_size)."""
    check_positive(batch_size=batch_size)
    length = len(ids) // batch_size
    return ids[:batch_size * length].view(batch_size, length)


def stream_chunks(ids: torch.Tensor, batch_size: int, bptt: int) -> TensorData:
    """Chunks of `bptt` columns of `batch_size` streams; x, y of shape (N, batch_size, bptt).

    x[i] = streams[:, i·bptt : (i + 1)·bptt], y[i] = streams[:, i·bptt + 1 : (i + 1)·bptt + 1].
    """
    check_positive(batch_size=batch_size, bptt=bptt)
    streams = batchify(ids, batch_size)  # (S, L)
    n = (streams.shape[1] - 1) // bptt
    if n < 1:
        raise ValueError(f"{len(ids)} tokens in {batch_size} streams are too few for one chunk of "
                         f"bptt={bptt} (+1 target)")
    cols = torch.arange(n)[:, None] * bptt + torch.arange(bptt)  # (N, T)
    x = streams[:, cols].transpose(0, 1)  # (N, S, T)
    y = streams[:, cols + 1].transpose(0, 1)
    return TensorData(x.contiguous(), y.contiguous())


def word_splits(texts: Mapping[str, str], *, eos: bool = True, batch_size: int = 16,
                eval_batch_size: int = 10, bptt: int = 35) -> tuple[Vocab, dict[str, TensorData]]:
    """The vocabulary of ``texts["train"]`` and the chunks of every split: `batch_size` streams
    for "train", `eval_batch_size` for the others (hahacen's study: 16 and 10)."""
    check_positive(batch_size=batch_size, eval_batch_size=eval_batch_size, bptt=bptt)
    vocab = Vocab.build(texts["train"], eos)
    return vocab, {s: stream_chunks(vocab.encode(t),
                                    batch_size if s == "train" else eval_batch_size, bptt)
                   for s, t in texts.items()}


def load_ptb(data_dir: str | os.PathLike | None = None, *, eos: bool = True, batch_size: int = 16,
             eval_batch_size: int = 10, bptt: int = 35,
             download: bool = True) -> tuple[Vocab, dict[str, TensorData]]:
    """`word_splits` of PTB's "train", "valid" and "test" (`lmcnb.data.text.load_text`).

    Bad sizes fail before any file is read; missing files raise `DatasetMissing` naming them.
    """
    check_positive(batch_size=batch_size, eval_batch_size=eval_batch_size, bptt=bptt)
    texts = {s: load_text("ptb", s, data_dir, download) for s in ("train", "valid", "test")}
    return word_splits(texts, eos=eos, batch_size=batch_size, eval_batch_size=eval_batch_size,
                       bptt=bptt)
