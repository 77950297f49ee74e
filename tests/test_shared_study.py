"""Several sweepers on one study in a real PostgreSQL server (Debian's `postgresql`, started here in a
temporary data directory on 127.0.0.1 and stopped after): n_trials is the total, no trial runs twice,
the trials of a sweeper that was SIGKILLed are continued in their job directories, and the sweeper that
ends last writes the summary of the whole study."""
from __future__ import annotations

import csv
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT

APP = Path(__file__).parent / "sweep_app" / "app.py"


def _postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_sweepers_on_one_journal_study_and_one_is_killed(tmp_path):
    """One host, the default journal file: two sweepers started together with the same command and seed
    ask different trials, the survivor continues the killed one's running trial at once (its process is
    gone), waits for nothing else, and its summary holds n_trials trials, each trained once."""
    import optuna
    from optuna.trial import TrialState

    out = tmp_path / "s"
    args = [sys.executable, str(APP), "-m", "hparams_search=nas", "hydra.sweeper.sampler=random",
            "hydra.sweeper.fuse=false", "hydra.sweeper.n_trials=8", "epochs=4", "sleep=0.25", f"hydra.sweep.dir={out}"]
    sweepers = [subprocess.Popen(args, cwd=tmp_path, stdout=(tmp_path / f"{k}.log").open("w"),
                                 stderr=subprocess.STDOUT) for k in ("a", "b")]
    try:
        deadline, training = time.monotonic() + 60, []
        while not training:  # kill the first sweeper seen training a trial
            assert time.monotonic() < deadline and all(p.poll() is None for p in sweepers)
            calls = "".join(p.read_text() for p in out.glob("*/calls.log"))
            training = [p for p in sweepers if f"pid={p.pid}" in calls]
            time.sleep(0.05)
        killed, survivor = training[0], next(p for p in sweepers if p is not training[0])
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        log = tmp_path / ("a.log" if survivor is sweepers[0] else "b.log")
        assert survivor.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        for p in sweepers:
            if p.poll() is None:
                p.kill()
    pids = {int(line.split("pid=")[1].split()[0]) for p in out.glob("*/calls.log") for line in p.read_text().splitlines()}
    assert pids == {killed.pid, survivor.pid}  # both trained trials
    study = optuna.load_study(study_name="app", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal"))))
    continued = [t for t in study.trials if "continues" in t.user_attrs]
    assert continued and all(t.state == TrialState.COMPLETE for t in continued)
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"COMPLETE"}
    assert len({r["job_dir"] for r in rows}) == 8
    assert len({r["overrides"] for r in rows}) == 8  # the same seed, yet no two sweepers asked the same values
    continued_jobs = {t.user_attrs["job"] for t in continued}
    for row in rows:  # each job trained once; a continued one may have started under the killed sweeper too
        calls = (Path(row["job_dir"]) / "calls.log").read_text().splitlines()
        job = int(Path(row["job_dir"]).name)
        assert len(calls) in ((1, 2) if job in continued_jobs else (1,)), (row, calls)
        assert (Path(row["job_dir"]) / "metrics.json").is_file()


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of its own: `make test-all` installs Debian's postgresql where it is missing."""
    pytest.importorskip("psycopg", reason="pip install 'logitlab[postgres]' (psycopg, which SQLAlchemy 2.1 uses for postgresql://)")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; `make test-all` does it)")
    home = Path(tempfile.mkdtemp(prefix="logitlab-pg-"))
    # The server refuses to run as root: run it as Debian's postgres user then.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(home, "postgres")
    data, port = home / "data", _free_port()
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                    "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w",
                    "-o", f"-h 127.0.0.1 -p {port} -k {home} -c fsync=off", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _study(url: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=url)


