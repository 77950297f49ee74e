"""Checkpoints that survive crashes: written to a temporary file in the same directory, fsynced and
renamed (atomic on POSIX), loaded with `weights_only=True` so a checkpoint cannot run code.

A checkpoint is a dict of tensors and plain values: the state_dict of every stateful object of a run
(model, optimizer, schedule, RNGs, position in training, record) and the resolved config.

When to write is decided here too (`Writer`). Checkpoints cost training about 1% at most: a copy of the
state taken at an epoch's end is written (torch.save, fsync, rename) by a background thread while the next
epoch trains; its fsync wait costs nothing, its pickling about its CPU time (the GIL). So last.pt is
written after every epoch that ends at least 100 times that CPU time (~1 ms) after the previous write
began: every epoch of 0.1 s or more, shorter ones every few. A signal checkpoints the exact step, and
closing the writer waits for the write in flight and writes the best epoch's state if it is not on disk
yet (it waits in memory), so best.pt is exact whatever ends the run.
"""
from __future__ import annotations

import logging
import os
import pickle
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import torch

from logitlab import ConfigError

TMP_SUFFIX = ".tmp"
log = logging.getLogger("logitlab")


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
            log.warning(f"{e}; falling back to an older checkpoint")
    if candidates and not states:
        raise CheckpointError(f"no checkpoint in {checkpoint_dir} loads ({'; '.join(errors)}); "
                              f"move the directory away to start afresh")
    return max(states, key=_progress, default=None)


def _progress(state: dict) -> tuple[int, int]:
    position = state.get("position") or {}
    return position.get("epoch", 0), position.get("step", 0)


class Writer:
    """Writes checkpoints/last.pt and best.pt on one background thread, in order, at most as often as
    keeps their cost near 1% of training (see the module's docstring)."""

    def __init__(self, directory: Path, min_spacing_s: float = 0.0, share: int = 1):
        # share: runs training together (a fused group), whose writes all come out of the same training time
        self.directory, self.min_spacing_s, self.share = Path(directory), min_spacing_s, share
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="logitlab-checkpoint")
        self._writing: Future | None = None
        self._saved_at, self._cpu_seconds = 0.0, 0.0
        self._unsaved_best: dict | None = None

    def epoch_end(self, snapshot: Callable[[], dict], improved: bool, final: bool,
                  then: Callable[[], None] | None = None) -> None:
        """An epoch ended: write last.pt (and best.pt if `improved`) when due and the thread is free, else
        keep the state in memory if it is the best so far. The final epoch waits for its write."""
        spacing = max(self.min_spacing_s, 100 * self._cpu_seconds * self.share)  # writes take <= 1% of training
        free = self._writing is None or self._writing.done()
        if free and time.monotonic() - self._saved_at >= spacing or final:
            self.write(snapshot(), best=improved, wait=final, then=then)
        elif improved:
            self._unsaved_best = snapshot()

    def write(self, state: dict, best: bool = False, wait: bool = False, then: Callable[[], None] | None = None) -> None:
        """Write `state` as last.pt, then best.pt (this state if `best`, else the best epoch's if it is not
        on disk yet), then call `then()`. `wait` returns once written."""
        self.wait()  # one write at a time, in order
        unsaved_best, self._unsaved_best = (None if best else self._unsaved_best), None
        self._saved_at = time.monotonic()
        last, best_path = self.directory / "last.pt", self.directory / "best.pt"

        def write() -> None:
            started = time.thread_time()
            save(state, last)
            if best:
                copy(last, best_path)
            elif unsaved_best is not None:
                save(unsaved_best, best_path)
            if then is not None:
                then()
            self._cpu_seconds = time.thread_time() - started  # about what it took from training
        self._writing = self._pool.submit(write)
        if wait:
            self.wait()

    def wait(self) -> None:
        """Block until the write in flight is on disk; a failed write (disk full) raises here."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def close(self) -> None:
        """On every way out of training: the write in flight lands, and so does a best state not yet on disk."""
        try:
            self.wait()
            if self._unsaved_best is not None:
                save(self._unsaved_best, self.directory / "best.pt")
                self._unsaved_best = None
        finally:
            self._pool.shutdown()
