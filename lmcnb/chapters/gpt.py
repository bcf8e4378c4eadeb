"""The GPT chapter as data: james-hx-song's study of GPT-2-style decoders on Tiny Shakespeare, its
recipe, the setups of the sweep and of fine-tuning from a pretrained start, the claims.

Every model is a `GPT2LMHeadModel` (`lmcnb.models.gpt`); a model pretrained here is saved like a
hub checkpoint and loaded with `from_pretrained(<dir>)`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
import torch

from ..book.params import ChapterConfig, Section, Steps, param
from ..book.report import Claim, at_step, evaluation_noise, k_star_text, pct, verdict
from ..core.files import folder_lock
from ..core.ref import Ref
from ..core.rng import Seeds
from ..data.tokenizers import encode, tokenizer_id
from ..experiments.catalog import build
from ..experiments.executors import Task, get_executor
from ..experiments.runs import Run, RunSpec
from ..experiments.setup import Setup
from ..experiments.study import Results, main_branch_study
from ..models.gpt import (
    GPT_CONFIGS,
    build_gpt,
    config_args,
    gpt_config,
    hf_config,
    load_pretrained,
    load_tokenizer,
    save_pretrained,
)
from ..models.pretrained import pretrained_id, publish, same_weights
from ..train.recipe import TrainConfig
from .common import SOURCE_HELP, check_sources, source_of

if TYPE_CHECKING:
    from transformers import GPT2Config

    from ..data.tokenizers import Tokenizer

CHAPTER = "gpt_shakespeare"
OWN_PTB = "own:ptb"  # pretrain here on Penn Treebank, then load that directory


# -- the parameters ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class LMTrain(Section):
    """The source's recipe: Adam β = (0.9, 0.95), warm-up then cosine from `lr` to `min_lr`, clip
    1.0, and `sim_batch_size / batch_size` accumulated micro-batches per optimizer step (each a
    fresh batch). `optimizer="adamw"` with `weight_decay` is the usual alternative."""

    batch_size: int = param("sequences per micro-batch", min=1)
    sim_batch_size: int = param("sequences per optimizer step (accumulated)", min=1)
    max_iters: int = param("optimizer steps", min=1)
    warmup_steps: int = param("linear warm-up steps", min=0)
    max_steps: int | None = param("end of the cosine decay; must equal max_iters", default=None,
                                  min=1)
    lr: float = param("peak learning rate", gt=0)
    min_lr: float = param("learning rate at the end of the cosine", min=0)
    optimizer: Literal["adam", "adamw"] = param("the optimizer", default="adam")
    weight_decay: float = param("decoupled (adamw) or L2 (adam) weight decay", default=0.0, min=0)
    log_every: int = param("training loss logged every so many steps", default=50, min=1)

    def check(self, path: str) -> None:
        """Accumulation that divides, a cosine over the whole run, a warm-up inside it."""
        if self.sim_batch_size % self.batch_size:
            raise ValueError(f"{path}.sim_batch_size ({self.sim_batch_size}) must be a multiple "
                             f"of {path}.batch_size ({self.batch_size})")
        if self.max_steps is not None and self.max_steps != self.max_iters:
            raise ValueError(f"{path}.max_steps ({self.max_steps}) must equal {path}.max_iters "
                             f"({self.max_iters}): the cosine decay spans the whole run")
        if self.warmup_steps > self.max_iters:
            raise ValueError(f"{path}.warmup_steps ({self.warmup_steps}) is longer than the run "
                             f"({self.max_iters} steps)")

    def recipe(self) -> TrainConfig:
        """The `TrainConfig` of this recipe."""
        return TrainConfig(batch_size=self.batch_size, max_steps=self.max_iters,
                           optimizer=self.optimizer, lr=self.lr, min_lr=self.min_lr,
                           betas=(0.9, 0.95), weight_decay=self.weight_decay, schedule="cosine",
                           warmup_steps=self.warmup_steps, grad_clip=1.0,
                           accum_steps=self.sim_batch_size // self.batch_size,
                           eval_every=max(1, min(self.log_every, self.max_iters)))


@dataclass(frozen=True, kw_only=True)
class FineTune(Section):
    """Fine-tuning from a pretrained start against training the same shape from scratch."""

    enabled: bool = param("run the fine-tuning section")
    source: str = param("a hub id ('gpt2'), a save_pretrained directory, or 'own:ptb'")
    model: str = param("the shape pretrained for 'own:ptb' (a name of GPT_CONFIGS)")
    spawn_steps: list[Steps] = param("spawn steps k, counted in fine-tuning steps")
    n_pairs: int = param("pairs per spawn step, from each start; pair i of the fine-tuned start "
                         "and of the scratch control share their data-order seeds", min=2)
    eval_iters: int | Literal["all"] = param("'all', or evaluation batches per split", min=1)
    train: LMTrain = param("the fine-tuning recipe")

    def check(self, path: str) -> None:
        """A known shape, and a start that exists."""
        from ..core.checks import pretrained_source

        gpt_config(self.model)
        if self.enabled and self.source != OWN_PTB:
            pretrained_source(f"{path}.source", self.source)


@dataclass(frozen=True, kw_only=True)
class Pretrain(Section):
    """Pretraining here on Penn Treebank, for `finetune.source = "own:ptb"`."""

    max_iters: int | None = param("optimizer steps", default=None, min=1)
    lr: float | None = param("peak learning rate", default=None, gt=0)
    vocab: int | None = param("size of the byte-level BPE trained on PTB", default=None, min=257)
    chars: int | None = param("characters of PTB's training split used (None: all)",
                              default=None, min=1)


@dataclass(frozen=True, kw_only=True)
class Config(ChapterConfig):
    """The GPT chapter's parameters."""

    model: str | list[str] = param("the sweep's models: a name of GPT_CONFIGS or a list")
    dataset: Literal["shakespeare", "ptb"] = param("the corpus")
    train: LMTrain = param("the sweep's recipe")
    spawn_steps: list[Steps] = param("spawn steps k of the sweep")
    eval_iters: int | Literal["all"] = param("'all', or evaluation batches per split", min=1)
    eval_tokens: int = param("tokens per evaluation batch", min=1)
    n_alpha: int = param("points on the α grid, both ends included", min=2)
    n_inits: int = param("independent initializations (replicates)", min=1)
    finetune: FineTune = param("the fine-tuning section")
    pretrain: Pretrain = param("pretraining for finetune.source = 'own:ptb'")
    prompt: str = param("the α-slider's text prompt")
    sample_tokens: int = param("tokens sampled after the prompt", min=1)
    seed: int = param("the base seed of every stream", min=0)
    data_source: str = param(SOURCE_HELP + " (here: of `dataset`)", default="default")

    aliases = {  # the source's flag names
        "model_config": "model", "model_iters": "spawn_steps", "max_iters": "train.max_iters",
        "warmup_steps": "train.warmup_steps", "max_steps": "train.max_steps",
        "sim_batch_size": "train.sim_batch_size", "fine_tune": "finetune.enabled",
        "pretrained": "finetune.source", "eval_batch_tokens": "eval_tokens",
    }

    @property
    def models(self) -> list[str]:
        """The sweep's models, as a list."""
        return [self.model] if isinstance(self.model, str) else list(self.model)

    def check(self, path: str) -> None:
        """Known shapes, and the pretraining section a start of 'own:ptb' needs."""
        super().check(path)
        for name in self.models:
            gpt_config(name)
        ft, pt = self.finetune, self.pretrain
        if ft.enabled and ft.source == OWN_PTB and None in (pt.max_iters, pt.lr, pt.vocab):
            raise ValueError("finetune.source 'own:ptb' pretrains here: give pretrain.max_iters, "
                             "pretrain.lr and pretrain.vocab")


