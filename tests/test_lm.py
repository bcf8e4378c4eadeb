"""Language-model pieces: corpora, tokenizers, token windows and their seeded batching, perplexity,
GPT configurations and FLOP counts, pretrained directories, text samples."""
import dataclasses
import hashlib
import math
import shutil
import time

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure
from torch.utils.flop_counter import FlopCounterMode
from transformers import GPT2LMHeadModel

from lmcnb.book import views
from lmcnb.chapters import gpt as gpt_chapter
from lmcnb.core.ref import Ref
from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.data import text, tokenizers
from lmcnb.data.download import DatasetMissing
from lmcnb.experiments.catalog import build
from lmcnb.experiments.study import spawn_study
from lmcnb.lmc.metrics import relative_ppl_instability
from lmcnb.models import gpt
from lmcnb.models.pretrained import pretrained_id
from lmcnb.train.evaluation import evaluate
from lmcnb.train.trainer import Trainer

TINY = gpt.GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, tokenizer="char")


def _recipe(**values):
    """The GPT chapter's recipe of `values` (`lmcnb.chapters.gpt.LMTrain`)."""
    return gpt_chapter.LMTrain.build(values, "train").recipe()



@pytest.fixture(scope="module")
def shakespeare(data_dir):
    return (text.load_text("shakespeare", "train", data_dir),
            text.load_text("shakespeare", "test", data_dir))


