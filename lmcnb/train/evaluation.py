"""The loss and the error of a model on data, as training and every evaluation compute them.

Classifiers and language models are evaluated alike: a model maps x to logits (or to an output
with `.logits`), the loss is the cross-entropy of the flattened logits against the flattened
targets, the error the top-1 error over every target (every next token of a language model).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data.tensors import TensorData


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's logits for `x`: its output, or the output's `.logits` (`transformers`)."""
    out = model(x)
    return out.logits if hasattr(out, "logits") else out


def summed_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over every prediction in the batch (what training minimizes)."""
    return F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="sum")


def loss_and_errors(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed cross-entropy and summed top-1 errors over every prediction in the batch."""
    errors = (logits.flatten(0, -2).argmax(-1) != y.flatten()).sum()
    return summed_loss(logits, y), errors


def per_example(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each example's mean cross-entropy and top-1 error over its predictions (one for a
    classifier, every next token of a language model's block), in float64 on the CPU (MPS has no
    float64)."""
    n = y.shape[0]
    flat = logits.flatten(0, -2)
    loss = F.cross_entropy(flat, y.flatten(), reduction="none").view(n, -1)
    wrong = flat.argmax(-1) != y.flatten()
    return loss.cpu().double().mean(1), wrong.view(n, -1).cpu().double().mean(1)


@dataclass(frozen=True)
class Evaluation:
    """Mean cross-entropy and error over every prediction of a split; each example's mean loss and
    error (`per_example`, float64: what a bootstrap over the evaluation examples resamples); and
    (when asked for) the top-1 predictions, flattened in the order of the data.

    `loss` and `error` are sums over the batches in a fixed order, not means of the per-example
    values: the numbers training and every table have always read.
    """

    loss: float
    error: float
    example_loss: torch.Tensor
    example_error: torch.Tensor
    predictions: torch.Tensor | None = None


@torch.inference_mode()
def evaluate(model: nn.Module, data: TensorData, batch_size: int = 1000,
             predictions: bool = False) -> Evaluation:
    """The `Evaluation` of `model` on `data` (model in eval mode, `batch_size` examples per
    forward, under the fixed CPU thread budget)."""
    from ..core.device import task_threads

    was_training = model.training
    model.eval()
    loss = errors = 0.0
    preds, ex_loss, ex_error = [], [], []
    n = 0
    with task_threads():
        for start in range(0, len(data), batch_size):
            x, y = data.x[start:start + batch_size], data.y[start:start + batch_size]
            logits = logits_of(model, x)
            l_sum, e_sum = loss_and_errors(logits, y)
            loss, errors, n = loss + float(l_sum), errors + float(e_sum), n + y.numel()
            for out, value in zip((ex_loss, ex_error), per_example(logits, y)):
                out.append(value)
            if predictions:
                preds.append(logits.argmax(-1).flatten())
    model.train(was_training)
    return Evaluation(loss / n, errors / n, torch.cat(ex_loss), torch.cat(ex_error),
                      torch.cat(preds) if predictions else None)