ADAM = dict(optimizer="adam", weight_decay=0.0, max_steps=None)
PROFILES = {
    "paper": dict(model=["MinGPT", "CompactGPT", "ToyGPT", "TinyGPT"], dataset="shakespeare",
                  train=dict(batch_size=32, sim_batch_size=128, max_iters=5000, warmup_steps=100,
                             lr=6e-4, min_lr=6e-5, **ADAM),
                  spawn_steps=[0, 100, 500, 1000, 2500], eval_iters="all", eval_tokens=16384,
                  n_alpha=30, n_inits=5, seed=0, prompt="ROMEO:\n", sample_tokens=60,
                  finetune=dict(enabled=True, source="gpt2", model="GPT2", spawn_steps=[0, 100],
                                n_pairs=5, eval_iters="all",
                                train=dict(batch_size=8, sim_batch_size=8, max_iters=300,
                                           warmup_steps=30, lr=6e-4, min_lr=6e-5, **ADAM)),
                  pretrain=dict(max_iters=None, lr=None, vocab=None, chars=None)),
    "book": dict(model=["CPUGPT", "TinyGPT"], dataset="shakespeare",
                 train=dict(batch_size=16, sim_batch_size=16, max_iters=300, warmup_steps=30,
                            lr=3e-3, min_lr=3e-4, **ADAM),
                 spawn_steps=[0, 25, 100], eval_iters=2, eval_tokens=4096, n_alpha=30,
                 n_inits=5, seed=0, prompt="ROMEO:\n", sample_tokens=100,
                 finetune=dict(enabled=True, source=OWN_PTB, model="CPUGPT", spawn_steps=[0],
                               n_pairs=5, eval_iters=1,
                               train=dict(batch_size=16, sim_batch_size=16, max_iters=150,
                                          warmup_steps=15, lr=3e-3, min_lr=3e-4, **ADAM)),
                 pretrain=dict(max_iters=500, lr=3e-3, vocab=2048, chars=None)),
    "smoke": dict(model=["CPUGPT", "TinyGPT"], dataset="shakespeare",
                  train=dict(batch_size=8, sim_batch_size=8, max_iters=6, warmup_steps=2, lr=3e-3,
                             min_lr=3e-4, **ADAM),
                  spawn_steps=[0, 3], eval_iters=1, eval_tokens=1024, n_alpha=5, n_inits=2,
                  seed=0, prompt="ROMEO:\n", sample_tokens=24,
                  finetune=dict(enabled=True, source=OWN_PTB, model="CPUGPT", spawn_steps=[0],
                                n_pairs=2, eval_iters=1,
                                train=dict(batch_size=8, sim_batch_size=8, max_iters=4,
                                           warmup_steps=1, lr=3e-3, min_lr=3e-4, **ADAM)),
                  pretrain=dict(max_iters=6, lr=3e-3, vocab=300, chars=100_000)),
}
Config.profiles = PROFILES


