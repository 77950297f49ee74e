"""How the training split's batches reach the device. Resident (the default whenever the data fits): every
split lives on the device and a batch is an index_select there. Streamed (the splits' inputs exceed
data.max_resident_gb): the inputs stay where the source keeps them (a folder's memory-mapped cache, or host
memory) and a background thread gathers each next batch from there and copies it to the device (from
pinned memory on CUDA) while the current step runs. Both give the same batch for the same indices, so a
streamed run equals the resident one: bit for bit on the CPU, in the same order with the same draws.

The augmentation (data/augment.py) and normalisation are applied after, on the device, by the loop."""
from __future__ import annotations

import logging
import os
import queue
import threading
from contextlib import contextmanager
from dataclasses import replace
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from logitlab import ConfigError
from logitlab.data.splits import SplitData

log = logging.getLogger("logitlab")
AUTO_SHARE = 0.5  # max_resident_gb=auto: this share of the free device memory (of available RAM on the CPU)


def check_cap(max_resident_gb) -> None:
    """data.max_resident_gb: a number of GB >= 0 (0 streams always), or auto."""
    number = isinstance(max_resident_gb, (int, float)) and not isinstance(max_resident_gb, bool)
    if max_resident_gb != "auto" and not (number and max_resident_gb >= 0):
        raise ConfigError(f"data.max_resident_gb={max_resident_gb!r} must be a number of GB >= 0 (0: always "
                          f"stream batches from the host), or auto ({AUTO_SHARE:.0%} of the free memory of the "
                          f"device the run trains on)")


def resident(stored_bytes: int, device: torch.device, max_resident_gb="auto", what: str = "data") -> bool:
    """Whether inputs of `stored_bytes` live on `device` (True) or stream from the host; logged once, with why."""
    check_cap(max_resident_gb)
    if max_resident_gb == "auto":
        free, where = _free_bytes(device)
        cap, said = AUTO_SHARE * free, f"max_resident_gb=auto: {AUTO_SHARE:.0%} of {_size(free)} free {where}"
    else:
        cap, said = max_resident_gb * 1e9, f"data.max_resident_gb={max_resident_gb}"
    keep = stored_bytes <= cap
    log.info(f"{what}: inputs {_size(stored_bytes)} " + (f"resident on {device.type}" if keep else
             f"streamed to {device.type} a batch at a time, from where they rest") + f" ({said})")
    return keep


def _free_bytes(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, f"on {torch.cuda.get_device_name(device)}"
    try:  # MemAvailable: what can be allocated without swapping
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024, "in host memory"
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "in host memory"


def _size(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def place(model: nn.Module, data: SplitData, device: torch.device, distributed: bool = False,
          deterministic: bool = False, inputs: bool = True) -> tuple[nn.Module, SplitData]:
    """The model and the data on `device`: the inputs too where they are resident (`inputs`), else only the
    labels (and the normalisation)."""
    model.to(device)
    data = data.to(device, inputs=inputs)
    if device.type == "cuda" and distributed:
        # batch statistics over the whole global batch; on the CPU (gloo) each rank's batch norm sees its share
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic  # fixed batch shapes: time cuDNN's kernels once
        if data.train[0].dim() == 4:  # images: NHWC is the layout cuDNN's fast convolutions want
            model.to(memory_format=torch.channels_last)
            if inputs:  # streamed batches are made NHWC one at a time, by the loop
                nhwc = lambda xy: (xy[0].contiguous(memory_format=torch.channels_last), xy[1])  # noqa: E731
                data = replace(data, train=nhwc(data.train), val=nhwc(data.val), test=nhwc(data.test))
    return model, data


class TrainInputs:
    """The training inputs `x` and how a step's examples are gathered: `batches(indices, steps)` yields
    the gathered batch (as the inputs rest: uint8 pixels or floats) on `device` for each step, where
    `indices(step)` gives that step's example indices."""

    def __init__(self, x: Tensor, device: torch.device, streamed: bool):
        self.x, self.device, self.streamed = x, device, streamed
        self.keep_layout = x.dim() == 4 and not x.is_contiguous()  # channels_last images (GPU): x[idx] keeps it

    def gather(self, idx: Tensor) -> Tensor:
        # index_select: half x[idx]'s cost on the CPU
        return self.x[idx] if self.keep_layout else self.x.index_select(0, idx)

    @contextmanager
    def batches(self, indices: Callable[[int], Tensor], steps: range) -> Iterator[Iterator[Tensor]]:
        if not self.streamed:
            yield (self.gather(indices(step)) for step in steps)
            return
        prefetch = _Prefetch(self, indices, steps)
        try:
            yield iter(prefetch)
        finally:
            prefetch.stop()


class _Prefetch:
    """A thread one batch ahead: gathers on the host (index_select releases the GIL), pins, copies."""

    def __init__(self, inputs: TrainInputs, indices: Callable[[int], Tensor], steps: range, depth: int = 2):
        self.inputs, self.indices, self.steps = inputs, indices, steps
        self.ready: queue.Queue = queue.Queue(maxsize=depth)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="logitlab-prefetch", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for step in self.steps:
                idx = self.indices(step).cpu()
                batch = self.inputs.x.index_select(0, idx)
                if self.inputs.device.type == "cuda":
                    batch = batch.pin_memory().to(self.inputs.device, non_blocking=True)
                else:
                    batch = batch.to(self.inputs.device)
                if not self._put(batch):
                    return
        except BaseException as e:  # noqa: BLE001 (handed to the training thread, which raises it)
            self._put(e)

    def _put(self, item) -> bool:
        while not self.stopping.is_set():
            try:
                self.ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Tensor]:
        for _ in self.steps:
            item = self.ready.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
