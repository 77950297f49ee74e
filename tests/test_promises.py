"""Promises that the restructuring made true, each checked through the real command line
(`python -m logitlab.train ...` in a subprocess, figures and progress at their defaults): one objective
everywhere, refusals before anything is made, checked sweep syntax, Ctrl-C that says how to go on, run
and sweep directories that belong to one config, test/ scores of one set of weights, and a sweeper that
behaves like Hydra's own when called from Python."""
from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from conftest import figures_drawn
from logitlab import ConfigError
from logitlab.trainer import checkpoint

APP = Path(__file__).parent / "sweep_app" / "app.py"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# A run slow enough to be interrupted after its first epoch (a few hundred steps per epoch).
SLOW = ["model=mlp", "model.hidden=[64,64]", "trainer.batch_size=4"]
# Linear on digits with a high learning rate: val/loss is best at epoch 5 of 6, val/acc at epoch 3,
# so "best by val/loss" is neither "best by val/acc" nor "the last epoch".
LOSS_RUN = ["model=linear", "optim.lr=0.5", "trainer.objective=val/loss", "trainer.epochs=6"]


# ---------------------------------------------------------------------------------------- helpers
def train(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "logitlab.train", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **ENV})


def start(*args: str, cwd: Path, new_session: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "logitlab.train", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV},
                            start_new_session=new_session)


