"""Loading a run safely, and the key=value command lines of predict / evaluate / export."""
from __future__ import annotations

import pickle

import pytest
import torch

from logitlab import evaluate, export, predict
from logitlab.rundirs import load_run
from logitlab.rundirs.cli import UsageError, parse_args
from logitlab.trainer.checkpoint import CheckpointError, load as load_checkpoint


class WritesAFile:
    """A pickle whose unpickling runs code: it creates `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (exec, (f"open({self.path!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("command", [predict.main, evaluate.main, export.main], ids=["predict", "evaluate", "export"])
def test_a_malicious_pickle_checkpoint_is_refused_and_runs_nothing(tmp_path, capsys, command):
    canary = tmp_path / "pwned.txt"
    # the payload is real: an unsafe loader would run it
    pickle.loads(pickle.dumps(WritesAFile(tmp_path / "proof.txt")))
    assert (tmp_path / "proof.txt").exists()

    evil = tmp_path / "evil.pt"
    torch.save({"model": WritesAFile(canary), "config": {}}, evil)
    with pytest.raises(SystemExit) as exit_:
        command([f"run={evil}"])  # the console scripts logitlab-predict / -evaluate / -export
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1
    assert "refused by the safe loader (weights_only=True)" in err and str(evil) in err
    assert not canary.exists()


def test_a_checkpoint_config_cannot_name_code_to_run(trained_run, tmp_path):
    state = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    canary = tmp_path / "pwned.txt"
    state["config"]["data"] = {"_target_": "builtins.exec", "_args_": [f"open({str(canary)!r}, 'w')"]}
    torch.save(state, tmp_path / "odd_config.pt")
    with pytest.raises(CheckpointError, match=r"data\._target_='builtins.exec' is not a logitlab"):
        load_run(tmp_path / "odd_config.pt")
    assert not canary.exists()


@pytest.mark.parametrize("content, expected", [
    (b"not a checkpoint at all", "is truncated or not a checkpoint (unreadable pickle)"),
    (b"hello\n", "is truncated or not a checkpoint (KeyError)"),
    (b"", "is truncated or not a checkpoint (EOFError)"),
    (None, "is not a logitlab checkpoint (no 'model' entry)"),
])
def test_a_file_that_is_not_a_checkpoint_fails_with_one_line(tmp_path, capsys, content, expected):
    path = tmp_path / "weird.pt"
    if content is None:
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_:
        predict.main([f"run={path}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1 and expected in err and str(path) in err


def test_an_architecture_that_does_not_match_its_config_names_the_keys(trained_run, tmp_path):
    state = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    state["config"]["model"] = {"_target_": "logitlab.models.SoftmaxRegression"}
    torch.save(state, tmp_path / "linear_config.pt")
    with pytest.raises(CheckpointError) as e:
        load_run(tmp_path / "linear_config.pt")
    message = str(e.value)
    assert "\n" not in message
    assert "missing keys: linear.weight, linear.bias" in message
    assert "unexpected keys: net.1.weight, net.1.bias" in message

    state["config"]["model"] = {"_target_": "logitlab.models.MLP", "hidden": [64, 16]}
    torch.save(state, tmp_path / "narrow_config.pt")
    with pytest.raises(CheckpointError, match=r"shape mismatch: net\.3\.weight \(32, 64\) vs \(16, 64\)"):
        load_run(tmp_path / "narrow_config.pt")


def test_runs_that_do_not_exist_or_hold_no_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_run(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="has no checkpoints/best.pt"):
        load_run(tmp_path)
    with pytest.raises(UsageError, match="checkpoint='newest' is not known; valid: best, last"):
        load_run(tmp_path, checkpoint="newest")


def test_last_checkpoint_loads_too(trained_run):
    model, data, config = load_run(trained_run, checkpoint="last")
    assert config["model"]["_target_"] == "logitlab.models.MLP" and not model.training


def test_key_value_arguments():
    options = {"run": None, "top_k": "3"}
    assert parse_args(["run=a=b", "top_k=5"], options, "") == {"run": "a=b", "top_k": "5"}
    with pytest.raises(UsageError, match="unknown key 'topk'; valid keys: run, top_k"):
        parse_args(["run=x", "topk=5"], options, "")
    with pytest.raises(UsageError, match="'--run' is not key=value"):
        parse_args(["--run"], options, "")
    with pytest.raises(UsageError, match="run=... is required"):
        parse_args([], options, "")


@pytest.mark.parametrize("argv, expected", [
    (["run=x", "colour=red"], "unknown key 'colour'; valid keys: run, checkpoint, split, input, out, top_k"),
    ([], "run=... is required"),
    (["run={run}", "top_k=0"], "top_k='0' must be an integer from 1 to 10"),
    (["run={run}", "out=probs.txt"], "out=probs.txt must end in .csv or .npy"),
])
def test_usage_errors_exit_2_with_one_line(trained_run, capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_:
        predict.main([a.format(run=trained_run) for a in argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and expected in err


def test_help_prints_the_usage(capsys):
    with pytest.raises(SystemExit) as exit_:
        predict.main(["--help"])
    assert exit_.value.code == 0 and "top_k=" in capsys.readouterr().out


def test_metrics_json_lists_the_normalisation_the_run_was_trained_with(trained_run):
    """What a user outside logitlab needs to feed the model normalised inputs: (raw - mean) / std per channel."""
    import json

    _, data, _ = load_run(trained_run)
    stored = json.loads((trained_run / "metrics.json").read_text())["normalisation"]
    assert stored == {"mean": data.normalisation.mean.tolist(), "std": data.normalisation.std.tolist()}
    assert len(stored["mean"]) == data.input_shape[0] and stored["mean"][0] == pytest.approx(4.9, abs=0.1)
