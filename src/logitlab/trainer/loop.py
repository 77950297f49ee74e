"""The training loop: data resident on the device, a batch is a shuffled index and a slice, the loss is
`cross_entropy` on raw logits, and the host syncs once per epoch (metrics, divergence check, checkpoint).
Per step it does what a hand-written loop does and two cheap things more (keep the loss and the argmax on
the device); `make bench` holds it to within 5% of such a loop.

A run can stop at any moment and continue bit for bit: the training state is a dict of stateful objects
(model, optimizer, schedule, RNGs, position, record), saved and restored by one loop. The checkpoint writer
(checkpoint.py) decides when last.pt and best.pt are written; TensorBoard writing is the board's
(reporting/tensorboard_log.py); scoring the test split and drawing figures happen after `fit`, in the entry point.

Data-parallel (under torchrun, `world` a distributed.World of several processes): every rank draws the same
order, steps through DistributedDataParallel on its share of each global batch (`batch_size` is the whole
batch's, so results do not depend on the number of processes), and the epoch's one host sync is the one
all-reduce of its sums; a signal to any rank stops all at the same step. Rank 0 alone writes checkpoints.
"""
from __future__ import annotations

import inspect
import logging
import math
import os
import signal
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from logitlab import ConfigError
from logitlab.data.splits import SplitData
from logitlab.reporting.scoring import as_float, logits as eval_logits, loss_and_right
from logitlab.data.augment import Augmentation
from logitlab.trainer import checkpoint, feed, rundir, runtime
from logitlab.trainer.console import epoch_line, progress_bar, run_summary
from logitlab.trainer.distributed import SOLO, StopVote, World
from logitlab.trainer.objective import Objective
from logitlab.trainer.optimizer import grad_resetter, make_optimizer, stepper
from logitlab.trainer.runtime import pick_device
from logitlab.trainer.state import Position, Randomness, Record, augment_stream, copied

log = logging.getLogger("logitlab")
epoch_log = logging.getLogger("logitlab.epochs")  # one line per epoch; a progress bar stands in on a terminal
_SIGNALS = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else [])


class Diverged(ConfigError):
    """The training loss became NaN or infinite."""


