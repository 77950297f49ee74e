"""What a training run says on the console and in train.log: what is about to train (`run_summary`, as
Keras' model.summary() and Lightning's start-of-fit lines say it), one line per epoch (`epoch_line`), and
tqdm's progress bar on a terminal (`progress_bar`). The solo loop and the fused one print the same."""
from __future__ import annotations

import sys

import torch
from torch import nn

from logitlab.data.splits import SplitData


def epoch_line(epoch: int, epochs: int, m: dict) -> str:
    return (f"epoch {epoch}/{epochs}  train/loss {m['train/loss']:.4f}  train/acc {m['train/acc']:.4f}  "
            f"val/loss {m['val/loss']:.4f}  val/acc {m['val/acc']:.4f}  lr {m['lr']:.3g}  {m['seconds']:.2f}s")


def run_summary(model: nn.Module, data: SplitData, device: torch.device, steps: int, batch_size: int,
                processes: int = 1) -> str:
    """What is about to train, as Keras' model.summary() and Lightning's start-of-fit lines say it."""
    leaves = [(name, m) for name, m in model.named_modules() if name and not list(m.children())]
    rows = [f"  {name:<20} {type(m).__name__:<18} {sum(p.numel() for p in m.parameters(recurse=False)):>9,}"
            for name, m in leaves[:40]] + ([f"  ... and {len(leaves) - 40} more layers"] if len(leaves) > 40 else [])
    loose = sum(p.numel() for p in model.parameters(recurse=False))  # e.g. a class token, position embeddings
    rows += [f"  {'(own)':<20} {'Parameter':<18} {loose:>9,}"] if loose else []
    total = sum(p.numel() for p in model.parameters())
    return "\n".join([
        f"{type(model).__name__}: {total:,} parameters", *rows,
        f"device {device}, {torch.get_num_threads()} torch threads; {data.name}: train {len(data.train[1])}, "
        f"val {len(data.val[1])}, test {len(data.test[1])}, input {tuple(data.input_shape)}, "
        f"{data.num_classes} classes; batch {batch_size}, {steps} steps per epoch"
        + (f", each batch shared by {processes} processes (DistributedDataParallel)" if processes > 1 else "")])


class _NoBar:
    def set_postfix_str(self, *args, **kwargs) -> None: ...
    def update(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


def progress_bar(enabled: bool, total: int, initial: int):
    """tqdm's bar on a terminal; nothing otherwise (a log file gets lines, not a bar)."""
    if not (enabled and sys.stderr.isatty()):
        return _NoBar()
    import threading

    from tqdm.auto import tqdm

    # A thread lock, not tqdm's default multiprocessing one: a sweep's worker processes that are stopped
    # (Ctrl-C) would leave that one's semaphore behind, and one process needs no more.
    tqdm.set_lock(threading.RLock())
    return tqdm(total=total, initial=initial, unit="epoch", dynamic_ncols=True)
