"""Re-normalizing an interpolated network: BatchNorm statistics recomputed on training data
(REPAIR's "reset BN" baseline).
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.tensors import TensorData
from ..train.evaluation import logits_of


@torch.no_grad()
def reset_batchnorm(model: nn.Module, data: TensorData, batch_size: int = 500) -> None:
    """REPAIR's "reset BN": recompute running statistics on `data` in train mode, no gradients."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the reset batches
    was_training = model.training
    model.eval()  # only the norms in train mode: dropout stays off and draws no random numbers
    for m in norms:
        m.train()
    for start in range(0, len(data), batch_size):
        logits_of(model, data.x[start:start + batch_size])
    model.train(was_training)
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
