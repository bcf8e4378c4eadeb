"""Chapter parameters as typed data: a profile's values, overridden by every parameter given
explicitly, checked field by field before any work starts.

A chapter's parameters are a frozen dataclass (a `Config`, subclass of `ChapterConfig`) whose
fields are declared once with `param(help, ...)`: their type (from the annotation) and their
range. Grouped settings are `Section`s, frozen dataclasses of their own, and may be held per name
(`dict[str, Section]`, e.g. per model). `Config.resolve(profile, globals())` takes the profile's
values (`Config.profiles`), puts every parameter of the notebook's parameters cell that is not
None on top — a dict given for a section updates it key by key — and builds the typed config,
refusing an unknown name, a value of the wrong type or out of range with a message naming the
parameter by its path (`finetune.lr must be a number > 0 (got -1.0)`). `check_injected` refuses
a parameter papermill injected that the notebook does not declare.

    @dataclass(frozen=True)
    class FineTune(Section):
        lr: float = param("peak learning rate", gt=0)
        max_steps: Steps = param("optimizer steps ('500it', '2ep')")
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from ..core.env import runs_root
from ..core.steps import parse_steps

PROFILES = ("smoke", "book", "paper")
MACHINE_PARAMETERS = ("data_dir", "runs_dir", "device", "executor")  # not part of any profile


class Steps:
    """The type of a step count: an int, `"500it"` or `"2ep"` (see `lmcnb.core.steps`)."""


def param(help: str, *, default: Any = dataclasses.MISSING, min: float | None = None,
          gt: float | None = None, max: float | None = None, lt: float | None = None,
          keys: tuple[str, ...] | None = None) -> Any:
    """A field of a config or section: its `help` text, and the range its numbers must lie in
    (`min` ≤ x, `gt` < x, x ≤ `max`, x < `lt`; for lists and dicts, every number in them).
    `keys` are the valid keys of a per-name dict."""
    meta = {"help": help, "min": min, "gt": gt, "max": max, "lt": lt, "keys": keys}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclasses.dataclass(frozen=True)
class Section:
    """A group of parameters: built from a mapping with every field checked (`build`); a subclass
    may add checks across its fields in `check(path)`."""

    @classmethod
    def build(cls, values: Any, path: str = "") -> Section:
        """The section holding `values` (a mapping of its field names), checked."""
        if isinstance(values, cls):
            return values
        if not isinstance(values, Mapping):
            raise ValueError(f"{path or cls.__name__} must be a mapping of {', '.join(names(cls))}"
                             f" (got {values!r})")
        unknown = sorted(set(values) - set(names(cls)))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in {path or cls.__name__}; valid: "
                             f"{sorted(names(cls))}")
        hints = typing.get_type_hints(cls)
        built = {}
        for f in dataclasses.fields(cls):
            where = f"{path}.{f.name}" if path else f.name
            if f.name not in values:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ValueError(f"{where} is not given (it has no default): {_help(f)}")
                continue
            built[f.name] = _convert(where, values[f.name], hints[f.name], f.metadata)
        section = cls(**built)
        section.check(path)
        return section

    def check(self, path: str) -> None:
        """Checks across fields (none by default); raise ValueError naming `path`."""

    def as_dict(self) -> dict[str, Any]:
        """The section's values as plain data (sections as dicts)."""
        return _plain(self)


def names(cls: type) -> list[str]:
    """The field names of a section or config class."""
    return [f.name for f in dataclasses.fields(cls)]


