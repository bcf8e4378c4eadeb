"""Peak memory of tokenizing, training on and reading corpora of increasing size through
`lmcnb.data.corpus` (a batched `Dataset.map`, then `TokenBlocks` over the memory-mapped file).

    python benchmarks/corpus_memory.py                  # 1 GiB limit; 0.1, 1 and 10 GiB of tokens
    python benchmarks/corpus_memory.py --limit-mib 1536 --sizes-gib 0.15 1.5 15

The machine has far more memory than the corpora these runs can write in minutes, so each measured
process gets a small machine of its own: a memory cgroup (v2 `memory.max`, or v1
`memory.limit_in_bytes`) made under this process's own cgroup, limited to `--limit-mib`. Anonymous
memory and page cache are charged to it alike, so the process can hold at most that much, and the
largest corpus file is 10× the limit. The corpus files are dropped from the page cache
(`posix_fadvise(DONTNEED)`) before each process, so every page it reads is read from disk and
charged to it. Where no cgroup can be made the processes run without a limit, and the script says
so (the corpora are then not 10× the free memory).

Each corpus is random characters of Tiny Shakespeare's 65-character alphabet in rows of 16 KiB
(`Dataset.from_generator`, memory-mapped Arrow), tokenized one character per token into uint16 ids
(2 bytes per token). Three processes measure it, each in a fresh cgroup:

  tokenize  `tokenize_corpus`: the batched `Dataset.map` that writes the token file;
  train     `--steps` steps of `lmcnb.train.Trainer` on a small GPT (2 layers, width 64, block
            `--block`, batch `--batch`) over `TokenBlocks`: the trainer's sampler draws random
            windows from the whole file;
  scan      every window of the corpus read once, in order, through `TokenBlocks.batch`.

Each reports its peak RSS (VmHWM; file pages of the mapped corpus included), its peak anonymous
RSS (RssAnon, sampled every 20 ms: the memory that cannot be given back), the cgroup's peak usage
(page cache included: reading a file 10× the limit within it means the kernel reclaimed the pages
read before) and the OOM kills. Peak RSS can exceed the limit by the shared libraries' pages, which
earlier processes brought into the page cache and which are charged to their cgroup. The load
average is printed at the start and at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from lmcnb.data.sources import SHAKESPEARE_CHARS as ALPHABET

ROW_CHARS = 16 * 1024
GIB = 1 << 30


# -- cgroups ----------------------------------------------------------------------------------
class Cgroup:
    """A memory cgroup below this process's own, limited to `limit` bytes (v2 or v1)."""

    def __init__(self, limit: int, name: str):
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        v1 = next((line.split(":", 2)[2] for line in lines
                   if "memory" in line.split(":", 2)[1].split(",")), None)
        v2 = next((line.split(":", 2)[2] for line in lines if line.startswith("0::")), None)
        unified = Path("/sys/fs/cgroup")
        if (unified / "cgroup.controllers").is_file() and v2 is not None:
            self.version, self.path = 2, unified / v2.lstrip("/") / name
            self.files = {"limit": "memory.max", "peak": "memory.peak", "oom": "memory.events"}
        elif v1 is not None and Path("/sys/fs/cgroup/memory").is_dir():
            self.version, self.path = 1, Path("/sys/fs/cgroup/memory") / v1.lstrip("/") / name
            self.files = {"limit": "memory.limit_in_bytes", "peak": "memory.max_usage_in_bytes",
                          "oom": "memory.oom_control"}
        else:
            raise OSError("no memory cgroup (v1 or v2) is mounted")
        self.path.mkdir()
        try:
            (self.path / self.files["limit"]).write_text(str(limit))
            if self.version == 1 and (self.path / "memory.memsw.limit_in_bytes").exists():
                (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit))
        except OSError:
            self.path.rmdir()
            raise

    def enter(self) -> None:
        """Move the calling process into the cgroup (run in the child before exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def stats(self) -> dict[str, int]:
        """Peak usage (bytes) and OOM kills."""
        oom = dict(line.split() for line in (self.path / self.files["oom"]).read_text()
                   .splitlines())
        return {"peak": int((self.path / self.files["peak"]).read_text()),
                "oom_kills": int(oom.get("oom_kill", 0))}

    def remove(self) -> None:
        self.path.rmdir()


# -- the corpus -------------------------------------------------------------------------------
def generate(folder: Path, gib: float) -> list[str]:
    """Random text of `gib` GiB of uint16 tokens (gib/2 GiB of characters); its Arrow files."""
    import datasets
    import numpy as np

    index = folder / "files.json"
    if index.is_file():
        return json.loads(index.read_text())
    rows = max(1, round(gib * GIB / 2 / ROW_CHARS))
    table = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)

    def texts():
        rng = np.random.default_rng(0)
        for start in range(0, rows, 256):
            block = table[rng.integers(0, len(table), (min(256, rows - start), ROW_CHARS))]
            for row in block:
                yield {"text": row.tobytes().decode("ascii")}

    ds = datasets.Dataset.from_generator(
        texts, features=datasets.Features({"text": datasets.Value("string")}),
        cache_dir=str(folder / "hf"))
    files = [f["filename"] for f in ds.cache_files]
    index.write_text(json.dumps(files))
    return files


def drop_from_page_cache(*folders: Path) -> None:
    for folder in folders:
        for path in folder.rglob("*.arrow"):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# -- a measured process ----------------------------------------------------------------------
def status() -> dict[str, int]:
    """This process's RSS figures from /proc/self/status, in bytes."""
    text = Path("/proc/self/status").read_text()
    return {k: int(re.search(rf"{k}:\s+(\d+) kB", text)[1]) * 1024
            for k in ("VmHWM", "RssAnon", "RssFile")}


