"""TensorBoard's HParams tab over a run: the values the run returns (best/ scalars), typed and flattened
hyperparameters, no per-run experiment summary (TensorBoard would show only one run's columns), and the
run's status. Read back as TensorBoard reads it: EventAccumulator and the hparams plugin's protos."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

from logitlab.reporting.tensorboard_log import flat_hparams, record_status


def _hparams_content(run_dir) -> dict:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: plugin_data_pb2.HParamsPluginData.FromString(c)
            for tag, c in events.PluginTagToContent("hparams").items()}


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """One real CLI run: an MLP of two hidden layers with batch norm, two epochs."""
    run_dir = tmp_path_factory.mktemp("mlp") / "run"
    r = subprocess.run([sys.executable, "-m", "logitlab.train", "model=mlp", "model.hidden=[16,8]",
                        "model.batch_norm=true", "seed=3", "trainer.epochs=2", "trainer.figures=false",
                        "trainer.progress=false", f"hydra.run.dir={run_dir}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return run_dir, json.loads((run_dir / "metrics.json").read_text())


def test_best_scalars_are_the_values_the_run_returns(mlp_run):
    run_dir, metrics = mlp_run
    events = EventAccumulator(str(run_dir))
    events.Reload()
    for tag in ("val/acc", "val/loss", "test/acc", "test/loss"):
        assert events.Scalars(f"best/{tag}")[-1].value == pytest.approx(metrics[tag], abs=1e-6), tag
    assert events.Scalars("status/pruned")[-1].value == 0.0


def test_hparams_are_typed_and_lists_have_depth_and_width_columns(mlp_run):
    hp = _hparams_content(mlp_run[0])["_hparams_/session_start_info"].session_start_info.hparams
    kind = {k: v.WhichOneof("kind") for k, v in hp.items()}
    assert hp["model"].string_value == "mlp" and hp["data"].string_value == "digits"
    assert kind["seed"] == "number_value" and hp["seed"].number_value == 3
    assert kind["model.batch_norm"] == "bool_value" and hp["model.batch_norm"].bool_value is True
    assert hp["model.hidden"].string_value == "[16, 8]"
    assert hp["model.hidden.depth"].number_value == 2
    assert (hp["model.hidden.0"].number_value, hp["model.hidden.1"].number_value) == (16, 8)


def test_no_run_writes_an_experiment_summary_and_a_finished_run_is_a_success(mlp_run):
    content = _hparams_content(mlp_run[0])
    assert "_hparams_/experiment" not in content  # TensorBoard builds it from every run's sessions
    assert content["_hparams_/session_end_info"].session_end_info.status == api_pb2.STATUS_SUCCESS


def test_record_status_marks_a_pruned_or_failed_run(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    from logitlab.reporting.tensorboard_log import _session_start

    for status in ("PRUNED", "FAIL"):
        run_dir = tmp_path / status
        with SummaryWriter(str(run_dir)) as w:  # a run that stopped before its end: only its start
            w.file_writer.add_summary(_session_start({"seed": 0}))
        record_status(run_dir, status)
        record_status(run_dir, "COMPLETE")  # the sweeper calls it after every job: the first status stays
        end = _hparams_content(run_dir)["_hparams_/session_end_info"].session_end_info
        assert end.status == api_pb2.STATUS_FAILURE
        events = EventAccumulator(str(run_dir))
        events.Reload()
        assert events.Scalars("status/pruned")[-1].value == float(status == "PRUNED")
    record_status(tmp_path / "never_started", "FAIL")  # a job that failed before its run began
    assert not (tmp_path / "never_started").exists()
    with pytest.raises(ValueError, match="expected one of COMPLETE, PRUNED, FAIL"):
        record_status(tmp_path / "x", "DONE")


def test_record_status_keeps_a_finished_run_a_success(mlp_run):
    record_status(mlp_run[0], "COMPLETE")
    end = _hparams_content(mlp_run[0])["_hparams_/session_end_info"].session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS


def test_flat_hparams():
    assert flat_hparams({"model.channels": [8, 16, 32], "optim": {"lr": 0.1}, "schedule": None, "x": True}) == {
        "model.channels": "[8, 16, 32]", "model.channels.depth": 3, "model.channels.0": 8,
        "model.channels.1": 16, "model.channels.2": 32, "optim.lr": 0.1, "schedule": "none", "x": True}
