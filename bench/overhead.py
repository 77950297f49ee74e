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

Usage: python bench/overhead.py [--rows mlp,mlp100,cnn] [--out bench/overhead.md]. Needs git (for the
eadd62d worktree) and optuna."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD = "eadd62d"
SEEDS = "range(8)"
LRS = "1e-3,2e-3,3e-3,5e-3,7e-3,1e-2,2e-2,3e-2"
ROWS = {"mlp": ("MNIST-1D MLP 40-32-10", ["model=mlp", "model.hidden=[32]"], dict(kind="mlp", hidden=(32,))),
        "mlp100": ("MNIST-1D MLP 40-100-100-10", ["model=mlp", "model.hidden=[100,100]"],
                   dict(kind="mlp", hidden=(100, 100))),
        "cnn": ("MNIST-1D CNN 16-32", ["model=cnn", "model.channels=[16,32]"], dict(kind="cnn", channels=(16, 32)))}
TARGETS = {"mlp": (10.0, 3.0), "mlp100": (3.0, None), "cnn": (2.0, None)}  # x over eadd62d, x over optuna+loop


def sweep(src: Path, model: list[str], out: Path, *extra: str) -> tuple[float, float]:
    """(wall seconds, sum of the jobs' train_seconds) of the grid run from checkout `src`."""
    env = {**os.environ, "PYTHONPATH": str(src / "src")}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "logitlab.train", "-m", "data=mnist1d", *model, f"seed={SEEDS}",
                           f"optim.lr={LRS}", "trainer.epochs=10", "trainer.progress=false",
                           f"hydra.sweep.dir={out}", *extra], cwd=src, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sweep from {src} failed:\n{done.stderr[-3000:]}")
    train = sum(json.loads(p.read_text()).get("train_seconds", 0.0) for p in out.glob("*/metrics.json"))
    return wall, train


def optuna_loop(spec: dict) -> float:
    """Wall seconds of an in-process Optuna study over the same 64 (seed, lr) pairs, one model at a time."""
    import optuna
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT / "src"))
    from logitlab.data import load_mnist1d
    from logitlab.models import CNN, MLP

    started = time.perf_counter()
    data = load_mnist1d(root=os.environ.get("LOGITLAB_DATA", "~/.cache/logitlab"))
    (x, y), (xv, yv) = data.train, data.val
    lrs = [float(v) for v in LRS.split(",")]

    def objective(trial) -> float:
        seed, lr = trial.suggest_categorical("seed", list(range(8))), trial.suggest_categorical("lr", lrs)
        torch.manual_seed(seed)
        model = MLP(data.input_shape, 10, hidden=spec["hidden"]) if spec["kind"] == "mlp" \
            else CNN(data.input_shape, 10, channels=spec["channels"])
        opt = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
        g, best = torch.Generator().manual_seed(seed), 0.0
        for _ in range(10):
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
    grid = optuna.samplers.GridSampler({"seed": list(range(8)), "lr": lrs})
    optuna.create_study(direction="maximize", sampler=grid).optimize(objective, n_trials=64)
    return time.perf_counter() - started


