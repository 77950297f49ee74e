"""Sweeps through logitlab's Hydra sweeper (src/hydra_plugins/logitlab_sweepers): real multiruns in
subprocesses, on tests/sweep_app (instant jobs that can raise, return NaN, sleep, and report epochs) and,
for the slow ones, on logitlab.train itself with 1-2 epoch jobs on MNIST-1D."""
import csv
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from hydra_plugins.logitlab_sweepers import _jobs, _search_space

APP = Path(__file__).parent / "sweep_app" / "app.py"
THRESHOLD = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.39}"


def sweep(*args: str, cwd: Path, app: list[str] | None = None, env: dict | None = None,
          timeout: float = 120) -> subprocess.CompletedProcess:
    command = (app or [sys.executable, str(APP)]) + ["-m", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def summary(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


def study_of(sweep_dir: Path, name: str = "app") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep_dir / "optuna.journal"))))


def trainings(job_dir: Path) -> int:
    """How many times the job really trained (tests/sweep_app appends a line each time)."""
    path = job_dir / "calls.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


# ---------------------------------------------------------------------------- search spaces
def space(params: dict, layers: dict | None = None, arguments: tuple = ()) -> _search_space.SearchSpace:
    return _search_space.build(OverridesParser.create(), params, layers or {}, list(arguments))


def test_sweep_syntax_maps_to_optuna_distributions():
    s = space({"a": "range(1, 4)", "b": "tag(log, interval(1e-4, 1e-1))", "c": "tag(int, interval(16, 256))",
               "d": "choice([64],[64,32])", "e": "relu,gelu", "f": "5"}, arguments=("e=tanh,silu",))
    d = {p.name: p.distribution for p in s.params}
    assert (d["a"].low, d["a"].high, d["a"].step) == (1, 3, 1)  # range stops before 4, as in a grid
    assert isinstance(d["b"], optuna.distributions.FloatDistribution) and d["b"].log
    assert isinstance(d["c"], optuna.distributions.IntDistribution) and (d["c"].low, d["c"].high) == (16, 256)
    assert d["d"].choices == ("[64]", "[64,32]")
    assert d["e"].choices == ("tanh", "silu")  # the command line replaces the config's entry
    assert s.fixed == ["f=5"]
    assert space({"a": "range(1, 4)", "d": "choice([64],[64,32])"}).grid() == {"a": [1, 2, 3],
                                                                                "d": ["[64]", "[64,32]"]}


