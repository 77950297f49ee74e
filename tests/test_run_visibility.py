"""What a run shows as it goes, through the CLI with its output piped (not a terminal): a start-of-run
summary, one line per epoch on stderr and in train.log, history.csv, early stopping on the objective."""
from __future__ import annotations

import csv
import json
import shutil

import pytest

from conftest import figures_drawn, run_cli


@pytest.fixture(scope="module")
def stopped_early(tmp_path_factory):
    """An MLP that stops once val/acc has not improved for 2 epochs (a high learning rate makes it so), at the
    defaults otherwise: threads auto, figures drawn in the background."""
    run_dir = tmp_path_factory.mktemp("patience")
    out = run_cli("model=mlp", "optim.lr=0.05", "trainer.epochs=40", "trainer.patience=2",
                  f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr
    return run_dir, out


def test_every_epoch_is_a_line_on_stderr_and_in_train_log(stopped_early):
    run_dir, out = stopped_early
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lines = [line for line in out.stderr.splitlines() if "] - epoch " in line]
    assert len(lines) == metrics["epochs"]
    assert all(f"epoch {n}/40  train/loss " in line and " val/acc " in line and " lr " in line
               for n, line in zip(range(1, metrics["epochs"] + 1), lines))
    log = (run_dir / "train.log").read_text()
    assert [line for line in log.splitlines() if "] - epoch " in line] == lines
    assert "test/acc" in log.splitlines()[-1]  # the final line too, as before


def test_the_run_starts_with_a_summary_of_the_model_data_and_device(stopped_early):
    run_dir, _ = stopped_early
    log = (run_dir / "train.log").read_text()
    assert "MLP: 6,570 parameters" in log  # 64*64+64 + 64*32+32 + 32*10+10
    assert "net.1                Linear                 4,160" in log
    assert "device cpu, 1 torch threads" in log  # trainer.threads=auto: one for a model this small
    assert "digits: train 1258, val 180, test 359" in log and "20 steps per epoch" in log


def test_history_csv_has_a_row_per_epoch_matching_tensorboard(stopped_early):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = stopped_early
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [int(r["epoch"]) for r in rows] == list(range(1, metrics["epochs"] + 1))
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert [e.value for e in events.Scalars("val/acc")] == pytest.approx([float(r["val/acc"]) for r in rows])
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "lr", "seconds"} <= set(rows[0])


def test_early_stopping_ends_patience_epochs_after_the_best_and_says_so(stopped_early):
    run_dir, out = stopped_early
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["stopped_early"] is True and metrics["epochs"] < 40
    assert metrics["epochs"] == metrics["best_epoch"] + 2
    assert "no better val/acc in 2 epochs: stopping" in out.stderr
    again = run_cli(f"hydra.run.dir={run_dir}", "model=mlp", "optim.lr=0.05", "trainer.epochs=40",
                    "trainer.patience=2")
    assert again.returncode == 0 and "finished already" in again.stderr  # stopped is finished


def test_bad_patience_is_one_line(tmp_path):
    out = run_cli("trainer.patience=0", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: trainer.patience=0 must be a positive integer (epochs without a better objective before "
        "stopping), or null to train every epoch"]


def test_a_resume_and_a_warning_reach_train_log(trained_run, tmp_path):
    """The resume message (and any warning) goes through the run's log, not around it."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)  # conftest's MLP, 3 epochs
    (run_dir / "metrics.json").unlink()  # as if it had stopped before the end
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # and its last.pt were cut short: best.pt takes over
    out = run_cli("model=mlp", "trainer.epochs=4", "trainer.progress=false", "trainer.figures=false",
                  f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr
    log = (run_dir / "train.log").read_text()
    assert "[WARNING] - " in log and "is truncated" in log and "resuming from epoch" in log


def test_a_single_run_draws_its_figures_after_it_has_ended(stopped_early):
    """At the defaults the command does not wait for its figures (2-3 s of matplotlib and tracing): a child
    draws them into the run's TensorBoard events once the run has ended."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, done = stopped_early
    assert f"figures: drawing in the background into {run_dir}" in done.stderr
    assert (run_dir / "metrics.json").is_file()  # the run's own results are there before its figures
    figures_drawn(run_dir)
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    assert {"test/confusion_matrix", "test/reliability", "test/misclassified"} <= set(events.Tags()["images"])
    assert events.Tags()["graph"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2  # the run's, and the figures' own
