"""What `predict`, `evaluate` and `export` share: loading a trained run back, softmax probabilities from
its logits, and their `key=value` command lines.

A run is rebuilt from its checkpoint alone: the checkpoint carries the resolved config, so the data and
the model are instantiated from it and the weights loaded strictly. Two guards make a checkpoint from
elsewhere safe to open: it is unpickled with `weights_only=True` (no code runs while loading), and only
`logitlab.` targets in its config are instantiated (no code named by the config runs either).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from logitlab import ConfigError
from logitlab.checkpoint import CheckpointError, load as load_checkpoint
from logitlab.data import SplitData
from logitlab.train import build
from logitlab.trainer import EVAL_BATCH

CHECKPOINTS = ("best", "last")


class UsageError(ConfigError):
    """A command line that does not parse; the command exits with status 2."""


# ---------------------------------------------------------------------------------------- loading a run
def checkpoint_path(run: str | Path, checkpoint: str = "best") -> Path:
    """`run` is a run directory (its checkpoints/<checkpoint>.pt) or a checkpoint file."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.exists():
        raise CheckpointError(f"run={run} does not exist; give a run directory (outputs/DATE/TIME) "
                              f"or a checkpoint file")
    if checkpoint not in CHECKPOINTS:
        raise UsageError(f"checkpoint={checkpoint!r} is not known; valid: {', '.join(CHECKPOINTS)}")
    path = run / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        raise CheckpointError(f"run={run} has no checkpoints/{checkpoint}.pt; is it a training run directory?")
    return path


def run_dir_of(path: Path) -> Path:
    """The run directory a checkpoint file belongs to (where reports are written next to metrics.json)."""
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def load_run(run: str | Path, checkpoint: str = "best") -> tuple[nn.Module, SplitData, dict]:
    """The trained model (in eval mode, on the CPU), its data and its resolved config."""
    path = checkpoint_path(run, checkpoint)
    state = load_checkpoint(path)
    config = state.get("config")
    if not isinstance(config, dict) or not all(isinstance(config.get(k), dict) for k in ("data", "model")):
        raise CheckpointError(f"{path} carries no data and model config; it was not written by logitlab.train")
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{path} holds no model state_dict; it was not written by logitlab.train")
    for group in ("data", "model"):
        _check_targets(config[group], group, path)
    data = build(config["data"])
    model = build(config["model"], input_shape=data.input_shape, num_classes=data.num_classes)
    load_weights(model, state["model"], path)
    return model.eval(), data, config


def _check_targets(node, key: str, path: Path) -> None:
    """Refuse any `_target_` outside logitlab: a checkpoint's config must not choose what code runs."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and not str(target).startswith("logitlab."):
            raise CheckpointError(f"{path}: config {key}._target_={target!r} is not a logitlab class or "
                                  f"function; refusing to run code named by a checkpoint")
        for k, v in node.items():
            _check_targets(v, f"{key}.{k}", path)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _check_targets(v, f"{key}[{i}]", path)


def load_weights(model: nn.Module, state_dict: dict, path: Path | str) -> None:
    """`load_state_dict(strict=True)`, with a mismatch reported as one line naming the keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    resized = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
               if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or resized:
        parts = [f"{what}: {_first(keys)}" for what, keys in
                 (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", resized)) if keys]
        raise CheckpointError(f"{path} does not fit the {type(model).__name__} built from its config; "
                              + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def _first(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


# ---------------------------------------------------------------------------------------- probabilities
@torch.no_grad()
def logits(model: nn.Module, x: Tensor) -> Tensor:
    """The model's raw outputs (N, num_classes) in eval mode, in batches; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(x[i:i + EVAL_BATCH]).float() for i in range(0, len(x), EVAL_BATCH)])
    finally:
        model.train(was_training)


def softmax(z: Tensor) -> Tensor:
    """Row-wise softmax. Subtracting the row maximum first means exp never overflows: [200, 10, -4]
    gives [1, 3e-83, 2.5e-89] in float64 and [1, 0, 0] in float32, never inf/inf = NaN."""
    e = (z - z.amax(dim=1, keepdim=True)).exp()
    return e / e.sum(dim=1, keepdim=True)


def probabilities(model: nn.Module, x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """softmax(model(x)) per row, (N, num_classes), computed in `dtype` (float64 keeps tiny
    probabilities that float32 rounds to 0)."""
    return softmax(logits(model, x).to(dtype))


# ---------------------------------------------------------------------------------------- command lines
def parse_args(argv: list[str], options: dict[str, str | None], usage: str) -> dict[str, str]:
    """`key=value` arguments (the style of Hydra overrides) over the defaults in `options`; a default of
    None marks a required key. `-h`/`--help` prints `usage` and exits."""
    if any(a in ("-h", "--help") for a in argv):
        print(usage.strip())
        raise SystemExit(0)
    args = dict(options)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in options:
            what = f"unknown key {key!r}" if sep else f"{arg!r} is not key=value"
            raise UsageError(f"{what}; valid keys: {', '.join(options)}")
        args[key] = value
    missing = [k for k, v in args.items() if v is None]
    if missing:
        raise UsageError(f"{', '.join(f'{k}=...' for k in missing)} is required; valid keys: {', '.join(options)}")
    return args


def as_int(key: str, value: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or not low <= number <= high:
        raise UsageError(f"{key}={value!r} must be an integer from {low} to {high}")
    return number


def cli(command: Callable[..., None], options: dict[str, str | None], usage: str,
        argv: list[str] | None = None) -> None:
    """Run `command(**args)` for a console script: a user error is one line on stderr and exit status 1
    (2 for a command line that does not parse), never a traceback."""
    try:
        command(**parse_args(sys.argv[1:] if argv is None else argv, options, usage))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2 if isinstance(e, UsageError) else 1) from None
    except OSError as e:  # out= in a missing or unwritable directory, a full disk
        if isinstance(e, BrokenPipeError):  # `out=- | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
            raise SystemExit(0) from None
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        raise SystemExit(1) from None
