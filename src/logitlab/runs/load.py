"""Finding and loading a trained run: its checkpoint file, the model and data rebuilt from the config the
checkpoint carries, and the weights loaded strictly. Two guards make a checkpoint from elsewhere safe to
open: it is unpickled with `weights_only=True` (no code runs while loading), and only `logitlab.` targets
in its config are instantiated (no code named by the config runs either)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from logitlab.config import build
from logitlab.data.splits import SplitData
from logitlab.runs.cli import UsageError
from logitlab.trainer.checkpoint import CheckpointError, load as load_checkpoint

CHECKPOINTS = ("best", "last")


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


def load_run(run: str | Path, checkpoint: str = "best",
             trust_code: bool = False) -> tuple[nn.Module, SplitData, dict]:
    """The trained model (in eval mode, on the CPU), its data and its resolved config (`trust_code`: see
    build.from_checkpoint)."""
    path = checkpoint_path(run, checkpoint)
    state = load_checkpoint(path)
    if not isinstance(state["model"], dict):
        raise CheckpointError(f"{path} holds no model state_dict; it was not written by logitlab.train")
    model, data = build.from_checkpoint(state.get("config"), str(path), trust_code)
    load_weights(model, state["model"], path)
    return model.eval(), data, state["config"]


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
