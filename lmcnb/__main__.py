"""The `lmcnb` command: `lmcnb sweep ...` (parameter grids on Dask) and `lmcnb data ...`."""
from __future__ import annotations

import sys
from collections.abc import Sequence

COMMANDS = {"sweep": "run a chapter notebook over a grid of parameters (lmcnb sweep --help)",
            "data": "verify datasets in place, or accept files that differ on purpose"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run `lmcnb <command> ...`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        usage = "\n".join(f"  lmcnb {name:6s} {text}" for name, text in COMMANDS.items())
        print(f"usage:\n{usage}", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    if argv[0] == "sweep":
        from .experiments.sweep import main as sweep_main

        return sweep_main(argv[1:])
    from .data.cli import main as data_main

    return data_main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
