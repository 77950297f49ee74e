"""The end of a run: best.pt's weights scored on the test split, and the numbers metrics.json keeps.
Every split's metric in metrics.json is the best epoch's, so all of them describe one set of weights,
the ones in checkpoints/best.pt (and TensorBoard's test/ tags show the same)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from logitlab.data.splits import SplitData
from logitlab.reporting.scoring import EVAL_BATCH, loss_and_accuracy
from logitlab.trainer import checkpoint
from logitlab.trainer.objective import Objective


def final_metrics(model: nn.Module, data: SplitData, run_dir: Path, record, objective: Objective,
                  board=None, figures: bool | str = True, eval_batch_size: int = EVAL_BATCH) -> dict:
    """Load best.pt into `model`, score it on the test split (in chunks of `eval_batch_size`), log that to
    `board`, and return the run's metrics. `record` is the trainer's Record (history, best epoch, seconds)."""
    device = next(model.parameters()).device
    best = checkpoint.load(Path(run_dir) / "checkpoints" / "best.pt", map_location=device)
    model.load_state_dict(best["model"])
    x, y = data.test  # where they rest: on the device, or on the host for a streamed run
    test_loss, test_acc = loss_and_accuracy(model, x, y, prepare=data.inputs, batch=eval_batch_size)
    epochs = len(record.history)
    chosen = record.best or dict(record.history[-1], epoch=epochs)  # no epoch improved on NaN
    if board is not None:  # best/: the values the run returns and a sweep ranks by, as HParams metrics
        scores = {"test/acc": test_acc, "test/loss": test_loss}
        best = {"val/acc": chosen["val/acc"], "val/loss": chosen["val/loss"], **scores}
        # the figures' inputs, whole on the device: a test split is held out small enough to plot
        board.test(model, data.inputs(x.to(device)), y.to(device), data.class_names, epochs, {**scores, **{f"best/{k}": v for k, v in best.items()}},
                   figures)
    return {
        "objective": objective.name, "direction": objective.direction,
        "test/acc": test_acc, "test/loss": test_loss,
        **{k: chosen[k] for k in ("val/acc", "val/loss", "train/acc", "train/loss")},
        "best_epoch": chosen["epoch"], "epochs": epochs, "stopped_early": record.stopped_early,
        "train_seconds": round(record.train_seconds, 3),
        "params": sum(p.numel() for p in model.parameters()),
        "normalisation": {"mean": data.normalisation.mean.tolist(), "std": data.normalisation.std.tolist()},
    }
