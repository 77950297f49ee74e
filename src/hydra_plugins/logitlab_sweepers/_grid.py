"""The grid: every combination of the swept values (`a=1,2 b=x,y` is four jobs), as in Hydra's
BasicSweeper, which re-raises the first failed job's error and drops the rest of the sweep. Here every
job runs and is recorded; the command fails at the end, naming the jobs that failed."""
from __future__ import annotations

from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn

from . import _jobs, _summary


def run_grid(sweeper, parser: OverridesParser, arguments: list[str], sweep_dir: Path) -> list[list[JobReturn]]:
    """Run every job, `at_once` jobs a launch; returns Hydra's batches of JobReturn (in_batches)."""
    if sweeper.layers:
        raise _jobs.SweepError("hydra.sweeper.layers needs an Optuna sampler (hydra.sweeper.sampler=tpe); "
                               "a grid takes list values instead, e.g. 'model.hidden=[64],[64,32]'")
    overrides = parser.parse_overrides([f"{k}={v}" for k, v in sweeper.params.items()] + arguments)
    for o in overrides:
        if o.is_interval_sweep():
            raise _jobs.SweepError(f"{o.input_line}: a grid cannot sweep an interval; use choice(...) or "
                                   f"range(...), or an Optuna sampler (hydra.sweeper.sampler=tpe)")
    swept = {o.get_key_element() for o in overrides if o.is_sweep_override()}
    all_jobs = BasicSweeper.split_arguments(overrides, None)[0]
    # Jobs per launch: n_jobs; else one at a time where the launcher runs them so anyway (basic), so that
    # Ctrl-C, max_failures and summary.csv come between jobs; else all at once unless max_failures is set.
    at_once = sweeper.n_jobs
    if at_once is None and (sweeper.sequential or sweeper.max_failures is not None):
        at_once = sweeper.parallelism
    at_once = at_once or len(all_jobs)
    gpus = _jobs.gpus_to_pin(sweeper.config)
    if sweeper.fuse:
        from . import _fusing

        units = _fusing.plan(sweeper, all_jobs, list(range(len(all_jobs))))
        if any(u.fused for u in units):
            return _run_fused(sweeper, units, swept, sweep_dir, gpus)

    jobs: list[_jobs.Job] = []
    returns: list[JobReturn] = []
    stopped = None
    progress = _jobs.Progress(len(all_jobs), sweeper.objective, min(sweeper.parallelism, at_once))
    with _summary.kept_on_stop(sweeper, lambda: jobs, sweep_dir):
        for start in range(0, len(all_jobs), at_once):
            batch = all_jobs[start:start + at_once]
            sweeper.validate_batch_is_legal(batch)
            results = sweeper.launch(sweeper.pinned(batch, sweep_dir, gpus), initial_job_idx=len(jobs))
            returns += results
            for ret, job_overrides in zip(results, batch):
                varying = [o for o in job_overrides if o.split("=", 1)[0] in swept]
                params = {key.lstrip("+~"): value for key, value in (o.split("=", 1) for o in varying)}
                jobs.append(_jobs.read_job(ret, len(jobs), varying, params))
                progress.finished(jobs[-1])
            if gpus:
                _jobs.fresh_workers()
            _summary.write_csv(jobs, sweep_dir / "summary.csv", sweeper.objective)
            failed = sum(j.status == "FAIL" for j in jobs)
            if sweeper.max_failures is not None and failed > sweeper.max_failures and len(jobs) < len(all_jobs):
                stopped = f"stopped after {failed} failures (max_failures={sweeper.max_failures})"
                break
    _summary.finish(sweeper, jobs, sweep_dir, stopped)
    return in_batches(returns, sweeper.n_jobs)


def in_batches(returns: list[JobReturn], size: int | None) -> list[list[JobReturn]]:
    """The jobs' returns in job order, in batches of `size` (one batch: null), as Hydra's BasicSweeper
    returns them with max_batch_size=size, however they were launched (one at a time, fused groups)."""
    size = size or max(1, len(returns))
    return [returns[k:k + size] for k in range(0, len(returns), size)]


def _run_fused(sweeper, units, swept: set, sweep_dir: Path, gpus) -> list[list[JobReturn]]:
    """The grid with fused groups: units (a group, or a job that trains alone) go out `parallelism` at a
    time; each member is then read back and summarised as a solo job is."""
    from . import _fusing

    total = sum(len(u.numbers) for u in units)
    jobs: list[_jobs.Job] = []
    returns: list[tuple[int, JobReturn]] = []
    progress = _jobs.Progress(total, sweeper.objective, 1)
    fused = sum(len(u.numbers) for u in units if u.fused)
    _jobs.log.info(f"{total} jobs: {fused} in {sum(u.fused for u in units)} fused groups, {total - fused} alone")
    stopped = None
    at_once = max(1, sweeper.n_jobs or sweeper.parallelism)
    with _summary.kept_on_stop(sweeper, lambda: jobs, sweep_dir):
        for start in range(0, len(units), at_once):
            launched = _fusing.launch(sweeper, units[start:start + at_once], sweep_dir, gpus)
            returns += [(number, ret) for number, _, ret in launched]
            for number, job_overrides, ret in launched:
                varying = [o for o in job_overrides if o.split("=", 1)[0] in swept]
                params = {key.lstrip("+~"): value for key, value in (o.split("=", 1) for o in varying)}
                jobs.append(_jobs.read_job(ret, number, varying, params))
                progress.finished(jobs[-1])
            jobs.sort(key=lambda j: j.number)
            if gpus:
                _jobs.fresh_workers()
            _summary.write_csv(jobs, sweep_dir / "summary.csv", sweeper.objective)
            failed = sum(j.status == "FAIL" for j in jobs)
            if sweeper.max_failures is not None and failed > sweeper.max_failures and start + at_once < len(units):
                stopped = f"stopped after {failed} failures (max_failures={sweeper.max_failures})"
                break
    _summary.finish(sweeper, jobs, sweep_dir, stopped)
    return in_batches([ret for _, ret in sorted(returns, key=lambda item: item[0])], sweeper.n_jobs)
