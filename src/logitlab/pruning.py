"""Per-epoch reports from a training job to its Optuna trial, so that the sweep's pruner can stop a
hopeless trial early.

The Optuna sweeper (hydra_plugins/logitlab_sweepers) sets the config key `pruning` of every trial to
{storage, study_name, trial_number, objective, pruner}; train.py passes it to `epoch_reporter`. The
study lives in storage both sides open, so the job needs nothing from the sweeper's process."""
from __future__ import annotations

import logging
import math
from typing import Any, Callable

from logitlab import ConfigError

log = logging.getLogger(__name__)


def open_storage(storage: str) -> Any:
    """An Optuna storage: a database URL (sqlite:///study.db, postgresql://...) or the path of an
    Optuna journal file (safe for processes on several machines that share the file system)."""
    import optuna

    if "://" in storage:
        return optuna.storages.RDBStorage(storage)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))


def epoch_reporter(storage: str, study_name: str, trial_number: int, objective: str,
                   pruner: Any = None) -> Callable[[int, dict[str, float]], None]:
    """A callback for the end of each epoch: reports metrics[objective] as the trial's value at step
    `epoch` and raises optuna.TrialPruned when `pruner` (a {_target_: optuna.pruners.X, ...} mapping)
    says the trial cannot catch up. The pruner judges with every trial's reports in the storage."""
    import optuna
    from hydra.utils import instantiate

    study = optuna.load_study(study_name=study_name, storage=open_storage(storage),
                              sampler=optuna.samplers.RandomSampler(),
                              pruner=instantiate(pruner) if pruner else optuna.pruners.NopPruner())
    frozen = next((t for t in study.get_trials(deepcopy=False) if t.number == trial_number), None)
    if frozen is None:
        raise ConfigError(f"pruning.trial_number={trial_number}: study {study_name!r} in {storage} "
                          f"has no such trial")
    if frozen.state.is_finished():
        # Rerunning a finished trial's saved config: train, but leave the study as it is.
        log.info(f"trial {trial_number} of study {study_name!r} has finished; epochs are not reported")
        return lambda epoch, metrics: None
    trial = optuna.trial.Trial(study, frozen._trial_id)

    def report(epoch: int, metrics: dict[str, float]) -> None:
        if objective not in metrics:
            raise ConfigError(f"pruning.objective={objective!r} is not reported after an epoch; "
                              f"valid: {', '.join(sorted(metrics))}")
        value = float(metrics[objective])
        if not math.isfinite(value):
            return  # a diverged run fails on its own; a NaN would only confuse the pruner
        trial.report(value, step=epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} with {objective} {value:.4f}")

    return report
