"""The training loop: data resident on the device, a batch is a shuffled index and a slice, the loss is
`cross_entropy` on raw logits, and the host syncs once per epoch (metrics, divergence check, checkpoint).
Per step it does what a hand-written loop does and two cheap things more (keep the loss and the argmax on
the device); `make bench` holds it to within 5% of such a loop.

A run can stop at any moment and continue bit for bit: checkpoints/last.pt holds the model, optimizer,
schedule, RNG states and the position (epoch, and step inside an epoch cut short by a signal).

Checkpoints cost training about 1% at most. A copy of the state taken at an epoch's end is written (torch.save,
fsync, rename) by a background thread while the next epoch trains; its fsync wait costs nothing, its
pickling about its CPU time (the GIL). So last.pt is written after every epoch that ends at least 100 times
that CPU time (~1 ms) after the previous write began: every epoch of 0.1 s or more, shorter ones every few.
A signal checkpoints the exact step, and every exit from `fit` waits for the write in flight and writes the
best epoch's state if it is not on disk yet (it waits in memory), so best.pt is exact whatever ends the run.
"""
from __future__ import annotations

import inspect
import math
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from logitlab import ConfigError, checkpoint
from logitlab.data import SplitData

EVAL_BATCH = 4096
OBJECTIVES = ("val/acc", "val/loss", "test/acc", "test/loss", "train/acc", "train/loss")  # what a run can return
_SIGNALS = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else [])


class Diverged(ConfigError):
    """The training loss became NaN or infinite."""


class Interrupted(BaseException):
    """A signal stopped training; a resumable checkpoint has been written. A BaseException, like
    KeyboardInterrupt, so that a sweep stops too instead of recording a failure and going on."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum


def pick_device(name: str) -> torch.device:
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
        raise ConfigError(f"trainer.device={name!r} is not usable here ({str(e).splitlines()[0]}); "
                          f"valid: auto, cpu, cuda, cuda:N, mps") from None
    return device


def evaluate(model: nn.Module, x: Tensor, y: Tensor, autocast=None) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and accuracy over (x, y), as 0-d tensors (no host sync)."""
    loss_sum, right = _evaluate_sums(model, x, y, autocast)
    return loss_sum / len(x), right / len(x)


