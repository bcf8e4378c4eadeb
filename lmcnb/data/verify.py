"""Data files already in place, verified: known checksums, explicit acceptance, a verdict cache.

Each dataset's files are checked against the checksums known for them (the official md5s or
sha256s, the Tiny ImageNet subset's ``MANIFEST.sha256``). Files that differ on purpose (the
shared CIFAR-10 is re-decoded from JPEG) pass only once accepted: ``lmcnb data accept NAME``
records the sha256 of each of the dataset's files in ``$LMCNB_CACHE/accepted-data.json``, and
those exact bytes pass from then on. Digests are cached by (real path, size, mtime_ns) in
``$LMCNB_CACHE/verified-data.json``: a second check of unchanged files reads no data.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..core.env import cache_dir
from ..core.files import atomic_write_text

DIGESTS_FILE = "verified-data.json"


ACCEPTED_FILE = "accepted-data.json"


_LISTED = 20  # files named one by one in an error message or a verify listing


class DataFileError(ValueError):
    """A data file that fails verification or cannot be decoded; the message names it."""


class Known(NamedTuple):
    """A file's known checksum and where it comes from."""

    algo: str  # "md5" or "sha256"
    digest: str
    source: str  # e.g. "the official checksum", "MANIFEST.sha256"


@dataclass(frozen=True)
class DataFiles:
    """A dataset's files in place and the checksums known for them."""

    dataset: str
    root: Path  # the data root (what ``--data-dir`` names)
    folder: Path
    known: Mapping[str, Known | None]  # path relative to `folder` -> its checksum, None if unknown
    replace: str  # how to get the canonical files


@dataclass(frozen=True)
class Verdict:
    """Whether one file passes, and why."""

    file: str  # relative to the dataset's folder
    ok: bool
    detail: str


def _digests(path: str) -> dict[str, str]:
    """The md5 and sha256 of a file, read once."""
    hashes = {"md5": hashlib.md5(usedforsecurity=False), "sha256": hashlib.sha256()}
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            for h in hashes.values():
                h.update(chunk)
    return {algo: h.hexdigest() for algo, h in hashes.items()}


class _DigestCache:
    """File digests by path (symbolic links resolved), valid while the file's size, mtime_ns and
    inode are unchanged."""

    def __init__(self) -> None:
        self.path = cache_dir() / DIGESTS_FILE
        self.entries = self._read()
        self.new: dict[str, dict] = {}

    def _read(self) -> dict[str, dict]:
        try:
            entries = json.loads(self.path.read_text())["files"]
            return entries if isinstance(entries, dict) else {}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # no cache yet, or a damaged one: the files are hashed again

    def digests(self, path: str) -> dict[str, str] | None:
        """The file's md5 and sha256 (hashed now if new or changed); None if it is missing.

        `path` should be absolute, its folders free of symbolic links (the file may be one).
        """
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                path = os.path.realpath(path)
                st = os.stat(path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}
        entry = self.entries.get(path)
        valid = isinstance(entry, dict) and "md5" in entry and "sha256" in entry
        if not valid or {k: entry.get(k) for k in stamp} != stamp:
            entry = {**stamp, **_digests(path)}  # stat first: a change while hashing re-hashes
            self.entries[path] = self.new[path] = entry
        return entry

    def save(self) -> None:
        """Merge the new digests into the cache file, dropping files that no longer exist."""
        if not self.new:
            return
        merged = {**self._read(), **self.new}
        live = {p: e for p, e in sorted(merged.items()) if os.path.exists(p)}
        atomic_write_text(self.path, json.dumps({"version": 1, "files": live}))
        self.new = {}


def _acceptances() -> list[dict]:
    path = cache_dir() / ACCEPTED_FILE
    try:
        records = json.loads(path.read_text())["accepted"]
        if not all({"dataset", "folder", "files", "date"} <= r.keys()
                   and isinstance(r["files"], dict) for r in records):
            raise ValueError("a record lacks its dataset, folder, files or date")
        return records
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a valid acceptance file ({exc}); repair it, or delete it "
                         "and accept the datasets again") from exc


def _accepted(files: DataFiles) -> dict | None:
    folder = os.path.realpath(files.folder)
    return next((r for r in _acceptances()
                 if r["dataset"] == files.dataset and r["folder"] == folder), None)


def _mismatch(known: Known | None, accepted: dict | None, want: str | None,
              got: dict[str, str]) -> str:
    expected, algos = [], []
    if known:
        expected.append(f"{known.algo} {known.digest} ({known.source})")
        algos.append(known.algo)
    if want:
        why = f": {accepted['reason']}" if accepted.get("reason") else ""
        expected.append(f"sha256 {want} (accepted on {accepted['date']}{why})")
        algos.append("sha256")
    if not expected:
        return "no checksum is known for it (not listed with the dataset's checksums)"
    actual = ", ".join(f"{a} {got[a]}" for a in dict.fromkeys(algos))
    return f"expected {' or '.join(expected)}; got {actual}"


def verdicts(files: DataFiles) -> list[Verdict]:
    """Each file's verdict: it passes if it matches its known checksum or the sha256 accepted."""
    accepted = _accepted(files)
    folder = os.path.realpath(files.folder)
    cache, out = _DigestCache(), []
    for rel, known in files.known.items():
        got = cache.digests(os.path.join(folder, rel))
        want = accepted["files"].get(rel) if accepted else None
        if got is None:
            out.append(Verdict(rel, False, "missing"))
        elif known and got[known.algo] == known.digest:
            out.append(Verdict(rel, True, f"{known.algo} matches {known.source}"))
        elif want and got["sha256"] == want:
            out.append(Verdict(rel, True, f"sha256 matches the one accepted on {accepted['date']}"))
        else:
            out.append(Verdict(rel, False, _mismatch(known, accepted, want, got)))
    cache.save()
    return out


def _advice(files: DataFiles) -> str:
    root = str(files.root)
    return (f"To replace the files: {files.replace}\n"
            "If they differ on purpose (a re-encoded copy, your own data), accept their current "
            "bytes (add --reason TEXT to record why):\n"
            f"  lmcnb data accept {files.dataset} --data-dir {shlex.quote(root)}\n"
            f"  (in Python: lmcnb.data.cli.accept({files.dataset!r}, {root!r}, reason=\"...\"))")


def check(files: DataFiles) -> None:
    """Raise `DataFileError` naming every file that fails verification (see `verdicts`)."""
    failed = [v for v in verdicts(files) if not v.ok]
    if not failed:
        return
    listed = [f"  {files.folder / v.file}: {v.detail}" for v in failed[:_LISTED]]
    if len(failed) > _LISTED:
        listed.append(f"  ... and {len(failed) - _LISTED} more")
    raise DataFileError(f"dataset {files.dataset!r}: {len(failed)} file(s) in {files.folder} "
                        "fail verification:\n" + "\n".join(listed) + "\n" + _advice(files))
