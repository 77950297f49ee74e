"""Everything a run writes for TensorBoard, in the run's own directory: per-epoch scalars (and weight
histograms), the HParams entry, and after training the test scores, figures and model graph of the
weights that were scored. Figures never fail a run: one that cannot be drawn costs itself and a warning.

HParams over a sweep directory: each run writes only its session start info (its hyperparameters, typed
and flattened) and, when it ends, a session end info (its status). No run writes an `_hparams_/experiment`:
TensorBoard takes the first one it finds, so one run's columns would hide the others'. Without it the
hparams plugin (backend_context._compute_experiment_from_runs) builds the experiment itself: the union of
every session's hparams, and every scalar tag of those runs as a metric, shown at its last value; the
`best/` tags hold the values the run returns and the sweeper ranks by."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from logitlab.reporting import diagnostics
from logitlab.reporting.scoring import probabilities

# HParams has four statuses (api.proto: UNKNOWN, SUCCESS, FAILURE, RUNNING); a pruned trial is not a
# success, so it is FAILURE there, told apart from a failed one by its `status/pruned` scalar.
STATUSES = {"COMPLETE": "STATUS_SUCCESS", "PRUNED": "STATUS_FAILURE", "FAIL": "STATUS_FAILURE"}


def warn(message: str) -> None:
    """On the console and in train.log (Hydra's logging), as every message of a run."""
    logging.getLogger("logitlab").warning(message)


class RunBoard:
    """A run's TensorBoard writer. `start(epoch)` opens it where training resumes: events after that
    epoch (written before a crash, never checkpointed) are purged."""

    def __init__(self, run_dir: str | Path, hparams: dict | None = None):
        self.run_dir, self.hparams = Path(run_dir), hparams or {}
        self.writer = None

    def start(self, epoch: int, resumed: bool = False) -> None:
        """Open the event file; a resumed run (even one resuming at epoch 0, from the initial weights) hides
        the events of epochs after `epoch` that an earlier, killed process had already flushed."""
        from torch.utils.tensorboard import SummaryWriter  # lazy: only runs that train pay for it

        self.writer = SummaryWriter(str(self.run_dir), purge_step=epoch + 1 if resumed else None)
        if not resumed:
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
             scores: dict, figures: bool | str) -> None:
        """The end of a finished run: `scores` (test/ scores of `model`, the weights of best.pt, and the
        best/ values the run returns) as scalars, its figures and graph, and the HParams status SUCCESS.
        figures="background": drawn by a child process after the run has ended (draw_in_background)."""
        if self.writer is None:
            self.start(step, resumed=bool(step))
        for tag, value in {**scores, "status/pruned": 0.0}.items():
            self.writer.add_scalar(tag, value, step)
        if figures == "background" and draw_in_background(self.run_dir, model, x, y, class_names, step):
            figures = False
        if figures:
            self._guarded("test figures", lambda: log_figures(self.writer, model, x, y, class_names, step, "test"))
            self._guarded("model graph", lambda: log_graph(self.writer, model, x))
        self.writer.file_writer.add_summary(_session_end("COMPLETE"), step)
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
        """The HParams session start, in the run's own directory (not the timestamped sub-run that
        SummaryWriter.add_hparams makes) so TensorBoard over a sweep directory compares every run."""
        self.writer.file_writer.add_summary(_session_start(self.hparams))


FIGURES_PENDING = "figures.pid"  # in a run directory while a child process draws its figures


def draw_in_background(run_dir: Path, model: nn.Module, x: Tensor, y: Tensor, class_names: list[str],
                       step: int) -> bool:
    """Fork a child that draws the test figures and the model graph (2-3 s of matplotlib and tracing,
    more than a small run's training) into an event file of its own, then exits; the run ends without
    waiting. <run_dir>/figures.pid holds the child's pid until it is done. False where that cannot be
    done (no fork; a model on a GPU, whose context a child cannot share): then draw them in place."""
    import os

    if not hasattr(os, "fork") or x.device.type != "cpu" or next(model.parameters()).device.type != "cpu":
        return False
    marker = Path(run_dir) / FIGURES_PENDING
    marker.write_text("")
    pid = os.fork()
    if pid:
        logging.getLogger("logitlab").info(f"figures: drawing in the background into {run_dir} (pid {pid})")
        return True
    try:  # the child: no output of its own, one thread, its own event file (named by its pid)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        torch.set_num_threads(1)  # the parent's OpenMP threads do not exist here
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir))
        log_figures(writer, model, x, y, class_names, step, "test")
        log_graph(writer, model, x)
        writer.close()
    except BaseException as e:  # a figure is a view of the run: say so in its log, never more
        try:
            with open(Path(run_dir) / "figures.error", "w") as f:
                f.write(f"{type(e).__name__}: {_first_line(e)}\n")
        except OSError:
            pass
    finally:
        marker.unlink(missing_ok=True)
        os._exit(0)