@torch.no_grad()
def _evaluate_sums(model: nn.Module, x: Tensor, y: Tensor, autocast=None) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy and the number of right predictions over (x, y), in chunks of EVAL_BATCH."""
    was_training = model.training
    model.eval()
    loss_sums, rights = [], []
    for i in range(0, len(x), EVAL_BATCH):
        with autocast or nullcontext():
            logits = model(x[i:i + EVAL_BATCH]).float()
        loss_sums.append(F.cross_entropy(logits, y[i:i + EVAL_BATCH], reduction="sum"))
        rights.append((logits.argmax(1) == y[i:i + EVAL_BATCH]).sum())
    model.train(was_training)
    return sum(loss_sums[1:], loss_sums[0]), sum(rights[1:], rights[0])  # no op for a single chunk


@dataclass
class _Position:
    """Where training stands: `epoch` epochs are done; inside the next one, `step` batches of `perm`.

    Each step appends its loss and predicted classes (device tensors, no sync); `correct` counts the right
    predictions of the steps before the first of `preds` (a mid-epoch checkpoint's count when resuming)."""
    epoch: int = 0
    step: int = 0
    perm: Tensor | None = None
    losses: list[Tensor] = field(default_factory=list)
    preds: list[Tensor] = field(default_factory=list)
    correct: Tensor | None = None


class Trainer:
    def __init__(self, epochs: int = 30, batch_size: int = 64, label_smoothing: float = 0.0,
                 grad_clip: float | None = None, device: str = "auto", precision: str = "fp32",
                 compile: bool = False, deterministic: bool = False, progress: bool = True,
                 objective: str = "val/acc", checkpoint_every_s: float = 0.0, histograms: bool = False,
                 figures: bool = True):
        for key, value in (("epochs", epochs), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"trainer.{key}={value!r} must be a positive integer")
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"trainer.label_smoothing={label_smoothing} must be in [0, 1)")
        if grad_clip is not None and not grad_clip > 0:
            raise ConfigError(f"trainer.grad_clip={grad_clip} must be positive, or null for no clipping")
        if objective not in OBJECTIVES:
            raise ConfigError(f"trainer.objective={objective!r} is not a metric; valid: {', '.join(OBJECTIVES)}")
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"trainer.precision={precision!r} is not known; valid: fp32, bf16")
        self.epochs, self.batch_size = epochs, batch_size
        self.label_smoothing, self.grad_clip = label_smoothing, grad_clip
        self.device = pick_device(device)
        self.precision, self.compile, self.deterministic = precision, compile, deterministic
        self.progress, self.objective = progress, objective
        self.checkpoint_every_s, self.histograms, self.figures = checkpoint_every_s, histograms, figures
        self._signal: int | None = None

    # ------------------------------------------------------------------ the run
    def fit(self, model: nn.Module, data: SplitData, optimizer: Callable, run_dir: str | Path,
            schedule: Callable | None = None, seed: int = 0, config: dict | None = None,
            hparams: dict | None = None, on_epoch_end: Callable[[int, dict], None] | None = None) -> dict:
        """Train `model` on `data`, resuming from `run_dir/checkpoints` when it holds a checkpoint.

        `optimizer` and `schedule` are factories (Hydra `_partial_`s) completed here with the model's
        parameters and the number of steps. Returns the final metrics."""
        run_dir = Path(run_dir)
        ckpt_dir = run_dir / "checkpoints"
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        if self.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False

        model.to(self.device)
        data = data.to(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not self.deterministic  # fixed batch shapes: time cuDNN's kernels once
            if data.train[0].dim() == 4:  # images: NHWC is the layout cuDNN's fast convolutions want
                model.to(memory_format=torch.channels_last)
                data = _channels_last(data)
        n, steps_per_epoch = len(data.train[0]), math.ceil(len(data.train[0]) / self.batch_size)
        batch_sizes = torch.full((steps_per_epoch,), float(self.batch_size), device=self.device)
        batch_sizes[-1] = n - self.batch_size * (steps_per_epoch - 1)  # the last batch may be partial
        opt = _make_optimizer(optimizer, list(model.parameters()))
        sched, sched_per_step = self._make_schedule(schedule, opt, steps_per_epoch)
        shuffle_rng = torch.Generator().manual_seed(seed)

        self.state = dict(model=model, optimizer=opt, schedule=sched, shuffle_rng=shuffle_rng,
                          config=config or {}, ckpt_dir=ckpt_dir, history=[], best=None,
                          train_seconds=0.0, saved_at=0.0, save_cpu_seconds=0.0, unsaved_best=None,
                          train_labels=data.train[1], batch_sizes=batch_sizes)
        pos = self._restore(checkpoint.latest(ckpt_dir))

        from torch.utils.tensorboard import SummaryWriter  # lazy: only runs that train pay for it

        writer = SummaryWriter(str(run_dir), purge_step=pos.epoch + 1 if pos.epoch else None)
        if not pos.epoch and not pos.step:
            _write_hparams(writer, hparams or {})
        step_model = torch.compile(model) if self.compile else model
        old_handlers = self._catch_signals()
        bar = _progress_bar(self.progress, self.epochs, pos.epoch)
        self._writer, self._writing = ThreadPoolExecutor(1, thread_name_prefix="logitlab-checkpoint"), None
        try:
            if not pos.epoch and not pos.step:  # the initial weights: a run that diverges at once keeps them
                self._save(pos, best=True)
            while pos.epoch < self.epochs:
                started = time.perf_counter()
                self._train_epoch(step_model, opt, sched if sched_per_step else None, data, pos)
                if self._signal is not None:
                    self._save(pos, wait=True)
                    raise Interrupted(self._signal, f"stopped by {signal.Signals(self._signal).name} in epoch "
                                      f"{pos.epoch + 1} at step {pos.step}; checkpoint {ckpt_dir / 'last.pt'} "
                                      f"written, rerun the same command to resume")
                metrics = self._finish_epoch(step_model, opt, sched, sched_per_step, data, pos)
                self.state["train_seconds"] += time.perf_counter() - started
                _log_epoch(writer, metrics, pos.epoch, model if self.histograms else None)
                self._checkpoint(pos, metrics, writer)
                bar.set_postfix_str(f"loss {metrics['train/loss']:.4f} val/acc {metrics['val/acc']:.4f}",
                                    refresh=False)  # drawn by update(), at most every 0.1 s
                bar.update(1)
                if on_epoch_end is not None:
                    on_epoch_end(pos.epoch, metrics)
            final = self._test(data, writer)
        finally:
            self._finish_writes()
            bar.close()
            writer.close()
            self._restore_signals(old_handlers)
        return final

    # ------------------------------------------------------------------ one epoch
    def _train_epoch(self, model, opt, step_schedule, data: SplitData, pos: _Position) -> None:
        """Run the remaining steps of the current epoch; stops early (keeping `pos`) on a signal."""
        x, y = data.train
        bs = self.batch_size
        if pos.perm is None:
            pos.perm = torch.randperm(len(x), generator=self.state["shuffle_rng"]).to(x.device)
            pos.losses, pos.preds, pos.correct = [], [], None
        autocast = self._autocast()
        params = [p for p in model.parameters() if p.requires_grad] if self.grad_clip else None
        zero_grad = _grad_resetter(opt)
        keep_layout = x.dim() == 4 and not x.is_contiguous()  # channels_last images (GPU): x[idx] keeps it
        model.train()
        for step in range(pos.step, math.ceil(len(x) / bs)):
            if self._signal is not None:
                return
            idx = pos.perm[step * bs:(step + 1) * bs]
            xb = x[idx] if keep_layout else x.index_select(0, idx)  # index_select: half x[idx]'s cost on CPU
            yb = y.index_select(0, idx)
            with autocast:
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=self.label_smoothing)
            zero_grad()
            loss.backward()
            if params:
                nn.utils.clip_grad_norm_(params, self.grad_clip)
            opt.step()
            if step_schedule is not None:
                step_schedule.step()
            pos.losses.append(loss.detach())
            pos.preds.append(logits.argmax(1))  # compared with the labels once per epoch, in _count_correct
            pos.step = step + 1

    def _count_correct(self, pos: _Position, y: Tensor) -> Tensor:
        """Right predictions so far in this epoch: one comparison over the steps since the last count."""
        if pos.preds:
            bs, first = self.batch_size, pos.step - len(pos.preds)
            right = (torch.cat(pos.preds) == y[pos.perm[first * bs:pos.step * bs]]).sum()
            pos.correct = right if pos.correct is None else pos.correct + right
            pos.preds = []
        return pos.correct

    def _finish_epoch(self, model, opt, sched, sched_per_step, data: SplitData, pos: _Position) -> dict:
        (x, y), n_val = data.train, len(data.val[0])
        losses = torch.stack(pos.losses)  # (steps,) batch means
        sizes = self.state["batch_sizes"]
        val_loss, val_right = _evaluate_sums(model, *data.val, self._autocast())
        right = self._count_correct(pos, y)
        loss_sum, right, val_loss, val_right = torch.stack(
            [losses @ sizes, right, val_loss, val_right]).tolist()  # the epoch's one host sync
        values = [loss_sum / len(x), right / len(x), val_loss / n_val, val_right / n_val]
        if not math.isfinite(loss_sum):  # the losses are >= 0: their sum is finite iff every one is
            bad = int((~torch.isfinite(losses)).nonzero()[0])
            lr = opt.param_groups[0]["lr"]
            raise Diverged(f"training loss became {losses[bad].item()} at step {pos.epoch * len(losses) + bad + 1} "
                           f"(epoch {pos.epoch + 1}); try a lower optim.lr (now {lr:g}), trainer.grad_clip=1.0 "
                           f"or trainer.precision=fp32; the last checkpoints hold the weights before it")
        lr = opt.param_groups[0]["lr"]
        if sched is not None and not sched_per_step:
            sched.step()
        pos.epoch, pos.step, pos.perm, pos.losses, pos.preds, pos.correct = pos.epoch + 1, 0, None, [], [], None
        return dict(zip(("train/loss", "train/acc", "val/loss", "val/acc"), values), lr=lr)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, pos: _Position, metrics: dict, writer) -> None:
        """Record the epoch. Start writing last.pt (best.pt, the TensorBoard events) when due and the writer
        is free, else keep the state in memory if it is the best epoch's; the last epoch waits for its write."""
        s = self.state
        s["history"].append(metrics)
        improved = s["best"] is None or metrics["val/acc"] > s["best"]["val/acc"]
        if improved:
            s["best"] = dict(metrics, epoch=pos.epoch)
        spacing = max(self.checkpoint_every_s, 100 * s["save_cpu_seconds"])  # writes take <= 1% of training
        free = self._writing is None or self._writing.done()
        if free and time.monotonic() - s["saved_at"] >= spacing or pos.epoch == self.epochs:
            # events are flushed with the checkpoint: a rerun resumes there and purges any later ones
            self._save(pos, best=improved, wait=pos.epoch == self.epochs, then=writer.flush)
        elif improved:
            s["unsaved_best"] = self._state(pos)

    def _save(self, pos: _Position, best: bool = False, wait: bool = False, then: Callable | None = None) -> None:
        """Write last.pt on the writer thread from a copy of the state taken now, then best.pt (this state if
        `best`, else the best epoch's if it is not on disk yet), then `then()`. `wait` returns once written."""
        s = self.state
        self._wait_for_write()  # one write at a time, in order
        state, unsaved_best = self._state(pos), None if best else s["unsaved_best"]
        s["unsaved_best"], s["saved_at"] = None, time.monotonic()
        last, best_path = s["ckpt_dir"] / "last.pt", s["ckpt_dir"] / "best.pt"

        def write() -> None:
            started = time.thread_time()
            checkpoint.save(state, last)
            if best:
                checkpoint.copy(last, best_path)
            elif unsaved_best is not None:
                checkpoint.save(unsaved_best, best_path)
            if then is not None:
                then()
            s["save_cpu_seconds"] = time.thread_time() - started  # about what it took from training
        self._writing = self._writer.submit(write)
        if wait:
            self._wait_for_write()

    def _wait_for_write(self) -> None:
        """Block until the write in flight is on disk; a failed write (disk full) raises here."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _finish_writes(self) -> None:
        """On every exit from fit: the write in flight lands, and so does a best epoch not yet on disk."""
        s = self.state
        try:
            self._wait_for_write()
            if s["unsaved_best"] is not None:
                checkpoint.save(s["unsaved_best"], s["ckpt_dir"] / "best.pt")
                s["unsaved_best"] = None
        finally:
            self._writer.shutdown()

    def _state(self, pos: _Position) -> dict:
        """The checkpoint at `pos`, holding copies of the tensors that training goes on changing in place."""
        s = self.state
        rng = {"torch": torch.get_rng_state(), "shuffle": s["shuffle_rng"].get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        mid_epoch = {}
        if pos.step:  # an epoch cut short by a signal: keep its order and partial sums
            correct = self._count_correct(pos, s["train_labels"])
            mid_epoch = dict(perm=pos.perm.cpu(), losses=torch.stack(pos.losses).cpu(), correct=correct.cpu())
        return dict(
            model=_copied(s["model"].state_dict()), optimizer=_copied(s["optimizer"].state_dict()),
            schedule=_copied(s["schedule"].state_dict()) if s["schedule"] else None,
            epoch=pos.epoch, step=pos.step, mid_epoch=mid_epoch, rng=rng,
            history=list(s["history"]), best=s["best"], train_seconds=s["train_seconds"], config=s["config"],
        )

    def _restore(self, ckpt: dict | None) -> _Position:
        if ckpt is None:
            return _Position()
        s = self.state
        s["model"].load_state_dict(ckpt["model"])
        s["optimizer"].load_state_dict(ckpt["optimizer"])
        if s["schedule"] is not None and ckpt["schedule"] is not None:
            s["schedule"].load_state_dict(ckpt["schedule"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        s["shuffle_rng"].set_state(ckpt["rng"]["shuffle"])
        if "cuda" in ckpt["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
        s["history"], s["best"], s["train_seconds"] = ckpt["history"], ckpt["best"], ckpt["train_seconds"]
        pos = _Position(epoch=ckpt["epoch"], step=ckpt["step"])
        if ckpt["step"]:
            m, dev = ckpt["mid_epoch"], self.device
            pos.perm, pos.correct = m["perm"].to(dev), m["correct"].to(dev)
            pos.losses = list(m["losses"].to(dev).unbind())
        print(f"resuming from epoch {pos.epoch}" + (f" step {pos.step}" if pos.step else "")
              + f" of {self.epochs} ({s['ckpt_dir']})", file=sys.stderr)
        return pos

    # ------------------------------------------------------------------ the end
    def _test(self, data: SplitData, writer) -> dict:
        """Score the best-by-val/acc weights on the test split."""
        s = self.state
        model = s["model"]
        best = checkpoint.load(s["ckpt_dir"] / "best.pt", map_location=self.device)
        current = {k: v.clone() for k, v in model.state_dict().items()}
        model.load_state_dict(best["model"])
        test_loss, test_acc = (t.item() for t in evaluate(model, *data.test, self._autocast()))
        if self.figures:  # confusion matrix, reliability diagram, ... for the best and the final weights
            from logitlab.reports import log_figures, log_graph

            log_graph(writer, model, data.train[0])
            log_figures(writer, model, *data.test, data.class_names, s["best"]["epoch"], "test_best")
        model.load_state_dict(current)  # leave the caller the final weights, as trained
        if self.figures:
            log_figures(writer, model, *data.test, data.class_names, self.epochs, "test")
        writer.add_scalar("test/loss", test_loss, self.epochs)
        writer.add_scalar("test/acc", test_acc, self.epochs)
        last = s["history"][-1]
        return {
            "test/acc": test_acc, "test/loss": test_loss,
            "val/acc": s["best"]["val/acc"], "val/loss": s["best"]["val/loss"], "best_epoch": s["best"]["epoch"],
            "train/loss": last["train/loss"], "train/acc": last["train/acc"],
            "epochs": len(s["history"]), "train_seconds": round(s["train_seconds"], 3),
            "params": sum(p.numel() for p in model.parameters()),
        }

    # ------------------------------------------------------------------ helpers
    def _make_schedule(self, schedule, opt, steps_per_epoch):
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

    def _catch_signals(self) -> dict:
        """SIGINT/SIGTERM/SIGUSR1 finish the current step, then `fit` checkpoints and raises Interrupted."""
        self._signal = None

        def handler(signum, frame):
            self._signal = signum

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

    def _restore_signals(self, old: dict) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _make_optimizer(factory: Callable, params: list) -> torch.optim.Optimizer:
    """`factory(params)` with the optimizer's fused kernel where it has one for these parameters: one kernel
    over all of them instead of a Python loop (Adam's step on a small CPU model is 2x faster). A config that
    picks an implementation itself (`fused` or `foreach`) is left alone."""
    keywords = getattr(factory, "keywords", None) or {}
    if "fused" in keywords or "foreach" in keywords or "fused" not in inspect.signature(factory).parameters:
        return factory(params)
    try:
        return factory(params, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device, dtype or option combination
        return factory(params)


def _grad_resetter(opt: torch.optim.Optimizer) -> Callable[[], None]:
    """`opt.zero_grad(set_to_none=True)`; for torch's own zero_grad, done here directly: its profiler and
    dynamo wrappers cost ~10 us a step, 3% of a small model's step on CPU."""
    if type(opt).zero_grad is not torch.optim.Optimizer.zero_grad:  # an optimizer with its own: use it
        return lambda: opt.zero_grad(set_to_none=True)
    params = [p for group in opt.param_groups for p in group["params"]]

    def zero_grad() -> None:
        for p in params:
            p.grad = None
    return zero_grad


def _copied(obj):
    """`obj` with every tensor cloned (a state_dict that training would otherwise change under it)."""
    if isinstance(obj, Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        out = type(obj)((k, _copied(v)) for k, v in obj.items())
        if hasattr(obj, "_metadata"):  # a module state_dict's layer versions, read by load_state_dict
            out._metadata = obj._metadata
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copied(v) for v in obj)
    return obj


def _channels_last(data: SplitData) -> SplitData:
    nhwc = lambda xy: (xy[0].contiguous(memory_format=torch.channels_last), xy[1])  # noqa: E731
    return replace(data, train=nhwc(data.train), val=nhwc(data.val), test=nhwc(data.test))


def _progress_bar(enabled: bool, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="epoch", dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))


def _log_epoch(writer, metrics: dict, epoch: int, model: nn.Module | None) -> None:
    from tensorboard.compat.proto.summary_pb2 import Summary

    # one event holding every scalar (TensorBoard reads it as add_scalar's one per tag, at a fifth of the cost)
    values = [Summary.Value(tag=tag, simple_value=value) for tag, value in metrics.items()]
    writer.file_writer.add_summary(Summary(value=values), epoch)
    if model is not None:
        for name, p in model.named_parameters():
            writer.add_histogram(f"weights/{name}", p.detach(), epoch)


def _write_hparams(writer, hparams: dict) -> None:
    """The HParams entry, in the run's own directory (not the timestamped sub-run that
    SummaryWriter.add_hparams makes) so TensorBoard over a sweep directory compares every run."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
    metrics = {tag: 0.0 for tag in ("val/acc", "val/loss", "test/acc", "test/loss", "train/loss")}
    for summary in hparams_summary(clean, metrics):
        writer.file_writer.add_summary(summary)
