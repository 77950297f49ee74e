"""The sweeper's settings, registered as hydra/sweeper=logitlab (conf/config.yaml makes it the default).

One sweeper, two modes, so that an hparams_search preset switches to Optuna by setting values alone (a
preset cannot `override /hydra/sweeper` once the root config has chosen it: the root's choice wins).

Search spaces use Hydra's sweep syntax: `a,b,c` or `choice(a, b, c)`; `range(1, 4)` (1, 2, 3, as in a
grid); `interval(0.0, 0.5)`; `tag(log, interval(1e-4, 1e-1))`; `tag(int, interval(16, 256))`."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class LayersConf:
    """A list-valued key searched layer by layer: first its length, then one value per element."""

    depth: str = "range(1, 4)"
    width: str = "choice(32, 64, 128, 256)"


@dataclass
class SweeperConf:
    _target_: str = "hydra_plugins.logitlab_sweepers.sweeper.LogitlabSweeper"
    _recursive_: bool = False  # a {_target_: ...} sampler or pruner reaches the sweeper as a spec
    # null: a grid, every combination of the swept values (Hydra's basic sweep).
    # random | tpe | grid | {_target_: optuna.samplers.NAME, ...}: an Optuna study of n_trials trials.
    sampler: Any = None
    # key: values. Swept like the command line's `key=a,b`; in a study, the search space.
    params: Dict[str, str] = field(default_factory=dict)
    # Optuna only. Conditional spaces for architecture search, asked before `params`: model.hidden:
    # {depth: range(1, 4), width: choice(64, 128)} asks model.hidden.depth, then model.hidden.0, ...
    layers: Dict[str, LayersConf] = field(default_factory=dict)
    n_trials: int = 20  # Optuna only; in total: a resumed study runs only the trials still missing
    # Jobs launched together: a grid's batches (Hydra's max_batch_size), a study's trials at a time.
    # null: a grid is one batch, launched one job at a time on Hydra's basic launcher (so Ctrl-C and
    # max_failures stop between jobs) and all at once on a parallel launcher unless max_failures is set;
    # a study runs as many trials at a time as the launcher runs jobs.
    n_jobs: Optional[int] = None
    # Optuna only. null | median | hyperband | {_target_: optuna.pruners.NAME, ...}. Each job reports
    # `objective` after every epoch to its trial (see _pruning.py).
    pruner: Any = None
    seed: Optional[int] = None  # Optuna only: the sampler's seed
    study_name: str = "${hydra.job.name}"
    # Optuna only. null: Optuna's journal file <sweep dir>/optuna.journal (parallel jobs on one host);
    # or a database URL such as postgresql://user@host/db or sqlite:////abs/path/study.db
    storage: Optional[str] = None
    # Optuna only. Each sweeper records a heartbeat for its running trials this often; a trial without one
    # for 4x as long (or whose sweeper's process on this host has ended) is continued by another sweeper.
    heartbeat_s: int = 30
    # Launch no more jobs once more than this many failed in this run (0: stop at the first).
    max_failures: Optional[int] = None
    # What each job returns (and reports per epoch for pruning), and which end of it is best. For
    # logitlab's app (a config with trainer.objective) a metric such as val/acc. For any other Hydra app
    # the objective is the value its task function returns, and this is only its name in the summary.
    objective: str = "${oc.select:trainer.objective,value}"
    # logitlab's app, null: the objective's own (*/acc maximize, */loss minimize); one that contradicts
    # it is refused. Any other app: minimize (null) or maximize.
    direction: Optional[str] = None
    top: int = 5  # rows in the printed table of the best jobs (groups over seeds when `seed` is swept)
    # Write the sweep's figures at the end (PNGs beside summary.csv, TensorBoard images in summary/);
    # `logitlab-summary <sweep dir>` writes them at any time.
    figures: bool = True
    # Jobs that differ only in values that keep tensor shapes (seed, optim.lr, model.dropout, ...) train
    # as one stacked model in one process, each still writing its own job directory (logitlab.fused).
    fuse: bool = True
    fuse_max: int = 64  # jobs in one fused group at most


ConfigStore.instance().store(group="hydra/sweeper", name="logitlab", node=SweeperConf,
                             provider="logitlab")
