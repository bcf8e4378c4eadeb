"""Import time of `lmcnb.measure` and of every chapter's first cell, against `import torch`.

    python benchmarks/import_time.py                  # best of 5 fresh interpreters each
    python benchmarks/import_time.py --detail         # + `-X importtime`: the top offenders

Each target is imported in a fresh interpreter (`python -c`), its wall time the best of
`--repeats` runs, the targets interleaved round by round (the machine is shared). A chapter's
first cell is the imports its notebook runs before any work: those of its set-up cell and of its
first cell (the top-level `import` statements, as written in the notebook). Target: at most 1.5×
`import torch`. With `--detail`, `-X importtime` of each target: the packages that take the most
time of their own, and the module that first imported each.
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TARGET = 1.5


def first_cell_imports(notebook: Path) -> str:
    """The top-level imports of a notebook's code cells up to its first cell that is neither the
    parameters nor a hidden set-up cell."""
    lines = []
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        source = re.sub(r"^(\s*)[!%].*$", r"\1pass", source, flags=re.M)  # IPython shell lines
        lines += [ast.unparse(node) for node in ast.parse(source).body
                  if isinstance(node, (ast.Import, ast.ImportFrom))]
        if not set(cell.get("metadata", {}).get("tags", [])) & {"parameters", "hide-cell"}:
            break
    return "\n".join(lines)


def targets() -> dict[str, str]:
    out = {"torch": "import torch", "lmcnb.measure": "import lmcnb.measure"}
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        out[f"{nb.stem} first cell"] = first_cell_imports(nb)
    return out


def seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())
    return time.perf_counter() - start


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(NOTEBOOKS.parent)}


def importtime(code: str) -> list[tuple[int, str, int, int]]:
    """`-X importtime` of `code`: (depth, module, own µs, cumulative µs) in the order printed
    (a module after the modules it imported)."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=True,
                         capture_output=True, text=True, env=_env()).stderr
    rows = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((len(m.group(3)) // 2, m.group(4), int(m.group(1)), int(m.group(2))))
    return rows


def offenders(rows: list[tuple[int, str, int, int]], top: int) -> list[str]:
    """The `top` packages with the most time of their own, each with the module that first
    imported it (the nearest enclosing lmcnb module, else the outermost)."""
    own: dict[str, int] = defaultdict(int)
    via: dict[str, str] = {}
    for i, (depth, name, us, _) in enumerate(rows):
        package = name.split(".")[0]
        own[package] += us
        if package not in via:
            parents, d = [], depth
            for later_depth, later, _, _ in rows[i + 1:]:  # a parent prints after its children
                if later_depth < d:
                    parents.append(later)
                    d = later_depth
            via[package] = next((p for p in parents if p.startswith("lmcnb")),
                                parents[-1] if parents else "-")
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return [f"{pkg:<22} {us / 1e6:6.2f} s   first imported by {via[pkg]}" for pkg, us in ranked]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--detail", action="store_true", help="also -X importtime offenders")
    ap.add_argument("--top", type=int, default=10)
    args = ap.parse_args()
    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    code = targets()
    best = dict.fromkeys(code, float("inf"))
    for _ in range(args.repeats):
        for name, c in code.items():
            best[name] = min(best[name], seconds(c))
    torch_s = best["torch"]
    print(f"\n| import | best of {args.repeats} | × `import torch` | target ≤ {TARGET}× |")
    print("|---|---:|---:|---|")
    for name, s in best.items():
        ratio = s / torch_s
        verdict = "" if name == "torch" else ("met" if ratio <= TARGET else "NOT met")
        print(f"| {name} | {s:.2f} s | {ratio:.2f}× | {verdict} |")
    if args.detail:
        for name, c in code.items():
            if name != "torch":
                print(f"\n{name} (`{'; '.join(c.splitlines())}`):")
                print("\n".join(f"  {line}" for line in offenders(importtime(c), args.top)))
    print(f"\nload average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
