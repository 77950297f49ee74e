"""Shared fixtures: the real configs composed the way the CLI composes them, and the CLI itself."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "src" / "logitlab" / "conf"
# Generated datasets (MNIST-1D) go to a cache of the test session's own, never the user's home.
# The process that makes it (pytest's controller; its xdist workers inherit it) removes it at exit.
if "LOGITLAB_DATA" not in os.environ:
    os.environ["LOGITLAB_DATA"] = tempfile.mkdtemp(prefix="logitlab-data-")
    atexit.register(shutil.rmtree, os.environ["LOGITLAB_DATA"], ignore_errors=True)


# The longest files first: pytest-xdist's loadfile hands out whole files in collection order, so a long file
# begun last would keep one worker busy while the other has nothing left. The rest stay in name order.
LONGEST_FIRST = ("test_zoo_cli.py", "test_fused.py", "test_sweeps.py", "test_reliability.py", "test_promises.py",
                 "test_hydra_conformance.py", "test_data_table.py", "test_data_arrays.py", "test_data_folder.py",
                 "test_own_code.py", "test_cli_edges.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def compose_config(overrides=()):
    """The task config composed from conf/ as `logitlab.train` composes it (HydraConfig set, `hydra` removed)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        # Figures cost a few seconds of matplotlib per run; the tests that check them turn them on.
        cfg = compose("config", overrides=["trainer.progress=false", "trainer.figures=false", *overrides],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture
def compose_cfg():
    return compose_config


def run_cli(*args: str, module: str = "logitlab.train", timeout: float = 300, env: dict | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <module> args...` as a user would, capturing its output."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd or ROOT, env={**os.environ, **(env or {})})


def figures_drawn(run_dir: Path, timeout: float = 120) -> None:
    """Wait until the figures a finished run draws in the background (trainer.figures=auto) are written."""
    import time

    deadline = time.monotonic() + timeout
    while (Path(run_dir) / "figures.pid").exists():
        assert time.monotonic() < deadline, f"the figures of {run_dir} were not drawn in {timeout} s"
        time.sleep(0.1)
    error = Path(run_dir) / "figures.error"
    assert not error.exists(), error.read_text()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One real training run through the command line (an MLP on digits, 3 epochs) shared by the predict,
    evaluate, export and reports tests; its directory holds what `logitlab.train` leaves (checkpoints/,
    metrics.json, .hydra/)."""
    run_dir = tmp_path_factory.mktemp("mlp_digits")
    done = run_cli("model=mlp", "trainer.epochs=3", "trainer.progress=false", "trainer.figures=false",
                   f"hydra.run.dir={run_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


# ------------------------------------------------------------------ commands of the data tests, side by side
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def in_parallel(*commands: tuple[str, ...], module: str = "logitlab.train"):
    """Each command's CompletedProcess, run side by side (one torch thread each)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) + 1) as pool:
        return list(pool.map(lambda args: run_cli(*args, module=module, env=SINGLE_THREADED), commands))


def succeeded(done) -> str:
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def one_line(done, status: int = 2) -> str:
    """The one line a refused command prints: its exit status, no traceback, nothing else on stderr."""
    assert done.returncode == status, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return lines[0]


def split_sizes(run_dir: Path) -> tuple[int, int, int]:
    """(train, val, test) as the run's summary line in train.log says them."""
    import re

    found = re.search(r"train (\d+), val (\d+), test (\d+)", (run_dir / "train.log").read_text())
    return tuple(int(n) for n in found.groups())


# ------------------------------------------------------------------ a run that stops itself after an epoch
# As a user's Ctrl-C or a cluster's time limit would stop it, but deterministic: a signal sent from outside
# may arrive after a short run has finished, or (checkpoints are spaced to ~1% of training) before any epoch
# is on disk. Inert in a process without LOGITLAB_TEST_STOP_AT.
STOP_HOOK = """
import os
if os.environ.get("LOGITLAB_TEST_STOP_AT"):
    import signal
    from logitlab.trainer import hooks

    def _stop(epoch, metrics, at=int(os.environ["LOGITLAB_TEST_STOP_AT"]),
              signum=getattr(signal, os.environ.get("LOGITLAB_TEST_SIGNAL", "SIGTERM"))):
        if epoch == at:
            os.kill(os.getpid(), signum)
    hooks._listeners.append(_stop)
"""


def sitecustomize(hook_dir: Path, code: str, pythonpath: str | None = None) -> dict:
    """The environment for a command that runs `code` as it starts: a sitecustomize.py written to `hook_dir`,
    put first on PYTHONPATH before `pythonpath` (by default the test process's own)."""
    hook_dir.mkdir(parents=True, exist_ok=True)
    (hook_dir / "sitecustomize.py").write_text(code)
    pythonpath = os.environ.get("PYTHONPATH") if pythonpath is None else pythonpath
    return {"PYTHONPATH": os.pathsep.join([str(hook_dir), *filter(None, [pythonpath])])}


def stop_after_epoch(hook_dir: Path, epoch: int = 1, signal_name: str = "SIGTERM", pythonpath: str | None = None) -> dict:
    """The environment for a command that sends itself `signal_name` as `epoch` ends."""
    return {**sitecustomize(hook_dir, STOP_HOOK, pythonpath),
            "LOGITLAB_TEST_STOP_AT": str(epoch), "LOGITLAB_TEST_SIGNAL": signal_name}
