"""The training loop: data resident on the device, a batch is a shuffled index and a slice, the loss is
`cross_entropy` on raw logits, and the host syncs once per epoch (metrics, divergence check, checkpoint).

A run can stop at any moment and continue bit for bit: checkpoints/last.pt holds the model, optimizer,
schedule, RNG states and the position (epoch, and step inside an epoch cut short by a signal).
"""
from __future__ import annotations

import inspect
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from logitlab import ConfigError, checkpoint
from logitlab.data import SplitData

EVAL_BATCH = 4096
_SIGNALS = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGUSR1] if hasattr(signal, "SIGUSR1") else [])


class Diverged(ConfigError):
    """The training loss became NaN or infinite."""


class Interrupted(Exception):
    """A signal stopped training; a resumable checkpoint has been written."""

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


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, autocast=None) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and accuracy over (x, y), as 0-d tensors (no host sync)."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    for i in range(0, len(x), EVAL_BATCH):
        with autocast or torch.autocast(x.device.type, enabled=False):
            logits = model(x[i:i + EVAL_BATCH]).float()
        loss_sum += F.cross_entropy(logits, y[i:i + EVAL_BATCH], reduction="sum")
        correct += (logits.argmax(1) == y[i:i + EVAL_BATCH]).sum()
    model.train(was_training)
    return loss_sum / len(x), correct / len(x)


@dataclass
class _Position:
    """Where training stands: `epoch` epochs are done; inside the next one, `step` batches of `perm`."""
    epoch: int = 0
    step: int = 0
    perm: Tensor | None = None
    losses: list[Tensor] = field(default_factory=list)
    correct: Tensor | None = None


