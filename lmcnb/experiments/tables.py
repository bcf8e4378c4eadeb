"""Tables on disk: CSV with its sha256 beside it, written atomically, verified when read."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from ..core.files import atomic_write_text, set_aside


def write_table(path: Path, table: pd.DataFrame) -> None:
    """`table` as CSV, then its sha256 beside it (`<name>.sha256`), both written atomically."""
    text = table.to_csv(index=False)
    atomic_write_text(path, text)
    atomic_write_text(Path(f"{path}.sha256"), hashlib.sha256(text.encode()).hexdigest() + "\n")


def read_table(path: Path, then: str = "it is recomputed from its inputs") -> pd.DataFrame | None:
    """A table `write_table` wrote, if it is there and matches its digest; else None. A table
    that fails its digest (or has none) is set aside to `<name>.damaged` with a line saying so,
    and what happens `then`."""
    path = Path(path)
    digest = Path(f"{path}.sha256")
    if not path.exists():
        return None
    if not digest.exists() or (hashlib.sha256(path.read_bytes()).hexdigest()
                               != digest.read_text().strip()):
        why = "no digest beside it" if not digest.exists() else "it does not match its digest"
        set_aside(path, why, then)
        digest.unlink(missing_ok=True)
        return None
    return pd.read_csv(path)
