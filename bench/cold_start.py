"""Cold start: seconds from launching a fresh Python to the end of its first optimizer step.

`python -m logitlab.train trainer.epochs=1` is set against `python -c "import torch"` (the floor every torch
program pays; the issue's target is that floor + 1.0 s) and against a hand-written loop script. Each
command runs in a wrapper that writes `time.time()` to a file when the mark is reached (after the first
optimizer step, or after `import torch` for the floor); the wrapper imports torch first to register that
hook, which every one of these programs imports anyway. Commands alternate; one untimed round first warms
the file cache and the bytecode caches.
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
def mark(*args):
    if not os.path.exists(os.environ["MARK_FILE"]):
        open(os.environ["MARK_FILE"], "w").write(repr(time.time()))
import torch
if sys.argv[1] == "import torch":
    mark()
    sys.exit()
from torch.optim.optimizer import register_optimizer_step_post_hook
register_optimizer_step_post_hook(mark)
if sys.argv[1] == "loop":
    from torch import nn
    x, y = torch.randn(1258, 1, 8, 8), torch.randint(0, 10, (1258,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss = nn.functional.cross_entropy(model(x[:64]), y[:64])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
else:
    sys.argv = ["logitlab.train", *sys.argv[2:]]
    runpy.run_module("logitlab.train", run_name="__main__", alter_sys=True)
"""

COMMANDS = {  # label: wrapper arguments
    '`python -c "import torch"` (the floor)': ["import torch"],
    "hand-written loop script: import torch, a linear model, Adam, one step": ["loop"],
    "`python -m logitlab.train trainer.epochs=1` (default: digits, linear)": ["logitlab", "trainer.epochs=1"],
    "`python -m logitlab.train trainer.epochs=1 data=mnist1d`": ["logitlab", "trainer.epochs=1", "data=mnist1d"],
}


def _once(args: list[str], scratch: Path) -> float:
    scratch.mkdir(parents=True, exist_ok=True)
    mark = scratch / "mark"
    mark.unlink(missing_ok=True)
    extra = [f"hydra.run.dir={tempfile.mkdtemp(dir=scratch)}"] if args[0] == "logitlab" else []  # a new run
    env = dict(os.environ, MARK_FILE=str(mark))
    started = time.time()
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *args, *extra], env=env, capture_output=True, text=True)
    if done.returncode != 0 or not mark.exists():
        raise RuntimeError(f"{args} failed: {done.stderr[-2000:]}")
    return float(mark.read_text()) - started


def measure(reps: int, log) -> dict[str, list[float]]:
    """{label: [seconds to the mark, one per repetition]}"""
    seconds = {label: [] for label in COMMANDS}
    with tempfile.TemporaryDirectory() as scratch:
        for rep in range(reps + 1):
            for label, args in COMMANDS.items():
                t = _once(args, Path(scratch) / str(rep))
                if rep:  # round 0 warms the caches
                    seconds[label].append(t)
            log(f"cold start {rep}/{reps}" + (" (warm-up)" if not rep else ""))
    return seconds


def report(seconds: dict[str, list[float]]) -> list[str]:
    floor_label, loop_label, default_label = list(COMMANDS)[:3]
    med = {label: statistics.median(v) for label, v in seconds.items()}
    over = med[default_label] - med[floor_label]
    lines = [
        "## Cold start: launch to the end of the first optimizer step",
        "",
        f"Median of {len(seconds[floor_label])} launches each, alternating; the machine as above.",
        "",
        "| command | seconds | over `import torch` |",
        "|---|---|---|",
    ]
    for label, t in med.items():
        lines.append(f"| {label} | {t:.2f} | {'' if label == floor_label else f'{t - med[floor_label]:+.2f}'} |")
    lines += ["", f"Target: logitlab's default command within `import torch` + {LIMIT:.1f} s: "
                  f"{over:+.2f} s {'✓' if over <= LIMIT else '✗'}."]
    return lines
