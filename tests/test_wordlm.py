"""Word-level PTB pieces: vocabulary, stream chunks, hahacen's transformer LM, and its R."""
import math

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data import text
from lmcnb.data.download import DatasetMissing
from lmcnb.data.words import EOS, UNK, Vocab, load_ptb, stream_chunks, word_splits
from lmcnb.lmc.metrics import relative_ppl_instability, seed_relative_ppl_instability
from lmcnb.models.transformer_lm import (
    TransformerLM,
    TransformerLMConfig,
    forward_flops_per_token,
    param_count,
)
from lmcnb.train.evaluation import evaluate
from lmcnb.train.recipe import TrainConfig
from lmcnb.train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = TransformerLMConfig(vocab_size=50, d_model=16, n_head=2, d_ff=24, n_layer=2, max_len=64)
# PTB-style lines (a space at both ends); "x" in test is not in the training vocabulary.
CORPUS = {"train": " a b c \n b c d \n a \n", "valid": " b a c \n", "test": " d a x \n"}


def _model(cfg: TransformerLMConfig = TINY, init: int = 0) -> TransformerLM:
    with RngStreams(Seeds(init=init)).active("init"):
        return TransformerLM(cfg)


# -- vocabulary and streams -------------------------------------------------------------------
def test_vocab_orders_specials_then_count_then_word():
    vocab = Vocab.build(CORPUS["train"])
    # Counts: <eos> 3, a 2, b 2, c 2, d 1.
    assert vocab.words == (UNK, EOS, "a", "b", "c", "d") and vocab.eos
    assert vocab.encode(CORPUS["train"]).tolist() == [2, 3, 4, 1, 3, 4, 5, 1, 2, 1]
    assert vocab.encode(" d x \n").tolist() == [5, 0, 1]  # unknown word -> <unk>
    assert vocab.decode(torch.tensor([5, 0, 1])) == ["d", UNK, EOS]


def test_vocab_without_eos_concatenates_lines():
    vocab = Vocab.build(CORPUS["train"], eos=False)
    assert vocab.words == (UNK, "a", "b", "c", "d") and not vocab.eos
    assert vocab.encode(CORPUS["train"]).tolist() == [1, 2, 3, 2, 3, 4, 1]


def test_stream_chunks_exact():
    data = stream_chunks(torch.arange(23), batch_size=2, bptt=3)
    # Streams 0..10 and 11..21 (token 22 dropped); 10 predictions each: 3 chunks, tail of 1.
    assert data.x.tolist() == [[[0, 1, 2], [11, 12, 13]], [[3, 4, 5], [14, 15, 16]],
                               [[6, 7, 8], [17, 18, 19]]]
    assert torch.equal(data.y, data.x + 1)


def test_word_splits_exact_batches():
    vocab, splits = word_splits(CORPUS, batch_size=2, eval_batch_size=1, bptt=2)
    assert len(vocab) == 6
    # Train ids [2 3 4 1 3 | 4 5 1 2 1] as 2 streams of 5: 4 predictions each, 2 chunks.
    assert splits["train"].x.tolist() == [[[2, 3], [4, 5]], [[4, 1], [1, 2]]]
    assert splits["train"].y.tolist() == [[[3, 4], [5, 1]], [[1, 3], [2, 1]]]
    # Test "d a x <eos>" = [5 2 0 1], one stream: one chunk, the last prediction (-> <eos>) is tail.
    assert splits["test"].x.tolist() == [[[5, 2]]] and splits["test"].y.tolist() == [[[2, 0]]]
    assert splits["valid"].x.tolist() == [[[3, 2]]] and splits["valid"].y.tolist() == [[[2, 4]]]
    _, plain = word_splits(CORPUS, eos=False, batch_size=2, eval_batch_size=1, bptt=2)
    # Train ids [1 2 3 2 3 4 1]: streams [1 2 3], [2 3 4]; the last "a" is dropped.
    assert plain["train"].x.tolist() == [[[1, 2], [2, 3]]]
    assert plain["train"].y.tolist() == [[[2, 3], [3, 4]]]
    assert plain["test"].x.tolist() == [[[4, 1]]] and plain["test"].y.tolist() == [[[1, 0]]]


def test_real_ptb_sizes(data_dir):
    vocab, splits = load_ptb(data_dir, download=False)
    assert len(vocab) == 10000 and vocab.words[:3] == (UNK, EOS, "the")
    assert splits["train"].x.shape == (1659, 16, 35) and splits["test"].x.shape == (235, 10, 35)
    # Test: 82,430 tokens, 10 streams of 8,243; 235 chunks predict 82,250 of 82,420 targets.
    assert splits["test"].y.numel() == 82250


def test_registry_streams_are_load_ptb_chunks(data_dir):
    from lmcnb.core.ref import Ref
    from lmcnb.experiments.catalog import build

    _, splits = load_ptb(data_dir, download=False)
    for split, streams in (("train", 16), ("test", 10)):
        ref = Ref.of("data", "ptb_streams", split=split, streams=streams, bptt=35)
        whole = build(ref, data_dir)
        assert torch.equal(whole.x, splits[split].x) and torch.equal(whole.y, splits[split].y)
    first = build(Ref.of("data", "ptb_streams", split="train", streams=16, bptt=35, limit=5),
                  data_dir)
    assert torch.equal(first.x, splits["train"].x[:5]) and torch.equal(first.y,
                                                                       splits["train"].y[:5])
    vocab = build(Ref.of("tokenizer", "ptb_vocab"), data_dir)
    assert vocab == load_ptb(data_dir, download=False)[0]


