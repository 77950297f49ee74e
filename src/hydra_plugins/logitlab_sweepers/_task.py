"""The task function as the launcher runs it, in the job's own process: it runs the app's task function
(or, for a fused group, logitlab's group of jobs), reports a trial's epochs to its Optuna trial, and records
in <job dir>/job.json how the job ended. The sweeper's side of a job (how it is read back, how many run at
once, on which GPU) is _jobs.py's."""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ._jobs import job_state, log


def _is_config_error(error: BaseException) -> bool:
    from logitlab import ConfigError

    return isinstance(error, ConfigError)


def _not_finite(value: Any) -> bool:
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):  # not a number (None, a dict...): not ours to judge
        return False


class Task:
    """The task function as the launcher runs it, in the job's process.

    Hydra's run_job turns a job's exception into its JobReturn and logs nothing, so this is the last
    place where the traceback exists: it goes to the job's log. A NaN/inf objective becomes a failure
    here as well, and <job dir>/job.json records how the job ended and its wall time for the summary."""

    def __init__(self, task_function: Callable[[DictConfig], Any]):
        self.task_function = task_function
        # Set by a study before it launches: {storage, study_name, objective, pruner}. The
        # launcher sends this object to the job's process, so the job needs nothing from the sweeper's.
        self.link: dict | None = None
        self.jobs_at_once = 1  # set by the sweeper: the job's trainer.threads=auto takes its share of the cores
        # fused groups by their first member's number: (members' numbers, their composed configs)
        self.groups: dict[int, tuple[list[int], list[DictConfig]]] = {}

    def __call__(self, cfg: DictConfig) -> Any:
        from logitlab.trainer.runtime import JOBS_AT_ONCE

        os.environ[JOBS_AT_ONCE] = str(self.jobs_at_once)
        hc = HydraConfig.get()
        job_dir = Path(hc.runtime.output_dir)
        started = time.perf_counter()

        def record(status: str, error: str | None = None) -> None:
            seconds = round(time.perf_counter() - started, 3)
            ending = {"status": status, "wall_seconds": seconds, "error": error}
            (job_dir / "job.json").write_text(json.dumps(ending, indent=2) + "\n")
            if status in ("PRUNED", "FAIL"):  # TensorBoard's HParams tab shows the run as it ended
                from logitlab.reporting.tensorboard_log import record_status

                record_status(job_dir, status)

        from ._fusing import GROUP_ENV, run_group

        try:
            if os.environ.get(GROUP_ENV):  # a fused group: its members record their own endings
                numbers, configs = self.groups[int(os.environ[GROUP_ENV])]
                return run_group(configs, [_trial_hooks(self.link, n) for n in numbers])
            with _pruning_hook(self.link, int(hc.job.num)):
                value = self.task_function(cfg)
        except BaseException as e:
            state, error = job_state(e), f"{type(e).__name__}: {e}"
            record(state, error)
            if state == "FAIL":
                # A user's error (logitlab's ConfigError) needs no traceback; anything else may be a bug.
                log.error(f"job failed: {error}", exc_info=None if _is_config_error(e) else e)
            else:
                log.info(f"job {state.lower()}: {e}")
            raise
        if _not_finite(value):
            error = f"ValueError: the objective is {value}"
            record("FAIL", error)
            log.error(f"job failed: {error}")
            raise ValueError(f"the objective is {value}")
        record("COMPLETE")
        return value


def _trial_hooks(link: dict | None, trial_number: int) -> list:
    """A fused member's per-epoch hooks: its trial's reporter (and pruner), for a study."""
    if link is None:
        return []
    from ._pruning import epoch_reporter

    return [epoch_reporter(trial_number=trial_number, **link)]


@contextmanager
def _pruning_hook(link: dict | None, trial_number: int) -> Iterator[None]:
    """For a trial of a study: report the app's epochs (logitlab.trainer.hooks) to the trial (and its pruner)."""
    if link is None:
        yield
        return
    from logitlab.trainer import hooks

    from ._pruning import epoch_reporter

    with hooks.listening(epoch_reporter(trial_number=trial_number, **link)):
        yield
