"""logitlab's Trainer does the hand-written loop's work, step for step (the premise of `make bench`), and the
fast paths it takes to match that loop's speed (fused optimizer, per-epoch accuracy count, spaced
checkpoints) keep its results and its exact resume."""
from __future__ import annotations

import functools
import importlib.util
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from torch import nn

from logitlab.data import SplitData
from logitlab.models import CNN, MLP, SoftmaxRegression
from logitlab.trainer import checkpoint
from logitlab.trainer import Interrupted, Trainer, make_optimizer

# bench/contenders.py: the benchmark's hand-written loop and its Keras copy of a model
_spec = importlib.util.spec_from_file_location("bench_contenders",
                                               Path(__file__).resolve().parents[1] / "bench" / "contenders.py")
contenders = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(contenders)

N, BATCH, EPOCHS, LR = 1000, 64, 3, 1e-2  # 16 steps per epoch, the last one partial (40 examples)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: a second intra-op thread only adds synchronisation (and stalls on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> SplitData:
    g = torch.Generator().manual_seed(0)
    split = lambda n: (torch.randn(n, 1, 40, generator=g), torch.randint(0, 10, (n,), generator=g))  # noqa: E731
    return SplitData("toy", split(N), split(200), split(200), [str(c) for c in range(10)])


def _fit(model, data, run_dir, epochs=EPOCHS):
    """(the trainer's record, the metrics each epoch reported)."""
    history = []
    record = Trainer(epochs=epochs, batch_size=BATCH, device="cpu", progress=False).fit(
        model, data, functools.partial(torch.optim.Adam, lr=LR), run_dir,
        on_epoch_end=[lambda epoch, metrics: history.append(metrics)])
    return record, history


MODELS = {"linear": lambda: SoftmaxRegression((1, 40), 10), "mlp": lambda: MLP((1, 40), 10, hidden=[32]),
          "cnn": lambda: CNN((1, 40), 10)}
OPTIMIZERS = {"fused Adam": lambda p: torch.optim.Adam(p, lr=LR, fused=True),  # what the trainer picks
              "default Adam": lambda p: torch.optim.Adam(p, lr=LR)}  # what a hand-written loop usually has


