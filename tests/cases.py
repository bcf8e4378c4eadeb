"""Issue 20's 55 bad-input cases, re-tried through lmcnb's public entry points at `smoke`.

    python tests/cases.py [--only SUBSTRING] [--out table.md]

Each case runs in a subprocess of its own (a timeout is a hang), with a fresh runs folder
(`$LMCNB_RUNS` and the chapter's `runs_dir`), and expects one of three things: `refused` (an
error naming what is wrong, before anything trained), `repaired` (a damaged cached file re-made,
the notebook's output naming it) or `result` (a correct result). The Markdown table says what
happens now; the exit status is 1 if any row is FAIL. Not a pytest module (pytest collects
`test_*.py`); the cached-file cases copy one ViT runs folder, built at `smoke` on first use.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
TIMEOUT, REPAIR_TIMEOUT = 120.0, 240.0
Folder = Callable[[Path], list[str]]  # the command of a case, given its folder


@dataclass
class Case:
    """One bad input: how to run it (`argv` of the case's folder) and what it must do."""

    name: str
    surface: str
    input: str
    expect: str  # "refused" | "repaired" | "result"
    argv: Folder
    names: tuple[str, ...] = ()  # what the message must name
    forbid: tuple[str, ...] = ()  # what it must not say
    check: Callable[[str], bool] | None = None  # a "result" row's test of its message
    prepare: Callable[[Path], str | None] | None = None  # damages; returns a path to be named
    env: dict[str, str] = field(default_factory=dict)
    clean: bool = False  # no empty folder may be left under the case's folder
    max_seconds: float | None = None
    timeout: float = TIMEOUT


# -- the child programs --------------------------------------------------------------------------
MEASURE = """
import json, math, sys
import torch
from torch import nn
from lmcnb.measure import measure
from lmcnb.models.cnn import LeNet5

def lenet(seed):
    torch.manual_seed(seed)
    return LeNet5()

def spoiled(t, value=math.nan):
    t.view(-1)[5] = value
    return t

def with_nan(net, name):
    spoiled(net.state_dict()[name])
    return net

class Signed(nn.Module):
    # logits (W x) / s: finite at both ends (s = 1, s = -1), not at the midpoint (s = 0)
    def __init__(self, s):
        super().__init__()
        torch.manual_seed(0)
        self.linear, self.s = nn.Linear(784, 10), nn.Parameter(torch.tensor(s))
    def forward(self, x):
        return self.linear(x.flatten(1)) / self.s

def show(m):
    r = m.barriers.iloc[0]
    print("RESULT: " + json.dumps(f"loss_barrier={r.loss_barrier:.3g}, error_barrier="
          f"{r.error_barrier:.3g}, stable={bool(r.stable)}, nonfinite_alpha={r.nonfinite_alpha}"))

g = torch.Generator().manual_seed(0)
x, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
try:
    CALL
except Exception as exc:
    print("ERROR: " + json.dumps(f"{type(exc).__name__}: {exc}"))
    sys.exit(1)
"""

PAPERMILL = """
import json, sys
import papermill
from papermill.exceptions import PapermillExecutionError
notebook, out, cwd, parameters = sys.argv[1:5]
try:
    papermill.execute_notebook(notebook, out, parameters=json.loads(parameters), cwd=cwd,
                               progress_bar=False)
except PapermillExecutionError as exc:
    print("ERROR: " + json.dumps(f"{exc.ename}: {exc.evalue}"))
    sys.exit(1)
print("RESULT: " + json.dumps("executed every cell"))
"""


def measure(call: str) -> Folder:
    """`python -c` of `call` (a `measure(...)` expression) after the prelude above."""
    return lambda folder: [sys.executable, "-c", MEASURE.replace("CALL", call)]


def papermill(chapter: str, parameters: dict) -> Folder:
    """papermill's `execute_notebook` of a chapter at `smoke`, runs in the case's folder."""
    def argv(folder: Path) -> list[str]:
        given = {"profile": "smoke", "runs_dir": str(folder / "runs"), **parameters}
        return [sys.executable, "-c", PAPERMILL, str(NOTEBOOKS / f"{chapter}.ipynb"),
                str(folder / "out.ipynb"), str(REPO), json.dumps(given)]
    return argv


def execute(chapter: str, *pairs: str) -> Folder:
    """`python -m lmcnb.book.execute --profile smoke` of one chapter with `-p NAME JSON` pairs."""
    extra = [arg for i in range(0, len(pairs), 2) for arg in ("-p", *pairs[i:i + 2])]
    return lambda folder: [sys.executable, "-m", "lmcnb.book.execute", "--profile", "smoke",
                           "--out", str(folder / "out"), "--only", chapter, *extra]


def sweep(*args: str) -> Folder:
    """`lmcnb sweep` of the CNN chapter (LeNet5 at smoke, unless the case says otherwise)."""
    return lambda folder: [sys.executable, "-m", "lmcnb", "sweep",
                           str(NOTEBOOKS / "cnn_baselines.ipynb"), *args,
                           "--out", str(folder / "sweep")]


def chapter(name: str, chapter_name: str, parameters: dict, names: tuple[str, ...],
            **kw) -> Case:
    """A chapter parameter refused through papermill."""
    shown = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
    return Case(name, f"papermill {chapter_name}", shown, "refused",
                papermill(chapter_name, parameters), names, **kw)


# -- damage ----------------------------------------------------------------------------------------
def _masks(runs: Path) -> tuple[Path, Path]:
    """The PLATON mask (the nonzeros of its run's final weights) and the random control beside
    it, in a ViT chapter's runs folder."""
    from safetensors.numpy import load_file

    files = sorted(runs.glob("train/*/mask-*.safetensors"))
    weights = load_file(max((files[0].parent / "ckpt").glob("step-*.safetensors")))
    platon = [f for f in files if all(((weights["/model" + k[len("/mask"):]] != 0) == m).all()
                                      for k, m in load_file(f).items())]
    if len(files) != 2 or len(platon) != 1:
        raise RuntimeError(f"expected a PLATON mask and its random control, found {files}")
    return platon[0], next(f for f in files if f != platon[0])


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_platon(folder: Path) -> str:
    path = _masks(folder / "runs")[0]
    flip_last_byte(path)
    return str(path)


def damage_random(folder: Path) -> str:
    platon, control = _masks(folder / "runs")
    shutil.copyfile(platon, control)  # another mask under the control's name
    return str(control)


def stray_log_line(folder: Path) -> str:
    log = _masks(folder / "runs")[0].parent / "log.csv"
    with open(log, "a") as fh:
        fh.write("a stray line\n")
    return str(log)


def pretrained_folder(folder: Path) -> Path:
    (published,) = (folder / "runs" / "pretrained").iterdir()
    return published


def remove_pretrained(folder: Path) -> str:
    published = pretrained_folder(folder)
    shutil.rmtree(published)
    return str(published)


def damage_pretrained(folder: Path) -> str:
    published = pretrained_folder(folder)
    flip_last_byte(published / "model.safetensors")
    return str(published)


def empty_data(folder: Path) -> None:
    (folder / "data").mkdir()


def damaged_mnist(folder: Path) -> str:
    """A data root like $LMCNB_DATA (linked), its MNIST test labels cut to half."""
    shared, root = Path(os.environ["LMCNB_DATA"]), folder / "data"
    (root / "mnist").mkdir(parents=True)
    for item in shared.iterdir():
        if item.name != "mnist":
            (root / item.name).symlink_to(item)
    for item in (shared / "mnist").iterdir():
        (root / "mnist" / item.name).symlink_to(item)
    cut = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    data = cut.read_bytes()
    cut.unlink()
    cut.write_bytes(data[: len(data) // 2])
    return str(cut)


def repair(name: str, shown: str, damage: Callable[[Path], str]) -> Case:
    """A damaged file in a copy of the cached ViT runs, the chapter executed again."""
    return Case(name, "papermill vit_platon (cached)", shown, "repaired",
                papermill("vit_platon", {}), prepare=damage, timeout=REPAIR_TIMEOUT)


# -- the cases -------------------------------------------------------------------------------------
def _result(*parts: str) -> Callable[[str], bool]:
    return lambda message: all(p in message for p in parts)


DATA = "[(x, y)], n_alpha=3, progress=False"
MISSING_SCHEDULER = "/nonexistent/scheduler.json"
CASES = [
    # measure(): both ends and every batch checked before the first α
    Case("m-nan-weight-b", "measure", "b with one NaN in features.0.weight", "refused",
         measure(f"show(measure(lenet(0), with_nan(lenet(1), 'features.0.weight'), {DATA}))"),
         ("b", "features.0.weight"), forbid=("stable=True",)),
    Case("m-inf-input", "measure", "an inf pixel in batch 1 of two", "refused",
         measure("show(measure(lenet(0), lenet(1), [(x[:32], y[:32]), "
                 "(spoiled(x[32:].clone(), math.inf), y[32:])], progress=False))"),
         ("batch 1", "non-finite")),
    Case("m-mispaired-32-16", "measure", "[(x[:32], y[:16]), (x[32:48], y[32:48])]", "refused",
         measure("show(measure(lenet(0), lenet(1), [(x[:32], y[:16]), (x[32:48], y[32:48])], "
                 "progress=False))"), ("batch 0", "32", "16")),
    Case("m-mispaired-16-10", "measure", "[(x[:16], y[:10])]", "refused",
         measure("show(measure(lenet(0), lenet(1), [(x[:16], y[:10])], progress=False))"),
         ("batch 0", "16", "10")),
    Case("m-target-shape", "measure", "targets of shape (16, 2) for a 10-class output", "refused",
         measure("show(measure(lenet(0), lenet(1), [(x[:16], y[:16, None].repeat(1, 2))], "
                 "progress=False))"), ("batch 0", "target")),
    Case("m-empty-data", "measure", "data=[]", "refused",
         measure("show(measure(lenet(0), lenet(1), [], progress=False))"), ("empty",)),
    Case("m-different-arch", "measure", "a LeNet5 and a Flatten-Linear", "refused",
         measure("show(measure(lenet(0), nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), "
                 f"{DATA}))"), ("different architectures",)),
    Case("m-missing-folder", "measure", "a, b = two folders that do not exist", "refused",
         measure(f"show(measure('/nonexistent/model-a', '/nonexistent/model-b', {DATA}))"),
         ("/nonexistent/model-a", "missing")),
    Case("m-state-dicts", "measure", "two state dicts, no model=", "refused",
         measure(f"show(measure(lenet(0).state_dict(), lenet(1).state_dict(), {DATA}))"),
         ("model=",)),
    Case("m-cuda", "measure", "device='cuda' (no GPU here)", "refused",
         measure(f"show(measure(lenet(0), lenet(1), {DATA}, device='cuda'))"),
         ("device", "cuda")),
    Case("m-n_alpha-1", "measure", "n_alpha=1", "refused",
         measure("show(measure(lenet(0), lenet(1), [(x, y)], n_alpha=1, progress=False))"),
         ("n_alpha",)),
    Case("m-same-model", "measure", "a and b the same network", "result",
         measure(f"show(measure(lenet(0), lenet(0), {DATA}))"),
         check=_result("error_barrier=0,", "stable=True")),
    Case("m-nonfinite-midpoint", "measure", "ends finite, loss not finite at α = 0.5", "result",
         measure("show(measure(Signed(1.0), Signed(-1.0), [(x, y)], n_alpha=5, progress=False))"),
         check=_result("loss_barrier=inf", "stable=False", "nonfinite_alpha=0.5")),
    # lmcnb sweep: nothing guessed, nothing waited for
    Case("s-repeated-value", "lmcnb sweep", "--grid seed=0,0", "refused",
         sweep("--grid", "seed=0,0", "-p", "profile", "smoke", "-p", "model", "lenet5",
               "--serial"), ("seed", "twice")),
    Case("s-name-twice-grids", "lmcnb sweep", "--grid seed=0,1 --grid seed=2", "refused",
         sweep("--grid", "seed=0,1", "--grid", "seed=2", "-p", "profile", "smoke", "--serial"),
         ("seed", "twice")),
    Case("s-name-twice-one-grid", "lmcnb sweep", "--grid seed=0,1 seed=2", "refused",
         sweep("--grid", "seed=0,1", "seed=2", "-p", "profile", "smoke", "--serial"),
         ("seed", "twice")),
    Case("s-grid-and-p", "lmcnb sweep", "--grid seed=0,1 -p seed 2", "refused",
         sweep("--grid", "seed=0,1", "-p", "seed", "2", "-p", "profile", "smoke", "--serial"),
         ("seed", "both")),
    Case("s-missing-scheduler-file", "lmcnb sweep", f"--scheduler-file {MISSING_SCHEDULER}",
         "refused", sweep("--grid", "seed=0,1", "-p", "profile", "smoke", "--scheduler-file",
                          MISSING_SCHEDULER), (MISSING_SCHEDULER,), max_seconds=15),
    Case("s-closed-port", "lmcnb sweep", "--scheduler tcp://127.0.0.1:1", "refused",
         sweep("--grid", "seed=0,1", "-p", "profile", "smoke", "--scheduler", "tcp://127.0.0.1:1"),
         ("tcp://127.0.0.1:1",), max_seconds=25),
    Case("s-bad-syntax", "lmcnb sweep", '--grid "seed=[0,"', "refused",
         sweep("--grid", "seed=[0,", "-p", "profile", "smoke", "--serial"), ("seed=[0,",)),
    Case("s-unknown-name", "lmcnb sweep", "--grid sead=0,1", "refused",
         sweep("--grid", "sead=0,1", "-p", "profile", "smoke", "--serial"), ("sead",)),
    Case("s-unknown-profile", "lmcnb sweep", "--grid seed=0 -p profile tiny", "refused",
         sweep("--grid", "seed=0", "-p", "profile", "tiny", "-p", "model", "lenet5", "--serial"),
         ("tiny",)),
    Case("s-workers-0", "lmcnb sweep", "--workers 0", "refused",
         sweep("--grid", "seed=0", "-p", "profile", "smoke", "-p", "model", "lenet5",
               "--workers", "0"), ("workers",)),
    # the PTB chapter
    chapter("ptb-train-chunks", "ptb_transformer", {"train_chunks": 100_000},
            ("train_chunks", "at most"), clean=True),
    chapter("ptb-n_alpha-even", "ptb_transformer", {"n_alpha": 10}, ("n_alpha",)),
    chapter("ptb-spawn-beyond", "ptb_transformer", {"spawn_steps": [0, 100_000]},
            ("spawn", "100000")),
    chapter("ptb-noise-typo", "ptb_transformer", {"noise": ["dropuot"]}, ("noise", "dropuot")),
    chapter("ptb-n_inits-negative", "ptb_transformer", {"n_inits": -1}, ("n_inits",)),
    chapter("ptb-data_source-missing", "ptb_transformer", {"data_source": "/nonexistent/ptb"},
            ("/nonexistent/ptb",), clean=True),
    # the ViT chapter: sections checked before pretraining
    chapter("vit-finetune-schedule", "vit_platon", {"finetune": {"schedule": "linear"}},
            ("finetune.schedule",)),
    chapter("vit-pretrain-schedule", "vit_platon", {"pretrain": {"schedule": "exp"}},
            ("pretrain.schedule",)),
    chapter("vit-finetune-lr-negative", "vit_platon", {"finetune": {"lr": -1.0}},
            ("finetune.lr",)),
    chapter("vit-finetune-lr-string", "vit_platon", {"finetune": {"lr": "abc"}},
            ("finetune.lr",)),
    chapter("vit-warmup-negative", "vit_platon", {"finetune": {"warmup_steps": -5}},
            ("finetune.warmup_steps",)),
    chapter("vit-cuda", "vit_platon", {"device": "cuda"}, ("device",)),
    chapter("vit-pretrained-missing", "vit_platon", {"pretrained": "/nonexistent/vit"},
            ("/nonexistent/vit",)),
    chapter("vit-executor-unknown", "vit_platon", {"executor": "kubernetes"},
            ("executor", "kubernetes")),
    # the "measure your own models" page
    chapter("own-n_alpha-1", "measure_your_own", {"n_alpha": 1}, ("n_alpha",)),
    chapter("own-gpt_model", "measure_your_own", {"gpt_model": "HugeGPT"}, ("HugeGPT",)),
    chapter("own-colab", "measure_your_own", {"colab": True}, ("colab",)),
    # the CNN chapter, through `python -m lmcnb.book.execute` (values as JSON) and papermill
    Case("cnn-train-number", "lmcnb.book.execute", "-p train 5", "refused",
         execute("cnn_baselines", "model", '"lenet5"', "train", "5"), ("train",),
         forbid=("TypeError", "argument after **")),
    Case("cnn-unknown-name", "lmcnb.book.execute", "-p n_init 3", "refused",
         execute("cnn_baselines", "n_init", "3"), ("n_init",)),
    Case("cnn-spawn-wrong-type", "lmcnb.book.execute", "-p spawn_steps '[0, \"x\"]'", "refused",
         execute("cnn_baselines", "model", '"lenet5"', "spawn_steps", '[0, "x"]'),
         ("spawn_steps",)),
    Case("cnn-spawn-empty", "lmcnb.book.execute", "-p spawn_steps '[]'", "refused",
         execute("cnn_baselines", "model", '"lenet5"', "spawn_steps", "[]"), ("spawn_steps",)),
    Case("cnn-n_inits-negative", "lmcnb.book.execute", "-p n_inits -1", "refused",
         execute("cnn_baselines", "model", '"lenet5"', "n_inits", "-1"), ("n_inits",)),
    chapter("cnn-unknown-profile", "cnn_baselines", {"profile": "tiny"}, ("tiny",)),
    Case("cnn-data-missing", "papermill cnn_baselines", "data_dir=<an empty folder> (offline)",
         "refused", lambda f: papermill("cnn_baselines", {"model": "lenet5",
                                                          "data_dir": str(f / "data")})(f),
         ("mnist",), prepare=empty_data, clean=True),
    Case("cnn-data-damaged", "papermill cnn_baselines", "data_dir=<MNIST test labels cut>",
         "refused", lambda f: papermill("cnn_baselines", {"model": "lenet5",
                                                          "data_dir": str(f / "data")})(f),
         prepare=damaged_mnist, clean=True),
    # the GPT and independent-initialization chapters
    chapter("gpt-model-unknown", "gpt_shakespeare", {"model": "GPT-9"}, ("GPT-9",)),
    chapter("ind-n_alpha-even", "independent_inits", {"n_alpha": 4}, ("n_alpha",)),
    # cached files of a finished ViT chapter, damaged, the chapter executed again
    repair("vit-platon-mask", "PLATON mask: last byte flipped", damage_platon),
    repair("vit-random-mask", "random-control mask: replaced by the PLATON mask", damage_random),
    repair("vit-log-stray-line", "log.csv of the PLATON run: a stray line appended",
           stray_log_line),
    repair("vit-pretrained-missing-folder", "the save_pretrained folder deleted",
           remove_pretrained),
    repair("vit-pretrained-damaged", "the save_pretrained model.safetensors: a byte flipped",
           damage_pretrained),
]


# -- running ---------------------------------------------------------------------------------------
@dataclass
class Row:
    """What one case did."""

    case: Case
    message: str
    seconds: float
    trained: bool
    verdict: str


def traces(runs: Path) -> dict[str, int]:
    """Training's traces in a runs folder: its run and pretrained folders (by name) and every
    checkpoint file (with its mtime); what lmcnb set aside (`*.damaged`) is not one."""
    found = {}
    for path in runs.rglob("*") if runs.exists() else ():
        rel = path.relative_to(runs)
        if ".damaged" in str(rel):
            continue
        if len(rel.parts) == 2 and rel.parts[0] in ("train", "pretrained"):
            found[str(rel)] = 0
        elif "ckpt" in rel.parts[:-1]:
            found[str(rel)] = path.stat().st_mtime_ns
    return found


def notebook_notices(notebook: Path) -> list[str]:
    """The lines lmcnb printed for the reader ("lmcnb: ...") in an executed notebook."""
    if not notebook.exists():
        return []
    lines = []
    for cell in json.loads(notebook.read_text()).get("cells", []):
        for out in cell.get("outputs", []):
            text = out.get("text", "")
            lines += [s for s in ("".join(text) if isinstance(text, list) else text).splitlines()
                      if s.startswith("lmcnb: ")]
    return lines


ANSI = re.compile(r"\x1b\[[0-9;]*m")
ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Missing)\b:|\S+: error: "
                        r"|lmcnb sweep: )")


def message_of(out: str, err: str, code: int, folder: Path) -> str:
    """The error (or the result) a user sees: the whole message where the child program gives
    it (measure, papermill), else the line of it that a command printed."""
    out, err = ANSI.sub("", out), ANSI.sub("", err)
    marked = [s for s in out.splitlines() if s.startswith(("ERROR: ", "RESULT: "))]
    if marked:
        return json.loads(marked[-1].split(": ", 1)[1])
    failures = folder / "sweep" / "failures.csv"
    if failures.exists():  # a sweep that ran: its summary line, and why each point failed
        with open(failures) as fh:
            why = "".join(f"; failures.csv: {r['error']}" for r in csv.DictReader(fh))
        return ([s for s in out.splitlines() if s.strip()] or ["(no output)"])[-1] + why
    lines = [s.strip() for s in (err if code else out).splitlines() if s.strip()]
    errors = [s for s in lines if ERROR_LINE.match(s)]
    return (errors or lines or ["(no output)"])[-1]


def empty_folders(folder: Path) -> list[str]:
    """Empty folders left anywhere under `folder/runs` and `folder/data` (not those roots)."""
    return [str(p) for root in (folder / "runs", folder / "data") if root.is_dir()
            for p in root.rglob("*") if p.is_dir() and not p.is_symlink() and not any(p.iterdir())]


def run(case: Case, root: Path, base: Callable[[], Path]) -> Row:
    """Run one case in `root/<name>` and judge it against its expectation."""
    folder = root / case.name
    folder.mkdir(parents=True)
    if case.expect == "repaired":
        shutil.copytree(base(), folder / "runs", symlinks=True)
    before = traces(folder / "runs")
    named = case.prepare(folder) if case.prepare else None
    env = {**os.environ, "LMCNB_RUNS": str(folder / "runs"), "LMCNB_PROGRESS": "0",
           "LMCNB_LIVE": "0", **case.env}
    start = time.monotonic()
    proc = subprocess.Popen(case.argv(folder), cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=case.timeout)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the case's own process group (papermill's kernel)
        out, err = proc.communicate()
        hung = True
    seconds = time.monotonic() - start
    after = traces(folder / "runs")
    trained = any(k not in before or before[k] != v for k, v in after.items())
    message = (f"hang: nothing after {case.timeout:.0f} s" if hung
               else message_of(out, err, proc.returncode, folder))
    shown = message.strip().splitlines()[0] if message.strip() else "(no message)"
    problems = []
    names = case.names + ((named,) if named else ())
    if hung:
        problems.append("hang")
    elif case.expect == "refused":
        if proc.returncode == 0:
            problems.append("not refused")
        if trained:
            problems.append("trained before the error")
        problems += [f"does not name {n!r}" for n in names if n not in message]
        if case.surface == "lmcnb sweep" and "Traceback (most recent call last)" in err:
            problems.append("a traceback")
    elif case.expect == "repaired":
        notices = [s for s in notebook_notices(folder / "out.ipynb") if named and named in s]
        if proc.returncode != 0:
            problems.append("failed")
        elif not notices:
            again = "re-made" if named and Path(named).exists() else "not re-made"
            problems.append(f"{named} {again}, not named in the notebook's output")
        else:
            shown = notices[0]
    elif proc.returncode != 0 or not (case.check and case.check(message)):
        problems.append("wrong result")
    problems += [f"says {s!r}" for s in case.forbid if s in message]
    if case.max_seconds is not None and seconds > case.max_seconds:
        problems.append(f"slower than {case.max_seconds:g} s")
    if case.clean and (left := empty_folders(folder)):
        problems.append(f"left empty folder(s) {left}")
    verdict = "ok" if not problems else "FAIL: " + "; ".join(problems)
    return Row(case, shown, seconds, trained, verdict)


