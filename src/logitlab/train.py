"""`python -m logitlab.train [overrides]` (or `logitlab-train`): compose the config, build data, model,
optimizer and trainer from it, train, score the test split, and leave everything in the run directory:

  .hydra/            the composed config and the overrides
  metrics.json       final metrics (test/acc, test/loss, the best epoch's val/acc and val/loss, epochs, ...)
  history.csv        one row per epoch (losses, accuracies, lr, seconds); train.log the same as lines
  checkpoints/       last.pt (every epoch) and best.pt (the best epoch by trainer.objective)
  events.out.tfevents.*   TensorBoard scalars, the HParams entry, and test/ scores and figures of best.pt

Before Hydra makes a directory, logitlab.check builds every component the command names (every value of
every swept key too), so a bad value costs a second and one line, not a run. Rerunning the command a
stopped run printed continues it; a finished run returns its result; a different config is refused.
Nothing imports this module: it is the top floor.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from logitlab import ConfigError, build, hooks, job, rundir

log = logging.getLogger("logitlab")
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")  # package data: a wheel install has it too


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def run(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    config = OmegaConf.to_container(cfg, resolve=True)
    try:
        finished = job.finished_result(run_dir, config)
        if finished is not None:
            return finished
        job.write_json(run_dir / "versions.json", job.versions())
        metrics = train(cfg, run_dir)
    except BaseException as e:  # the command that continues this run travels with whatever stopped it
        if not hasattr(e, "resume_at"):
            e.resume_at = ("hydra.run.dir", run_dir)
        raise
    job.write_json(run_dir / "metrics.json", metrics)
    objective = metrics["objective"]
    log.info(f"test/acc {metrics['test/acc']:.4f}  test/loss {metrics['test/loss']:.4f}  "
             f"{objective} {metrics[objective]:.4f} (best epoch {metrics['best_epoch']})  "
             f"{metrics['train_seconds']:.1f}s  {run_dir}")
    return metrics[objective]


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Build every component from `cfg`, fit, then score best.pt on the test split."""
    from logitlab import evaluation
    from logitlab.tensorboard_log import RunBoard

    config = OmegaConf.to_container(cfg, resolve=True)
    figures = job.figures(cfg.trainer.get("figures", "auto"))
    parts = build.run(cfg)
    _epoch_lines_or_bar(parts.trainer.progress)
    board = RunBoard(run_dir, job.hparams(cfg))
    history = job.HistoryFile(run_dir / "history.csv")
    try:
        record = parts.trainer.fit(parts.model, parts.data, parts.optimizer, run_dir, schedule=parts.schedule,
                                   seed=cfg.seed, config=config, board=board,
                                   on_epoch_end=(history.write, hooks.epoch_ended))
        return evaluation.final_metrics(parts.model, parts.data, run_dir, record, parts.objective, board,
                                        figures=figures)
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
    from hydra.errors import HydraException

    from logitlab import hydra_errors

    os.environ["HYDRA_FULL_ERROR"] = "1"
    args = sys.argv[1:]
    try:
        run()
    except ConfigError as e:
        _exit(f"error: {e}", 1)
    except HydraException as e:
        message, status = hydra_errors.explain(e, args, CONFIG_DIR)
        _exit(f"error: {message}", status)
    except BaseException as e:
        from logitlab.trainer import Interrupted

        if not isinstance(e, (KeyboardInterrupt, Interrupted)):
            raise  # a bug (or an exit already decided): the traceback is for us
        _stopped(e, args)


def _stopped(e: BaseException, args: list[str]) -> None:
    """A signal or Ctrl-C: every finished result is on disk and the checkpoint is written; say how to go on."""
    signum = getattr(e, "signum", 2)
    reason = str(e) or "interrupted"
    resume_at = getattr(e, "resume_at", None)
    if resume_at is not None:
        reason += f"; resume with: {rundir.command(args, *resume_at)}"
    _exit(reason, 128 + signum)


def _exit(message: str, status: int) -> None:
    print(message, file=sys.stderr)
    sys.exit(status)


if __name__ == "__main__":
    main()
