"""Data-parallel training: the processes that `torchrun --nproc-per-node N -m logitlab.train` starts train
one model together (DistributedDataParallel). This module is everything they need of each other, as one
`World`: this process's rank among `size`, the process group joined from torchrun's environment, and the
few collectives a run makes (see loop.py for where, and train.py for how the ranks share a run directory).

A single process (no torchrun, or WORLD_SIZE=1) gets SOLO: nothing is joined, every collective returns its
input, and the trainer's single-process path calls none of them per step.

Two process groups: the default one carries the device's tensors (gradients, the epoch's sums: NCCL for
CUDA tensors, gloo for CPU ones), and a gloo `control` group the host's agreements (the stop vote, the run
directory, RNG states), so that agreeing never waits on the GPU.
"""
from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from logitlab import ConfigError

if TYPE_CHECKING:  # imported where a world of several processes uses it: SOLO needs no torch, so a
    import torch  # single run's refused command line is answered before torch has loaded
    from torch import Tensor


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0  # this process's index on its node (its GPU: cuda:local_rank)
    local_size: int = 1  # processes per node
    control: Any = None  # the gloo group for host-side agreement
    announced: bool = False  # rank 0 has told the others where the run lives (see announce)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the one that writes: checkpoints, TensorBoard events, history.csv, metrics.json."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        """This process's world: under torchrun (WORLD_SIZE > 1) the first call joins the process group
        (env:// rendezvous: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE); every later call returns it."""
        global _joined
        if _joined is None:
            _joined = _join() if int(os.environ.get("WORLD_SIZE", "1")) > 1 else SOLO
        return _joined

    # ------------------------------------------------------------------ what each rank trains on
    def device(self, requested: torch.device) -> torch.device:
        """The device this rank trains on: the CPU, or for CUDA the GPU of its local rank."""
        import torch

        if not self.distributed or requested.type == "cpu":
            return requested
        if requested.type != "cuda":
            raise ConfigError(f"trainer.device={requested} cannot train data-parallel (gloo and NCCL carry CPU "
                              f"and CUDA tensors); valid under torchrun: cpu, cuda, auto")
        if requested.index not in (None, self.local_rank):
            raise ConfigError(f"trainer.device={requested}: under torchrun each process trains on the GPU of its "
                              f"local rank (cuda:LOCAL_RANK); give trainer.device=cuda or auto")
        return torch.device("cuda", self.local_rank)

    def shard(self, t: Tensor) -> Tensor:
        """This rank's contiguous part of `t` (examples to score); the parts differ in length by one at most."""
        return t.tensor_split(self.size)[self.rank] if self.distributed else t

    # ------------------------------------------------------------------ collectives (all ranks, same order)
    def sum(self, t: Tensor) -> Tensor:
        """`t` summed over every rank, in place, on t's own device."""
        import torch.distributed as dist

        if self.distributed:
            dist.all_reduce(t)
        return t

    def gather(self, obj: Any) -> list:
        """Every rank's `obj` (picklable, small), in rank order."""
        import torch.distributed as dist

        if not self.distributed:
            return [obj]
        out = [None] * self.size
        dist.all_gather_object(out, obj, group=self.control)
        return out

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.distributed:
            dist.barrier(group=self.control)

    def stop_vote(self) -> StopVote | None:
        return StopVote(self.control) if self.distributed else None

    def announce(self, message: str | int) -> None:
        """Rank 0's one message to the other ranks before a run: its run directory, or the exit status of a
        command that ended before it had one. Only the first call says anything."""
        import torch.distributed as dist

        if self.distributed and self.is_main and not self.announced:
            self.announced = True
            dist.broadcast_object_list([message], src=0, group=self.control)

    def announcement(self) -> str | int:
        """Ranks > 0: wait for rank 0's `announce`."""
        import torch.distributed as dist

        message = [None]
        dist.broadcast_object_list(message, src=0, group=self.control)
        return message[0]

    def leave(self) -> None:
        """Destroy the process groups and join their threads while the interpreter can still serve them. A
        gloo thread frees a collective's tensors (which takes the GIL) after wait() has returned, not before;
        one still at it when the interpreter shuts down cannot have the GIL and is ended inside a destructor:
        "terminate called without an active exception", SIGABRT. A group's threads are joined only when its
        last holder lets go (this World, a StopVote, DDP, the frames of a traceback, reference cycles among
        them): call this once those are out of scope, as train.main does."""
        import torch.distributed as dist

        if not self.distributed:
            return
        if dist.is_initialized():
            dist.destroy_process_group()
        self.control = None
        gc.collect()

    def launcher(self) -> list[str] | None:
        """The torchrun words that start this world again (None for a single process). One node:
        --standalone, which finds a free port itself (the first run's may be taken by then); several:
        --nnodes, to which the rendezvous options of the first launch belong as well."""
        if not self.distributed:
            return None
        nodes = self.size // self.local_size
        where = ["--standalone"] if nodes == 1 else ["--nnodes", str(nodes)]
        return ["torchrun", *where, "--nproc-per-node", str(self.local_size)]


class StopVote:
    """Whether any rank has caught a signal, agreed by every rank at the same step without waiting on the
    device. Each step boundary starts an all_reduce(MAX) of the signal this rank caught (0: none) on the
    control group and reads the result of the previous boundary's, which has arrived by then: the step's
    gradient all-reduce keeps the ranks within a step of each other. So a signal to any one rank stops
    every rank at the same step, a step or two after it arrived."""

    def __init__(self, group):
        self.group, self.caught = group, 0
        self._pending: tuple[Any, Tensor] | None = None

    def hear(self, signum: int) -> None:
        """The signal handler's part: remember the signal until it has been voted on."""
        self.caught = signum

    def agree(self) -> int | None:
        """The signal every rank agreed on at the previous boundary (None: train on); starts this one's vote."""
        import torch
        import torch.distributed as dist

        agreed = self.finish()
        mine = torch.tensor([self.caught], dtype=torch.int32)
        work = dist.all_reduce(mine, op=dist.ReduceOp.MAX, group=self.group, async_op=True)
        self._pending = (work, mine)
        return agreed

    def finish(self) -> int | None:
        """Wait for the vote in flight (every rank has started it) and return its result."""
        if self._pending is None:
            return None
        (work, result), self._pending = self._pending, None
        work.wait()
        return int(result) or None


SOLO = World()  # one process: no group, no collectives
_joined: World | None = None


def _join() -> World:
    import torch
    import torch.distributed as dist

    missing = [key for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} asks for data-parallel training, but "
                          f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: start it with "
                          f"torchrun --nproc-per-node N -m logitlab.train ..., or unset WORLD_SIZE")
    local_rank = int(os.environ["LOCAL_RANK"])
    backend = "gloo"
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)  # NCCL's communicators and the CUDA RNG state of this rank's GPU
        backend = "cpu:gloo,cuda:nccl"  # a run on the CPU (trainer.device=cpu) reduces through gloo
    # torch.distributed.nn.functional takes group.WORLD as a default argument when first imported (torch._dynamo
    # imports it, during training): imported after the join, it holds the default group past leave(), and its
    # threads into the interpreter's shutdown. Imported now, its default is None.
    from torch.distributed.nn import functional  # noqa: F401
    dist.init_process_group(backend)
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=local_rank,
                 local_size=int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())),
                 control=dist.new_group(backend="gloo"))
