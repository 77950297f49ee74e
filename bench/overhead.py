"""What a run costs outside training, side by side in one run, through the command line as users run it.

1. Sweep wall times: a 64-job grid (8 seeds x 8 learning rates) on MNIST-1D, 10 epochs each:

  fused      this checkout, `-m` at its defaults (fused groups)
  unfused    this checkout, hydra.sweeper.fuse=false
  eadd62d    the same sweep from a checkout of revision eadd62d (main before the sweep-speed work)
  optuna+loop  an in-process Optuna study of the same 64 (seed, lr) pairs around a hand-written loop
             (randperm, forward, cross_entropy, backward, fused Adam; val scored each epoch): the floor for
             training one model at a time

2. Two runs started together on this machine against one alone (MNIST-1D MLP, 40 epochs; train_seconds
   from metrics.json): at trainer.threads=auto, and at 2 threads (what torch picks on 2 cores by default).

3. End to end: the default command (`make train`: softmax regression on digits, figures on) against
   `python -c "import torch"`, alternating, medians of 5.

Usage: python bench/overhead.py [--rows mlp,mlp100,cnn] [--sections sweeps,concurrency,end_to_end]
[--out bench/overhead.md]; --quick runs every part once at toy sizes (tests/test_bench.py). Needs git (for the
eadd62d worktree) and optuna."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cold_start import wait_for_figures  # bench/, this script's directory

ROOT = Path(__file__).resolve().parents[1]
OLD = "eadd62d"



@dataclass(frozen=True)
class Sizes:
    seeds: int = 8  # the sweep grid: seeds x lrs, `epochs` each
    lrs: str = "1e-3,2e-3,3e-3,5e-3,7e-3,1e-2,2e-2,3e-2"
    epochs: int = 10
    concurrency_epochs: int = 40
    concurrency_reps: int = 3
    concurrency_threads: tuple[str, ...] = ("auto", "2")
    end_to_end_reps: int = 5

    @property
    def jobs(self) -> int:
        return self.seeds * len(self.lrs.split(","))


FULL = Sizes()
QUICK = Sizes(seeds=2, lrs="1e-3", epochs=1, concurrency_epochs=2, concurrency_reps=1,
              concurrency_threads=("auto",), end_to_end_reps=1)  # --quick: see that every part runs
ROWS = {"mlp": ("MNIST-1D MLP 40-32-10", ["model=mlp", "model.hidden=[32]"], dict(kind="mlp", hidden=(32,))),
        "mlp100": ("MNIST-1D MLP 40-100-100-10", ["model=mlp", "model.hidden=[100,100]"],
                   dict(kind="mlp", hidden=(100, 100))),
        "cnn": ("MNIST-1D CNN 16-32", ["model=cnn", "model.channels=[16,32]"], dict(kind="cnn", channels=(16, 32)))}
TARGETS = {"mlp": (10.0, 3.0), "mlp100": (3.0, None), "cnn": (2.0, None)}  # x over eadd62d, x over optuna+loop


def sweep(src: Path, model: list[str], out: Path, sizes: Sizes, *extra: str) -> tuple[float, float]:
    """(wall seconds, sum of the jobs' train_seconds) of the grid run from checkout `src`."""
    env = {**os.environ, "PYTHONPATH": str(src / "src")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "logitlab.train", "-m", "data=mnist1d", *model,
                           f"seed=range({sizes.seeds})", f"optim.lr={sizes.lrs}", f"trainer.epochs={sizes.epochs}",
                           "trainer.progress=false",
                           f"hydra.sweep.dir={out}", *extra], cwd=src, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sweep from {src} failed:\n{done.stderr[-3000:]}")
    train = sum(json.loads(p.read_text()).get("train_seconds", 0.0) for p in out.glob("*/metrics.json"))
    return wall, train


def optuna_loop(spec: dict, sizes: Sizes) -> float:
    """Wall seconds of an in-process Optuna study over the same (seed, lr) pairs, one model at a time."""
    import optuna
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT / "src"))
    from logitlab.data import load_mnist1d
    from logitlab.models import CNN, MLP

    started = time.perf_counter()
    data = load_mnist1d(root=os.environ.get("LOGITLAB_DATA", "~/.cache/logitlab"))
    (x, y), (xv, yv) = data.train, data.val
    lrs, seeds = [float(v) for v in sizes.lrs.split(",")], list(range(sizes.seeds))

    def objective(trial) -> float:
        seed, lr = trial.suggest_categorical("seed", seeds), trial.suggest_categorical("lr", lrs)
        torch.manual_seed(seed)
        model = MLP(data.input_shape, 10, hidden=spec["hidden"]) if spec["kind"] == "mlp" \
            else CNN(data.input_shape, 10, channels=spec["channels"])
        opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
        g, best = torch.Generator().manual_seed(seed), 0.0
        for _ in range(sizes.epochs):
            perm = torch.randperm(len(x), generator=g)
            for i in range(0, len(x), 64):
                idx = perm[i:i + 64]
                loss = F.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                model.eval()
                best = max(best, (model(xv).argmax(1) == yv).float().mean().item())
                model.train()
        return best

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    grid = optuna.samplers.GridSampler({"seed": seeds, "lr": lrs})
    optuna.create_study(direction="maximize", sampler=grid).optimize(objective, n_trials=sizes.jobs)
    return time.perf_counter() - started


