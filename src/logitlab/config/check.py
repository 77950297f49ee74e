"""The command-line check: before Hydra makes a run or sweep directory, build what the command describes
and let the components themselves say whether a value is valid. A Hydra callback (conf/config.yaml,
hydra.callbacks.check), so the config it sees is Hydra's own composition of the whole command line
(-cd/-cp/-cn and every override); a sweep's values are expanded by Hydra's own override parser (choice,
range, glob, lists; interval and tag by their ends) and each is composed and built once.

Hydra's own composition errors become one line in hydra_errors.
"""
from __future__ import annotations

import functools
import inspect
import itertools
import json
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from logitlab import ConfigError
from logitlab.config import build, hydra_errors, value_types
from logitlab.trainer import rundir
from logitlab.trainer.objective import Objective

_ABSENT = object()
# Keys logitlab reads itself, which no component's annotations describe: the type each value is checked
# against here, so that checking them needs no second composition of the config (a tenth of a second a
# command). None: a default of `auto` tells no type, and the key's reader refuses a bad value itself.
OWN_KEYS = {"seed": (int, "what seeds every random stream of a run"), "trainer.figures": (None, ""),
            "data.max_resident_gb": (None, "")}
MAX_COMBINATIONS = 64  # group choices checked together; past that each value is checked on its own


class CommandLineError(ConfigError):
    """The command line asks for something invalid; the command exits with status 2, before any run."""


def refusing(check):
    """Hydra turns an Exception in a callback into a warning and goes on: a refused command line is
    said in one line and ends the command (status 2) here, before any directory is made."""
    def guarded(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check(self, config, **kwargs)
        except CommandLineError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        except Exception:  # a bug in the check: Hydra would only warn and go on without it
            traceback.print_exc()
            raise SystemExit(1) from None
    return guarded


class CommandLineCheck(Callback):
    @refusing
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)  # as run_job will: ${hydra:...} resolves
        task = _task_config(config)
        overrides = list(config.hydra.overrides.task)
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        # first the checks that need no torch, so that they answer at once; then build what the command names
        _check_writable("hydra.run.dir", run_dir)
        _check_promise(run_dir, task)
        _check_types(task, overrides, lambda: _defaults(config, overrides))
        _check_built(task, blame=overrides, device=True)

    @refusing
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        sweeper = config.hydra.sweeper
        if "objective" in sweeper and "direction" in sweeper:
            try:
                Objective.of(sweeper.objective, sweeper.direction, key="hydra.sweeper")
            except ConfigError as e:
                raise CommandLineError(str(e)) from None
            if sweeper.objective != config.trainer.objective:  # the jobs return trainer.objective
                raise CommandLineError(f"hydra.sweeper.objective={sweeper.objective} differs from "
                                       f"trainer.objective={config.trainer.objective}, which every job returns; "
                                       f"set trainer.objective={sweeper.objective} instead")
        _check_writable("hydra.sweep.dir", Path(str(config.hydra.sweep.dir)).absolute())
        bases: dict[tuple, tuple] = {}  # the config groups a variant chooses -> the first such composition
        defaults_of: dict[tuple, _Once] = {}  # and -> its composition without the values given
        device = not _runs_elsewhere(config)
        for overrides in _sweep_variants(config):
            choices = tuple(o for o in overrides if o.split("=", 1)[0].lstrip("+~") in config.hydra.runtime.choices)
            base = bases.get(choices)
            task = derived_config(*base, overrides) if base is not None else None
            if task is None:
                task = _task_config(_compose(config, overrides))
                bases.setdefault(choices, (overrides, task))
            defaults = defaults_of.setdefault(choices, _Once(lambda given=overrides: _defaults(config, given)))
            _check_types(task, overrides, defaults, sweep=True)
            _check_built(task, blame=overrides, sweep=True, device=device)


