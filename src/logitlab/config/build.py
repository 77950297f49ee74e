"""Config to objects: the one module that calls Hydra's `instantiate`. Everything else receives finished
objects (the trainer, the data, the model, optimizer and schedule factories) and never sees a config.

Data is loaded once per process for each distinct data config: the command-line check, and every job of
a sweep that runs in this process, share the same tensors."""
from __future__ import annotations

import json
from dataclasses import dataclass
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
    """Hydra's `instantiate`. A component's own ConfigError surfaces as itself (one line), not wrapped;
    any other error it raises while being built becomes a ComponentError naming `key`."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as hydra_instantiate

    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as e:
        cause = e.__cause__ or e
        if isinstance(cause, ConfigError):
            raise cause from None
        raise ComponentError(key, cause) from e


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def data(node: Any):
    """The SplitData a data config describes, loaded once per process."""
    plain = _plain(node)
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


def run(cfg: Any, device: str | None = None) -> Run:
    """Every component of a run from its composed config. The seed is set before the model is built:
    it fixes the initial weights. `device` overrides trainer.device (the config check builds on the CPU)."""
    import torch

    from logitlab.trainer import runtime

    runtime.skip_dynamo_import()
    objective = Objective.of(cfg.trainer.objective, cfg.trainer.get("direction", "auto"))
    # trainer.figures is the entry point's (figures are drawn after fit), not a Trainer argument
    trainer_args = {k: v for k, v in _plain(cfg.trainer).items() if k != "figures"}
    trainer = instantiate(trainer_args, "trainer", **({"device": device} if device else {}))
    split_data = data(cfg.data)
    torch.manual_seed(cfg.seed)
    return Run(trainer=trainer, data=split_data, model=model(cfg.model, split_data),
               optimizer=instantiate(cfg.optim, "optim"),
               schedule=instantiate(cfg.schedule, "schedule") if cfg.get("schedule") else None,
               objective=objective)


def from_checkpoint(config: dict, origin: str, trust_code: bool = False) -> tuple[Any, Any]:
    """(model, data) rebuilt from a checkpoint's own config. Only `logitlab.` targets are instantiated:
    a checkpoint from elsewhere must not choose what code runs. `trust_code`: the user vouches for the
    run (it is their own, with their own `_target_` modules, importable from here: the current directory
    or PYTHONPATH), so its targets are instantiated whatever they are."""
    from logitlab.trainer.checkpoint import CheckpointError

    if not isinstance(config, dict) or not all(isinstance(config.get(k), dict) for k in ("data", "model")):
        raise CheckpointError(f"{origin} carries no data and model config; it was not written by logitlab.train")
    if not trust_code:
        for group in ("data", "model"):
            _check_targets(config[group], group, origin)
    try:
        split_data = data(config["data"])
        return model(config["model"], split_data), split_data
    except ComponentError as e:  # a target that cannot be imported or built here: why, in one line
        imported = isinstance(e.cause, ImportError)
        cause = e.cause.__cause__ if imported and e.cause.__cause__ else e.cause
        where = "; run from the directory the training ran in, or put the module on PYTHONPATH" if imported else ""
        raise CheckpointError(f"{origin}: {e.key}._target_={config[e.key].get('_target_')!r} cannot be built "
                              f"here ({type(cause).__name__}: {str(cause).strip().splitlines()[0]}){where}") from None


def _check_targets(node: Any, key: str, origin: str) -> None:
    from logitlab.trainer.checkpoint import CheckpointError

    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and not str(target).startswith("logitlab."):
            raise CheckpointError(f"{origin}: config {key}._target_={target!r} is not a logitlab class or "
                                  f"function; refusing to run code named by a checkpoint; if the run is yours, "
                                  f"add trust_code=true")
        for k, v in node.items():
            _check_targets(v, f"{key}.{k}", origin)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_targets(v, f"{key}[{i}]", origin)
