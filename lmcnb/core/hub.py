"""Loading from the model hub or a local directory: `from_pretrained` that fails at once offline."""
from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers at all (its client retries for a minute when offline)."""
    try:
        socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def from_hub(cls: Any, source: str, **kwargs: Any) -> Any:
    """`cls.from_pretrained(source, **kwargs)`: a local directory, the local hub cache, else the
    hub.

    Offline, fails at once instead of after the hub client's minute of retries. `transformers`'
    reports and progress bars are off while it loads (`quiet`): lmcnb's own bars show the work.
    """
    with quiet():
        try:
            return cls.from_pretrained(source, local_files_only=True, **kwargs)
        except OSError as exc:
            if Path(source).exists():
                raise
            if not hub_reachable():
                raise OSError(f"{source!r} is neither a local directory nor in the hub cache, "
                              f"and {HUB_HOST} cannot be reached") from exc
        return cls.from_pretrained(source, **kwargs)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """`transformers` without its reports and progress bars inside the block."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()
