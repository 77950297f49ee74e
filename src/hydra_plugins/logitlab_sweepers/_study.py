"""An Optuna study driven by ask-and-tell: each batch asks n_jobs trials, launches them as Hydra jobs
(on any launcher) and tells Optuna how each ended: COMPLETE, PRUNED or FAIL.

The study lives in the sweep directory (Optuna's journal file by default), or in a database that
several sweepers share (hydra.sweeper.storage=postgresql://...). Rerunning the same command, or
starting another sweeper on the same study, continues it: finished trials stay, n_trials is the total
over every sweeper, and a trial whose sweeper died or stopped is continued in its own job directory
(where the job resumes from its checkpoint) by exactly one other sweeper (_leases.py). A sweeper ends
when no trial is left to ask and no other sweeper's trial still runs, so the last one to end writes the
summary of the whole study."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Optional

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.utils import instantiate
from optuna.trial import TrialState

from . import _jobs, _search_space, _summary
from ._jobs import SweepError, log
from ._leases import Leases, job_number
from ._pruning import make_pruner, open_storage, pruner_spec, storage_of
from ._trials import Trials, all_jobs, finished

class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler calls study.stop() after the last grid point, which only works inside
    study.optimize(); with ask-and-tell the sweep stops by itself (n_trials is capped at the grid)."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


# The samplers known by name; any other is given as {_target_: optuna.samplers.NAME, ...}.
SAMPLERS = {"random": {"_target_": "optuna.samplers.RandomSampler"},
            "tpe": {"_target_": "optuna.samplers.TPESampler"}}


def make_sampler(name: Any, space: _search_space.SearchSpace, seed: Optional[int]) -> Any:
    if name == "grid":  # needs the search space's every value
        return _GridSampler(space.grid(), seed=seed)
    spec = dict(name) if isinstance(name, dict) else SAMPLERS.get(name)
    if spec is None:
        raise SweepError(f"hydra.sweeper.sampler={name!r}; valid: null (a grid), random, tpe, grid, "
                         f"or {{_target_: optuna.samplers.NAME, ...}}")
    if seed is not None and "seed" not in spec:
        spec["seed"] = seed
    return instantiate(spec)


def open_study(storage: str, name: str, direction: str, spec: dict, heartbeat_s: int | None = None) -> optuna.Study:
    """Create the study, or load it to resume if it was started with the same sampler, pruner, search
    space and objective; anything else is refused, naming what changed."""
    from logitlab.trainer import rundir

    study = optuna.create_study(storage=open_storage(storage, heartbeat_s), study_name=name, direction=direction,
                                load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise SweepError(f"study {name!r} in {storage} has direction={study.direction.name.lower()}; "
                         f"rerun with it, or use another hydra.sweep.dir")
    started_with = study.user_attrs.get("spec")
    if started_with is None:
        study.set_user_attr("spec", spec)
    else:
        changed = rundir.changed_keys(started_with, spec, allowed=())
        if changed:
            raise SweepError(f"study {name!r} in {storage} was started with another search "
                             f"({rundir.describe(changed)}); rerun with those, or use another hydra.sweep.dir")
    return study


def _name_objective(study: optuna.Study, objective: str) -> None:
    """The study's value is named after the objective, so optuna-dashboard labels its plots with it."""
    if study.metric_names != [objective]:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and still so in 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([objective])


def study_spec(sweeper, space: _search_space.SearchSpace, pruner: Optional[dict]) -> dict:
    """What makes a study this study: sampler, pruner, the search space and fixed values, the objective."""
    return {"sampler": sweeper.sampler, "pruner": pruner, "objective": sweeper.objective,
            "space": {p.name: repr(p.distribution) for p in space.params},
            "layers": {layers.key: [repr(layers.depth.distribution), repr(layers.width.distribution)]
                       for layers in space.layers},
            "fixed": sorted(space.fixed)}


