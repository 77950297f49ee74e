"""Scores from a model's raw logits: the batched eval-mode forward pass that training, evaluate, predict
and export share, the stable softmax, and mean cross-entropy / accuracy. Imports neither Hydra nor the
trainer, so anything that reports on a model can use it."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EVAL_BATCH = 4096  # examples per forward pass when scoring: bounded memory, few kernel launches


def as_float(z: Tensor) -> Tensor:
    """`z` in float32, or float64 where it is float64: half-precision (autocast) outputs are scored in
    float32, and a float64 model's are not rounded down to it."""
    return z if z.dtype == torch.float64 else z.float()


@torch.no_grad()
def logits(model: nn.Module, x: Tensor, autocast=None, prepare: Callable[[Tensor], Tensor] | None = None,
           batch: int = EVAL_BATCH) -> Tensor:
    """The model's raw outputs (N, num_classes) as float32 (`as_float`), in eval mode and in chunks of
    `batch` examples (trainer.eval_batch_size), each moved to the model's device (a split streamed from the
    host is never there whole) and made model inputs by `prepare` (SplitData.inputs: raw pixels normalised);
    the model's mode is restored."""
    device = next(model.parameters()).device
    prepare = prepare or (lambda chunk: chunk)
    was_training = model.training
    model.eval()
    try:
        with autocast or nullcontext():
            chunks = [as_float(model(prepare(x[i:i + batch].to(device)))) for i in range(0, len(x), batch)]
    finally:
        model.train(was_training)
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


def loss_and_right(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy and the number of right predictions of logits `z` against labels `y`, as
    0-d tensors on z's device (no host sync)."""
    return F.cross_entropy(z, y, reduction="sum"), (z.argmax(1) == y).sum()


def loss_and_accuracy(model: nn.Module, x: Tensor, y: Tensor, autocast=None, prepare=None,
                      batch: int = EVAL_BATCH) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on (x, y) (`logits`' arguments)."""
    loss_sum, right = loss_and_right(logits(model, x, autocast, prepare, batch), y.to(next(model.parameters()).device))
    return loss_sum.item() / len(y), right.item() / len(y)


def softmax(z: Tensor) -> Tensor:
    """Row-wise softmax. Subtracting the row maximum first means exp never overflows: [200, 10, -4]
    gives [1, 3e-83, 2.5e-89] in float64 and [1, 0, 0] in float32, never inf/inf = NaN."""
    e = (z - z.amax(dim=1, keepdim=True)).exp()
    return e / e.sum(dim=1, keepdim=True)


def probabilities(model: nn.Module, x: Tensor, dtype: torch.dtype = torch.float32, prepare=None,
                  batch: int = EVAL_BATCH) -> Tensor:
    """softmax(model(x)) per row, (N, num_classes), computed in `dtype` (float64 keeps tiny
    probabilities that float32 rounds to 0)."""
    return softmax(logits(model, x, prepare=prepare, batch=batch).to(dtype))
