"""Nothing silently wrong: damaged or misplaced checkpoints, tables, run records and pretrained
folders are recomputed identically (or refused naming the file); files respect the umask.

Each test damages a smoke-scale study or run it made itself in a temporary folder. The data-file
rows (CIFAR-10 garbage, a cut Tiny Shakespeare, a crafted pickle, truncated MNIST) are in
tests/test_data_verify.py; bad chapter parameters in tests/test_cnn_chapter.py and
tests/test_gpt_chapter.py.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch

from lmcnb.chapters import gpt as gpt_chapter
from lmcnb.core.checkpoint import CheckpointError, load_state
from lmcnb.core.files import atomic_write_text
from lmcnb.core.ref import Ref
from lmcnb.experiments.study import spawn_study
from lmcnb.models import gpt
from lmcnb.models import pretrained as pretrained_models
from lmcnb.train.recipe import TrainConfig

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture
def study(tmp_path, mnist_setup):
    """A finished spawn study (1 init, k = 0 and 4, 2 children) and its tables' bytes."""
    first = spawn_study(mnist_setup(tmp_path), [0, 4], n_children=2)
    tables = {name: (first.folder / name).read_bytes() for name in ("curves.csv", "barriers.csv")}
    return first.folder, tables


def _rerun(mnist_setup, tmp_path, folder: Path, tables: dict[str, bytes],
           drop_pairs: bool = True):
    """Remove the study's tables (and its pair cache), run it again, compare byte for byte."""
    for name in tables:
        (folder / name).unlink()
    if drop_pairs:
        shutil.rmtree(folder / "pairs")
    again = spawn_study(mnist_setup(tmp_path), [0, 4], n_children=2)
    assert again.folder == folder
    for name, data in tables.items():
        assert (folder / name).read_bytes() == data, name


def _children(tmp_path) -> list[Path]:
    return sorted(p for p in (tmp_path / "train").iterdir()
                  if "parent" in json.loads((p / "spec.json").read_text()))


def _flip(path: Path, n: int = 16, into: int = 64) -> None:
    """Flip `n` bytes inside the tensor data of a safetensors file (after its JSON header)."""
    data = bytearray(path.read_bytes())
    start = 8 + struct.unpack("<Q", data[:8])[0] + into
    data[start:start + n] = bytes(b ^ 0xFF for b in data[start:start + n])
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_a_child_checkpoint_are_detected_and_recreated(
        tmp_path, mnist_setup, study):
    folder, tables = study
    child = _children(tmp_path)[0]
    final = max((child / "ckpt").glob("step-*.safetensors"))
    _flip(final)
    with pytest.raises(CheckpointError, match=f"{final}.*checksum"):
        load_state(final)
    _rerun(mnist_setup, tmp_path, folder, tables)
    assert final.with_suffix(".damaged").exists()
    events = [json.loads(line) for line in (child / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "damaged" and e["file"] == final.name for e in events)


def test_a_checkpoint_replaced_by_its_siblings_is_refused_and_recreated(
        tmp_path, mnist_setup, study):
    folder, tables = study
    one, two = _children(tmp_path)[:2]
    name = max((one / "ckpt").glob("step-*.safetensors")).name
    shutil.copy2(two / "ckpt" / name, one / "ckpt" / name)
    with pytest.raises(CheckpointError, match="belongs to"):
        load_state(one / "ckpt" / name, identity={"run": one.name})
    _rerun(mnist_setup, tmp_path, folder, tables)


def test_a_truncated_pair_table_is_recomputed(tmp_path, mnist_setup, study, capsys):
    folder, tables = study
    pair = sorted((folder / "pairs").glob("*.curves.csv"))[0]
    pair.write_text("\n".join(pair.read_text().splitlines()[:-3]) + "\n")
    _rerun(mnist_setup, tmp_path, folder, tables, drop_pairs=False)
    assert f"set aside {pair} (it does not match its digest)" in capsys.readouterr().out


def test_a_truncated_study_table_is_recomputed(tmp_path, mnist_setup, study, capsys):
    folder, tables = study
    barriers = folder / "barriers.csv"
    barriers.write_text("\n".join(barriers.read_text().splitlines()[:-1]) + "\n")
    again = spawn_study(mnist_setup(tmp_path), [0, 4], n_children=2)
    assert f"set aside {barriers} (it does not match its digest)" in capsys.readouterr().out
    assert set(again.barriers.spawn_step) == {0, 4}
    for name, data in tables.items():
        assert (folder / name).read_bytes() == data


def test_an_emptied_done_record_is_rewritten_without_training(tmp_path, mnist_setup, study,
                                                              monkeypatch):
    run = mnist_setup(tmp_path).trunk(0)
    done, weights = (run.dir / "done.json").read_text(), run.ensure_weights()
    (run.dir / "done.json").write_text("")
    from lmcnb.train.trainer import Trainer

    monkeypatch.setattr(Trainer, "step", lambda self: pytest.fail("trained again"))
    assert run.ensure_trained().final_step() == 8 and (run.dir / "done.json").read_text() == done
    assert all(torch.equal(v, weights[k]) for k, v in run.ensure_weights().items())


def test_a_damaged_or_deleted_pretrained_folder_is_rebuilt_and_said(tmp_path, data_dir, offline,
                                                                    capsys):
    tok = Ref.of("tokenizer", "trained_bpe", corpus="ptb", vocab_size=300, chars=30_000)
    cfg = gpt_chapter.LMTrain.build(dict(batch_size=8, sim_batch_size=8, max_iters=4,
                                         warmup_steps=1, lr=3e-3, min_lr=3e-4)).recipe()
    kw = dict(chars=30_000, data_dir=str(data_dir))
    gpt.GPT_CONFIGS["Integrity"] = gpt.GPTConfig(2, 2, 32, 16, "bpe")
    try:
        folder = gpt_chapter.pretrain("Integrity", tok, "ptb", cfg, tmp_path, **kw)
        good = pretrained_models.pretrained_id(str(folder))
        _flip(folder / "model.safetensors")
        assert pretrained_models.pretrained_id(str(folder)) != good
        assert gpt_chapter.pretrain("Integrity", tok, "ptb", cfg, tmp_path, **kw) == folder
        assert f"set aside {folder}" in capsys.readouterr().out
        shutil.rmtree(folder)
        assert gpt_chapter.pretrain("Integrity", tok, "ptb", cfg, tmp_path, **kw) == folder
        assert f"re-made {folder}: it was missing" in capsys.readouterr().out
    finally:
        del gpt.GPT_CONFIGS["Integrity"]
    assert pretrained_models.pretrained_id(str(folder)) == good
    assert (folder.parent / f"{folder.name}.damaged").is_dir()
    assert not list(folder.parent.glob(".*.tmp"))


def test_a_changed_pretrained_folder_is_refused_where_it_is_built(tmp_path):
    from lmcnb.experiments.catalog import build

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"not the planned weights")
    ref = Ref.of("model", "pretrained_gpt", source=str(folder), digest="dir-0123456789abcdef")
    with pytest.raises(ValueError, match="weights changed"):
        build(ref)


def test_a_non_finite_loss_stops_training_with_a_clear_error(tmp_path, mnist_setup):
    bad = mnist_setup(tmp_path, train=TrainConfig(batch_size=64, max_steps=8, lr=1e30))
    with pytest.raises(FloatingPointError, match=r"non-finite training loss .* at step \d+"):
        bad.trunk(0).ensure_trained().final_step()
    assert not (tmp_path / "train" / bad.trunk(0).spec.run_id / "done.json").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "x.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o666 & ~umask
