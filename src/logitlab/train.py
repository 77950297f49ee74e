"""`python -m logitlab.train [overrides]` (or `logitlab-train`): compose the config, build data, model,
optimizer and trainer from it, train, score the test split, and leave everything in the run directory:

  .hydra/            the composed config and the overrides
  metrics.json       final metrics (test/acc, test/loss, the best epoch's val/acc and val/loss, epochs, ...)
  history.csv        one row per epoch (losses, accuracies, lr, seconds); train.log the same as lines
  checkpoints/       last.pt (every epoch) and best.pt (the best epoch by trainer.objective)
  events.out.tfevents.*   TensorBoard scalars, the HParams entry, and test/ scores and figures of best.pt

Before Hydra makes a directory, logitlab.config.check builds every component the command names (every value of
every swept key too), so a bad value costs a second and one line, not a run. Rerunning the command a
stopped run printed continues it; a finished run returns its result; a different config is refused.

`torchrun --nproc-per-node N -m logitlab.train [overrides]` trains the one model data-parallel, in one
run directory that rank 0 alone writes (the others leave only their rank<N>.log there); trainer.batch_size
stays the whole batch, so the result and the checkpoints do not depend on N. See trainer/distributed.py.
Nothing imports this module: it is the top floor.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from logitlab import ConfigError
from logitlab.config import build
from logitlab.rundirs import job
from logitlab.trainer import hooks, rundir
from logitlab.trainer.distributed import SOLO, World

log = logging.getLogger("logitlab")
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")  # package data: a wheel install has it too


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def run(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    world = World.from_env()
    world.announce(str(run_dir))  # under torchrun the other ranks wait for it in main()
    config = OmegaConf.to_container(cfg, resolve=True)
    try:
        finished = job.finished_result(run_dir, config)
        if finished is not None:
            return finished
        if world.is_main:
            job.write_json(run_dir / "versions.json", job.versions())
        metrics = train(cfg, run_dir, world)
    except BaseException as e:  # the command that continues this run travels with whatever stopped it
        if not hasattr(e, "resume_at"):
            e.resume_at = ("hydra.run.dir", run_dir)
        if isinstance(e, ConfigError) and HydraConfig.get().mode == RunMode.RUN:  # a sweep records it as a job's
            raise job.RunFailed(str(e)) from e
        raise
    if metrics is None:  # a rank > 0: rank 0 reports the run
        return None
    job.write_json(run_dir / "metrics.json", metrics)
    objective = metrics["objective"]
    log.info(f"test/acc {metrics['test/acc']:.4f}  test/loss {metrics['test/loss']:.4f}  "
             f"{objective} {metrics[objective]:.4f} (best epoch {metrics['best_epoch']})  "
             f"{metrics['train_seconds']:.1f}s  {run_dir}")
    return metrics[objective]


def train(cfg: DictConfig, run_dir: Path, world: World = SOLO) -> dict | None:
    """Build every component from `cfg`, fit, then score best.pt on the test split. Data-parallel, every
    rank trains and rank 0 alone writes and scores; the others return None."""
    from logitlab.reporting.tensorboard_log import RunBoard
    from logitlab.trainer import evaluation

    config = OmegaConf.to_container(cfg, resolve=True)
    figures = job.figures(cfg.trainer.get("figures", "auto"))
    parts = build.run(cfg)
    _epoch_lines_or_bar(parts.trainer.progress)
    if not world.is_main:
        parts.trainer.fit(parts.model, parts.data, parts.optimizer, run_dir, schedule=parts.schedule,
                          seed=cfg.seed, config=config, world=world, augment=parts.augment,
                          max_resident_gb=parts.max_resident_gb)
        return None
    board = RunBoard(run_dir, job.hparams(cfg))
    history = job.HistoryFile(run_dir / "history.csv")
    try:
        record = parts.trainer.fit(parts.model, parts.data, parts.optimizer, run_dir, schedule=parts.schedule,
                                   seed=cfg.seed, config=config, board=board,
                                   on_epoch_end=(history.write, hooks.epoch_ended), world=world,
                                   augment=parts.augment, max_resident_gb=parts.max_resident_gb)
        return evaluation.final_metrics(parts.model, parts.data, run_dir, record, parts.objective, board,
                                        figures=figures, eval_batch_size=parts.trainer.eval_batch_size)
    finally:
        board.close()


def _epoch_lines_or_bar(progress: bool) -> None:
    """Per-epoch lines always reach train.log; on a terminal with the progress bar they stay off the
    console, where the bar says the same. Python's warnings go to the log too."""
    logging.captureWarnings(True)
    if not (progress and sys.stderr.isatty()):
        return
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # the console, not the file (a FileHandler subclass)
            handler.addFilter(lambda record: record.name != "logitlab.epochs")


