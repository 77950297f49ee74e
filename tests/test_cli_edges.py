"""The command line's edges, through the CLI as a user meets them: every bad value is one line, exit
status 2 and no run directory; a diverging run is one line naming its epoch; every command logitlab prints
runs as printed in a new shell; a config directory of the user's own (hydra.searchpath, -cd, -cn) is
honoured by the check, a sweep, and what reads the run afterwards (predict, evaluate, export). Code of
the user's own that such a directory names (and trust=) is test_own_code.py's."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import pytest
import torch

from conftest import stop_after_epoch
from logitlab.trainer import checkpoint

FAST = ["trainer.epochs=1", "trainer.progress=false", "trainer.figures=false"]


def train(*args: str, cwd: Path, env: dict | None = None, module: str = "logitlab.train",
          timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    return lines[0]


def refused(r: subprocess.CompletedProcess, cwd: Path) -> str:
    """The one line of a refused command, which exited 2 and left no directory behind."""
    assert r.returncode == 2, r.stderr[-3000:]
    assert not [name for name in ("outputs", "multirun", "run") if (cwd / name).exists()], r.stderr[-3000:]
    return one_line(r)


# ---------------------------------------------------------------------------------------- 3. bad values
@pytest.mark.parametrize("args, said", [
    (["seed=abc"], "seed=abc is not an integer (what seeds every random stream of a run)"),
    # make test keeps one per rule (a default's type, a declared choice); the other types: make test-all
    pytest.param(["trainer.batch_size=1.5"], "trainer.batch_size=1.5 is not an integer", marks=pytest.mark.slow),
    pytest.param(["trainer.epochs=[3]"], "trainer.epochs=[3] is not an integer", marks=pytest.mark.slow),
    pytest.param(["optim.lr=abc"], "optim.lr=abc is not a number", marks=pytest.mark.slow),
    (["schedule=onecycle", "+schedule.anneal_strategy=sin"], "schedule.anneal_strategy=sin is not one of cos, linear"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_a_value_of_the_wrong_type_is_one_line_naming_it(tmp_path, args, said):
    r = train(*FAST, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert said in refused(r, tmp_path)


def test_a_swept_value_of_the_wrong_type_is_refused_before_any_job(tmp_path):
    r = train("-m", "seed=0,abc", *FAST, f"hydra.sweep.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert "seed=abc is not an integer" in refused(r, tmp_path)


@pytest.mark.parametrize("device", [pytest.param("cuda:99", marks=pytest.mark.slow), "cuda"])
def test_a_device_that_is_not_here_is_one_line_saying_what_is(tmp_path, device):
    from logitlab.trainer import available_devices

    if device in available_devices():
        pytest.skip(f"this machine has {device}")
    r = train(f"trainer.device={device}", *FAST, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    line = refused(r, tmp_path)
    assert f"trainer.device={device} is not available here" in line
    assert line.endswith(f"available: {', '.join(available_devices())}"), line


def test_a_diverging_run_is_one_line_naming_the_epoch_and_what_to_lower(tmp_path):
    # lr=inf: the first step makes every weight infinite, so the loss is NaN on any machine's kernels
    r = train("optim.lr=inf", *FAST, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-3000:]  # not a bad command line: a run that failed
    assert "Error executing job" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]
    [line] = [x for x in r.stderr.splitlines() if x.startswith("error: ")]
    assert r.stderr.strip().endswith(line)
    assert "(epoch 1)" in line and "optim.lr" in line and "trainer.grad_clip" in line, line
    assert (tmp_path / "run" / "checkpoints" / "best.pt").exists()  # the run dir keeps what came before


def test_a_file_path_given_as_a_group_option_says_what_the_options_are(tmp_path):
    r = train("data=/data/wine.csv", *FAST, cwd=tmp_path)
    line = refused(r, tmp_path)
    assert line.startswith("error: data=/data/wine.csv is a file path"), line
    assert "digits" in line and "hydra.searchpath=" in line, line


def test_a_user_module_that_fails_to_import_says_why(tmp_path):
    (tmp_path / "mydata.py").write_text("import a_module_nobody_installed\n\ndef load(path):\n    pass\n")
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "data" / "mine.yaml").write_text("_target_: mydata.load\npath: wine.csv\n")
    r = train(f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "data=mine", *FAST, cwd=tmp_path)
    line = refused(r, tmp_path)
    assert line.startswith("error: data=mine: ") and "mydata.load" in line, line
    assert line.endswith("ModuleNotFoundError: No module named 'a_module_nobody_installed'"), line


def test_more_epochs_for_a_cosine_run_names_trainer_epochs(tmp_path):
    run = ["schedule=cosine", "trainer.progress=false", "trainer.figures=false", f"hydra.run.dir={tmp_path / 'run'}"]
    assert train(*run, "trainer.epochs=1", cwd=tmp_path).returncode == 0
    r = train(*run, "trainer.epochs=2", cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-3000:]
    line = one_line(r)
    assert "trainer.epochs=1" in line and "trainer.epochs=2" in line and "schedule.T_max" in line, line
    assert "another hydra.run.dir" in line and "schedule.T_max=1" in line, line  # what to do


# ---------------------------------------------------------------------------------------- 4. printed commands
def _new_shell_env(tmp_path: Path) -> dict:
    """A shell where `python` is not this interpreter (no virtual environment active) and nothing of the
    test's own environment is set but what a user's would be."""
    bare = tmp_path / "bin"
    bare.mkdir(exist_ok=True)
    return {"PATH": f"{bare}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "OMP_NUM_THREADS": "1",
            **{k: v for k, v in os.environ.items() if k.startswith("LOGITLAB_") or k == "PYTHONPATH"}}


def _stopped(args: list[str], cwd: Path, sig: signal.Signals, env: dict) -> str:
    """Run `args` until it stops itself with `sig` after epoch 1; the command it printed to resume."""
    stop = stop_after_epoch(cwd / "stop-hook", 1, sig.name, env.get("PYTHONPATH"))
    r = subprocess.run([sys.executable, "-m", "logitlab.train", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=300, env={**env, **stop})
    assert r.returncode == 128 + sig, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr and "resume with: " in last, r.stderr[-3000:]
    return last.split("resume with: ", 1)[1]


@pytest.mark.parametrize("sig, venv_active", [(signal.SIGTERM, False),
                                               pytest.param(signal.SIGINT, True, marks=pytest.mark.slow)],
                         ids=["SIGTERM-venv inactive", "SIGINT-venv active"])
def test_a_stopped_run_resumes_by_its_printed_line_pasted_into_a_new_shell(tmp_path, sig, venv_active):
    run_dir = tmp_path / "runs" / "lr=0.01,seed=0 first"  # what Hydra's grammar reads as a sweep, and a space
    env = _new_shell_env(tmp_path)
    if venv_active:  # `python` is this interpreter there: that is what is printed
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    command = _stopped(["trainer.epochs=3", "trainer.progress=false", "trainer.figures=false",
                        f"hydra.run.dir='{run_dir}'"], tmp_path, sig, env)
    assert shlex.split(command)[0] == ("python" if venv_active else sys.executable), command
    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["position"]["epoch"] >= 1
    r = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0 and "resuming from epoch" in r.stderr, r.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == 3
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [run_dir.name]  # no second directory


def test_a_stopped_sweep_resumes_by_its_printed_line_pasted_into_a_new_shell(tmp_path):
    sweep_dir = tmp_path / "multirun" / "data=digits,seed=0,1 sweep"
    env = _new_shell_env(tmp_path)
    # one job at a time (not fused), so that the stop comes in job 0's epoch 1 (the stop hook)
    command = _stopped(["-m", "seed=0,1", "hydra.sweeper.fuse=false", "trainer.epochs=2", "trainer.progress=false",
                        f"hydra.sweep.dir=\"{sweep_dir}\""], tmp_path, signal.SIGINT, env)
    assert not (sweep_dir / "0" / "metrics.json").exists()
    r = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [json.loads((sweep_dir / n / "metrics.json").read_text())["epochs"] for n in "01"] == [2, 2]
    assert sorted(p.name for p in (tmp_path / "multirun").iterdir()) == [sweep_dir.name]


# ---------------------------------------------------------------------------------------- 5. config dirs
def make_user_conf(where: Path) -> Path:
    """A config directory of the user's own: a model option that is not logitlab's (other widths)."""
    (where / "conf" / "model").mkdir(parents=True)
    (where / "conf" / "model" / "mine.yaml").write_text("_target_: logitlab.models.MLP\nhidden: [5]\n")
    return where / "conf"


@pytest.fixture
def user_conf(tmp_path) -> Path:
    return make_user_conf(tmp_path)


def _hidden(job_dir: Path) -> list[int]:
    return checkpoint.load(job_dir / "checkpoints" / "last.pt")["config"]["model"]["hidden"]


@pytest.fixture(scope="module")
def searchpath_sweep(tmp_path_factory) -> Path:
    """A sweep (fused: one group of two jobs) of the user's model=mine, found through hydra.searchpath."""
    tmp_path = tmp_path_factory.mktemp("searchpath")
    conf = make_user_conf(tmp_path)
    r = train("-m", f"hydra.searchpath=[file://{conf}]", "model=mine", "seed=0,1", *FAST,
              f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp_path / "sweep"


@pytest.mark.slow  # test_own_code sweeps over a searchpath and predicts its jobs in make test
def test_a_sweep_with_a_searchpath_runs_and_predict_and_evaluate_read_its_jobs(searchpath_sweep, tmp_path):
    assert [_hidden(searchpath_sweep / n) for n in "01"] == [[5], [5]]
    job = searchpath_sweep / "0"
    predicted = train(f"run={job}", f"out={tmp_path / 'p.csv'}", module="logitlab.predict", cwd=tmp_path)
    assert predicted.returncode == 0 and (tmp_path / "p.csv").exists(), predicted.stderr[-3000:]
    evaluated = train(f"run={job}", f"out={tmp_path / 'e.json'}", module="logitlab.evaluate", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    metrics = json.loads((job / "metrics.json").read_text())
    assert json.loads((tmp_path / "e.json").read_text())["test/acc"] == pytest.approx(metrics["test/acc"])


@pytest.mark.slow
def test_export_reads_a_job_of_a_searchpath_sweep(searchpath_sweep, tmp_path):
    exported = train(f"run={searchpath_sweep / '1'}", "format=torchscript", f"out={tmp_path / 'm.pt'}",
                     module="logitlab.export", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert torch.jit.load(tmp_path / "m.pt")(torch.zeros(1, 1, 8, 8))[0].shape == (1, 10)


def test_a_searchpath_option_that_is_missing_is_named_with_the_users_options(tmp_path, user_conf):
    r = train("-m", f"hydra.searchpath=[file://{user_conf}]", "model=mien", "seed=0,1", *FAST,
              f"hydra.sweep.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert "did you mean model=mine?" in refused(r, tmp_path)


@pytest.mark.slow  # test_own_code runs a -cd sweep of the user's own in make test
def test_a_sweep_with_a_config_dir_and_name_of_the_users_own(tmp_path, user_conf):
    """-cd adds the user's directory before logitlab's, -cn picks the user's primary config there."""
    (user_conf / "mine.yaml").write_text("defaults:\n  - config\n  - override model: mine\n  - _self_\n\n"
                                         "trainer:\n  epochs: 1\n  progress: false\n  figures: false\n")
    out = tmp_path / "sweep"
    r = train("-m", "-cd", str(user_conf), "-cn", "mine", "seed=0,1", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [_hidden(out / n) for n in "01"] == [[5], [5]]
    bad = train("-m", "-cd", str(user_conf), "-cn", "mine", "seed=0,abc", f"hydra.sweep.dir={tmp_path / 'run'}",
                cwd=tmp_path)
    assert "seed=abc is not an integer" in refused(bad, tmp_path)


# ---------------------------------------------------------------------------------------- the type rule itself
@pytest.mark.parametrize("value, hint, fits", [
    (3, int, True), (True, int, False), (1.5, int, False), ("3", int, False), ([3], int, False),
    (1, float, True), (1.5, float | None, True), (None, float | None, True), ("abc", float | torch.Tensor, False),
    (0.1, float | torch.Tensor, True), ([64, 32], Sequence[int], True), ("abc", Sequence[int], False),
    ([64, "a"], Sequence[int], False), ([0.9, 0.99], tuple[float, float], True), ([0.9], tuple[float, float], False),
    ("cos", Literal["cos", "linear"], True), ("sin", Literal["cos", "linear"], False), (True, bool, True),
    ("maybe", bool, False), (2, int | str, True), ("auto", int | str, True), (1.5, int | str, False),
    ({"_target_": "x.Y"}, int, None), ("~/data", Path, None),
])
def test_a_value_fits_the_type_a_component_declares(value, hint, fits):
    from logitlab.config import value_types

    assert value_types.fits(value, hint) is fits


def test_a_default_stands_for_its_type_unless_it_is_a_string_or_null():
    from logitlab.config import value_types

    assert [value_types.type_of(v) for v in (0, 0.1, False, [64, 32], "auto", None)] == [
        int, float, bool, list[int], None, None]
