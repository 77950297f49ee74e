"""The command-line check: before Hydra makes a run or sweep directory, build what the command describes
and let the components themselves say whether a value is valid. A Hydra callback (conf/config.yaml,
hydra.callbacks.check), so the config it sees is Hydra's own composition of the whole command line
(-cd/-cp/-cn and every override); a sweep's values are expanded by Hydra's own override parser (choice,
range, glob, lists; interval and tag by their ends) and each is composed and built once.

`explain` turns Hydra's own composition errors (an unknown key, a missing group option, an override that
does not parse) into one line that names the key and what would be valid.
"""
from __future__ import annotations

import difflib
import importlib
import inspect
import itertools
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
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from logitlab import ConfigError, build, rundir
from logitlab.objective import Objective

# Words people reach for, mapped to the key this codebase uses for them.
ALIASES = {"width": "hidden", "widths": "hidden", "units": "hidden", "neurons": "hidden", "layers": "hidden",
           "depth": "hidden", "filters": "channels", "act": "activation", "learning_rate": "lr",
           "epoch": "epochs", "bs": "batch_size", "clip": "grad_clip"}
FROM_DATA = {"input_shape", "num_classes", "params", "self"}  # passed at the call site, never configured
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
        _check_built(task, blame=list(config.hydra.overrides.task))
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        _check_writable("hydra.run.dir", run_dir)
        _check_promise(run_dir, task)

    @refusing
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        HydraConfig.instance().set_config(config)
        sweeper = config.hydra.sweeper
        if "objective" in sweeper and "direction" in sweeper:
            _as_command_line_error(lambda: Objective.of(sweeper.objective, sweeper.direction, key="hydra.sweeper"))
        _check_writable("hydra.sweep.dir", Path(str(config.hydra.sweep.dir)).absolute())
        for overrides in _sweep_variants(config):
            task = _task_config(_compose(config.hydra.job.config_name, overrides))
            _check_built(task, blame=overrides, sweep=True)


# ---------------------------------------------------------------------------------------- building
def _check_built(task: DictConfig, blame: list[str], sweep: bool = False) -> None:
    """Build the run's components on the CPU, run the model on two training examples, give the optimizer
    and schedule the model's parameters: whatever refuses a value, its message names the key."""
    import torch

    def attempt():
        parts = build.run(task, device="cpu")
        with torch.no_grad():
            _as_component("model", lambda: parts.model(parts.data.train[0][:2]))
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
            message = _not_a_key(f"{e.key}.{unexpected}", task)
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
    return text.splitlines()[0] if text else type(e).__name__


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
        values[key] = [f"[{','.join([w] * int(d))}]" for d in depths for w in widths[:1]] + \
                      [f"[{w}]" for w in widths]
    groups = [k for k in values if len(values[k]) > 1 and loader.repository.group_exists(k.lstrip("+~"))]
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


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    loader = GlobalHydra.instance().config_loader()
    try:
        return loader.load_configuration(config_name, overrides=[o for o in overrides if o.split("=")[1:] != [""]],
                                         run_mode=RunMode.RUN)
    except Exception as e:
        message, _ = explain(e, overrides)
        raise CommandLineError(f"in the sweep's job {' '.join(overrides)}: {message}") from None


def _as_command_line_error(check) -> None:
    try:
        check()
    except ConfigError as e:
        raise CommandLineError(str(e)) from None


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
    changed = rundir.changed_keys(OmegaConf.to_container(OmegaConf.load(saved), resolve=True),
                                  OmegaConf.to_container(task, resolve=True))
    if changed:
        raise CommandLineError(f"hydra.run.dir={run_dir} holds a run of another config "
                               f"({rundir.describe(changed)}); rerun with its values or give another hydra.run.dir")


# ---------------------------------------------------------------------------------------- Hydra's errors
def explain(error: BaseException, args: list[str], config_dir: str | None = None) -> tuple[str, int]:
    """One line for a Hydra error and the exit status: 2 for a command line that cannot compose.
    `config_dir` is the app's primary config path: Hydra has let go of its own by the time an error
    reaches the entry point, so the same search path is set up again from the same command line."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    if config_dir is not None and not GlobalHydra.instance().is_initialized():
        _reinitialise(args, config_dir)
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, MissingConfigException) or "Could not find '" in text:
        return _missing_option(text, first_line), 2
    if isinstance(error, ConfigCompositionException) and "Could not override '" in text:
        key = text.split("Could not override '")[1].split("'")[0]
        return _unknown_key(key, args), 2
    if isinstance(error, ConfigCompositionException) and "Could not append to config. An item is already at" in text:
        key = text.split("at '")[1].split("'")[0]
        return f"+{key} adds a key that exists already; set it with {key}=...", 2
    if isinstance(error, (OverrideParseException, ConfigCompositionException)):
        return first_line, 2
    return first_line, 1


_config_name = "config"


def _reinitialise(args: list[str], config_dir: str) -> None:
    """Hydra's own argument parser and search path for `args` (-cd/-cp/-cn included)."""
    global _config_name
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path, get_args_parser
    from hydra.core.config_search_path import SearchPathQuery

    try:
        parsed, _ = get_args_parser().parse_known_args(args)
        search_path = create_automatic_config_search_path(None, None, parsed.config_path or config_dir)
        if parsed.config_dir:
            search_path.prepend(provider="command-line", path=f"file://{Path(parsed.config_dir).absolute()}",
                                anchor=SearchPathQuery(provider="schema"))
        _config_name = parsed.config_name or "config"
        Hydra.create_main_hydra2(task_name="logitlab", config_search_path=search_path)
    except Exception:  # explaining an error must not raise another: the message goes without a hint
        pass