def run_study(sweeper, parser: OverridesParser, arguments: list[str], sweep_dir: Path) -> list[list[JobReturn]]:
    """Run the study to n_trials trials in all; returns the batches of JobReturn as launched."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our log says what its INFO lines would
    space = _search_space.build(parser, sweeper.params, sweeper.layers, arguments)
    storage = storage_of(sweeper.storage, sweep_dir)
    pruner = pruner_spec(sweeper.pruner)
    if pruner and not sweeper.logitlab_app:  # its jobs report nothing per epoch: the pruner would never judge
        raise SweepError("a pruner needs logitlab's app, whose jobs report the objective every epoch; this "
                         "app's jobs only return a value: set hydra.sweeper.pruner=null")
    if pruner and not str(sweeper.objective).startswith(("val/", "train/")):
        raise SweepError(f"a pruner needs an objective reported every epoch (val/... or train/...), not "
                         f"{sweeper.objective}; set hydra.sweeper.pruner=null or another objective")
    make_pruner(pruner)  # a pruner that cannot be built fails here, not in every job
    study = open_study(storage, sweeper.study_name, sweeper.direction, study_spec(sweeper, space, pruner),
                       sweeper.heartbeat_s)
    _name_objective(study, sweeper.objective)
    study.sampler = make_sampler(sweeper.sampler, space, sweeper.seed)
    n_trials = min(sweeper.n_trials, _grid_size(space.grid())) if sweeper.sampler == "grid" \
        else sweeper.n_trials
    n_jobs = sweeper.n_jobs or sweeper.parallelism
    heartbeat_s = study.user_attrs.get("heartbeat_s")
    if heartbeat_s is None:
        study.set_user_attr("heartbeat_s", heartbeat_s := sweeper.heartbeat_s)
    elif heartbeat_s != sweeper.heartbeat_s:  # sweepers judging each other by different clocks would steal trials
        log.info(f"study {sweeper.study_name!r} is held by heartbeats every {heartbeat_s}s: this sweeper's too "
                 f"(not hydra.sweeper.heartbeat_s={sweeper.heartbeat_s})")
        study = open_study(storage, sweeper.study_name, sweeper.direction, study_spec(sweeper, space, pruner), heartbeat_s)
        study.sampler = make_sampler(sweeper.sampler, space, sweeper.seed)
    leases = Leases(study, heartbeat_s)
    # Jobs that outlive this sweeper (a SLURM job keeps running when its sweeper stops) hold their own
    # trials while they run; releasing those on a stop would start them twice.
    leases.release_on_stop = not _jobs.jobs_outlive_sweeper(sweeper.config)
    if study.trials:
        done = finished(study)
        log.info(f"continuing study {sweeper.study_name!r} in {storage}: {done} of {n_trials} trials "
                 f"finished, {len(leases.orphans())} left running by a sweeper that stopped")
    else:
        log.info(f"study {sweeper.study_name!r} in {storage}: {n_trials} trials, {n_jobs} at a time")
    # Each job reports its epochs to its trial (the one running as its job number), pruned or not, so
    # optuna-dashboard shows every trial's curve; without a pruner Optuna's NopPruner judges them.
    sweeper.task.link = dict(storage=storage, study_name=sweeper.study_name, objective=sweeper.objective,
                             pruner=pruner, heartbeat_s=heartbeat_s)
    progress = _jobs.Progress(n_trials, sweeper.objective, n_jobs, done=finished(study))
    gpus = _jobs.gpus_to_pin(sweeper.config)
    if sweeper.fuse and _asks_ahead(sweeper.sampler):  # trials asked together, launched as fused groups
        n_jobs = max(n_jobs, sweeper.fuse_max * max(1, sweeper.parallelism))
    trials = Trials(study, space, n_trials, leases, sweeper.seed)
    # (leases outermost: on a stop, the launcher's workers are stopped before their trials are released)
    with leases, _summary.kept_on_stop(sweeper, lambda: all_jobs(study), sweep_dir):
        if n_jobs > 1 and not gpus and not (sweeper.fuse and _asks_ahead(sweeper.sampler)):
            returns, stopped = _run_async(sweeper, trials, n_jobs, progress, sweep_dir)
        else:
            returns, stopped = _run_batches(sweeper, trials, n_jobs, progress, sweep_dir, gpus)
    _summary.finish(sweeper, all_jobs(study), sweep_dir, stopped)
    return returns


def _run_batches(sweeper, trials: Trials, n_jobs, progress, sweep_dir, gpus):
    """n_jobs trials at a time, each batch waiting for its slowest (a GPU's worker processes are
    replaced between batches, so each job sees only its own GPU)."""
    import time

    failures, stopped, first, returns = 0, None, True, []
    while True:
        batch = trials.next(n_jobs)
        if batch == Trials.WAIT:
            time.sleep(min(1, trials.leases.interval))  # a query a second while others finish
            continue
        if not batch:
            break
        overrides = [trials.space.fixed + trial.user_attrs["overrides"] for trial in batch]
        if first:  # trials differ in values only: if the first composes, all do
            _validate(sweeper, trials, batch, overrides[:1])
            first = False
        results = _launch_fused(sweeper, batch, overrides, sweep_dir, gpus) if sweeper.fuse and len(batch) > 1 else None
        if results is None:
            results = _launch(sweeper, batch, sweeper.pinned(overrides, sweep_dir, gpus))
        returns.append(results)
        if gpus:
            _jobs.fresh_workers()
        for trial, ret in zip(batch, results):
            job = _jobs.read_job(ret, trial.number, trial.user_attrs["overrides"], trial.params)
            trials.tell(trial, job)
            progress.done = max(progress.done, finished(trials.study) - 1)  # other sweepers' trials count too
            progress.finished(job)
            failures += job.status == "FAIL"
        _summary.write_csv(all_jobs(trials.study), sweep_dir / "summary.csv", sweeper.objective)
        if sweeper.max_failures is not None and failures > sweeper.max_failures:
            stopped = f"stopped after {failures} failures (max_failures={sweeper.max_failures})"
            break
    return returns, stopped


def _run_async(sweeper, trials: Trials, n_jobs, progress, sweep_dir):
    """n_jobs trials running at all times: each of n_jobs threads launches one trial, tells Optuna how it
    ended and asks the next, so a new trial starts as soon as any ends (no barrier at the slowest of a
    batch, as Hydra's own sweepers have). Asking, telling and the summary happen under one lock."""
    import threading
    import time

    lock = threading.Lock()
    state = {"failures": 0, "stopped": None, "error": None}
    returns: list[list[JobReturn]] = []
    first = trials.next(1)
    if isinstance(first, list) and first:  # trials differ in values only: if the first composes, all do
        _validate(sweeper, trials, first, [trials.space.fixed + first[0].user_attrs["overrides"]])
    ready = first if isinstance(first, list) else []

    def next_trial():
        while True:
            with lock:
                if state["stopped"] or state["error"]:
                    return None
                if ready:
                    return ready.pop(0)
                batch = trials.next(1)
            if batch != Trials.WAIT:
                return batch[0] if batch else None
            time.sleep(min(1, trials.leases.interval))  # a query a second while others finish

    def worker() -> None:
        try:
            while (trial := next_trial()) is not None:
                overrides = sweeper.pinned([trials.space.fixed + trial.user_attrs["overrides"]], sweep_dir, [])
                ret = sweeper.launch(overrides, initial_job_idx=job_number(trial))[0]
                with lock:
                    returns.append([ret])
                    job = _jobs.read_job(ret, trial.number, trial.user_attrs["overrides"], trial.params)
                    trials.tell(trial, job)
                    progress.done = max(progress.done, finished(trials.study) - 1)
                    progress.finished(job)
                    state["failures"] += job.status == "FAIL"
                    _summary.write_csv(all_jobs(trials.study), sweep_dir / "summary.csv", sweeper.objective)
                    if sweeper.max_failures is not None and state["failures"] > sweeper.max_failures:
                        state["stopped"] = (f"stopped after {state['failures']} failures "
                                            f"(max_failures={sweeper.max_failures})")
        except BaseException as e:  # an interrupted job stops the sweep: the main thread re-raises it
            with lock:
                state["error"] = state["error"] or e

    threads = [threading.Thread(target=worker, name=f"logitlab-trial-{k}", daemon=True) for k in range(n_jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if state["error"] is not None:
        raise state["error"]
    return returns, state["stopped"]


def _asks_ahead(sampler: Any) -> bool:
    """Whether the sampler loses nothing by being asked many trials before any is told (random, grid,
    QMC): then a study asks fuse_max of them at once and trains those that stack as fused groups. An
    adaptive sampler (TPE) is asked n_jobs at a time, which groups fuse only if n_jobs > 1."""
    target = sampler.get("_target_", "") if isinstance(sampler, dict) else str(sampler)
    return target in ("random", "grid") or target.endswith(("RandomSampler", "GridSampler", "QMCSampler"))


def _launch_fused(sweeper, batch: list[optuna.Trial], overrides: list[list[str]], sweep_dir: Path, gpus) -> list | None:
    """The batch's trials as fused groups where they stack (numbered as their trials); None if none do."""
    from . import _fusing

    units = _fusing.plan(sweeper, overrides, [job_number(t) for t in batch])
    if not any(u.fused for u in units):
        return None
    by_number = {number: ret for number, _, ret in _fusing.launch(sweeper, units, sweep_dir, gpus)}
    return [by_number[job_number(t)] for t in batch]


def _validate(sweeper, trials: Trials, batch: list[optuna.Trial], overrides: list[list[str]]) -> None:
    try:
        sweeper.validate_batch_is_legal(overrides)
    except Exception:  # a key that does not compose: these trials can never run
        for trial in batch:
            trials.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            trials.leases.drop(trial)
        raise


def _launch(sweeper, batch: list[optuna.Trial], overrides: list[list[str]]) -> list:
    """Launch the trials as jobs numbered like them (a continuation as the trial it continues), so it
    finds its own job directory. The launcher numbers a launch's jobs consecutively: one launch per run
    of consecutive job numbers."""
    results, start = [], 0
    for end in range(1, len(batch) + 1):
        if end == len(batch) or job_number(batch[end]) != job_number(batch[end - 1]) + 1:
            results += sweeper.launch(overrides[start:end], initial_job_idx=job_number(batch[start]))
            start = end
    return results


def _grid_size(grid: dict) -> int:
    size = 1
    for values in grid.values():
        size *= len(values)
    return size
