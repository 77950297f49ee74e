"""The record of a multirun: <sweep dir>/summary.csv (one row per job), a table of the best jobs in the
log, and best.yaml, an experiment preset that reproduces the best job."""
from __future__ import annotations

import csv
import json
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from omegaconf import OmegaConf

from ._jobs import Job, SweepError

log = logging.getLogger("logitlab.sweep")

def metrics_of(job: Job) -> dict:
    """The job's final metrics (<job dir>/metrics.json), numbers and strings only."""
    path = Path(job.job_dir or "") / "metrics.json"
    if not job.job_dir or not path.exists():
        return {}
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool))}


def _keys(dicts: Sequence[dict]) -> list[str]:
    keys: dict = {}
    for d in dicts:
        keys.update(dict.fromkeys(d))
    return list(keys)


def write_csv(jobs: Sequence[Job], path: Path, objective: str) -> None:
    """One row per job: number, status, objective, wall seconds, params, final metrics, overrides, error,
    job dir and log. Rewritten after every batch, so even a killed sweep leaves a current one."""
    jobs = sorted(jobs, key=lambda j: j.number)
    metrics = [{k: v for k, v in metrics_of(j).items() if k != objective} for j in jobs]
    columns = ["number", "status", objective, "wall_seconds", *_keys([j.params for j in jobs]),
               *_keys(metrics), "overrides", "error", "job_dir", "log"]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # several sweepers of one study write it
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for job, m in zip(jobs, metrics):
            writer.writerow({"number": job.number, "status": job.status, objective: job.value,
                             "wall_seconds": job.wall_seconds, **job.params, **m,
                             "overrides": " ".join(job.overrides), "error": job.error,
                             "job_dir": job.job_dir, "log": job.log})
    tmp.replace(path)


def ranked(jobs: Sequence[Job], direction: str) -> list[Job]:
    """Completed jobs with a number for an objective, best first."""
    done = [j for j in jobs if j.status == "COMPLETE" and isinstance(j.value, (int, float))
            and math.isfinite(j.value)]
    return sorted(done, key=lambda j: j.value, reverse=direction == "maximize")


def _global_groups(choices: dict, loader) -> set[str]:
    """Groups whose chosen option is a `# @package _global_` preset: the values it set are in the job's
    config already, and a preset cannot pick another one."""
    found = set()
    for group, option in choices.items():
        try:
            loaded = loader.repository.load_config(f"{group}/{option}") if option else None
        except Exception:  # a group the loader cannot read back: keep it as an ordinary choice
            loaded = None
        if loaded is not None and loaded.header.get("package") == "_global_":
            found.add(group)
    return found


def write_best(job: Job, path: Path, objective: str, direction: str, loader, logitlab_app: bool = True) -> bool:
    """best.yaml: the best job's config group choices as `override`s plus every value of its config,
    so applied as an experiment preset it reproduces that job exactly. False if the job's .hydra/ is
    missing (hydra.output_subdir=null). logitlab's config has an `experiment` group to apply it with."""
    saved = Path(job.job_dir or "") / ".hydra"
    if not (saved / "config.yaml").exists() or not (saved / "hydra.yaml").exists():
        return False
    cfg = OmegaConf.load(saved / "config.yaml")
    choices = OmegaConf.load(saved / "hydra.yaml").hydra.runtime.choices
    presets = _global_groups(choices, loader)
    defaults = [{f"override /{group}": option} for group, option in choices.items()
                if not group.startswith("hydra/") and group not in presets and option is not None]
    preset = OmegaConf.create({"defaults": [*defaults, "_self_"]})
    preset.merge_with(cfg)
    header = [
        "# @package _global_",
        f"# The best job of the sweep in {path.parent}: #{job.number}, "
        f"{objective} = {job.value:.6g} ({direction}).",
        f"# Its overrides: {' '.join(job.overrides) or '(none)'}",
        "# As an experiment: copy this file to DIR/experiment/NAME.yaml and run with -cd DIR experiment=NAME."
        if logitlab_app else "# As a preset: copy this file to GROUP/NAME.yaml beside the app's config and run "
                             "with +GROUP=NAME.",
        f"# The job's own config: --config-path {saved} --config-name config",
    ]
    path.write_text("\n".join(header) + "\n" + OmegaConf.to_yaml(preset))
    return True


