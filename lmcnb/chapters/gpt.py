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

import torch

from ..book.params import ChapterConfig, Section, Steps, param
from ..book.report import Claim, at_step, k_star_text, pct
from ..core.files import folder_lock
from ..core.ref import Ref
from ..core.rng import Seeds
from ..data.tokenizers import encode, tokenizer_id
from ..experiments.catalog import build
from ..experiments.executors import Task, get_executor
from ..experiments.runs import Run, RunSpec
from ..experiments.setup import Setup
from ..experiments.study import Results
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
    n_children: int = param("children per spawn step", min=2)
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
                  n_alpha=30, n_inits=3, seed=0, prompt="ROMEO:\n", sample_tokens=60,
                  finetune=dict(enabled=True, source="gpt2", model="GPT2", spawn_steps=[0, 300],
                                n_children=3, eval_iters="all",
                                train=dict(batch_size=8, sim_batch_size=32, max_iters=1000,
                                           warmup_steps=50, lr=1e-4, min_lr=1e-5, **ADAM)),
                  pretrain=dict(max_iters=None, lr=None, vocab=None, chars=None)),
    "book": dict(model=["CPUGPT", "TinyGPT"], dataset="shakespeare",
                 train=dict(batch_size=16, sim_batch_size=16, max_iters=300, warmup_steps=30,
                            lr=3e-3, min_lr=3e-4, **ADAM),
                 spawn_steps=[0, 25, 100], eval_iters=2, eval_tokens=4096, n_alpha=30,
                 n_inits=3, seed=0, prompt="ROMEO:\n", sample_tokens=100,
                 finetune=dict(enabled=True, source=OWN_PTB, model="CPUGPT", spawn_steps=[0],
                               n_children=3, eval_iters=1,
                               train=dict(batch_size=16, sim_batch_size=16, max_iters=150,
                                          warmup_steps=15, lr=3e-3, min_lr=3e-4, **ADAM)),
                 pretrain=dict(max_iters=500, lr=3e-3, vocab=2048, chars=None)),
    "smoke": dict(model=["CPUGPT", "TinyGPT"], dataset="shakespeare",
                  train=dict(batch_size=8, sim_batch_size=8, max_iters=6, warmup_steps=2, lr=3e-3,
                             min_lr=3e-4, **ADAM),
                  spawn_steps=[0, 3], eval_iters=1, eval_tokens=1024, n_alpha=5, n_inits=2,
                  seed=0, prompt="ROMEO:\n", sample_tokens=24,
                  finetune=dict(enabled=True, source=OWN_PTB, model="CPUGPT", spawn_steps=[0],
                                n_children=2, eval_iters=1,
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
        return publish(Path(runs_dir) / "pretrained" / spec.run_id, save, valid)


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


def summary(c: Config, measured: Mapping[str, Any]) -> dict[str, str]:
    """The numbers the prose states: R at the first and last spawn step per split, k*, and the
    fine-tuned against the scratch R. `measured["spawn"]`: the sweep's studies per model;
    `measured["finetuned"]`: the "pretrained" and "scratch" studies (or {})."""
    out = {}
    for name, r in measured["spawn"].items():
        ks = sorted(r.barriers.spawn_step.unique())
        for split in ("train", "test"):
            out |= {f"{name}_R_first_{split}": pct(*at_step(r, int(ks[0]), split)),
                    f"{name}_R_last_{split}": f"{pct(*at_step(r, int(ks[-1]), split))} "
                                              f"(k = {ks[-1]})",
                    f"{name}_kstar_{split}": k_star_text(r.onset(split))}
    for start, r in (measured.get("finetuned") or {}).items():
        out[f"ft_R_{start}"] = pct(*at_step(r, int(r.barriers.spawn_step.min())))
    return out


def claims(c: Config, measured: Mapping[str, Any]) -> list[Claim]:
    """james-hx-song's statements against this chapter's measurements (see `summary`)."""
    results: dict[str, Results] = measured["spawn"]
    finetuned: dict[str, Results] = measured.get("finetuned") or {}

    def at(name: str, k: int | None = None, split: str = "test"):
        r = results.get(name)
        if r is None or (k is not None and k not in set(r.barriers.spawn_step)):
            return None, None
        return at_step(r, int(r.barriers.spawn_step.min()) if k is None else k, split)

    differs = ("no spawn-at-k (copies resumed their own checkpoints with a fresh Adam), no seeds, "
               "and gradient accumulation reused one batch")
    rows = [Claim("james-hx-song", f"{n} unstable when both copies start at the same random "
                  "initialization", f"{n}, test R at the first k", *at(n), "unstable", differs)
            for n in results]
    rows.append(Claim("james-hx-song", "MinGPT unstable when spawned at iteration 500",
                      "MinGPT, test R at k = 500", *at("MinGPT", 500), "unstable",
                      "measured only by the paper profile"))
    if finetuned:
        pre = finetuned["pretrained"]
        rows.append(Claim("james-hx-song", "GPT-2 124M fine-tuned from its pretrained weights is "
                          "linearly connected", "fine-tuned from the pretrained start, test R",
                          *at_step(pre, int(pre.barriers.spawn_step.min())), "stable",
                          "offline the start is a CPU-sized model pretrained here on Penn "
                          "Treebank, not the hub's GPT-2"))
    return rows