# -- setups --------------------------------------------------------------------------------------
def tokenizers(c: Config) -> dict[str, Ref]:
    """The chapter's tokenizers of the corpus: characters, and GPT-2's BPE (offline: one trained
    on the training split)."""
    src = source_of(c.data_source, c.dataset)
    return {kind: Ref.of("tokenizer", kind, corpus=c.dataset, **src) for kind in ("char", "bpe")}


def setups(c: Config) -> dict[str, Setup]:
    """The spawn study of every model of the sweep, every value checked against the data (the
    fine-tuning section's too); nothing trains."""
    from ..data.text import require_text

    check_sources(c.data_source, (c.dataset,), c.data_dir)
    if not source_of(c.data_source, c.dataset):
        require_text(c.dataset, c.data_dir)
    if c.finetune.enabled and c.finetune.source == OWN_PTB:
        require_text("ptb", c.data_dir)
    toks = tokenizers(c)
    out = {}
    for name in c.models:
        cfg = gpt_config(name)
        tok = build(toks[cfg.tokenizer], c.data_dir)
        out[name] = lm_setup(CHAPTER, name, hf_config(cfg, len(tok)), toks[cfg.tokenizer],
                             c.dataset, c.train.recipe(), c.runs_dir, eval_iters=c.eval_iters,
                             source=c.data_source,
                             eval_tokens=c.eval_tokens, device=c.device or "auto",
                             data_dir=c.data_dir, seed=c.seed, n_alpha=c.n_alpha)
        out[name].steps(c.spawn_steps)
    return out


def _identity(config: GPT2Config, tokenizer: Tokenizer, pretrained: str | None, stride: int):
    shape = {k: getattr(config, k)
             for k in ("n_layer", "n_head", "n_embd", "n_positions", "vocab_size",
                       "resid_pdrop", "embd_pdrop", "attn_pdrop", "activation_function")}
    args = [("gpt", tuple(sorted(shape.items()))), ("tokenizer", tokenizer_id(tokenizer)),
            ("stride", stride)]
    if pretrained is not None:
        args.append(("pretrained", pretrained_id(pretrained)))
    return tuple(args)