def help_table(cls: type) -> list[dict[str, str]]:
    """One row per field: its name, type and help (nested sections as `section.field`)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        rows.append({"parameter": f.name, "type": _describe(hints[f.name], f.metadata),
                     "help": _help(f)})
    return rows


def profile_rows(config: Section) -> list[dict[str, str]]:
    """The values of a resolved config, one row per leaf (`train.lenet5.max_steps`), machine
    parameters left out: what a chapter's profile section shows."""
    rows = []

    def walk(path: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, v in value.items():
                walk(f"{path}.{key}", v)
        else:
            rows.append({"parameter": path, "value": repr(value)})

    for key, value in config.as_dict().items():
        if key not in MACHINE_PARAMETERS:
            walk(key, value)
    return rows


def _help(f: dataclasses.Field) -> str:
    return f.metadata.get("help", "")


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _describe(hint: Any, meta: Mapping[str, Any] | None = None) -> str:
    """A type as a reader says it ("an integer >= 1", "a list, each a step count"), with the
    range of its numbers."""
    meta = meta or {}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "None"
    if hint is bool:
        return "True or False"
    if hint in (int, float, Steps):
        kind = {int: "an integer", float: "a number",
                Steps: "a step count (an int, '500it' or '2ep')"}[hint]
        bounds = [f"{op} {meta[k]}" for k, op in (("min", ">="), ("gt", ">"), ("max", "<="),
                                                   ("lt", "<")) if meta.get(k) is not None]
        return kind + (" " + " and ".join(bounds) if bounds else "")
    if hint is str:
        return "a string"
    if isinstance(hint, type) and issubclass(hint, Section):
        return f"a mapping of {', '.join(names(hint))}"
    if origin is Literal:
        return " or ".join(map(repr, args))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a, meta) for a in args)
    if origin in (list, tuple):
        return f"a list, each {_describe(args[0], meta)}"
    if origin is dict:
        return f"a mapping of names, each {_describe(args[1], meta)}"
    return getattr(hint, "__name__", str(hint))


