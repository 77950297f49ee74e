"""Per-epoch hooks for whoever runs a training job: a sweeper's pruner listens here, so the trainer and
the entry point know nothing of Optuna and the sweeper nothing of the trainer.

    with hooks.listening(report):     # the sweeper, around the job
        run(cfg)                      # the entry point passes hooks.epoch_ended to fit()
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

EpochHook = Callable[[int, dict], None]
_listeners: list[EpochHook] = []


@contextmanager
def listening(hook: EpochHook) -> Iterator[None]:
    """Call `hook(epoch, metrics)` after every epoch trained inside this block (in this process)."""
    _listeners.append(hook)
    try:
        yield
    finally:
        _listeners.remove(hook)


def epoch_ended(epoch: int, metrics: dict) -> None:
    """Tell every listener; a listener may raise (a pruner stops the trial that way)."""
    for hook in list(_listeners):
        hook(epoch, metrics)
