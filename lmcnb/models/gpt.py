"""GPT-2-style decoders through `transformers`: named shapes, building, pretrained checkpoints
and text samples.

Every model is a `GPT2LMHeadModel`, so a checkpoint saved here loads with
`GPT2LMHeadModel.from_pretrained(<dir>)` exactly like the hub's `"gpt2"`. `transformers` is
imported by the functions that build or load one, not with the module (it takes about a second).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..core.hub import from_hub

if TYPE_CHECKING:
    from transformers import GPT2Config, GPT2LMHeadModel

    from ..data.tokenizers import Tokenizer

# GPT-2 uses GELU's tanh approximation ("gelu_new"); models trained here use the exact GELU,
# whose CPU kernel measured about 4x faster (a pretrained GPT-2 keeps its own activation).
ACTIVATION = "gelu"


@dataclass(frozen=True)
class GPTConfig:
    """A decoder's shape and the tokenization it is meant for ("char" or "bpe")."""

    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    tokenizer: str = "bpe"
    dropout: float = 0.0


GPT_CONFIGS = {
    "GPT2": GPTConfig(12, 12, 768, 1024, "bpe"),  # 124M with GPT-2's 50257 tokens
    "MinGPT": GPTConfig(6, 6, 384, 256, "bpe"),  # 30M
    "CompactGPT": GPTConfig(6, 6, 192, 64, "bpe"),  # 12M
    "ToyGPT": GPTConfig(4, 4, 32, 8, "bpe"),
    "TinyGPT": GPTConfig(4, 4, 64, 8, "char"),
    "CPUGPT": GPTConfig(4, 4, 128, 64, "char"),  # the CPU-sized character model
}


def gpt_config(name: str) -> GPTConfig:
    if name not in GPT_CONFIGS:
        raise ValueError(f"unknown model_config {name!r}; valid: {', '.join(GPT_CONFIGS)}")
    return GPT_CONFIGS[name]


def hf_config(cfg: GPTConfig, vocab_size: int) -> GPT2Config:
    """The `transformers` configuration of `cfg` for a vocabulary of `vocab_size` tokens."""
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                      n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=cfg.dropout,
                      embd_pdrop=cfg.dropout, attn_pdrop=cfg.dropout,
                      activation_function=ACTIVATION, use_cache=False, bos_token_id=None,
                      eos_token_id=None)


def count_flops(config: GPT2Config, tokens_per_sequence: int | None = None) -> dict[str, float]:
    """Analytic forward FLOPs per token (a multiply-add counts 2), and the parameter counts.

    matmul weights per layer: 12·d² (qkv 3d², projection d², MLP 8d²); LM head d·V.
    forward/token = 2·(12·L·d² + d·V) + 4·L·T·d, the last term for QKᵀ and A·V over the full
    T×T score matrix (what dense attention kernels compute). Training = 3 × forward.
    Layer norms, softmax, GELU, biases and embedding lookups are left out (about 2% for CPUGPT).
    """
    L, d, V = config.n_layer, config.n_embd, config.vocab_size
    T = tokens_per_sequence or config.n_positions
    matmul_params = 12 * L * d * d + d * V
    forward = 2 * matmul_params + 4 * L * T * d
    return {"forward_per_token": forward, "train_per_token": 3 * forward,
            "matmul_params": matmul_params}


def build_gpt(config: GPT2Config) -> GPT2LMHeadModel:
    """A freshly initialized GPT-2 (draws from torch's global RNG: call it in the init stream)."""
    from transformers import GPT2LMHeadModel

    return GPT2LMHeadModel(config)


def load_pretrained(source: str, dropout: float | None = 0.0) -> GPT2LMHeadModel:
    """`GPT2LMHeadModel.from_pretrained(source)` for a hub id ("gpt2") or a local directory, with
    every dropout rate set to `dropout` (the source fine-tuned without any; the hub's GPT-2
    config says 0.1); `None` keeps the checkpoint's own."""
    from transformers import GPT2LMHeadModel

    rates = {} if dropout is None else dict.fromkeys(("resid_pdrop", "embd_pdrop", "attn_pdrop"),
                                                     dropout)
    model = from_hub(GPT2LMHeadModel, source, **rates)
    model.config.use_cache = False
    return model


def load_tokenizer(source: str):
    """The tokenizer stored with a pretrained model (hub id or local directory)."""
    from transformers import AutoTokenizer

    return from_hub(AutoTokenizer, source)


def save_pretrained(model: GPT2LMHeadModel, tokenizer, folder: str | Path) -> Path:
    """Save model (safetensors) and tokenizer the way the hub stores them."""
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@torch.inference_mode()
def sample(model: GPT2LMHeadModel, tokenizer: Tokenizer, prompt: str, max_new_tokens: int,
           seed: int, temperature: float = 1.0) -> str:
    """Continue `prompt` by sampling; the same `seed` gives the same uniform draws for any model."""
    from ..data.tokenizers import encode

    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    block = model.config.n_positions
    ids = encode(tokenizer, prompt)[None].to(device)
    start = ids.shape[1]
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        logits = model(ids[:, -block:]).logits[0, -1].float().cpu()
        nxt = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=gen)
        ids = torch.cat([ids, nxt.to(device)[None]], dim=1)
    model.train(was_training)
    return tokenizer.decode(ids[0, start:].tolist())


CONFIG_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "resid_pdrop",
               "embd_pdrop", "attn_pdrop", "activation_function", "layer_norm_epsilon",
               "initializer_range")


def config_args(config: GPT2Config) -> dict[str, Any]:
    """The arguments that rebuild `config`'s architecture (what a `gpt` registry entry takes)."""
    return {**{k: getattr(config, k) for k in CONFIG_KEYS}, "use_cache": False,
            "bos_token_id": None, "eos_token_id": None}