def lm_setup(chapter: str, model: str, config: GPT2Config, tokenizer: Ref, corpus: str,
             train: TrainConfig, runs_dir: str | Path, *, pretrained: str | None = None,
             train_stride: int | None = None, eval_tokens: int = 8192,
             chars: int | None = None, source: str = "default", data_dir: str | None = None,
             **setup_kwargs: Any) -> Setup:
    """A language-model `Setup`: token windows of both splits of `corpus` (their first `chars`
    characters if given; from data `source`, `lmcnb.data.sources`) under `tokenizer`, and a GPT
    built from `config` (random init) or loaded from `pretrained` (k counts fine-tuning steps).

    Training windows start every `train_stride` tokens (default: non-overlapping); test windows
    never overlap. An evaluation batch holds about `eval_tokens` tokens, so `eval_iters`
    batches cover the same number of tokens whatever the block size.
    """
    tok = build(tokenizer, data_dir)
    if len(tok) > config.vocab_size:
        raise ValueError(f"tokenizer has {len(tok)} tokens, the model only {config.vocab_size}")
    block = config.n_positions
    stride = train_stride or block
    net = (Ref.of("model", "pretrained_gpt", source=str(pretrained),
                  digest=pretrained_id(str(pretrained))) if pretrained is not None
           else Ref.of("model", "gpt", config=config_args(config)))

    def windows(split: str, step: int | None) -> Ref:
        return Ref.of("data", "text_windows", corpus=corpus, split=split, tokenizer=tokenizer,
                      block=block, stride=step, chars=chars, **source_of(source, corpus))

    return Setup(chapter=chapter, model=model, dataset=corpus, net=net,
                 train_data=windows("train", stride), test_data=windows("test", None), train=train,
                 runs_dir=str(runs_dir), model_args=_identity(config, tok, pretrained, stride),
                 language_model=True, eval_batch_size=max(1, eval_tokens // block),
                 data_dir=data_dir, **setup_kwargs)


# -- the pretrained start ------------------------------------------------------------------------
def pretrained_start(c: Config) -> str:
    """The fine-tuning section's starting point: a hub id or directory as given, or for
    `"own:ptb"` a model of the section's shape pretrained here on Penn Treebank (on the
    chapter's executor) and published like a hub checkpoint."""
    ft, pt = c.finetune, c.pretrain
    if ft.source != OWN_PTB:
        return ft.source
    recipe = dataclasses.replace(ft.train, max_iters=pt.max_iters, max_steps=None,
                                 warmup_steps=max(1, pt.max_iters // 10), lr=pt.lr,
                                 min_lr=pt.lr / 10).recipe()
    tokenizer = Ref.of("tokenizer", "trained_bpe", corpus="ptb", vocab_size=pt.vocab,
                       chars=pt.chars)
    return str(pretrain(ft.model, tokenizer, "ptb", recipe, c.runs_dir, chars=pt.chars,
                        device=c.device or "auto", seed=c.seed, data_dir=c.data_dir,
                        executor=c.executor))


def pretrain(model: str, tokenizer: Ref, corpus: str, train: TrainConfig, runs_dir: str | Path,
             *, chars: int | None = None, device: str = "auto", seed: int = 0,
             data_dir: str | None = None, executor: Any = "serial") -> Path:
    """Train `GPT_CONFIGS[model]` on the training split of `corpus` (its first `chars`
    characters) as a resumable run on `executor`; save it like a hub checkpoint.

    Returns `<runs_dir>/pretrained/<run id>`, which `load_pretrained` and `load_tokenizer` read.
    The folder is written atomically under the run's lock and checked against the run's weights
    at every call: a damaged one is rebuilt.
    """
    cfg = gpt_config(model)
    tok = build(tokenizer, data_dir)
    config = hf_config(cfg, len(tok))
    data = Ref.of("data", "text_windows", corpus=corpus, split="train", tokenizer=tokenizer,
                  block=cfg.block_size, stride=None, chars=chars)
    spec = RunSpec(model, corpus, train, Seeds.from_base(seed, "pretrain"),
                   model_args=_identity(config, tok, None, cfg.block_size))
    run = Run(spec, Path(runs_dir) / "train", Ref.of("model", "gpt", config=config_args(config)),
              data, device, data_dir=data_dir)
    key = f"train-{spec.run_id}"
    get_executor(executor).run([Task(key, Run.ensure_trained, (run,))], [key])
    weights = run.ensure_weights()  # read (a damaged checkpoint is re-made)

    def save(folder: Path) -> None:
        with torch.random.fork_rng():
            net = build_gpt(config)
        net.load_state_dict(weights)
        save_pretrained(net, tok, folder)

    def valid(folder: Path) -> bool:
        return (same_weights(folder, weights)
                and tokenizer_id(load_tokenizer(str(folder))) == tokenizer_id(tok))

    with folder_lock(run.dir):
        return publish(Path(runs_dir) / "pretrained" / spec.run_id, save, valid, run.dir)


def finetune_setups(c: Config, source: str) -> dict[str, Setup]:
    """Fine-tuning from `source` and, as the control, training the same shape from scratch."""
    ft = c.finetune
    config = load_pretrained(source).config
    tokenizer = Ref.of("tokenizer", "pretrained", source=source)
    out = {start: lm_setup(CHAPTER, f"{ft.model}-{start}", config, tokenizer, c.dataset,
                           ft.train.recipe(), c.runs_dir, pretrained=src, eval_iters=ft.eval_iters,
                           source=c.data_source,
                           eval_tokens=c.eval_tokens, device=c.device or "auto",
                           data_dir=c.data_dir, seed=c.seed, n_alpha=c.n_alpha)
           for start, src in {"pretrained": source, "scratch": None}.items()}
    for s in out.values():
        s.steps(ft.spawn_steps)
    return out


# -- the pairs ----------------------------------------------------------------------------------
def pair_study(setup: Setup, spawn_steps: list[int | str], n_inits: int, executor: Any = "serial",
               early: bool = False) -> Results:
    """For every initialization and spawn step k: the trunk's endpoint and one child spawned
    from the trunk at k (weights, Adam state, schedule) and trained to the end with its own data
    order — Frankle's spawn with the trunk as one of the two children, i.e. Shapira's main-branch
    pair (k1 = k, k2 = T − k), one run per pair fewer. With `early`, also at k = 0 the pair after
    the first sixth of training: the trunk at T/6 and a child trained T/6 steps (the source's
    checkpoints at iteration 500 of 3,000). Rows carry `spawn_step` and `k2`."""
    total = setup.total_steps
    parts = []
    for k in sorted(setup.steps(spawn_steps), reverse=True):
        k2s = [total - k] + ([early_step(total)] if early and k == 0 else [])
        parts.append(main_branch_study(setup, [k], k2s, n_inits, executor))
    return Results(pd.concat([p.curves for p in parts], ignore_index=True),
                   pd.concat([p.barriers for p in parts], ignore_index=True), parts[0].folder,
                   setup.threshold)


def early_step(total: int) -> int:
    """Where the early pair is compared: a sixth of the run (the source's 500 of 3,000)."""
    return max(1, total // 6)


def _select(results: Results, end: bool) -> Results:
    """The pairs compared at the end of training (`end`), or the early ones."""
    b, c = results.barriers, results.curves
    total = int((b.spawn_step + b.k2).max())
    b = b[(b.spawn_step + b.k2 == total) == end]
    c = c[(c.spawn_step + c.k2 == total) == end]
    return Results(c.reset_index(drop=True), b.reset_index(drop=True), results.folder,
                   results.threshold)


def ends(results: Results) -> Results:
    """The pairs compared at the end of training (every spawn step)."""
    return _select(results, end=True)


def early(results: Results) -> Results:
    """The k = 0 pairs compared after the first sixth of training (empty without them)."""
    return _select(results, end=False)


def next_token(results: Results) -> Results:
    """The same pairs with the perplexity measures left out, so that the report's tables and
    verdicts read the next-token error: its barrier first, Frankle's I_E beside it."""
    drop = [col for col in results.barriers if col.startswith("relative_ppl")]
    return Results(results.curves, results.barriers.drop(columns=drop), results.folder,
                   results.threshold)


CONTRAST = {"relative_ppl_barrier": "PPL barrier / max PPL", "relative_ppl_instability": "R",
            "error_barrier": "next-token error barrier", "instability_error": "I_E",
            "end_loss": "test loss at the ends (nats)"}


def contrast(finetuned: Mapping[str, Results], split: str = "test") -> pd.DataFrame:
    """Fine-tuned against scratch at matched seeds: per quantity, the mean ± 95% CI of each start
    and the paired difference scratch − fine-tuned (pair i against pair i), with n; at the first
    spawn step. Columns: quantity, column, fine-tuned, from scratch, difference, ci, n."""
    from ..lmc.metrics import mean_ci, paired_difference

    tables = {}
    for start, r in finetuned.items():
        b = ends(r).barriers
        b = b[(b.split == split) & (b.spawn_step == b.spawn_step.min())]
        tables[start] = b.assign(end_loss=(b.loss_a + b.loss_b) / 2)
    rows = []
    for column, name in CONTRAST.items():
        d = paired_difference(tables["pretrained"], tables["scratch"], column).iloc[0]
        loss = column == "end_loss"
        text = (lambda m, h: f"{m:.3f} ± {h:.3f}") if loss else pct
        rows.append({"quantity": name, "column": column,
                     "fine-tuned": text(*mean_ci(tables["pretrained"][column])),
                     "from scratch": text(*mean_ci(tables["scratch"][column])),
                     "scratch − fine-tuned (paired)": text(d[column], d[f"{column}_ci95"]),
                     "difference": float(d[column]), "ci": float(d[f"{column}_ci95"]),
                     "n": int(d["n"])})
    return pd.DataFrame(rows)


def contrast_table(table: pd.DataFrame) -> pd.DataFrame:
    """`contrast` as the page shows it."""
    return table[["quantity", "fine-tuned", "from scratch", "scratch − fine-tuned (paired)", "n"]]


# -- the pilot ----------------------------------------------------------------------------------
PILOT = Path(__file__).resolve().parents[2] / "benchmarks" / "pilots" / "gpt_shakespeare.csv"


def read_pilot(path: str | Path = PILOT) -> pd.DataFrame:
    """The pilot's rows (`benchmarks/pilot_gpt.py`): one per pair and split, with its point's
    sizes, CPU seconds and load."""
    return pd.read_csv(path)


def pilot_table(pilot: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """Per pilot point and start: its sizes, what it cost, and the test PPL barrier at k = 0
    after the whole run — mean ± SD over its pairs, the evaluation noise (RMS of the per-pair
    bootstrap SD) — and for the fine-tuning points the paired difference scratch − fine-tuned
    with the replicates a 95% CI clear of zero would need at that spread."""
    from ..book.report import replicates_to_resolve

    rows = []
    for point, g in pilot.groupby("point", sort=False):
        head = g.iloc[0]
        base = {"point": point, "model": head.model,
                "steps": "" if pd.isna(head["T"]) else f"{int(head['T'])}",
                "peak lr": "" if pd.isna(head.lr) else f"{head.lr:g}",
                "eval tokens": f"{int(head.eval_tokens):,}", "CPU s": f"{head.cpu_s:.0f}",
                "load": f"{head.load:.1f}"}
        b = g[(g.split == split) & (g.spawn_step == 0)]
        if b.empty:
            rows.append(base)
            continue
        b = b[b.spawn_step + b.k2 == (b.spawn_step + b.k2).max()]
        row = dict(base)
        for start, sub in b.groupby("start", sort=False):
            x = sub.relative_ppl_barrier
            row[f"{start} barrier (mean ± SD)"] = f"{x.mean():.2%} ± {x.std(ddof=1):.2%}"
        row["evaluation noise (SD)"] = pct(float((b.relative_ppl_barrier_eval_sd ** 2).mean()
                                                 ** 0.5))
        if set(b.start) == {"pretrained", "scratch"}:
            w = b.pivot(index="replicate", columns="start", values="relative_ppl_barrier")
            d = w.scratch - w.pretrained
            row["scratch − fine-tuned"] = f"{d.mean():.2%} ± {d.std(ddof=1):.2%}"
            need = replicates_to_resolve(float(d.std(ddof=1)), abs(float(d.mean())))
            row["pairs to decide"] = "—" if need is None else str(need)
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def pilot_summary(pilot: pd.DataFrame, split: str = "test") -> dict[str, str]:
    """The pilot's numbers the profile section states: pairs per point, α points, total CPU
    minutes, the load range, and per point and start the mean test barrier at k = 0 after the
    whole run (`pilot_<point>_<start>`, "-" in a point's name becoming "_")."""
    points = pilot.groupby("point", sort=False).first()
    b = pilot[(pilot.split == split) & (pilot.spawn_step == 0)]
    out = {"pilot_pairs": str(int(b.replicate.max()) + 1), "pilot_alpha": str(int(
        points.n_alpha.iloc[0])), "pilot_cpu_min": f"{points.cpu_s.sum() / 60:.0f}",
        "pilot_load": f"{points.load.min():.1f}–{points.load.max():.1f}"}
    for (point, start), g in b.groupby(["point", "start"], sort=False):
        g = g[g.spawn_step + g.k2 == (g.spawn_step + g.k2).max()]
        out[f"pilot_{point.replace('-', '_')}_{start}"] = pct(g.relative_ppl_barrier.mean())
    for point, row in points.iterrows():
        out[f"pilot_{point.replace('-', '_')}_cpu"] = f"{row.cpu_s:,.0f}"
    return out


def profile_table() -> pd.DataFrame:
    """The sizes of every profile side by side (the profiles live in `PROFILES`)."""
    configs = {name: Config.resolve(name) for name in ("smoke", "book", "paper")}

    def row(size: str, get) -> dict[str, str]:
        return {"size": size, **{name: str(get(c)) for name, c in configs.items()}}

    return pd.DataFrame([
        row("sweep: models", lambda c: ", ".join(c.models)),
        row("sweep: steps (warm-up)", lambda c: f"{c.train.max_iters} ({c.train.warmup_steps})"),
        row("sweep: sequences per step", lambda c: c.train.sim_batch_size),
        row("sweep: peak lr → final", lambda c: f"{c.train.lr:g} → {c.train.min_lr:g}"),
        row("sweep: spawn steps k", lambda c: ", ".join(map(str, c.spawn_steps))),
        row("sweep: pairs per k (initializations)", lambda c: c.n_inits),
        row("fine-tuning: start", lambda c: c.finetune.source if c.finetune.source != OWN_PTB
            else f"{c.finetune.model} pretrained here ({c.pretrain.max_iters} steps, PTB, "
                 f"BPE {c.pretrain.vocab})"),
        row("fine-tuning: steps, peak lr", lambda c: f"{c.finetune.train.max_iters}, "
            f"{c.finetune.train.lr:g}"),
        row("fine-tuning: pairs per start", lambda c: c.finetune.n_pairs),
        row("evaluation: tokens per split", lambda c: "all" if c.eval_iters == "all"
            else f"{eval_tokens(c):,}"),
        row("α points", lambda c: c.n_alpha),
    ])


def closing_table(c: Config, measured: Mapping[str, Any]) -> pd.DataFrame:
    """The chapter's answers in one small table: per condition, the test PPL barrier with its
    verdict, R and the next-token error barrier beside it, and the pairs."""
    rows = []

    def add(condition: str, r: Results, k: int) -> None:
        b, ci = at_step(r, k)
        rows.append({"condition": condition, "PPL barrier / max PPL": pct(b, ci),
                     "verdict": verdict(b, ci),
                     "R": pct(*at_step(r, k, column="relative_ppl_instability")),
                     "next-token error barrier": pct(*at_step(r, k, column="error_barrier")),
                     "n": int(r.barriers[r.barriers.spawn_step == k].replicate.nunique())})

    for name, r in measured["spawn"].items():
        end = ends(r)
        for k in sorted(end.barriers.spawn_step.unique()):
            add(f"{name}, spawned at k = {k}", end, int(k))
        e = early(r)
        if len(e.barriers):
            add(f"{name}, k = 0, after {int(e.barriers.k2.iloc[0])} steps", e, 0)
    for start, r in (measured.get("finetuned") or {}).items():
        label = "fine-tuned" if start == "pretrained" else "from scratch (control)"
        add(f"{c.finetune.model} {label}, k = {first_step(r)}", ends(r), first_step(r))
    return pd.DataFrame(rows)


# -- what the chapter shows ----------------------------------------------------------------------
def config_table(vocab_sizes: dict[str, int]) -> list[dict[str, Any]]:
    """One row per named configuration: its shape and parameter count for the given vocabulary."""
    rows = []
    for name, cfg in GPT_CONFIGS.items():
        config = hf_config(cfg, vocab_sizes[cfg.tokenizer])
        with torch.device("meta"):
            n = sum(p.numel() for p in build_gpt(config).parameters())
        rows.append({"model_config": name, **asdict(cfg), "vocab_size": config.vocab_size,
                     "parameters": n})
    return rows


def describe_data(c: Config) -> str:
    """The corpus's size and, for every tokenizer the chapter uses, its size and test tokens."""
    from ..data.text import load_text

    toks = tokenizers(c)
    train, test = (load_text(c.dataset, s, c.data_dir) for s in ("train", "test"))
    lines = [f"{c.dataset}: {len(train):,} training and {len(test):,} test characters"]
    for kind in dict.fromkeys(["char"] + [gpt_config(n).tokenizer for n in c.models]):
        tok = build(toks[kind], c.data_dir)
        lines.append(f"{kind} tokenizer {tokenizer_id(tok)}: {len(tok)} tokens, "
                     f"{len(encode(tok, test)):,} test tokens")
    return "\n".join(lines)


def deviations(c: Config) -> list[tuple[str, str, str, str]]:
    """Every way this chapter's `book` run differs from james-hx-song's recipe: the aspect, the
    source's choice, this book's, and what it changes."""
    t, ft, pt = c.train, c.finetune, c.pretrain
    models = " and ".join(c.models)
    return [
        ("models", "MinGPT, CompactGPT, ToyGPT (GPT-2 BPE) and TinyGPT (characters); GPT-2 "
         "124M for fine-tuning", f"{models} (characters); fine-tuning a {ft.model}-shaped "
         "model (the paper profile runs the source's)",
         "smaller models: what holds for them is a statement about this scale"),
        ("fine-tuning start", "the hub's GPT-2 124M (WebText)",
         f"a {ft.model}-shaped model pretrained here for {pt.max_iters} steps on Penn Treebank "
         f"with a {pt.vocab}-token byte-level BPE trained on Penn Treebank",
         "a weaker, smaller start on a different corpus; the hub is unreachable where the book is "
         "built"),
        ("training length", "TinyGPT 20,000 steps, MinGPT 3,000, fine-tuning 300",
         f"{t.max_iters} steps for the sweep, {ft.train.max_iters} for fine-tuning",
         "shorter runs: copies have less time to drift apart (the pilot measures how much it "
         "matters)"),
        ("learning rate", "peak 6e-4, cosine to 6e-5; warm-up from 6e-5",
         f"peak {t.lr:g}, cosine to {t.min_lr:g} (fine-tuning {ft.train.lr:g}); warm-up from 0",
         "a larger step size for short CPU runs; the pilot measures the source's 6e-4 for "
         "fine-tuning"),
        ("batch", "32 sequences (GPT-2: 8), accumulation over one reused batch (a bug)",
         f"{t.batch_size} sequences, no accumulation; every micro-batch fresh where it is used",
         "more gradient noise per step than the source's batch of 32"),
        ("batches", "random offsets drawn with replacement from an unseeded generator",
         "non-overlapping windows in a seeded order; children differ only in data order",
         "the runs can be repeated and matched; the noise that separates children is named"),
        ("pairs", "two copies from one init; later checkpoints are the same two runs, so "
         "there is no spawn at k", "the trunk and one child spawned from its checkpoint at k "
         "(weights, Adam state, schedule)", "k > 0 can be measured; at k = 0 the design is "
         "the source's"),
        ("initialization", "N(0, 0.02), positions N(0, 0.01), no residual scaling",
         "GPT2LMHeadModel's: N(0, 0.02), positions too, residual projections scaled by "
         "1/√(2·layers)", "a slightly smaller start for the residual stream"),
        ("precision", "bf16 autocast on a GPU", "fp32 on the CPU",
         "no rounding of the forward pass to bf16"),
        ("evaluation", "30 α; eval_iters random batches, drawn anew at every α",
         f"{c.n_alpha} α; one fixed sample of {eval_tokens(c):,} tokens per split, the same at "
         "every α", "the curve's points are comparable; its noise is measured (bootstrap)"),
        ("measure", "cross-entropy curves read off the plots, one pair per model",
         f"the relative perplexity barrier first, R and the next-token error beside it, over "
         f"{c.n_inits} pairs with 95% CIs", "a verdict needs a barrier and a CI clear of 2%"),
    ]


def eval_tokens(c: Config) -> int:
    """Tokens per split in the evaluation sample of the sweep."""
    return 0 if c.eval_iters == "all" else c.eval_iters * c.eval_tokens


def first_step(r: Results) -> int:
    """The first spawn step of a study."""
    return int(r.barriers.spawn_step.min())


def last_step(r: Results) -> int:
    """The last spawn step of a study."""
    return int(r.barriers.spawn_step.max())


def summary(c: Config, measured: Mapping[str, Any]) -> dict[str, str]:
    """The numbers the prose states: per model the test PPL barrier (and R, and the next-token
    error barrier) at the first and last spawn step and for the early pair, the onset k* on the
    barrier; the fine-tuned and scratch barriers and their paired difference. `measured["spawn"]`:
    the sweep's studies per model (`pair_study`); `measured["finetuned"]`: the "pretrained" and
    "scratch" studies (or {})."""
    out: dict[str, str] = {}
    for name, r in measured["spawn"].items():
        end, ks = ends(r), sorted(ends(r).barriers.spawn_step.unique())
        for tag, k in (("first", int(ks[0])), ("last", int(ks[-1]))):
            out[f"{name}_k_{tag}"] = str(k)
            out[f"{name}_B_{tag}"] = pct(*at_step(end, k))
            out[f"{name}_V_{tag}"] = verdict(*at_step(end, k))
            out[f"{name}_R_{tag}"] = pct(*at_step(end, k, column="relative_ppl_instability"))
            out[f"{name}_E_{tag}"] = pct(*at_step(end, k, column="error_barrier"))
        out[f"{name}_kstar"] = k_star_text(end.onset("test", "relative_ppl_barrier"))
        out[f"{name}_n"] = str(int(end.barriers.replicate.nunique()))
        e = early(r)
        if len(e.barriers):
            out[f"{name}_early_step"] = str(int(e.barriers.k2.iloc[0]))
            out[f"{name}_B_early"] = pct(*at_step(e, 0))
            out[f"{name}_V_early"] = verdict(*at_step(e, 0))
            out[f"{name}_R_early"] = pct(*at_step(e, 0, column="relative_ppl_instability"))
    finetuned = measured.get("finetuned") or {}
    if finetuned:
        for start, r in finetuned.items():
            end = ends(r)
            out[f"ft_B_{start}"] = pct(*at_step(end, first_step(r)))
            out[f"ft_V_{start}"] = verdict(*at_step(end, first_step(r)))
            out[f"ft_R_{start}"] = pct(*at_step(end, first_step(r),
                                             column="relative_ppl_instability"))
        table = contrast(finetuned).set_index("column")
        out["ft_n"] = str(int(table.n.iloc[0]))
        out["ft_diff_B"] = table.loc["relative_ppl_barrier", "scratch − fine-tuned (paired)"]
        out["ft_diff_loss"] = table.loc["end_loss", "scratch − fine-tuned (paired)"]
        out["ft_loss_pretrained"] = table.loc["end_loss", "fine-tuned"]
        out["ft_loss_scratch"] = table.loc["end_loss", "from scratch"]
    noise = [float(evaluation_noise(r).max()) for r in [*measured["spawn"].values(),
                                                        *finetuned.values()]]
    out["noise_max"] = pct(max(noise))
    return out


def claims(c: Config, measured: Mapping[str, Any]) -> list[Claim]:
    """james-hx-song's statements against this chapter's measurements (see `summary`), each on
    the test relative perplexity barrier (or the paired difference of it) with its 95% CI over
    the pairs and their number."""
    results: dict[str, Results] = measured["spawn"]
    finetuned: dict[str, Results] = measured.get("finetuned") or {}
    source = "james-hx-song"

    def at(r: Results | None, k: int | None = None) -> tuple[float | None, float | None, int]:
        if r is None or not len(r.barriers):
            return None, None, 0
        k = first_step(r) if k is None else k
        n = int(r.barriers[(r.barriers.spawn_step == k)].replicate.nunique())
        return (*at_step(r, k), n)

    def claim(statement, quantity, value, rule, note) -> Claim:
        measured_, ci, n = value
        return Claim(source, statement, quantity, measured_, ci, rule, note, n=n)

    rows = []
    for name, r in results.items():
        rows.append(claim(
            f"{name} is unstable at initialization: two copies from one random initialization, "
            "trained on different data orders, end separated by a barrier",
            f"{name}, k = 0, test PPL barrier", at(ends(r), 0), "unstable",
            "the source: one pair per model, cross-entropy read off its plots; here pairs with "
            "seeded data orders and a CI"))
    first = results.get(c.models[0])
    if first is not None:
        e = early(first)
        step = int(e.barriers.k2.iloc[0]) if len(e.barriers) else None
        rows.append(claim(
            "MinGPT's two copies are already separated by a barrier at iteration 500 of 3,000 "
            "(train cross-entropy 4.0 at the ends, 6.88 at the peak)",
            f"{c.models[0]}, the k = 0 pair after {step} of {c.train.max_iters} steps, test PPL "
            "barrier", at(e, 0), "unstable",
            "MinGPT (30M, GPT-2 BPE) in the source; here the sweep's first model at the same "
            "fraction of its run"))
        for name, r in results.items():
            k = last_step(ends(r))
            if k > 0:
                rows.append(claim(
                    f"{name} is stable during training: copies that share the first part of "
                    "training are linearly connected",
                    f"{name}, k = {k}, test PPL barrier", at(ends(r), k), "stable",
                    "the source had no spawn at k (its later checkpoints are the same two runs); "
                    "its statement rests on fine-tuning"))
    if finetuned:
        pre, scratch = ends(finetuned["pretrained"]), ends(finetuned["scratch"])
        rows.append(claim(
            "GPT-2 (124M) fine-tuned from its pretrained weights is linearly connected",
            f"fine-tuned from the pretrained {c.finetune.model}, k = 0, test PPL barrier",
            at(pre), "stable", "offline the start is a CPU-sized model pretrained here on Penn "
            "Treebank, not the hub's GPT-2"))
        rows.append(claim(
            "the same architecture trained from a random initialization is not: its copies are "
            "separated by a barrier", f"{c.finetune.model} from scratch (the control), k = 0, "
            "test PPL barrier", at(scratch), "unstable",
            "the control has the fine-tuned model's shape, tokenizer, recipe and data-order seeds"))
        d = contrast(finetuned).set_index("column").loc["relative_ppl_barrier"]
        rows.append(Claim(source, "a pretrained start is what makes the copies connected: the "
                          "barrier of copies from scratch exceeds that of fine-tuned copies",
                          "scratch − fine-tuned, test PPL barrier, paired at matched seeds",
                          float(d.difference), float(d.ci), ">0",
                          "the source compared one GPT-2 fine-tuning with separately trained "
                          "small models; here pair i of both starts shares its data orders",
                          n=int(d.n)))
    return rows


def pair_runs(setup: Setup, init: int, k: int) -> tuple[Run, Run]:
    """The two runs of `pair_study`'s pair of initialization `init` at spawn step `k` (compared
    at the end): the trunk and its child, described, not trained."""
    trunk, total = setup.trunk(init), setup.total_steps
    return trunk, setup.child(trunk, k, total, "branch", init, k, total - k)


def pair_slider(setup: Setup, results: Results, view: Any, k: int = 0, *, init: int = 0,
                device: str = "cpu", title: str = ""):
    """The α-slider of `pair_study`'s pair of initialization `init` spawned at `k`."""
    from ..book.widgets import alpha_slider

    a, b = (run.weights() for run in pair_runs(setup, init, k))
    c = ends(results).curves
    curve = c[(c.spawn_step == k) & (c.replicate == init) & (c.pair == 0)]
    return alpha_slider(curve, build(setup.net, setup.data_dir).to(device), a, b, view,
                        title=title or f"{setup.model}, the pair spawned at k={k}")
