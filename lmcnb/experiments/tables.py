"""Tables on disk: CSV with its sha256 beside it, written atomically, verified when read."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import pandas as pd

from ..core.files import atomic_write_text


def write_table(path: Path, table: pd.DataFrame) -> None:
    """`table` as CSV, then its sha256 beside it (`<name>.sha256`), both written atomically."""
    text = table.to_csv(index=False)
    atomic_write_text(path, text)
    atomic_write_text(Path(f"{path}.sha256"), hashlib.sha256(text.encode()).hexdigest() + "\n")


def read_table(path: Path) -> pd.DataFrame | None:
    """A table `write_table` wrote, if it is there and matches its digest; else None (a damaged
    table is reported and will be recomputed from its inputs)."""
    digest = Path(f"{path}.sha256")
    if not (path.exists() and digest.exists()):
        return None
    if hashlib.sha256(path.read_bytes()).hexdigest() != digest.read_text().strip():
        warnings.warn(f"{path} does not match its digest (damaged or edited): recomputing it",
                      stacklevel=2)
        return None
    return pd.read_csv(path)
