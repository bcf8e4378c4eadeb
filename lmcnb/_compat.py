"""The flat module paths of lmcnb 0.1 (`lmcnb.params`, `lmcnb.colab`, `lmcnb.study`, …), kept for
one release so published notebooks still import: each old name is a thin module whose attributes
are looked up, on first use, in the modules its contents moved to (with a DeprecationWarning
naming them). `python -m lmcnb.execute` runs `lmcnb.book.execute`. Nothing in the package imports
an old path; `lmcnb.data`, `lmcnb.models` and `lmcnb.train` are packages now and re-export their
old names themselves."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

MOVED = {  # old module → the modules its names live in now (first match wins)
    "augment": ("data.augment",),
    "catalog": ("experiments.catalog",),
    "chapter": ("book.report", "chapters.common"),
    "checkpoint": ("core.checkpoint",),
    "cnn": ("chapters.cnn",),
    "colab": ("book.colab",),
    "execute": ("book.execute",),
    "executors": ("experiments.executors",),
    "files": ("core.files",),
    "gpt": ("models.gpt", "chapters.gpt", "book.views"),
    "interpolate": ("lmc.interpolate", "lmc.repair"),
    "metrics": ("lmc.metrics",),
    "params": ("book.params", "core.checks", "core.device", "core.env", "core.steps"),
    "plots": ("book.plots",),
    "pretrained": ("core.hub", "models.pretrained", "experiments.pretrain"),
    "progress": ("core.progress",),
    "prune": ("prune.mask", "prune.platon", "experiments.pruning", "chapters.pruning"),
    "ptb": ("chapters.ptb", "book.views"),
    "registry": ("core.ref", "experiments.catalog"),
    "rng": ("core.rng", "core.device"),
    "runs": ("experiments.runs", "core.files"),
    "study": ("experiments.study", "experiments.setup", "experiments.tables"),
    "sweep": ("experiments.sweep",),
    "text": ("data.text", "data.tokenizers"),
    "transformer_lm": ("models.transformer_lm",),
    "verify": ("data.verify", "data.cli", "core.env"),
    "vit": ("models.vit", "data.images", "chapters.vit"),
    "widgets": ("book.widgets", "book.views"),
    "wordlm": ("data.words", "core.checks"),
}


class _Moved(types.ModuleType):
    """An old module: its attributes come from the modules its names moved to."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        for target in self.__targets__:
            module = importlib.import_module(f"lmcnb.{target}")
            if hasattr(module, name):
                return getattr(module, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        old = fullname.removeprefix("lmcnb.")
        if fullname.startswith("lmcnb.") and old in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec):
        module = _Moved(spec.name)
        module.__targets__ = MOVED[spec.name.removeprefix("lmcnb.")]
        return module

    def exec_module(self, module):
        new = ", ".join(f"lmcnb.{t}" for t in module.__targets__)
        warnings.warn(f"{module.__name__} moved to {new}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=2)

    def get_code(self, fullname):
        """`python -m <old path>` runs the new module's code."""
        target = f"lmcnb.{MOVED[fullname.removeprefix('lmcnb.')][0]}"
        code = f"import runpy\nrunpy.run_module({target!r}, run_name='__main__', alter_sys=True)"
        return compile(code, f"<{fullname}>", "exec")


def install() -> None:
    """Let the old paths import (once per process)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
