"""logitlab-summary DIR: what a finished (or stopped) sweep found, from DIR/summary.csv.

    logitlab-summary multirun/2026-12-01/09-30-00          # or: python -m logitlab.summary DIR

Prints the table of the best jobs (grouped over seeds, mean ± std, when the sweep varies `seed`) and
writes the sweep's figures beside summary.csv and as TensorBoard images in DIR/summary/: the objective
against parameter count and against each swept value, and for an Optuna study the parameters' importance.
The objective is summary.csv's own column; its direction is the sweep's (DIR/multirun.yaml), else the
objective's."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from logitlab import ConfigError
from logitlab.reporting import sweep_table
from logitlab.trainer.objective import Objective


def direction_of(sweep_dir: Path, objective: str) -> str:
    """hydra.sweeper.direction as the sweep saved it (a plain value only), else the objective's own."""
    saved = None
    path = sweep_dir / "multirun.yaml"
    if path.is_file():
        import yaml

        try:
            saved = ((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("sweeper", {}).get("direction")
        except (yaml.YAMLError, AttributeError):
            saved = None
    if saved in ("maximize", "minimize"):
        return saved
    try:
        return Objective.of(objective, None).direction
    except ConfigError:  # an objective logitlab does not know (a custom app's): higher is better
        return "maximize"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="logitlab-summary", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep directory (the one holding summary.csv)")
    parser.add_argument("--top", type=int, default=10, help="rows in the table (default 10)")
    args = parser.parse_args(argv)
    sweep_dir = args.sweep_dir
    csv_path = sweep_dir / "summary.csv"
    if not csv_path.is_file():
        print(f"error: {sweep_dir} has no summary.csv; is it a sweep directory?", file=sys.stderr)
        sys.exit(1)
    try:
        objective, rows = sweep_table.read(csv_path)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    direction = direction_of(sweep_dir, objective)
    print(sweep_table.table(rows, objective, direction, args.top))
    from logitlab.reporting import sweep_plots  # torch (for TensorBoard) and matplotlib: only for a real sweep

    written, notes = sweep_plots.write(sweep_dir, rows, objective, direction)
    for note in notes:
        print(f"note: {note}")
    for path in written:
        print(f"wrote {path}")
    if written:
        print(f"and as TensorBoard images: tensorboard --logdir {sweep_dir}")


if __name__ == "__main__":
    main()