def test_layers_ask_depth_then_one_width_per_layer():
    s = space({"lr": "interval(0.1, 0.2)"}, {"model.hidden": {"depth": "range(1, 4)", "width": "choice(8, 16)"}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        overrides = s.ask(trial)
        depth = trial.params["model.hidden.depth"]
        widths = [trial.params[f"model.hidden.{i}"] for i in range(depth)]
        assert sorted(trial.params) == sorted(["lr", "model.hidden.depth",
                                               *(f"model.hidden.{i}" for i in range(depth))])
        assert overrides[0] == f"model.hidden=[{','.join(map(str, widths))}]"


def test_space_errors_are_one_line():
    with pytest.raises(_jobs.SweepError, match="depth"):
        space({}, {"model.hidden": {"depth": "interval(1, 3)", "width": "choice(8)"}})
    with pytest.raises(_jobs.SweepError, match="interval"):
        space({"lr": "interval(0.1, 0.2)"}).grid()


def test_parallel_jobs_get_one_gpu_each():
    batch = _jobs.pin_gpus([["x=1"], ["x=2"], ["x=3"]], ["0", "1"])
    assert [b[-1].split("=")[-1] for b in batch] == ["'0'", "'1'", "'0'"]


# ---------------------------------------------------------------------------- grid sweeps
def test_grid_sweep_goes_on_past_a_raise_and_a_nan(tmp_path):
    out = tmp_path / "s"
    r = sweep("x=0.1,0.2,0.3,0.4", "fail.raise_at=0.2", "fail.nan_at=0.3", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1] == f"error: 2 of 4 jobs failed (#1, #2); see {out}/summary.csv"
    rows = summary(out)
    assert [(row["number"], row["status"], row["x"]) for row in rows] == [
        ("0", "COMPLETE", "0.1"), ("1", "FAIL", "0.2"), ("2", "FAIL", "0.3"), ("3", "COMPLETE", "0.4")]
    assert rows[1]["error"] == "RuntimeError: boom at x=0.2" and rows[2]["error"].endswith("objective is nan")
    assert "boom at x=0.2" in Path(rows[1]["log"]).read_text()  # the traceback is in the job's log
    assert all(float(row["wall_seconds"]) >= 0 for row in rows) and rows[0]["test/acc"] == "0.7625"
    assert "x: 0.4" in (out / "best.yaml").read_text()


def test_max_failures_stops_a_grid_early(tmp_path):
    out = tmp_path / "s"
    r = sweep("x=0.1,0.2,0.3", "fail.raise_at=0.1", "hydra.sweeper.max_failures=0",
              f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 1 and "max_failures=0" in r.stderr
    assert [row["status"] for row in summary(out)] == ["FAIL"]


def test_best_yaml_is_an_experiment_preset_for_the_best_job(tmp_path):
    out = tmp_path / "s"
    assert sweep("model=mlp,linear", "x=0.2,0.3", f"hydra.sweep.dir={out}", cwd=tmp_path).returncode == 0
    best = max(summary(out), key=lambda row: float(row["val/acc"]))
    presets = tmp_path / "extra" / "experiment"
    presets.mkdir(parents=True)
    shutil.copy(out / "best.yaml", presets / "best.yaml")
    shown = subprocess.run([sys.executable, str(APP), "-cd", str(tmp_path / "extra"), "experiment=best",
                            "--cfg", "job"], capture_output=True, text=True, cwd=tmp_path)
    from omegaconf import OmegaConf

    job_cfg = OmegaConf.load(Path(best["job_dir"]) / ".hydra" / "config.yaml")
    assert OmegaConf.create(shown.stdout) == job_cfg


@pytest.mark.slow  # Hydra's launcher suite runs the joblib launcher under this sweeper in make test
def test_joblib_launcher_runs_parallel_jobs_one_gpu_each(tmp_path):
    out = tmp_path / "s"
    r = sweep("x=0.1,0.2,0.3,0.4", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
              f"hydra.sweep.dir={out}", cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert r.returncode == 0, r.stderr
    rows = summary(out)
    assert [row["status"] for row in rows] == ["COMPLETE"] * 4
    seen = [(out / row["number"] / "calls.log").read_text().split() for row in rows]
    assert [s[2] for s in seen] == ["gpu=0", "gpu=1", "gpu=0", "gpu=1"]
    assert len({s[1] for s in seen}) == 4  # each batch in fresh workers: CUDA picks its GPU once


# ---------------------------------------------------------------------------- Optuna studies
def test_a_parallel_study_starts_a_trial_as_soon_as_one_ends(tmp_path):
    """Two at a time, trial 0 slow: with no batch barrier the other slot runs every other trial meanwhile
    (Hydra's own sweepers would wait for trial 0 before launching trials 2 and 3)."""
    out = tmp_path / "s"
    r = sweep("hparams_search=grid", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "slow_job=0",
              "slow_seconds=8", f"hydra.sweep.dir={out}", cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    rows = {row["number"]: row for row in summary(out)}
    assert sorted(rows) == ["0", "1", "2", "3"] and all(row["status"] == "COMPLETE" for row in rows.values())
    ended = {n: (out / n / "metrics.json").stat().st_mtime for n in rows}
    assert ended["2"] < ended["0"] and ended["3"] < ended["0"], ended  # in batches, 2 and 3 wait for 0


def test_nas_study_records_depth_and_that_many_widths_and_prunes(tmp_path):
    r = sweep("hparams_search=nas", THRESHOLD, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "multirun" / "hparams_search=nas"  # the preset's sweep dir: one per command line
    trials = study_of(out).trials
    assert len(trials) == 6 and len(summary(out)) == 6
    for t in trials:
        depth = t.params["model.hidden.depth"]
        assert {k for k in t.params if k.startswith("model.hidden.")} == \
            {"model.hidden.depth", *(f"model.hidden.{i}" for i in range(depth))}
        assert Path(t.user_attrs["job_dir"]) == out / str(t.number)
    states = [t.state.name for t in trials]
    assert "PRUNED" in states and "COMPLETE" in states and "FAIL" not in states
    pruned = next(t for t in trials if t.state.name == "PRUNED")
    assert not (out / str(pruned.number) / "metrics.json").exists()  # stopped after its first epoch


def test_failed_trials_are_recorded_and_the_study_goes_on(tmp_path):
    out = tmp_path / "s"
    r = sweep("hparams_search=grid", "fail.raise_at=0.2", "fail.nan_at=0.3", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 1 and "2 of 4 jobs failed" in r.stderr.splitlines()[-1]
    rows = {row["x"]: row for row in summary(out)}
    assert sorted(rows) == ["0.1", "0.2", "0.3", "0.4"]  # sampler=grid: every point once
    assert rows["0.2"]["status"] == rows["0.3"]["status"] == "FAIL"
    assert rows["0.2"]["overrides"] == "x=0.2" and Path(rows["0.2"]["log"]).exists()


def test_killed_study_resumes_where_it_stopped(tmp_path):
    out = tmp_path / "s"
    # 1 s trials: under load, a trial of 0.4 s could finish (metrics.json) between being seen and the kill
    args = ["hparams_search=nas", "hydra.sweeper.n_trials=4", "sleep=0.5", f"hydra.sweep.dir={out}"]
    proc = subprocess.Popen([sys.executable, str(APP), "-m", *args], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill it while trial 2 trains: trials 0 and 1 are done, and the journal is not being written.
    deadline = time.monotonic() + 60
    while not (len(list(out.glob("*/metrics.json"))) == 2 and (out / "2" / "calls.log").exists()):
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it was killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [t.state.name for t in study_of(out).trials] == ["COMPLETE", "COMPLETE", "RUNNING"]

    r = sweep(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    trials = study_of(out).trials
    # the killed sweeper's trial 2 is continued first, as trial 3 in job 2; n_trials counts it once
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert trials[3].user_attrs["continues"] == 2 and trials[3].user_attrs["job"] == 2
    assert trials[3].params == trials[2].params
    assert [trainings(out / str(n)) for n in (0, 1, 2, 4)] == [1, 1, 2, 1]  # only the killed trial again
    assert not (out / "3").exists()
    assert [(r["number"], r["status"], Path(r["job_dir"]).name) for r in summary(out)] == [
        ("0", "COMPLETE", "0"), ("1", "COMPLETE", "1"), ("3", "COMPLETE", "2"), ("4", "COMPLETE", "4")]


def test_interrupted_study_keeps_its_summary_and_resumes(tmp_path):
    out = tmp_path / "s"
    args = ["hparams_search=grid", "fail.interrupt_at=0.2", f"hydra.sweep.dir={out}"]
    r = sweep(*args, cwd=tmp_path)
    assert r.returncode == 130 and "Traceback" not in r.stderr
    command = r.stderr.strip().splitlines()[-1].split("resume with: ")[1]
    assert command in (shlex.join([python, str(APP), "-m", *args[:-1], f"hydra.sweep.dir={out}"])
                       for python in ("python", sys.executable))  # python where it is this one
    states = {row["x"]: row["status"] for row in summary(out)}
    assert states["0.2"] == "RUNNING" and set(states.values()) <= {"COMPLETE", "RUNNING"}
    assert sweep(*args, cwd=tmp_path).returncode == 0
    trials = [t for t in study_of(out).trials if "continues" not in t.user_attrs]
    continued = {t.user_attrs["continues"]: t for t in study_of(out).trials if "continues" in t.user_attrs}
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" or t.number in continued for t in trials)
    again = next(t for t in trials if t.params["x"] == 0.2)
    assert again.state.name == "FAIL" and continued[again.number].state.name == "COMPLETE"
    assert "its sweeper released it" in again.user_attrs["error"]
    assert trainings(out / str(again.number)) == 2  # continued in its own job dir
    assert len(summary(out)) == 4


@pytest.mark.slow  # submitit polls its jobs' result files: ~10 s
def test_submitit_local_launcher_runs_a_study(tmp_path):
    out = tmp_path / "s"
    r = sweep("hparams_search=grid", "hydra/launcher=submitit_local", "hydra.sweeper.n_jobs=4", THRESHOLD,
              f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert sorted(row["status"] for row in summary(out)) == ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"]


def test_user_errors_are_one_line(tmp_path):
    r = sweep("hparams_search=nas", "hydra.sweeper.sampler=bogus", f"hydra.sweep.dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == ("error: hydra.sweeper.sampler='bogus'; valid: null (a grid), random, tpe, "
                                "grid, or {_target_: optuna.samplers.NAME, ...}")
    r = sweep("x=interval(0, 1)", f"hydra.sweep.dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip().startswith("error: x=interval(0, 1): a grid cannot sweep")
    r = sweep("hparams_search=mlp_nas", "trainer.objective=test/acc", f"hydra.sweep.dir={tmp_path / 'p'}",
              app=TRAIN, cwd=tmp_path)  # test/ metrics exist only at the end: nothing to prune on
    assert r.returncode == 1 and r.stderr.strip().startswith("error: a pruner needs an objective reported every")


# ---------------------------------------------------------------------------- logitlab.train itself
TRAIN = [sys.executable, "-m", "logitlab.train"]
SMALL = ["data=mnist1d", "trainer.epochs=1", "trainer.progress=false"]


def test_plugin_is_discovered_by_logitlab_train(tmp_path):
    r = subprocess.run([*TRAIN, "--info", "plugins"], capture_output=True, text=True, cwd=tmp_path)
    assert "LogitlabSweeper" in r.stdout.split("Sweeper:")[1].split("Profiling")[0]
    r = subprocess.run([*TRAIN, "--cfg", "hydra", "--package", "hydra.sweeper"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert "LogitlabSweeper" in r.stdout  # the default sweeper in conf/config.yaml


@pytest.mark.slow
def test_real_grid_over_models_and_hidden_widths(tmp_path):
    out = tmp_path / "models"
    r = sweep("model=linear,mlp,cnn", "seed=0", *SMALL, f"hydra.sweep.dir={out}", app=TRAIN, cwd=tmp_path,
              timeout=300)
    assert r.returncode == 0, r.stderr
    assert [row["model"] for row in summary(out)] == ["linear", "mlp", "cnn"]
    out = tmp_path / "hidden"
    r = sweep("model=mlp", "model.hidden=[8],[16,8]", "model.activation=relu,tanh", *SMALL,
              f"hydra.sweep.dir={out}", app=TRAIN, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = summary(out)
    assert [(row["model.hidden"], row["model.activation"]) for row in rows] == [
        ("[8]", "relu"), ("[8]", "tanh"), ("[16,8]", "relu"), ("[16,8]", "tanh")]
    for row in rows:
        job = Path(row["job_dir"])
        metrics = json.loads((job / "metrics.json").read_text())
        assert float(row["val/acc"]) == pytest.approx(metrics["val/acc"])
        assert float(row["test/acc"]) == pytest.approx(metrics["test/acc"])
        assert (job / "checkpoints" / "last.pt").exists() and list(job.glob("events.out.tfevents.*"))
    _check_tensorboard_hparams(rows, swept=["model.hidden", "model.activation"])


def _check_tensorboard_hparams(rows: list[dict], swept: list[str]) -> None:
    """TensorBoard over a sweep dir shows each job in the HParams tab: a session with the job's swept
    values, whose metrics (val/acc, test/acc, ...) are the job's own final scalars."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    for row in rows:
        events = EventAccumulator(row["job_dir"])
        events.Reload()
        content = events.PluginTagToContent("hparams")
        session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        hparams = session.session_start_info.hparams
        assert all(hparams[key].string_value.replace(" ", "") == row[key] for key in swept)
        # no experiment summary per run: TensorBoard makes one of every run's columns (their union)
        assert "_hparams_/experiment" not in content
        assert events.Scalars("best/val/acc")[-1].value == pytest.approx(float(row["val/acc"]))
        assert events.Scalars("test/acc")[-1].value == pytest.approx(float(row["test/acc"]))


@pytest.mark.slow
def test_real_mlp_nas_with_tpe_records_depths_and_prunes(tmp_path):
    out = tmp_path / "s"
    r = sweep("hparams_search=mlp_nas", "data=mnist1d", "trainer.epochs=2", "trainer.progress=false",
              "hydra.sweeper.n_trials=6", "hydra.sweeper.seed=0",
              "hydra.sweeper.pruner={_target_:optuna.pruners.PercentilePruner,percentile:25,n_startup_trials:1}",
              f"hydra.sweep.dir={out}", app=TRAIN, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    trials = study_of(out, "train").trials
    assert len(trials) == 6 and trials[0].state.name == "COMPLETE"
    assert any(t.state.name == "PRUNED" for t in trials)
    for t in trials:
        depth = t.params["model.hidden.depth"]
        assert [k for k in t.params if k.startswith("model.hidden.") and k != "model.hidden.depth"] == \
            [f"model.hidden.{i}" for i in range(depth)]
    assert (out / "best.yaml").exists()
