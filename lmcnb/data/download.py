"""Downloads: a file fetched atomically and checked against its checksums, and the error of a
dataset that is missing.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path


class DatasetMissing(FileNotFoundError):
    """A dataset's files are absent and could not be downloaded."""


def fetch(url: str, dest: Path, md5: str | None = None, sha256: str | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying the given checksums.

    The data goes to a temporary file next to ``dest``; it is renamed into place only
    if every given checksum matches, and deleted otherwise (``ValueError``), with the folders
    made for it. Network failures propagate as ``OSError`` (``urllib.error.URLError``).
    """
    dest = Path(dest)
    made = [p for p in (dest.parent, *dest.parent.parents) if not p.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    hashes = {"md5": hashlib.md5(), "sha256": hashlib.sha256()}
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                for h in hashes.values():
                    h.update(chunk)
        for algo, expected in (("md5", md5), ("sha256", sha256)):
            got = hashes[algo].hexdigest()
            if expected is not None and got != expected.lower():
                raise ValueError(f"{algo} mismatch for {url}: expected {expected}, got {got}")
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        for folder in made:  # deepest first; one another download filled is kept
            if any(folder.iterdir()):
                break
            folder.rmdir()
        raise
    return dest
