"""Hydra's own conformance suites for sweepers and launchers (hydra.test_utils.launcher_common_tests, the
ones Hydra's optuna, joblib and submitit plugins run) with `hydra/sweeper=logitlab` on Hydra's basic
launcher and on the joblib launcher. Their apps are Hydra's test apps (hydra.test_utils.a_module and
configs/, installed with hydra-core), not logitlab's: they return 100, a string or nothing, so these
tests hold the sweeper to serving any Hydra app. Deviations, and why: docs/sweeper-conformance.md."""
import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.test_utils.launcher_common_tests import (BatchedSweeperTestSuite, IntegrationTestSuite,
                                                    LauncherTestSuite)
from omegaconf import OmegaConf

# The suites' apps leave hydra.job.chdir unset (Hydra 1.1 behaviour), and Hydra warns of it at each job.
pytestmark = pytest.mark.filterwarnings("ignore:Future Hydra versions will no longer change working directory")

@pytest.fixture(autouse=True, scope="module")
def _leave_the_session_as_found():
    """The suites run the sweeper in this process: the job's LOGITLAB_JOBS_AT_ONCE (set by the sweeper's
    task wrapper) and joblib's idle worker processes stay behind otherwise. They also expect the version
    base of a fresh process (unset: Hydra 1.1's change of directory), which a test composing logitlab's
    configs earlier in the same process (`version_base="1.3"`) leaves set."""
    import os

    from hydra import version
    from joblib.externals.loky import get_reusable_executor

    from logitlab.trainer.runtime import JOBS_AT_ONCE

    before = os.environ.get(JOBS_AT_ONCE)
    base = version.VersionBase.instance().getbase()
    version.VersionBase.instance().version_base = version._UNSPECIFIED_
    yield
    version.VersionBase.instance().version_base = base
    get_reusable_executor().shutdown(wait=True)
    if before is None:
        os.environ.pop(JOBS_AT_ONCE, None)
    else:
        os.environ[JOBS_AT_ONCE] = before


# The joblib launcher on 2 workers: the suites' sweeps have at most 6 jobs, and each worker is a process.
# The sweep's figures are off: the suites check launching, returns and directories, and drawing them
# costs a torch import and a TensorBoard writer per sweep (tests/test_sweep_visibility.py checks them).
SWEEPER = ["hydra/sweeper=logitlab", "hydra.sweeper.figures=false"]
LAUNCHERS = [("basic", SWEEPER), ("joblib", [*SWEEPER, "hydra.launcher.n_jobs=2"])]


@pytest.mark.parametrize("launcher_name, overrides", LAUNCHERS)
class TestLogitlabSweeper(LauncherTestSuite):
    pass


# The suite expects batches of 2 (Hydra's BasicSweeper is given max_batch_size=2): n_jobs is this
# sweeper's batch size.
@pytest.mark.parametrize("launcher_name, overrides", [(name, [*flags, "hydra.sweeper.n_jobs=2"])
                                                      for name, flags in LAUNCHERS])
class TestLogitlabSweeperBatches(BatchedSweeperTestSuite):
    pass


# Each case runs a new app in a subprocess; on joblib each also starts 2 worker processes (~3x the basic
# launcher's cost), so joblib's run with `make test-all`. The in-process suites above run joblib's
# workers in `make test`.
@pytest.mark.parametrize("task_launcher_cfg, extra_flags", [
    pytest.param({}, ["-m", *SWEEPER, "hydra/launcher=basic"], id="basic"),
    pytest.param({}, ["-m", *SWEEPER, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], id="joblib",
                 marks=pytest.mark.slow),
])
class TestLogitlabSweeperIntegration(IntegrationTestSuite):
    pass


def test_the_sweeper_is_discovered():
    from hydra.core.plugins import Plugins
    from hydra.plugins.sweeper import Sweeper

    from hydra_plugins.logitlab_sweepers.sweeper import LogitlabSweeper

    assert LogitlabSweeper.__name__ in [s.__name__ for s in Plugins.instance().discover(Sweeper)]


