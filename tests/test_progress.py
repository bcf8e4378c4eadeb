"""Progress bars: shown by default, off under `LMCNB_PROGRESS=0` (set by lmcnb.execute)."""
from __future__ import annotations

import pytest

from lmcnb.core import env, progress


@pytest.mark.parametrize(("value", "shown"), [(None, True), ("1", True), ("0", False),
                                              ("false", False), (" No ", False)])
def test_bar_honours_the_environment(monkeypatch, value, shown):
    if value is None:
        monkeypatch.delenv(env.PROGRESS, raising=False)
    else:
        monkeypatch.setenv(env.PROGRESS, value)
    with progress.bar(range(3), leave=False) as bar:
        assert bar.disable is not shown  # (closing a bar disables it: look before)
        assert list(bar) == [0, 1, 2]


def test_disable_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(env.PROGRESS, "1")
    with progress.bar(total=2, disable=True) as bar:
        assert bar.disable
