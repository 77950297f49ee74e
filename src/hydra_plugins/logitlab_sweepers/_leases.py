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

WORKER = "worker"  # user attribute: the sweeper (or job) holding the trial, {"host", "pid", "boot", "pidns"}
BEAT = "heartbeat"  # user attribute (journal storage): time.time() of the last heartbeat
RELEASED = "released"  # user attribute: its sweeper stopped cleanly and gave it up
CONTINUES = "continues"  # user attribute of a continuation: the number of the trial it took over
JOB = "job"  # user attribute: the job number (and directory) a trial runs as, if not its own number
UNCOUNTED = "uncounted"  # user attribute: a trial that is no trial of the study (asked past n_trials, never launched)


def job_number(trial: FrozenTrial | optuna.Trial) -> int:
    """The job (directory) a trial runs as: its own number, or for a continuation the original's."""
    return int(trial.user_attrs.get(JOB, trial.number))


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """The numbers of the trials that count for nothing: taken over by a continuation (which counts in
    their place), asked past n_trials by a sweeper racing another, or never launched."""
    return {int(t.user_attrs[CONTINUES]) for t in trials if CONTINUES in t.user_attrs} | \
        {t.number for t in trials if t.user_attrs.get(UNCOUNTED)}


def identity() -> dict:
    """This process as a trial's holder. A pid names a process only within one PID namespace of one boot
    of one host: containers that share a hostname differ in the namespace."""
    def read(path: str, stat: bool = False) -> Optional[str]:
        try:
            return str(os.stat(path).st_ino) if stat else open(path).read().strip()
        except OSError:
            return None
    return {"host": socket.gethostname(), "pid": os.getpid(), "boot": read("/proc/sys/kernel/random/boot_id"),
            "pidns": read("/proc/self/ns/pid", stat=True)}


def beat(storage, trial_id: int) -> None:
    """Record that the trial's holder is alive: in the database's heartbeat table (its own clock), or for a
    journal file (one host, one clock) as a user attribute."""
    if getattr(storage, "get_heartbeat_interval", lambda: None)() is not None:
        storage.record_heartbeat(trial_id)
    else:
        import time

        storage.set_trial_user_attr(trial_id, BEAT, time.time())


class Leases:
    def __init__(self, study: optuna.Study, interval: int, grace: Optional[int] = None):
        self.study, self.interval = study, interval
        self.grace = grace if grace is not None else 4 * interval
        self.me = identity()
        self.held: dict[int, int] = {}  # trial id -> number, while it runs
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        storage = study._storage  # (Optuna wraps an RDBStorage in a cache that passes heartbeats on)
        self._db_heartbeat = getattr(storage, "get_heartbeat_interval", lambda: None)() is not None
        self._unheld_since: dict[int, float] = {}  # trial id -> when this sweeper first saw it without a holder
        self.release_on_stop = True  # False where jobs outlive the sweeper (SLURM): they hold their trials

    # ------------------------------------------------------------------ this sweeper's trials
    def hold(self, trial: optuna.Trial) -> None:
        """Raises UpdateFinishedTrialError if another sweeper judged the trial an orphan first."""
        self._beat(trial._trial_id)  # first: a trial with a holder always has a heartbeat
        trial.set_user_attr(WORKER, self.me)
        with self._lock:
            self.held[trial._trial_id] = trial.number

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
        if exc_type is not None and self.release_on_stop:
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
        try:
            beat(self.study._storage, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass

    # ------------------------------------------------------------------ everybody else's
    def orphans(self) -> list[FrozenTrial]:
        """RUNNING trials that no live sweeper holds, oldest first."""
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        stale_ids = set(self._stale_ids(running))
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

    def _stale_ids(self, running: list[FrozenTrial]) -> list[int]:
        import time

        if self._db_heartbeat:  # the database's clock judges the beats; it skips trials never beaten
            stale = set(self.study._storage._get_stale_trial_ids(self.study._study_id))
        else:
            stale = {t._trial_id for t in running if BEAT in t.user_attrs and time.time() - t.user_attrs[BEAT] > self.grace}
        # A trial with no holder yet (asked, then its sweeper died before holding it; or from an older
        # logitlab): stale once this sweeper has seen it so for the grace period, by its own clock.
        now, unheld = time.monotonic(), {t._trial_id for t in running if WORKER not in t.user_attrs}
        self._unheld_since = {i: self._unheld_since.get(i, now) for i in unheld}
        return sorted(stale | {i for i, since in self._unheld_since.items() if now - since > self.grace})

    def _owner_is_gone(self, trial: FrozenTrial) -> bool:
        """Its sweeper was a process on this host that has ended (a rerun after a crash starts at once)."""
        owner = trial.user_attrs.get(WORKER)
        if not isinstance(owner, dict) or owner.get("pid") == self.me["pid"] or any(
                owner.get(k) != self.me.get(k) for k in ("host", "boot", "pidns")):
            return False  # only a process in this PID namespace of this boot of this host can be looked up
        try:
            os.kill(int(owner["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OSError, ValueError):
            return False
        return False

    def drop_uncounted(self, trial_id: int, why: str) -> None:
        """Fail a trial that is no trial of the study (see UNCOUNTED); it counts for nothing."""
        storage = self.study._storage
        try:
            storage.set_trial_user_attr(trial_id, "error", why)
            storage.set_trial_user_attr(trial_id, UNCOUNTED, True)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another sweeper did it
        with self._lock:
            self.held.pop(trial_id, None)

    def take_over(self, orphan: FrozenTrial) -> Optional[optuna.Trial]:
        """The orphan's continuation, held by this sweeper; None if another sweeper took it first."""
        with _sqlite_lock(self.study):
            return self._take_over(orphan)

    def _take_over(self, orphan: FrozenTrial) -> Optional[optuna.Trial]:
        owner = orphan.user_attrs.get(WORKER) or {}
        why = ("its sweeper released it" if orphan.user_attrs.get(RELEASED)
               else f"its sweeper (pid {owner.get('pid')} on this host) has ended" if self._owner_is_gone(orphan)
               else f"no heartbeat from its holder for over {self.grace}s")
        storage = self.study._storage
        if storage.get_trial(orphan._trial_id).state != TrialState.RUNNING:
            return None  # taken over (or finished) since it was listed
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


def _sqlite_lock(study: optuna.Study):
    """SQLite has no row locks (Optuna's SELECT ... FOR UPDATE is a no-op there, and its driver begins a
    transaction only at the first write): two sweepers could both fail an orphan and both continue it.
    Its sweepers share one host, so a file lock beside the database orders their takeovers."""
    import contextlib

    url = str(getattr(getattr(study._storage, "_backend", study._storage), "url", ""))
    if not url.startswith("sqlite:///"):
        return contextlib.nullcontext()
    import fcntl

    @contextlib.contextmanager
    def locked():
        with open(url[len("sqlite:///"):] + ".takeover.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)
    return locked()