def _missing_option(text: str, first_line: str) -> str:
    if "Could not find '" not in text:
        return first_line
    wanted = text.split("Could not find '")[1].split("'")[0]
    group, _, option = wanted.rpartition("/")
    try:
        options = GlobalHydra.instance().config_loader().get_group_options(group)
    except Exception:
        options = []
    hint = difflib.get_close_matches(option, options, n=1)
    return (f"{group}={option} is not an option" + (f"; did you mean {group}={hint[0]}?" if hint else "")
            + (f" (valid: {', '.join(options)})" if options else ""))


def _unknown_key(key: str, args: list[str]) -> str:
    """`key` is not in the composed config: compose without it and say what is there."""
    rest = [a for a in _overrides(args) if not a.lstrip("+~").startswith(f"{key}=")]
    try:
        base = GlobalHydra.instance().config_loader().load_configuration(
            _config_name, overrides=[a for a in rest if "," not in a.split("=", 1)[1]], run_mode=RunMode.RUN)
    except Exception:
        return f"{key} is not a key"
    return _not_a_key(key, base)


def _not_a_key(key: str, base: DictConfig) -> str:
    """Name the keys `key`'s section has, the constructor argument it would set, or another option of
    its group that has such a key."""
    section, _, name = key.rpartition(".")
    parent = OmegaConf.select(base, section) if section else base
    if not isinstance(parent, DictConfig):
        return f"{key} is not a key: {section or 'the root'} has no fields"
    keys = {str(k) for k in parent.keys() if not str(k).startswith("_")} - {name}
    arguments = _target_arguments(parent.get("_target_")) - keys
    shown = ", ".join(sorted(keys)) or "none"
    if name in arguments:
        return (f"{key} is not in the config of {section}, but {parent._target_} takes {name}: "
                f"add it with +{key}=...")
    hint = difflib.get_close_matches(name, sorted(keys | arguments | set(ALIASES)), n=1, cutoff=0.6)
    hint = ALIASES.get(hint[0], hint[0]) if hint else None
    if hint in keys | arguments:
        return f"{key} is not a key; did you mean {section + '.' if section else ''}{hint}? (valid: {shown})"
    elsewhere = _options_with(section, name) if section and "." not in section else None
    if elsewhere:
        option, other = elsewhere
        return f"{key} is not a key of this {section} (valid: {shown}); {section}={option} has {section}.{other}"
    return f"{key} is not a key (valid in {section or 'the root'}: {shown})"


def _options_with(group: str, name: str) -> tuple[str, str] | None:
    """(option, key) for the first option of config group `group` with the key `name` or a near spelling."""
    if not GlobalHydra.instance().is_initialized():
        return None
    loader = GlobalHydra.instance().config_loader()
    options = {}
    for option in loader.get_group_options(group):
        loaded = loader.repository.load_config(f"{group}/{option}")
        if loaded is not None and isinstance(loaded.config, DictConfig):
            options[option] = {str(k) for k in loaded.config.keys()}
    for option, keys in options.items():  # the very key first, then a near spelling
        if name in keys:
            return option, name
    every = set().union(*options.values()) if options else set()
    hint = difflib.get_close_matches(name, sorted(every | set(ALIASES)), n=1, cutoff=0.6)
    hint = ALIASES.get(hint[0], hint[0]) if hint else None
    return next(((option, hint) for option, keys in options.items() if hint in keys), None)


def _overrides(args: list[str]) -> list[str]:
    from hydra._internal.utils import get_args_parser

    try:
        return list(get_args_parser().parse_known_args(args)[0].overrides)
    except BaseException:  # argparse exits on what it cannot parse
        return [a for a in args if "=" in a and not a.startswith("-")]


def _target_arguments(target: str | None) -> set[str]:
    """The keyword arguments `_target_` accepts, asked of the target itself."""
    if not target:
        return set()
    module, _, name = str(target).rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters.values()
    except (ImportError, AttributeError, ValueError, TypeError):
        return set()
    return {p.name for p in parameters if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - FROM_DATA
