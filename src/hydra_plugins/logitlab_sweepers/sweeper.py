"""logitlab's Hydra sweeper: a grid that goes on when a job fails, or an Optuna study (ask-and-tell,
conditional spaces, pruning, resume), chosen by `sampler`. Either way the multirun ends with
<sweep dir>/summary.csv, a table of the best jobs and best.yaml. Like Hydra's own sweepers, `sweep()`
returns a list of batches of JobReturn, and a failed job surfaces as an exception (SweepError, after
every other job has run and the summary is written).

Optuna and the heavy lifting are imported only when a sweep runs (Hydra imports this module on every
start to discover plugins)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

from . import _jobs, _task
# Hydra's plugin scan registers the plugins it finds in a scanned module's namespace and skips modules
# named _*: conf/hydra/launcher/slurm.yaml's launcher is registered from here.
from ._slurm import SlurmLauncher  # noqa: F401

# What a rerun in the same sweep directory must keep, so that its jobs and trials stay the same ones.
_SAME_SWEEP = ("sampler", "pruner", "params", "layers", "objective", "direction", "study_name", "storage")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _direction(objective: str, direction: Optional[str], logitlab_app: bool) -> str:
    """Which end of the objective is best. logitlab's app (its config has trainer.objective) returns a
    metric, whose direction is derived (val/acc: maximize) and a contradicting one refused. Any other
    Hydra app's objective is the value its task function returns, `objective` only its name in the
    summary, and better as `direction` says: minimize unless given (as Hydra's Optuna sweeper)."""
    if logitlab_app:
        from logitlab import ConfigError
        from logitlab.trainer.objective import Objective

        try:
            return Objective.of(objective, direction, key="hydra.sweeper").direction
        except ConfigError as e:
            raise _jobs.SweepError(str(e)) from None
    if direction not in (None, "minimize", "maximize"):
        raise _jobs.SweepError(f"hydra.sweeper.direction={direction!r} is not a direction; valid: minimize, "
                               f"maximize (or null: minimize)")
    return direction or "minimize"


class LogitlabSweeper(Sweeper):
    def __init__(self, sampler: Any, params: Any, layers: Any, n_trials: int, n_jobs: Optional[int],
                 pruner: Any, seed: Optional[int], study_name: str, storage: Optional[str],
                 max_failures: Optional[int], objective: str, direction: Optional[str], top: int,
                 figures: bool = True, fuse: bool = True, fuse_max: int = 64, heartbeat_s: int = 30) -> None:
        self.sampler, self.pruner = _plain(sampler), _plain(pruner)
        self.params, self.layers = _plain(params) or {}, _plain(layers) or {}
        self.n_trials, self.n_jobs, self.seed = n_trials, n_jobs, seed
        self.study_name, self.storage, self.max_failures = study_name, storage, max_failures
        self.objective, self.direction, self.top, self.figures = objective, direction, top, figures
        self.fuse, self.fuse_max = fuse, fuse_max
        if not isinstance(heartbeat_s, int) or isinstance(heartbeat_s, bool) or heartbeat_s < 1:
            raise _jobs.SweepError(f"hydra.sweeper.heartbeat_s={heartbeat_s!r} must be a positive integer (seconds)")
        self.heartbeat_s = heartbeat_s

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.task = _task.Task(task_function)
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=self.task, config=config)
        self.parallelism = _jobs.launcher_parallelism(config)
        # the jobs that share this machine's cores: a SLURM job has an allocation of its own
        self.task.jobs_at_once = 1 if _jobs.on_cluster(config) else self.parallelism
        self.sequential = config.hydra.launcher._target_ == _jobs.BASIC_LAUNCHER
        self._bases: dict[tuple, tuple] = {}  # for launch: the config groups a job chooses -> a composition

    def sweep(self, arguments: List[str]) -> Any:
        trainer = self.config.get("trainer")  # logitlab's app: a config with trainer.objective (_direction)
        self.logitlab_app = OmegaConf.is_dict(trainer) and "objective" in trainer
        self.direction = _direction(self.objective, self.direction, self.logitlab_app)
        # Fused groups stack logitlab's models; another app's jobs run as the app wrote them.
        self.fuse = self.fuse and self.logitlab_app
        sweep_dir = Path(self.config.hydra.sweep.dir).absolute()
        self._check_same_sweep(sweep_dir, arguments)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        with _jobs.quiet_launchers():
            if self.sampler is None:
                from ._grid import run_grid

                return run_grid(self, parser, list(arguments), sweep_dir)
            from ._study import run_study

            return run_study(self, parser, list(arguments), sweep_dir)

    def _check_same_sweep(self, sweep_dir: Path, arguments: List[str]) -> None:
        """A sweep directory belongs to one sweep: rerunning it continues it; another sweep is refused
        in one line naming what differs (more epochs or more trials are allowed)."""
        from logitlab.trainer import rundir

        saved = sweep_dir / "multirun.yaml"
        launched = (sweep_dir / "summary.csv").exists() or any((d / ".hydra").is_dir() for d in sweep_dir.glob("*"))
        if not saved.is_file() or not launched:  # nothing ran there yet: a corrected command may take it
            return
        old = OmegaConf.load(saved)
        settings = lambda cfg: {f"hydra.sweeper.{k}": OmegaConf.to_container(cfg.hydra.sweeper, resolve=False).get(k)
                                for k in _SAME_SWEEP}  # noqa: E731
        overrides = lambda lines: dict(line.split("=", 1) if "=" in line else (line, "") for line in lines)  # noqa: E731
        changed = rundir.changed_keys({**settings(old), **overrides(old.hydra.overrides.task)},
                                      {**settings(self.config), **overrides(arguments)})
        if changed:
            raise _jobs.SweepError(f"hydra.sweep.dir={sweep_dir} holds another sweep ({rundir.describe(changed)}); "
                                   f"rerun with its values or give another hydra.sweep.dir")
        _jobs.log.info(f"{sweep_dir} holds this sweep already: finished jobs return their stored results")

    def launch(self, batch: list[list[str]], initial_job_idx: int) -> list:
        """The launcher's launch. For Hydra's basic launcher (jobs one after another in this process) it
        is done here, as that launcher does it, except that a job differing from an earlier one only in
        plain values is that job's composition with those values set (logitlab.config.check.derived_config):
        Hydra composes every job afresh, ~0.1 s each, more than a small job's training."""
        if not self.sequential:
            return self.launcher.launch(batch, initial_job_idx=initial_job_idx)
        import copy

        from hydra.core.utils import configure_log, run_job, setup_globals
        from omegaconf import open_dict, read_write

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        runs = []
        for k, overrides in enumerate(batch):
            choices = tuple(o for o in overrides if o.split("=", 1)[0].lstrip("+~") in self.config.hydra.runtime.choices)
            base = self._bases.get(choices)
            cfg = None
            if base is not None:
                from logitlab.config.check import derived_config

                cfg = derived_config(*base, overrides)
            if cfg is None:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                self._bases.setdefault(choices, (list(overrides), copy.deepcopy(cfg)))
            with read_write(cfg.hydra.job), open_dict(cfg.hydra.job):
                cfg.hydra.job.id = cfg.hydra.job.num = initial_job_idx + k
            runs.append(run_job(hydra_context=self.hydra_context, task_function=self.task, config=cfg,
                                job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir"))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return runs

    def pinned(self, batch: list[list[str]], sweep_dir: Path, gpus: list[str]) -> list[list[str]]:
        """Each job's overrides plus its sweep dir (this one, even if hydra.sweep.dir interpolates
        something that differs per job, e.g. ${hydra.job.override_dirname}) and GPU, if any."""
        batch = [b + [f"hydra.sweep.dir={_jobs.quote(sweep_dir)}"] for b in batch]
        return _jobs.pin_gpus(batch, gpus) if gpus else batch
