"""Which sweeper runs which trial, when several sweepers (on one host or several) work on one study.

Each sweeper holds a lease on the trials it launched: a heartbeat recorded every `interval` seconds
while they run (the database's own heartbeat table for an RDB storage, timed by the database server's
clock; a user attribute for a journal file, which serves one host and so one clock). A RUNNING trial that
no live sweeper holds is an orphan: its heartbeat is older than the grace period, its sweeper was a
process on this host that no longer exists, or its sweeper released it on a clean stop (Ctrl-C, SIGTERM),
so that a rerun continues it at once. A trial whose sweeper merely still runs is never touched.

An orphan is taken over by exactly one sweeper: it fails the trial (a compare-and-set in every Optuna
storage: a second sweeper doing the same gets UpdateFinishedTrialError) and creates its continuation,
a new RUNNING trial with the same parameters that runs in the orphan's job directory (where the job
resumes from its checkpoint) and names the original in `continues`. The failed original counts for
nothing: not in n_trials, not in summary.csv, not as a failure."""
from __future__ import annotations

import datetime
import logging
import os
import socket
import threading
from typing import Optional

import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger("logitlab.sweep")

WORKER = "worker"  # user attribute: the sweeper that launched the trial, {"host": ..., "pid": ...}
BEAT = "heartbeat"  # user attribute (journal storage): time.time() of the last heartbeat
RELEASED = "released"  # user attribute: its sweeper stopped cleanly and gave it up
CONTINUES = "continues"  # user attribute of a continuation: the number of the trial it took over
JOB = "job"  # user attribute: the job number (and directory) a trial runs as, if not its own number


def job_number(trial: FrozenTrial | optuna.Trial) -> int:
    """The job (directory) a trial runs as: its own number, or for a continuation the original's."""
    return int(trial.user_attrs.get(JOB, trial.number))


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """The numbers of the trials that a continuation took over."""
    return {int(t.user_attrs[CONTINUES]) for t in trials if CONTINUES in t.user_attrs}


