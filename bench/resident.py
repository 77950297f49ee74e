"""Where the inputs rest, measured: resident against streamed (data.max_resident_gb=0), epoch time; and
uint8 against float32, peak memory of the whole command.

    python bench/resident.py [--images 20000] [--epochs 5] [--reps 3] [--out bench/resident.md] [--quick]

Resident against streamed: the PNG folder of bench/folder.py (28x28 digits; made once, reused), an MLP
784-256-10 and a CNN, batch 128, 1 torch thread, a warm cache. Resident reads the memory-mapped cache into
memory and slices batches there; streamed gathers each batch from the map in a background thread while the
step before it runs. The figure is the median epoch time over the epochs after the first (history.csv), and
the streamed / resident ratio; the two runs' histories must agree number for number (the script checks).

uint8 against float32: the folder's train images repeated to MNIST's 60,000 (--memory-examples), as an .npz
of arrays (data=arrays), once as uint8 (N, 1, 28, 28)
pixels, which rest as they are and are normalised per batch, and once as float32, which rest normalised as
float32 (as every image did before uint8). Peak resident memory (ru_maxrss) of the whole command, one
epoch of the MLP, and the inputs' own bytes as the run's log line says them. Identical work otherwise.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from folder import make_folder  # noqa: E402 (bench/ is not a package)

MODELS = {"mlp": ["model=mlp", "model.hidden=[256]"], "cnn": ["model=cnn"]}


def run(argv: list[str], cwd: Path) -> tuple[str, float]:
    """(stderr, peak resident MB) of one command, its own peak (wait4), not its siblings'."""
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench/resident.py: {' '.join(argv[3:8])} ... failed:\n{err[-3000:]}")
    return err, usage.ru_maxrss / 1024  # kB on Linux


def epoch_seconds(run_dir: Path) -> tuple[float, list[dict]]:
    """The median epoch time after the first (which warms caches and allocators), and the history without
    its times."""
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    seconds = [float(r["seconds"]) for r in rows[1:] or rows]
    return statistics.median(seconds), [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def resident_vs_streamed(folder: Path, work: Path, epochs: int, reps: int) -> list[str]:
    lines = ["| model | resident s/epoch | streamed s/epoch | streamed / resident |", "|---|---|---|---|"]
    common = [sys.executable, "-m", "logitlab.train", "data=folder", f"data.path={folder}",
              f"data.root={work / 'cache'}", f"trainer.epochs={epochs}", "trainer.batch_size=128",
              "trainer.threads=1", "trainer.figures=false", "trainer.progress=false"]
    run([*common, "trainer.epochs=1", f"hydra.run.dir={work / 'warmup'}"], work)  # decode and cache once
    for name, model in MODELS.items():
        times: dict[str, list[float]] = {"resident": [], "streamed": []}
        for rep in range(reps):
            histories = {}
            for mode, extra in (("resident", []), ("streamed", ["data.max_resident_gb=0"])):
                run_dir = work / f"{name}-{mode}-{rep}"
                err, _ = run([*common, *model, *extra, f"hydra.run.dir={run_dir}"], work)
                assert ("streamed to" in err) == (mode == "streamed"), err[-2000:]
                seconds, histories[mode] = epoch_seconds(run_dir)
                times[mode].append(seconds)
            if histories["resident"] != histories["streamed"]:
                sys.exit(f"bench/resident.py: {name}: the streamed run's history differs from the resident one's")
        r, s = statistics.median(times["resident"]), statistics.median(times["streamed"])
        lines.append(f"| {name} | {r:.3f} | {s:.3f} | {s / r:.2f} |")
    return lines


def uint8_vs_float32(folder: Path, work: Path, examples: int, reps: int) -> list[str]:
    """The folder's train images, repeated to `examples` (MNIST's 60,000 by default), as arrays twice: uint8
    pixels and the same as float32."""
    import torch

    sys.path.insert(0, str(HERE.parent / "src"))
    from logitlab.data.image_cache import decode_files

    files = sorted((folder / "train").rglob("*.png"))
    classes = sorted({f.parent.name for f in files})
    x = torch.stack(decode_files(files, 1, None)).numpy()
    y = np.array([classes.index(f.parent.name) for f in files])
    x, y = np.resize(x, (examples, *x.shape[1:])), np.resize(y, examples)  # repeated, in order
    lines = ["| inputs rest as | inputs (log line) | peak RSS of the command (MB) |", "|---|---|---|"]
    for dtype in ("uint8", "float32"):
        path = work / f"digits28-{dtype}.npz"
        np.savez(path, x=x.astype(dtype), y=y)
        peaks, said = [], ""
        for rep in range(reps):
            err, peak = run([sys.executable, "-m", "logitlab.train", "data=arrays", f"data.path={path}",
                             *MODELS["mlp"], "trainer.epochs=1", "trainer.threads=1", "trainer.figures=false",
                             "trainer.progress=false", f"hydra.run.dir={work / f'{dtype}-{rep}'}"], work)
            peaks.append(peak)
            said = re.search(r"inputs ([\d.]+ [kMG]?B)", err).group(1)
        lines.append(f"| {dtype} | {said} | {statistics.median(peaks):.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--memory-examples", type=int, default=60000, help="images in the peak-memory runs")
    parser.add_argument("--out", default=str(HERE / "resident.md"), help="the report ('' for none)")
    parser.add_argument("--quick", action="store_true", help="one tiny row of each: the plumbing, not figures")
    args = parser.parse_args()
    if args.quick:
        args.images, args.epochs, args.reps, args.out, args.memory_examples = 300, 2, 1, "", 300
    data_home = Path(os.environ.get("LOGITLAB_DATA") or Path.home() / ".cache" / "logitlab")
    folder = make_folder(data_home / "bench-folder", args.images)
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="logitlab-bench-resident-") as tmp:
        work = Path(tmp)
        streamed = resident_vs_streamed(folder, work, args.epochs, args.reps)
        memory = uint8_vs_float32(folder, work, args.memory_examples, args.reps)
    load.append(os.getloadavg()[0])
    report = "\n".join([
        "# Where the inputs rest: resident against streamed, uint8 against float32",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU; load average "
        f"{load[0]:.1f} at the start, {load[1]:.1f} at the end. Command: `python bench/resident.py --images "
        f"{args.images} --epochs {args.epochs} --reps {args.reps}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        f"## Epoch time, resident and streamed ({args.images} PNGs of 28x28, batch 128, 1 thread; median epoch "
        f"after the first, median of {args.reps} runs; the two histories agree number for number)",
        "",
        *streamed,
        "",
        f"## Peak memory, uint8 and float32 ({args.memory_examples} images of 28x28 as data=arrays, the folder's "
        f"train images repeated; MLP, 1 epoch; median of {args.reps})",
        "",
        *memory,
    ]) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
