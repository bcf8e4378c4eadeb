"""Tokenizers: characters (the training split's alphabet, nothing to download) or GPT-2's
byte-level BPE by hub id; offline, a byte-level BPE trained on the training split instead.
"""
from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..core.hub import from_hub

END_OF_TEXT = "<|endoftext|>"  # GPT-2's one special token


@dataclass(frozen=True)
class CharTokenizer:
    """One token per character of a fixed alphabet."""

    chars: str

    @classmethod
    def fit(cls, text: str) -> CharTokenizer:
        """The alphabet of `text`, sorted."""
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """`text` as ids (an error lists characters outside the alphabet)."""
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted(set(text) - index.keys())
        if unknown:
            raise ValueError(f"characters {unknown} are not in the alphabet {self.chars!r}")
        return [index[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`."""
        return "".join(self.chars[i] for i in ids)


if TYPE_CHECKING:  # transformers loads in about a second: only where a BPE is built
    from transformers import PreTrainedTokenizerFast

    Tokenizer = CharTokenizer | PreTrainedTokenizerFast


def tokenizer_id(tok: Tokenizer) -> str:
    """A short name that changes whenever the vocabulary does (for run identities)."""
    if isinstance(tok, CharTokenizer):
        return f"char-{len(tok)}-{hashlib.sha256(tok.chars.encode()).hexdigest()[:8]}"
    blob = tok.backend_tokenizer.to_str()
    return f"bpe-{len(tok)}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def train_bpe(text: str, vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2's scheme: the 256 bytes, then merges) trained on `text`."""
    from tokenizers import Tokenizer as BPE
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = BPE(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2,
                                  special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    bpe.train_from_iterator(text.splitlines(keepends=True), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=END_OF_TEXT,
                                   bos_token=END_OF_TEXT, model_max_length=int(1e9))


def bpe_tokenizer(train_text: str, hub_id: str = "gpt2",
                  vocab_size: int = 50257) -> PreTrainedTokenizerFast:
    """GPT-2's BPE by hub id; offline, a byte-level BPE of `vocab_size` trained on `train_text`.

    The fallback warns, and `tokenizer_id` tells the two apart, so runs never mix them up.
    """
    from transformers import AutoTokenizer

    try:
        return from_hub(AutoTokenizer, hub_id)
    except OSError as exc:
        warnings.warn(f"GPT-2 tokenizer {hub_id!r} is unavailable offline ({type(exc).__name__}); "
                      f"training a byte-level BPE of up to {vocab_size} tokens "
                      "on the training split instead",
                      stacklevel=2)
        return train_bpe(train_text, vocab_size)


def encode(tok: Tokenizer, text: str) -> torch.Tensor:
    """The whole text as one int64 tensor of token ids."""
    if isinstance(tok, CharTokenizer):
        return torch.tensor(tok.encode(text), dtype=torch.long)
    return torch.tensor(tok.backend_tokenizer.encode(text).ids, dtype=torch.long)