@pytest.mark.parametrize("bad", [{"bptt": 0}, {"streams": 0}, {"limit": 0}])
def test_registry_streams_refuse_bad_sizes_before_reading(tmp_path, bad):
    from lmcnb.core.ref import Ref
    from lmcnb.experiments.catalog import build

    args = {"split": "train", "streams": 16, "bptt": 35, **bad}
    with pytest.raises(ValueError, match=rf"{next(iter(bad))} must be an integer >= 1"):
        build(Ref.of("data", "ptb_streams", **args), tmp_path)  # empty: no DatasetMissing first


def test_missing_ptb_names_files(tmp_path):
    with pytest.raises(DatasetMissing) as err:
        load_ptb(tmp_path, download=False)
    assert all(f"ptb.{s}.txt" in str(err.value) for s in ("train", "valid", "test"))


@pytest.mark.parametrize("bad", [{"bptt": 0}, {"batch_size": 0}, {"eval_batch_size": -1},
                                 {"bptt": 2.5}])
def test_bad_sizes_fail_before_reading_files(tmp_path, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=rf"{name} must be an integer >= 1 \(valid: 1, 2, 3"):
        load_ptb(tmp_path, download=False, **bad)  # an empty folder: no DatasetMissing first


def test_too_short_for_one_chunk():
    with pytest.raises(ValueError, match="too few for one chunk"):
        stream_chunks(torch.arange(10), batch_size=2, bptt=5)  # 4 predictions per stream


# -- the model --------------------------------------------------------------------------------
def test_param_count_formula():
    seed = TransformerLMConfig()
    assert param_count(seed) == 4_494_000
    for cfg in (seed, TINY):
        assert param_count(cfg) == sum(p.numel() for p in TransformerLM(cfg).parameters())


def test_flops_formula_matches_torch_counter():
    x = torch.randint(0, TINY.vocab_size, (3, 2, 10))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        _model()(x)  # train mode: the unfused path, every matmul visible to the counter
    assert counter.get_total_flops() == forward_flops_per_token(TINY, 10) * x.numel()


def test_shapes_chunks_and_plain():
    model = _model().eval()
    chunks = torch.randint(0, TINY.vocab_size, (3, 4, 7))  # (B, streams, bptt)
    out = model(chunks)
    assert out.shape == (3, 4, 7, TINY.vocab_size)
    assert model(chunks[1]).shape == (4, 7, TINY.vocab_size)  # plain (B, T)
    torch.testing.assert_close(out[1, 2], model(chunks[1, 2][None])[0])  # streams independent


def test_causal_later_tokens_never_change_earlier_logits():
    model = _model().eval()
    x = torch.randint(0, TINY.vocab_size, (2, 3, 12))
    changed = x.clone()
    changed[0, 1, 5] = (x[0, 1, 5] + 1) % TINY.vocab_size
    a, b = model(x), model(changed)
    torch.testing.assert_close(a[0, 1, :5], b[0, 1, :5], rtol=0, atol=0)
    assert not torch.allclose(a[0, 1, 5:], b[0, 1, 5:])
    mask = torch.ones(2, 3, dtype=torch.bool)
    mask[0, 1] = False
    torch.testing.assert_close(a[mask], b[mask], rtol=0, atol=0)  # other streams untouched


def test_init_is_deterministic_in_the_init_stream():
    a, b, c = _model(init=0), _model(init=0), _model(init=1)
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert not torch.equal(a.embed.weight, c.embed.weight)
    assert "positions" not in a.state_dict()  # a function of the config, never interpolated
    assert a.embed.weight.abs().max() <= 0.1 and a.decoder.weight.abs().max() <= 0.1
    assert not a.decoder.bias.any()


def test_dropout_draws_from_the_active_stream():
    model, x = _model(), torch.randint(0, TINY.vocab_size, (2, 3, 8))  # train mode

    def logits(seed: int) -> torch.Tensor:
        with RngStreams(Seeds(dropout=seed)).active("dropout"):
            return model(x)

    assert torch.equal(logits(0), logits(0)) and not torch.equal(logits(0), logits(1))


def test_trainer_steps_on_real_ptb_reduce_loss(data_dir):
    lines = "".join(text.load_text("ptb", "train", data_dir).splitlines(keepends=True)[:200])
    vocab = Vocab.build(lines)
    data = stream_chunks(vocab.encode(lines), batch_size=4, bptt=16)
    cfg = TransformerLMConfig(len(vocab), d_model=32, n_head=2, d_ff=32, n_layer=1, max_len=16)
    streams = RngStreams(Seeds())
    with streams.active("init"):
        model = TransformerLM(cfg)
    recipe = TrainConfig(batch_size=1, max_steps=30, optimizer="sgd", lr=2.5, momentum=0.0,
                         grad_clip=0.5)  # hahacen's SGD; one chunk of 4 x 16 tokens per step
    trainer = Trainer(model, recipe, data, streams)
    before = evaluate(model, data).loss
    for _ in range(30):
        trainer.step()
    assert before > math.log(len(vocab)) - 0.5 and evaluate(model, data).loss < before - 0.8


# -- hahacen's R -----------------------------------------------------------------------------
def test_seed_r_uses_alpha_09_as_end():
    ppl = np.array([10, 12, 14, 16, 18, 20, 19, 17, 15, 13, 11], float)
    losses = np.log(ppl)
    assert relative_ppl_instability(losses) == pytest.approx((20 - 10.5) / 20)  # 0.475
    assert seed_relative_ppl_instability(losses) == pytest.approx((20 - 11.5) / 20)  # 0.425
    flat_end = np.log([10, 12, 14, 16, 18, 20, 19, 17, 15, 11, 11])
    assert seed_relative_ppl_instability(flat_end) == pytest.approx(
        relative_ppl_instability(flat_end))
    with pytest.raises(ValueError, match="11 points"):
        seed_relative_ppl_instability(losses[:10])