def main() -> None:
    """The console entry. Hydra hands every error back (HYDRA_FULL_ERROR) so that a user's error is one
    line here, a stopped run says the command that continues it, and only a bug shows a traceback."""
    os.environ["HYDRA_FULL_ERROR"] = "1"
    args = sys.argv[1:]
    try:
        world = World.from_env()  # under torchrun: joins the other processes, before Hydra names a directory
    except ConfigError as e:
        _exit(f"error: {e}", 2)
    if not world.distributed:
        return _run(args, world)
    try:
        if world.is_main:
            _lead(args, world)
        else:
            _run(_follow(args, world), world)
        status = 0
    except SystemExit as e:  # an exit every rank has agreed on: a refusal, an agreed stop
        status = e.code
    # past the except clause the exception is gone, and with it the frames that held DDP and the stop vote:
    # now leave() can join the process groups' threads (a bug's traceback keeps them: it exits as it did)
    world.leave()
    sys.exit(status)


def _lead(args: list[str], world: World) -> None:
    """Rank 0 goes through Hydra, which names the run directory; run() announces it to the other ranks.
    A command that ends before (a config error, a sweep, --help) announces its exit status instead, and
    returns once every rank has heard it (see _follow)."""
    status = 1
    try:
        if _is_sweep(args):
            _exit("error: a sweep (-m) cannot run under torchrun, whose processes train one model together; "
                  "run it without torchrun, with its jobs in processes of their own: hydra/launcher=joblib, "
                  "or hydra/launcher=slurm on a cluster", 2)
        _run(args, world)
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else 1
        raise
    finally:
        if not world.announced:  # the command ended before a run began
            world.announce(status)
            world.barrier()


def _follow(args: list[str], world: World) -> list[str]:
    """A rank > 0 waits for rank 0's run directory (Hydra names it by the time: each process would get
    its own), then composes the same config there: rank 0's .hydra/, train.log and console are left to
    it, and the command line, checked by rank 0 already, is not checked again."""
    run_dir = world.announcement()
    if isinstance(run_dir, int):  # rank 0 ended before the run began (its own line says why) or gave --help
        # Rank 0 reports the command; this rank, with nothing to report, exits 0, so that torchrun names
        # rank 0 and its status, whichever exits first. Once rank 0 has exited torchrun stops the others with
        # SIGTERM: this exit is decided, so ignore it, and only then let rank 0 go (the barrier).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        world.barrier()
        sys.exit(0)
    pinned = ("hydra.run.dir", "hydra.output_subdir", "hydra.job_logging.handlers.file.filename")
    args = [a for a in args if a.split("=", 1)[0].lstrip("+~") not in pinned] + [
        f"hydra.run.dir={run_dir}", "hydra.output_subdir=null",
        f"hydra.job_logging.handlers.file.filename={run_dir}/rank{world.rank}.log",
        "++hydra.job_logging.handlers.console.level=WARNING", "~hydra.callbacks.check"]
    sys.argv[1:] = args  # what Hydra parses
    return args


def _is_sweep(args: list[str]) -> bool:
    return any(a in ("-m", "--multirun") or a.replace(" ", "").lower() == "hydra.mode=multirun" for a in args)


def _run(args: list[str], world: World) -> None:
    from hydra.errors import HydraException

    from logitlab.config import hydra_errors

    try:
        run()
    except (ConfigError, job.RunFailed) as e:  # not a bad command line (the check refused those): status 1
        _exit(f"error: {e}", 1, world)
    except HydraException as e:
        message, status = hydra_errors.explain(e, args, CONFIG_DIR)
        _exit(f"error: {message}", status, world)
    except BaseException as e:
        if isinstance(e, SystemExit):  # an exit already decided (a refused command line: before torch loads)
            raise
        from logitlab.trainer.loop import Interrupted

        if not isinstance(e, (KeyboardInterrupt, Interrupted)):
            raise  # a bug (or an exit already decided): the traceback is for us
        _stopped(e, args, world)


def _stopped(e: BaseException, args: list[str], world: World) -> None:
    """A signal or Ctrl-C: every finished result is on disk and the checkpoint is written; say how to go on.
    Data-parallel, every rank stopped at the same step (trainer.Interrupted) and rank 0 says it."""
    from logitlab.trainer.loop import Interrupted

    signum = getattr(e, "signum", 2)
    reason = str(e) or "interrupted"
    resume_at = getattr(e, "resume_at", None)
    if resume_at is not None:
        reason += f"; resume with: {rundir.command(args, *resume_at, launcher=world.launcher())}"
    if world.is_main:
        print(reason, file=sys.stderr)
    if isinstance(e, Interrupted) and world.distributed:  # every rank is here
        # torchrun sends SIGTERM to the others once one has exited: this exit is decided, let it finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        world.barrier()  # said before any rank exits
        world.leave()
    sys.exit(128 + signum)


def _exit(message: str, status: int, world: World = SOLO) -> None:
    """A user's error, in one line; from a rank > 0 it names the rank (rank 0 may say the same)."""
    print(message if world.is_main else f"rank {world.rank}: {message}", file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
