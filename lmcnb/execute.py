"""Execute the chapter notebooks with papermill: `python -m lmcnb.execute --profile smoke --out DIR`.

Jupyter Book cannot pass parameters, so the published chapters are executed here first and the
book is built from the executed copies.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHAPTERS = ("cnn_baselines",)


def execute(chapter: str, out_dir: Path, profile: str, **parameters) -> Path:
    """Run notebooks/<chapter>.ipynb at `profile` into `out_dir`; returns the executed copy."""
    import papermill

    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; valid: {', '.join(CHAPTERS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{chapter}.ipynb"
    papermill.execute_notebook(str(REPO / "notebooks" / f"{chapter}.ipynb"), str(out),
                               parameters={"profile": profile, **parameters}, cwd=str(REPO),
                               progress_bar=False)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--profile", default="book", choices=("smoke", "book", "paper"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--only", nargs="*", default=list(CHAPTERS), help="chapters to run")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "JSON"),
                    help="extra parameter, value as JSON (e.g. -p n_inits 3)")
    args = ap.parse_args(argv)
    params = {k: json.loads(v) for k, v in args.param}
    for chapter in args.only:
        start = time.time()
        execute(chapter, args.out, args.profile, **params)
        print(f"{chapter}: executed at profile {args.profile!r} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
