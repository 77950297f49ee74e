"""Check the command line before Hydra creates a run directory, so a typo costs a second, not a run.

Every key given on the command line (`key=v`, `+key=v`, `++key=v`) must name a constructor argument
of its component (`_target_`) or a value the config already has; values must keep the type of the
default they replace; group options must exist; the output directory must be writable. Each failure
is one line naming the key, value or path and what would be valid.
"""
from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import inspect
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from logitlab import ConfigError

# Words people reach for, mapped to the key this codebase uses for them.
ALIASES = {"width": "hidden", "widths": "hidden", "units": "hidden", "neurons": "hidden", "layers": "hidden",
           "depth": "hidden", "filters": "channels", "act": "activation", "learning_rate": "lr",
           "epoch": "epochs", "bs": "batch_size", "clip": "grad_clip"}
FROM_DATA = {"input_shape", "num_classes", "self", "params"}  # passed at the call site, never configured
NON_NEGATIVE = {("optim", "weight_decay"), ("optim", "momentum")}


def check_command_line(config_dir: Path, args: list[str]) -> None:
    """Raise ConfigError for the first problem in the overrides `args` (a multirun is checked with the
    first value of each sweep; each job checks its own values again when it builds its components)."""
    parser = OverridesParser.create()
    try:
        parsed = parser.parse_overrides([a for a in args if "=" in a and not a.startswith("-")])
    except HydraException as e:
        raise ConfigError(f"cannot parse the overrides: {str(e).splitlines()[0]}") from None
    first = [f"{o.input_line.split('=', 1)[0]}={next(iter(o.sweep_string_iterator()))}"
             if o.is_sweep_override() else o.input_line for o in parsed]
    keys = [o for o in parsed if not o.key_or_group.startswith("hydra") and "." in o.key_or_group
            or o.key_or_group in ("seed", "pruning")]
    groups = [line for o, line in zip(parsed, first) if o not in keys]
    base = _compose(config_dir, groups)  # composed once; the key overrides are applied here by hand
    full = base.copy()
    for o, line in zip(parsed, first):
        if o in keys and not o.is_delete():
            _check_key(o.key_or_group, base, config_dir)
            with open_dict(full):
                OmegaConf.update(full, o.key_or_group, parser.parse_override(line).value(), force_add=True)
            _check_type(o.key_or_group, base, full)
    _check_values(full)
    _check_writable(full, multirun="-m" in args or "--multirun" in args)


def _compose(config_dir: Path, overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose("config", overrides=overrides, return_hydra_config=True)
    except MissingConfigException as e:
        group = next((o.split("=")[0].lstrip("+~") for o in overrides if f"'{o.split('=')[0].lstrip('+~')}/"
                      in str(e)), None)
        options = sorted(p.stem for p in (config_dir / group).glob("*.yaml")) if group else []
        what = f"{group}={str(e).split(f'{group}/')[1].split(chr(39))[0]}" if group else str(e).splitlines()[0]
        raise ConfigError(f"{what} is not an option; valid: {', '.join(options)}") from None
    except HydraException as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    finally:
        GlobalHydra.instance().clear()


def _check_key(key: str, base: DictConfig, config_dir: Path) -> None:
    if OmegaConf.select(base, key, default="__missing__") != "__missing__" or key in ("seed", "pruning"):
        return
    section, _, name = key.rpartition(".")
    parent = OmegaConf.select(base, section) if section else base
    if not isinstance(parent, DictConfig):
        raise ConfigError(f"{key} is not a key: {section or 'the root'} has no fields")
    valid = set(parent.keys()) | _target_arguments(parent.get("_target_"))
    if name in valid:
        return
    shown = ", ".join(sorted(k for k in valid if not k.startswith("_"))) or "none"
    hint = _closest(name, valid)
    if hint:
        raise ConfigError(f"{key} is not a key; did you mean {section}.{hint}? (valid: {shown})")
    # Perhaps the key belongs to another option of the same group (model.hidden is an mlp key).
    for option in sorted((config_dir / section).glob("*.yaml")) if "." not in section else []:
        hint = _closest(name, set(OmegaConf.load(option).keys()))
        if hint:
            raise ConfigError(f"{key} is not a key of {section}={base.hydra.runtime.choices.get(section)} "
                              f"(valid: {shown}); {section}={option.stem} has {section}.{hint}")
    raise ConfigError(f"{key} is not a key (valid in {section or 'the root'}: {shown})")


def _closest(name: str, valid: set[str]) -> str | None:
    """The valid key `name` most likely meant: a near spelling, or the word this codebase uses for it."""
    hint = difflib.get_close_matches(name, sorted(valid | set(ALIASES)), n=1, cutoff=0.6)
    hint = ALIASES.get(hint[0], hint[0]) if hint else None
    return hint if hint in valid else None


def _target_arguments(target: str | None) -> set[str]:
    """The keyword arguments `_target_` accepts. logitlab's own targets are read from source, so a typo
    is reported without paying for `import torch`."""
    if not target:
        return set()
    module, _, name = target.rpartition(".")
    try:
        if module.startswith("logitlab"):
            return _arguments_from_source(module, name) - FROM_DATA
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters.values()
    except (ImportError, AttributeError, StopIteration):
        raise ConfigError(f"_target_={target} cannot be imported") from None
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)} - FROM_DATA


def _arguments_from_source(module: str, name: str) -> set[str]:
    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    node = next(n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == name)
    if isinstance(node, ast.ClassDef):
        node = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return {a.arg for a in node.args.args + node.args.kwonlyargs}


def _check_type(key: str, base: DictConfig, full: DictConfig) -> None:
    """A value must keep the kind of the default it replaces (null defaults take anything)."""
    old, new = OmegaConf.select(base, key), OmegaConf.select(full, key)
    if old is None or new is None or isinstance(old, DictConfig):
        return
    kinds = [(bool, (bool,), "true or false"), (int, (int,), "an integer"), (float, (int, float), "a number"),
             (str, (str,), "a string"), (ListConfig, (ListConfig,), "a list, e.g. [64,32]")]
    for kind, accepted, words in kinds:
        if isinstance(old, kind):
            if not isinstance(new, accepted) or (isinstance(new, bool) and kind is not bool):
                shown = OmegaConf.to_container(new) if OmegaConf.is_config(new) else new
                raise ConfigError(f"{key}={shown!r} must be {words} (default: {old})")
            return


def _check_values(cfg: DictConfig) -> None:
    """Ranges the components would only find later: the trainer's own checks, optimizer values, seed."""
    optim = cfg.get("optim") or {}
    if "lr" in optim and not (isinstance(optim.lr, (int, float)) and optim.lr > 0):
        raise ConfigError(f"optim.lr={optim.lr!r} must be a positive number, e.g. 1e-3")
    for group, key in NON_NEGATIVE:
        value = (cfg.get(group) or {}).get(key)
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            raise ConfigError(f"{group}.{key}={value!r} must be a number >= 0")
    if not isinstance(cfg.get("seed"), int) or isinstance(cfg.seed, bool):
        raise ConfigError(f"seed={cfg.get('seed')!r} must be an integer (0 is fine)")
    from logitlab.train import build

    build(cfg.trainer, device="cpu")  # the Trainer's own range checks, without touching a GPU


def _check_writable(cfg: DictConfig, multirun: bool) -> None:
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    path = Path(OmegaConf.select(cfg, key)).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{key}={path} cannot be created: {existing} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise ConfigError(f"{key}={path} is not writable: {existing}: {e.strerror or e}") from None
