"""The one objective of a run: the metric that picks best.pt, that the run returns, that the pruner
judges and that a sweep ranks by, with the direction that makes it better. Plain Python: the sweeper,
the trainer and the reports all read it from here."""
from __future__ import annotations

import math
from dataclasses import dataclass

from logitlab import ConfigError

SPLITS = ("train", "val", "test")
DIRECTIONS = {"acc": "maximize", "loss": "minimize"}  # metric -> the direction that improves it
NAMES = tuple(f"{split}/{metric}" for split in SPLITS for metric in DIRECTIONS)


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str  # maximize | minimize

    @classmethod
    def of(cls, name: str, direction: str | None = "auto", key: str = "trainer") -> Objective:
        """`name`'s objective; `direction` auto (or None) derives it, and a contradicting one is refused."""
        if name not in NAMES:
            raise ConfigError(f"{key}.objective={name!r} is not a metric; valid: {', '.join(NAMES)}")
        derived = DIRECTIONS[name.split("/")[1]]
        if direction in (None, "auto"):
            return cls(name, derived)
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"{key}.direction={direction!r} is not a direction; valid: auto, maximize, minimize")
        if direction != derived:
            raise ConfigError(f"{key}.direction={direction} contradicts the objective {name}, which is "
                              f"better when it goes {'up' if derived == 'maximize' else 'down'}; "
                              f"use {derived} or auto")
        return cls(name, direction)

    def better(self, value: float, than: float | None) -> bool:
        """Whether `value` improves on `than` (None: nothing yet). NaN never improves."""
        if not math.isfinite(value):
            return False
        if than is None or not math.isfinite(than):
            return True
        return value > than if self.direction == "maximize" else value < than
