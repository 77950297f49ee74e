"""Fused groups: the jobs of a sweep that differ only in values that keep tensor shapes (seed, optimizer
hyperparameters, dropout, label smoothing, gradient clipping, patience) train as one stacked model
(stacked.py) in one process, and each job's directory ends up as its solo run's would: the same
checkpoints (a variant resumes alone or in a group), TensorBoard events, history.csv, metrics.json.

A variant that diverges, is pruned (its hook raises) or stops early leaves the stack at that epoch's
end; the others go on. The loop mirrors Trainer.fit epoch for epoch and reuses its parts (optimizer
and schedule construction, checkpoint restore and its refusals, the checkpoint writer)."""
from __future__ import annotations

import logging
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from logitlab.fused.stacked import StackedModel, StackedOptimizer, clip_grad_norms, cross_entropy
from logitlab.reporting.scoring import as_float
from logitlab.trainer import checkpoint, feed, runtime
from logitlab.trainer.console import epoch_line, run_summary
from logitlab.trainer.loop import Diverged, Interrupted, Trainer
from logitlab.trainer.optimizer import make_optimizer
from logitlab.trainer.state import Position, Randomness, Record, augment_stream, copied

log = logging.getLogger("logitlab")

@dataclass
class Member:
    """One job of a group, built as its solo run builds it."""

    trainer: Trainer  # its own label_smoothing, grad_clip, patience; the group's other settings agree
    model: torch.nn.Module
    data: Any
    optimizer: Callable
    schedule: Callable | None
    seed: int
    config: dict
    run_dir: Path
    dropout: torch.Generator  # torch's global RNG as it stood after the model was built: the solo run's dropout
    augment: Any = None  # the group's augmentation (data/augment.py); each member draws from its own stream
    max_resident_gb: float | str = "auto"
    board: Any = None
    hooks: tuple = ()
    lines: logging.Logger = log
    # made by fit_group
    stateful: dict = field(default_factory=dict)
    writer: Any = None
    schedule_per_step: bool = False
    result: Any = None  # its Record, or the exception that ended it


def fit_group(members: list[Member]) -> None:
    """Train every member; each ends with `result` set to its Record or to what stopped it. A signal
    checkpoints every member and raises Interrupted, as Trainer.fit does."""
    lead, first = members[0].trainer, members[0]
    data = first.data
    if first.augment is not None:
        first.augment.check(data.input_shape, data.name)
    keep = feed.resident(data.stored_bytes, lead.device, first.max_resident_gb,
                         what=f"{data.name} {str(data.train[0].dtype).removeprefix('torch.')}")
    data = data.to(lead.device, inputs=keep)
    inputs = feed.TrainInputs(data.train[0], lead.device, streamed=not keep)
    n, bs = len(data.train[0]), lead.batch_size
    steps = math.ceil(n / bs)
    lead.use_threads(len(members) * runtime.work_per_step(members[0].model, data.input_shape, bs))
    for m in members:
        _prepare(m, data, steps, len(members))
    old_handlers = lead.catch_signals()
    try:
        pending = [m for m in members if m.result is None]
        while pending:  # members resumed at different positions train in separate stacks
            at = (pending[0].stateful["position"].epoch, pending[0].stateful["position"].step)
            together = [m for m in pending if (m.stateful["position"].epoch, m.stateful["position"].step) == at]
            _train_together(lead, together, data, inputs, steps)
            pending = [m for m in pending if m.result is None]
    finally:
        for m in members:
            m.writer.close()
        lead.restore_signals(old_handlers)


def _prepare(m: Member, data, steps: int, group_size: int) -> None:
    t = m.trainer
    m.model.to(t.device)
    ckpt_dir = m.run_dir / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    opt = make_optimizer(m.optimizer, list(m.model.parameters()))
    sched, m.schedule_per_step = t.make_schedule(m.schedule, opt, steps)
    pos, record = Position(labels=data.train[1], batch_size=t.batch_size), Record()
    rng = Randomness(torch.Generator().manual_seed(m.seed), m.dropout,
                     augment=augment_stream(m.seed) if m.augment is not None else None)
    m.stateful = dict(model=m.model, optimizer=opt, rng=rng, position=pos, record=record, **({"schedule": sched} if sched is not None else {}))
    resumed = t.restore(m.stateful, checkpoint.latest(ckpt_dir), m.config, ckpt_dir)
    m.writer = checkpoint.Writer(ckpt_dir, t.checkpoint_every_s, share=group_size)
    if m.board is not None:
        m.board.start(pos.epoch, resumed)
    if pos.epoch >= t.epochs or record.stopped_early:
        m.result = record
    elif not pos.epoch and not pos.step:
        m.lines.info(run_summary(m.model, data, t.device, steps, t.batch_size))
        m.writer.write(_snapshot(m), best=True)