def vit_base(root: Path) -> Callable[[], Path]:
    """The runs folder of one smoke execution of the ViT chapter, made on first use."""
    made: list[Path] = []

    def get() -> Path:
        if not made:
            folder = root / "_vit-base"
            folder.mkdir()
            start = time.monotonic()
            done = subprocess.run(papermill("vit_platon", {})(folder), cwd=REPO, text=True,
                                  capture_output=True, env={**os.environ, "LMCNB_LIVE": "0",
                                                            "LMCNB_PROGRESS": "0"})
            if done.returncode:
                raise RuntimeError(f"the cached ViT run failed: {done.stdout[-2000:]}")
            print(f"(cached ViT runs made in {time.monotonic() - start:.0f} s)", file=sys.stderr)
            made.append(folder / "runs")
        return made[0]

    return get


def cell(text: str, width: int = 220) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: list[Row]) -> str:
    head = ("| case | surface | input | expected | what happens now | seconds | "
            "trained before error? | verdict |\n|---|---|---|---|---|---:|---|---|\n")
    return head + "".join(
        f"| {r.case.name} | {r.case.surface} | {cell(r.case.input)} | {r.case.expect} | "
        f"{cell(r.message)} | {r.seconds:.1f} | {'yes' if r.trained else 'no'} | "
        f"{cell(r.verdict, 400)} |\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    """Run the cases (those whose name holds `--only`), print the table; 1 if a row FAILs."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="run the cases whose name holds this substring")
    ap.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    args = ap.parse_args(argv)
    if "LMCNB_DATA" not in os.environ:
        ap.error("set $LMCNB_DATA to the data root holding the datasets")
    cases = [c for c in CASES if args.only in c.name]
    if not cases:
        ap.error(f"no case name holds {args.only!r}")
    start, rows = time.monotonic(), []
    with tempfile.TemporaryDirectory(prefix="lmcnb-cases-") as tmp:
        base = vit_base(Path(tmp))
        for i, case in enumerate(cases, 1):
            rows.append(run(case, Path(tmp), base))
            print(f"[{i}/{len(cases)}] {case.name}: {rows[-1].verdict} ({rows[-1].seconds:.0f} s)",
                  file=sys.stderr, flush=True)
            shutil.rmtree(Path(tmp) / case.name, ignore_errors=True)
    text = table(rows)
    failed = sum(r.verdict != "ok" for r in rows)
    text += (f"\n{len(rows)} cases, {failed} FAIL, {time.monotonic() - start:.0f} s in all\n")
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
