"""Where a study's trials come from and where their endings go: orphans of stopped sweepers first
(continued in their job directories), then new trials asked of the sampler while the study has fewer than
n_trials, each held by this sweeper (_leases.py) and told how its job ended; and the study's trials counted
(a continued trial once, as its continuation) and listed as the rows of the summary."""
from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.trial import TrialState

from . import _jobs
from ._leases import Leases, superseded
from ._jobs import log


class Trials:
    """Where a sweeper's next trials come from: orphans of stopped sweepers first (continued in their
    job directories), then new ones asked of the sampler while the study has fewer than n_trials."""

    WAIT = "wait"  # nothing to run now, but another sweeper's trials still run: one may be left to us

    def __init__(self, study, space, n_trials: int, leases: Leases, seed: int | None):
        self.study, self.space, self.n_trials, self.leases, self.seed = study, space, n_trials, leases, seed
        self._waiting_said = False

    def next(self, n: int) -> list[optuna.Trial] | str:
        """Up to n trials to launch; [] when the study is done, WAIT while another sweeper's run."""
        batch = []
        for orphan in self.leases.orphans():
            if len(batch) == n:
                break
            if "overrides" not in orphan.user_attrs:  # its sweeper died sampling it: never launched
                self.leases.drop_uncounted(orphan._trial_id, "never launched: its sweeper stopped while sampling it")
                continue
            trial = self.leases.take_over(orphan)
            if trial is not None:
                batch.append(trial)
        while len(batch) < n and _counted(self.study) < self.n_trials:
            trial = self.ask()
            if trial is not None:
                batch.append(trial)
        if batch:
            self._waiting_said = False
            return batch
        if self.leases.others_running():
            if not self._waiting_said:
                log.info("no trial left to ask: waiting for the other sweepers' running trials (one that "
                         "stops being held is continued here)")
                self._waiting_said = True
            return self.WAIT
        return []

    def ask(self) -> optuna.Trial | None:
        """A new trial, held; None if it is not to run (another sweeper asked the study's last one at the
        same time, or judged this one an orphan before it was held)."""
        with warnings.catch_warnings():  # Optuna warns that its heartbeat is for optimize(); ours is _leases'
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            trial = self.study.ask()
        if self.seed is not None:
            _seed_for(self.study.sampler, self.seed + trial.number)
        try:
            self.leases.hold(trial)
            trial.set_user_attr("overrides", self.space.ask(trial))
        except optuna.exceptions.UpdateFinishedTrialError:
            return None
        if _counted_numbers(self.study).index(trial.number) >= self.n_trials:  # sweepers racing for the last trial: the later loses
            self.leases.drop_uncounted(trial._trial_id, f"asked past n_trials={self.n_trials} while another "
                                                         f"sweeper asked the last trial")
            return None
        return trial

    def tell(self, trial: optuna.Trial, job: _jobs.Job) -> None:
        _tell(self.study, trial, job)
        self.leases.drop(trial)


def _seed_for(sampler: Any, seed: int) -> None:
    """Make a seeded sampler draw trial N's independent values from seed + N: a study's trials are then
    the same whichever of several sweepers asks them, and sweepers started together with the same command
    do not ask the same values (a shared seed alone would have each draw one sequence). Optuna's random,
    TPE (its startup trials) and grid samplers keep their generator in `_rng`."""
    from optuna.samplers._lazy_random_state import LazyRandomState

    for s in (sampler, getattr(sampler, "_random_sampler", None)):
        if s is not None and isinstance(getattr(s, "_rng", None), LazyRandomState):
            s._rng = LazyRandomState(seed)


def _counted_numbers(study: optuna.Study) -> list[int]:
    """The numbers of the study's trials towards n_trials, in order: each continued trial counts once, as
    its continuation; one asked past n_trials or never launched counts for nothing."""
    every = study.get_trials(deepcopy=False)
    return sorted({t.number for t in every} - superseded(every))


def _counted(study: optuna.Study) -> int:
    return len(_counted_numbers(study))


def finished(study: optuna.Study) -> int:
    every = study.get_trials(deepcopy=False)
    gone = superseded(every)
    return sum(t.state.is_finished() and t.number not in gone for t in every)


def _tell(study: optuna.Study, trial: optuna.Trial, job: _jobs.Job) -> None:
    if job.status == "COMPLETE" and not isinstance(job.value, (int, float)):
        job.status, job.error = "FAIL", f"TypeError: the task returned {job.value!r}, not a number"
    try:
        for key in ("job_dir", "log", "wall_seconds", "error"):  # before tell: a finished trial is read-only
            trial.set_user_attr(key, getattr(job, key))
    except optuna.exceptions.UpdateFinishedTrialError:
        log.warning(f"trial {trial.number} ended {job.status} here, but another sweeper had taken it over "
                    f"(no heartbeat from this one for too long): its continuation's result counts")
        return
    # skip_if_finished: a trial that another sweeper took over (this one's heartbeat lapsed) is its now
    try:
        if job.status == "COMPLETE":
            study.tell(trial, float(job.value), skip_if_finished=True)
        else:
            study.tell(trial, state=TrialState[job.status], skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:  # taken over between the two writes
        log.warning(f"trial {trial.number} ended {job.status} here, but another sweeper had just taken it over")


def all_jobs(study: optuna.Study) -> list[_jobs.Job]:
    """Every trial of the study, as rows of the summary (a continued trial as its continuation)."""
    every = study.get_trials(deepcopy=False)
    gone = superseded(every)
    return [_jobs.Job(number=t.number, status=t.state.name, value=t.value, params=t.params,
                      overrides=t.user_attrs.get("overrides", []), error=t.user_attrs.get("error"),
                      job_dir=t.user_attrs.get("job_dir"), log=t.user_attrs.get("log"),
                      wall_seconds=t.user_attrs.get("wall_seconds"))
            for t in every if t.number not in gone]