class Interrupted(BaseException):
    """A signal stopped training; a resumable checkpoint has been written. A BaseException, like
    KeyboardInterrupt, so that a sweep stops too instead of recording a failure and going on."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum

    def __reduce__(self):  # joblib's workers send it back pickled: both arguments must travel
        return type(self), (self.signum, str(self))


class Trainer:
    def __init__(self, epochs: int = 30, batch_size: int = 64, label_smoothing: float = 0.0,
                 grad_clip: float | None = None, device: str = "auto", precision: str = "fp32",
                 compile: bool = False, deterministic: bool = False, progress: bool = True,
                 objective: str = "val/acc", direction: str = "auto", checkpoint_every_s: float = 0.0,
                 histograms: bool = False, patience: int | None = None, threads: int | str = "auto",
                 eval_batch_size: int = 4096):
        for key, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"trainer.{key}={value!r} must be a positive integer")
        if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
            raise ConfigError(f"trainer.label_smoothing={label_smoothing!r} must be in [0, 1)")
        if grad_clip is not None and not (isinstance(grad_clip, (int, float)) and grad_clip > 0):
            raise ConfigError(f"trainer.grad_clip={grad_clip!r} must be positive, or null for no clipping")
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"trainer.precision={precision!r} is not known; valid: fp32, bf16")
        if patience is not None and (not isinstance(patience, int) or isinstance(patience, bool) or patience < 1):
            raise ConfigError(f"trainer.patience={patience!r} must be a positive integer (epochs without a better "
                              f"objective before stopping), or null to train every epoch")
        if not isinstance(checkpoint_every_s, (int, float)) or checkpoint_every_s < 0:
            raise ConfigError(f"trainer.checkpoint_every_s={checkpoint_every_s!r} must be a number >= 0")
        self.objective = Objective.of(objective, direction)
        # The metric that picks best.pt: the objective itself, or for a test/ objective its val/ twin
        # (choosing weights by their test score would leak the test split into training).
        self.selection = Objective.of(self.objective.name.replace("test/", "val/"), self.objective.direction)
        self.epochs, self.batch_size, self.eval_batch_size = epochs, batch_size, eval_batch_size
        self.label_smoothing, self.grad_clip = label_smoothing, grad_clip
        self.device = pick_device(device)
        self.precision, self.compile, self.deterministic = precision, compile, deterministic
        self.progress, self.checkpoint_every_s, self.histograms = progress, checkpoint_every_s, histograms
        self.patience = patience
        runtime.pick_threads(threads, 0)  # refuses a bad value here, before any run starts
        self.threads = threads
        self.signal_received: int | None = None

    # ------------------------------------------------------------------ the run
    def fit(self, model: nn.Module, data: SplitData, optimizer: Callable, run_dir: str | Path,
            schedule: Callable | None = None, seed: int = 0, config: dict | None = None, board=None,
            on_epoch_end: Sequence[Callable[[int, dict], None]] = (), world: World = SOLO,
            augment: Augmentation | None = None, max_resident_gb: float | str = "auto") -> Record:
        """Train `model` on `data`, resuming from `run_dir/checkpoints` when it holds a checkpoint.

        `optimizer` and `schedule` are factories (Hydra `_partial_`s) completed here with the model's
        parameters and the number of steps. `board` (a tensorboard_log.RunBoard) logs every epoch; each
        of `on_epoch_end` is called with (epoch, metrics). `world`: the processes training this model
        together (distributed.World; pass board and hooks on rank 0 only). `augment` (data/augment.py)
        transforms each training batch; inputs over `max_resident_gb` stream from the host (feed.py).
        Returns the run's record;
        checkpoints/best.pt holds the best epoch's weights, the model the final ones."""
        ckpt_dir = Path(run_dir) / "checkpoints"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        self.device = world.device(self.device)
        self.use_threads(runtime.work_per_step(model, data.input_shape, self.batch_size))
        if augment is not None:
            augment.check(data.input_shape, data.name)
        keep = feed.resident(data.stored_bytes, self.device, max_resident_gb,
                             what=f"{data.name} {str(data.train[0].dtype).removeprefix('torch.')}")
        model, data = feed.place(model, data, self.device, world.distributed, self.deterministic, inputs=keep)
        self.inputs, self.augment = feed.TrainInputs(data.train[0], self.device, streamed=not keep), augment
        n, steps_per_epoch = len(data.train[0]), math.ceil(len(data.train[0]) / self.batch_size)
        opt = make_optimizer(optimizer, list(model.parameters()))
        sched, sched_per_step = self.make_schedule(schedule, opt, steps_per_epoch)
        pos = Position(labels=data.train[1], batch_size=self.batch_size, rank=world.rank, world_size=world.size)
        rng = Randomness(torch.Generator().manual_seed(seed), rank=world.rank, world_size=world.size,
                         augment=augment_stream(seed) if augment is not None else None)
        record = Record()
        stateful = dict(model=model, optimizer=opt, rng=rng, position=pos, record=record,
                        **({"schedule": sched} if sched is not None else {}))
        config = config or {}
        resumed = self.restore(stateful, checkpoint.latest(ckpt_dir), config, ckpt_dir)
        world.barrier()  # every rank has read the checkpoints before rank 0 writes the next ones

        sizes = torch.full((steps_per_epoch,), float(self.batch_size), device=self.device)
        sizes[-1] = n - self.batch_size * (steps_per_epoch - 1)  # the last batch may be partial
        snapshot = lambda: {**{k: copied(v.state_dict()) for k, v in stateful.items()}, "config": config}  # noqa: E731
        writer = checkpoint.Writer(ckpt_dir, self.checkpoint_every_s) if world.is_main else _NoWriter()
        if board is not None:
            board.start(pos.epoch, resumed)
        if not pos.epoch and not pos.step:
            log.info(run_summary(model, data, self.device, steps_per_epoch, self.batch_size, world.size))
        step_model, eval_model = self._step_and_eval_models(model, world)
        vote = world.stop_vote()
        old_handlers = self.catch_signals(vote.hear if vote is not None else None)
        bar = progress_bar(self.progress and world.is_main, self.epochs, pos.epoch)
        try:
            if not pos.epoch and not pos.step:  # the initial weights: a run that diverges at once keeps them
                writer.write(snapshot(), best=True)
            while pos.epoch < self.epochs and not record.stopped_early:
                started = time.perf_counter()
                self._train_epoch(step_model, opt, sched if sched_per_step else None, data, pos, rng, world, vote)
                if self.signal_received is not None:
                    raise self._interrupted(writer, snapshot, pos, rng, world, vote, ckpt_dir)
                metrics = self._finish_epoch(eval_model, opt, sched, sched_per_step, data, pos, sizes, world)
                metrics["seconds"] = time.perf_counter() - started
                record.train_seconds += metrics["seconds"]
                record.history.append(metrics)
                improved = self.selection.better(metrics[self.selection.name],
                                                 record.best and record.best[self.selection.name])
                if improved:
                    record.best = dict(metrics, epoch=pos.epoch)
                record.stopped_early = bool(self.patience) and record.best is not None \
                    and pos.epoch - record.best["epoch"] >= self.patience
                epoch_log.info(epoch_line(pos.epoch, self.epochs, metrics)
                               + (f"  (no better {self.selection.name} in {self.patience} epochs: stopping)"
                                  if record.stopped_early else ""))
                if board is not None:
                    board.epoch(pos.epoch, metrics, model if self.histograms else None)
                if world.distributed:  # on every rank, here: rank 0's writer takes its snapshots when it decides
                    rng.ranks = world.gather(rng.own_streams())
                # events are flushed with the checkpoint: a rerun resumes there and purges any later ones
                writer.epoch_end(snapshot, improved, final=pos.epoch == self.epochs or record.stopped_early,
                                 then=board.flush if board is not None else None)
                bar.set_postfix_str(f"loss {metrics['train/loss']:.4f} val/acc {metrics['val/acc']:.4f}",
                                    refresh=False)  # drawn by update(), at most every 0.1 s
                bar.update(1)
                for hook in on_epoch_end:
                    hook(pos.epoch, metrics)
            if vote is not None:
                vote.finish()
        finally:
            writer.close()
            bar.close()
            self.restore_signals(old_handlers)
        return record

    def use_threads(self, work_per_step: float) -> None:
        """Set torch's intra-op threads for this run (trainer.threads; see runtime.py)."""
        if self.device.type == "cpu":
            torch.set_num_threads(runtime.pick_threads(self.threads, work_per_step))

    def restore(self, stateful: dict, ckpt: dict | None, config: dict, ckpt_dir: Path) -> bool:
        """Load every stateful object from `ckpt` and say whether there was one; a checkpoint made under
        another config, or holding state this run has no place for (or lacking some), is refused in one line."""
        if ckpt is None:
            return False
        changed = rundir.changed_keys(ckpt.get("config") or {}, config)
        if changed:
            raise ConfigError(f"{ckpt_dir} was written by another config ({rundir.describe(changed)}); "
                              f"rerun with its values, or give another run directory")
        if ckpt.get("position", {}).get("epoch", 0) > self.epochs:
            raise ConfigError(f"{ckpt_dir} has trained {ckpt['position']['epoch']} epochs already, more than "
                              f"trainer.epochs={self.epochs}")
        unused = sorted(set(ckpt) - set(stateful) - {"config"})
        missing = sorted(set(stateful) - set(ckpt))
        if unused or missing:
            raise checkpoint.CheckpointError(
                f"{ckpt_dir} does not match this run: " + "; ".join(
                    f"{what}: {', '.join(keys)}" for what, keys in (("unused", unused), ("missing", missing)) if keys))
        total = getattr(stateful.get("schedule"), "total_steps", None)  # a per-step schedule (OneCycleLR)
        if total is not None and ckpt["schedule"].get("total_steps") not in (None, total):
            raise ConfigError(f"{ckpt_dir} was trained under a schedule of {ckpt['schedule']['total_steps']} steps; "
                              f"its shape follows trainer.epochs, so this run cannot be extended (keep "
                              f"trainer.epochs as it was, or start a new run directory)")
        for name, obj in stateful.items():
            obj.load_state_dict(ckpt[name])
        pos = stateful["position"]
        log.info(f"resuming from epoch {pos.epoch}" + (f" step {pos.step}" if pos.step else "")
                 + f" of {self.epochs} ({ckpt_dir})")
        return True

    def _step_and_eval_models(self, model: nn.Module, world: World) -> tuple[nn.Module, nn.Module]:
        """What steps (DDP-wrapped when data-parallel, compiled with trainer.compile) and what scores the
        validation split. Data-parallel, each rank scores its shard with the bare model: DDP's forward
        would broadcast buffers, a collective per call, and the shards may take different numbers of calls."""
        if not world.distributed:
            step_model = torch.compile(model) if self.compile else model
            return step_model, step_model
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's weights: every rank starts from the same ones (it built or restored them alike)
        ddp = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return (torch.compile(ddp) if self.compile else ddp), model

    def _interrupted(self, writer, snapshot, pos: Position, rng: Randomness, world: World, vote: StopVote | None,
                     ckpt_dir: Path) -> Interrupted:
        """Checkpoint the step every rank stopped at; the Interrupted to raise."""
        if world.distributed:  # the cut epoch's sums and every rank's RNG state go into rank 0's checkpoint
            vote.finish()
            if pos.step:
                _sum_partial_epoch(pos, world)
            rng.ranks = world.gather(rng.own_streams())
        writer.write(snapshot(), wait=True)
        world.barrier()  # written before any rank leaves: torchrun stops every process once one has exited
        return Interrupted(self.signal_received, f"stopped by {signal.Signals(self.signal_received).name} in epoch "
                           f"{pos.epoch + 1} at step {pos.step}; checkpoint {ckpt_dir / 'last.pt'} written")

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self, model, opt, step_schedule, data: SplitData, pos: Position, rng: Randomness,
                     world: World = SOLO, vote: StopVote | None = None) -> None:
        """Run the remaining steps of the current epoch; stops early (keeping `pos`) on a signal. Data-parallel
        (`vote` given), each step trains on this rank's share of the batch and the ranks vote on stopping
        after it; the vote before the first step settles whether to draw the epoch's order at all."""
        y = data.train[1]
        bs, n = self.batch_size, len(y)
        if vote is not None:
            self.signal_received = vote.agree()
        if self.signal_received is not None:  # arrived between epochs: stop before the next order is drawn
            return
        if pos.perm is None:
            pos.perm = torch.randperm(n, generator=rng.shuffle).to(self.device)
            pos.losses, pos.preds, pos.correct = [], [], None
        autocast = self._autocast()
        params = [p for p in model.parameters() if p.requires_grad] if self.grad_clip else None
        zero_grad, opt_step = grad_resetter(opt), stepper(opt)
        perm = pos.perm.cpu() if self.inputs.streamed else pos.perm  # a streamed batch is gathered on the host
        share = slice(world.rank, None, world.size) if vote is not None else slice(None)  # this rank's share

        def indices(step: int) -> Tensor:
            return perm[step * bs:(step + 1) * bs][share]

        channels_last = self.inputs.streamed and self.device.type == "cuda" and data.train[0].dim() == 4
        steps = range(pos.step, math.ceil(n / bs))
        with self.inputs.batches(indices, steps) as batches:
            for step, xb in zip(steps, batches):
                if self.signal_received is not None:
                    return
                idx = pos.perm[step * bs:(step + 1) * bs][share]
                if self.augment is not None:  # the whole batch's draws, whatever this rank's share
                    xb = self.augment.apply(xb, self.augment.draw(min(bs, n - step * bs), rng.augment)[share])
                xb = data.inputs(xb)
                if channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                yb = y.index_select(0, idx)
                with autocast:
                    logits = model(xb)
                if vote is None:
                    loss = F.cross_entropy(as_float(logits), yb, label_smoothing=self.label_smoothing)
                else:  # this rank's part of the batch mean (the shares may differ in size) ...
                    loss = F.cross_entropy(as_float(logits), yb, label_smoothing=self.label_smoothing,
                                           reduction="sum") / min(bs, n - step * bs)
                zero_grad()
                # ... whose gradient DDP averages over the ranks: times their number, that is the batch mean's
                (loss if vote is None else loss * world.size).backward()
                if params:
                    nn.utils.clip_grad_norm_(params, self.grad_clip)
                opt_step()
                if step_schedule is not None:
                    step_schedule.step()
                pos.losses.append(loss.detach())
                pos.preds.append(logits.argmax(1))  # compared with the labels once per epoch, in count_correct
                pos.step = step + 1
                if vote is not None:
                    self.signal_received = vote.agree()

    def _finish_epoch(self, model, opt, sched, sched_per_step, data: SplitData, pos: Position,
                      sizes: Tensor, world: World = SOLO) -> dict:
        x, (val_x, val_y) = data.train[0], data.val
        losses = torch.stack(pos.losses)  # (steps,) batch means (data-parallel: this rank's parts of them)
        val_logits = eval_logits(model, world.shard(val_x), self._autocast(), data.inputs, self.eval_batch_size)
        val_loss, val_right = loss_and_right(val_logits, world.shard(val_y))
        right = pos.count_correct()
        totals = world.sum(torch.stack([losses @ sizes.to(losses), right, val_loss, val_right]))  # over the ranks, if several
        loss_sum, right, val_loss, val_right = totals.tolist()  # the epoch's one host sync
        values = [loss_sum / len(x), right / len(x), val_loss / len(val_x), val_right / len(val_x)]
        if not math.isfinite(loss_sum):  # the losses are >= 0: their sum is finite iff every one is
            losses = world.sum(losses)  # the whole batches' means: every rank names the same step
            bad = int((~torch.isfinite(losses)).nonzero()[0])
            lr = opt.param_groups[0]["lr"]
            raise Diverged(f"training loss became {losses[bad].item()} at step {pos.epoch * len(losses) + bad + 1} "
                           f"(epoch {pos.epoch + 1}); try a lower optim.lr (now {lr:g}), trainer.grad_clip=1.0 "
                           f"or trainer.precision=fp32; the last checkpoints hold the weights before it")
        lr = opt.param_groups[0]["lr"]
        if sched is not None and not sched_per_step:
            sched.step()
        pos.next_epoch()
        return dict(zip(("train/loss", "train/acc", "val/loss", "val/acc"), values), lr=lr)

    # ------------------------------------------------------------------ helpers
    def make_schedule(self, schedule, opt, steps_per_epoch):
        """Per-batch schedules (OneCycleLR) need the total number of steps; the rest step per epoch."""
        if schedule is None:
            return None, False
        if "total_steps" in inspect.signature(schedule).parameters:
            return schedule(opt, total_steps=self.epochs * steps_per_epoch), True
        return schedule(opt), False

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()  # a disabled torch.autocast still costs microseconds per step
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def catch_signals(self, hear: Callable[[int], None] | None = None) -> dict:
        """SIGINT/SIGTERM/SIGUSR1 finish the current step, then `fit` checkpoints and raises Interrupted.
        With `hear` (a data-parallel run's StopVote.hear) the signal goes there instead, and signal_received
        is set once every rank has agreed on it."""
        self.signal_received = None

        def handler(signum, frame):
            if hear is None:
                self.signal_received = signum
            else:
                hear(signum)

        old = {}
        # Under SLURM, submitit requeues a preempted job on its own USR2 handler and needs SIGTERM left
        # alone; the requeued job resumes from the last epoch's checkpoint.
        caught = [s for s in _SIGNALS if not (s == signal.SIGTERM and os.environ.get("SUBMITIT_EXECUTOR") == "slurm")]
        try:
            for sig in caught:
                old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals to the caller
            pass
        return old

    def restore_signals(self, old: dict) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _sum_partial_epoch(pos: Position, world: World) -> None:
    """The cut epoch's per-step loss parts and right predictions summed over the ranks, into `pos` (on every
    rank alike): the whole batches' means and count, which rank 0's checkpoint keeps as a solo run's would."""
    right = pos.count_correct()
    sums = world.sum(torch.cat([torch.stack(pos.losses), right.reshape(1).to(torch.float32)]))
    pos.losses, pos.correct = list(sums[:-1].unbind()), sums[-1].to(right.dtype)


class _NoWriter:
    """A data-parallel rank other than 0: rank 0 writes the checkpoints."""

    def epoch_end(self, *args, **kwargs) -> None: ...
    def write(self, *args, **kwargs) -> None: ...
    def close(self) -> None: ...
