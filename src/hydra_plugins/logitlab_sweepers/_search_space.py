"""Hydra's sweep syntax as an Optuna search space, asked trial by trial (define-by-run): a conditional
space asks only what a trial uses, so only that is recorded for it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)

from ._jobs import SweepError

_PLAIN = (str, int, float, bool, type(None))  # what an Optuna categorical choice may be


@dataclass
class Param:
    key: str  # the override's key, prefix included (+foo)
    distribution: BaseDistribution
    texts: dict = field(default_factory=dict)  # a categorical choice -> its text in an override

    @property
    def name(self) -> str:
        return self.key.lstrip("+~")

    def text(self, value: Any) -> str:
        if value in self.texts:
            return self.texts[value]
        return repr(value) if isinstance(value, float) else str(value)


def _distribution(override: Override) -> Param:
    key, sweep = override.get_key_element(), override.value()
    tags = getattr(sweep, "tags", set())
    log = "log" in tags
    try:
        if override.is_interval_sweep():
            if "int" in tags:
                return Param(key, IntDistribution(int(sweep.start), int(sweep.end), log=log))
            return Param(key, FloatDistribution(sweep.start, sweep.end, log=log))
        if override.is_range_sweep() and not sweep.shuffle:
            values = list(override.sweep_iterator())  # high = the last value: range(1, 4) is 1, 2, 3
            if all(isinstance(v, int) for v in values):
                step = None if log else int(sweep.step)
                return Param(key, IntDistribution(values[0], values[-1], step=step or 1, log=log))
            return Param(key, FloatDistribution(values[0], values[-1], step=None if log else sweep.step,
                                                log=log))
        values = list(override.sweep_iterator()) if override.is_sweep_override() else [override.value()]
        texts = [Transformer.str(v) for v in values]
        choices = [v if isinstance(v, _PLAIN) else t for v, t in zip(values, texts)]
        return Param(key, CategoricalDistribution(choices), dict(zip(choices, texts)))
    except (ValueError, TypeError) as e:
        raise SweepError(f"search space {override.input_line!r}: {e}") from None


def _suggest(trial: optuna.Trial, name: str, d: BaseDistribution) -> Any:
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_categorical(name, d.choices)


@dataclass
class Layers:
    """A list-valued key (model.hidden): its depth first, then one width per layer that exists."""

    key: str
    depth: Param
    width: Param

    def ask(self, trial: optuna.Trial) -> str:
        depth = _suggest(trial, f"{self.key}.depth", self.depth.distribution)
        widths = [_suggest(trial, f"{self.key}.{i}", self.width.distribution) for i in range(depth)]
        return f"{self.key}=[{','.join(self.width.text(w) for w in widths)}]"


@dataclass
class SearchSpace:
    fixed: list[str]  # overrides every trial gets as they are
    layers: list[Layers]
    params: list[Param]

    def ask(self, trial: optuna.Trial) -> list[str]:
        """Sample one trial; returns its overrides (layers first: depth, widths; then params)."""
        overrides = [layers.ask(trial) for layers in self.layers]
        for p in self.params:
            overrides.append(f"{p.key}={p.text(_suggest(trial, p.name, p.distribution))}")
        return overrides

    def grid(self) -> dict[str, list]:
        """Every value of every parameter, for Optuna's GridSampler."""
        if self.layers:
            raise SweepError("sampler=grid cannot search `layers` (a conditional space); "
                             "list the shapes instead, e.g. model.hidden: choice([64],[64,32])")
        grid = {}
        for p in self.params:
            d = p.distribution
            if isinstance(d, CategoricalDistribution):
                grid[p.name] = list(d.choices)
            elif isinstance(d, IntDistribution) and not d.log:
                grid[p.name] = list(range(d.low, d.high + 1, d.step))
            elif isinstance(d, FloatDistribution) and d.step is not None:
                n = round((d.high - d.low) / d.step)
                grid[p.name] = [d.low + i * d.step for i in range(n + 1)]
            else:
                raise SweepError(f"sampler=grid needs a finite set of values for {p.key}; "
                                 f"use choice(...) or range(...), not an interval")
        return grid


def _parse_one(parser: OverridesParser, key: str, text: str) -> Override:
    return parser.parse_overrides([f"{key}={text}"])[0]


def build(parser: OverridesParser, params: dict, layers: dict, arguments: list[str]) -> SearchSpace:
    """The space from the sweeper's `params` and `layers` and the command line; a key given on the
    command line replaces the config's entry for it."""
    by_key: dict[str, Override] = {}
    for override in parser.parse_overrides([f"{k}={v}" for k, v in params.items()] + list(arguments)):
        by_key[override.get_key_element()] = override
    searched = []
    for key, spec in layers.items():
        if key in by_key:
            continue
        depth = _distribution(_parse_one(parser, key, spec["depth"]))
        width = _distribution(_parse_one(parser, key, spec["width"]))
        d = depth.distribution
        if not (isinstance(d, IntDistribution) or isinstance(d, CategoricalDistribution)
                and all(type(c) is int and c >= 0 for c in d.choices)):
            raise SweepError(f"layers.{key}.depth={spec['depth']!r} must give whole numbers, "
                             f"e.g. range(1, 4)")
        searched.append(Layers(key, depth, width))
    return SearchSpace(
        fixed=[o.input_line for o in by_key.values() if not o.is_sweep_override()],
        layers=searched,
        params=[_distribution(o) for o in by_key.values() if o.is_sweep_override()])