def _train(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "logitlab.train", *args, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait(run: subprocess.Popen) -> None:
    """Wait for a run from _train; a failed one stops the benchmark (its time would mean nothing)."""
    _, err = run.communicate()
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(run.args[1:])} exited with status {run.returncode}:\n{err[-3000:]}")


def concurrency(sizes: Sizes) -> list[str]:
    """train_seconds of one run alone and of each of two started together, medians over the repetitions."""
    import statistics

    reps, epochs = sizes.concurrency_reps, sizes.concurrency_epochs
    run = ["data=mnist1d", "model=mlp", f"trainer.epochs={epochs}", "trainer.progress=false", "trainer.figures=false"]
    lines = [f"## Two runs started together (MNIST-1D MLP 40-64-32-10, {epochs} epochs): train_seconds", "",
             "| trainer.threads | alone (s) | each of two together (s) | together / alone | target <= 2.2 |",
             "|---|---|---|---|---|"]
    for threads in sizes.concurrency_threads:
        alone, together = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(reps):
                p = _train(Path(tmp) / f"a{k}", *run, f"trainer.threads={threads}")
                _wait(p)
                alone.append(json.loads((Path(tmp) / f"a{k}" / "metrics.json").read_text())["train_seconds"])
                pair = [_train(Path(tmp) / f"b{k}{j}", *run, f"trainer.threads={threads}") for j in range(2)]
                for q in pair:
                    _wait(q)
                together += [json.loads((Path(tmp) / f"b{k}{j}" / "metrics.json").read_text())["train_seconds"]
                             for j in range(2)]
        a, t = statistics.median(alone), statistics.median(together)
        lines.append(f"| {threads} | {a:.2f} | {t:.2f} | {t / a:.2f} | {'✓' if t / a <= 2.2 else '✗'} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def end_to_end(reps: int) -> list[str]:
    """`python -m logitlab.train` (the default run, figures on) against `python -c 'import torch'`. The run
    ends before its figures are drawn (in a child, trainer.figures=auto); the next command waits for them."""
    import statistics

    torch_s, train_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(reps):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch"], check=True)
            torch_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            _wait(_train(Path(tmp) / str(k)))
            train_s.append(time.perf_counter() - started)
            wait_for_figures(Path(tmp) / str(k))
    t, r = statistics.median(torch_s), statistics.median(train_s)
    line = (f"| `python -c 'import torch'` | {t:.2f} s |\n| `python -m logitlab.train` (make train, figures on) | "
            f"{r:.2f} s (+{r - t:.2f} s; target +1.0) |")
    print(line, file=sys.stderr, flush=True)
    return [f"## End to end: the default command against importing torch (medians of {reps}, alternating)", "",
            "| command | wall |", "|---|---|", line]


def optuna_loop_command(key: str, quick: bool) -> float:
    """Wall seconds of `python bench/overhead.py --optuna-loop KEY [--quick]`: the study as its own command,
    imports included, as the sweeps are timed."""
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--optuna-loop", key, *(["--quick"] if quick else [])], check=True,
                   cwd=ROOT)
    return time.perf_counter() - started


