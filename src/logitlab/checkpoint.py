"""Checkpoints that survive crashes: written to a temporary file in the same directory, fsynced and
renamed (atomic on POSIX), loaded with `weights_only=True` so a checkpoint cannot run code.

A checkpoint is a dict of tensors and plain values: model, optimizer and schedule state, the position
in training (epoch, and step inside an interrupted epoch), RNG states and the resolved config.
"""
from __future__ import annotations

import os
import pickle
import shutil
import sys
from pathlib import Path

import torch

from logitlab import ConfigError

TMP_SUFFIX = ".tmp"


class CheckpointError(ConfigError):
    """A file that is not a loadable logitlab checkpoint."""


def save(state: dict, path: Path) -> None:
    """Write `state` to `path` so that `path` is always either the old file or the complete new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch's zip writer reports a failed write as RuntimeError
        tmp.unlink(missing_ok=True)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "the write failed (disk full?)"
        raise ConfigError(f"could not write checkpoint {path}: {reason}; the previous checkpoint is intact") from None


def copy(src: Path, dst: Path) -> None:
    """Atomically make `dst` a copy of `src` (best.pt from a freshly written last.pt)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}{TMP_SUFFIX}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        code = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line), None)
        if code:  # the pickle names a function or class to call: exactly what an exploit does
            raise CheckpointError(f"{path} was refused by the safe loader (weights_only=True): {code}") from None
        raise CheckpointError(f"{path} is truncated or not a checkpoint (unreadable pickle)") from None
    except Exception as e:  # arbitrary bytes break the unpickler in arbitrary ways (KeyError, EOFError, ...)
        raise CheckpointError(f"{path} is truncated or not a checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a logitlab checkpoint (no 'model' entry)")
    return state


def latest(checkpoint_dir: Path) -> dict | None:
    """The newest loadable checkpoint in `checkpoint_dir`, or None if it holds none at all.

    Stray temporary files from a killed save are removed. A corrupt file is reported and skipped; if
    checkpoints exist but none loads, that is an error rather than a silent restart from scratch."""
    for tmp in checkpoint_dir.glob(f".*{TMP_SUFFIX}"):
        tmp.unlink(missing_ok=True)
    candidates = [p for p in (checkpoint_dir / "last.pt", checkpoint_dir / "best.pt") if p.exists()]
    states, errors = [], []
    for path in candidates:
        try:
            states.append(load(path))
        except CheckpointError as e:
            errors.append(str(e))
            print(f"warning: {e}; falling back to an older checkpoint", file=sys.stderr)
    if candidates and not states:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir} loads ({'; '.join(errors)}); "
                              f"move the directory away to start afresh")
    return max(states, key=lambda s: (s["epoch"], s.get("step", 0)), default=None)
