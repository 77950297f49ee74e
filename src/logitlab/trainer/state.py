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
    predictions of the steps before the first of `preds` (a mid-epoch checkpoint's count when resuming).

    Data-parallel, rank r of `world_size` trains on batch[r::world_size] of every batch: its losses are its
    part of each batch mean and its counts its own, which the trainer sums over the ranks; a checkpoint
    holds the sums (rank 0 carries them on when resuming, the others start that epoch from zero)."""
    labels: Tensor  # the training labels, to count right predictions
    batch_size: int
    rank: int = 0
    world_size: int = 1
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
            idx = self.perm[first * bs:self.step * bs]
            if self.world_size > 1:  # this rank's examples of each of those batches
                idx = idx[torch.arange(len(idx), device=idx.device) % bs % self.world_size == self.rank]
            right = (torch.cat(self.preds) == self.labels[idx]).sum()
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
            if self.rank:
                self.losses, self.correct = [torch.zeros_like(x) for x in self.losses], torch.zeros_like(self.correct)


class Randomness:
    """torch's global RNG (dropout), the shuffle order's generator and CUDA's RNGs, as one stateful object.
    A variant of a fused group draws its dropout masks from a `dropout` generator of its own instead of
    the global one; its checkpoint keeps that generator's state where a solo run keeps the global one's.

    Data-parallel, every rank shuffles alike (the same `shuffle` seed), and rank r of `world_size` draws
    its dropout masks from a stream of its own (rank 0 from the one a solo run has). The trainer gathers
    every rank's `own_streams()` into `ranks` for rank 0's checkpoint; resumed under the same number of
    ranks each takes its own back, under another each rank > 0 starts a stream of its own again. The
    augmentation's `augment` generator is shared like the shuffle: every rank draws the whole batch's
    parameters and applies its share, so the draws do not depend on the number of ranks."""

    def __init__(self, shuffle: torch.Generator, dropout: torch.Generator | None = None, rank: int = 0,
                 world_size: int = 1, augment: torch.Generator | None = None):
        self.shuffle, self.dropout, self.rank, self.world_size = shuffle, dropout, rank, world_size
        self.augment = augment  # the augmentation's draws (a run with augment=none has none)
        self.ranks: list[dict] | None = None
        if rank:
            self._own_stream()

    def state_dict(self) -> dict:
        dropout = self.dropout.get_state() if self.dropout is not None else torch.get_rng_state()
        state = {"torch": dropout, "shuffle": self.shuffle.get_state()}
        if self.augment is not None:
            state["augment"] = self.augment.get_state()
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        if self.ranks is not None:
            state["ranks"] = self.ranks
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.dropout is not None:
            self.dropout.set_state(state["torch"])
        else:
            torch.set_rng_state(state["torch"])
        self.shuffle.set_state(state["shuffle"])
        if self.augment is not None:
            self.augment.set_state(state["augment"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        if self.world_size == 1:
            return
        ranks = state.get("ranks")
        if ranks is not None and len(ranks) == self.world_size:
            torch.set_rng_state(ranks[self.rank]["torch"])
            if "cuda" in ranks[self.rank] and torch.cuda.is_available():
                torch.cuda.set_rng_state(ranks[self.rank]["cuda"])
        elif self.rank:  # a checkpoint of one process, or of another number of them
            self._own_stream()

    def own_streams(self) -> dict:
        """This process's dropout streams: torch's global RNG, and its GPU's."""
        own = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            own["cuda"] = torch.cuda.get_rng_state()  # the current device: this rank's (distributed.World)
        return own

    def _own_stream(self) -> None:
        """Seed torch's RNGs from the stream every rank shares (a draw of it) and this rank: so each rank's
        masks differ, and a rerun repeats them."""
        torch.manual_seed(int(torch.randint(2**62, ())) + self.rank)


def augment_stream(seed: int) -> torch.Generator:
    """The generator of a run's augmentation draws: its own stream of `seed`, apart from the shuffle's
    (seeded with `seed` itself), so turning augmentation on leaves the run's order as it was."""
    import numpy as np

    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 0xA06]).generate_state(1, np.uint64)[0]))


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
