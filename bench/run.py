"""`make bench`: logitlab's trainer against a hand-written loop, Lightning and Keras, on identical work.

Every repetition runs every row and, within a row, every contender once, in an order rotated per
repetition (so none always runs first or right after another). A contender's figure for one run is its
steady-state epoch time: (end of epoch E-1 - end of epoch 1) / (E - 2). The first epoch (imports, allocator,
lazy init) and the last (whatever a framework does once at the end, such as logitlab's final checkpoint) are
left out, as are setup and teardown; per-epoch costs that recur every few epochs stay in. Reported: the median over repetitions, and ratios as the median
of the per-repetition ratios (two contenders of one repetition ran seconds apart, under the same load).
Writes bench/results.md (or --out) and prints it.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import io
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import cold_start  # noqa: E402
import contenders  # noqa: E402

from logitlab.data import load_digits, load_mnist1d  # noqa: E402
from logitlab.models import CNN, MLP, SoftmaxRegression  # noqa: E402

# (row, dataset, model, batch size, epochs); the MLP rows are the issue's own examples. Epochs are chosen so
# that the timed epochs of the hand-written loop take about 0.5 s here: long enough for periodic costs (a
# checkpoint written every few epochs of a tiny model) to land inside the timing, short enough for Lightning.
ROWS = [
    ("MNIST-1D linear", "mnist1d", lambda shape: SoftmaxRegression(shape, 10), 128, 40),
    ("MNIST-1D MLP 40-32-10", "mnist1d", lambda shape: MLP(shape, 10, hidden=[32]), 128, 40),
    ("MNIST-1D MLP 40-100-10", "mnist1d", lambda shape: MLP(shape, 10, hidden=[100]), 32, 10),
    ("MNIST-1D CNN 16-32", "mnist1d", lambda shape: CNN(shape, 10, channels=[16, 32]), 128, 7),
    ("digits CNN 16-32", "digits", lambda shape: CNN(shape, 10, channels=[16, 32]), 64, 12),
]
# the rows where the issue asks for >= 4x over Lightning and >= 1.5x over Keras
HEADLINE_ROWS = {"MNIST-1D MLP 40-32-10", "MNIST-1D MLP 40-100-10", "MNIST-1D CNN 16-32"}
TARGETS = dict(loop=1.05, lightning=4.0, keras=1.5)
# --quick: one tiny row, once, to see in seconds that every contender still runs (tests/test_bench.py)
QUICK_ROW = ("digits linear (--quick)", "digits", lambda shape: SoftmaxRegression(shape, 10), 64, 3)
PEERS = {"Lightning": "lightning", "Lightning (lean)": "lightning", "Keras": "keras"}  # the `bench` extra


def _missing_peers(names: list[str]) -> str | None:
    """One line for the contenders whose package is not installed, or None."""
    import importlib.util

    missing = {name: PEERS[name] for name in names if name in PEERS and importlib.util.find_spec(PEERS[name]) is None}
    if not missing:
        return None
    kept = ",".join(n for n in names if n not in missing)
    return (f"error: {', '.join(missing)} need(s) {' and '.join(sorted(set(missing.values())))}, not installed: "
            f"pip install -e '.[bench]' (make bench does), or leave them out: --contenders '{kept}'")


class _Terminal(io.TextIOBase):
    """Stands in for stdout and stderr while a contender trains. It says it is a terminal, so every progress
    bar draws as it would for a user, and drops the text: we time the frameworks, not a terminal emulator."""

    encoding = "utf-8"

    def isatty(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        return len(text)


@contextlib.contextmanager
def _as_on_a_terminal():
    with contextlib.redirect_stdout(_Terminal()), contextlib.redirect_stderr(_Terminal()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice (num_workers, ...) on every fit
        yield


def _check_keras_copy(model, data) -> None:
    x = data.val[0][:64]
    keras_logits = torch.as_tensor(contenders.to_keras(model, tuple(data.input_shape)).predict(
        contenders._channels_last(x), verbose=0))
    with torch.no_grad():
        assert (keras_logits - model(x)).abs().max() < 1e-4, "the Keras copy computes something else"


def _as_float(data):
    """The splits as normalised float32 tensors, as a hand-written loop (and Lightning, Keras) would hold them;
    logitlab takes its own SplitData, whose 8-bit images rest as uint8 and are normalised per batch."""
    as_inputs = lambda xy: (data.inputs(xy[0]), xy[1])  # noqa: E731
    return dataclasses.replace(data, train=as_inputs(data.train), val=as_inputs(data.val), test=as_inputs(data.test))


def measure(rows, names, reps: int, device: str, log) -> dict:
    """{row: {contender: [seconds per epoch, one per repetition]}}"""
    loaders = {"mnist1d": lambda: load_mnist1d(os.environ.get("LOGITLAB_DATA", "~/.cache/logitlab")),
               "digits": load_digits}  # the cache the configs use (data.root)
    datasets = {name: loaders[name]() for name in {row[1] for row in rows}}
    as_float = {name: _as_float(data) for name, data in datasets.items()}
    times = {row[0]: {name: [] for name in names} for row in rows}
    writes = {row[0]: [] for row in rows}  # checkpoint files logitlab wrote per run
    initial = {}
    for label, dataset, build, *_ in rows:
        torch.manual_seed(0)  # one set of initial weights per row, copied into every contender
        initial[label] = build(datasets[dataset].input_shape)
        if "Keras" in names:
            _check_keras_copy(initial[label], as_float[dataset])
    for rep in range(reps):
        started = time.perf_counter()
        for label, dataset, _, batch_size, epochs in rows:
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                data = datasets[dataset] if name == "logitlab" else as_float[dataset]
                with _as_on_a_terminal():
                    ends, steps = contenders.CONTENDERS[name](copy.deepcopy(initial[label]), data, batch_size,
                                                              epochs, device)
                expected = epochs * -(-len(data.train[0]) // batch_size)
                assert len(ends) == epochs and steps == expected, (label, name, len(ends), steps, expected)
                times[label][name].append((ends[-2] - ends[0]) / (epochs - 2))
                if name == "logitlab":
                    writes[label].append(contenders.logitlab.writes)
        log(f"repetition {rep + 1}/{reps}: {time.perf_counter() - started:.0f} s, "
            f"load average {os.getloadavg()[0]:.1f}")
    return times, writes


def _ratio(times: dict, num: str, den: str) -> list[float]:
    return [a / b for a, b in zip(times[num], times[den])]


def _quartiles(values: list[float]) -> str:
    if len(values) < 4:
        return f"{statistics.median(values):.2f}"
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return f"{q2:.2f} [{q1:.2f}, {q3:.2f}]"


def _mark(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def table(rows, names, times, writes) -> list[str]:
    lines = ["| row | batch | epochs | " + " | ".join(f"{n} (ms)" for n in names)
             + " | logitlab / loop | Lightning / logitlab | Keras / logitlab | logitlab checkpoint files |",
             "|---" * (len(names) + 7) + "|"]
    for label, _, _, batch_size, epochs in rows:
        t = times[label]
        cells = [f"{1e3 * statistics.median(t[n]):.1f}" for n in names]
        ratios = []
        for num, den, target, low_is_good in (("logitlab", "loop", TARGETS["loop"], True),
                                              ("Lightning", "logitlab", TARGETS["lightning"], False),
                                              ("Keras", "logitlab", TARGETS["keras"], False)):
            if num not in t or den not in t:
                ratios.append("")
                continue
            r = _ratio(t, num, den)
            checked = low_is_good or label in HEADLINE_ROWS
            ok = (statistics.median(r) <= target if low_is_good else statistics.median(r) >= target) \
                if checked else None
            ratios.append(_quartiles(r) + _mark(ok))
        files = f"{statistics.median(writes[label]):.0f}" if writes[label] else ""
        lines.append(f"| {label} | {batch_size} | {epochs} | " + " | ".join(cells + ratios + [files]) + " |")
    return lines


def _ceilings(rows, times) -> list[str]:
    """Lightning / loop: the most any trainer that is no faster than the loop could show against Lightning."""
    pairs = [(label, statistics.median(_ratio(times[label], "Lightning", "loop")))
             for label, *_ in rows if {"Lightning", "loop"} <= times[label].keys()]
    if not pairs:
        return []
    return ["Lightning / loop, the ceiling for any trainer as fast as the loop: "
            + ", ".join(f"{label} {r:.2f}" for label, r in pairs) + ".", ""]


def _version(package: str) -> str:
    try:
        return version(package)
    except Exception:  # a contender left out of this run need not be installed
        return "(not installed)"


def machine(device: str) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    gpu = f"{torch.cuda.get_device_name(device)}; " if device.startswith("cuda") else ""
    versions = ", ".join(f"{p} {_version(p)}" for p in ("torch", "lightning", "keras"))
    return (f"{gpu}{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, {versions}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions (medians are over these)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs per run (at least 3) for every row "
                                                              "(default: per row)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, the same for all")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU path (data on the GPU)")
    parser.add_argument("--rows", default="", help="only rows whose name contains this")
    parser.add_argument("--contenders", default=",".join(contenders.CONTENDERS),
                        help="comma-separated, from: " + ", ".join(contenders.CONTENDERS))
    parser.add_argument("--cold-start-reps", type=int, default=5, help="0 skips the cold-start measurement")
    parser.add_argument("--quick", action="store_true",
                        help="see that everything runs, in seconds: one tiny row (softmax regression on digits, "
                             "3 epochs) once instead of --rows, each cold-start command once without warm-up "
                             "(and not the mnist1d one); prints, writes no file unless --out is given")
    parser.add_argument("--out", default=None, help="the report (default: bench/results.md, none with --quick)")
    args = parser.parse_args()
    if args.quick:
        args.reps = 1
    elif args.out is None:
        args.out = str(Path(__file__).parent / "results.md")
    if 0 < args.epochs < 3:
        parser.error(f"--epochs {args.epochs}: at least 3 (the first and the last are not timed)")

    logging.getLogger("lightning").setLevel(logging.ERROR)  # "GPU available: False ..." on every fit
    torch.set_num_threads(args.threads)
    names = [n for n in contenders.CONTENDERS if n in args.contenders.split(",")]
    rows = [(*r[:4], args.epochs or r[4]) for r in ([QUICK_ROW] if args.quick else ROWS) if args.rows in r[0]]
    if not names or not rows:
        parser.error(f"no {'contenders' if not names else 'rows'} selected by --contenders "
                     f"{args.contenders!r} --rows {args.rows!r}")
    missing = _missing_peers(names)
    if missing:
        raise SystemExit(missing)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    started, load_before = time.perf_counter(), os.getloadavg()
    times, writes = measure(rows, names, args.reps, args.device, log)
    if args.quick:
        cold = cold_start.measure(1, log, cold_start.QUICK, warm_up=False) if args.cold_start_reps else None
    else:
        cold = cold_start.measure(args.cold_start_reps, log) if args.cold_start_reps else None
    minutes = (time.perf_counter() - started) / 60

    out = [
        f"# logitlab vs a hand-written loop, Lightning and Keras: steady-state time per epoch, {args.device}",
        "",
        f"Machine: {machine(args.device)}. {args.threads} torch thread(s) for every contender "
        f"(`torch.set_num_threads`); the machine was shared: load average {load_before[0]:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end.",
        f"Command: `{' '.join(['python bench/run.py', *sys.argv[1:]])}` ({minutes:.1f} min, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC).",
        "",
        f"Each cell: median over {args.reps} repetitions of (end of epoch E-1 - end of epoch 1) / (E - 2), "
        f"in ms: the first epoch (warm-up) and the last (wrap-up) are left out. Ratios: median [quartiles] of the per-repetition ratios. Targets: logitlab / loop "
        f"<= {TARGETS['loop']} on every row; Lightning / logitlab >= {TARGETS['lightning']} and Keras / logitlab "
        f">= {TARGETS['keras']} on the MNIST-1D MLP and CNN rows (✓ met, ✗ missed).",
        "",
        *table(rows, names, times, writes),
        "",
        *_ceilings(rows, times),
        "Identical work per epoch for every contender: one shuffled pass over the 3600 (MNIST-1D) or 1258 "
        "(digits) training examples, last partial batch included (the step count is asserted), then one "
        "forward pass over val in one batch; the same initial weights (one torch model per row, deep-copied; "
        "copied into the Keras model and checked to give the same logits); Adam, lr 1e-3.",
        "",
        "- **logitlab**: `Trainer(epochs, batch_size, device).fit(..., board=RunBoard(run_dir))` at its defaults: TensorBoard scalars "
        "every epoch; checkpoints (torch.save + fsync + rename, on a background thread) after every epoch that "
        "ends 100 times the last write's CPU time after it, so every few epochs on the rows with the shortest "
        "epochs (last column: files written per run, last.pt and best.pt, initial and final ones included); "
        "progress bar drawing "
        "(stdout and stderr stand in for a terminal); train loss and accuracy kept per step; fused Adam, "
        "which it picks for a `torch.optim.Adam` config.",
        "- **loop**: a minimal hand-written loop (`randperm`, `x[idx]`, forward, `cross_entropy`, "
        "`zero_grad(set_to_none=True)`, backward, step; val loss and accuracy read once per epoch); "
        "no logging, no checkpoints. Same fused Adam as logitlab picks; **loop (default Adam)** is the same "
        "loop with `torch.optim.Adam(params, lr)` as usually written.",
        "- **Lightning**: `Trainer(max_epochs, accelerator='cpu', devices=1)` at its defaults (progress bar, "
        "TensorBoard logger, checkpoint every epoch, model summary, 2 sanity val steps), fed as Lightning is "
        "used: `DataLoader(TensorDataset(x, y), batch_size, shuffle=True)`; the module logs train/val loss "
        "and accuracy per epoch; the same fused Adam. **Lightning (lean)**: progress bar, logger, "
        "checkpointing, summary and sanity check off.",
        "- **Keras**: Keras 3 on the torch backend, `model.fit(x, y, batch_size, epochs, shuffle=True, "
        "validation_data=...)` at its defaults (progress bar; no checkpoint or TensorBoard callbacks), "
        "channels-last inputs, loss and accuracy metrics, Keras' Adam (epsilon 1e-8 as torch's).",
    ]
    if cold:
        out += ["", *cold_start.report(cold)]
    text = "\n".join(out) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
