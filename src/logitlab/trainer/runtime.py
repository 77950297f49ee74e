"""Where a run computes: the device it trains on (`pick_device`) and how many intra-op threads it uses.

torch starts one intra-op thread per core. Its OpenMP threads spin while they wait for each
other, so as soon as anything else runs on the machine (a second run, the other jobs of a sweep) a
parallel region waits for a thread that has lost its core: measured on 2 cores, a small MLP run 10-100x
slower beside one other busy process. `trainer.threads=auto` therefore gives a run its share of the cores
(the cores this process may use, divided by the jobs that run at once, which the sweeper announces in
LOGITLAB_JOBS_AT_ONCE), and a single thread to work too small to gain from more.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from logitlab import ConfigError

if TYPE_CHECKING:
    import torch

JOBS_AT_ONCE = "LOGITLAB_JOBS_AT_ONCE"  # set by the sweeper in each job's process (fused groups count once)
# Below this many multiply-adds per training step (forward and backward) a second thread costs more in
# synchronisation than it saves; measured on the zoo's MNIST-1D and digits models (all of them are below).
_PARALLEL_WORK = 20_000_000


def cores() -> int:
    """The cores this process may run on (a SLURM or taskset allocation, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def jobs_at_once() -> int:
    try:
        return max(1, int(os.environ.get(JOBS_AT_ONCE, "1")))
    except ValueError:
        return 1


def pick_threads(setting: int | str, work_per_step: float) -> int:
    """The intra-op threads for `trainer.threads`: a positive integer as given, or `auto`: 1 for work
    too small to share, else this job's share of the cores. OMP_NUM_THREADS, when set, is the user's
    decision and wins over auto."""
    if setting != "auto":
        if not isinstance(setting, int) or isinstance(setting, bool) or setting < 1:
            raise ConfigError(f"trainer.threads={setting!r} must be a positive integer or auto")
        return setting
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    if work_per_step < _PARALLEL_WORK:
        return 1
    return max(1, cores() // jobs_at_once())


def work_per_step(model, example_shape: tuple[int, ...], batch_size: int) -> float:
    """A rough count of a training step's multiply-adds: 3 x (forward) per example, the forward taken as
    parameters x the positions they are applied at (1 for a dense layer, the output length of a conv)."""
    import math

    from torch import nn

    spatial = math.prod(example_shape[1:]) if len(example_shape) > 1 else 1
    total = 0.0
    for module in model.modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        reused = isinstance(module, (nn.Conv1d, nn.Conv2d, nn.GRU, nn.LSTM, nn.RNN, nn.MultiheadAttention))
        total += own * (spatial if reused else 1)
    return 3 * total * batch_size


def skip_dynamo_import() -> None:
    """torch.optim.Optimizer's add_param_group, zero_grad, state_dict and load_state_dict import
    torch._dynamo on their first call (1.9 s here) only to mark themselves as not to be compiled. A fused
    group never calls Optimizer.step (whose first call imports it again, for a graph break) and logitlab
    compiles nothing but the model's forward (trainer.compile), so each of the four is given itself as its
    dynamo-disabled form, which torch's wrapper then calls directly. Once torch._dynamo is imported, or
    for a torch whose wrappers differ, nothing is changed."""
    import sys

    import torch

    if "torch._dynamo" in sys.modules:
        return
    for name in ("add_param_group", "zero_grad", "state_dict", "load_state_dict"):
        wrapped = getattr(getattr(torch.optim.Optimizer, name), "__wrapped__", None)
        if wrapped is not None and getattr(wrapped, "__dynamo_disable", None) is None:
            setattr(wrapped, "__dynamo_disable", wrapped)


def pick_device(name: str) -> torch.device:
    import torch  # here, not on top: a sweeper's process reads JOBS_AT_ONCE without loading torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as e:
        raise ConfigError(f"trainer.device={name} is not available here ({str(e).splitlines()[0]}); "
                          f"available: {', '.join(available_devices())}") from None
    return device


def available_devices() -> list[str]:
    """The trainer.device values this machine has (auto picks the first of cuda, mps, cpu)."""
    import torch

    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    return ["auto", "cpu", *(["cuda", *cuda] if cuda else []), *(["mps"] if mps else [])]
