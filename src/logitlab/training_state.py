"""A run's training state beyond the model and optimizer: where it stands (Position), the plain facts so
far (Record), and its random number generators (Randomness). Each is a stateful object with state_dict /
load_state_dict, so the trainer saves and restores the whole state with one loop."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor


@dataclass
class Record:
    """The plain facts of a run so far: per-epoch metrics, the best epoch by the objective, seconds trained."""

    history: list[dict] = field(default_factory=list)
    best: dict | None = None  # the best epoch's metrics, with its "epoch"
    train_seconds: float = 0.0
    stopped_early: bool = False  # trainer.patience epochs passed without a better objective

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        self.history, self.best, self.train_seconds = state["history"], state["best"], state["train_seconds"]
        self.stopped_early = state.get("stopped_early", False)


@dataclass
class Position:
    """Where training stands: `epoch` epochs are done; inside the next one, `step` batches of `perm`.

    Each step appends its loss and predicted classes (device tensors, no sync); `correct` counts the right
    predictions of the steps before the first of `preds` (a mid-epoch checkpoint's count when resuming)."""
    labels: Tensor  # the training labels, to count right predictions
    batch_size: int
    epoch: int = 0
    step: int = 0
    perm: Tensor | None = None
    losses: list[Tensor] = field(default_factory=list)
    preds: list[Tensor] = field(default_factory=list)
    correct: Tensor | None = None

    def count_correct(self) -> Tensor:
        """Right predictions so far in this epoch: one comparison over the steps since the last count."""
        if self.preds:
            bs, first = self.batch_size, self.step - len(self.preds)
            right = (torch.cat(self.preds) == self.labels[self.perm[first * bs:self.step * bs]]).sum()
            self.correct = right if self.correct is None else self.correct + right
            self.preds = []
        return self.correct

    def next_epoch(self) -> None:
        self.epoch, self.step, self.perm, self.losses, self.preds, self.correct = self.epoch + 1, 0, None, [], [], None

    def state_dict(self) -> dict:
        mid_epoch = {}
        if self.step:  # an epoch cut short by a signal: keep its order and partial sums
            mid_epoch = dict(perm=self.perm.cpu(), losses=torch.stack(self.losses).cpu(),
                             correct=self.count_correct().cpu())
        return dict(epoch=self.epoch, step=self.step, mid_epoch=mid_epoch)

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step = state["epoch"], state["step"]
        if self.step:
            m, dev = state["mid_epoch"], self.labels.device
            self.perm, self.correct = m["perm"].to(dev), m["correct"].to(dev)
            self.losses = list(m["losses"].to(dev).unbind())


class Randomness:
    """torch's global RNG (dropout), the shuffle order's generator and CUDA's RNGs, as one stateful object.
    A variant of a fused group draws its dropout masks from a `dropout` generator of its own instead of
    the global one; its checkpoint keeps that generator's state where a solo run keeps the global one's."""

    def __init__(self, shuffle: torch.Generator, dropout: torch.Generator | None = None):
        self.shuffle, self.dropout = shuffle, dropout

    def state_dict(self) -> dict:
        dropout = self.dropout.get_state() if self.dropout is not None else torch.get_rng_state()
        state = {"torch": dropout, "shuffle": self.shuffle.get_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.dropout is not None:
            self.dropout.set_state(state["torch"])
        else:
            torch.set_rng_state(state["torch"])
        self.shuffle.set_state(state["shuffle"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def copied(obj):
    """`obj` with every tensor cloned (a state_dict that training would otherwise change under it)."""
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        out = type(obj)((k, copied(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a module state_dict's layer versions, read by load_state_dict
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(copied(v) for v in obj)
    return obj