def _snapshot(m: Member) -> dict:
    return {**{k: copied(v.state_dict()) for k, v in m.stateful.items()}, "config": m.config}


def _train_together(lead: Trainer, members: list[Member], data, inputs: feed.TrainInputs, steps: int) -> None:
    x, y = data.train
    sizes = torch.full((steps,), float(bs := lead.batch_size), device=lead.device)
    sizes[-1] = len(x) - bs * (steps - 1)
    while members:
        # variants whose optimizer hyperparameters agree side by side: each such run steps in one kernel call
        members = sorted(members, key=lambda m: repr(StackedOptimizer.hyperparameters(m.stateful["optimizer"])))
        stack = StackedModel([m.model for m in members], [m.stateful["rng"].dropout for m in members])
        opt = StackedOptimizer(list(stack.weights), [m.stateful["optimizer"] for m in members])
        dtype = stack.weights[0].dtype
        smoothing = _per_variant([m.trainer.label_smoothing for m in members], 0.0, dtype, lead.device)
        clips = _per_variant([m.trainer.grad_clip or math.inf for m in members], math.inf, dtype, lead.device)
        while not any(m.result is not None for m in members):
            started = time.perf_counter()
            losses, right = _train_epoch(lead, stack, opt, members, data, inputs, steps, smoothing, clips)
            if lead.signal_received is not None:
                _checkpoint_all(stack, members, losses, right)
                raise Interrupted(lead.signal_received, f"stopped by {signal.Signals(lead.signal_received).name} in epoch "
                                  f"{members[0].stateful['position'].epoch + 1}; every job of the fused group "
                                  f"checkpointed")
            _end_epoch(lead, stack, opt, members, data, sizes.to(losses) @ losses, right,
                       time.perf_counter() - started)
        for i, m in enumerate(members):
            stack.write_variant(i, m.model)  # the ones going on restack from their solo models
        members = [m for m in members if m.result is None]


def _per_variant(values: list[float], neutral: float, dtype: torch.dtype, device) -> torch.Tensor | None:
    """The members' values as one (N,) tensor in the weights' dtype (a float64 stack's 0.1 is the solo run's
    0.1, not float32's); None where every member has the neutral value."""
    if all(v == neutral for v in values):
        return None
    return torch.tensor(values, dtype=dtype, device=device)


def _train_epoch(lead: Trainer, stack, opt, members, data, inputs: feed.TrainInputs, steps, smoothing, clips):
    """The rest of this epoch for every member; returns the (steps, N) batch losses and (N,) right counts
    so far (a resumed epoch's earlier steps included)."""
    y = data.train[1]
    bs, n = lead.batch_size, len(y)
    augment = members[0].augment
    positions = [m.stateful["position"] for m in members]
    if positions[0].perm is None and lead.signal_received is not None:
        # arrived between epochs: stop before the next order is drawn (a checkpoint at step 0 keeps no
        # order, so drawing one would leave the shuffle generator a permutation ahead of the resume)
        return torch.zeros(0, len(members), device=y.device), torch.zeros(len(members), dtype=torch.long, device=y.device)
    if positions[0].perm is None:
        for m, pos in zip(members, positions):
            pos.perm = torch.randperm(n, generator=m.stateful["rng"].shuffle).to(y.device)
            pos.losses, pos.preds, pos.correct = [], [], None
    perms = torch.stack([p.perm for p in positions])
    host_perms = perms.cpu() if inputs.streamed else perms
    first = positions[0].step
    losses = [torch.stack([p.losses[s] for p in positions]) for s in range(first)]  # a resumed epoch's steps
    right = torch.stack([p.correct for p in positions]) if first else torch.zeros(len(members), dtype=torch.long,
                                                                                  device=y.device)
    preds, step = [], first
    with inputs.batches(lambda s: host_perms[:, s * bs:(s + 1) * bs].flatten(), range(first, steps)) as batches:
        for step, xb in zip(range(first, steps), batches):
            if lead.signal_received is not None:
                break
            idx = perms[:, step * bs:(step + 1) * bs]  # (N, B)
            if augment is not None:  # each member's draws from its own stream, as its solo run draws them
                size = min(bs, n - step * bs)
                xb = augment.apply(xb, torch.cat([augment.draw(size, m.stateful["rng"].augment) for m in members]))
            xb = data.inputs(xb)
            logits = stack(xb.view(*idx.shape, *xb.shape[1:]))
            loss = cross_entropy(logits, y[idx], smoothing)  # (N,)
            opt.zero_grad()
            loss.sum().backward()  # the sum: each variant's gradient is its own loss's
            if clips is not None:
                clip_grad_norms(list(stack.weights), clips)
            opt.step()
            if members[0].schedule_per_step:
                for m in members:
                    m.stateful["schedule"].step()
                opt.read_hyperparameters()
            losses.append(loss.detach())
            preds.append(logits.argmax(-1))
            step += 1
    for pos in positions:
        pos.step = step
    if preds:
        right = right + (torch.cat(preds, 1) == y[perms[:, first * bs:step * bs]]).sum(1)
    return torch.stack(losses) if losses else torch.zeros(0, len(members), device=y.device), right


