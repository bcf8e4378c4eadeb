"""Data files already in place, verified: known checksums, explicit acceptance, a verdict cache.

Each dataset's files are checked against the checksums known for them (the official md5s or
sha256s, the Tiny ImageNet subset's ``MANIFEST.sha256``). Files that differ on purpose (the
shared CIFAR-10 is re-decoded from JPEG) pass only once accepted: ``lmcnb data accept NAME``
records the sha256 of each of the dataset's files in ``$LMCNB_CACHE/accepted-data.json``, and
those exact bytes pass from then on. Digests are cached by (real path, size, mtime_ns) in
``$LMCNB_CACHE/verified-data.json``: a second check of unchanged files reads no data.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import hashlib
import json
import os
import shlex
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .files import atomic_write_text

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


def cache_dir() -> Path:
    """Where verdicts and acceptances are kept: ``$LMCNB_CACHE``, else ``~/.cache/lmcnb``."""
    return Path(os.environ.get("LMCNB_CACHE") or "~/.cache/lmcnb").expanduser()


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
            f"  (in Python: lmcnb.verify.accept({files.dataset!r}, {root!r}, reason=\"...\"))")


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


def dataset_files(name: str, data_dir: str | os.PathLike | None = None) -> DataFiles:
    """Dataset `name`'s files in place under the data root (vision or text; no download)."""
    from . import data  # imported here: data and text import this module

    if name in data.VISION_DATASETS:
        return data.vision_files(name, data_dir)
    from . import text

    if name in text.TEXT_DATASETS:
        return text.text_files(name, data_dir)
    valid = ", ".join((*data.VISION_DATASETS, *text.TEXT_DATASETS))
    raise ValueError(f"unknown dataset {name!r}; valid names: {valid}")


def accept(name: str, data_dir: str | os.PathLike | None = None,
           reason: str = "") -> dict[str, str]:
    """Accept dataset `name`'s files as they are now: from then on these exact bytes pass.

    Records the sha256 of each of its files with `reason` and the date in
    ``$LMCNB_CACHE/accepted-data.json``, replacing an earlier acceptance of the same folder.
    Returns {file relative to the dataset folder: sha256}; empty (nothing recorded) for a
    dataset without known checksums, which is used as it is.
    """
    files = dataset_files(name, data_dir)
    folder = os.path.realpath(files.folder)
    cache, sums = _DigestCache(), {}
    for rel in files.known:
        got = cache.digests(os.path.join(folder, rel))
        if got is None:
            raise DataFileError(f"{files.folder / rel} is missing; restore it before accepting "
                                f"{name!r}: {files.replace}")
        sums[rel] = got["sha256"]
    cache.save()
    if sums:
        records = [r for r in _acceptances() if (r["dataset"], r["folder"]) != (name, folder)]
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        records.append({"dataset": name, "folder": folder, "files": sums, "reason": reason,
                        "date": now})
        atomic_write_text(cache_dir() / ACCEPTED_FILE,
                          json.dumps({"version": 1, "accepted": records}, indent=1))
    return sums


def _print_verdicts(files: DataFiles) -> bool:
    """Print each file's verdict (many passing files as counts); whether all pass."""
    print(f"{files.dataset}: {files.folder}")
    if not files.known:
        print("  no known checksums: structural check only")
        return True
    results = verdicts(files)
    passed = [v for v in results if v.ok]
    shown = results
    if len(passed) > _LISTED:
        for detail, n in collections.Counter(v.detail for v in passed).items():
            print(f"  ok    {n} file(s): {detail}")
        shown = [v for v in results if not v.ok]
    for v in shown:
        print(f"  {'ok  ' if v.ok else 'FAIL'}  {v.file}: {v.detail}")
    if len(passed) < len(results):
        print("  " + _advice(files).replace("\n", "\n  "))
    return len(passed) == len(results)


def main(argv: Sequence[str] | None = None) -> int:
    """``lmcnb data accept NAME`` / ``lmcnb data verify [NAME ...]``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="lmcnb data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    acc = sub.add_parser("accept", help="accept a dataset's files as they are now")
    acc.add_argument("name", metavar="NAME")
    acc.add_argument("--reason", default="", help="why these files are accepted (recorded)")
    ver = sub.add_parser("verify", help="check datasets' files (default: every dataset present)")
    ver.add_argument("names", nargs="*", metavar="NAME")
    for p in (acc, ver):
        p.add_argument("--data-dir", help="the data root (default: $LMCNB_DATA, else ./data)")
    args = parser.parse_args(argv)
    try:
        if args.command == "accept":
            sums = accept(args.name, args.data_dir, args.reason)
            where = cache_dir() / ACCEPTED_FILE
            print(f"accepted {len(sums)} file(s) of {args.name!r}; recorded in {where}" if sums
                  else f"{args.name!r} has no known checksums: nothing to accept")
            return 0
        ok = True
        for name in args.names or _all_names():
            try:
                files = dataset_files(name, args.data_dir)
            except FileNotFoundError as exc:  # DatasetMissing: a failure only if named
                print(f"{name}: FAIL: {exc}" if args.names else f"{name}: not present")
                ok = ok and not args.names
                continue
            ok = _print_verdicts(files) and ok
        return 0 if ok else 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _all_names() -> tuple[str, ...]:
    from . import data, text  # imported here: data and text import this module

    return (*data.VISION_DATASETS, *text.TEXT_DATASETS)


if __name__ == "__main__":
    raise SystemExit(main())
