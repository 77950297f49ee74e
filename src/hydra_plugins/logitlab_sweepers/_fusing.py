"""Fused groups (`hydra.sweeper.fuse`): the sweeper composes every job's config, groups the jobs that
logitlab.fused says can train as one stack (at most `fuse_max` each, and at least as many groups as the
launcher runs at once), and launches each group as one job. In that job's process, `run_group` makes
each member's job directory as Hydra's run_job would (.hydra/ and the resolved output dir) and hands
them all to logitlab.fused.group; job.json records how each ended, as for a solo job.

A group's own launcher job writes to <sweep dir>/.groups/<first member's number>/: the group's log and
Hydra's files."""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

GROUP_ENV = "LOGITLAB_FUSED_GROUP"  # tells the launched job which group it is (Hydra's env_set)


@dataclass
class Unit:
    """What one launcher job runs: one job alone, or a fused group of them."""

    numbers: list[int]
    overrides: list[list[str]]
    configs: list[DictConfig]  # each job's composed config
    fused: bool = False


def compose(sweeper, overrides: list[str], number: int, base: tuple | None = None) -> DictConfig:
    """The job's config as the launcher would compose it, numbered, its output dir resolved. With `base`
    (an earlier job's overrides and config), a job that differs from it only in plain values (no config
    group, nothing added or removed, no hydra key) is that config with those values set: what Hydra's
    composition gives, at a hundredth of its cost (logitlab.config.check.derived_config)."""
    from hydra.core.hydra_config import HydraConfig

    from logitlab.config.check import derived_config

    cfg = derived_config(*base, overrides) if base is not None else None
    if cfg is None:
        cfg = sweeper.hydra_context.config_loader.load_sweep_config(sweeper.config, list(overrides))
    with read_write(cfg.hydra.job), open_dict(cfg.hydra.job):
        cfg.hydra.job.id = number
        cfg.hydra.job.num = number
    HydraConfig.instance().set_config(cfg)
    out = Path(str(cfg.hydra.sweep.dir)) / str(OmegaConf.select(cfg, "hydra.sweep.subdir"))
    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(out.absolute())
    return cfg


def plan(sweeper, jobs: list[list[str]], numbers: list[int]) -> list[Unit]:
    """The jobs as units, in number order (a group at its first member's number). Groups hold at most
    fuse_max jobs, and the jobs of one key are spread over as many groups as the launcher runs at once."""
    from logitlab.fused.keys import group_key, task_container

    keyed: dict[str, list[int]] = {}
    configs, units = {}, []
    bases: dict[tuple, tuple] = {}  # the config groups a job chooses -> the first such job's composition
    for k, (overrides, number) in enumerate(zip(jobs, numbers)):
        choices = tuple(o for o in overrides if o.split("=", 1)[0].lstrip("+~") in sweeper.config.hydra.runtime.choices)
        cfg = compose(sweeper, overrides, number, bases.get(choices))
        bases.setdefault(choices, (overrides, cfg))
        key = group_key(task_container(cfg))
        configs[k] = cfg
        if key is None:
            units.append(Unit([number], [overrides], [cfg]))
        else:
            keyed.setdefault(key, []).append(k)
    at_once = max(1, sweeper.parallelism)
    for members in keyed.values():
        size = max(1, min(sweeper.fuse_max, math.ceil(len(members) / at_once)))
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            units.append(Unit([numbers[k] for k in chunk], [jobs[k] for k in chunk], [configs[k] for k in chunk],
                              fused=len(chunk) > 1))
    return sorted(units, key=lambda u: u.numbers[0])


