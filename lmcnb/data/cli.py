"""`lmcnb data`: every dataset's files verified (`verify`), or files that differ on purpose
accepted by their exact bytes (`accept`).
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import sys
from collections.abc import Sequence

from ..core.env import cache_dir
from ..core.files import atomic_write_text
from .verify import (
    _LISTED,
    ACCEPTED_FILE,
    DataFileError,
    DataFiles,
    _acceptances,
    _advice,
    _DigestCache,
    verdicts,
)


def dataset_files(name: str, data_dir: str | os.PathLike | None = None) -> DataFiles:
    """Dataset `name`'s files in place under the data root (vision or text; no download)."""
    from . import vision as data

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
    from . import text
    from . import vision as data

    return (*data.VISION_DATASETS, *text.TEXT_DATASETS)


if __name__ == "__main__":
    raise SystemExit(main())
