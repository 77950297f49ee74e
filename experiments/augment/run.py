"""Does augmentation help? `augment=crop` for the CNN on scikit-learn's 8x8 digits, and `augment=shift` for the
CNN on MNIST-1D, against no augmentation, over 10 seeds each (the same seeds, so each seed is a paired
comparison: the same initial weights and batch order, only the inputs differ).

Each condition is one sweep over `seed=0..9` through the command line, at the defaults otherwise (Adam at
1e-2, batch 64; best.pt chosen by val/acc and scored on the test split), for 30 epochs (the default) and
again for 100, as augmentation often needs longer training to pay off. The seeds of a sweep train
as one fused group. Crop padding 1 and 2 (the default) on 8x8 digits, where 2 pixels is a quarter of the
image; shifts of up to 2, 4 (the default) and 8 of MNIST-1D's 40 steps.

    .venv/bin/python experiments/augment/run.py            # ~5 min on 2 cores; writes results.md
    .venv/bin/python experiments/augment/run.py --quick    # 2 seeds, 2 epochs: the plumbing

Runs go to multirun/augment/ (git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
OUT = ROOT / "multirun" / "augment"
# (dataset, label, the overrides of the condition); the first of each dataset is its baseline
CONDITIONS = [
    ("digits", "none", ["augment=none"]),
    ("digits", "crop, padding 1", ["augment=crop", "augment.padding=1"]),
    ("digits", "crop, padding 2 (default)", ["augment=crop", "augment.padding=2"]),
    ("mnist1d", "none", ["augment=none"]),
    ("mnist1d", "shift, max 2", ["augment=shift", "augment.max_shift=2"]),
    ("mnist1d", "shift, max 4 (default)", ["augment=shift", "augment.max_shift=4"]),
    ("mnist1d", "shift, max 8", ["augment=shift", "augment.max_shift=8"]),
]


def sweep(sweep_dir: Path, dataset: str, overrides: list[str], seeds: int, epochs: int) -> tuple[float, float]:
    """Train the condition's seeds through the command line; its wall time in seconds, and the machine's
    1-minute load average at the end: the run's own threads count in it (2 on 2 cores), so well above that
    means something else shared the cores and inflated the wall time (the accuracies are not affected)."""
    shutil.rmtree(sweep_dir, ignore_errors=True)
    command = [sys.executable, "-m", "logitlab.train", "-m", f"data={dataset}", "model=cnn", *overrides,
               f"seed=range({seeds})", f"trainer.epochs={epochs}", "trainer.progress=false",
               "hydra.sweeper.figures=false", f"hydra.sweep.dir={sweep_dir}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started, os.getloadavg()[0]


def scores(sweep_dir: Path) -> dict[int, dict]:
    """{seed: metrics.json} of every job of a sweep."""
    out = {}
    for metrics in sweep_dir.glob("*/metrics.json"):
        config = (metrics.parent / ".hydra" / "config.yaml").read_text()
        seed = int(next(line for line in config.splitlines() if line.startswith("seed:")).split(":")[1])
        out[seed] = json.loads(metrics.read_text())
    return out


def torch_threads(sweep_dir: Path) -> set[int]:
    """The intra-op threads the jobs used, as each train.log states it ("device cpu, 2 torch threads")."""
    found = set()
    for log in sweep_dir.glob("*/train.log"):
        found.update(int(n) for n in re.findall(r"(\d+) torch threads?", log.read_text()))
    return found


def mean_std(values: list[float], scale: float = 100, digits: int = 1) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.mean(values):.{digits}f} ± {scale * std:.{digits}f}"


def table(results: list[tuple]) -> list[str]:
    """One row per condition; the paired columns compare each seed with the same seed of the dataset's
    baseline (the first condition of that dataset), which shares its initial weights and batch order."""
    lines = ["| data | model | augment | seeds | test acc % | test loss | best epoch | vs none, same seed (points) "
             "| seeds better / worse | sweep wall (s) | load after |", "|---|---|---|---:|---|---|---:|---|---|---:|---:|"]
    baseline: dict[str, dict] = {}
    for dataset, label, runs, wall, load in results:
        baseline.setdefault(dataset, runs)
        base = baseline[dataset]
        diffs = [runs[s]["test/acc"] - base[s]["test/acc"] for s in sorted(runs)]
        paired = "—" if runs is base else f"{mean_std(diffs)}"
        counts = "—" if runs is base else f"{sum(d > 0 for d in diffs)} / {sum(d < 0 for d in diffs)}"
        lines.append(f"| {dataset} | cnn | {label} | {len(runs)} | {mean_std([r['test/acc'] for r in runs.values()])} | "
                     f"{mean_std([r['test/loss'] for r in runs.values()], 1, 3)} | "
                     f"{statistics.mean(r['best_epoch'] for r in runs.values()):.1f} | {paired} | {counts} | "
                     f"{wall:.0f} | {load:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, nargs="+", default=[30, 100],
                        help="one table per budget: augmentation often needs longer training to pay off")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2 epochs, no results.md")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs = 2, [2]
    lines = [f"# Does augmentation help the CNN? (`python experiments/augment/run.py`, {time.strftime('%Y-%m-%d')})",
             "", f"CNN (`model=cnn` defaults), seeds 0-{args.seeds - 1}, test accuracy of best.pt (by val/acc), mean "
             f"± std over seeds; the paired column is the mean ± std of the per-seed difference from `none`. "
             f"{platform.machine()}, {os.cpu_count()} cores, CPU; each sweep's seeds train as one fused group."]
    threads: set[int] = set()
    started = time.perf_counter()
    for epochs in args.epochs:
        results = []
        for dataset, label, overrides in CONDITIONS:
            sweep_dir = OUT / f"{epochs}epochs" / dataset / label.split(" (")[0].replace(", ", "_").replace(" ", "")
            wall, load = sweep(sweep_dir, dataset, overrides, args.seeds, epochs)
            runs = scores(sweep_dir)
            assert sorted(runs) == list(range(args.seeds)), (sweep_dir, sorted(runs))
            threads |= torch_threads(sweep_dir)
            results.append((dataset, label, runs, wall, load))
            print(f"{epochs} epochs, {dataset} {label}: {mean_std([r['test/acc'] for r in runs.values()])} % "
                  f"in {wall:.0f} s", flush=True)
        lines += ["", f"## {epochs} epochs", "", *table(results)]
    lines += ["", f"torch intra-op threads per run (from train.log): {', '.join(map(str, sorted(threads)))}; "
              f"all sweeps: {time.perf_counter() - started:.0f} s. \"load after\" is the 1-minute load average as "
              "each sweep ended; the run's own threads count in it, so well above their number means something else "
              "shared the cores and inflated that sweep's wall time."]
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.quick:
        (HERE / "results.md").write_text(report)


if __name__ == "__main__":
    main()
