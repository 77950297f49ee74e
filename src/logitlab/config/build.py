"""Config to objects: the one module that calls Hydra's `instantiate`. Everything else receives finished
objects (the trainer, the data, the model, optimizer and schedule factories) and never sees a config.

Data is loaded once per process for each distinct data config: the command-line check, and every job of
a sweep that runs in this process, share the same tensors."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from logitlab import ConfigError
from logitlab.trainer.objective import Objective

_loaded_data: dict[str, Any] = {}  # resolved data config (as JSON) -> SplitData


class ComponentError(Exception):
    """A component refused its arguments with an error of its own (torch's ValueError, a TypeError for an
    argument it does not take): `key` names the config node it was built from."""

    def __init__(self, key: str, cause: Exception):
        super().__init__(f"{key}: {cause}")
        self.key, self.cause = key, cause


def instantiate(node: Any, key: str = "", **kwargs: Any) -> Any:
    """Hydra's `instantiate`, with code of the user's own importable (own_code_dirs). A component's own
    ConfigError surfaces as itself (one line), not wrapped; any other error it raises while being built
    becomes a ComponentError naming `key` (a target whose module is not found: where it was looked for)."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    _own_code_importable()
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, ConfigError):
            raise cause from None
        missing = _not_found(node.get("_target_") if hasattr(node, "get") else None, cause)
        if missing:
            cause = ModuleNotFoundError(f"no module named {missing!r}; {where_own_code_is_imported_from()}",
                                        name=missing)
        raise ComponentError(key, cause) from e


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def data(node: Any):
    """The SplitData a data config describes, loaded once per process. data.max_resident_gb is the
    trainer's (where the data rests while training, `run`), not the source's."""
    plain = {k: v for k, v in _plain(node).items() if k != "max_resident_gb"}
    key = json.dumps(plain, sort_keys=True, default=str)
    if key not in _loaded_data:
        _loaded_data[key] = instantiate(plain, "data")
    return _loaded_data[key]


def model(node: Any, split_data) -> Any:
    """The model a model config describes, sized by the data (input shape and classes come from it)."""
    return instantiate(node, "model", input_shape=split_data.input_shape, num_classes=split_data.num_classes)


@dataclass
class Run:
    """What one training run is made of, built and ready for `Trainer.fit`."""

    trainer: Any
    data: Any
    model: Any
    optimizer: Callable  # params -> torch.optim.Optimizer
    schedule: Callable | None  # optimizer -> LR scheduler
    objective: Objective
    augment: Any = None  # data/augment.py's Crop or Shift, or None (augment=none)
    max_resident_gb: float | str = "auto"  # data.max_resident_gb: above it the inputs stream (trainer/feed.py)


def run(cfg: Any, device: str | None = None) -> Run:
    """Every component of a run from its composed config. The seed is set before the model is built:
    it fixes the initial weights. `device` overrides trainer.device (the config check builds on the CPU)."""
    import torch

    from logitlab.trainer import feed, runtime

    runtime.skip_dynamo_import()
    objective = Objective.of(cfg.trainer.objective, cfg.trainer.get("direction", "auto"))
    # trainer.figures is the entry point's (figures are drawn after fit), not a Trainer argument
    trainer_args = {k: v for k, v in _plain(cfg.trainer).items() if k != "figures"}
    trainer = instantiate(trainer_args, "trainer", **({"device": device} if device else {}))
    split_data = data(cfg.data)
    cap = cfg.data.get("max_resident_gb", "auto")
    feed.check_cap(cap)
    augment = instantiate(cfg.augment, "augment") if cfg.get("augment") and cfg.augment.get("_target_") else None
    if augment is not None:
        augment.check(split_data.input_shape, split_data.name)
    torch.manual_seed(cfg.seed)
    return Run(trainer=trainer, data=split_data, model=model(cfg.model, split_data),
               optimizer=instantiate(cfg.optim, "optim"),
               schedule=instantiate(cfg.schedule, "schedule") if cfg.get("schedule") else None,
               objective=objective, augment=augment, max_resident_gb=cap)


def from_checkpoint(config: dict, origin: str) -> tuple[Any, Any]:
    """(model, data) rebuilt from a checkpoint's own config. It builds whatever the config's targets name:
    the caller decides first which code a checkpoint may run (rundirs/load.py: logitlab's own, and the
    modules the user trusts)."""
    from logitlab.trainer.checkpoint import CheckpointError

    if not isinstance(config, dict) or not all(isinstance(config.get(k), dict) for k in ("data", "model")):
        raise CheckpointError(f"{origin} carries no data and model config; it was not written by logitlab.train")
    try:
        split_data = data(config["data"])
        return model(config["model"], split_data), split_data
    except ComponentError as e:  # a target that cannot be imported or built here: why, in one line
        cause = e.cause.__cause__ if isinstance(e.cause, ImportError) and e.cause.__cause__ else e.cause
        raise CheckpointError(f"{origin}: {e.key}._target_={config[e.key].get('_target_')!r} cannot be built "
                              f"here ({type(cause).__name__}: {str(cause).strip().splitlines()[0]})") from None


# ---------------------------------------------------------------------------------------- code of your own
def own_code_dirs() -> list[Path]:
    """Where a `_target_` of the user's own (mymodels.TwoLayer) is imported from, besides PYTHONPATH: the
    directory the command was given in, as `python -m` has it (a console script's sys.path lacks it), and,
    while Hydra runs a command, the folder that holds each config directory of the user's own (-cd DIR,
    hydra.searchpath=[file://DIR]): a project keeps its conf/ beside its mymodels.py, and a command given
    from elsewhere finds both."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return [Path.cwd()]
    runtime = HydraConfig.get().runtime
    dirs = [Path(runtime.cwd) if runtime.get("cwd") else Path.cwd()]  # not the run dir, with hydra.job.chdir
    for source in runtime.get("config_sources") or ():
        if source.schema == "file" and source.provider != "main":  # main: logitlab's own conf/
            dirs.append(Path(source.path).absolute().parent)
    return list(dict.fromkeys(dirs))


def where_own_code_is_imported_from() -> str:
    """The rule of own_code_dirs, as a user's error message says it."""
    cwd, *config_parents = own_code_dirs()
    parents = f", the folder that holds your config directory ({', '.join(map(str, config_parents))})" \
        if config_parents else ""
    return f"code of your own is imported from the current directory ({cwd}){parents} or PYTHONPATH"


def locate(target: str) -> Any:
    """The object a `_target_` names, imported as `instantiate` imports it."""
    from hydra._internal.utils import _locate  # hydra.utils.get_object, without its logged error

    _own_code_importable()
    return _locate(target)


def _own_code_importable() -> None:
    for folder in map(str, own_code_dirs()):
        if folder not in sys.path:
            sys.path.append(folder)  # after the installed packages: a user's file never shadows one


def _not_found(target: Any, error: BaseException) -> str | None:
    """The module of `target` itself that is not importable here (None: something else failed, such as a
    module the user's module imports in turn, which the error names already)."""
    cause = error.__cause__ if isinstance(error, ImportError) else None  # Hydra's "Error loading" wraps it
    name = cause.name if isinstance(cause, ModuleNotFoundError) else None
    if not isinstance(target, str) or not name or not (target == name or target.startswith(f"{name}.")):
        return None
    return name