def report(sweep_dir: Path, objective: str, direction: str, top: int, figures: bool = True) -> None:
    """Log the table of the best jobs (over seeds when the sweep varies `seed`) and write the sweep's
    figures, as `logitlab-summary <sweep dir>` does. A figure that cannot be drawn costs a warning, not the
    sweep's result."""
    from logitlab.reporting import sweep_table

    _, rows = sweep_table.read(sweep_dir / "summary.csv")
    log.info(sweep_table.table(rows, objective, direction, top))
    if not figures or not sweep_table.completed(rows, objective):  # nothing to draw: spare the torch import
        return
    try:
        from logitlab.reporting import sweep_plots  # loads torch (for TensorBoard) and matplotlib

        written, _ = sweep_plots.write(sweep_dir, rows, objective, direction)
    except Exception as e:  # a reporting bug must not fail a finished sweep; logitlab-summary shows it whole
        log.warning(f"the sweep's figures were not written ({type(e).__name__}: {e}); "
                    f"try logitlab-summary {sweep_dir}")
        return
    if written:
        log.info(f"figures: {', '.join(p.name for p in written)} (and TensorBoard images in {sweep_dir / 'summary'})")


def finish(sweeper, jobs: Sequence[Job], sweep_dir: Path, stopped: str | None = None) -> None:
    """Write summary.csv and best.yaml and log the best jobs; then, if any job failed or the sweep
    `stopped` early, raise a one-line SweepError naming the failed jobs."""
    objective, direction = sweeper.objective, sweeper.direction
    summary = sweep_dir / "summary.csv"
    write_csv(jobs, summary, objective)
    report(sweep_dir, objective, direction, sweeper.top, sweeper.figures)
    best = ranked(jobs, direction)
    if best and write_best(best[0], sweep_dir / "best.yaml", objective, direction,
                           sweeper.hydra_context.config_loader, sweeper.logitlab_app):
        log.info(f"summary: {summary}  best job as a preset: {sweep_dir / 'best.yaml'}")
    else:
        log.info(f"summary: {summary}")

    failed = [j for j in jobs if j.status == "FAIL"]
    for j in failed:
        log.error(f"job #{j.number} failed: {j.error}  [{' '.join(j.overrides)}]  log: {j.log or j.job_dir}")
    if failed or stopped:
        numbers = ", ".join(f"#{j.number}" for j in failed)
        raise SweepError(f"{len(failed)} of {len(jobs)} jobs failed ({numbers or 'none'})"
                         f"{'; ' + stopped if stopped else ''}; see {summary}")


@contextmanager
def kept_on_stop(sweeper, jobs: Callable[[], Sequence[Job]], sweep_dir: Path) -> Iterator[None]:
    """Ctrl-C, or logitlab's Interrupted after a signal, stops the sweep: stop the launcher's workers,
    write the summary of what finished, and let the error carry the directory that continues the sweep
    (the entry point prints the whole command)."""
    try:
        yield
    except BaseException as e:
        if not isinstance(e, Exception):
            stop_workers(sweeper.config)
            e.resume_at = ("hydra.sweep.dir", sweep_dir)
            log.error(f"the sweep stopped ({type(e).__name__}); every finished job is kept in {sweep_dir}")
        write_csv(jobs(), sweep_dir / "summary.csv", sweeper.objective)
        raise


def stop_workers(config) -> None:
    """End joblib's worker processes now: left running they would hold the CPU, and their semaphores leak."""
    if "joblib" not in str(config.hydra.launcher.get("_target_", "")):
        return
    try:
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True, kill_workers=True)
    except Exception:  # already gone
        pass
