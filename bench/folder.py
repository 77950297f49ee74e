"""A folder of images, end to end: logitlab's whole command (`data=folder`, cold cache and warm) against the
way most PyTorch code reads a folder, `torchvision.datasets.ImageFolder` + `DataLoader(num_workers=2)`,
training the same MLP for the same epochs on the same images.

    python bench/folder.py [--images 20000] [--epochs 10] [--reps 3] [--out bench/folder.md]

The folder: scikit-learn's 8x8 digits (the file it ships), each drawn at 28x28 with a random shift and pixel
noise until there are --images PNGs, written once as DIR/{train,val,test}/<class>/<n>.png (70/10/20) under
$LOGITLAB_DATA/bench-folder (reused by later runs). Identical work for both: the train folder's images
in shuffled batches of 128, an MLP 784-256-10 (logitlab.models.MLP, seeded), Adam at lr 1e-3, one pass over
the val folder per epoch; both read the PNGs themselves (nothing decoded ahead of the timing), 1 torch
thread in the training process. What differs is how: logitlab decodes every image once with torchvision.io
(in parallel), caches the uint8 tensors under data.root and trains from memory; ImageFolder decodes each
image with PIL in its worker processes every epoch.

Each figure is the whole command's wall time, from launch to exit, median over --reps, the contenders
alternating. logitlab cold: a fresh data.root, so the decode and the cache write are in it; warm: the same
data.root again. The logitlab command runs at its defaults (TensorBoard, checkpoints; figures are drawn by a
background process after it exits, so they are not in its time).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZE = 28
SPLITS = {"train": 0.7, "val": 0.1, "test": 0.2}
CLASS_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]

_IMAGEFOLDER = """
import sys, time, torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms
from logitlab.models import MLP

root, epochs, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(1)
torch.manual_seed(0)
to_input = transforms.Compose([transforms.Grayscale(), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
train = DataLoader(datasets.ImageFolder(f"{root}/train", to_input), batch_size=batch, shuffle=True, num_workers=2,
                   persistent_workers=True)
val = DataLoader(datasets.ImageFolder(f"{root}/val", to_input), batch_size=1024, num_workers=2, persistent_workers=True)
model = MLP(input_shape=(1, 28, 28), num_classes=10, hidden=[256])
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loss_fn = nn.CrossEntropyLoss()
for epoch in range(epochs):
    model.train()
    for x, y in train:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in val)
    print(f"epoch {epoch + 1} val/acc {correct / len(val.dataset):.4f}", file=sys.stderr)
"""


def make_folder(root: Path, n_images: int) -> Path:
    """DIR/{train,val,test}/<class>/<n>.png, written once (a finished folder holds a DONE file)."""
    folder = root / f"digits28-{n_images}"
    if (folder / "DONE").exists():
        return folder
    import torch
    from torchvision.io import write_png
    from torchvision.transforms.v2.functional import resize

    sklearn_dir = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
    raw = np.loadtxt(sklearn_dir / "datasets" / "data" / "digits.csv.gz", delimiter=",", dtype=np.float32)
    digits = torch.from_numpy(raw[:, :-1].reshape(-1, 1, 8, 8) * (255 / 16))
    labels = raw[:, -1].astype(int)
    big = resize(digits, [20, 20], antialias=True)  # drawn at 20x20, placed in 28x28 with a shift
    rng = np.random.default_rng(0)
    shutil.rmtree(folder, ignore_errors=True)
    for n in range(n_images):
        i = n % len(digits)
        canvas = torch.zeros(1, SIZE, SIZE)
        dy, dx = rng.integers(0, SIZE - 20 + 1, size=2)
        canvas[:, dy:dy + 20, dx:dx + 20] = big[i]
        canvas += torch.from_numpy(rng.normal(0, 12, size=(1, SIZE, SIZE)).astype(np.float32))
        u = rng.random()
        split = "train" if u < SPLITS["train"] else "val" if u < SPLITS["train"] + SPLITS["val"] else "test"
        out = folder / split / CLASS_NAMES[labels[i]]
        out.mkdir(parents=True, exist_ok=True)
        write_png(canvas.clamp(0, 255).round().to(torch.uint8), str(out / f"{n}.png"))
    (folder / "DONE").write_text("")
    return folder


def timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"bench/folder.py: {' '.join(argv[:4])} ... failed:\n{done.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "folder.md"), help="the report ('' for none)")
    args = parser.parse_args()

    data_home = Path(os.environ.get("LOGITLAB_DATA") or Path.home() / ".cache" / "logitlab")
    started = time.perf_counter()
    folder = make_folder(data_home / "bench-folder", args.images)
    print(f"folder: {folder} ({args.images} PNGs, made or found in {time.perf_counter() - started:.0f} s)")
    work = Path(tempfile.mkdtemp(prefix="logitlab-bench-folder-"))
    logitlab = [sys.executable, "-m", "logitlab.train", "data=folder", f"data.path={folder}", "model=mlp",
                "model.hidden=[256]", f"trainer.epochs={args.epochs}", f"trainer.batch_size={args.batch}",
                "trainer.threads=1", "optim.lr=1e-3"]
    baseline = [sys.executable, "-c", _IMAGEFOLDER, str(folder), str(args.epochs), str(args.batch)]
    times: dict[str, list[float]] = {"logitlab, cold cache": [], "logitlab, warm cache": [],
                                     "ImageFolder + DataLoader(num_workers=2)": []}
    load = [os.getloadavg()[0]]
    for rep in range(args.reps):
        cache = work / f"cache{rep}"
        times["logitlab, cold cache"].append(timed([*logitlab, f"data.root={cache}",
                                                    f"hydra.run.dir={work / f'cold{rep}'}"], work))
        times["logitlab, warm cache"].append(timed([*logitlab, f"data.root={cache}",
                                                    f"hydra.run.dir={work / f'warm{rep}'}"], work))
        times["ImageFolder + DataLoader(num_workers=2)"].append(timed(baseline, work))
        shutil.rmtree(cache, ignore_errors=True)
    load.append(os.getloadavg()[0])
    shutil.rmtree(work, ignore_errors=True)

    base = statistics.median(times["ImageFolder + DataLoader(num_workers=2)"])
    lines = [
        "# A folder of PNGs, end to end: logitlab's command against ImageFolder + DataLoader",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; load average "
        f"{load[0]:.1f} at the start, {load[1]:.1f} at the end. Command: `python bench/folder.py --images "
        f"{args.images} --epochs {args.epochs} --reps {args.reps}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        "",
        f"{args.images} PNGs of 28x28 (train / val / test folders), MLP 784-256-10, Adam 1e-3, batch {args.batch}, "
        f"{args.epochs} epochs with a val pass each; whole command, launch to exit; median of {args.reps}.",
        "",
        "| contender | seconds | ImageFolder / this (speed-up) |",
        "|---|---|---|",
        *(f"| {name} | {statistics.median(t):.1f} | {base / statistics.median(t):.2f} |" for name, t in times.items()),
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
