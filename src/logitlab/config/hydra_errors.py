"""Hydra's own composition errors (an unknown key, a missing group option, an override that does not
parse) as one line that names the key and what would be valid: the keys the config has, the arguments
its `_target_` takes (asked of the target itself), or another option of the group that has such a key."""
from __future__ import annotations

import difflib
import importlib
import inspect
from pathlib import Path

from hydra.core.global_hydra import GlobalHydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

# Words people reach for, mapped to the key this codebase uses for them.
ALIASES = {"width": "hidden", "widths": "hidden", "units": "hidden", "neurons": "hidden", "layers": "hidden",
           "depth": "hidden", "filters": "channels", "act": "activation", "learning_rate": "lr",
           "epoch": "epochs", "bs": "batch_size", "clip": "grad_clip"}
FROM_DATA = {"input_shape", "num_classes", "params", "self"}  # passed at the call site, never configured

def explain(error: BaseException, args: list[str], config_dir: str | None = None,
            config_name: str | None = None) -> tuple[str, int]:
    """One line for a Hydra error and the exit status: 2 for a command line that cannot compose.
    `config_dir` is the app's primary config path: Hydra has let go of its own by the time an error
    reaches the entry point, so the same search path is set up again from the same command line."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    global _config_name
    if config_dir is not None and not GlobalHydra.instance().is_initialized():
        _reinitialise(args, config_dir)
    elif config_name is not None:  # Hydra's own loader, in the command-line check: its primary config's name
        _config_name = config_name
    text = str(error).strip()
    first_line = text.splitlines()[0] if text else type(error).__name__
    if isinstance(error, MissingConfigException) or "Could not find '" in text:
        return _missing_option(text, first_line, args), 2
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


def _missing_option(text: str, first_line: str, args: list[str]) -> str:
    if "Could not find '" not in text:
        return first_line
    wanted = text.split("Could not find '")[1].split("'")[0]
    group, _, option = wanted.rpartition("/")
    for override in _overrides(args):  # the override that asked for it: Hydra joins its group and value with /
        key, _, value = override.partition("=")
        if value and wanted == f"{key.lstrip('+~')}/{value}":
            group, option = key.lstrip("+~"), value
    options = _group_options(group, args)
    valid = f" (valid: {', '.join(options)})" if options else ""
    if "/" in option or Path(option).suffix or Path(option).expanduser().exists():
        return (f"{group}={option} is a file path, and {group} takes the name of an option{valid}; for a file "
                f"of your own, write {group}/NAME.yaml (a _target_ that loads it) in a directory added with "
                f"hydra.searchpath=[file:///abs/dir], then give {group}=NAME")
    hint = difflib.get_close_matches(option, options, n=1)
    return f"{group}={option} is not an option" + (f"; did you mean {group}={hint[0]}?" if hint else "") + valid


def _group_options(group: str, args: list[str]) -> list[str]:
    """The options of config `group` on the command's search path (hydra.searchpath included)."""
    searchpath = [o for o in _overrides(args) if o.split("=", 1)[0] == "hydra.searchpath"]
    try:
        return GlobalHydra.instance().config_loader().get_group_options(group, config_name=_config_name,
                                                                        overrides=searchpath)
    except Exception:
        return []


def _unknown_key(key: str, args: list[str]) -> str:
    """`key` is not in the composed config: compose without it and say what is there."""
    rest = [a for a in _overrides(args) if not a.lstrip("+~").startswith(f"{key}=")]
    try:
        base = GlobalHydra.instance().config_loader().load_configuration(
            _config_name, overrides=[a for a in rest if "," not in a.split("=", 1)[1] or a.startswith("hydra.searchpath=")],
            run_mode=RunMode.RUN)
    except Exception:
        return f"{key} is not a key"
    return not_a_key(key, base)


def not_a_key(key: str, base: DictConfig) -> str:
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