def child(args: argparse.Namespace) -> None:
    """One measured phase; prints a JSON line of what it measured."""
    peak_anon = [0]
    done = threading.Event()

    def sample():
        while not done.wait(0.02):
            peak_anon[0] = max(peak_anon[0], status()["RssAnon"])

    threading.Thread(target=sample, daemon=True).start()
    import datasets
    import torch

    from lmcnb.core.rng import RngStreams, Seeds
    from lmcnb.data.corpus import TokenBlocks, tokenize_corpus
    from lmcnb.data.tokenizers import CharTokenizer

    torch.set_num_threads(2)
    files = json.loads(args.files)
    corpus = datasets.concatenate_datasets([datasets.Dataset.from_file(f) for f in files])
    tok = CharTokenizer(ALPHABET)
    start_anon = status()["RssAnon"]
    t0 = time.perf_counter()
    if args.child == "tokenize":
        path = tokenize_corpus(corpus, tok, args.cache)
        work = f"{path.stat().st_size / GIB:.2f} GiB of tokens written"
    else:
        path = tokenize_corpus(corpus, tok, args.cache)  # found in the cache
        blocks = TokenBlocks(path, args.block)
        if args.child == "train":
            from lmcnb.models import gpt
            from lmcnb.train.recipe import TrainConfig
            from lmcnb.train.trainer import Trainer

            config = gpt.hf_config(gpt.GPTConfig(n_layer=2, n_head=2, n_embd=64,
                                                 block_size=args.block, tokenizer="char"), len(tok))
            streams = RngStreams(Seeds())
            with streams.active("init"):
                model = gpt.build_gpt(config)
            trainer = Trainer(model, TrainConfig(batch_size=args.batch, max_steps=args.steps,
                                                 optimizer="adamw", lr=1e-3), blocks, streams)
            loss = [trainer.step() for _ in range(args.steps)][-1]
            work = (f"{args.steps} steps over {len(blocks):,} windows (last loss {loss:.3f}; "
                    f"the sampler's permutation: {8 * len(blocks) / 2**20:.1f} MiB)")
        else:
            total, per = 0, 4096
            for s in range(0, len(blocks), per):
                x, _ = blocks.batch(torch.arange(s, min(s + per, len(blocks))))
                total += int(x[:, 0].sum())
            work = f"{len(blocks):,} windows read in order ({blocks.tokens / 2**30:.2f} G tokens)"
    seconds = time.perf_counter() - t0
    done.set()
    end = status()
    print(json.dumps({"work": work, "seconds": seconds, "hwm": end["VmHWM"],
                      "anon_start": start_anon, "anon_peak": max(peak_anon[0], end["RssAnon"])}))