class Leases:
    def __init__(self, study: optuna.Study, interval: int, grace: Optional[int] = None):
        self.study, self.interval = study, interval
        self.grace = grace if grace is not None else 4 * interval
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}
        self.held: dict[int, int] = {}  # trial id -> number, while it runs
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        storage = study._storage  # (Optuna wraps an RDBStorage in a cache that passes heartbeats on)
        self._db_heartbeat = getattr(storage, "get_heartbeat_interval", lambda: None)() is not None

    # ------------------------------------------------------------------ this sweeper's trials
    def hold(self, trial: optuna.Trial) -> None:
        trial.set_user_attr(WORKER, self.me)
        with self._lock:
            self.held[trial._trial_id] = trial.number
        self._beat(trial._trial_id)

    def drop(self, trial: optuna.Trial) -> None:
        """The trial has been told how it ended."""
        with self._lock:
            self.held.pop(trial._trial_id, None)

    def release_all(self) -> None:
        """A clean stop: hand every trial still held to the next sweeper at once (no grace period)."""
        with self._lock:
            held, self.held = dict(self.held), {}
        for trial_id in held:
            try:
                self.study._storage.set_trial_user_attr(trial_id, RELEASED, True)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass

    def __enter__(self) -> "Leases":
        self._thread = threading.Thread(target=self._beating, name="logitlab-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if exc_type is not None:
            self.release_all()

    def _beating(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self.held)
            for trial_id in ids:
                try:
                    self._beat(trial_id)
                except Exception as e:  # a database hiccup must not kill the sweep; the next beat retries
                    log.warning(f"heartbeat for trial id {trial_id} not recorded: {e}")

    def _beat(self, trial_id: int) -> None:
        storage = self.study._storage
        if self._db_heartbeat:
            storage.record_heartbeat(trial_id)
        else:
            import time

            try:
                storage.set_trial_user_attr(trial_id, BEAT, time.time())
            except optuna.exceptions.UpdateFinishedTrialError:
                pass

    # ------------------------------------------------------------------ everybody else's
    def orphans(self) -> list[FrozenTrial]:
        """RUNNING trials that no live sweeper holds, oldest first."""
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        stale_ids = set(self._stale_ids())
        with self._lock:
            mine = set(self.held)
        return [t for t in running if t._trial_id not in mine
                and (t.user_attrs.get(RELEASED) or t._trial_id in stale_ids or self._owner_is_gone(t))]

    def others_running(self) -> bool:
        """Whether a trial of another sweeper still runs (this one must not end before it: if that
        sweeper dies, its trials are this one's to finish)."""
        with self._lock:
            mine = set(self.held)
        return any(t._trial_id not in mine for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))

    def _stale_ids(self) -> list[int]:
        import time

        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if self._db_heartbeat:
            stale = set(self.study._storage._get_stale_trial_ids(self.study._study_id))
            beaten = set()  # the database skips trials that never had a heartbeat: judge those by their start
        else:
            stale, beaten = set(), {t._trial_id for t in running if BEAT in t.user_attrs}
            stale |= {t._trial_id for t in running if BEAT in t.user_attrs
                      and time.time() - t.user_attrs[BEAT] > self.grace}
        now = datetime.datetime.now()
        for t in running:  # asked but never held (its sweeper died in between), or from an older version
            if t._trial_id in beaten or WORKER in t.user_attrs or t.datetime_start is None:
                continue
            started = t.datetime_start.replace(tzinfo=None) if t.datetime_start.tzinfo is None \
                else t.datetime_start.astimezone().replace(tzinfo=None)
            if (now - started).total_seconds() > self.grace:
                stale.add(t._trial_id)
        return sorted(stale)

    def _owner_is_gone(self, trial: FrozenTrial) -> bool:
        """Its sweeper was a process on this host that has ended (a rerun after a crash starts at once)."""
        owner = trial.user_attrs.get(WORKER)
        if not isinstance(owner, dict) or owner.get("host") != self.me["host"] or owner.get("pid") == self.me["pid"]:
            return False
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OSError, ValueError):
            return False
        return False

    def fail(self, orphan: FrozenTrial, why: str) -> None:
        try:
            self.study._storage.set_trial_user_attr(orphan._trial_id, "error", why)
            self.study._storage.set_trial_state_values(orphan._trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another sweeper did it

    def take_over(self, orphan: FrozenTrial) -> Optional[optuna.Trial]:
        """The orphan's continuation, held by this sweeper; None if another sweeper took it first."""
        owner = orphan.user_attrs.get(WORKER) or {}
        why = ("its sweeper released it" if orphan.user_attrs.get(RELEASED)
               else f"its sweeper (pid {owner.get('pid')} on this host) has ended" if self._owner_is_gone(orphan)
               else f"no heartbeat from its sweeper for over {self.grace}s")
        storage = self.study._storage
        try:
            # before the state: a finished trial is read-only (if its sweeper finishes it first, its own
            # tell overwrites this)
            storage.set_trial_user_attr(orphan._trial_id, "error", f"{why}; continued in job {job_number(orphan)}")
            if not storage.set_trial_state_values(orphan._trial_id, state=TrialState.FAIL):
                return None
        except optuna.exceptions.UpdateFinishedTrialError:
            return None  # another sweeper took it over (or it just finished)
        template = optuna.trial.create_trial(
            state=TrialState.RUNNING, params=orphan.params, distributions=orphan.distributions,
            user_attrs={k: v for k, v in orphan.user_attrs.items() if k not in (WORKER, BEAT, RELEASED, "error")}
            | {JOB: job_number(orphan), CONTINUES: orphan.number},
            system_attrs=orphan.system_attrs)  # e.g. the grid sampler's grid point: taken, not free
        template.datetime_start = datetime.datetime.now()
        trial = optuna.trial.Trial(self.study, storage.create_new_trial(self.study._study_id, template_trial=template))
        self.hold(trial)
        log.info(f"trial {orphan.number} was left running ({why}): continuing it as trial {trial.number} "
                 f"in job {job_number(orphan)}")
        return trial
