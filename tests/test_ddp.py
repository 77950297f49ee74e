"""Data-parallel training through torchrun, as users run it: two processes on the CPU (gloo) train what one
process trains, rank 0 alone writes the run directory, a signal to any one rank stops every rank at the
same step and the torchrun command it prints resumes exactly, and a config error is one line, not a hang.
Every rank exits with its own status, never killed by torchrun nor aborted at shutdown."""
from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_cli
from logitlab.trainer import checkpoint

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
WATCH = Path("/proc/self/task").is_dir()  # whether a process's threads can be counted (see WATCHED)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # two ranks on two cores, one thread each
QUIET = ["trainer.progress=false", "trainer.figures=false"]
# An odd batch: every step's two shares differ in size (32 and 31), and the last batch is partial (61 of 63).
# Augmented: every rank draws the whole batch's crops and applies its share, so N processes crop as one does.
SAME = ["model=mlp", "augment=crop", "trainer.batch_size=63", *QUIET]
# Dropout on: each rank draws masks of its own, which the checkpoint has to bring back.
STOPPED = ["model=mlp", "model.dropout=0.1", "trainer.batch_size=16", "trainer.epochs=2", *QUIET]


# Run by torchrun in place of `-m logitlab.train`: the same main(), and after World.leave() each rank says how
# many of the threads its process groups started are still alive. A gloo thread that outlives leave() may
# still be freeing a finished collective's tensors when the interpreter shuts down; it needs the GIL for that,
# cannot have it then, and is ended inside a destructor: "terminate called without an active exception",
# SIGABRT, on some runs and not others. That none is left is what makes every exit clean on every run.
WATCHED = """
import os, sys
import torch.distributed as dist
from logitlab.trainer import distributed; from logitlab import train

def threads():
    return set(os.listdir("/proc/self/task"))

started = set()  # the threads that making the process groups started
def recorded(make):
    def made(*args, **kwargs):
        before = threads()
        try:
            return make(*args, **kwargs)
        finally:
            started.update(threads() - before)
    return made
dist.init_process_group, dist.new_group = recorded(dist.init_process_group), recorded(dist.new_group)

leave = distributed.World.leave
def watched(world):
    leave(world)
    print(f"rank {world.rank} left: {len(started & threads())} of {len(started)} group threads", file=sys.stderr)
distributed.World.leave = watched
train.main()
"""


