"""Run identity is stable: every run, pretrained folder and study folder that the chapters make at
the `smoke` profile has the name pinned in `pinned_runs.json`, so a published runs folder stays
valid when the code around it changes. A change that changes a run's numbers must change its
name: then the pinned names are updated in the same commit, which says why.

A name that hashes what was trained here — the weights of a model pretrained here (a `"dir-…"`
digest in its record) or a mask found by pruning — is the same only where training gives the same
bits, on CPUs of one instruction set (book/reproducibility.md): for those the name less its hash is
compared.

`make test` runs this module after it has executed every chapter at `smoke` and points
`LMCNB_IDENTITY_RUNS` at that runs folder; without it, the chapters are executed here first.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PINNED = Path(__file__).with_name("pinned_runs.json")


def shown(folder: Path) -> str:
    """The folder's name, less its hash where that hashes weights or a mask trained here."""
    record = next((folder / f for f in ("spec.json", "study.json") if (folder / f).is_file()), None)
    text = record.read_text() if record is not None else ""
    if '"dir-' in text or '"mask"' in text:
        return folder.name.rsplit("-", 1)[0] + "-<weights>"
    return folder.name


def folder_names(runs: Path) -> dict[str, list[str]]:
    """The names a runs folder holds: runs (`train/`), pretrained folders (`pretrained/`), and per
    chapter its study folders (those with a `study.json`)."""
    names = {kind: sorted(shown(p) for p in (runs / kind).iterdir() if p.is_dir()
                          and not p.name.startswith("."))
             for kind in ("train", "pretrained")}
    for chapter in sorted(p for p in runs.iterdir() if p.is_dir()):
        studies = sorted(shown(s) for s in chapter.iterdir() if (s / "study.json").is_file())
        if studies:
            names[chapter.name] = studies
    return names


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> Path:
    given = os.environ.get("LMCNB_IDENTITY_RUNS")
    if given:
        return Path(given)
    runs = tmp_path_factory.mktemp("identity") / "runs"
    out = runs.parent / "executed"
    subprocess.run([sys.executable, "-m", "lmcnb.execute", "--profile", "smoke", "--out",
                    str(out)], check=True, cwd=REPO, env={**os.environ, "LMCNB_RUNS": str(runs)})
    return runs


def test_smoke_runs_keep_their_pinned_names(smoke_runs):
    pinned = json.loads(PINNED.read_text())
    found = folder_names(smoke_runs)
    for kind in sorted(set(pinned) | set(found)):
        assert found.get(kind, []) == pinned.get(kind, []), (
            f"{kind}: names changed — only in this run: "
            f"{sorted(set(found.get(kind, [])) - set(pinned.get(kind, [])))[:5]}, only pinned: "
            f"{sorted(set(pinned.get(kind, [])) - set(found.get(kind, [])))[:5]}")
