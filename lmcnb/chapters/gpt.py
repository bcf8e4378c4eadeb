"""The GPT chapter as data: james-hx-song's study of GPT-2-style decoders on Tiny Shakespeare, its
recipe, the setups of the sweep and of fine-tuning from a pretrained start, the claims.

Every model is a `GPT2LMHeadModel` (`lmcnb.models.gpt`); a model pretrained here is saved like a
hub checkpoint and loaded with `from_pretrained(<dir>)`.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import GPT2Config

from ..book.report import Claim, at_step, k_star_text, pct
from ..core.checks import at_least, choose
from ..core.files import folder_lock
from ..core.ref import Ref
from ..core.rng import Seeds
from ..data.text import token_windows
from ..data.tokenizers import Tokenizer, encode, tokenizer_id
from ..experiments.catalog import build
from ..experiments.runs import Run, RunSpec
from ..experiments.setup import Setup
from ..experiments.study import Results
from ..lmc.interpolate import alpha_grid
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


def pretrain(model: str, tokenizer, text: str, train: TrainConfig, runs_dir: str | Path, *,
             dataset: str, device: str = "cpu", seed: int = 0) -> Path:
    """Train `GPT_CONFIGS[model]` on `text` as a resumable lmcnb run; save it like a hub checkpoint.

    Returns `<runs_dir>/pretrained/<run id>`, which `load_pretrained` and `load_tokenizer` read.
    The folder is written atomically under the run's lock and checked against the run's weights
    at every call: a damaged one is rebuilt.
    """
    cfg = gpt_config(model)
    config = hf_config(cfg, len(tokenizer))
    data = token_windows(encode(tokenizer, text), cfg.block_size)
    spec = RunSpec(model, dataset, train, Seeds.from_base(seed, "pretrain"),
                   model_args=_identity(config, tokenizer, None, cfg.block_size))
    run = Run(spec, Path(runs_dir) / "train", lambda: build_gpt(config), data, device)
    weights = run.ensure_weights()  # trained here; a damaged checkpoint is re-made

    def save(folder: Path) -> None:
        with torch.random.fork_rng():
            net = build_gpt(config)
        net.load_state_dict(weights)
        save_pretrained(net, tokenizer, folder)

    def valid(folder: Path) -> bool:
        return (same_weights(folder, weights)
                and tokenizer_id(load_tokenizer(str(folder))) == tokenizer_id(tokenizer))

    with folder_lock(run.dir):
        return publish(Path(runs_dir) / "pretrained" / spec.run_id, save, valid)


def lm_train_config(*, batch_size: int, sim_batch_size: int, max_iters: int, warmup_steps: int,
                    max_steps: int | None = None, lr: float, min_lr: float,
                    optimizer: str = "adam", weight_decay: float = 0.0,
                    log_every: int = 50) -> TrainConfig:
    """The source's recipe: Adam β = (0.9, 0.95), no weight decay, warmup then cosine from `lr`
    to `min_lr`, clip 1.0, and `sim_batch_size / batch_size` accumulated micro-batches per
    optimizer step (each a fresh batch). `optimizer="adamw"` with `weight_decay` is the usual
    alternative.

    `max_steps` (the end of the cosine) must equal `max_iters`: lmcnb's cosine spans the whole run.
    """
    for name, value, minimum in (("batch_size", batch_size, 1),
                                 ("sim_batch_size", sim_batch_size, 1),
                                 ("max_iters", max_iters, 1), ("warmup_steps", warmup_steps, 0),
                                 ("log_every", log_every, 1)):
        at_least(name, value, minimum)
    choose("optimizer", optimizer, ("adam", "adamw"))
    if sim_batch_size % batch_size:
        raise ValueError(f"sim_batch_size ({sim_batch_size}) must be a multiple of "
                         f"batch_size ({batch_size})")
    if max_steps is not None and max_steps != max_iters:
        raise ValueError(f"max_steps ({max_steps}) must equal max_iters ({max_iters}): "
                         "the cosine decay spans the whole run")
    return TrainConfig(batch_size=batch_size, max_steps=max_iters, optimizer=optimizer, lr=lr,
                       min_lr=min_lr, betas=(0.9, 0.95), weight_decay=weight_decay,
                       schedule="cosine", warmup_steps=warmup_steps, grad_clip=1.0,
                       accum_steps=sim_batch_size // batch_size,
                       eval_every=max(1, min(log_every, max_iters)))


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
             train_stride: int | None = None, eval_batch_tokens: int = 8192,
             chars: int | None = None, data_dir: str | None = None,
             **setup_kwargs: Any) -> Setup:
    """A language-model `Setup`: token windows of both splits of `corpus` (their first `chars`
    characters if given) under `tokenizer`, and a GPT built from `config` (random init) or loaded
    from `pretrained` (k counts fine-tuning steps).

    Training windows start every `train_stride` tokens (default: non-overlapping); test windows
    never overlap. An evaluation batch holds about `eval_batch_tokens` tokens, so `eval_iters`
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
                      block=block, stride=step, chars=chars)

    return Setup(chapter=chapter, model=model, dataset=corpus, net=net,
                 train_data=windows("train", stride), test_data=windows("test", None), train=train,
                 runs_dir=str(runs_dir), model_args=_identity(config, tok, pretrained, stride),
                 language_model=True, eval_batch_size=max(1, eval_batch_tokens // block),
                 data_dir=data_dir, **setup_kwargs)


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


OWN_PTB = "own:ptb"  # pretrain here on Penn Treebank, then load that directory


ALIASES = {  # the source's flag names
    "model_config": "model", "model_iters": "spawn_steps", "max_iters": "train.max_iters",
    "warmup_steps": "train.warmup_steps", "max_steps": "train.max_steps",
    "sim_batch_size": "train.sim_batch_size", "fine_tune": "finetune.enabled",
    "pretrained": "finetune.source",
}


def check(p: Any) -> None:
    """Every parameter of the chapter, checked before anything trains (`p.model` becomes a list)."""
    from ..core.checks import batches_or_all, flag, pretrained_source
    from ..core.steps import step_list
    from ..data.text import TEXT_DATASETS, require_text
    from ..experiments.executors import get_executor

    p.model = [p.model] if isinstance(p.model, str) else list(p.model)
    for name in p.model:
        gpt_config(name)
    choose("dataset", p.dataset, TEXT_DATASETS)
    require_text(p.dataset, p.data_dir)
    alpha_grid(p.n_alpha)
    at_least("n_inits", p.n_inits, 1)
    batches_or_all("eval_iters", p.eval_iters)
    step_list("spawn_steps", p.spawn_steps)
    get_executor(p.executor)
    lm_train_config(**p.train)
    ft = p.finetune
    if flag("fine_tune", ft["enabled"]):
        gpt_config(ft["model"])
        if ft["source"] == OWN_PTB:
            require_text("ptb", p.data_dir)
        else:
            pretrained_source("pretrained", ft["source"])
        batches_or_all("finetune eval_iters", ft["eval_iters"])
        step_list("finetune spawn_steps", ft["spawn_steps"])
        at_least("finetune n_children", ft["n_children"], 2)
        lm_train_config(**ft["train"])


def sweep_setups(p: Any, tokenizers: dict[str, Ref]) -> dict[str, Setup]:
    """The spawn study of every model of the sweep, on `p.dataset`."""
    setups = {}
    for name in p.model:
        cfg = gpt_config(name)
        tok = build(tokenizers[cfg.tokenizer], p.data_dir)
        setups[name] = lm_setup("gpt_shakespeare", name, hf_config(cfg, len(tok)),
                                tokenizers[cfg.tokenizer], p.dataset, lm_train_config(**p.train),
                                p.runs_dir, eval_iters=p.eval_iters,
                                eval_batch_tokens=p.eval_batch_tokens, device=p.device or "auto",
                                data_dir=p.data_dir, seed=p.seed, n_alpha=p.n_alpha)
        setups[name].steps(p.spawn_steps)
    return setups


def pretrained_start(p: Any) -> str:
    """The fine-tuning section's starting point: a hub id or directory as given, or for
    `"own:ptb"` a model of the section's shape pretrained here on Penn Treebank."""
    from ..data.text import load_text
    from ..data.tokenizers import train_bpe

    ft, pt = p.finetune, p.pretrain
    if ft["source"] != OWN_PTB:
        return ft["source"]
    ptb = load_text("ptb", "train", p.data_dir)[:pt["chars"]]
    recipe = lm_train_config(**{**ft["train"], "max_iters": pt["max_iters"], "max_steps": None,
                                "warmup_steps": max(1, pt["max_iters"] // 10), "lr": pt["lr"],
                                "min_lr": pt["lr"] / 10})
    return str(pretrain(ft["model"], train_bpe(ptb, pt["vocab"]), ptb, recipe, p.runs_dir,
                        dataset="ptb", device=p.device, seed=p.seed))


def finetune_setups(p: Any, source: str) -> dict[str, Setup]:
    """Fine-tuning from `source` and, as the control, training the same shape from scratch."""
    ft = p.finetune
    config = load_pretrained(source).config
    tokenizer = Ref.of("tokenizer", "pretrained", source=source)
    setups = {start: lm_setup("gpt_shakespeare", f"{ft['model']}-{start}", config, tokenizer,
                              p.dataset, lm_train_config(**ft["train"]), p.runs_dir,
                              pretrained=src, eval_iters=ft["eval_iters"],
                              eval_batch_tokens=p.eval_batch_tokens, device=p.device or "auto",
                              data_dir=p.data_dir, seed=p.seed, n_alpha=p.n_alpha)
              for start, src in {"pretrained": source, "scratch": None}.items()}
    for s in setups.values():
        s.steps(ft["spawn_steps"])
    return setups


def summary(results: dict[str, Results], finetuned: dict[str, Results] | None) -> dict[str, str]:
    """The numbers the prose states: R at the first and last spawn step per split, k*, and the
    fine-tuned against the scratch R."""
    out = {}
    for name, r in results.items():
        ks = sorted(r.barriers.spawn_step.unique())
        for split in ("train", "test"):
            out |= {f"{name}_R_first_{split}": pct(*at_step(r, int(ks[0]), split)),
                    f"{name}_R_last_{split}": f"{pct(*at_step(r, int(ks[-1]), split))} "
                                              f"(k = {ks[-1]})",
                    f"{name}_kstar_{split}": k_star_text(r.onset(split))}
    for start, r in (finetuned or {}).items():
        out[f"ft_R_{start}"] = pct(*at_step(r, int(r.barriers.spawn_step.min())))
    return out


def claims(results: dict[str, Results], finetuned: dict[str, Results] | None) -> list[Claim]:
    """james-hx-song's statements against this chapter's measurements."""
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


def describe_data(p: Any, tokenizers: dict[str, Ref]) -> str:
    """The corpus's size and, for every tokenizer the chapter uses, its size and test tokens."""
    from ..data.text import load_text

    train, test = (load_text(p.dataset, s, p.data_dir) for s in ("train", "test"))
    lines = [f"{p.dataset}: {len(train):,} training and {len(test):,} test characters"]
    for kind in dict.fromkeys(["char"] + [gpt_config(n).tokenizer for n in p.model]):
        tok = build(tokenizers[kind], p.data_dir)
        lines.append(f"{kind} tokenizer {tokenizer_id(tok)}: {len(tok)} tokens, "
                     f"{len(encode(tok, test)):,} test tokens")
    return "\n".join(lines)