# ---------------------------------------------------------------------------------------- value types
def _check_types(task: DictConfig, overrides: list[str], defaults, sweep: bool = False) -> None:
    """Each value given on the command line against the type its component declares for that argument
    (the `_target_`'s annotations: Trainer's `epochs: int`, torch's `lr: float | Tensor`) or, for a key no
    component takes (seed), the type of its value in the config without the override (`defaults()`):
    `seed=abc` or `trainer.epochs=[3]` is one line here, not a traceback or a silent misreading."""
    given: dict[str, tuple[str, Override]] = {}
    for text in overrides:
        o = _parsed(text)
        if o is not None:
            given[o.key_or_group] = (text, o)  # a key given twice has its last value
    checked = []
    for key, (text, o) in given.items():
        if (o.is_delete() or o.package or key.split(".")[0] == "hydra" or o.is_sweep_override()
                or key in HydraConfig.get().runtime.choices):
            continue
        try:
            value = _plain(OmegaConf.select(task, key, default=_ABSENT))
        except Exception:  # an interpolation that does not resolve: building says which
            continue
        section, _, name = key.rpartition(".")
        parent = OmegaConf.select(task, section) if section else task
        checked.append((key, text, value, name, parent.get("_target_") if isinstance(parent, DictConfig) else None))
    # keys of no component first: their types need no import, so `seed=abc` is refused before torch loads
    for key, text, value, name, target in sorted(checked, key=lambda entry: entry[-1] is not None):
        hint, whose = value_types.annotation(target, name), f"the type {target} declares for {name}"
        if hint is None and key in OWN_KEYS:
            hint, whose = OWN_KEYS[key]
        elif hint is None:
            try:
                default = _plain(OmegaConf.select(defaults(), key, default=None))
            except CommandLineError:  # it composes only with the values given: no default to compare with
                default = None
            hint, whose = value_types.type_of(default), f"the type of its default, {json.dumps(default)}"
        if value is _ABSENT or hint is None or value_types.fits(value, hint) is not False:
            continue
        raise CommandLineError(f"{_context(overrides, sweep)}{text.lstrip('+')} is not "
                               f"{value_types.describe(hint)} ({whose})")


@functools.lru_cache(maxsize=4096)  # a sweep's jobs share most of their overrides
def _parsed(text: str) -> Override | None:
    try:
        return OverridesParser.create().parse_overrides([text])[0]
    except Exception:  # Hydra composed it, so this does not happen; the composition would say why
        return None


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


# ---------------------------------------------------------------------------------------- building
def _check_built(task: DictConfig, blame: list[str], sweep: bool = False, device: bool = False) -> None:
    """Build the run's components on the CPU, run the model on two training examples, give the optimizer
    and schedule the model's parameters: whatever refuses a value, its message names the key. `device`:
    ask the trainer whether trainer.device is here too (not for jobs that run on other machines)."""
    import torch

    def attempt():
        if device:
            from logitlab.trainer.runtime import pick_device

            pick_device(task.trainer.device)
        parts = build.run(task, device="cpu")
        with torch.no_grad():
            _as_component("model", lambda: parts.model(parts.data.inputs(parts.data.train[0][:2])))
        opt = _as_component("optim", lambda: parts.optimizer(list(parts.model.parameters())))
        if parts.schedule is not None:
            takes_steps = "total_steps" in inspect.signature(parts.schedule).parameters
            _as_component("schedule", lambda: parts.schedule(opt, **({"total_steps": 1} if takes_steps else {})))
    try:
        attempt()
    except ConfigError as e:
        raise CommandLineError(f"{_context(blame, sweep)}{e}") from None
    except build.ComponentError as e:  # the component's own complaint: name the keys that led to it
        message = _first_line(e.cause)
        unexpected = message.split("unexpected keyword argument '")[1].split("'")[0] \
            if "unexpected keyword argument '" in message else None
        if unexpected:
            message = hydra_errors.not_a_key(f"{e.key}.{unexpected}", task)
        else:
            keys = [o for o in blame if o.lstrip("+~").startswith(f"{e.key}.") or o.startswith(f"{e.key}=")]
            where = " ".join(keys) or f"{e.key}={HydraConfig.get().runtime.choices.get(e.key, e.key)}"
            message = message if sweep and keys else f"{where}: {message}"
        raise CommandLineError(f"{_context(blame, sweep)}{message}") from None


def _as_component(key: str, call):
    try:
        return call()
    except ConfigError:
        raise
    except Exception as e:
        raise build.ComponentError(key, e) from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    if isinstance(e, ImportError) and e.__cause__ is not None:  # Hydra's "Error loading 'x':": say why
        line = f"{line} {type(e.__cause__).__name__}: {_first_line(e.__cause__)}"
    return line


