"""Everything a run writes for TensorBoard, in the run's own directory: per-epoch scalars (and weight
histograms), the HParams entry, and after training the test scores, figures and model graph of the
weights that were scored. Figures never fail a run: one that cannot be drawn costs itself and a warning."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from logitlab import reports
from logitlab.scoring import probabilities

HPARAM_METRICS = ("val/acc", "val/loss", "test/acc", "test/loss", "train/loss")


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class RunBoard:
    """A run's TensorBoard writer. `start(epoch)` opens it where training resumes: events after that
    epoch (written before a crash, never checkpointed) are purged."""

    def __init__(self, run_dir: str | Path, hparams: dict | None = None):
        self.run_dir, self.hparams = Path(run_dir), hparams or {}
        self.writer = None

    def start(self, epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter  # lazy: only runs that train pay for it

        self.writer = SummaryWriter(str(self.run_dir), purge_step=epoch + 1 if epoch else None)
        if not epoch:
            self._write_hparams()

    def epoch(self, epoch: int, metrics: dict, model: nn.Module | None = None) -> None:
        """One event holding every scalar (TensorBoard reads it as add_scalar's one per tag, at a fifth of
        the cost), and with `model` a histogram of each of its weights."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [Summary.Value(tag=tag, simple_value=value) for tag, value in metrics.items()]
        self.writer.file_writer.add_summary(Summary(value=values), epoch)
        if model is not None:
            for name, p in model.named_parameters():
                self.writer.add_histogram(f"weights/{name}", p.detach(), epoch)

    def flush(self) -> None:
        self.writer.flush()

    def test(self, model: nn.Module, x: Tensor, y: Tensor, class_names: list[str], step: int,
             scores: dict, figures: bool) -> None:
        """The test scores of `model` (the weights of best.pt) under test/, with its figures and graph."""
        if self.writer is None:
            self.start(step)
        for tag, value in scores.items():
            self.writer.add_scalar(tag, value, step)
        if figures:
            self._guarded("test figures", lambda: log_figures(self.writer, model, x, y, class_names, step, "test"))
            self._guarded("model graph", lambda: log_graph(self.writer, model, x))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _guarded(self, what: str, draw) -> None:
        try:
            draw()
        except Exception as e:  # a figure is a view of the run, never a reason to lose it
            warn(f"{what} left out of TensorBoard ({type(e).__name__}: {_first_line(e)})")

    def _write_hparams(self) -> None:
        """The HParams entry, in the run's own directory (not the timestamped sub-run that
        SummaryWriter.add_hparams makes) so TensorBoard over a sweep directory compares every run."""
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in self.hparams.items()}
        for summary in hparams_summary(clean, {tag: 0.0 for tag in HPARAM_METRICS}):
            self.writer.file_writer.add_summary(summary)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


@torch.no_grad()
def log_figures(writer, model: nn.Module, x: Tensor, y: Tensor, class_names: list[str], step: int,
                prefix: str) -> None:
    """How `model` does on (x, y), under `prefix/`: confusion_matrix and reliability images, class_acc/<name>
    and ece scalars, max_prob (and max_prob_wrong) histograms of the max softmax probability,
    weights/<parameter> histograms, and for image data (x of shape (N, C, H, W)) a misclassified grid."""
    probs = probabilities(model, x).cpu()
    y = y.cpu()
    conf, pred = probs.max(dim=1)
    cm = reports.confusion_matrix(y, pred, len(class_names))
    cal = reports.calibration(probs, y)
    writer.add_image(f"{prefix}/confusion_matrix", reports.to_image(reports.plot_confusion_matrix(cm, class_names)),
                     step, dataformats="HWC")
    writer.add_image(f"{prefix}/reliability", reports.to_image(reports.plot_reliability(cal)), step, dataformats="HWC")
    writer.add_scalar(f"{prefix}/ece", cal["ece"], step)
    for name, recall in zip(class_names, reports.per_class(cm)["recall"].tolist()):
        writer.add_scalar(f"{prefix}/class_acc/{name}", recall, step)
    writer.add_histogram(f"{prefix}/max_prob", conf, step, bins=np.linspace(0, 1, 21))
    if (pred != y).any():
        writer.add_histogram(f"{prefix}/max_prob_wrong", conf[pred != y], step, bins=np.linspace(0, 1, 21))
    for name, p in model.named_parameters():
        writer.add_histogram(f"{prefix}/weights/{name}", p.detach().float().cpu(), step)
    if x.dim() == 4:
        grid = reports.plot_misclassified(x.cpu(), y, probs, class_names)
        if grid is not None:
            writer.add_image(f"{prefix}/misclassified", reports.to_image(grid), step, dataformats="HWC")


def log_graph(writer, model: nn.Module, example_x: Tensor) -> None:
    """The model's graph for TensorBoard's Graphs tab, traced in eval mode on two examples."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # add_graph traces with torch.jit, which warns it is deprecated
            writer.add_graph(model, example_x[:2])
    finally:
        model.train(was_training)
