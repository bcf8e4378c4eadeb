"""Tests for lmcnb.checkpoint: round trips, refusal of damaged files, no unpickling, atomic
writes."""

import json
import math
import os
import pickle
import struct

import pytest
import torch
from helpers import assert_same
from torch import nn

from lmcnb.core import checkpoint
from lmcnb.core.checkpoint import CheckpointError, load_state, save_state
from lmcnb.core.files import atomic_write_text
from lmcnb.core.rng import RngStreams, Seeds
from lmcnb.models.cnn import LeNet5


def _trained_state():
    streams = RngStreams(Seeds(1, 2, 3, 4))
    with streams.active("init"):
        model = LeNet5()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.8, 0.99))
    for _ in range(2):
        model(torch.randn(4, 1, 28, 28,
                          generator=streams.gen["data_order"])).square().mean().backward()
        opt.step()
        opt.zero_grad()
    return {"model": model.state_dict(), "optimizer": opt.state_dict(),
            "rng": streams.state_dict(),
            "progress": {"step": 2, "best_val": None,
                         "log": [{"step": 1, "train_loss": 2.5}]}}, model, opt


@pytest.fixture
def saved(tmp_path):
    state, _, _ = _trained_state()
    path = tmp_path / "ckpt.safetensors"
    save_state(path, state)
    return path, state


# -- round trips -------------------------------------------------------------------------------
def test_round_trip_of_nested_state(tmp_path):
    state = {
        "f32": torch.randn(3, 4), "f16": torch.randn(5).half(), "bf16": torch.randn(2).bfloat16(),
        "i64": torch.arange(6).view(2, 3), "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "flag": torch.tensor([True, False]), "scalar": torch.tensor(3.5),
        "nested": {"list": [1, 2.5, "x", None, True, torch.ones(2)], "tuple": (0.9, 0.999),
                   0: "int key", 7: {"deep": torch.zeros(1)}},
        "inf": math.inf, "ninf": -math.inf, "nan": math.nan, "none": None, "text": "héllo",
        "transposed": torch.arange(12.0).view(3, 4).t(),  # not contiguous
        "empty": torch.zeros(0), "empty2": torch.zeros(0, 3),
    }
    base = torch.arange(10.0)
    # views of one storage
    state["shared"] = {"base": base, "again": base, "head": base[:5], "tail": base[5:]}
    path = tmp_path / "a" / "b" / "state.safetensors"  # folders are created
    save_state(path, state)
    assert_same(state, load_state(path))


def test_round_trip_of_model_optimizer_and_rng(saved, tmp_path):
    path, state = saved
    loaded = load_state(path)
    assert_same(state, loaded)
    # What was loaded restores a working model, optimizer and RNG streams.
    _, model, opt = _trained_state()
    model2 = LeNet5()
    model2.load_state_dict(loaded["model"])
    opt2 = torch.optim.Adam(model2.parameters())
    opt2.load_state_dict(loaded["optimizer"])
    assert opt2.param_groups[0]["betas"] == (0.8, 0.99)
    x = torch.randn(2, 1, 28, 28)
    for m, o in ((model, opt), (model2, opt2)):
        m(x).sum().backward()
        o.step()
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)
    streams = RngStreams(Seeds())
    streams.load_state_dict(loaded["rng"])
    ref = RngStreams(Seeds(1, 2, 3, 4))
    ref.load_state_dict(state["rng"])
    for name in ("init", "data_order", "augmentation", "dropout"):
        assert torch.equal(torch.rand(3, generator=streams.gen[name]),
                           torch.rand(3, generator=ref.gen[name]))


def test_tied_weights_round_trip(tmp_path):
    """Tied input/output embeddings (as in GPT-2) share one tensor in the state dict."""

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.emb.weight

    model = Tied()
    save_state(tmp_path / "tied.safetensors", {"model": model.state_dict()})
    loaded = load_state(tmp_path / "tied.safetensors")["model"]
    assert (torch.equal(loaded["emb.weight"], model.emb.weight)
            and torch.equal(loaded["head.weight"], model.emb.weight))
    fresh = Tied()
    fresh.load_state_dict(loaded)
    assert (torch.equal(fresh.head.weight, model.emb.weight)
            and fresh.head.weight is fresh.emb.weight)