def _torchrun(*args: str, timeout: float = 300, cwd: Path = ROOT, watched: Path | None = None
              ) -> subprocess.CompletedProcess:
    """torchrun -m logitlab.train args; with `watched` (a path to write WATCHED to), through that script."""
    watched = watched if WATCH else None
    if watched is not None:
        watched.write_text(WATCHED)
    what = ["-m", "logitlab.train"] if watched is None else [str(watched)]
    return subprocess.run([*TORCHRUN, *what, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=ENV)


def _assert_every_rank_left_clean(done: subprocess.CompletedProcess, status: int) -> None:
    """Rank 0 exited with `status`, every other rank with 0 (torchrun lists a rank only if it failed: one
    killed by its SIGTERM or aborted would be listed), and leave() joined every process group's threads."""
    assert "terminate called" not in done.stderr, done.stderr
    assert set(re.findall(r"exitcode\s*: (-?\d+)", done.stderr)) == ({str(status)} if status else set()), done.stderr
    if status:
        root_cause = done.stderr.split("Root Cause", 1)[1]
        assert re.search(rf"rank\s*: 0 .*\n\s*exitcode\s*: {status} ", root_cause), done.stderr
    _assert_groups_joined(done.stderr)


def _assert_groups_joined(stderr: str) -> None:
    """Each rank's leave() (the last one's, if called twice) found none of its process groups' threads alive."""
    if not WATCH:
        return
    left = dict((rank, (n, of)) for rank, n, of in re.findall(r"rank (\d+) left: (\d+) of (\d+) group threads", stderr))
    assert sorted(left) == ["0", "1"], stderr
    assert all(n == "0" and int(of) > 0 for n, of in left.values()), left


def _history(run_dir: Path) -> list[dict]:
    return list(csv.DictReader((run_dir / "history.csv").open()))


def _weights(run_dir: Path) -> dict:
    return checkpoint.load(run_dir / "checkpoints" / "last.pt")["model"]


def _assert_same_training(a: Path, b: Path) -> None:
    """Every epoch's metrics and the final weights, to float tolerance (sums over ranks add in another order).
    The weights to 1e-4 of each tensor's largest value, not elementwise: Adam divides each gradient by its
    own running scale, so a weight whose gradients are near zero (an input pixel that crops often make the
    pad's constant) moves by lr whatever its gradient's rounding, and ends 1e-4 of its size apart (measured
    4e-6 on weights of 0.3 after 46 steps) while the metrics agree to 1e-7."""
    ha, hb = _history(a), _history(b)
    assert [r["epoch"] for r in ha] == [r["epoch"] for r in hb]
    for ra, rb in zip(ha, hb):
        for key in ("train/loss", "train/acc", "val/loss", "val/acc"):
            assert float(ra[key]) == pytest.approx(float(rb[key]), rel=1e-5), (ra["epoch"], key)
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert (wa[key] - wb[key]).abs().max() <= 1e-4 * wb[key].abs().max(), key


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("one_process")
    done = run_cli(*SAME, "trainer.epochs=2", f"hydra.run.dir={run_dir}", env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def test_two_processes_train_what_one_does_and_only_rank_0_writes(one_process, tmp_path):
    # Hydra's own run directory, named by the time
    done = _torchrun(*SAME, "trainer.epochs=2", cwd=tmp_path, watched=tmp_path / "watched.py")
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_every_rank_left_clean(done, 0)
    made = list(tmp_path.glob("outputs/*/*"))
    assert len(made) == 1, made  # one for both ranks, though each process would name its own
    run_dir = made[0]
    _assert_same_training(one_process, run_dir)
    solo, ddp = (json.loads((d / "metrics.json").read_text()) for d in (one_process, run_dir))
    assert ddp["test/acc"] == pytest.approx(solo["test/acc"]) and ddp["epochs"] == 2
    # rank 0's files, once; of rank 1 only its log (its .hydra/ and train.log would clobber rank 0's)
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("events.")) == [
        ".hydra", "checkpoints", "history.csv", "metrics.json", "rank1.log", "train.log", "versions.json"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert "output_subdir: .hydra" in (run_dir / ".hydra" / "hydra.yaml").read_text()  # rank 0's (rank 1: null)
    assert "processes (DistributedDataParallel)" in (run_dir / "rank1.log").read_text()
    assert done.stderr.count("test/acc ") == 1  # rank 1's console says warnings only


@pytest.mark.parametrize("args, says", [
    (["model=mlpp"], "error: model=mlpp is not an option; did you mean model=mlp?"),
    pytest.param(["-m", "model=mlp,linear"], "error: a sweep (-m) cannot run under torchrun", marks=pytest.mark.slow),
], ids=["config error", "sweep"])
def test_a_refused_command_under_torchrun_is_one_line_and_every_rank_exits_clean(tmp_path, args, says):
    """Rank 0 refuses and exits 2; the others hear it and exit 0 (no sleeping until torchrun kills them), so
    torchrun names rank 0 and its status as the failure, whichever process it sees exit first."""
    done = _torchrun(*args, f"hydra.run.dir={tmp_path / 'run'}", timeout=120, watched=tmp_path / "watched.py")
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and ours[0].startswith(says), done.stderr
    assert "src/logitlab/" not in done.stderr, done.stderr  # no traceback of ours (torchrun prints its own)
    _assert_every_rank_left_clean(done, 2)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- signals and resuming
def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's worker of `rank` (a child of `parent` with RANK=<rank> in its environment)."""
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def _catches(pid: int, sig: signal.Signals) -> bool:
    """Whether `pid` has a handler for `sig` installed (the trainer's, once training has begun)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(re.search(r"^SigCgt:\s*([0-9a-f]+)", status, re.M)[1], 16)
    return bool(caught >> (sig - 1) & 1)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    done = _torchrun(*STOPPED, f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="finds torchrun's workers in /proc")
@pytest.mark.slow
def test_a_signal_to_rank_1_stops_every_rank_at_one_step_and_the_printed_command_resumes_exactly(
        uninterrupted, tmp_path, tmp_path_factory):
    what = ["-m", "logitlab.train"]
    if WATCH:
        (watched := tmp_path_factory.mktemp("watched") / "watched.py").write_text(WATCHED)
        what = [str(watched)]
    proc = subprocess.Popen([*TORCHRUN, *what, *STOPPED, f"hydra.run.dir={tmp_path}"],
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, rank1 = time.monotonic() + 240, None
    while rank1 is None or not _catches(rank1, signal.SIGUSR1):  # rank 1 is training
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
        rank1 = rank1 or _rank_pid(proc.pid, 1)
    os.kill(rank1, signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err
    # every rank left through the agreed stop (exit 128 + SIGUSR1), none was stopped by torchrun's SIGTERM
    assert set(re.findall(r"exitcode\s*:\s*(-?\d+)", err)) <= {str(128 + signal.SIGUSR1)}, err
    assert "terminate called" not in err, err
    _assert_groups_joined(err)
    said = [line for line in err.splitlines() if "resume with: " in line]
    assert len(said) == 1 and said[0].startswith("stopped by SIGUSR1 in epoch "), err
    command = shlex.split(said[0].split("resume with: ")[1])
    assert command[:4] == ["torchrun", "--standalone", "--nproc-per-node", "2"], command
    assert f"hydra.run.dir={tmp_path}" in command
    position = checkpoint.load(tmp_path / "checkpoints" / "last.pt")["position"]
    assert (0, 0) < (position["epoch"], position["step"]) < (2, 0)

    resumed = subprocess.run([sys.executable, "-m", "torch.distributed.run", *command[1:]], capture_output=True,
                             text=True, timeout=300, cwd=ROOT, env=ENV)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from epoch" in (tmp_path / "rank1.log").read_text()
    a, b = (checkpoint.load(d / "checkpoints" / "last.pt") for d in (uninterrupted, tmp_path))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    _assert_same_training(uninterrupted, tmp_path)


@pytest.mark.slow
def test_checkpoints_resume_under_another_number_of_processes(one_process, tmp_path):
    """One process's checkpoint continues under two and two processes' under one: the same format, and
    trainer.batch_size is the whole batch's either way."""
    for first, then, run_dir in ((run_cli, _torchrun, tmp_path / "one_then_two"),
                                 (_torchrun, run_cli, tmp_path / "two_then_one")):
        for launch, epochs in ((first, 1), (then, 2)):
            done = launch(*SAME, f"trainer.epochs={epochs}", f"hydra.run.dir={run_dir}")
            assert done.returncode == 0, done.stderr[-3000:]
        assert "resuming from epoch 1 of 2" in done.stderr
        _assert_same_training(one_process, run_dir)