def _checkpoint_all(stack, members, losses, right) -> None:
    for i, m in enumerate(members):
        stack.write_variant(i, m.model)
        pos = m.stateful["position"]
        pos.losses, pos.preds, pos.correct = list(losses[:, i].unbind()), [], right[i]
        m.writer.write(_snapshot(m), wait=True)


@torch.no_grad()
def _val_scores(stack, data, batch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,) summed cross-entropy and right predictions on the validation split, in eval mode, in chunks
    of `batch` examples (trainer.eval_batch_size)."""
    xv, yv = data.val
    stack.eval()
    try:
        loss, right = 0, 0
        for i in range(0, len(xv), batch):
            # (N, B, C), as scoring.logits gives them
            z = as_float(stack(data.inputs(xv[i:i + batch].to(device)), shared=True))
            yb = yv[i:i + batch].expand(len(z), -1)
            loss = loss + -z.log_softmax(-1).gather(-1, yb.unsqueeze(-1)).squeeze(-1).sum(1)
            right = right + (z.argmax(-1) == yb).sum(1)
    finally:
        stack.train()
    return loss, right


def _end_epoch(lead, stack, opt, members, data, loss_sums, right, seconds) -> None:
    """Score every member's epoch with one host sync, then record, log, checkpoint and hook each, as
    Trainer.fit does; a member that diverged, stopped early, was pruned or finished gets its result."""
    n, n_val = len(data.train[0]), len(data.val[0])
    val_loss, val_right = _val_scores(stack, data, lead.eval_batch_size, lead.device)
    table = torch.stack([loss_sums, right.to(loss_sums), val_loss, val_right.to(loss_sums)]).T.tolist()
    stepped = False
    for i, (m, (loss_sum, right_i, vl, vr)) in enumerate(zip(members, table)):
        t, pos, record = m.trainer, m.stateful["position"], m.stateful["record"]
        opt_i, sched = m.stateful["optimizer"], m.stateful.get("schedule")
        lr = opt_i.param_groups[0]["lr"]
        if not math.isfinite(loss_sum):
            m.result = Diverged(f"training loss became {loss_sum / n} in epoch {pos.epoch + 1}; try a lower "
                                f"optim.lr (now {lr:g}), trainer.grad_clip=1.0 or trainer.precision=fp32; the "
                                f"last checkpoints hold the weights before it")
            continue
        if sched is not None and not m.schedule_per_step:
            sched.step()
            stepped = True
        pos.next_epoch()
        metrics = {"train/loss": loss_sum / n, "train/acc": right_i / n, "val/loss": vl / n_val,
                   "val/acc": vr / n_val, "lr": lr, "seconds": seconds / len(members)}  # its share of the epoch
        record.train_seconds += metrics["seconds"]
        record.history.append(metrics)
        improved = t.selection.better(metrics[t.selection.name], record.best and record.best[t.selection.name])
        if improved:
            record.best = dict(metrics, epoch=pos.epoch)
        record.stopped_early = bool(t.patience) and record.best is not None \
            and pos.epoch - record.best["epoch"] >= t.patience
        m.lines.info(epoch_line(pos.epoch, t.epochs, metrics) + ("  (stopping early)" if record.stopped_early else ""))
        if m.board is not None:
            m.board.epoch(pos.epoch, metrics)
        done = pos.epoch == t.epochs or record.stopped_early

        def snapshot(i=i, m=m):
            stack.write_variant(i, m.model)
            return _snapshot(m)
        m.writer.epoch_end(snapshot, improved, final=done, then=m.board.flush if m.board is not None else None)
        try:
            for hook in m.hooks:
                hook(pos.epoch, metrics)
        except Exception as e:  # a pruner's TrialPruned: this member stops, the others go on
            m.writer.wait()
            m.result = e
            continue
        if done:
            m.result = record
    if stepped:
        opt.read_hyperparameters()
    log.info(f"fused group of {len(members)}: epoch {members[0].stateful['position'].epoch}/{lead.epochs} "
             f"in {seconds:.2f}s, {sum(m.result is not None for m in members)} ending")

