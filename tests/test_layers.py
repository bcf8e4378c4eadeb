"""The package's folders are layers and imports only run downward (lazy imports inside functions
included): core → data → models, prune → train → lmc → experiments → book → measure → chapters.
A sibling folder of the same rank (models, prune) is not imported either, and no module is on an
import circle. The check reads the source (an `ast` walk), so it needs nothing imported."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "lmcnb"
RANK = {"core": 0, "data": 1, "models": 2, "prune": 2, "train": 3, "lmc": 4, "experiments": 5,
        "book": 6, "measure": 7, "chapters": 8}
TOP = 9  # lmcnb/__init__.py, __main__.py and _compat.py: the package's own entry points


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted name → file of every module of the package."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target.startswith("lmcnb") and target not in (name, "lmcnb"):
                found.add(target)
    return found


def layer(name: str) -> tuple[str, int]:
    parts = name.split(".")
    top = parts[1] if len(parts) > 1 else ""
    return top, RANK.get(top, TOP)


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    mods = modules(root)
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """`a imports b` for every import of a higher layer, or of a sibling folder of the same rank."""
    bad = []
    for a, targets in edges.items():
        (folder_a, rank_a) = layer(a)
        for b in targets:
            folder_b, rank_b = layer(b)
            if rank_b > rank_a or (rank_b == rank_a and folder_b != folder_a and rank_a != TOP):
                bad.append(f"{a} imports {b}")
    return sorted(bad)


def circles(edges: dict[str, set[str]]) -> list[str]:
    """Modules from which an import path leads back to themselves."""
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen
    return sorted(m for m in edges if m in reach(m))


def test_every_folder_has_a_rank():
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders <= set(RANK), f"folders without a layer: {sorted(folders - set(RANK))}"


def test_imports_only_run_downward():
    assert upward_imports(graph()) == []


def test_no_module_is_on_an_import_circle():
    assert circles(graph()) == []


def test_the_check_finds_an_upward_import(tmp_path):
    """The checks are real: a core module that imports the chapters, and two that import each
    other, are found."""
    pkg = tmp_path / "lmcnb"
    for folder in ("core", "chapters"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("def f():\n    from ..chapters import b\n")
    (pkg / "chapters" / "b.py").write_text("from ..core import a\n")
    edges = graph(pkg)
    assert "lmcnb.core.a imports lmcnb.chapters.b" in upward_imports(edges)
    assert {"lmcnb.chapters.b", "lmcnb.core.a"} <= set(circles(edges))