def sweeps(keys: list[str], sizes: Sizes, quick: bool) -> list[str]:
    """The sweep table: each row's grid fused, unfused, from eadd62d's checkout, and as optuna+loop."""
    lines = [f"## Sweep wall times: {sizes.jobs} jobs ({sizes.seeds} seeds x {len(sizes.lrs.split(','))} lr), "
             f"MNIST-1D, {sizes.epochs} epoch(s) each, batch 64", "",
             "| row | fused (s) | unfused (s) | unfused: sum of train_seconds (s) | eadd62d unfused (s) | "
             "optuna+loop (s) | eadd62d / fused | optuna+loop / fused | unfused <= 1.3 x train + 3 s |",
             "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp, old = Path(tmp), Path(tmp) / OLD
        subprocess.run(["git", "worktree", "add", "--detach", str(old), OLD], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            for key in keys:
                name, model, _ = ROWS[key]
                fused, _ = sweep(ROOT, model, tmp / f"{key}-fused", sizes)
                unfused, train = sweep(ROOT, model, tmp / f"{key}-unfused", sizes, "hydra.sweeper.fuse=false")
                previous, _ = sweep(old, model, tmp / f"{key}-old", sizes)
                loop = optuna_loop_command(key, quick)
                over_old, over_loop = TARGETS[key]
                mark = lambda ratio, target: f"{ratio:.2f}" + ("" if target is None else (" ✓" if ratio >= target else " ✗"))  # noqa: E731
                lines.append(f"| {name} | {fused:.1f} | {unfused:.1f} | {train:.1f} | {previous:.1f} | {loop:.1f} | "
                             f"{mark(previous / fused, over_old)} | {mark(loop / fused, over_loop)} | "
                             f"{'✓' if unfused <= 1.3 * train + 3 else '✗'} |")
                print(lines[-1], file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
    return lines + ["", "Targets: eadd62d / fused >= 10 (MLP 40-32-10), >= 3 (MLP 100-100), >= 2 (CNN); optuna+loop / "
                        "fused >= 3 (MLP 40-32-10); unfused <= 1.3 x its jobs' train_seconds + 3 s."]


def main() -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--optuna-loop":
        import torch

        torch.set_num_threads(1)
        optuna_loop(ROWS[sys.argv[2]][2], QUICK if sys.argv[3:] == ["--quick"] else FULL)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=None, help="sweep rows (default: all, mlp with --quick), from: "
                                                      + ", ".join(ROWS))
    parser.add_argument("--sections", default="sweeps,concurrency,end_to_end")
    parser.add_argument("--quick", action="store_true",
                        help=f"every part once at toy sizes (the mlp row's sweeps: {QUICK.jobs} jobs of "
                             f"{QUICK.epochs} epoch; one repetition), to see that it runs; prints, writes no file "
                             "unless --out is given")
    parser.add_argument("--out", default=None, help="the report (default: bench/overhead.md, none with --quick)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    args.rows = args.rows or ("mlp" if args.quick else ",".join(ROWS))
    if args.out is None and not args.quick:
        args.out = str(ROOT / "bench" / "overhead.md")
    unknown = set(args.rows.split(",")) - ROWS.keys()
    if unknown:
        parser.error(f"--rows {args.rows}: no row {', '.join(sorted(unknown))}; rows: {', '.join(ROWS)}")
    lines = ["# Outside training: sweep wall times, two runs at once, end to end", "",
             f"Command: `python {' '.join(['bench/overhead.py', *sys.argv[1:]])}` "
             f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); {os.cpu_count()} cores, load average "
             f"{os.getloadavg()[0]:.1f} at the start."]
    if "sweeps" in args.sections:
        lines += ["", *sweeps(args.rows.split(","), sizes, args.quick)]
    if "concurrency" in args.sections:
        lines += ["", *concurrency(sizes)]
    if "end_to_end" in args.sections:
        lines += ["", *end_to_end(sizes.end_to_end_reps)]
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
