"""hahacen's word-level language model (the PyTorch word-LM tutorial's transformer).

Token embedding scaled by √d plus sinusoidal positions, dropout, `nn.TransformerEncoder` (post-LN,
ReLU, causal mask), an untied linear decoder. Embedding and decoder weights ~ U(±0.1), decoder bias
0; the encoder keeps PyTorch's own initialization. The position table is a non-persistent buffer:
a function of the config, it is not in the state dict, so interpolation touches parameters only.
Dropout draws from torch's global generator: inside `lmcnb.train.Trainer`, the run's dropout stream.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TransformerLMConfig:
    vocab_size: int = 10000  # PTB: 9,999 words incl. <unk>, plus <eos>
    d_model: int = 200  # embedding and residual width
    n_head: int = 2
    d_ff: int = 200  # feed-forward hidden width
    n_layer: int = 2
    dropout: float = 0.2  # after the positions, and inside every encoder layer
    max_len: int = 5000  # longest sequence the position table covers


def sinusoidal_positions(max_len: int, d_model: int) -> torch.Tensor:
    """(max_len, d_model): sin at even, cos at odd features, wavelengths 2π … 10000·2π."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))  # (⌈d/2⌉,)
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[:d_model // 2])
    return table


class TransformerLM(nn.Module):
    """Token ids (B, T) or chunks (B, streams, T) → next-token logits (…, T, vocab_size)."""

    def __init__(self, cfg: TransformerLMConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.register_buffer("positions", sinusoidal_positions(cfg.max_len, cfg.d_model),
                             persistent=False)
        self.dropout = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_head, cfg.d_ff, cfg.dropout,
                                           activation="relu", batch_first=True, norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layer, enable_nested_tensor=False)
        self.decoder = nn.Linear(cfg.d_model, cfg.vocab_size)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead, t = x.shape[:-1], x.shape[-1]  # (B,) or (B, S); T
        if t > self.cfg.max_len:
            raise ValueError(f"sequence of {t} tokens is longer than max_len={self.cfg.max_len}")
        x = x.reshape(-1, t)  # (N, T), N = B·S
        h = self.embed(x) * math.sqrt(self.cfg.d_model) + self.positions[:t]  # (N, T, d)
        mask = nn.Transformer.generate_square_subsequent_mask(t, x.device, h.dtype)  # (T, T)
        h = self.encoder(self.dropout(h), mask=mask, is_causal=True)  # (N, T, d)
        return self.decoder(h).view(*lead, t, -1)  # (…, T, V)


def param_count(cfg: TransformerLMConfig) -> int:
    """Embedding V·d + decoder (d + 1)·V + per layer: attention 4d² + 4d, feed-forward
    2·d·d_ff + d_ff + d, two LayerNorms 4d."""
    d, f = cfg.d_model, cfg.d_ff
    layer = (4 * d * d + 4 * d) + (2 * d * f + f + d) + 4 * d
    return cfg.vocab_size * d + (d + 1) * cfg.vocab_size + cfg.n_layer * layer


def forward_flops_per_token(cfg: TransformerLMConfig, seq_len: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of one token's forward pass: per layer Q, K, V and output
    projections 8d², feed-forward 4·d·d_ff, scores QKᵀ and weighted values 4·T·d over the full
    T×T (as dense attention computes them); decoder 2·d·V."""
    d = cfg.d_model
    layer = 8 * d * d + 4 * d * cfg.d_ff + 4 * seq_len * d
    return cfg.n_layer * layer + 2 * d * cfg.vocab_size
