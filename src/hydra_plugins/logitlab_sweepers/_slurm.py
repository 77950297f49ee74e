"""The launcher of `hydra/launcher=slurm` (conf/hydra/launcher/slurm.yaml): hydra-submitit-launcher's
SLURM launcher, except for what comes back when the cluster says no. Its launch waits for every job's
result in turn and raises at the first job that has none, losing the batch's other results and stopping
the sweep with a traceback; sbatch refusing the submission is a traceback too. Here:

- a job that ended without a result (cancelled, killed for memory, lost with its node) is that job's
  failure (JobLost, with SLURM's state and the job's log), so the sweep records it and goes on, as
  for any failed job;
- sbatch's refusal (a partition, account or time limit the cluster does not have), or no SLURM on
  this machine, is one line (SweepError).

Hydra instantiates only the launchers its plugin scan registered, and the scan skips modules named _*:
sweeper.py imports SlurmLauncher from here, so slurm.yaml's `_target_` finds it."""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import log
from omegaconf import OmegaConf, open_dict

from ._errors import SweepError

_COMPOSING = threading.Lock()  # a study's trials launch from several threads; Hydra's config loader is shared


class JobLost(RuntimeError):
    """A SLURM job that ended without a result: it never returned, so neither did its error."""


class SlurmLauncher(SubmititSlurmLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        """hydra-submitit-launcher 1.2.0's BaseSubmititLauncher.launch, but for the two answers above."""
        import submitit
        from submitit.core.utils import FailedJobError, FailedSubmissionError

        assert self.config is not None
        init_keys = {"submitit_folder", "max_num_timeout"}
        try:
            executor = submitit.AutoExecutor(cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
                                             slurm_max_num_timeout=self.params["max_num_timeout"])
        except RuntimeError as e:  # submitit finds no srun
            raise SweepError(f"hydra/launcher=slurm: {e} It submits with sbatch from a SLURM login node; "
                             f"hydra/launcher=submitit_local runs the same jobs on this machine") from None
        baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in baseparams else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items() if k not in init_keys})
        log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        job_params: list[Any] = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        try:
            jobs = executor.map_array(self, *zip(*job_params))
        except (FailedJobError, FailedSubmissionError) as e:
            message = " ".join(str(e).split())
            raise SweepError(f"sbatch refused the jobs: {message} (see hydra.launcher: partition, account, "
                             f"timeout_min, gpus_per_node, ...)") from None
        return [self._result(job, list(overrides), idx)
                for idx, (job, overrides) in enumerate(zip(jobs, job_overrides), start=initial_job_idx)]

    def _result(self, job: Any, overrides: list[str], number: int) -> JobReturn:
        """The job's JobReturn; a JobLost failure if it ended without one."""
        from submitit.core.utils import FailedJobError, UncompletedJobError

        try:
            return job.results()[0]
        except (UncompletedJobError, FailedJobError) as e:
            last = (str(e).strip().splitlines() or ["no trace"])[-1]
            why = f"ended {job.state} without a result" if isinstance(e, UncompletedJobError) else \
                f"failed before its task returned ({last})"  # e.g. its pickle could not be loaded
            error = JobLost(f"SLURM job {job.job_id} {why}; log: {job.paths.stderr}")
        with _COMPOSING:  # the job's directory, as the job itself would have made it
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(cfg.hydra.job):
            cfg.hydra.job.num = number
        hydra_cfg = OmegaConf.create({"hydra": {
            "runtime": {"output_dir": str(Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir))},
            "job_logging": {"handlers": {"file": {"filename": str(job.paths.stderr)}}}}})
        return JobReturn(overrides=overrides, hydra_cfg=hydra_cfg, task_name=str(cfg.hydra.job.name),
                         status=JobStatus.FAILED, _return_value=error)