def record_status(run_dir: str | Path, status: str, step: int = 0) -> None:
    """Append how a job ended to its run's TensorBoard events: `status` is COMPLETE, PRUNED or FAIL
    (Optuna's names); INTERRUPTED and RUNNING (a job that will resume) write nothing, nor does a job that
    never started a run here. TensorBoard keeps a run's first session end info, and a finished run wrote
    COMPLETE itself, with its scores, so calling this after every job is safe."""
    from torch.utils.tensorboard import SummaryWriter

    if status not in (*STATUSES, "INTERRUPTED", "RUNNING"):
        raise ValueError(f"status={status!r}: expected one of {', '.join(STATUSES)}")
    if status not in ("PRUNED", "FAIL") or not any(Path(run_dir).glob("events.out.tfevents.*")):
        return
    writer = SummaryWriter(str(run_dir))
    try:
        writer.add_scalar("status/pruned", float(status == "PRUNED"), step)
        writer.file_writer.add_summary(_session_end(status), step)
    finally:
        writer.close()


def flat_hparams(hparams: dict) -> dict:
    """HParams columns: nested dicts by dotted key; a list keeps its string (`model.hidden` "[64, 32]") and
    adds its depth and each element (`model.hidden.depth` 2, `model.hidden.0` 64, `model.hidden.1` 32);
    None becomes "none". Numbers and booleans stay what they are."""
    out = {}
    for key, value in hparams.items():
        if isinstance(value, dict):
            out.update(flat_hparams({f"{key}.{k}": v for k, v in value.items()}))
        elif isinstance(value, (list, tuple)):
            out[key] = str(list(value))
            out[f"{key}.depth"] = len(value)
            out.update(flat_hparams({f"{key}.{i}": v for i, v in enumerate(value)}))
        elif value is None:
            out[key] = "none"
        elif isinstance(value, (bool, int, float, str)):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def _session_start(hparams: dict):
    from google.protobuf.struct_pb2 import Value
    from tensorboard.plugins.hparams import metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionStartInfo()
    for key, value in flat_hparams(hparams).items():
        if isinstance(value, bool):  # before int: True is an int
            info.hparams[key].CopyFrom(Value(bool_value=value))
        elif isinstance(value, (int, float)):
            info.hparams[key].CopyFrom(Value(number_value=value))
        else:
            info.hparams[key].CopyFrom(Value(string_value=value))
    return _hparams_summary(metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(
        session_start_info=info, version=metadata.PLUGIN_DATA_VERSION))


def _session_end(status: str):
    import time

    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(STATUSES[status]), end_time_secs=time.time())
    return _hparams_summary(metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(
        session_end_info=info, version=metadata.PLUGIN_DATA_VERSION))


def _hparams_summary(tag: str, data):
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import metadata

    plugin = SummaryMetadata.PluginData(plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString())
    return Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])


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
    cm = diagnostics.confusion_matrix(y, pred, len(class_names))
    cal = diagnostics.calibration(probs, y)
    writer.add_image(f"{prefix}/confusion_matrix",
                     diagnostics.to_image(diagnostics.plot_confusion_matrix(cm, class_names)),
                     step, dataformats="HWC")
    writer.add_image(f"{prefix}/reliability", diagnostics.to_image(diagnostics.plot_reliability(cal)), step,
                     dataformats="HWC")
    writer.add_scalar(f"{prefix}/ece", cal["ece"], step)
    for name, recall in zip(class_names, diagnostics.per_class(cm)["recall"].tolist()):
        writer.add_scalar(f"{prefix}/class_acc/{name}", recall, step)
    writer.add_histogram(f"{prefix}/max_prob", conf, step, bins=np.linspace(0, 1, 21))
    if (pred != y).any():
        writer.add_histogram(f"{prefix}/max_prob_wrong", conf[pred != y], step, bins=np.linspace(0, 1, 21))
    for name, p in model.named_parameters():
        writer.add_histogram(f"{prefix}/weights/{name}", p.detach().float().cpu(), step)
    if x.dim() == 4:
        grid = diagnostics.plot_misclassified(x.cpu(), y, probs, class_names)
        if grid is not None:
            writer.add_image(f"{prefix}/misclassified", diagnostics.to_image(grid), step, dataformats="HWC")


def log_graph(writer, model: nn.Module, example_x: Tensor) -> None:
    """The model's graph for TensorBoard's Graphs tab, traced in eval mode on two examples."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # add_graph traces with torch.jit, which warns it is deprecated
            # traced here without torch's check of the trace, which runs the model again and loads
            # torch.distributed.tensor to compare (0.9 s); add_graph takes the traced module as it is
            traced = torch.jit.trace(model, example_x[:2], check_trace=False)
            writer.add_graph(traced, example_x[:2])
    finally:
        model.train(was_training)