def _context(blame: list[str], sweep: bool) -> str:
    return f"in the sweep's job {' '.join(blame)}: " if sweep else ""


def _task_config(config: DictConfig) -> DictConfig:
    task = config.copy()
    with open_dict(task):
        task.pop("hydra", None)
    return task


# ---------------------------------------------------------------------------------------- a sweep
def _sweep_variants(config: DictConfig) -> list[list[str]]:
    """The override lists to compose and build: every combination of the swept groups (if few), and in
    each, every value of every swept key with the others at their first value."""
    loader = GlobalHydra.instance().config_loader()
    parser = OverridesParser.create(config_loader=loader)
    sweeper = config.hydra.sweeper
    params = _container(sweeper.get("params"))
    by_key: dict[str, Override] = {}
    try:
        for o in parser.parse_overrides([f"{k}={v}" for k, v in params.items()]
                                        + list(config.hydra.overrides.task)):
            by_key[o.get_key_element()] = o
    except Exception as e:
        raise CommandLineError(f"cannot parse the sweep: {str(e).strip().splitlines()[0]}") from None
    values = {key: _values(o) for key, o in by_key.items()}
    for key, spec in _container(sweeper.get("layers")).items():
        depths = [d for d in _values(parser.parse_overrides([f"{key}={spec['depth']}"])[0]) if d != "0"]
        widths = _values(parser.parse_overrides([f"{key}={spec['width']}"])[0])
        # every depth at the first width, then every width at depth 1: each value is built once
        values[key] = [f"[{','.join([widths[0]] * int(d))}]" for d in depths] + [f"[{w}]" for w in widths]
    if len(values.get("trainer.objective", [])) > 1:
        raise CommandLineError("trainer.objective cannot be swept: a sweep ranks all its jobs by one objective")
    groups = [k for k in values if len(values[k]) > 1 and (k.lstrip("+~") in config.hydra.runtime.choices
                                                          or loader.repository.group_exists(k.lstrip("+~")))]
    keys = [k for k in values if len(values[k]) > 1 and k not in groups]
    first = {k: f"{k}={v[0]}" for k, v in values.items()}
    combos = list(itertools.islice(itertools.product(*(values[g] for g in groups)), MAX_COMBINATIONS + 1))
    if len(combos) > MAX_COMBINATIONS:
        combos = [tuple(values[g][0] for g in groups)] + [
            tuple(v if g == group else values[g][0] for g in groups) for group in groups for v in values[group][1:]]
    variants = []
    for combo in combos:
        base = {**first, **{g: f"{g}={v}" for g, v in zip(groups, combo)}}
        variants.append(list(base.values()))
        for key in keys:
            variants += [list({**base, key: f"{key}={v}"}.values()) for v in values[key][1:]]
    return variants


def _container(node: Any) -> dict:
    return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else dict(node or {})


def _values(o: Override) -> list[str]:
    """Every value an override stands for, as override text: an interval by its two ends."""
    if o.is_interval_sweep():
        sweep = o.value()
        ends = [sweep.start, sweep.end]
        return [str(int(v)) if "int" in getattr(sweep, "tags", set()) else repr(float(v)) for v in ends]
    if o.is_sweep_override():
        return list(o.sweep_string_iterator())
    return [o.input_line.split("=", 1)[1] if "=" in o.input_line else ""]


def _compose(config: DictConfig, overrides: list[str]) -> DictConfig:
    """A sweep job's config as the sweeper composes it: with the command's hydra overrides
    (hydra.searchpath among them) and its -cd/-cp/-cn, which are the loader's."""
    loader = GlobalHydra.instance().config_loader()
    try:
        return loader.load_sweep_config(config, [o for o in overrides if o.split("=")[1:] != [""]])
    except Exception as e:
        message, _ = hydra_errors.explain(e, [*config.hydra.overrides.hydra, *overrides],
                                          config_name=config.hydra.job.config_name)
        raise CommandLineError(f"in the sweep's job {' '.join(overrides)}: {message}") from None


def _defaults(config: DictConfig, overrides: list[str]) -> DictConfig:
    """The task config with the same config group choices and none of the values given."""
    choices = config.hydra.runtime.choices
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in choices and not o.startswith(("+", "~"))]
    return _task_config(_compose(config, kept))