def rerun(command: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a printed `python -m logitlab.train ...` command with this interpreter."""
    argv = shlex.split(command)
    assert argv[0] in ("python", sys.executable) and argv[1:3] == ["-m", "logitlab.train"], command
    return subprocess.run([sys.executable, *argv[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **ENV})


def one_line(r: subprocess.CompletedProcess) -> str:
    """stderr of a refused command: exactly one line, no traceback."""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    return lines[0]


def epochs_done(path: Path) -> int:
    try:
        return checkpoint.load(path)["position"]["epoch"]
    except ConfigError:  # not there yet (or being renamed into place)
        return 0


def wait_until(condition, proc: subprocess.Popen, timeout: float = 180, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the command ended (rc {proc.returncode}) before {what}: {err[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def summary(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


def metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def history(run_dir: Path) -> list[dict]:
    return checkpoint.load(Path(run_dir) / "checkpoints" / "last.pt")["record"]["history"]


def best_epoch_by(hist: list[dict], key: str, lowest: bool) -> int:
    """1-based epoch of the best value (the first one on ties)."""
    values = [h[key] for h in hist]
    best = min(values) if lowest else max(values)
    return values.index(best) + 1


def snapshot(directory: Path) -> dict:
    """Every file under `directory`: its bytes and mtime (once figures drawn after the run are written)."""
    figures_drawn(directory)
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def loss_run(tmp_path_factory) -> Path:
    """One finished single run with trainer.objective=val/loss whose best epoch is not its last."""
    run_dir = tmp_path_factory.mktemp("loss_run") / "run"
    r = train(*LOSS_RUN, f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert r.returncode == 0, r.stderr[-3000:]
    (run_dir / "stdout.txt").write_text(r.stdout + r.stderr)
    return run_dir


# ---------------------------------------------------------------------------------------- 1. one objective
def test_sweep_with_val_loss_objective_ranks_and_checkpoints_by_lowest_val_loss(tmp_path):
    out = tmp_path / "s"
    r = train("-m", "model=linear,mlp", "trainer.objective=val/loss", "trainer.epochs=6", "optim.lr=0.5",
              f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = summary(out)
    assert [row["status"] for row in rows] == ["COMPLETE", "COMPLETE"]
    assert list(rows[0])[2] == "val/loss"  # the objective's column
    losses = {}
    for row in rows:
        job = Path(row["job_dir"])
        m, hist = metrics(job), history(job)
        assert (m["objective"], m["direction"]) == ("val/loss", "minimize")
        lowest = best_epoch_by(hist, "val/loss", lowest=True)
        best = checkpoint.load(job / "checkpoints" / "best.pt")
        assert best["position"]["epoch"] == lowest, (row["model"], [h["val/loss"] for h in hist])
        assert best["record"]["best"]["epoch"] == lowest == m["best_epoch"]
        assert m["val/loss"] == pytest.approx(min(h["val/loss"] for h in hist))
        assert float(row["val/loss"]) == pytest.approx(m["val/loss"])
        losses[int(row["number"])] = m["val/loss"]
    winner = min(losses, key=losses.get)
    # The printed table: best first, by the lowest val/loss.
    printed = (r.stdout + r.stderr).splitlines()
    head = next(i for i, line in enumerate(printed) if "jobs by val/loss" in line)
    assert "(minimize)" in printed[head]
    table = [line.split() for line in printed[head + 2:head + 4]]
    assert [int(t[0]) for t in table] == sorted(losses, key=losses.get)
    assert [float(t[1]) for t in table] == sorted(round(v, 4) for v in losses.values())
    # best.yaml is the job with the lowest val/loss.
    best_yaml = (out / "best.yaml").read_text()
    assert f"#{winner}, val/loss = " in best_yaml and "(minimize)" in best_yaml
    winner_cfg = OmegaConf.load(out / str(winner) / ".hydra" / "config.yaml")
    assert OmegaConf.load(out / "best.yaml").model == winner_cfg.model


def test_single_run_with_val_loss_objective_records_the_lowest_val_loss_epoch(loss_run):
    hist, m = history(loss_run), metrics(loss_run)
    lowest = best_epoch_by(hist, "val/loss", lowest=True)
    # The set-up makes the check discriminating: best by loss is neither best by acc nor the last epoch.
    assert lowest != best_epoch_by(hist, "val/acc", lowest=False) and lowest < len(hist), hist
    assert (m["objective"], m["direction"]) == ("val/loss", "minimize")
    assert m["best_epoch"] == lowest and m["val/loss"] == pytest.approx(hist[lowest - 1]["val/loss"])
    best = checkpoint.load(loss_run / "checkpoints" / "best.pt")
    assert best["position"]["epoch"] == lowest and best["record"]["best"]["epoch"] == lowest
    said = (loss_run / "stdout.txt").read_text()
    assert f"val/loss {hist[lowest - 1]['val/loss']:.4f} (best epoch {lowest})" in said


# ---------------------------------------------------------------------------------------- 2. contradictions
def test_sweep_direction_contradicting_its_objective_is_refused(tmp_path):
    r = train("-m", "seed=0,1", "trainer.objective=val/loss", "hydra.sweeper.direction=maximize", cwd=tmp_path)
    assert r.returncode == 2
    line = one_line(r)
    assert "hydra.sweeper.direction=maximize" in line and "val/loss" in line
    assert not (tmp_path / "multirun").exists()


@pytest.mark.slow  # the sweep's case above covers the direction rule
def test_trainer_direction_contradicting_its_objective_is_refused(tmp_path):
    r = train("trainer.direction=maximize", "trainer.objective=val/loss", cwd=tmp_path)
    assert r.returncode == 2
    line = one_line(r)
    assert "trainer.direction=maximize" in line and "val/loss" in line
    assert not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------------------------------- 3. sweep syntax
def test_readme_interval_syntax_runs_an_optuna_study(tmp_path):
    out = tmp_path / "s"
    r = train("-m", "hparams_search=mlp_tpe", "optim.lr=tag(log,interval(1e-4,1e-1))", "hydra.sweeper.n_trials=2",
              "trainer.epochs=1", "data=digits", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = summary(out)
    assert len(rows) == 2 and all(row["status"] == "COMPLETE" for row in rows)
    assert all(1e-4 <= float(row["optim.lr"]) <= 1e-1 for row in rows)


def no_job_ran(cwd: Path) -> bool:
    """No job directory: no job's config (.hydra/), checkpoint or metrics anywhere under `cwd`."""
    return not any(list(cwd.rglob(name)) for name in ("metrics.json", "last.pt", ".hydra"))


def test_every_value_of_a_swept_key_is_checked_before_the_first_job(tmp_path):
    r = train("-m", "optim.lr=0.1,-1", "trainer.epochs=1", cwd=tmp_path)
    assert r.returncode == 2
    line = one_line(r)
    assert "optim.lr=-1" in line and "Invalid learning rate" in line
    assert no_job_ran(tmp_path)


@pytest.mark.slow  # the scalar case above covers the check of every swept value
def test_every_list_value_of_a_swept_key_is_checked(tmp_path):
    r = train("-m", "model=mlp", "model.hidden=[8],[0]", cwd=tmp_path)
    assert r.returncode == 2
    assert "model.hidden=[0]" in one_line(r)
    assert no_job_ran(tmp_path)


def test_an_interval_with_an_invalid_end_is_refused(tmp_path):
    r = train("-m", "optim.lr=tag(log,interval(-1,1e-1))", "hydra.sweeper.sampler=random", cwd=tmp_path)
    assert r.returncode == 2
    assert "optim.lr" in one_line(r)
    assert no_job_ran(tmp_path)


# ---------------------------------------------------------------------------------------- 4. Ctrl-C
def _interrupted(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert "resume with: " in last, err[-3000:]
    return last.split("resume with: ", 1)[1], err


@pytest.mark.slow
def test_ctrl_c_of_a_run_prints_the_command_that_resumes_it_in_the_same_directory(tmp_path):
    proc = start(*SLOW, "trainer.epochs=6", cwd=tmp_path)
    last_pts = lambda: list(tmp_path.glob("outputs/*/*/checkpoints/last.pt"))  # noqa: E731
    wait_until(lambda: any(epochs_done(p) >= 1 for p in last_pts()), proc, what="epoch 1")
    proc.send_signal(signal.SIGINT)
    command, err = _interrupted(proc)
    assert len(err.strip().splitlines()) == 1, err  # one line: what stopped it and how to go on
    [run_dir] = [p.parent.parent for p in last_pts()]
    assert f"hydra.run.dir={run_dir}" in command
    assert not (run_dir / "metrics.json").exists()
    r = rerun(command, tmp_path)
    assert r.returncode == 0 and "resuming from epoch" in r.stderr, r.stderr[-3000:]
    assert metrics(run_dir)["epochs"] == 6
    assert list(tmp_path.glob("outputs/*/*/")) == [run_dir]  # the same directory, no second run


@pytest.mark.slow
def test_ctrl_c_of_a_grid_sweep_resumes_it_without_retraining_finished_jobs(tmp_path):
    proc = start("-m", "seed=0,1,2", *SLOW, "trainer.epochs=4", cwd=tmp_path)
    job1 = lambda: list(tmp_path.glob("multirun/*/*/1/checkpoints/last.pt"))  # noqa: E731
    wait_until(lambda: any(epochs_done(p) >= 1 for p in job1()), proc, what="job 1's first epoch")
    proc.send_signal(signal.SIGINT)
    command, err = _interrupted(proc)
    [sweep_dir] = [p.parent.parent.parent for p in job1()]
    assert f"hydra.sweep.dir={sweep_dir}" in command
    job0 = sweep_dir / "0"
    before = snapshot(job0)
    assert "metrics.json" in before and not (sweep_dir / "1" / "metrics.json").exists()

    r = rerun(command, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = summary(sweep_dir)
    assert [(row["number"], row["status"]) for row in rows] == [("0", "COMPLETE"), ("1", "COMPLETE"),
                                                                ("2", "COMPLETE")]
    after = snapshot(job0)
    for name in ("metrics.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert after[name] == before[name], f"job 0's {name} was rewritten: it trained again"
    assert sorted(n for n in after if "tfevents" in n) == sorted(n for n in before if "tfevents" in n)
    resumed = [line for line in r.stderr.splitlines() if "resuming from epoch" in line]
    assert len(resumed) == 1 and str(sweep_dir / "1" / "checkpoints") in resumed[0], r.stderr[-3000:]
    assert metrics(sweep_dir / "1")["epochs"] == 4


# ---------------------------------------------------------------------------------------- 5. joblib
@pytest.mark.slow
def test_ctrl_c_of_a_joblib_sweep_stops_cleanly_and_resumes(tmp_path):
    args = ["-m", "seed=0,1,2,3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *SLOW, "trainer.epochs=6"]
    proc = start(*args, cwd=tmp_path, new_session=True)
    last_pts = lambda: list(tmp_path.glob("multirun/*/*/*/checkpoints/last.pt"))  # noqa: E731
    wait_until(lambda: len(last_pts()) >= 2, proc, what="two jobs' last.pt")
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the sweep did not stop within 90 s of Ctrl-C: {err[-3000:]}")
    assert proc.returncode == 128 + signal.SIGINT, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    said = [line for line in err.splitlines() if "resume with: " in line]
    assert len(said) == 1, err[-3000:]
    command = said[0].split("resume with: ", 1)[1]
    [sweep_dir] = {p.parent.parent.parent for p in last_pts()}
    assert f"hydra.sweep.dir={sweep_dir}" in command

    r = rerun(command, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [row["status"] for row in summary(sweep_dir)] == ["COMPLETE"] * 4
    # Checked last, so that a failure here still says whether the resume worked: the interrupted
    # sweep's workers and their semaphores are cleaned up, with no warning at exit.
    assert "leaked semaphore" not in err and "resource_tracker" not in err, err[-3000:]


# ---------------------------------------------------------------------------------------- 6. run directory
def test_an_unfinished_run_directory_refuses_another_learning_rate(tmp_path):
    run_dir = tmp_path / "R"
    proc = start(*SLOW, "trainer.epochs=6", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_until(lambda: epochs_done(run_dir / "checkpoints" / "last.pt") >= 1, proc, what="epoch 1")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 143
    before = snapshot(run_dir)
    assert "metrics.json" not in before
    r = train(*SLOW, "trainer.epochs=6", "optim.lr=0.1", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert r.returncode == 2
    assert "optim.lr" in one_line(r)
    assert snapshot(run_dir) == before  # config, checkpoints, events: nothing overwritten


def test_a_finished_run_refuses_another_model_and_fewer_epochs_and_trains_longer(tmp_path):
    run_dir = tmp_path / "R"
    r = train("model=linear", "trainer.epochs=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    before = snapshot(run_dir)
    r = train("model=cnn", "trainer.epochs=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert r.returncode == 2
    line = one_line(r)
    assert "model." in line, line
    after = snapshot(run_dir)
    assert after[".hydra/config.yaml"] == before[".hydra/config.yaml"]
    assert after["metrics.json"] == before["metrics.json"]
    assert after == before  # nothing at all was touched
    r = train("model=linear", "trainer.epochs=3", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from epoch 2" in r.stderr, r.stderr[-3000:]
    assert metrics(run_dir)["epochs"] == 3 and len(history(run_dir)) == 3
    before = snapshot(run_dir)
    r = train("model=linear", "trainer.epochs=2", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert r.returncode == 2
    assert "trainer.epochs" in one_line(r)
    assert snapshot(run_dir) == before


# ---------------------------------------------------------------------------------------- 7. Optuna study
@pytest.mark.slow  # test_sweeps resumes a killed study in make test; this one adds the refusals
def test_an_optuna_study_refuses_another_sampler_or_pruner_and_continues_to_more_trials(tmp_path):
    out = tmp_path / "s"
    args = ["-m", "hparams_search=mlp_random", "hydra.sweeper.n_trials=2", "trainer.epochs=1",
            f"hydra.sweep.dir={out}"]
    r = train(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(summary(out)) == 2
    first = {n: (out / n / "metrics.json").stat().st_mtime_ns for n in ("0", "1")}

    r = train(*args, "hydra.sweeper.sampler=tpe", cwd=tmp_path)
    assert r.returncode != 0
    line = one_line(r)
    assert "sampler" in line and "tpe" in line, line
    r = train(*args, "hydra.sweeper.pruner=median", cwd=tmp_path)
    assert r.returncode != 0
    line = one_line(r)
    assert "pruner" in line and "median" in line, line
    assert len(summary(out)) == 2 and not (out / "2").exists()

    more = [a if a != "hydra.sweeper.n_trials=2" else "hydra.sweeper.n_trials=3" for a in args]
    r = train(*more, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = summary(out)
    assert [(row["number"], row["status"]) for row in rows] == [("0", "COMPLETE"), ("1", "COMPLETE"),
                                                                ("2", "COMPLETE")]
    assert {n: (out / n / "metrics.json").stat().st_mtime_ns for n in ("0", "1")} == first


# ---------------------------------------------------------------------------------------- 8. TensorBoard
def test_tensorboard_test_tags_are_the_scores_of_best_pt(loss_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from logitlab.rundirs import load_run

    m = metrics(loss_run)
    assert m["best_epoch"] < m["epochs"], m  # otherwise best and final weights would be the same
    figures_drawn(loss_run)
    events = EventAccumulator(str(loss_run), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    [test_acc] = events.Scalars("test/acc")
    assert test_acc.value == pytest.approx(m["test/acc"], abs=1e-6)
    [test_loss] = events.Scalars("test/loss")
    assert test_loss.value == pytest.approx(m["test/loss"], rel=1e-5)

    model, data, _ = load_run(loss_run)  # best.pt's weights
    x, y = data.test
    with torch.no_grad():
        mine = (model(data.inputs(x)).argmax(1) == y).double().mean().item()
    assert mine == pytest.approx(m["test/acc"], abs=1e-9)
    assert test_acc.value == pytest.approx(mine, abs=1e-6)

    images = events.Tags()["images"]
    assert "test/confusion_matrix" in images, images
    assert all(tag.startswith("test/") for tag in images), images  # nothing drawn from the final weights


# ---------------------------------------------------------------------------------------- 9. val split
@pytest.mark.slow  # test_reliability refuses data.val_fraction=0 in make test
def test_zero_validation_fraction_is_refused(tmp_path):
    r = train("data.val_fraction=0", cwd=tmp_path)
    assert r.returncode == 2
    assert "data.val_fraction" in one_line(r)
    assert not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------------------------------- 10. from Python
def _python(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **ENV, "HYDRA_FULL_ERROR": "1"})


LOAD_APP = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("sweep_app_under_test", {str(APP)!r})
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
# Hydra looks for config_path="conf" next to the file of a task function defined in __main__ (as when
# app.py is the script being run); one from an imported module is looked up as that module's package.
app.run.__wrapped__.__module__ = "__main__"
"""


def test_a_failed_job_reaches_python_callers_as_an_exception_not_an_exit(tmp_path):
    out = tmp_path / "s"
    r = _python(LOAD_APP + f"""
    from hydra_plugins.logitlab_sweepers._jobs import SweepError
    sys.argv = ["x", "-m", "x=0.1,0.2", "fail.raise_at=0.2", "hydra.sweep.dir={out}"]
    try:
        app.run()
    except SystemExit as e:
        print(f"RESULT SystemExit {{e.code!r}}")
    except Exception as e:
        print(f"RESULT {{type(e).__name__}} {{isinstance(e, SweepError)}} {{e}}")
    else:
        print("RESULT no exception")
    """.replace("\n    ", "\n"), tmp_path)
    result = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert result, r.stdout[-2000:] + r.stderr[-3000:]
    assert result[-1].startswith("RESULT SweepError True 1 of 2 jobs failed"), result[-1]
    assert [row["status"] for row in summary(out)] == ["COMPLETE", "FAIL"]


def test_the_sweepers_sweep_returns_batches_of_job_returns(tmp_path):
    out = tmp_path / "s"
    r = _python(LOAD_APP + f"""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.utils import JobReturn, JobStatus

    search_path = create_automatic_config_search_path(None, None, {str(APP.parent / "conf")!r})
    hydra = Hydra.create_main_hydra2(task_name="app", config_search_path=search_path)
    ret = hydra.multirun(config_name="config", task_function=app.run.__wrapped__,
                         overrides=["x=0.1,0.2,0.3", "hydra.sweep.dir={out}"])
    assert isinstance(ret, list) and all(isinstance(batch, list) for batch in ret), ret
    jobs = [job for batch in ret for job in batch]
    assert all(isinstance(job, JobReturn) for job in jobs), ret
    print("RESULT", len(jobs), [job.status.name for job in jobs], [job.return_value for job in jobs])
    """.replace("\n    ", "\n"), tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    [result] = [line for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    expected = [round(0.7 - (x - 0.3) ** 2 + 0.1 + 0.1 * 32 / 256, 6) for x in (0.1, 0.2, 0.3)]
    assert result == f"RESULT 3 ['COMPLETED', 'COMPLETED', 'COMPLETED'] {expected}"


# ---------------------------------------------------------------------------------------- found in review
@pytest.mark.slow  # make test refuses more epochs for a schedule shaped by the epochs in test_cli_edges (cosine)
def test_a_one_cycle_run_cannot_be_extended_and_says_so_in_one_line(tmp_path):
    """OneCycleLR's shape is fixed by the total steps: more epochs would step it past its end."""
    run = tmp_path / "run"
    base = ["schedule=onecycle", "trainer.figures=false", f"hydra.run.dir={run}"]
    assert train(*base, "trainer.epochs=1", cwd=tmp_path).returncode == 0
    longer = train(*base, "trainer.epochs=2", cwd=tmp_path)
    last = longer.stderr.strip().splitlines()[-1]
    assert longer.returncode == 1 and "Traceback" not in longer.stderr
    assert last.startswith("error: ") and "cannot be extended" in last and "trainer.epochs" in last


def test_the_sweeper_ranks_by_the_objective_its_jobs_return(tmp_path):
    r = train("-m", "seed=0,1", "hydra.sweeper.objective=val/loss", cwd=tmp_path)
    assert r.returncode == 2 and "differs from trainer.objective=val/acc" in one_line(r)
    r = train("-m", "trainer.objective=val/acc,val/loss", cwd=tmp_path)
    assert r.returncode == 2 and "trainer.objective cannot be swept" in one_line(r)
    assert not (tmp_path / "multirun").exists()