class Trainer:
    def __init__(self, epochs: int = 30, batch_size: int = 64, label_smoothing: float = 0.0,
                 grad_clip: float | None = None, device: str = "auto", precision: str = "fp32",
                 compile: bool = False, deterministic: bool = False, progress: bool = True,
                 objective: str = "val/acc", checkpoint_every_s: float = 0.0, histograms: bool = False):
        for key, value in (("epochs", epochs), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"trainer.{key}={value!r} must be a positive integer")
        if not 0 <= label_smoothing < 1:
            raise ConfigError(f"trainer.label_smoothing={label_smoothing} must be in [0, 1)")
        if grad_clip is not None and not grad_clip > 0:
            raise ConfigError(f"trainer.grad_clip={grad_clip} must be positive, or null for no clipping")
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"trainer.precision={precision!r} is not known; valid: fp32, bf16")
        self.epochs, self.batch_size = epochs, batch_size
        self.label_smoothing, self.grad_clip = label_smoothing, grad_clip
        self.device = pick_device(device)
        self.precision, self.compile, self.deterministic = precision, compile, deterministic
        self.progress, self.objective = progress, objective
        self.checkpoint_every_s, self.histograms = checkpoint_every_s, histograms
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
        steps_per_epoch = math.ceil(len(data.train[0]) / self.batch_size)
        opt = optimizer(model.parameters())
        sched, sched_per_step = self._make_schedule(schedule, opt, steps_per_epoch)
        shuffle_rng = torch.Generator().manual_seed(seed)

        self.state = dict(model=model, optimizer=opt, schedule=sched, shuffle_rng=shuffle_rng,
                          config=config or {}, ckpt_dir=ckpt_dir, history=[], best=None,
                          train_seconds=0.0, saved_at=0.0)
        pos = self._restore(checkpoint.latest(ckpt_dir))
        if not pos.epoch and not pos.step:  # the initial weights: a run that diverges at once keeps them
            self._save(pos, ckpt_dir / "last.pt")
            checkpoint.copy(ckpt_dir / "last.pt", ckpt_dir / "best.pt")

        from torch.utils.tensorboard import SummaryWriter  # lazy: only runs that train pay for it

        writer = SummaryWriter(str(run_dir), purge_step=pos.epoch + 1 if pos.epoch else None)
        if not pos.epoch and not pos.step:
            _write_hparams(writer, hparams or {})
        step_model = torch.compile(model) if self.compile else model
        old_handlers = self._catch_signals()
        bar = _progress_bar(self.progress, self.epochs, pos.epoch)
        try:
            while pos.epoch < self.epochs:
                started = time.perf_counter()
                self._train_epoch(step_model, opt, sched if sched_per_step else None, data, pos)
                if self._signal is not None:
                    self._save(pos, ckpt_dir / "last.pt")
                    raise Interrupted(self._signal, f"stopped by {signal.Signals(self._signal).name} in epoch "
                                      f"{pos.epoch + 1} at step {pos.step}; checkpoint {ckpt_dir / 'last.pt'} "
                                      f"written, rerun the same command to resume")
                metrics = self._finish_epoch(step_model, opt, sched, sched_per_step, data, pos)
                self.state["train_seconds"] += time.perf_counter() - started
                _log_epoch(writer, metrics, pos.epoch, model if self.histograms else None)
                self._checkpoint(pos, metrics)
                bar.update(1)
                bar.set_postfix_str(f"loss {metrics['train/loss']:.4f} val/acc {metrics['val/acc']:.4f}")
                if on_epoch_end is not None:
                    on_epoch_end(pos.epoch, metrics)
            final = self._test(data, writer)
        finally:
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
            pos.losses, pos.correct = [], torch.zeros((), dtype=torch.long, device=x.device)
        autocast = self._autocast()
        params = [p for p in model.parameters() if p.requires_grad] if self.grad_clip else None
        model.train()
        for step in range(pos.step, math.ceil(len(x) / bs)):
            if self._signal is not None:
                return
            idx = pos.perm[step * bs:(step + 1) * bs]
            xb, yb = x[idx], y[idx]
            with autocast:
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=self.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if params:
                nn.utils.clip_grad_norm_(params, self.grad_clip)
            opt.step()
            if step_schedule is not None:
                step_schedule.step()
            pos.losses.append(loss.detach())
            pos.correct += (logits.argmax(1) == yb).sum()
            pos.step = step + 1

    def _finish_epoch(self, model, opt, sched, sched_per_step, data: SplitData, pos: _Position) -> dict:
        n = len(data.train[0])
        losses = torch.stack(pos.losses)
        sizes = torch.full_like(losses, self.batch_size)
        sizes[-1] = n - self.batch_size * (len(losses) - 1)
        val_loss, val_acc = evaluate(model, *data.val, self._autocast())
        values = torch.stack([losses @ sizes / n, pos.correct / n, val_loss, val_acc]).tolist()  # the sync
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            bad = int((~finite).nonzero()[0])
            lr = opt.param_groups[0]["lr"]
            raise Diverged(f"training loss became {losses[bad].item()} at step {pos.epoch * len(losses) + bad + 1} "
                           f"(epoch {pos.epoch + 1}); try a lower optim.lr (now {lr:g}), trainer.grad_clip=1.0 "
                           f"or trainer.precision=fp32; the last checkpoints hold the weights before it")
        lr = opt.param_groups[0]["lr"]
        if sched is not None and not sched_per_step:
            sched.step()
        pos.epoch, pos.step, pos.perm, pos.losses, pos.correct = pos.epoch + 1, 0, None, [], None
        return dict(zip(("train/loss", "train/acc", "val/loss", "val/acc"), values), lr=lr)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, pos: _Position, metrics: dict) -> None:
        state = self.state
        state["history"].append(metrics)
        improved = state["best"] is None or metrics["val/acc"] > state["best"]["val/acc"]
        if improved:
            state["best"] = dict(metrics, epoch=pos.epoch)
        due = time.monotonic() - state["saved_at"] >= self.checkpoint_every_s
        if improved or due or pos.epoch == self.epochs:
            last = state["ckpt_dir"] / "last.pt"
            self._save(pos, last)
            if improved:
                checkpoint.copy(last, state["ckpt_dir"] / "best.pt")

    def _save(self, pos: _Position, path: Path) -> None:
        s = self.state
        rng = {"torch": torch.get_rng_state(), "shuffle": s["shuffle_rng"].get_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        mid_epoch = {}
        if pos.step:  # an epoch cut short by a signal: keep its order and partial sums
            mid_epoch = dict(perm=pos.perm.cpu(), losses=torch.stack(pos.losses).cpu(), correct=pos.correct.cpu())
        checkpoint.save(dict(
            model=s["model"].state_dict(), optimizer=s["optimizer"].state_dict(),
            schedule=s["schedule"].state_dict() if s["schedule"] else None,
            epoch=pos.epoch, step=pos.step, mid_epoch=mid_epoch, rng=rng,
            history=s["history"], best=s["best"], train_seconds=s["train_seconds"], config=s["config"],
        ), path)
        s["saved_at"] = time.monotonic()

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
        model.load_state_dict(current)  # leave the caller the final weights, as trained
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
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _catch_signals(self) -> dict:
        """SIGINT/SIGTERM/SIGUSR1 finish the current step, then `fit` checkpoints and raises Interrupted."""
        self._signal = None

        def handler(signum, frame):
            self._signal = signum

        old = {}
        try:
            for sig in _SIGNALS:
                old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals to the caller
            pass
        return old

    def _restore_signals(self, old: dict) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _progress_bar(enabled: bool, total: int, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="epoch", dynamic_ncols=True,
                disable=not (enabled and sys.stderr.isatty()))


def _log_epoch(writer, metrics: dict, epoch: int, model: nn.Module | None) -> None:
    for tag, value in metrics.items():
        writer.add_scalar(tag, value, epoch)
    if model is not None:
        for name, p in model.named_parameters():
            writer.add_histogram(f"weights/{name}", p.detach(), epoch)
    writer.flush()  # a killed run keeps every epoch it finished


def _write_hparams(writer, hparams: dict) -> None:
    """The HParams entry, in the run's own directory (not the timestamped sub-run that
    SummaryWriter.add_hparams makes) so TensorBoard over a sweep directory compares every run."""
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()}
    metrics = {tag: 0.0 for tag in ("val/acc", "val/loss", "test/acc", "test/loss", "train/loss")}
    for summary in hparams_summary(clean, metrics):
        writer.file_writer.add_summary(summary)