class _Once:
    def __init__(self, make):
        self.make, self.value = make, _ABSENT

    def __call__(self):
        if self.value is _ABSENT:
            self.value = self.make()
        return self.value


def _runs_elsewhere(config: DictConfig) -> bool:
    """Whether the sweep's jobs run on other machines (a cluster's), whose devices are not this one's."""
    from hydra_plugins.logitlab_sweepers._jobs import on_cluster

    return on_cluster(config)


def derived_config(base_overrides: list[str], base: DictConfig, overrides: list[str]) -> DictConfig | None:
    """The composition of `overrides`, made from `base` (the composition of `base_overrides`) when the two
    differ only in plain values (no config group, nothing added or removed, no hydra key): those values
    set on a copy, what Hydra's composition gives at a hundredth of its cost (~0.1 s a composition here).
    A config with a hydra node gets its task overrides and override_dirname too. None: compose instead."""
    import copy

    from hydra._internal.config_loader_impl import get_overrides_dirname
    from omegaconf import read_write

    if len(overrides) != len(base_overrides):
        return None
    parser = OverridesParser.create()
    try:
        new, old = parser.parse_overrides(list(overrides)), parser.parse_overrides(list(base_overrides))
    except Exception:  # let the composition say what is wrong
        return None
    choices = base.hydra.runtime.choices if "hydra" in base else {}
    changed = [(n, o) for n, o in zip(new, old) if n.input_line != o.input_line]
    for n, o in changed:
        key = n.key_or_group
        if (key != o.key_or_group or n.package or o.package or key.split(".")[0] == "hydra"
                or n.is_sweep_override() or n.type.name != "CHANGE" or o.type.name != "CHANGE"
                or key in choices or OmegaConf.select(base, key, default=_ABSENT) is _ABSENT):
            return None
    cfg = copy.deepcopy(base)
    for n, _ in changed:
        OmegaConf.update(cfg, n.key_or_group, n.value(), merge=False)
    if "hydra" in cfg:
        task = [n for n in new if n.key_or_group.split(".")[0] != "hydra"]
        names = cfg.hydra.job.config.override_dirname
        with read_write(cfg.hydra.overrides), read_write(cfg.hydra.job), open_dict(cfg.hydra.job):
            cfg.hydra.overrides.task = [n.input_line for n in task]
            cfg.hydra.job.override_dirname = get_overrides_dirname(task, list(names.exclude_keys), names.item_sep,
                                                                   names.kv_sep)
    return cfg


# ---------------------------------------------------------------------------------------- directories
def _check_writable(key: str, path: Path) -> None:
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise CommandLineError(f"{key}={path} cannot be created: {existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise CommandLineError(f"{key}={path} is not writable: {existing}: {e.strerror or e}") from None


def _check_promise(run_dir: Path, task: DictConfig) -> None:
    """A run directory belongs to the config that made it: another config is refused before Hydra
    overwrites the saved one, naming the keys that differ."""
    saved = run_dir / ".hydra" / "config.yaml"
    trained = any((run_dir / "checkpoints").glob("*.pt"))
    if not saved.is_file() or not trained:  # nothing trained there yet: a corrected command may take it
        return
    old, new = OmegaConf.to_container(OmegaConf.load(saved), resolve=True), OmegaConf.to_container(task, resolve=True)
    changed = rundir.changed_keys(old, new)
    raw = rundir.flatten(OmegaConf.to_container(task, resolve=False))
    every = [k for k, _, _ in rundir.changed_keys(old, new, allowed=())]
    for key, there, now in changed:  # a value that follows a key the rerun may change: name that key
        cause = next((k for k in every if isinstance(raw.get(key), str) and "${" + k + "}" in raw[key]), None)
        if cause is not None:
            was, wanted = rundir.flatten(old).get(cause), rundir.flatten(new).get(cause)
            raise CommandLineError(
                f"hydra.run.dir={run_dir} holds a run of {cause}={was}, and its {key} follows {cause} "
                f"({key}={raw[key]}: {there!r} there, {now!r} now), which a trained run cannot change; for "
                f"{cause}={wanted} start over in another hydra.run.dir, or add {key}={there} to keep its {key}")
    if changed:
        raise CommandLineError(f"hydra.run.dir={run_dir} holds a run of another config "
                               f"({rundir.describe(changed)}); rerun with its values or give another hydra.run.dir")
