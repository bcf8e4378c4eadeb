"""Corpora larger than memory: tokenized once with `Dataset.map` into a cached Arrow file, and read
as `TokenBlocks`, the windows `token_windows` cuts, from the memory-mapped file."""
from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest
import torch
from datasets import Dataset, Features, Value

from lmcnb.core.ref import Ref
from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data.corpus import TokenBlocks, token_blocks, tokenize_corpus
from lmcnb.data.tensors import TensorData
from lmcnb.data.text import load_text, token_windows
from lmcnb.data.tokenizers import CharTokenizer, encode, train_bpe
from lmcnb.experiments.catalog import build
from lmcnb.models import gpt
from lmcnb.train.recipe import TrainConfig
from lmcnb.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def rows() -> list[str]:
    """2,500 rows of 0–60 characters: more than one record batch (1,000 rows) of the map."""
    rng = np.random.default_rng(0)
    return ["".join(rng.choice(list("abcdef \n"), rng.integers(0, 60))) for _ in range(2500)]


@pytest.fixture(scope="module")
def corpus(rows) -> Dataset:
    return Dataset.from_dict({"text": rows, "id": list(range(len(rows)))})


@pytest.fixture(scope="module")
def chars(rows) -> CharTokenizer:
    return CharTokenizer.fit("".join(rows))


def test_token_blocks_are_the_windows_token_windows_cuts_from_the_same_tokens(corpus, rows, chars,
                                                                              tmp_path):
    blocks = token_blocks(corpus, chars, 16, tmp_path)
    table = pa.ipc.open_stream(pa.memory_map(str(blocks.path))).read_all()
    assert table.column("ids").num_chunks > 1  # windows span record batches
    want = token_windows(encode(chars, "".join(rows)), 16)
    assert len(blocks) == len(want)
    x, y = blocks.batch(torch.arange(len(blocks)))
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(x, want.x) and torch.equal(y, want.y)
    idx = torch.randperm(len(want), generator=torch.Generator().manual_seed(0))[:64]
    assert all(torch.equal(a, b) for a, b in zip(blocks.batch(idx), want.batch(idx)))
    assert blocks.fingerprint() == want.fingerprint()
    assert token_blocks(corpus, chars, 15, tmp_path).fingerprint() != want.fingerprint()


def test_bpe_rows_each_end_with_the_end_of_text_token(corpus, rows, tmp_path):
    bpe = train_bpe("".join(rows), 300)
    ids = [t for r in rows for t in (*bpe.backend_tokenizer.encode(r).ids, bpe.eos_token_id)]
    want = token_windows(torch.tensor(ids), 8)
    blocks = token_blocks(corpus, bpe, 8, tmp_path)
    assert torch.equal(blocks.batch(torch.arange(len(want)))[1], want.y)
    assert blocks.fingerprint() == want.fingerprint()


def test_the_tokens_are_cached_by_corpus_and_tokenizer_not_block_size(corpus, chars, tmp_path,
                                                                      monkeypatch):
    path = tokenize_corpus(corpus, chars, tmp_path)
    written = path.stat().st_mtime_ns

    def no_map(*args, **kwargs):
        raise AssertionError("tokenized again")

    with monkeypatch.context() as mp:
        mp.setattr(Dataset, "map", no_map)
        assert tokenize_corpus(corpus, chars, tmp_path) == path
        assert token_blocks(corpus, chars, 32, tmp_path).path == path
    assert path.stat().st_mtime_ns == written
    other = CharTokenizer(chars.chars + "z")
    assert tokenize_corpus(corpus, other, tmp_path) != path
    changed = corpus.select(range(len(corpus) - 1))
    assert tokenize_corpus(changed, chars, tmp_path) != path


def test_batches_move_to_the_device_when_drawn_and_the_corpus_stays_mapped(corpus, chars,
                                                                           tmp_path):
    blocks = token_blocks(corpus, chars, 16, tmp_path)
    moved = blocks.to("meta")
    x, y = moved.batch(torch.tensor([0, 5]))
    assert x.device.type == y.device.type == "meta" and x.shape == (2, 16)
    assert blocks.batch(torch.tensor([0]))[0].device.type == "cpu"
    assert len(pickle.dumps(blocks)) < 1000  # its file, not its tokens
    again = pickle.loads(pickle.dumps(blocks))
    assert torch.equal(again.batch(torch.arange(4))[0], blocks.batch(torch.arange(4))[0])


def _train(data, steps: int = 5) -> tuple[list[float], dict[str, torch.Tensor], dict]:
    """Losses of `steps` steps of a tiny GPT, its weights at the start and at the end."""
    config = gpt.hf_config(gpt.GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16,
                                         tokenizer="char"), 8)
    streams = RngStreams(Seeds(init=1, data_order=2))
    with streams.active("init"):
        model = gpt.build_gpt(config)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(model, TrainConfig(batch_size=8, max_steps=steps, optimizer="adamw",
                                         lr=3e-3), data, streams)
    return [trainer.step() for _ in range(steps)], start, trainer.model.state_dict()


def test_the_trainer_trains_on_token_blocks_as_on_the_same_windows_held_as_tensors(corpus, rows,
                                                                                   chars, tmp_path):
    blocks = token_blocks(corpus, chars, 16, tmp_path)
    windows = token_windows(encode(chars, "".join(rows)), 16)
    losses, start, state = _train(blocks)
    want_losses, _, want_state = _train(TensorData(windows.x, windows.y))
    assert losses == want_losses
    assert all(torch.equal(state[k], want_state[k]) for k in state)
    assert not all(torch.equal(state[k], start[k]) for k in state)  # it did train


def test_the_catalog_builds_token_blocks_from_a_source(data_dir, tmp_path, monkeypatch):
    text = load_text("shakespeare", "train", data_dir)[:50_000]
    (tmp_path / "corpus").mkdir()
    Dataset.from_dict({"text": text.splitlines(keepends=True)}).to_parquet(
        tmp_path / "corpus" / "train-00000-of-00001.parquet")
    monkeypatch.setenv("LMCNB_RUNS", str(tmp_path / "runs"))
    tok = Ref.of("tokenizer", "char", corpus="shakespeare")
    blocks = build(Ref.of("data", "token_blocks", source=str(tmp_path / "corpus"), tokenizer=tok,
                          block=32), data_dir)
    assert isinstance(blocks, TokenBlocks)
    assert blocks.path.is_relative_to(tmp_path / "runs" / "tokens")
    want = token_windows(encode(build(tok, data_dir), text), 32)
    assert len(blocks) == len(want) and blocks.fingerprint() == want.fingerprint()
    with pytest.raises(ValueError, match=r"no split 'test' \(it has train\)"):
        build(Ref.of("data", "token_blocks", source=str(tmp_path / "corpus"), tokenizer=tok,
                     block=32, split="test"), data_dir)


@pytest.mark.parametrize("rows, column, block, message", [
    ({"text": ["abcz"]}, "text", 2, r"characters \['z'\] are not in the alphabet"),
    ({"body": ["abc"]}, "text", 2, r"no text column 'text' \(columns: body\)"),
    ({"text": ["abc"]}, "text", 3, r"3 tokens are too few for one window of 3"),
    ({"text": []}, "text", 2, r"the corpus is empty"),
])
def test_a_corpus_that_cannot_give_windows_fails_clearly(rows, column, block, message, tmp_path):
    features = Features({name: Value("string") for name in rows})
    with pytest.raises(ValueError, match=message):
        token_blocks(Dataset.from_dict(rows, features=features), CharTokenizer("abc"), block,
                     tmp_path, column)
