"""The default experiment and the run directory, through Hydra's real composition and the real CLI."""
from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import compose_config, run_cli
from logitlab.config import build
from logitlab.train import train
from logitlab.trainer import checkpoint


def _events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


def _hparams(run_dir) -> dict:
    content = _events(run_dir).PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default experiment (softmax regression on digits), composed as the CLI composes it."""
    cfg = compose_config(["optim.lr=0.01", "trainer.figures=true"])
    run_dir = tmp_path_factory.mktemp("default_run")
    return cfg, run_dir, train(cfg, run_dir)


def test_default_experiment_reaches_95_percent_and_matches_scikit_learn(default_run):
    from sklearn.linear_model import LogisticRegression

    cfg, _, metrics = default_run
    assert cfg.model._target_.endswith("SoftmaxRegression") and cfg.data._target_.endswith("load_digits")
    assert metrics["test/acc"] >= 0.95
    data = build.data(cfg.data)
    flat = lambda split: (data.inputs(split[0]).flatten(1).numpy(), split[1].numpy())  # noqa: E731
    sk = LogisticRegression(max_iter=5000).fit(*flat(data.train)).score(*flat(data.test))
    assert abs(metrics["test/acc"] - sk) <= 0.015, (metrics["test/acc"], sk)
    assert {"test/acc", "test/loss", "val/acc", "epochs", "train_seconds", "params"} <= metrics.keys()
    assert metrics["epochs"] == cfg.trainer.epochs and metrics["params"] == 10 * 64 + 10


def test_tensorboard_events_hold_every_epoch_and_the_hparams(default_run):
    cfg, run_dir, metrics = default_run
    events = _events(run_dir)
    for tag in ("train/loss", "train/acc", "val/loss", "val/acc", "lr"):
        assert [e.step for e in events.Scalars(tag)] == list(range(1, cfg.trainer.epochs + 1)), tag
    assert events.Scalars("test/acc")[-1].value == pytest.approx(metrics["test/acc"])
    hp = _hparams(run_dir)
    assert hp["model"] == "linear" and hp["data"] == "digits" and hp["seed"] == 0
    assert hp["optim.lr"] == pytest.approx(0.01)  # an override lands as its own column
    assert not list(run_dir.glob("*/events.out.tfevents.*")), "HParams must not go to a sub-run"
    tags = EventAccumulator(str(run_dir), size_guidance={"images": 0}).Reload().Tags()
    # the evaluation figures, of one set of weights (best.pt's, which test/acc scores) and of no other
    assert {"test/confusion_matrix", "test/reliability"} <= set(tags["images"])
    assert all(tag.startswith("test/") for tag in tags["images"])
    assert "test/max_prob" in tags["histograms"]
    assert tags["graph"]


def test_checkpoints_reload_into_a_fresh_model_with_identical_logits(default_run):
    cfg, run_dir, _ = default_run
    data = build.data(cfg.data)
    for name in ("last.pt", "best.pt"):
        state = checkpoint.load(run_dir / "checkpoints" / name)
        assert state["config"]["model"]["_target_"] == cfg.model._target_
        fresh = instantiate(state["config"]["model"], input_shape=data.input_shape, num_classes=data.num_classes)
        fresh.load_state_dict(state["model"])
        again = instantiate(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes)
        again.load_state_dict(checkpoint.load(run_dir / "checkpoints" / name)["model"])
        x = data.inputs(data.test[0])
        assert torch.equal(fresh(x), again(x))
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["position"]["epoch"] == cfg.trainer.epochs


def _weights(compose_cfg, tmp_path, *overrides):
    cfg = compose_cfg(["model=mlp", "trainer.epochs=2", "model.dropout=0.2", *overrides])
    train(cfg, tmp_path)
    return checkpoint.load(tmp_path / "checkpoints" / "last.pt")["model"]


def test_same_seed_same_weights_bitwise_other_seed_differs(compose_cfg, tmp_path):
    a = _weights(compose_cfg, tmp_path / "a", "seed=0")
    b = _weights(compose_cfg, tmp_path / "b", "seed=0")
    c = _weights(compose_cfg, tmp_path / "c", "seed=1")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_stopping_and_continuing_equals_one_uninterrupted_run(compose_cfg, tmp_path):
    """Two epochs, then the same run continued to four, equals four at once: RNG and optimizer restored."""
    base = ["model=mlp", "model.dropout=0.3", "schedule=step", "schedule.step_size=1", "schedule.gamma=0.5"]
    whole = train(compose_cfg([*base, "trainer.epochs=4"]), tmp_path / "whole")
    train(compose_cfg([*base, "trainer.epochs=2"]), tmp_path / "split")
    resumed = train(compose_cfg([*base, "trainer.epochs=4"]), tmp_path / "split")
    assert {k: v for k, v in whole.items() if k != "train_seconds"} == \
           {k: v for k, v in resumed.items() if k != "train_seconds"}
    a, b = (checkpoint.load(tmp_path / d / "checkpoints" / "last.pt") for d in ("whole", "split"))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [e.step for e in _events(tmp_path / "split").Scalars("val/acc")] == [1, 2, 3, 4]


@pytest.mark.parametrize("schedule, check", [
    ("cosine", lambda lrs: lrs[-1] < lrs[0] / 2),
    ("step", lambda lrs: len(set(lrs)) > 1),
    ("onecycle", lambda lrs: 0 < lrs.index(max(lrs)) < len(lrs) - 1),  # warms up, then anneals
])
def test_lr_schedules_change_the_logged_lr(compose_cfg, tmp_path, schedule, check):
    overrides = [f"schedule={schedule}", "trainer.epochs=8"] + (["schedule.step_size=2"] if schedule == "step" else [])
    train(compose_cfg(overrides), tmp_path)
    lrs = [e.value for e in _events(tmp_path).Scalars("lr")]
    assert check(lrs), lrs


@pytest.mark.slow  # make test: the zoo's mlp-mnist1d cell (the run directory at the defaults), a rerun of a
def test_cli_trains_an_mlp_on_mnist1d_and_leaves_a_complete_run_dir(tmp_path):  # finished run in test_run_visibility
    run_dir = tmp_path / "run"
    out = run_cli("model=mlp", "model.hidden=[25,15]", "model.activation=relu", "data=mnist1d",
                  "trainer.epochs=2", f"data.root={tmp_path / 'data'}", f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr
    assert "test/acc" in out.stdout + out.stderr and str(run_dir) in out.stdout + out.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0.1 < metrics["test/acc"] <= 1
    assert (run_dir / ".hydra" / "config.yaml").exists() and (run_dir / ".hydra" / "overrides.yaml").exists()
    assert (run_dir / "checkpoints" / "last.pt").exists() and (run_dir / "checkpoints" / "best.pt").exists()
    assert json.loads((run_dir / "versions.json").read_text())["torch"] == torch.__version__
    # the same command again: finished, so nothing is retrained and the result is the same
    again = run_cli("model=mlp", "model.hidden=[25,15]", "model.activation=relu", "data=mnist1d",
                    "trainer.epochs=2", f"data.root={tmp_path / 'data'}", f"hydra.run.dir={run_dir}")
    assert again.returncode == 0 and "finished already" in again.stdout + again.stderr


@pytest.mark.slow  # make test: the zoo trains the cnn, and optim=sgd runs in test_fused and test_reliability
def test_cli_trains_a_cnn_with_sgd(tmp_path):
    out = run_cli("model=cnn", "model.channels=[16,32]", "optim=sgd", "optim.lr=0.05", "trainer.epochs=2",
                  f"hydra.run.dir={tmp_path}")
    assert out.returncode == 0, out.stderr
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert state["config"]["optim"]["_target_"] == "torch.optim.SGD"
    assert state["model"]["features.0.weight"].shape == (16, 1, 3, 3)  # Conv2d on 8x8 digits


def test_ng_mnist_mlp_experiment_on_real_format_mnist_files(compose_cfg, tmp_path):
    from test_data import _fake_mnist

    _fake_mnist(tmp_path, "MNIST", n_train=600, n_test=100)
    cfg = compose_cfg(["experiment=ng_mnist_mlp", f"data.root={tmp_path}", "data.val_size=100",
                       "trainer.epochs=1"])
    assert list(cfg.model.hidden) == [25, 15] and cfg.model.activation == "relu"
    train(cfg, tmp_path / "run")
    shapes = [tuple(v.shape) for k, v in checkpoint.load(tmp_path / "run/checkpoints/last.pt")["model"].items()
              if k.endswith("weight")]
    assert shapes == [(25, 784), (15, 25), (10, 15)]  # Dense(25)-Dense(15)-Dense(10, linear)