def _sweeper(sweep_dir: Path, url: str, name: str, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "logitlab.train", "-m", "model=mlp", "data=digits", "trainer.epochs=60",
               "trainer.progress=false", "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0",
               "hydra.sweeper.n_trials=8", "hydra.sweeper.fuse=false", "hydra.sweeper.figures=false",
               "optim.lr=tag(log, interval(1e-3, 1e-2))", f"hydra.sweeper.storage={url}",
               f"hydra.sweeper.study_name={name}", "hydra.sweeper.heartbeat_s=1", f"hydra.sweep.dir={sweep_dir}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(command, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


@pytest.mark.slow  # a database server and two sweeps of real training: ~1 min
def test_two_sweepers_share_a_study_and_one_continues_the_trials_of_the_other_killed(postgres_url, tmp_path):
    from optuna.trial import TrialState

    sweep_dir, name = tmp_path / "sweep", "shared"
    first = _sweeper(sweep_dir, postgres_url, name, tmp_path / "first.log")
    time.sleep(3)  # the first creates the study; the second joins it
    second = _sweeper(sweep_dir, postgres_url, name, tmp_path / "second.log")
    try:
        deadline = time.monotonic() + 240
        while True:  # kill the first once it has finished a trial and runs another
            assert time.monotonic() < deadline and first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            try:
                trials = _study(postgres_url, name).get_trials(deepcopy=False)
            except Exception:  # not created yet
                trials = []
            mine = [t for t in trials if t.user_attrs.get("worker", {}).get("pid") == first.pid]
            if any(t.state == TrialState.COMPLETE for t in mine) and any(
                    t.state == TrialState.RUNNING and "overrides" in t.user_attrs for t in mine):
                break
            time.sleep(0.2)
        killed = [t.number for t in mine if t.state == TrialState.RUNNING]
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert second.wait(timeout=300) == 0, (tmp_path / "second.log").read_text()[-4000:]
    finally:
        for p in (first, second):
            if p.poll() is None:
                p.kill()
    log = (tmp_path / "second.log").read_text()
    assert "Traceback" not in log, log[-3000:]

    trials = _study(postgres_url, name).get_trials(deepcopy=False)
    continuations = {t.user_attrs["continues"]: t for t in trials if "continues" in t.user_attrs}
    assert set(killed) <= set(continuations), (killed, sorted(continuations))
    for number in killed:  # continued by the second sweeper, in the killed trial's job directory
        cont = continuations[number]
        assert cont.state == TrialState.COMPLETE and cont.user_attrs["job"] == number
        assert cont.user_attrs["worker"]["pid"] == second.pid
        assert cont.user_attrs["job_dir"] == str(sweep_dir / str(number))
        assert f"continuing it as trial {cont.number} in job {number}" in log
    pids = {t.user_attrs["worker"]["pid"] for t in trials if t.state == TrialState.COMPLETE}
    assert pids == {first.pid, second.pid}  # both did work

    rows = list(csv.DictReader((sweep_dir / "summary.csv").open()))
    assert len(rows) == 8 and {r["status"] for r in rows} == {"COMPLETE"}, rows  # n_trials in all
    assert len({r["job_dir"] for r in rows}) == 8  # no trial ran twice
    for row in rows:  # every job trained each epoch once; a continued one resumed from its checkpoint
        epochs = [int(r["epoch"]) for r in csv.DictReader((Path(row["job_dir"]) / "history.csv").open())]
        assert epochs == list(range(1, 61)), (row["job_dir"], epochs)
    assert (sweep_dir / "best.yaml").is_file()
    summary = subprocess.run([sys.executable, "-m", "logitlab.summary", str(sweep_dir)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
    assert summary.returncode == 0 and (sweep_dir / "param_importance.png").is_file(), summary.stderr[-2000:]


@pytest.mark.slow
def test_a_lapsed_heartbeat_frees_a_trial_for_exactly_one_other_sweeper(postgres_url):
    """Sweepers on other hosts: a trial is left alone while its sweeper's heartbeat goes on, becomes an
    orphan once it lapses for the grace period, and only one of two sweepers gets to continue it."""
    import optuna

    from hydra_plugins.logitlab_sweepers._leases import Leases
    from hydra_plugins.logitlab_sweepers._pruning import open_storage

    def study():
        return optuna.load_study(study_name="lapsed", storage=open_storage(postgres_url, heartbeat_s=1))

    optuna.create_study(study_name="lapsed", storage=postgres_url)
    owner, one, other = Leases(study(), 1), Leases(study(), 1), Leases(study(), 1)
    owner.me, one.me, other.me = ({"host": f"node-{k}", "pid": 1} for k in "abc")
    with owner:
        trial = owner.study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.set_user_attr("overrides", [f"x={trial.params['x']}"])
        owner.hold(trial)
        time.sleep(6)  # longer than the grace period (4 s), with heartbeats every second
        assert one.orphans() == [] and other.orphans() == []
        owner._stop.set()  # the owner dies: its heartbeats stop and nothing is released
        owner._thread.join()
        owner.held.clear()
        time.sleep(5.5)
        assert [t.number for t in one.orphans()] == [trial.number] == [t.number for t in other.orphans()]
        taken = one.take_over(one.orphans()[0])
        assert taken is not None and other.take_over(other.study.trials[trial.number]) is None
    frozen = {t.number: t for t in study().get_trials(deepcopy=False)}
    assert frozen[trial.number].state == optuna.trial.TrialState.FAIL
    assert frozen[taken.number].state == optuna.trial.TrialState.RUNNING
    assert frozen[taken.number].params == frozen[trial.number].params
    assert frozen[taken.number].user_attrs["continues"] == trial.number
