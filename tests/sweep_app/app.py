"""A stand-in for logitlab.train in sweep tests: instant "training" whose result follows from the config.

Like the real entry point it writes metrics.json in its job directory, returns trainer.objective, returns
a finished job's stored result without training again, and reports every epoch when `pruning` is set.
`fail` makes the job at a given x raise, return NaN, or be interrupted (once). Each real training
appends a line to <job dir>/calls.log, so tests can count reruns. Its console entry reports errors as
logitlab.train's does: one line, and the command that continues a stopped sweep."""
import json
import math
import os
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from logitlab.trainer import hooks, rundir


def score(cfg: DictConfig) -> float:
    """Best at x = 0.3 with two wide layers."""
    hidden = list(cfg.model.get("hidden", [])) or [1]
    shape = 0.1 * min(len(hidden), 2) + 0.1 * min(sum(hidden), 256) / 256
    return round(0.7 - (cfg.x - 0.3) ** 2 + shape + 0.001 * cfg.get("seed", 0), 6)  # seeds differ a little


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def run(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if (run_dir / "metrics.json").exists():
        return json.loads((run_dir / "metrics.json").read_text())[cfg.trainer.objective]
    with open(run_dir / "calls.log", "a") as f:
        f.write(f"trained pid={os.getpid()} gpu={os.environ.get('CUDA_VISIBLE_DEVICES')} started={time.time()}\n")
    if HydraConfig.get().job.num == cfg.slow_job:
        time.sleep(cfg.slow_seconds)
    final = score(cfg)
    for epoch in range(1, cfg.epochs + 1):
        time.sleep(cfg.sleep)
        if cfg.x == cfg.fail.interrupt_at and not (run_dir / "interrupted").exists():
            (run_dir / "interrupted").touch()  # like Ctrl-C, once
            raise KeyboardInterrupt
        hooks.epoch_ended(epoch, {"val/acc": final * epoch / cfg.epochs, "train/loss": 1.0 / epoch})
    if cfg.x == cfg.fail.raise_at:
        raise RuntimeError(f"boom at x={cfg.x}")
    metrics = {"val/acc": math.nan if cfg.x == cfg.fail.nan_at else final, "test/acc": final - 0.01,
               "params": 10 * sum(cfg.model.get("hidden", []) or [1]),
               "epochs": cfg.epochs}
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    return metrics[cfg.trainer.objective]


def main() -> None:
    from hydra.errors import HydraException

    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        run()
    except HydraException as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as e:
        resume = getattr(e, "resume_at", None)
        print("interrupted" + (f"; resume with: {rundir.command(sys.argv[1:], *resume)}" if resume else ""),
              file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
