"""Progress bars: tqdm's (a widget under Jupyter), off where `LMCNB_PROGRESS=0`.

`lmcnb.book.execute` sets it for the kernels that execute the book's pages, so a bar shows while a
notebook runs interactively and leaves nothing on the published page (tqdm's own `TQDM_DISABLE`
does not reach its notebook widget).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from . import env


def enabled() -> bool:
    """Whether bars are shown: unless `$LMCNB_PROGRESS` is 0/false/no."""
    return os.environ.get(env.PROGRESS, "1").strip().lower() not in ("0", "false", "no")


def bar(iterable: Iterable | None = None, *, disable: bool = False, **kwargs: Any):
    """`tqdm.auto.tqdm(iterable, **kwargs)`, disabled by `disable` or by `$LMCNB_PROGRESS`."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=disable or not enabled(), **kwargs)
