"""Execute the chapters with papermill and build the book.

    python -m lmcnb.book.execute --profile book --out _build/executed --build   # the published book
    python -m lmcnb.book.execute --profile smoke --out _build/smoke              # CI: execute only
    python -m lmcnb.book.execute --out _build/smoke --no-execute --build   # from executed copies

Jupyter Book cannot pass parameters, so the chapters are executed here first and the book is built
from the executed copies (`execute_notebooks: "off"` in _config.yml): the pages, `_config.yml`,
`_toc.yml`, the executed chapters and the widget/MathJax JavaScript from npm are staged in
`_build/site`, which Jupyter Book turns into `_build/html` with warnings treated as errors.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..core.files import atomic_write
from ..experiments.sweep import check_names, notebook_parameters

REPO = Path(__file__).resolve().parents[2]


CHAPTERS = ("cnn_baselines", "gpt_shakespeare", "ptb_transformer", "vit_platon",
            "independent_inits", "measure_your_own")


SITE = REPO / "_build" / "site"


HTML = REPO / "_build" / "html"


# (folder in node_modules, folder under <html>/vendor, files or folders copied from it)
VENDOR = (
    ("requirejs", ".", ("require.js",)),
    ("@jupyter-widgets/html-manager/dist", "html-manager",
     # the fonts load beside the script
     ("embed-amd.js", "*.woff2", "*.woff", "*.ttf", "*.eot", "*.svg")),
    ("mathjax/es5", "mathjax",
     ("tex-mml-chtml.js", "input/tex/extensions", "input/mml/extensions", "output/chtml", "ui",
      "a11y", "sre")),
)


def execute(chapter: str, out_dir: Path, profile: str, **parameters) -> Path:
    """Run notebooks/<chapter>.ipynb at `profile` into `out_dir`; returns the executed copy."""
    if chapter not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; valid: {', '.join(CHAPTERS)}")
    notebook = REPO / "notebooks" / f"{chapter}.ipynb"
    check_names(notebook, ["profile", *parameters])
    return execute_page(notebook, out_dir / f"{chapter}.ipynb",
                        {"profile": profile, **parameters})


def execute_page(notebook: Path, out: Path, parameters: dict) -> Path:
    """Execute `notebook` with papermill into `out`, as a page of the book; returns `out`.

    The kernel gets `LMCNB_LIVE=0`, so α-sliders are built in their static (kernel-free) form,
    and `LMCNB_PROGRESS=0` (`lmcnb.core.progress`), so progress bars leave nothing on the page. The
    cell papermill injects after the parameters cell is tagged `hide-cell`: the page shows it
    collapsed, like the parameters cell, below the chapter's title.
    """
    import nbformat
    import papermill

    out.parent.mkdir(parents=True, exist_ok=True)
    os.environ.update(LMCNB_LIVE="0", LMCNB_PROGRESS="0")
    papermill.execute_notebook(str(notebook), str(out), parameters=parameters, cwd=str(REPO),
                               progress_bar=False)
    executed = nbformat.read(out, as_version=4)
    for cell in executed.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            cell.metadata["tags"] = [*tags, "hide-cell"]
    atomic_write(out, lambda tmp: nbformat.write(executed, str(tmp)))
    return out


def toc_chapters(toc: Path = REPO / "_toc.yml") -> list[str]:
    """The chapter notebooks `_toc.yml` lists (its `notebooks/<name>` entries), in order."""
    import yaml

    def files(node) -> list[str]:
        if isinstance(node, dict):
            own = [node["file"]] if "file" in node else []
            return own + [f for v in node.values() for f in files(v)]
        if isinstance(node, list):
            return [f for v in node for f in files(v)]
        return []

    listed = files(yaml.safe_load(toc.read_text()))
    return [f.split("/", 1)[1] for f in listed if f.startswith("notebooks/")]


def install_js() -> Path:
    """node_modules from package.json/package-lock.json (`npm ci`), unless already installed."""
    modules = REPO / "node_modules"
    lock = REPO / "package-lock.json"
    installed = modules / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the book ships the widget and MathJax JavaScript from npm packages: "
                           "install Node.js with npm (e.g. apt-get install -y npm), then re-run")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=REPO, check=True)
    return modules


def copy_vendor(dest: Path, modules: Path) -> None:
    """Copy the JavaScript the pages load (see VENDOR) from `modules` into `dest`."""
    for package, target, entries in VENDOR:
        root = modules / package
        for pattern in entries:
            sources = sorted(root.glob(pattern))
            if not sources:
                raise FileNotFoundError(f"{root / pattern} is missing: is node_modules complete? "
                                        "(npm ci)")
            for src in sources:
                out = dest / target / src.relative_to(root)
                if src.is_dir():
                    shutil.copytree(src, out, dirs_exist_ok=True)
                else:
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, out)


def stage(executed: Path) -> Path:
    """Assemble the book's source tree in `_build/site`: pages, configuration, executed chapters,
    JS."""
    chapters = toc_chapters()
    if sorted(chapters) != sorted(CHAPTERS):
        raise ValueError(f"_toc.yml lists chapters {chapters} but lmcnb.book.execute.CHAPTERS is "
                         f"{list(CHAPTERS)}: "
                         "list every executed chapter in both")
    missing = [c for c in chapters if not (executed / f"{c}.ipynb").exists()]
    if missing:
        raise FileNotFoundError(f"no executed copy of {missing} in {executed}: run `python -m "
                                f"lmcnb.book.execute --profile book --out {executed}` first")
    shutil.rmtree(SITE, ignore_errors=True)
    SITE.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO / name, SITE / name)
    shutil.copytree(REPO / "book", SITE / "book")
    (SITE / "notebooks").mkdir()
    for chapter in chapters:
        shutil.copy2(executed / f"{chapter}.ipynb", SITE / "notebooks" / f"{chapter}.ipynb")
    copy_vendor(SITE / "_extra" / "vendor", install_js())
    return SITE


def build(executed: Path) -> Path:
    """Build the HTML book from the executed chapters in `executed`; warnings are errors.
    Returns `_build/html`."""
    site = stage(executed)
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = str(jupyter_book) if jupyter_book.exists() else shutil.which("jupyter-book")
    if command is None:
        raise RuntimeError("jupyter-book is not installed (pip install -r requirements.txt)")
    shutil.rmtree(HTML, ignore_errors=True)
    subprocess.run([command, "build", str(site), "--path-output", str(REPO), "--all",
                    "--warningiserror",
                    "--keep-going"], check=True)
    return HTML


def executor_of(chapter: str, executor: str | None) -> dict[str, str]:
    """`{"executor": executor}` for a chapter whose parameters name one, else nothing."""
    takes = "executor" in notebook_parameters(REPO / "notebooks" / f"{chapter}.ipynb")
    return {"executor": executor} if executor is not None and takes else {}


def main(argv: list[str] | None = None) -> None:
    """`python -m lmcnb.book.execute`: execute chapters, then build the book."""
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="book", choices=("smoke", "book", "paper"))
    ap.add_argument("--out", type=Path, required=True, help="folder of the executed notebooks")
    ap.add_argument("--only", nargs="*", default=list(CHAPTERS), help="chapters to run")
    ap.add_argument("--executor", help="where runs train, for every chapter that takes an "
                    "executor (pages that train nothing in parallel have none)")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "JSON"),
                    help="extra parameter, value as JSON (e.g. -p n_inits 3)")
    ap.add_argument("--build", action="store_true",
                    help="then build the book from --out into _build/html")
    ap.add_argument("--no-execute", action="store_true",
                    help="skip execution (use the copies already in --out)")
    args = ap.parse_args(argv)
    params = {k: json.loads(v) for k, v in args.param}
    chapters = [] if args.no_execute else args.only
    for chapter in chapters:  # every chapter's names are checked before the first one runs
        if chapter not in CHAPTERS:
            ap.error(f"unknown chapter {chapter!r}; valid: {', '.join(CHAPTERS)}")
        try:
            check_names(REPO / "notebooks" / f"{chapter}.ipynb", list(params))
        except ValueError as exc:
            ap.error(str(exc))
    for chapter in chapters:
        start = time.time()
        execute(chapter, args.out, args.profile, **params, **executor_of(chapter, args.executor))
        print(f"{chapter}: executed at profile {args.profile!r} in {time.time() - start:.0f} s",
              flush=True)
    if args.build:
        start = time.time()
        html = build(args.out.resolve())
        print(f"book built into {html} in {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