def _convert(path: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
    """`value` checked against the type `hint` and the range in `meta`; sections built."""
    out = _typed(path, value, hint, meta)
    if out is _WRONG:
        raise ValueError(f"{path} must be {_describe(hint, meta)} (got {value!r})")
    return out


_WRONG = object()


def _in_range(x: float, meta: Mapping[str, Any]) -> bool:
    return not any((meta.get("min") is not None and x < meta["min"],
                    meta.get("gt") is not None and x <= meta["gt"],
                    meta.get("max") is not None and x > meta["max"],
                    meta.get("lt") is not None and x >= meta["lt"]))


def _typed(path: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> Any:
    """The converted value, or `_WRONG` if it is not of type `hint` (sections raise their own
    errors, which name their fields)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if isinstance(value, (list, tuple, Mapping)):  # a container: its one matching alternative
            kinds = (list, tuple) if isinstance(value, (list, tuple)) else (dict,)
            shaped = [a for a in args if typing.get_origin(a) in kinds
                      or (kinds == (dict,) and _section_type(a) is not None)]
            if len(shaped) == 1:
                return _typed(path, value, shaped[0], meta)
        for arg in args:  # the first type that takes the value
            out = _typed(path, value, arg, meta)
            if out is not _WRONG:
                return out
        return _WRONG
    if hint is type(None):
        return None if value is None else _WRONG
    if hint is bool:
        return value if isinstance(value, bool) else _WRONG
    if hint in (int, float):
        ok = (not isinstance(value, bool) and isinstance(value, (int, float) if hint is float
                                                         else int))
        if not ok or value != value or not _in_range(value, meta):  # NaN is never in range
            return _WRONG
        return value  # an int stays an int (a run's identity keeps 3, not 3.0)
    if hint is str:
        return value if isinstance(value, str) else _WRONG
    if hint is Steps:
        try:
            steps = parse_steps(value, 1)
        except ValueError:
            return _WRONG
        return value if _in_range(steps, meta) else _WRONG
    if origin is Literal:
        return value if any(value == a and type(value) is type(a) for a in args) else _WRONG
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint.build(value, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _WRONG
        items = [_convert(f"{path}[{i}]", v, args[0], meta) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            return _WRONG
        keys = meta.get("keys")
        bad = sorted(set(value) - set(keys)) if keys else []
        if bad:
            raise ValueError(f"unknown key(s) {bad} in {path}; valid: {sorted(keys)}")
        return {k: _convert(f"{path}.{k}", v, args[1], meta) for k, v in value.items()}
    if hint is Any:
        return value
    raise TypeError(f"{path}: parameters of type {hint!r} are not supported")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChapterConfig(Section):
    """A chapter's parameters: its profile, and the machine's parameters, which no profile sets
    (where data and runs live, the device, the executor). Subclasses add the chapter's own fields
    and set `profiles` (name → values of the chapter's fields) and `aliases` (another name a user
    may know → `"field"` or `"section.field"`)."""

    profiles: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    aliases: ClassVar[Mapping[str, str]] = {}

    profile: str = param("the profile whose values are the defaults", default="book")
    data_dir: str | None = param("data root; else $LMCNB_DATA, else ./data", default=None)
    runs_dir: str | None = param("runs folder; else $LMCNB_RUNS, else ./runs", default=None)
    device: str | None = param("'cpu' | 'cuda' | 'mps' | 'auto' (the best available)",
                               default=None)
    executor: str = param("where runs train: 'serial', 'local[:N]', a scheduler address or file",
                          default="serial")

    @classmethod
    def resolve(cls, profile: str, namespace: Mapping[str, Any] | None = None, /,
                **given: Any) -> ChapterConfig:
        """The config of `profile` with every parameter given that is not None on top: the names
        of `namespace` (a notebook's `globals()`: its parameters cell) and keyword arguments.

        Every profile key must be a field and be declared in `namespace`; a dict given for a
        section (or a per-name dict) updates it key by key, nested sections too; any other value
        replaces it. Machine parameters are checked too: the device must exist on this machine,
        the executor must be one lmcnb knows.
        """
        if profile not in cls.profiles:
            raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(cls.profiles)}")
        values = copy.deepcopy(dict(cls.profiles[profile]))
        own = set(names(cls)) - set(MACHINE_PARAMETERS) - {"profile"}
        required = {f.name for f in dataclasses.fields(cls) if f.name in own
                    and f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        if not required <= set(values) <= own:
            raise ValueError(f"profile {profile!r} of {cls.__name__}: keys "
                             f"{sorted(set(values) - own)} are not fields, fields "
                             f"{sorted(required - set(values))} have no value")
        accepted = own | set(MACHINE_PARAMETERS) | set(cls.aliases)
        if namespace is not None:
            undeclared = own - set(namespace)
            if undeclared:
                raise ValueError(f"parameter(s) {sorted(undeclared)} are not declared in the "
                                 "parameters cell")
            given = {**{k: namespace[k] for k in accepted if k in namespace}, **given}
        unknown = set(given) - accepted
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)}; valid: "
                             f"{sorted(own | set(MACHINE_PARAMETERS))}")
        hints = typing.get_type_hints(cls)
        for name, value in given.items():
            if value is None or name in MACHINE_PARAMETERS:
                continue
            field, _, key = cls.aliases.get(name, name).partition(".")
            if key:
                value = {key: value}
            if isinstance(values.get(field), dict) and isinstance(value, Mapping):
                _merge(field, values[field], value, hints[field])
            else:
                values[field] = value
        machine = {k: given[k] for k in MACHINE_PARAMETERS if given.get(k) is not None}
        config = cls.build({**values, **machine, "profile": profile})
        return dataclasses.replace(config, runs_dir=str(runs_root(config.runs_dir)))

    def check(self, path: str) -> None:
        """The machine's parameters: a device this machine has, an executor lmcnb knows."""
        from ..core.device import pick_device
        from ..experiments.executors import get_executor

        if self.device not in (None, "auto"):
            pick_device(self.device)
        get_executor(self.executor)


def _merge(path: str, section: dict[str, Any], update: Mapping[str, Any], hint: Any) -> None:
    """Update `section` in place, key by key (a nested section too); unknown keys are refused."""
    sub = _section_type(hint)
    valid = (names(sub) if sub is not None else None)
    if valid is not None:
        bad = sorted(set(update) - set(valid))
        if bad:
            raise ValueError(f"unknown key(s) {bad} in {path}; valid: {sorted(valid)}")
    hints = typing.get_type_hints(sub) if sub is not None else {}
    per_name = _per_name_type(hint)
    for key, value in update.items():
        inner = hints.get(key, per_name)
        if isinstance(section.get(key), dict) and isinstance(value, Mapping):
            _merge(f"{path}.{key}", section[key], value, inner)
        else:
            section[key] = value


def _alternatives(hint: Any) -> tuple[Any, ...]:
    """The types a hint allows: its members if it is a union, else itself."""
    union = typing.get_origin(hint) in (Union, types.UnionType)
    return typing.get_args(hint) if union else (hint,)


def _section_type(hint: Any) -> type[Section] | None:
    """The Section class among a hint's types, if any."""
    for t in _alternatives(hint):
        if isinstance(t, type) and issubclass(t, Section):
            return t
    return None


def _per_name_type(hint: Any) -> Any:
    """The value type of the `dict[str, X]` among a hint's types, if any."""
    for t in _alternatives(hint):
        if typing.get_origin(t) is dict:
            return typing.get_args(t)[1]
    return None


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


def declared_in(notebook: str | Path) -> set[str]:
    """The names a notebook's `parameters` cell assigns."""
    import ast
    import json

    cells = json.loads(Path(notebook).read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {t.id for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}