def _train(run_dir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "logitlab.train", *args, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def concurrency(reps: int = 3) -> list[str]:
    """train_seconds of one run alone and of each of two started together, medians over `reps`."""
    import statistics

    run = ["data=mnist1d", "model=mlp", "trainer.epochs=40", "trainer.progress=false", "trainer.figures=false"]
    lines = ["## Two runs started together (MNIST-1D MLP 40-64-32-10, 40 epochs): train_seconds", "",
             "| trainer.threads | alone (s) | each of two together (s) | together / alone | target <= 2.2 |",
             "|---|---|---|---|---|"]
    for threads in ("auto", "2"):
        alone, together = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(reps):
                p = _train(Path(tmp) / f"a{k}", *run, f"trainer.threads={threads}")
                p.wait()
                alone.append(json.loads((Path(tmp) / f"a{k}" / "metrics.json").read_text())["train_seconds"])
                pair = [_train(Path(tmp) / f"b{k}{j}", *run, f"trainer.threads={threads}") for j in range(2)]
                for q in pair:
                    q.wait()
                together += [json.loads((Path(tmp) / f"b{k}{j}" / "metrics.json").read_text())["train_seconds"]
                             for j in range(2)]
        a, t = statistics.median(alone), statistics.median(together)
        lines.append(f"| {threads} | {a:.2f} | {t:.2f} | {t / a:.2f} | {'✓' if t / a <= 2.2 else '✗'} |")
        print(lines[-1], flush=True)
    return lines


def end_to_end(reps: int = 5) -> list[str]:
    """`python -m logitlab.train` (the default run, figures on) against `python -c 'import torch'`."""
    import statistics

    torch_s, train_s = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(reps):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch"], check=True)
            torch_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            _train(Path(tmp) / str(k)).wait()
            train_s.append(time.perf_counter() - started)
    t, r = statistics.median(torch_s), statistics.median(train_s)
    line = (f"| `python -c 'import torch'` | {t:.2f} s |\n| `python -m logitlab.train` (make train, figures on) | "
            f"{r:.2f} s (+{r - t:.2f} s; target +1.0) |")
    print(line, flush=True)
    return ["## End to end: the default command against importing torch (medians of 5, alternating)", "",
            "| command | wall |", "|---|---|", line]


def optuna_loop_command(key: str) -> float:
    """Wall seconds of `python bench/overhead.py --optuna-loop KEY`: the study as its own command, imports
    included, as the sweeps are timed."""
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--optuna-loop", key], check=True, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--optuna-loop":
        import torch

        torch.set_num_threads(1)
        optuna_loop(ROWS[sys.argv[2]][2])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", default="mlp,mlp100,cnn")
    parser.add_argument("--out", default=str(ROOT / "bench" / "overhead.md"))
    parser.add_argument("--sections", default="sweeps,concurrency,end_to_end")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = tmp / OLD
        subprocess.run(["git", "worktree", "add", "--detach", str(old), OLD], cwd=ROOT, check=True, capture_output=True)
        try:
            lines = ["# Sweep wall times: 64 jobs (8 seeds x 8 lr), MNIST-1D, 10 epochs each\n",
                     f"Command: `python bench/overhead.py --rows {args.rows} --sections {args.sections}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); "
                     f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start.\n",
                     "| row | fused (s) | unfused (s) | unfused: sum of train_seconds (s) | eadd62d unfused (s) | "
                     "optuna+loop (s) | eadd62d / fused | optuna+loop / fused | unfused <= 1.3 x train + 3 s |",
                     "|---|---|---|---|---|---|---|---|---|"]
            for key in args.rows.split(",") if "sweeps" in args.sections else []:
                name, model, spec = ROWS[key]
                fused, _ = sweep(ROOT, model, tmp / f"{key}-fused")
                unfused, train = sweep(ROOT, model, tmp / f"{key}-unfused", "hydra.sweeper.fuse=false")
                previous, _ = sweep(old, model, tmp / f"{key}-old")
                loop = optuna_loop_command(key)
                over_old, over_loop = TARGETS[key]
                mark = lambda ratio, target: f"{ratio:.2f}" + ("" if target is None else (" ✓" if ratio >= target else " ✗"))  # noqa: E731
                lines.append(f"| {name} | {fused:.1f} | {unfused:.1f} | {train:.1f} | {previous:.1f} | {loop:.1f} | "
                             f"{mark(previous / fused, over_old)} | {mark(loop / fused, over_loop)} | "
                             f"{'✓' if unfused <= 1.3 * train + 3 else '✗'} |")
                print(lines[-1], flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True)
    if "concurrency" in args.sections:
        lines += ["", *concurrency()]
    if "end_to_end" in args.sections:
        lines += ["", *end_to_end()]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