class _Recorder(nn.Module):
    """Keeps the predicted classes of every training forward pass of `inner`."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.preds = inner, []

    def forward(self, x):
        logits = self.inner(x)
        if self.training:
            self.preds.append(logits.argmax(1))
        return logits


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("name", MODELS)
def test_trainer_matches_the_hand_written_loop_step_for_step(data, tmp_path, name, optimizer):
    torch.manual_seed(0)
    ours, loops = MODELS[name](), MODELS[name]()
    loops.load_state_dict(ours.state_dict())  # the same initial weights
    _, history = _fit(ours, data, tmp_path)
    losses, recorder = [], _Recorder(loops)
    _, steps = contenders.loop(recorder, data, BATCH, EPOCHS, optimizer=OPTIMIZERS[optimizer], losses=losses)

    per_epoch = math.ceil(N / BATCH)
    assert steps == EPOCHS * per_epoch == EPOCHS * 16
    sizes = torch.tensor([BATCH] * (per_epoch - 1) + [N - BATCH * (per_epoch - 1)], dtype=torch.float64)
    loop_losses = (torch.stack(losses).double().reshape(EPOCHS, per_epoch) @ sizes / N).tolist()
    assert [m["train/loss"] for m in history] == pytest.approx(loop_losses, abs=1e-5)
    for a, b in zip(ours.parameters(), loops.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    if optimizer == "fused Adam":  # the same kernels in the same order: the same numbers, bit for bit
        assert all(torch.equal(a, b) for a, b in zip(ours.parameters(), loops.parameters()))
        shuffle = torch.Generator().manual_seed(0)  # the loop's batch order, to count its right predictions
        labels = [data.train[1][torch.randperm(N, generator=shuffle)] for _ in range(EPOCHS)]
        preds = torch.cat(recorder.preds).reshape(EPOCHS, N)
        assert [m["train/acc"] for m in history] == [(p == y).double().mean().item() for p, y in zip(preds, labels)]


def test_fused_kernel_is_picked_unless_the_config_picks_one(data):
    params = list(nn.Linear(4, 2).parameters())
    group = lambda opt: opt.param_groups[0]  # noqa: E731
    assert group(make_optimizer(functools.partial(torch.optim.Adam, lr=0.1), params))["fused"] is True
    assert group(make_optimizer(functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9), params))["fused"] is True
    assert not group(make_optimizer(functools.partial(torch.optim.Adam, lr=0.1, foreach=True), params))["fused"]
    assert group(make_optimizer(functools.partial(torch.optim.Adam, lr=0.1, fused=False), params))["fused"] is False
    assert isinstance(make_optimizer(functools.partial(torch.optim.RMSprop, lr=0.1), params), torch.optim.RMSprop)


class _SignalAt(nn.Module):
    """Sends this process SIGUSR1 during its `at`-th forward pass, as `kill -USR1` would mid-epoch."""

    def __init__(self, inner: nn.Module, at: int | None):
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGUSR1)
        return self.inner(x)


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
def test_a_signal_mid_epoch_resumes_to_the_uninterrupted_run(data, tmp_path):
    """Stopped at step 7 of epoch 2 (forward call 24: 16 steps + 1 val pass in epoch 1), then rerun: the same
    metrics, train/acc included (its count is kept across the stop), and the same weights, bit for bit."""
    def model(at):
        torch.manual_seed(0)
        return _SignalAt(MLP((1, 40), 10, hidden=[32], dropout=0.2), at)

    whole, _ = _fit(model(None), data, tmp_path / "whole")
    with pytest.raises(Interrupted, match="epoch 2 at step 7"):
        _fit(model(24), data, tmp_path / "split")
    assert checkpoint.load(tmp_path / "split" / "checkpoints" / "last.pt")["position"]["step"] == 7
    resumed, _ = _fit(model(None), data, tmp_path / "split")
    timeless = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert timeless(whole.history) == timeless(resumed.history)
    assert timeless([whole.best]) == timeless([resumed.best])
    a, b = (checkpoint.load(tmp_path / d / "checkpoints" / "last.pt")["model"] for d in ("whole", "split"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_short_epochs_checkpoint_every_few_epochs_but_best_and_last_stay_exact(data, tmp_path, monkeypatch):
    """Writes start at least 100 times their CPU time apart. With clocks on which a write costs 1 s of CPU and
    an epoch about 1 s, a 12-epoch run writes last.pt only for the initial weights and at the end, yet best.pt
    holds exactly the best epoch's state."""
    ticks = iter(range(10_000))  # each reading of either clock advances it 1 s
    monkeypatch.setattr(checkpoint.time, "monotonic", lambda: float(next(ticks)))
    monkeypatch.setattr(checkpoint.time, "thread_time", lambda: float(next(ticks)))
    saves = []
    real_save = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda state, path: (saves.append((path.name, state["position"]["epoch"])),
                                                                 real_save(state, path)))
    torch.manual_seed(0)
    model = MLP((1, 40), 10, hidden=[32])
    final, history = _fit(model, data, tmp_path, epochs=12)
    assert [e for name, e in saves if name == "last.pt"] == [0, 12], saves
    best = checkpoint.load(tmp_path / "checkpoints" / "best.pt")
    best_epoch = max(range(12), key=lambda i: (history[i]["val/acc"], -i)) + 1  # the first of the highest
    assert best_epoch < 12  # so best.pt was written from the copy kept in memory, not from the last epoch
    assert best["position"]["epoch"] == final.best["epoch"] == best_epoch
    assert best["record"]["history"][-1] == history[best_epoch - 1]
    model.load_state_dict(best["model"])
    with torch.no_grad():
        x, y = data.val
        assert (model(x).argmax(1) == y).double().mean().item() == pytest.approx(history[best_epoch - 1]["val/acc"])


def test_keras_copy_of_a_model_gives_the_same_logits(data):
    """The bench gives Keras the torch model's initial weights (kernels transposed, channels last)."""
    pytest.importorskip("keras")
    cases = [(build, (1, 40)) for build in MODELS.values()] + [(lambda: CNN((1, 8, 8), 10), (1, 8, 8))]
    for build, shape in cases:
        torch.manual_seed(0)
        model = build()
        x = torch.randn(16, *shape)
        keras_logits = contenders.to_keras(model, shape).predict(contenders._channels_last(x), verbose=0)
        torch.testing.assert_close(torch.as_tensor(keras_logits), model(x).detach(), atol=1e-5, rtol=0)
