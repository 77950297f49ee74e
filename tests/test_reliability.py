"""Nothing lost: kills, signals, corrupt and malicious checkpoints, diverging losses, bad input.

Real processes and real signals; each failure must be one line naming what is wrong, with no traceback."""
from __future__ import annotations

import json
import logging
import os
import resource
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import ROOT, run_cli, sitecustomize
from logitlab import ConfigError
from logitlab.train import train
from logitlab.trainer import checkpoint

# Five epochs of a few hundred steps each: long enough to be hit by a signal mid-run.
SLOW_RUN = ["model=mlp", "model.hidden=[64,64]", "model.dropout=0.1", "trainer.batch_size=4",
            "trainer.epochs=5", "trainer.progress=false", "trainer.figures=false"]


def _start(run_dir, *extra):
    return subprocess.Popen([sys.executable, "-m", "logitlab.train", *SLOW_RUN, *extra, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_epoch(run_dir, epoch: int, proc, timeout=120.0) -> None:
    """Block until checkpoints/last.pt records `epoch` completed epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if checkpoint.load(run_dir / "checkpoints" / "last.pt")["position"]["epoch"] >= epoch:
                return
        except ConfigError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"no epoch {epoch} in {run_dir}")


def _same_result(a, b) -> None:
    """Bit-for-bit: weights, optimizer state, and every metric but the wall time."""
    sa, sb = (checkpoint.load(d / "checkpoints" / "last.pt") for d in (a, b))
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    for ka, kb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        assert all(torch.equal(ka[k], kb[k]) for k in ka)
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    ma.pop("train_seconds"), mb.pop("train_seconds")
    assert ma == mb
    steps = lambda d: [e.step for e in _events(d).Scalars("val/acc")]  # noqa: E731
    assert steps(b) == steps(a) == [1, 2, 3, 4, 5]  # none duplicated, none missing
    assert [e.value for e in _events(b).Scalars("train/loss")] == [e.value for e in _events(a).Scalars("train/loss")]


def _events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    proc = _start(run_dir)
    assert proc.wait(timeout=600) == 0, proc.communicate()
    return run_dir


# Kills its own process with SIGKILL as an epoch ends: where a kill from outside lands depends on how the
# machine schedules the two processes (a busy one may let the run finish first), this one does not. Checkpoint
# writes are spaced to cost at most 1% of training, so on a slow machine epochs 1-2 may have no file yet: the
# run is killed at the first end of epoch 2 or later that finds an epoch on disk, and at epoch 4 regardless.
KILL_MID_RUN = """
from logitlab.trainer import checkpoint, hooks
import os, pathlib, signal
def kill(epoch, metrics):
    last = pathlib.Path({run_dir!r}) / "checkpoints" / "last.pt"
    if epoch >= 4 or epoch >= 2 and checkpoint.load(last)["position"]["epoch"] >= 1:
        os.kill(os.getpid(), signal.SIGKILL)
hooks._listeners.append(kill)
"""


def test_sigkill_then_the_same_command_resumes_bit_for_bit(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    hook = sitecustomize(tmp_path / "hook", KILL_MID_RUN.format(run_dir=str(run_dir)))
    killed = subprocess.run([sys.executable, "-m", "logitlab.train", *SLOW_RUN, f"hydra.run.dir={run_dir}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **hook})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    tmp_path = run_dir
    done = checkpoint.load(tmp_path / "checkpoints" / "last.pt")["position"]["epoch"]
    assert done < 5  # killed before the end: the rerun has epochs left to train
    rerun = _start(tmp_path)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert f"resuming from epoch {done} of 5" in err
    _same_result(uninterrupted, tmp_path)


@pytest.mark.parametrize("sig, code", [
    (signal.SIGTERM, 143),
    pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow),
    pytest.param(signal.SIGUSR1, 138, marks=pytest.mark.slow),
], ids=["SIGTERM", "SIGINT", "SIGUSR1"])
def test_signal_writes_a_checkpoint_exits_nonzero_and_the_rerun_resumes(uninterrupted, tmp_path, sig, code):
    proc = _start(tmp_path)
    _wait_for_epoch(tmp_path, 1, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    # The signal's own exit status: a run that had ignored it would have finished with 0 (no time bound:
    # how soon the stop comes depends on the machine's load, and the status already says it stopped).
    assert proc.returncode == code, err
    last = err.strip().splitlines()[-1]  # above it: the start-of-run summary and one line per epoch
    assert "Traceback" not in err and last.startswith("stopped by "), err
    command = last.split("resume with: ")[1].strip()  # the exact command, its run directory pinned
    assert f"hydra.run.dir={tmp_path}" in command
    state = checkpoint.load(tmp_path / "checkpoints" / "last.pt")
    assert (state["position"]["epoch"], state["position"]["step"]) > (1, 0)  # the interrupted epoch's progress is kept
    argv = shlex.split(command)
    assert argv[0] in ("python", sys.executable) and argv[1:3] == ["-m", "logitlab.train"]
    rerun = subprocess.Popen([sys.executable, *argv[1:]], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0 and "resuming from epoch" in err, err
    _same_result(uninterrupted, tmp_path)


def test_corrupt_last_checkpoint_falls_back_to_the_newest_valid_one(compose_cfg, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="logitlab")  # what train.log and the console show
    train(compose_cfg(["trainer.epochs=3"]), tmp_path)
    last = tmp_path / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # truncated mid-write by a dying disk
    (tmp_path / "checkpoints" / ".last.pt.999.tmp").write_bytes(b"half a save")
    best_epoch = checkpoint.load(tmp_path / "checkpoints" / "best.pt")["position"]["epoch"]
    metrics = train(compose_cfg(["trainer.epochs=5"]), tmp_path)
    assert f"{last} is truncated" in caplog.text and f"resuming from epoch {best_epoch}" in caplog.text
    assert metrics["epochs"] == 5
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))  # stray temporaries are cleaned


def test_no_valid_checkpoint_is_an_error_not_a_silent_restart(compose_cfg, tmp_path):
    train(compose_cfg(["trainer.epochs=2"]), tmp_path)
    for name in ("last.pt", "best.pt"):
        (tmp_path / "checkpoints" / name).write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="no checkpoint in .* loads"):
        train(compose_cfg(["trainer.epochs=4"]), tmp_path)


class _Exploit:
    """A pickle whose loading would write a file: what an untrusted checkpoint can do to torch.load."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_checkpoint_is_refused_and_never_runs(compose_cfg, tmp_path):
    marker = tmp_path / "pwned"
    ckpt_dir = tmp_path / "run" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.save({"model": _Exploit(marker)}, ckpt_dir / "last.pt")
    with pytest.raises(ConfigError, match="refused by the safe loader"):
        checkpoint.load(ckpt_dir / "last.pt")
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(compose_cfg(["trainer.epochs=1"]), tmp_path / "run")
    assert not marker.exists()


def test_diverging_loss_stops_with_one_line_and_finite_checkpoints(tmp_path):
    out = run_cli("model=mlp", "optim=sgd", "optim.lr=1e9", "trainer.epochs=3", f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0
    line = out.stderr.strip().splitlines()[-1]
    assert "loss became nan at step" in line and "optim.lr" in line and "Traceback" not in out.stderr
    for name in ("last.pt", "best.pt"):
        state = checkpoint.load(tmp_path / "checkpoints" / name)
        assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "metrics.json").exists()


def test_a_full_disk_fails_the_save_with_one_line_and_keeps_the_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    checkpoint.save({"model": {"w": torch.zeros(10)}, "epoch": 1}, path)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then writes past the limit fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, old_limit[1]))
    try:
        with pytest.raises(ConfigError, match=f"could not write checkpoint {path}.*previous checkpoint is intact"):
            checkpoint.save({"model": {"w": torch.zeros(100_000)}, "epoch": 2}, path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert checkpoint.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


# make test keeps one refusal of each kind (a key of another option, a did-you-mean, a sweep's, a type, a
# component's own words, a list, an option, a download, a directory); the others: make test-all
@pytest.mark.parametrize("args, expected", [
    (["model.widht=3"], "model=mlp has model.hidden"),
    (["model=mlp", "model.widht=3"], "did you mean model.hidden?"),
    pytest.param(["++model.widht=3"], "model=mlp has model.hidden", marks=pytest.mark.slow),
    pytest.param(["model=mlp", "++model.widht=3"], "did you mean model.hidden?", marks=pytest.mark.slow),
    pytest.param(["+trainer.epoch=3"], "did you mean trainer.epochs?", marks=pytest.mark.slow),
    (["-m", "seed=0,1", "+trainer.epoch=3"], "did you mean trainer.epochs?"),
])
def test_misspelled_keys_fail_fast_naming_the_valid_key_and_make_no_run_dir(tmp_path, args, expected):
    out = run_cli(*args, cwd=tmp_path)
    # Fast means before anything runs: the command-line check refuses it (status 2) before Hydra makes a
    # directory; no time bound, which would depend on the machine's load.
    assert out.returncode == 2 and expected in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("error: ")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.parametrize("args, expected", [
    (["trainer.epochs=abc"], "trainer.epochs=abc is not an integer"),  # the type Trainer declares
    (["optim.lr=-1"], "optim.lr=-1: Invalid learning rate: -1"),  # torch's own words, the key in front
    pytest.param(["trainer.epochs=0"], "trainer.epochs=0 must be a positive integer", marks=pytest.mark.slow),
    pytest.param(["trainer.batch_size=0"], "trainer.batch_size=0 must be a positive integer", marks=pytest.mark.slow),
    (["model=mlp", "model.hidden=[0]"], "model.hidden=[0] must be a non-empty list of positive integers"),
    (["model=resnet"], "model=resnet is not an option (valid: attention, cnn, gru, linear, mlp)"),
    pytest.param(["data=foo"], "data=foo is not an option (valid: arrays, cifar10, digits", marks=pytest.mark.slow),
    pytest.param(["data.val_fraction=0"], "data.val_fraction=0 must be in (0, 1)", marks=pytest.mark.slow),
    pytest.param(["model=attention", "model.heads=5"], "model.dim=32 must be divisible by model.heads=5", marks=pytest.mark.slow),
    (["data=mnist", "data.root=/dev/null/mnist"], "put MNIST/raw/"),
    (["hydra.run.dir=/etc/hostname/run"], "is not a directory"),
])
def test_bad_values_fail_before_the_first_step_with_one_line(tmp_path, args, expected):
    out = run_cli(*args, "trainer.epochs=1" if "trainer.epochs" not in str(args) else "seed=0", cwd=tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr and expected in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not list(tmp_path.glob("outputs/*/*/checkpoints/*.pt"))  # no training step was taken


def test_concurrent_launches_in_the_same_second_get_distinct_run_dirs(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-m", "logitlab.train", "trainer.epochs=1", "trainer.figures=false"], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    runs = list(tmp_path.glob("outputs/*/*/metrics.json"))
    assert len(runs) == 2


@pytest.mark.slow
def test_killing_a_save_never_leaves_a_truncated_checkpoint(tmp_path):
    """SIGKILL a process at random moments while it rewrites a large last.pt: the file always loads."""
    script = ("import sys, torch; from pathlib import Path; from logitlab.trainer import checkpoint\n"
              "p = Path(sys.argv[1]); i = 0\n"
              "while True:\n"
              "    i += 1; checkpoint.save({'model': {'w': torch.full((4_000_000,), float(i))}, 'epoch': i}, p)\n")
    path = tmp_path / "last.pt"
    seen = set()
    for attempt in range(12):
        proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=ROOT)
        time.sleep(2.0 + 0.13 * attempt)
        proc.kill()
        proc.wait()
        if path.exists():
            state = checkpoint.load(path)
            assert torch.all(state["model"]["w"] == state["epoch"])
            seen.add(state["epoch"])
        assert checkpoint.latest(tmp_path) is not None  # stray temporaries are ignored and removed
        assert not list(tmp_path.glob(".*.tmp"))
    assert seen, "the saver never completed a save"