def launch(sweeper, units: list[Unit], sweep_dir: Path, gpus: list[str]) -> list[tuple[int, list[str], JobReturn]]:
    """Launch the units: the groups together (each a job of its own in .groups/<first number>), then the
    solo jobs numbered as themselves (a run of consecutive numbers per launch). Returns (number,
    overrides, JobReturn) for every job, in number order."""
    from ._jobs import quote

    out: list[tuple[int, list[str], JobReturn]] = []
    groups = [u for u in units if u.fused]
    if groups:
        sweeper.task.groups.update({u.numbers[0]: (u.numbers, u.configs) for u in groups})
        launched = [u.overrides[0] + [f"hydra.sweep.subdir={quote('.groups/' + str(u.numbers[0]))}",
                                      f"++hydra.job.env_set.{GROUP_ENV}={u.numbers[0]}"] for u in groups]
        for unit, ret in zip(groups, sweeper.launch(sweeper.pinned(launched, sweep_dir, gpus), 0)):
            out += zip(unit.numbers, unit.overrides, returns(unit, ret))
    solos = sorted((u for u in units if not u.fused), key=lambda u: u.numbers[0])
    start = 0
    for end in range(1, len(solos) + 1):
        if end == len(solos) or solos[end].numbers[0] != solos[end - 1].numbers[0] + 1:
            batch = [u.overrides[0] for u in solos[start:end]]
            rets = sweeper.launch(sweeper.pinned(batch, sweep_dir, gpus), solos[start].numbers[0])
            out += [(u.numbers[0], u.overrides[0], ret) for u, ret in zip(solos[start:end], rets)]
            start = end
    return sorted(out, key=lambda item: item[0])


def run_group(configs: list[DictConfig], hooks: list[list]) -> list[Any]:
    """In the launched job's process: make each member's job directory, train them together, and record
    how each ended in its job.json."""
    from logitlab.fused.group import run_group as train_group
    from logitlab.fused.keys import task_container
    from logitlab.reporting.tensorboard_log import record_status

    from ._jobs import job_state

    for cfg in configs:
        out = Path(cfg.hydra.runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        if cfg.hydra.output_subdir is not None:  # what run_job saves, as OmegaConf.save writes it
            hydra_dir = out / str(cfg.hydra.output_subdir)
            hydra_dir.mkdir(parents=True, exist_ok=True)
            for name, node in (("config.yaml", task_container(cfg, resolve=False)),
                               ("hydra.yaml", {"hydra": OmegaConf.to_container(cfg.hydra, enum_to_str=True)}),
                               ("overrides.yaml", OmegaConf.to_container(cfg.hydra.overrides.task))):
                (hydra_dir / name).write_text(_yaml(node))
    started = time.perf_counter()
    results = train_group(configs, hooks)
    seconds = round(time.perf_counter() - started, 3)
    for cfg, result in zip(configs, results):
        out = Path(cfg.hydra.runtime.output_dir)
        status = job_state(result) if isinstance(result, BaseException) else "COMPLETE"
        error = f"{type(result).__name__}: {result}" if isinstance(result, BaseException) else None
        # wall_seconds: its share of the group's, so that a summary's sum is the time spent
        ending = {"status": status, "wall_seconds": round(seconds / len(configs), 3), "error": error,
                  "fused_with": len(configs), "group_wall_seconds": seconds}
        (out / "job.json").write_text(json.dumps(ending, indent=2) + "\n")
        if status in ("PRUNED", "FAIL"):
            record_status(out, status)
    return results


def _yaml(node) -> str:
    """OmegaConf.to_yaml's text for plain values, without building a config of them first (~10 ms each)."""
    import yaml
    from omegaconf._utils import get_omega_conf_dumper

    return yaml.dump(node, default_flow_style=False, allow_unicode=True, sort_keys=False,
                     Dumper=get_omega_conf_dumper())


def returns(unit: Unit, ret: JobReturn) -> list[JobReturn]:
    """Each member's JobReturn, as a launcher would have returned it had the member run alone."""
    results = ret._return_value if ret.status == JobStatus.COMPLETED else [ret._return_value] * len(unit.numbers)
    out = []
    for overrides, cfg, result in zip(unit.overrides, unit.configs, results):
        failed = isinstance(result, BaseException)
        out.append(JobReturn(overrides=overrides, cfg=None, hydra_cfg=cfg, working_dir=os.getcwd(),
                             task_name=str(cfg.hydra.job.name),
                             status=JobStatus.FAILED if failed else JobStatus.COMPLETED, _return_value=result))
    return out