def _tiny_model(vocab: int, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return gpt.build_gpt(gpt.hf_config(TINY, vocab))


# -- corpora ------------------------------------------------------------------------------------
def test_shakespeare_split(shakespeare, data_dir):
    train, test = shakespeare
    whole = (data_dir / "tinyshakespeare" / "input.txt").read_text()
    assert train + test == whole and len(train) == int(0.9 * len(whole))
    assert text.load_text("ptb", "valid", data_dir).startswith(" consumers may want")
    with pytest.raises(ValueError, match="train, test"):
        text.load_text("shakespeare", "valid", data_dir)
    with pytest.raises(ValueError, match="shakespeare, ptb"):
        text.load_text("wikitext", "train", data_dir)


def test_text_missing_names_files(tmp_path):
    with pytest.raises(DatasetMissing) as err:
        text.require_text("ptb", tmp_path, download=False)
    msg = str(err.value)
    assert "ptb.train.txt" in msg and str(tmp_path.resolve() / "ptb") in msg and "sha256" in msg


def test_text_download_verified(tmp_path, monkeypatch, data_dir):
    src = text._SOURCES["shakespeare"]
    local = dataclasses.replace(src, url=(data_dir / "tinyshakespeare").resolve().as_uri() + "/")
    monkeypatch.setitem(text._SOURCES, "shakespeare", local)
    folder = text.require_text("shakespeare", tmp_path / "ok")
    assert (hashlib.sha256((folder / "input.txt").read_bytes()).hexdigest()
            == src.sha256["input.txt"])
    bad = dataclasses.replace(local, sha256={"input.txt": "0" * 64})
    monkeypatch.setitem(text._SOURCES, "shakespeare", bad)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        text.require_text("shakespeare", tmp_path / "bad")
    assert not (tmp_path / "bad" / "tinyshakespeare" / "input.txt").exists()


# -- tokenizers -------------------------------------------------------------------------------
def test_char_tokenizer(shakespeare):
    train, test = shakespeare
    tok = tokenizers.CharTokenizer.fit(train)
    assert len(tok) == 65 and tok.decode(tok.encode(test[:500])) == test[:500]
    assert tokenizers.encode(tok, "ab").tolist() == [tok.chars.index("a"), tok.chars.index("b")]
    with pytest.raises(ValueError, match="not in the alphabet"):
        tok.encode("é")
    other = tokenizers.CharTokenizer.fit("abc")
    assert tokenizers.tokenizer_id(tok) != tokenizers.tokenizer_id(other)


def test_bpe_fallback_offline(shakespeare, offline):
    train, test = shakespeare
    start = time.time()
    with pytest.warns(UserWarning, match="training a byte-level BPE"):
        tok = tokenizers.bpe_tokenizer(train[:200_000], hub_id="lmcnb-test/no-such-tokenizer",
                                 vocab_size=600)
    assert time.time() - start < 30  # no minute of hub retries
    assert 256 < len(tok) <= 600
    ids = tokenizers.encode(tok, test[:2000])
    assert tok.decode(ids.tolist()) == test[:2000]  # byte-level: lossless on unseen text
    assert len(ids) < 2000 * 0.7  # merges learned: fewer tokens than bytes
    again = tokenizers.train_bpe(train[:200_000], 600)
    assert tokenizers.tokenizer_id(again) == tokenizers.tokenizer_id(tok)  # deterministic training
    assert tokenizers.tokenizer_id(tokenizers.train_bpe(train[:200_000],
                                                        500)) != tokenizers.tokenizer_id(tok)


def test_from_hub_fails_fast_offline(offline):
    start = time.time()
    with pytest.raises(OSError, match="cannot be reached"):
        gpt.load_pretrained("lmcnb-test/no-such-model")
    assert time.time() - start < 10


# -- token windows and batching -------------------------------------------------------------------
def test_token_windows():
    tokens = torch.arange(23)
    d = text.token_windows(tokens, 5)
    assert d.x.shape == (4, 5) and torch.equal(d.y, d.x + 1)
    assert d.x[:, 0].tolist() == [0, 5, 10, 15] and d.y[-1, -1] == 20
    s = text.token_windows(tokens, 5, stride=2)
    assert s.x[:, 0].tolist() == list(range(0, 18, 2)) and s.y[-1, -1] == 21
    with pytest.raises(ValueError, match="too few"):
        text.token_windows(torch.arange(5), 5)


def _batches(data, data_order_seed: int, n: int) -> list[list[int]]:
    cfg = _recipe(batch_size=4, sim_batch_size=8, max_iters=100, warmup_steps=0, lr=1e-3,
                  min_lr=1e-4)
    trainer = Trainer(_tiny_model(50), cfg, data, RngStreams(Seeds(data_order=data_order_seed)))
    return [trainer.sampler.next().tolist() for _ in range(n)]


def test_token_batches_follow_the_data_order_seed():
    data = text.token_windows(torch.arange(400) % 50, 8)  # 49 windows: 6 steps of 2 × 4 per epoch
    first = _batches(data, 1, 12)
    assert all(len(b) == 8 for b in first)  # one draw per optimizer step (sim_batch_size)
    assert first == _batches(data, 1, 12)
    assert first != _batches(data, 2, 12)
    epoch = [i for b in first[:6] for i in b]
    assert len(set(epoch)) == 48  # an epoch draws each window at most once
    assert first[:6] != first[6:]  # and the next epoch is a new permutation


# -- loss and perplexity -----------------------------------------------------------------------
def test_window_loss_is_the_causal_lm_loss():
    """The core's cross-entropy over (x, y shifted) windows equals transformers' own LM loss."""
    torch.manual_seed(0)
    model = gpt.build_gpt(gpt.hf_config(dataclasses.replace(TINY, block_size=16), 30)).eval()
    seqs = torch.randint(0, 30, (6, 9))
    data = text.token_windows(seqs.flatten(), 8, stride=9)
    assert torch.equal(data.x, seqs[:, :8]) and torch.equal(data.y, seqs[:, 1:])
    e = evaluate(model, data, batch_size=4)
    loss, error = e.loss, e.error
    with torch.no_grad():
        # shifts the labels itself: the same 8 predictions per row
        hf_loss = model(seqs, labels=seqs).loss
    assert loss == pytest.approx(float(hf_loss), rel=1e-5)
    assert 0 < error < 1
    # untrained: perplexity near the vocabulary size
    assert math.exp(loss) == pytest.approx(30, rel=0.2)


def test_relative_ppl_instability():
    losses = np.log([10.0, 30.0, 20.0])
    assert relative_ppl_instability(losses) == pytest.approx((30 - 15) / 30)
    assert relative_ppl_instability(np.log([10.0, 9.0, 10.0])) == pytest.approx(0.0)


def test_lm_spawn_study_reports_perplexity(tmp_path, data_dir):
    tok = Ref.of("tokenizer", "char", corpus="shakespeare")
    cfg = _recipe(batch_size=8, sim_batch_size=8, max_iters=12, warmup_steps=2, lr=3e-3,
                  min_lr=3e-4)
    config = gpt.hf_config(TINY, len(build(tok, data_dir)))
    setup = gpt_chapter.lm_setup("test", "tiny", config, tok, "shakespeare", cfg, tmp_path,
                                 chars=2000,
                         data_dir=str(data_dir), n_alpha=5, eval_iters="all")
    res = spawn_study(setup, [0, 6], n_children=2)
    b = res.barriers
    assert {"relative_ppl_instability", "stable"} <= set(b.columns) and len(b) == 4
    assert (b.stable == (b.relative_ppl_instability < 0.02)).all()
    assert set(res.curves.alpha.round(2)) == {0.0, 0.25, 0.5, 0.75, 1.0}


# -- configurations and FLOPs ------------------------------------------------------------------
def test_named_configs():
    rows = {r["model_config"]: r for r in gpt_chapter.config_table({"char": 65, "bpe": 50257})}
    assert rows["GPT2"]["parameters"] == 124_439_808  # GPT-2 small
    assert round(rows["MinGPT"]["parameters"], -6) == 30_000_000
    assert round(rows["CompactGPT"]["parameters"], -6) == 12_000_000
    assert rows["CPUGPT"]["n_embd"] == 128 and rows["CPUGPT"]["block_size"] == 64
    with pytest.raises(ValueError, match="GPT2, MinGPT, CompactGPT, ToyGPT, TinyGPT, CPUGPT"):
        gpt.gpt_config("NanoGPT")


def test_flop_formula_matches_counted_flops():
    config = gpt.hf_config(gpt.gpt_config("CPUGPT"), 65)
    config._attn_implementation = "eager"  # attention as plain matmuls, which the counter sees
    model = gpt.build_gpt(config).eval()
    x = torch.randint(0, 65, (2, config.n_positions))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    counted = counter.get_total_flops() / x.numel()
    assert gpt.count_flops(config)["forward_per_token"] == pytest.approx(counted, rel=0.01)


def test_train_config():
    cfg = _recipe(batch_size=12, sim_batch_size=48, max_iters=300, warmup_steps=30, lr=1e-3,
                  min_lr=1e-4)
    assert cfg.accum_steps == 4 and cfg.betas == (0.9, 0.95)
    assert cfg.optimizer == "adam" and cfg.weight_decay == 0.0  # the source's Adam, no decay
    assert cfg.schedule == "cosine" and cfg.grad_clip == 1.0 and cfg.max_steps == 300
    with pytest.raises(ValueError, match="must be a multiple of train.batch_size"):
        _recipe(batch_size=12, sim_batch_size=20, max_iters=3, warmup_steps=0, lr=1, min_lr=0)
    with pytest.raises(ValueError, match="must equal train.max_iters"):
        _recipe(batch_size=1, sim_batch_size=1, max_iters=3, max_steps=5, warmup_steps=0, lr=1,
                min_lr=0)


# -- pretrained checkpoints --------------------------------------------------------------------
def test_save_and_load_pretrained_directory(tmp_path, shakespeare, offline):
    train, _ = shakespeare
    tok = tokenizers.train_bpe(train[:100_000], 400)
    model = _tiny_model(len(tok), seed=3)
    folder = gpt.save_pretrained(model, tok, tmp_path / "ckpt")
    assert (folder / "model.safetensors").exists()
    loaded = gpt.load_pretrained(str(folder))
    state = model.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # ties survive the round trip
    tok2 = gpt.load_tokenizer(str(folder))
    assert tokenizers.encode(tok2, train[:3000]).tolist() == tokenizers.encode(tok,
                                                                               train[:3000]).tolist()
    assert tokenizers.tokenizer_id(tok2) == tokenizers.tokenizer_id(tok)
    copy = shutil.copytree(folder, tmp_path / "elsewhere")
    assert pretrained_id(str(copy)) == pretrained_id(str(folder)) != "gpt2"
    assert pretrained_id("gpt2") == "gpt2"
    gpt.save_pretrained(_tiny_model(len(tok), seed=4), tok, copy)
    assert pretrained_id(str(copy)) != pretrained_id(str(folder))


def test_pretrain_then_fine_tune_from_the_directory(tmp_path, data_dir, offline):
    tok = Ref.of("tokenizer", "trained_bpe", corpus="ptb", vocab_size=300, chars=60_000)
    kw = dict(chars=60_000, data_dir=str(data_dir))
    cfg = _recipe(batch_size=8, sim_batch_size=8, max_iters=6, warmup_steps=1, lr=3e-3, min_lr=3e-4)
    shape = dataclasses.replace(TINY, tokenizer="bpe")
    gpt.GPT_CONFIGS["Test"] = shape
    try:
        folder = gpt_chapter.pretrain("Test", tok, "ptb", cfg, tmp_path, **kw)
        stamp = (folder / "model.safetensors").stat().st_mtime_ns
        assert gpt_chapter.pretrain("Test", tok, "ptb", cfg, tmp_path, **kw) == folder
        assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # reused, not retrained
    finally:
        del gpt.GPT_CONFIGS["Test"]
    pretrained = gpt.load_pretrained(str(folder))
    tok_ref = Ref.of("tokenizer", "pretrained", source=str(folder))
    args = (pretrained.config, tok_ref, "ptb", cfg, tmp_path)
    fine = gpt_chapter.lm_setup("test", "ft", *args, chars=20_000, data_dir=str(data_dir),
                        pretrained=str(folder))
    scratch = gpt_chapter.lm_setup("test", "ft", *args, chars=20_000, data_dir=str(data_dir))
    start = fine.trunk(0).ensure_weights(0)  # k = 0: straight from the pretrained weights
    assert all(torch.equal(v, pretrained.state_dict()[k]) for k, v in start.items())
    assert not torch.equal(scratch.trunk(0).ensure_weights(0)["lm_head.weight"],
                           start["lm_head.weight"])
    assert dict(fine.model_args)["pretrained"] == pretrained_id(str(folder))
    assert fine.trunk(0).spec.run_id != scratch.trunk(0).spec.run_id


# -- text samples ------------------------------------------------------------------------------
def test_text_sample_view_is_seeded():
    tok = tokenizers.CharTokenizer("abcdefgh ")
    model_a, model_b = _tiny_model(len(tok), 0), _tiny_model(len(tok), 1)
    s = gpt.sample(model_a, tok, "abc", 40, seed=7)
    assert len(s) == 40 and set(s) <= set(tok.chars)
    assert s == gpt.sample(model_a, tok, "abc", 40, seed=7)
    assert s != gpt.sample(model_a, tok, "abc", 40, seed=8)
    assert s != gpt.sample(model_b, tok, "abc", 40, seed=7)
    view = views.text_sample_view(tok, "abc", 40, seed=7)
    ax = Figure().add_subplot()
    view(model_a, 0.5, ax)
    assert ax.texts[0].get_text().replace("\n", "").startswith("abc" + s[:10])
    assert "α = 0.50" in ax.get_title()
    assert model_a.training  # the view leaves the model's mode alone


def test_gpt_runs_on_the_requested_device():
    device = ("cuda" if torch.cuda.is_available()
              else "mps" if torch.backends.mps.is_available() else "cpu")
    tok = tokenizers.CharTokenizer("abcdefgh ")
    model = _tiny_model(len(tok)).to(device)
    assert len(gpt.sample(model, tok, "ab", 5, seed=0)) == 5
    assert model(torch.zeros(1, 8, dtype=torch.long, device=device)).logits.device.type == device
