"""Text corpora larger than memory, for language models: tokenized once into an Arrow file with a
batched `Dataset.map`, then read as windows of tokens straight from the memory-mapped file.

    corpus = load_source("hub:<id>@<revision>")["train"]          # lmcnb.data.sources
    blocks = token_blocks(corpus, tokenizer, block=256, cache=runs_dir / "tokens")
    Trainer(model, cfg, blocks, streams)                           # reads each batch when drawn

A corpus's tokens are its rows' tokens one after the other (each row followed by the tokenizer's
end-of-text token, where it has one): a stream t0 t1 …, cut as `lmcnb.data.text.token_windows`
cuts a tensor, x[i] = t[i·block : (i + 1)·block], y[i] the same shifted by one token. The file is
``<cache>/<key>/tokens.arrow``, `key` a hash of the corpus's fingerprint and the tokenizer's id, so
every block size reads one file, and another process (or a second run) finds it again.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.checks import check_positive
from ..core.files import atomic_write_text, folder_lock

if TYPE_CHECKING:
    from .tokenizers import Tokenizer

SAMPLE_ROWS = 1024  # rows of a corpus its fingerprint reads


SAMPLE_CHARS = 4096  # characters read at each end of a sampled row


def corpus_fingerprint(corpus: Any, column: str = "text") -> str:
    """A short hash of a corpus's text column: its number of rows and, for an evenly strided
    sample of `SAMPLE_ROWS` rows, their lengths and the text at both ends (cheap on any size)."""
    h = hashlib.sha256(f"{len(corpus)}{column}".encode())
    texts = corpus.select_columns([column]).with_format(None)
    for i in np.unique(np.linspace(0, len(corpus) - 1, SAMPLE_ROWS).astype(np.int64)):
        text = texts[int(i)][column]
        h.update(f"{len(text)}:{text[:SAMPLE_CHARS]}{text[-SAMPLE_CHARS:]}".encode())
    return h.hexdigest()[:16]


def _id_type(tok: Tokenizer) -> str:
    return "uint16" if len(tok) <= 1 << 16 else "int32"


def _encoder(tok: Tokenizer) -> Callable[[list[str]], tuple[np.ndarray, np.ndarray]]:
    """rows → (their tokens one after the other, tokens per row), for a batched map."""
    from .tokenizers import CharTokenizer

    if isinstance(tok, CharTokenizer):
        codes = np.array([ord(c) for c in tok.chars], dtype=np.int64)
        lut = np.full(int(codes.max()) + 2, -1, dtype=np.int32)  # the last entry: any other char
        lut[codes] = np.arange(len(codes))

        def chars(rows: list[str]) -> tuple[np.ndarray, np.ndarray]:
            points = [np.frombuffer(r.encode("utf-32-le"), dtype=np.uint32) for r in rows]
            flat = np.concatenate(points) if points else np.empty(0, np.uint32)
            ids = np.take(lut, flat, mode="clip")
            if (ids < 0).any():
                unknown = sorted({chr(c) for c in np.unique(flat[ids < 0])})
                raise ValueError(f"characters {unknown[:10]} are not in the alphabet "
                                 f"{tok.chars!r}")
            return ids, np.array([len(p) for p in points], dtype=np.int64)

        return chars
    eos = tok.eos_token_id

    def bpe(rows: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = [e.ids + ([eos] if eos is not None else []) for e in
               tok.backend_tokenizer.encode_batch(rows)]
        flat = np.fromiter((i for row in ids for i in row), dtype=np.int64)
        return flat, np.array([len(r) for r in ids], dtype=np.int64)

    return bpe


def tokenize_corpus(corpus: Any, tokenizer: Tokenizer, cache: str | os.PathLike,
                    column: str = "text") -> Path:
    """The Arrow file of `corpus`'s tokens (column ``ids``, one row per row of text), written by a
    batched `Dataset.map` the first time (atomically, under a lock across processes) and found
    again under `cache` by its key after that."""
    import datasets
    import pyarrow as pa

    from .tokenizers import tokenizer_id

    if not isinstance(corpus, datasets.Dataset):
        raise TypeError(f"a corpus is a datasets.Dataset (memory-mapped), not a "
                        f"{type(corpus).__name__}")
    feature = corpus.features.get(column)
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")):
        raise ValueError(f"the corpus has no text column {column!r} (columns: "
                         f"{', '.join(corpus.column_names)})")
    if not len(corpus):
        raise ValueError("the corpus is empty")
    ident = {"corpus": corpus_fingerprint(corpus, column), "tokenizer": tokenizer_id(tokenizer)}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache) / key
    path = folder / "tokens.arrow"
    with folder_lock(folder):
        if path.is_file():
            return path
        encode, id_type = _encoder(tokenizer), pa.from_numpy_dtype(np.dtype(_id_type(tokenizer)))

        def tokenize(batch: Any) -> Any:
            flat, lengths = encode(batch.column(column).to_pylist())
            offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
            ids = pa.LargeListArray.from_arrays(offsets, pa.array(flat, type=id_type))
            return pa.table({"ids": ids})

        features = datasets.Features({"ids": datasets.LargeList(datasets.Value(str(id_type)))})
        corpus.select_columns([column]).with_format("arrow").map(
            tokenize, batched=True, remove_columns=[column], features=features,
            cache_file_name=str(path), new_fingerprint=key, desc="tokenizing")
        atomic_write_text(folder / "corpus.json", json.dumps({**ident, "rows": len(corpus)}))
    return path


class TokenBlocks:
    """Windows of `block` tokens with next-token targets, read from a memory-mapped Arrow file of
    token rows (`tokenize_corpus`): the `TensorData` protocol (`len`, `batch`, `fingerprint`,
    `to`) without holding the corpus in memory. Batches are int64, moved to `device` when drawn.
    """

    def __init__(self, path: str | os.PathLike, block: int, device: torch.device | str = "cpu"):
        import pyarrow as pa

        check_positive(block=block)
        self.path, self.block, self.device = Path(path), block, torch.device(device)
        table = pa.ipc.open_stream(pa.memory_map(str(self.path))).read_all()
        # zero-copy views of the file, one per record batch of the table
        self._chunks = [c.flatten().to_numpy(zero_copy_only=True)
                        for c in table.column("ids").chunks]
        self._starts = np.cumsum([0, *(len(c) for c in self._chunks)])
        self.tokens = int(self._starts[-1])
        self._n = (self.tokens - 1 - block) // block + 1
        if self._n < 1:
            raise ValueError(f"{self.tokens} tokens are too few for one window of {block} "
                             "(+1 target)")
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return self._n

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its file, not as its tokens: another process maps the file again."""
        return TokenBlocks, (str(self.path), self.block, str(self.device))

    def _take(self, starts: np.ndarray, length: int) -> np.ndarray:
        """Tokens [s, s + length) of the stream for every s in `starts`: int64, (len, length)."""
        first = np.searchsorted(self._starts, starts, side="right") - 1
        last = np.searchsorted(self._starts, starts + length - 1, side="right") - 1
        out = np.empty((len(starts), length), dtype=np.int64)
        span = np.arange(length)
        for k in np.unique(first):
            rows = np.flatnonzero((first == k) & (last == k))
            out[rows] = self._chunks[k][(starts[rows] - self._starts[k])[:, None] + span]
        for r in np.flatnonzero(first != last):  # the few that span record batches
            s, e = starts[r], starts[r] + length
            out[r] = np.concatenate([
                self._chunks[k][max(s, self._starts[k]) - self._starts[k]:
                                min(e, self._starts[k + 1]) - self._starts[k]]
                for k in range(first[r], last[r] + 1)])
        return out

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows `idx` (a 1-d tensor on any device): x, y of shape (len(idx), block)."""
        starts = idx.cpu().numpy().astype(np.int64) * self.block
        t = torch.from_numpy(self._take(starts, self.block + 1)).to(self.device)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()

    def fingerprint(self) -> str:
        """`TensorData.fingerprint` of the same windows held as tensors (computed without them)."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            numel = self._n * self.block
            sample = np.arange(0, numel, max(1, numel // 65536))
            for shift in (0, 1):  # x, then y: flat position p of x is token p of the stream
                h.update(f"{(self._n, self.block)}{torch.int64}".encode())
                h.update(self._take(sample + shift, 1).tobytes())
            self._fingerprint = h.hexdigest()[:12]
        return self._fingerprint

    def to(self, device: torch.device | str) -> TokenBlocks:
        """The same windows, drawn onto `device` (the file stays mapped, nothing is copied)."""
        out = copy.copy(self)
        out.device = torch.device(device)
        return out


def token_blocks(corpus: Any, tokenizer: Tokenizer, block: int, cache: str | os.PathLike,
                 column: str = "text") -> TokenBlocks:
    """`TokenBlocks` of `block` tokens of a corpus (a `datasets.Dataset` with a text `column`),
    tokenized once into `cache` (`tokenize_corpus`)."""
    check_positive(block=block)
    return TokenBlocks(tokenize_corpus(corpus, tokenizer, cache, column), block)
