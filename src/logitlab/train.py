"""`python -m logitlab.train [overrides]` (or `logitlab-train`): compose the config, build data, model,
optimizer and trainer from it, train, and leave everything in the run directory:

  .hydra/            the composed config and the overrides
  metrics.json       final metrics (test/acc, test/loss, best val/acc, epochs, train_seconds, params)
  checkpoints/       last.pt (every epoch) and best.pt (by val/acc)
  events.out.tfevents.*   TensorBoard scalars and the HParams entry

Rerunning the same command with the same run directory (`hydra.run.dir=...`) resumes an unfinished run
and returns a finished one's result without training again.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from logitlab import ConfigError

log = logging.getLogger("logitlab")


def build(node, **kwargs):
    """`instantiate`, with a component's own ConfigError surfacing as itself (one line), not wrapped."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):
            raise e.__cause__ from None
        raise


def train(cfg: DictConfig, run_dir: Path) -> dict:
    """Build every component from `cfg` and fit."""
    import torch

    torch.manual_seed(cfg.seed)  # before the model is built: the seed fixes the initial weights
    trainer = build(cfg.trainer)
    data = build(cfg.data)
    model = build(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes)
    on_epoch_end = None
    if cfg.get("pruning"):
        from logitlab.pruning import epoch_reporter

        on_epoch_end = epoch_reporter(**cfg.pruning)
    return trainer.fit(
        model, data, build(cfg.optim), run_dir,
        schedule=build(cfg.schedule) if cfg.get("schedule") else None,
        seed=cfg.seed, config=OmegaConf.to_container(cfg, resolve=True),
        hparams=hparams(cfg), on_epoch_end=on_epoch_end,
    )


def hparams(cfg: DictConfig) -> dict:
    """What distinguishes this run: its config group choices, seed, and every override it was given."""
    hc = HydraConfig.get()
    values = {group: hc.runtime.choices.get(group) or "none" for group in ("data", "model", "optim", "schedule")}
    values["seed"] = cfg.seed
    for override in hc.overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in values or key.startswith(("hydra.", "pruning")) or "=" not in override:
            continue
        value = OmegaConf.select(cfg, key, default=override.split("=", 1)[1])
        values[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return values


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _versions() -> dict:
    import torch

    from importlib.metadata import version

    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = ""
    return {"logitlab": version("logitlab"), "torch": torch.__version__, "python": sys.version.split()[0],
            "git_revision": rev or None}


CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def run(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    metrics_path = run_dir / "metrics.json"
    if metrics_path.exists():
        metrics = json.loads(metrics_path.read_text())
        log.info(f"{run_dir} has finished already: {cfg.trainer.objective} {metrics[cfg.trainer.objective]:.4f}")
        return metrics[cfg.trainer.objective]

    from logitlab.trainer import Interrupted

    try:
        _write_json(run_dir / "versions.json", _versions())
        metrics = train(cfg, run_dir)
    except (ConfigError, Interrupted) as e:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweeper records the job as failed and goes on
        print(f"error: {e}" if isinstance(e, ConfigError) else str(e), file=sys.stderr)
        sys.exit(128 + e.signum if isinstance(e, Interrupted) else 1)
    _write_json(metrics_path, metrics)
    log.info(f"test/acc {metrics['test/acc']:.4f}  test/loss {metrics['test/loss']:.4f}  "
             f"best val/acc {metrics['val/acc']:.4f} (epoch {metrics['best_epoch']})  "
             f"{metrics['train_seconds']:.1f}s  {run_dir}")
    return metrics[cfg.trainer.objective]


def main() -> None:
    """The console entry: check the command line first (no run directory for a typo), then run."""
    args = sys.argv[1:]
    if not any(a.startswith(("--help", "-h", "--cfg", "--info", "--hydra-help", "--shell")) for a in args):
        from logitlab.validate import check_command_line

        try:
            check_command_line(CONFIG_DIR, args)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
    from logitlab.trainer import Interrupted

    try:
        run()
    except Interrupted as e:  # in a sweep: the finished jobs are kept, this one has its checkpoint
        print(e, file=sys.stderr)
        sys.exit(128 + e.signum)


if __name__ == "__main__":
    main()