def measure(phase: str, files: list[str], cache: Path, args: argparse.Namespace,
            limit: int | None) -> dict:
    cmd = [sys.executable, __file__, "--child", phase, "--files", json.dumps(files),
           "--cache", str(cache), "--block", str(args.block), "--batch", str(args.batch),
           "--steps", str(args.steps)]
    group = Cgroup(limit, f"lmcnb-corpus-{os.getpid()}-{phase}") if limit else None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              preexec_fn=group.enter if group else None,
                              env={**os.environ, "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"})
        out = {"phase": phase, **(group.stats() if group else {})}
    finally:
        if group:
            group.remove()
    if proc.returncode:
        out["failed"] = f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
        return out
    return {**out, **json.loads(proc.stdout.strip().splitlines()[-1])}


def mib(n: int | None) -> str:
    return "—" if n is None else f"{n / 2**20:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit-mib", type=int, default=1024,
                    help="memory limit of each measured process (its cgroup)")
    ap.add_argument("--sizes-gib", type=float, nargs="+", default=[0.1, 1.0, 10.0],
                    help="corpus sizes, in GiB of uint16 tokens")
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/lmcnb-corpus-memory"))
    ap.add_argument("--keep", action="store_true", help="keep the generated corpora")
    ap.add_argument("--child", choices=["tokenize", "train", "scan"], help=argparse.SUPPRESS)
    ap.add_argument("--files", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    limit = args.limit_mib * 2**20
    try:
        probe = Cgroup(limit, f"lmcnb-corpus-{os.getpid()}-probe")
        print(f"each measured process runs in a memory cgroup (v{probe.version}) limited to "
              f"{args.limit_mib:,} MiB, made under {probe.path.parent}")
        probe.remove()
    except OSError as exc:
        limit = None
        print(f"no memory cgroup could be made ({exc}): the processes run WITHOUT a limit, and "
              "the corpora are not 10× the free memory")
    free = int(re.search(r"MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text())[1]) * 1024
    print(f"machine: {os.cpu_count()} cores, {free / GIB:.1f} GiB available; torch threads 2")
    print(f"{'corpus':>18} {'phase':>9} {'peak RSS':>9} {'anon start':>10} {'anon peak':>9} "
          f"{'cgroup peak':>11} {'OOM':>4} {'time':>7}  work")
    for gib in args.sizes_gib:
        folder = args.workdir / f"corpus-{gib:g}"
        t0 = time.perf_counter()
        files = generate(folder, gib)
        text = sum(Path(f).stat().st_size for f in files)
        print(f"# corpus of {gib:g} GiB of tokens: {text / GIB:.2f} GiB of text in "
              f"{len(files)} Arrow file(s), generated in {time.perf_counter() - t0:.0f} s")
        for phase in ("tokenize", "train", "scan"):
            drop_from_page_cache(folder)
            r = measure(phase, files, folder / "tokens", args, limit)
            label = f"{gib:g} GiB" + (f" ({gib * GIB / limit:.1f}× limit)" if limit else "")
            if "failed" in r:
                print(f"{label:>18} {phase:>9}  FAILED {r['failed']} (cgroup: {r})")
                continue
            print(f"{label:>18} {phase:>9} {mib(r['hwm']):>9} {mib(r['anon_start']):>10} "
                  f"{mib(r['anon_peak']):>9} {mib(r.get('peak')):>11} "
                  f"{r.get('oom_kills', '—'):>4} {r['seconds']:>6.1f}s  {r['work']}")
        if not args.keep:
            shutil.rmtree(folder)
    print("MiB throughout; anon = RssAnon (anonymous memory), peak RSS = VmHWM (mapped file pages "
          "included), cgroup peak = the cgroup's peak usage (page cache included)")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
