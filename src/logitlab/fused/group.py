"""A fused group of a sweep's jobs, run in one process: for each job what train.run does for one (the
finished-run check, versions.json, building its parts, TensorBoard, history.csv, the test scores of
best.pt, metrics.json, train.log), with the training itself done together by loop.fit_group. The
sweeper calls `run_group` with each job's composed config once Hydra's job directory is made."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from logitlab.config import build
from logitlab.fused import loop, stacked
from logitlab.fused.keys import task_container
from logitlab.rundirs import job
from logitlab.trainer import evaluation, runtime
from logitlab.trainer.state import Record

log = logging.getLogger("logitlab")


def run_group(configs: Sequence[DictConfig], hooks: Sequence[Sequence[Callable]] = ()) -> list[Any]:
    """Each job's objective, or the exception that ended it. `configs` are whole job configs (with their
    hydra node, runtime.output_dir set; read as they are, not copied: ~10 ms a copy); hooks[i] are called
    after each epoch of job i."""
    from logitlab.reporting.tensorboard_log import RunBoard

    results: list[Any] = [None] * len(configs)
    members: dict[int, loop.Member] = {}
    figures: dict[int, bool] = {}
    versions = job.versions()
    handlers = []
    try:
        for i, full in enumerate(configs):
            task = full  # build and hparams read the job's own keys, never its hydra node
            run_dir = Path(full.hydra.runtime.output_dir)
            config = task_container(full)
            try:
                finished = job.finished_result(run_dir, config)
                if finished is not None:
                    results[i] = finished
                    continue
                job.write_json(run_dir / "versions.json", versions)
                figures[i] = job.figures(task.trainer.get("figures", "auto"), multirun=True)
                parts = build.run(task)
                dropout = torch.Generator()
                dropout.set_state(torch.get_rng_state())  # what the solo run's dropout would draw from
                lines, handler = _job_log(full, i)
                handlers.append((lines, handler))
                history = job.HistoryFile(run_dir / "history.csv")
                members[i] = loop.Member(
                    trainer=parts.trainer, model=parts.model, data=parts.data, optimizer=parts.optimizer,
                    schedule=parts.schedule, seed=task.seed, config=config, run_dir=run_dir, dropout=dropout,
                    augment=parts.augment, max_resident_gb=parts.max_resident_gb,
                    board=RunBoard(run_dir, job.hparams(task, full.hydra)), lines=lines,
                    hooks=(history.write, *(hooks[i] if hooks else ())))
            except Exception as e:  # this job's own error (a finished run of another config ...)
                results[i] = e
        for part in _stackable(list(members.values())):
            _fit(part)
        for i, m in members.items():
            results[i] = _finish(m, figures[i]) if isinstance(m.result, Record) else m.result
    finally:
        for m in members.values():
            if m.board is not None:
                m.board.close()
        for lines, handler in handlers:
            lines.removeHandler(handler)
            handler.close()
    return results


def _job_log(full: DictConfig, i: int) -> tuple[logging.Logger, logging.Handler]:
    """A logger whose lines go to this job's own log file (train.log), as its solo run's epoch lines do;
    the console gets the group's one line per epoch instead of every job's."""
    path = OmegaConf.select(full, "hydra.job_logging.handlers.file.filename", default=None) \
        or str(Path(full.hydra.runtime.output_dir) / f"{full.hydra.job.name}.log")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    lines = logging.getLogger(f"logitlab.epochs.job{i}")
    lines.propagate = False
    lines.setLevel(logging.INFO)
    lines.addHandler(handler)
    return lines, handler


# Past this many multiply-adds per training step a model is compute-bound on a CPU: stacking it gains
# nothing and grouped convolutions lose (measured on MNIST-1D, 10 seeds: the zoo's CNN 25-25-25, ~1e8,
# trains 1.6x faster fused; cnn_nas's best with batch norm, 128-64 channels, ~8e8, 0.6x). Such members
# train one after another, in this process.
_STACK_WORK = 3e8


def _stackable(members: list[loop.Member]) -> list[list[loop.Member]]:
    """Members whose built models and optimizers stack, together (a group is formed from configs; a
    value that changes a shape after all, e.g. dropout adding a layer, splits it here); a member whose
    model is too big to gain from stacking, or does not stack, alone."""
    parts: dict[tuple, list[loop.Member]] = {}
    for m in members:
        on_cpu = m.trainer.device.type == "cpu"
        work = runtime.work_per_step(m.model, m.data.input_shape, m.trainer.batch_size)
        try:
            key = (stacked.signature(m.model),) if work <= _STACK_WORK or not on_cpu else (id(m),)
        except stacked.NotFusible:
            key = (id(m),)
        parts.setdefault(key, []).append(m)
    alone = sum(len(p) == 1 for p in parts.values())
    if alone > 1:
        log.info(f"{alone} jobs of this group train one after another: their models are too big to gain from "
                 f"stacking (~{work:.0e} multiply-adds a step) or do not stack")
    return list(parts.values())


def _fit(part: list[loop.Member]) -> None:
    if len(part) == 1:
        _fit_alone(part[0])
        return
    try:
        loop.fit_group(part)
    except stacked.NotFusible as e:  # an optimizer option that does not stack: each trains alone
        log.info(f"{len(part)} jobs train one by one: {e}")
        for m in part:
            _fit_alone(m)


def _fit_alone(m: loop.Member) -> None:
    """Trainer.fit, with torch's global RNG where this job's solo run would have it (other jobs were built
    since): its dropout masks are its solo run's."""
    import torch

    torch.set_rng_state(m.dropout.get_state())
    try:
        m.result = m.trainer.fit(m.model, m.data, m.optimizer, m.run_dir, schedule=m.schedule, seed=m.seed,
                                 config=m.config, board=m.board, on_epoch_end=m.hooks, augment=m.augment,
                                 max_resident_gb=m.max_resident_gb)
    except Exception as e:
        m.result = e


def _finish(m: loop.Member, figures: bool) -> float:
    metrics = evaluation.final_metrics(m.model, m.data, m.run_dir, m.result, m.trainer.objective, m.board,
                                       figures=figures, eval_batch_size=m.trainer.eval_batch_size)
    job.write_json(m.run_dir / "metrics.json", metrics)
    objective = metrics["objective"]
    m.lines.info(f"test/acc {metrics['test/acc']:.4f}  test/loss {metrics['test/loss']:.4f}  {objective} "
                 f"{metrics[objective]:.4f} (best epoch {metrics['best_epoch']})  {m.run_dir}")
    return metrics[objective]