def test_unsupported_values_are_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        save_state(tmp_path / "x.safetensors", {"obj": object()})
    with pytest.raises(TypeError, match="keys"):
        save_state(tmp_path / "x.safetensors", {(1, 2): torch.ones(1)})
    assert list(tmp_path.iterdir()) == []


# -- damaged files -----------------------------------------------------------------------------
def _refused(path):
    with pytest.raises(CheckpointError) as info:
        load_state(path)
    assert str(path) in str(info.value)
    return info.value


def test_truncated_checkpoint_is_refused(saved):
    path, _ = saved
    raw = path.read_bytes()
    header = struct.unpack("<Q", raw[:8])[0]
    for size in (0, 4, 8, 8 + header // 2, 8 + header, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:size])
        _refused(path)


def test_corrupt_header_is_refused(saved):
    path, _ = saved
    raw = path.read_bytes()
    header = struct.unpack("<Q", raw[:8])[0]
    for offset in (0, 3, 8, 9, 8 + header // 3, 8 + header // 2, 8 + header - 2):
        damaged = bytearray(raw)
        damaged[offset:offset + 4] = b"\xff\x00\x7f!"
        path.write_bytes(bytes(damaged))
        _refused(path)
    # A header that is valid JSON with a valid safetensors layout but a broken lmcnb tree.
    text = raw[8:8 + header].decode()
    meta = json.loads(text)
    meta["__metadata__"]["lmcnb"] = meta["__metadata__"]["lmcnb"].replace(
        '"__tensor__": "/model/', '"__tensor__": "/nope/', 1)
    _write_with_header(path, meta, raw[8 + header:])
    _refused(path)
    meta["__metadata__"]["lmcnb"] = "{not json"
    _write_with_header(path, meta, raw[8 + header:])
    _refused(path)


def _write_with_header(path, meta, body):
    text = json.dumps(meta).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def test_plain_safetensors_without_lmcnb_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(path))
    _refused(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_state(tmp_path / "absent.safetensors")


class _Trap:
    """Unpickling this creates a marker file: proof that a loader executed pickled code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payloads_are_refused_and_never_executed(tmp_path):
    marker = tmp_path / "EXECUTED"
    payload = pickle.dumps({"model": _Trap(marker)})
    (tmp_path / "pickle.safetensors").write_bytes(payload)
    torch.save({"model": {"w": torch.ones(3)}, "trap": _Trap(marker)},
               tmp_path / "torch.safetensors")
    for name in ("pickle.safetensors", "torch.safetensors"):
        _refused(tmp_path / name)
    assert not marker.exists()
    # The trap works: a pickle loader would have run it.
    pickle.loads(payload)["model"].close()
    assert marker.exists()


def test_loading_does_not_go_through_pickle(saved, monkeypatch):
    path, state = saved

    def boom(*args, **kwargs):
        raise AssertionError("load_state unpickled something")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "Unpickler", boom)
    monkeypatch.setattr(torch, "load", boom)
    assert_same(state, load_state(path))


# -- atomic writes -----------------------------------------------------------------------------
def test_failed_save_leaves_previous_file_and_no_temp_files(saved, monkeypatch):
    path, state = saved
    before = path.read_bytes()

    def half_write(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_state(path, {"model": {"w": torch.zeros(3)}})
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert_same(state, load_state(path))

    def interrupted(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"x")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_state(path, {"model": {"w": torch.zeros(3)}})
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_successful_save_replaces_the_file(saved):
    path, _ = saved
    save_state(path, {"step": 5, "w": torch.ones(2)})
    out = load_state(path)
    assert out["step"] == 5 and torch.equal(out["w"], torch.ones(2))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_atomic_write_text(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "done.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"

    def fail(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_text(path, "three")
    assert path.read_text() == "two"
    assert [p.name for p in path.parent.iterdir()] == ["done.json"]