# ------------------------------------------------------------------ any Hydra app: its returned value
APP = '''import hydra


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    return (cfg.x - 2) ** 2


if __name__ == "__main__":
    main()
'''


def other_app(tmp_path: Path) -> Path:
    """A Hydra app that is not logitlab's: no trainer.objective, it returns a float."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(APP)
    (app / "config.yaml").write_text("x: 0\n")
    return app / "app.py"


def multirun(app: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(app), "-m", "hydra/sweeper=logitlab", "hydra.sweeper.figures=false",
                           *args], capture_output=True, text=True, cwd=app.parent, timeout=120)


def rows(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_another_apps_grid_ranks_its_returned_value_by_the_direction_given(tmp_path):
    app = other_app(tmp_path)
    low, high = tmp_path / "low", tmp_path / "high"
    done = multirun(app, "x=1,2,4", f"hydra.sweep.dir={low}")
    assert done.returncode == 0, done.stderr
    assert [(r["x"], r["value"]) for r in rows(low)] == [("1", "1"), ("2", "0"), ("4", "4")]
    assert "value = 0 (minimize)" in (low / "best.yaml").read_text()  # minimize unless told
    done = multirun(app, "x=1,2,4", "hydra.sweeper.direction=maximize", f"hydra.sweep.dir={high}")
    assert done.returncode == 0, done.stderr
    best = (high / "best.yaml").read_text()
    assert "value = 4 (maximize)" in best and "+GROUP=NAME" in best
    # best.yaml, applied as its header says, is the best job's config
    (app.parent / "preset").mkdir()
    shutil.copy(high / "best.yaml", app.parent / "preset" / "best.yaml")
    shown = subprocess.run([sys.executable, str(app), "+preset=best", "--cfg", "job"], capture_output=True,
                           text=True, cwd=app.parent, timeout=60)
    assert OmegaConf.create(shown.stdout) == OmegaConf.load(high / "2" / ".hydra" / "config.yaml")


def test_another_apps_study_optimises_its_returned_value(tmp_path):
    import optuna

    app, out = other_app(tmp_path), tmp_path / "s"
    done = multirun(app, "x=interval(0,4)", "hydra.sweeper.sampler=random", "hydra.sweeper.n_trials=3",
                    "hydra.sweeper.seed=0", "hydra.sweeper.direction=maximize", f"hydra.sweep.dir={out}")
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="app", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal"))))
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert [t.value for t in study.trials] == [pytest.approx((t.params["x"] - 2) ** 2) for t in study.trials]


@pytest.mark.parametrize("flag, said", [
    ("hydra.sweeper.direction=up", "hydra.sweeper.direction='up' is not a direction; valid: minimize, maximize"),
    ("hydra.sweeper.pruner=median", "a pruner needs logitlab's app"),
])
def test_another_apps_wrong_setting_is_one_line(tmp_path, flag, said):
    app = other_app(tmp_path)
    extra = ["hydra.sweeper.sampler=random"] if "pruner" in flag else []
    done = multirun(app, "x=1,2", flag, *extra, f"hydra.sweep.dir={tmp_path / 's'}")
    assert done.returncode == 1 and said in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_logitlabs_app_keeps_its_metrics_and_their_directions(tmp_path):
    """tests/sweep_app has trainer.objective: its objective is a metric, whose direction is derived."""
    app = Path(__file__).parent / "sweep_app" / "app.py"
    for flag, said in [("hydra.sweeper.direction=minimize", "contradicts the objective val/acc"),
                       ("hydra.sweeper.objective=value", "hydra.sweeper.objective='value' is not a metric")]:
        done = multirun(app, "x=0.1,0.2", flag, f"hydra.sweep.dir={tmp_path / 's'}")
        assert done.returncode == 1 and said in done.stderr, done.stderr
