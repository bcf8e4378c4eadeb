"""Names of lmcnb 0.1's flat modules kept for one release where a package took the module's name
(`lmcnb.data`, `lmcnb.models`, `lmcnb.train`): the package resolves them, lazily, in the modules
they moved to."""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def old_names(package: str, moved: Mapping[str, Sequence[str]]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: each name of `moved[module]` is looked up in that
    module (relative to the package)."""
    where = {name: module for module, names in moved.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in where:
            return getattr(importlib.import_module(where[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
