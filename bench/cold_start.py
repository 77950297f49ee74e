"""Cold start: seconds from launching a fresh Python to the end of its first optimizer step.

`python -m logitlab.train trainer.epochs=1` is set against `python -c "import torch"` (the floor every torch
program pays; the issue's target is that floor + 1.0 s) and against a hand-written loop script. Each
command runs in a wrapper that writes `time.time()` to a file when the mark is reached: after `import torch`
for the floor; for the others, at the first forward pass of any module that finds one of the weights it
saw earlier changed, that is the second training step's forward, right after the first step ended.

The mark watches the weights, not the optimizer, so it holds however the step is taken: the trainer steps
torch's Adam without the wrapper that runs step hooks (trainer._stepper), and its fused kernel does not even
bump the parameters' version counters; a stacked sweep steps a copy. What lies between the end of the first
step and the mark is the next batch's index_select, microseconds. The watch is a global forward pre-hook
that compares each module's parameters with a copy taken at their first forward; it removes itself at the
mark, so the run goes on at full speed. Commands alternate; one untimed round first warms the file cache
and the bytecode caches.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT = 1.0  # seconds over `import torch` allowed to reach the first step

_WRAPPER = """
import os, runpy, sys, time
import torch

def mark():
    with open(os.environ["MARK_FILE"], "w") as f:
        f.write(repr(time.time()))

if sys.argv[1] == "import torch":
    mark()
    sys.exit()

first_seen = {}  # id(parameter): (parameter, its values when a forward pass first used it)

def watch(module, args):
    with torch.no_grad():
        for p in module.parameters():
            if id(p) not in first_seen:
                first_seen[id(p)] = (p, p.detach().clone())
            elif not torch.equal(p, first_seen[id(p)][1]):
                mark()
                handle.remove()
                first_seen.clear()
                return

handle = torch.nn.modules.module.register_module_forward_pre_hook(watch)
if sys.argv[1] == "loop":
    from torch import nn
    x, y = torch.randn(1258, 1, 8, 8), torch.randint(0, 10, (1258,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in (0, 64):  # the mark is in the second step's forward
        loss = nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
else:
    sys.argv = ["logitlab.train", *sys.argv[2:]]
    runpy.run_module("logitlab.train", run_name="__main__", alter_sys=True)
"""

COMMANDS = {  # label: wrapper arguments
    '`python -c "import torch"` (the floor)': ["import torch"],
    "hand-written loop script: import torch, a linear model, Adam, its first step": ["loop"],
    "`python -m logitlab.train trainer.epochs=1` (default: digits, linear)": ["logitlab", "trainer.epochs=1"],
    "`python -m logitlab.train trainer.epochs=1 data=mnist1d`": ["logitlab", "trainer.epochs=1", "data=mnist1d"],
}
QUICK = list(COMMANDS)[:3]  # --quick: one launch each, without the mnist1d row (the same path on other data)


def _once(args: list[str], scratch: Path) -> float:
    scratch.mkdir(parents=True, exist_ok=True)
    mark = scratch / "mark"
    mark.unlink(missing_ok=True)
    run_dir = Path(tempfile.mkdtemp(dir=scratch))  # a new run each time
    extra = [f"hydra.run.dir={run_dir}"] if args[0] == "logitlab" else []
    env = dict(os.environ, MARK_FILE=str(mark))
    started = time.time()
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *args, *extra], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"cold start: {args} exited with status {done.returncode}:\n{done.stderr[-2000:]}")
    wait_for_figures(run_dir)
    if not mark.exists():
        raise RuntimeError(f"cold start: {args} finished without the mark: no forward pass saw a weight "
                           f"change (did it train?):\n{done.stderr[-2000:]}")
    return float(mark.read_text()) - started


def wait_for_figures(run_dir: Path, timeout: float = 120) -> None:
    """A single run draws its figures in a child that outlives it (2-3 s of matplotlib, after the mark):
    wait for it, or it would run alongside the next launch and slow that one down."""
    deadline = time.monotonic() + timeout
    while (run_dir / "figures.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def measure(reps: int, log, labels: list[str] | None = None, warm_up: bool = True) -> dict[str, list[float]]:
    """{label: [seconds to the mark, one per repetition]} for `labels` (default: every command); round 0,
    untimed, warms the caches unless `warm_up` is False."""
    labels = labels or list(COMMANDS)
    seconds = {label: [] for label in labels}
    with tempfile.TemporaryDirectory() as scratch:
        for rep in range(0 if warm_up else 1, reps + 1):
            for label in labels:
                t = _once(COMMANDS[label], Path(scratch) / str(rep))
                if rep:
                    seconds[label].append(t)
            log(f"cold start {rep}/{reps}" + (" (warm-up)" if not rep else ""))
    return seconds


def report(seconds: dict[str, list[float]]) -> list[str]:
    floor_label, _, default_label = list(COMMANDS)[:3]
    med = {label: statistics.median(v) for label, v in seconds.items()}
    over = med[default_label] - med[floor_label]
    lines = [
        "## Cold start: launch to the end of the first optimizer step",
        "",
        f"Median of {len(seconds[floor_label])} launches each, alternating; the machine as above. The mark: the "
        "first forward pass that finds a weight changed (the second step's), so it holds however the trainer "
        "steps.",
        "",
        "| command | seconds | over `import torch` |",
        "|---|---|---|",
    ]
    for label, t in med.items():
        lines.append(f"| {label} | {t:.2f} | {'' if label == floor_label else f'{t - med[floor_label]:+.2f}'} |")
    lines += ["", f"Target: logitlab's default command within `import torch` + {LIMIT:.1f} s: "
                  f"{over:+.2f} s {'✓' if over <= LIMIT else '✗'}."]
    return lines
