"""What a training job leaves in its run directory, for the single-run entry point (train.py) and for the
jobs of a fused group (fused/loop.py) alike: versions.json, history.csv, metrics.json, the HParams values, and
whether the directory holds this config's finished run already."""
from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from logitlab import ConfigError
from logitlab.trainer import rundir

log = logging.getLogger("logitlab")
GROUPS = ("data", "model", "optim", "schedule")  # the config groups that say what a run is


class RunFailed(BaseException):
    """A single run ended by a user's error that only training could find (the loss diverged): one line,
    exit status 1. A BaseException, so that it passes Hydra's run_job, which would print "Error executing
    job with overrides" above that line for an Exception; a sweep's jobs raise the ConfigError itself."""


def figures(setting, multirun: bool | None = None) -> bool | str:
    """trainer.figures: true (drawn before the run ends), false, or auto: a single run has them drawn in
    the background once it has ended ("background"; 2-3 s, more than its training, off the command's
    time); a sweep's jobs do not draw them (1-2 s each; the sweep draws its own)."""
    from hydra.types import RunMode

    if setting == "auto":
        multirun = HydraConfig.get().mode == RunMode.MULTIRUN if multirun is None else multirun
        return False if multirun else "background"
    if not isinstance(setting, bool):
        raise ConfigError(f"trainer.figures={setting!r} must be true, false or auto")
    return setting


def finished_result(run_dir: Path, config: dict) -> float | None:
    """A finished run's stored objective, if it was made by this config and is not asked for more epochs."""
    if not rundir.is_finished(run_dir):
        return None
    metrics = json.loads((run_dir / "metrics.json").read_text())
    from logitlab.trainer import checkpoint

    saved = checkpoint.load(run_dir / "checkpoints" / "last.pt").get("config") or {}
    changed = rundir.changed_keys(saved, config)
    if changed:
        raise ConfigError(f"{run_dir} holds a finished run of another config ({rundir.describe(changed)}); "
                          f"rerun with its values, or give another run directory")
    if metrics.get("epochs", 0) < config["trainer"]["epochs"] and not metrics.get("stopped_early"):
        return None  # asked to train longer: fit resumes from last.pt
    objective = metrics.get("objective", config["trainer"]["objective"])
    log.info(f"{run_dir} has finished already: {objective} {metrics[objective]:.4f}")
    return metrics[objective]


class HistoryFile:
    """history.csv, one row per epoch, written as each epoch ends; a resumed run drops the rows of the
    epochs it trains again (as TensorBoard purges their events)."""

    def __init__(self, path: Path):
        self.path, self.rows = path, None

    def write(self, epoch: int, metrics: dict) -> None:
        import csv

        if self.rows is None:
            self.rows = list(csv.DictReader(self.path.open())) if self.path.exists() else []
        row = {"epoch": epoch, **metrics}
        if self.rows and int(self.rows[-1]["epoch"]) == epoch - 1 and list(self.rows[-1]) == list(row):
            self.rows.append(row)  # the next epoch, same columns: one line appended, not the file rewritten
            with self.path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=list(row)).writerow(row)
            return
        self.rows = [r for r in self.rows if int(r["epoch"]) < epoch] + [row]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.rows[-1]))
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.path)


def hparams(cfg: DictConfig, hc: DictConfig | None = None) -> dict:
    """What distinguishes this run: its config group choices, seed, and every override it was given.
    `hc`: the job's hydra node (a fused group's member), else Hydra's current one."""
    hc = hc if hc is not None else HydraConfig.get()
    values = {group: hc.runtime.choices.get(group) or "none" for group in GROUPS}
    values["seed"] = cfg.seed
    for override in hc.overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in values or key.startswith("hydra.") or "=" not in override:
            continue
        value = OmegaConf.select(cfg, key, default=override.split("=", 1)[1])
        values[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return values


def write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


@functools.lru_cache(maxsize=1)  # once per process: the jobs of a sweep run in the same one
def versions() -> dict:
    import torch

    from importlib.metadata import version

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return {"logitlab": version("logitlab"), "torch": torch.__version__, "python": sys.version.split()[0],
            "git_revision": rev or None}
