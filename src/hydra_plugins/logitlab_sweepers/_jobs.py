"""What both sweepers do around each job, in the sweeper's process: read back how it ended, decide how
many jobs go out at once and on which GPU, and say how far the sweep has come. In the job's own process,
_task.Task runs it."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf

from ._errors import SweepError  # noqa: F401  (raised by the sweeper's parts, which import it from here)

log = logging.getLogger("logitlab.sweep")

BASIC_LAUNCHER = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def quote(text: str) -> str:
    """`text` as a quoted value in Hydra's override grammar (paths hold '=' and ',')."""
    return "'" + str(text).replace("'", "\\'") + "'"


def job_state(error: BaseException) -> str:
    """PRUNED for Optuna's TrialPruned; INTERRUPTED for what stops more than the job (Ctrl-C, or
    logitlab's Interrupted after a signal: BaseExceptions that Hydra's run_job lets through, so the
    sweep stops too); FAIL for any other exception."""
    from optuna.exceptions import TrialPruned

    if isinstance(error, TrialPruned):
        return "PRUNED"
    return "FAIL" if isinstance(error, Exception) else "INTERRUPTED"


@dataclass
class Job:
    """One finished job as the summary shows it."""

    number: int
    status: str  # COMPLETE, PRUNED, FAIL (or RUNNING: an Optuna trial that a stopped sweep left)
    value: float | None = None
    params: dict = field(default_factory=dict)
    overrides: list = field(default_factory=list)  # the ones that vary between jobs
    error: str | None = None
    job_dir: str | None = None
    log: str | None = None
    wall_seconds: float | None = None


def read_job(ret: JobReturn, number: int, overrides: Sequence[str], params: dict) -> Job:
    """How a launched job ended. Reads `_return_value`: `return_value` re-raises a failed job's error."""
    job = Job(number=number, status="COMPLETE", params=dict(params), overrides=list(overrides))
    if ret.status == JobStatus.COMPLETED:
        job.value = ret._return_value
    else:
        error = ret._return_value
        job.status = job_state(error) if isinstance(error, BaseException) else "FAIL"
        job.error = f"{type(error).__name__}: {error}"
    if ret.hydra_cfg is not None:
        job.job_dir = ret.hydra_cfg.hydra.runtime.output_dir
        job.log = OmegaConf.select(ret.hydra_cfg, "hydra.job_logging.handlers.file.filename", default=None)
        record = Path(job.job_dir) / "job.json"
        if record.exists():
            job.wall_seconds = json.loads(record.read_text()).get("wall_seconds")
    return job


def on_cluster(config: DictConfig) -> bool:
    """Whether each job runs in an allocation of its own (SLURM), not on this machine's cores."""
    return "slurm" in str(config.hydra.launcher.get("_target_", "")).lower()


def jobs_outlive_sweeper(config: DictConfig) -> bool:
    """Whether launched jobs go on running when the sweeper stops (submitit's: SLURM jobs, local
    subprocesses); Hydra's basic launcher runs them in the sweeper, joblib's workers are stopped with it."""
    return on_cluster(config) or "submitit" in str(config.hydra.launcher.get("_target_", ""))


def launcher_parallelism(config: DictConfig) -> int:
    """How many jobs the configured launcher runs at once: joblib's n_jobs, submitit's
    array_parallelism, else 1 (Hydra's basic launcher runs them one by one in this process)."""
    launcher = config.hydra.launcher
    n = launcher.get("n_jobs") or launcher.get("array_parallelism") or 1
    return (os.cpu_count() or 1) if n < 0 else int(n)


def visible_gpus() -> list[str]:
    """GPUs a parallel job can be pinned to: CUDA_VISIBLE_DEVICES when set, else those nvidia-smi lists
    (asking torch would initialise CUDA in the sweeper's process for nothing)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return out.split()


def pin_gpus(batch: list[list[str]], gpus: Sequence[str]) -> list[list[str]]:
    """Give the k-th job of a batch GPU k mod len(gpus) through its environment. CUDA reads
    CUDA_VISIBLE_DEVICES once per process, so the launcher must start fresh workers for each batch
    (see fresh_workers)."""
    return [overrides + [f"++hydra.job.env_set.CUDA_VISIBLE_DEVICES={quote(gpus[k % len(gpus)])}"]
            for k, overrides in enumerate(batch)]


def fresh_workers() -> None:
    """Stop joblib's reusable worker processes: a worker that already initialised CUDA keeps the GPU it
    saw first, whatever the next job's CUDA_VISIBLE_DEVICES says."""
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def gpus_to_pin(config: DictConfig) -> list[str]:
    """The GPUs to spread parallel jobs over: only for the joblib launcher (submitit gives each job its
    own allocation; the basic launcher runs one job at a time) and only when there are two or more."""
    if "joblib" not in str(config.hydra.launcher.get("_target_", "")):
        return []
    gpus = visible_gpus()
    return gpus if len(gpus) > 1 else []


# Launchers that log every launch (Hydra's basic launcher: "Launching 1 jobs locally" and the overrides,
# before every job; joblib's: its whole settings, every batch). Progress says it once per job instead.
_LAUNCHER_LOGGERS = ("hydra._internal.core_plugins.basic_launcher", "hydra_plugins.hydra_joblib_launcher")


@contextmanager
def quiet_launchers() -> Iterator[None]:
    """Launchers log warnings only, inside the block."""
    loggers = [logging.getLogger(name) for name in _LAUNCHER_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """One log line per finished job: `job k/N done: #num STATUS objective=value (elapsed 12.3s, ETA 40s)`.
    ETA is the mean time of the jobs finished in this run x the jobs left / jobs at a time."""

    def __init__(self, total: int, objective: str, parallelism: int, done: int = 0):
        self.total, self.objective, self.parallelism = total, objective, max(1, parallelism)
        self.done, self.started, self.seconds = done, time.perf_counter(), []

    def finished(self, job: Job) -> str:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        # A job's time is its own wall time, or more where launching it costs more (this run's pace).
        pace = elapsed * self.parallelism / (len(self.seconds) + 1)
        self.seconds.append(max(job.wall_seconds or 0.0, pace))
        left = max(0, self.total - self.done)
        eta = sum(self.seconds) / len(self.seconds) * left / self.parallelism
        value = f"{job.value:.4f}" if isinstance(job.value, (int, float)) else "-"
        error = f" ({job.error})" if job.status != "COMPLETE" and job.error else ""
        line = (f"job {self.done}/{self.total} done: #{job.number} {job.status} {self.objective}={value}{error} "
                f"(elapsed {elapsed:.1f}s, ETA {duration(eta)})  [{' '.join(job.overrides)}]")
        log.info(line)
        return line
