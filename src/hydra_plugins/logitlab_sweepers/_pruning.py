"""Per-epoch reports from a training job to its Optuna trial, so that the study holds every trial's curve
(optuna-dashboard shows them) and the sweep's pruner, if any, can stop a hopeless trial early. The job
learns everything from its own Hydra config: the study lives in the storage the sweeper's settings name,
and the trial is the job (the sweeper launches trial N as job N). The job's app only announces its epochs
(logitlab.trainer.hooks); it knows nothing of Optuna."""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Optional

from ._errors import SweepError

log = logging.getLogger("logitlab.sweep")

# The pruners known by name. `median` waits for 5 finished trials and never judges a trial in its first
# 5 epochs: early epochs say little about where a run ends (pruning from epoch 1 cut most good trials).
PRUNERS = {"median": {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 5, "n_warmup_steps": 5},
           "hyperband": {"_target_": "optuna.pruners.HyperbandPruner"}}


def open_storage(storage: str, heartbeat_s: Optional[int] = None) -> Any:
    """An Optuna storage: a database URL (sqlite:///study.db, postgresql://...) or the path of an
    Optuna journal file (for processes on one host). `heartbeat_s`: the sweeper's, whose trials' leases
    (_leases.py) use the database's heartbeat table."""
    import warnings

    import optuna

    if "://" in storage:
        if heartbeat_s is None:
            return optuna.storages.RDBStorage(storage)
        with warnings.catch_warnings():  # heartbeat_interval is "experimental" since Optuna 2.9, still in 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(storage, heartbeat_interval=heartbeat_s, grace_period=4 * heartbeat_s)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))


def storage_of(sweeper_storage: Optional[str], sweep_dir: Path) -> str:
    return sweeper_storage or str(Path(sweep_dir).absolute() / "optuna.journal")


def pruner_spec(pruner: Any) -> Optional[dict]:
    """The pruner as a {_target_: ...} mapping (a name is looked up in PRUNERS); None for no pruner."""
    if pruner in (None, "none"):
        return None
    if isinstance(pruner, str):
        if pruner not in PRUNERS:
            raise SweepError(f"hydra.sweeper.pruner={pruner!r}; valid: null, median, hyperband, "
                             f"or {{_target_: optuna.pruners.NAME, ...}}")
        return dict(PRUNERS[pruner])
    return dict(pruner)


def make_pruner(spec: Optional[dict]) -> Any:
    import optuna
    from hydra.utils import instantiate

    return instantiate(spec) if spec else optuna.pruners.NopPruner()


def epoch_reporter(storage: str, study_name: str, trial_number: int, objective: str,
                   pruner: Optional[dict], heartbeat_s: Optional[int] = None) -> Callable[[int, dict], None]:
    """A hook for the end of each epoch: reports metrics[objective] as the trial's value at step `epoch`
    and raises optuna.TrialPruned when the pruner says the trial cannot catch up. The pruner judges with
    every trial's reports in the storage. With `heartbeat_s`, the job holds its trial while it runs
    (_leases.py): a job that outlives its sweeper (SLURM) is not started a second time."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage, heartbeat_s),
                              sampler=optuna.samplers.RandomSampler(), pruner=make_pruner(pruner))
    from ._leases import job_number

    # the trial running as this job: trial N, or the continuation of trial N after its sweeper stopped
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    frozen = next((t for t in running if job_number(t) == trial_number), None)
    if frozen is None:
        # A finished trial's job rerun by hand (or a job of another study): train, leave the study alone.
        log.info(f"no trial of study {study_name!r} runs as job {trial_number}; epochs are not reported")
        return lambda epoch, metrics: None
    trial = optuna.trial.Trial(study, frozen._trial_id)
    if heartbeat_s:
        _hold_while_running(study, frozen._trial_id, heartbeat_s)

    def report(epoch: int, metrics: dict) -> None:
        value = float(metrics.get(objective, math.nan))
        if not math.isfinite(value):
            return  # a diverged run fails on its own; a NaN would only confuse the pruner
        trial.report(value, step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} with {objective} {value:.4f}")

    return report


def _hold_while_running(study, trial_id: int, interval: int) -> None:
    """This job process becomes its trial's holder and beats for it until the trial is told (by the
    sweeper) or the process ends."""
    import threading

    import optuna

    from ._leases import WORKER, beat, identity

    storage = study._storage
    beat(storage, trial_id)
    storage.set_trial_user_attr(trial_id, WORKER, identity())

    def beating() -> None:
        stopped = threading.Event()
        while not stopped.wait(interval):
            try:
                if storage.get_trial(trial_id).state != optuna.trial.TrialState.RUNNING:
                    return
                beat(storage, trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                return
            except Exception as e:  # a database hiccup: the next beat retries
                log.warning(f"heartbeat for trial id {trial_id} not recorded: {e}")

    threading.Thread(target=beating, name=f"logitlab-trial-{trial_id}-heartbeat", daemon=True).start()
