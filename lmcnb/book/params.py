"""Chapter parameters: a profile's values, overridden by every parameter given explicitly.

Chapters call `resolve` in their first cells, so a bad value fails before any work starts,
with a message that lists the valid values; `check_injected` refuses a parameter papermill
injected that the notebook does not declare.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from ..core.env import runs_root

PROFILES = ("smoke", "book", "paper")


MACHINE_PARAMETERS = ("data_dir", "runs_dir", "device", "executor")  # not part of any profile


def resolve(profiles: Mapping[str, Mapping[str, Any]], profile: str,
            namespace: Mapping[str, Any] | None = None, /, *,
            aliases: Mapping[str, str] | None = None, **given: Any) -> SimpleNamespace:
    """The profile's values with every parameter that is not None on top.

    A chapter passes `globals()`: its parameters cell is the one list of names, so every key of
    the profile must be declared there (a profile key the cell lacks is an error), and a name of
    the cell that is not None overrides the profile. A dict given for a dict-valued key (a section
    such as a fine-tuning recipe, or per-model values) updates that section key by key, nested
    dicts too; any other value replaces it. `aliases` maps other names a user may know (a
    source's flag names) to `"key"` or `"section.key"`.
    """
    if profile not in profiles:
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(profiles)}")
    values = copy.deepcopy(dict(profiles[profile]))
    aliases = dict(aliases or {})
    names = set(values) | set(MACHINE_PARAMETERS) | set(aliases)
    if namespace is not None:
        undeclared = set(values) - set(namespace)
        if undeclared:
            raise ValueError(f"profile key(s) {sorted(undeclared)} are not declared in the "
                             "parameters cell")
        given = {**{k: namespace.get(k) for k in names if k in namespace}, **given}
    unknown = set(given) - names
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; valid: {sorted(values)}")
    for name, value in given.items():
        if value is None or name in MACHINE_PARAMETERS:
            continue
        section, _, key = aliases.get(name, name).partition(".")
        if key:
            value = {key: value}
        current = values.get(section)
        if isinstance(current, dict) and isinstance(value, dict):
            allowed = set().union(*(p.get(section) or {} for p in profiles.values()
                                    if isinstance(p.get(section), dict)))
            bad = set(value) - allowed
            if bad:
                raise ValueError(f"unknown key(s) {sorted(bad)} in {section}; valid: "
                                 f"{sorted(allowed)}")
            _merge(current, value)
        else:
            values[section] = value
    values.update({k: given.get(k) for k in MACHINE_PARAMETERS})
    values["runs_dir"] = runs_root(values["runs_dir"])
    values["profile"] = profile
    return SimpleNamespace(**values)


def _merge(section: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Update `section` in place; a dict inside it is updated key by key too."""
    for key, value in update.items():
        if isinstance(section.get(key), dict) and isinstance(value, Mapping):
            _merge(section[key], value)
        else:
            section[key] = value


def check_injected(shell: Any = None) -> None:
    """In a kernel that papermill runs: refuse injected parameters the notebook does not declare.

    papermill only warns about a name the parameters cell lacks (a typo such as `n_child`) and
    injects it anyway, where nothing reads it. The kernel's input history holds both cells: the
    first cell executed (the `parameters` cell) and the injected one (it starts `# Parameters`).
    Outside papermill this does nothing.
    """
    import ast

    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    cells = [] if shell is None else list(shell.user_ns.get("In", []))[1:]

    def assigned(source: str) -> set[str]:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            return set()
        return {t.id for node in tree.body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}

    injected = [c for c in cells[1:] if c.lstrip().startswith("# Parameters")]
    if not cells or not injected:
        return
    declared = assigned(cells[0])
    unknown = set().union(*(assigned(c) for c in injected)) - declared
    if unknown:
        raise ValueError(f"unknown parameter(s) {sorted(unknown)}; "
                         f"valid: {', '.join(sorted(declared))}")
