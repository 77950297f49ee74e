"""Fused groups through the command line: a sweep whose jobs train as one stacked model gives every job
the per-epoch numbers its solo run gives (fp32 on the CPU: 1e-5 relative, over more than 100 steps),
writes the same job directory, and resumes from its checkpoints as a solo run does."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli

SMALL = ["data=mnist1d", "trainer.progress=false"]  # 57 steps an epoch: 2 epochs are 114 steps
COLUMNS = ("train/loss", "train/acc", "val/loss", "val/acc", "lr")


def _sweep(sweep_dir: Path, *args: str, fuse: bool) -> str:
    done = run_cli("-m", *SMALL, *args, f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.fuse={str(fuse).lower()}",
                   "hydra.sweeper.figures=false", timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout + done.stderr


def _histories(sweep_dir: Path) -> dict[str, list[dict]]:
    return {d.name: list(csv.DictReader((d / "history.csv").open())) for d in sorted(sweep_dir.iterdir())
            if (d / "history.csv").exists()}


def _assert_equal(fused: dict, solo: dict, rel: float = 1e-5, late_rel: float = 1e-2) -> None:
    """Per-epoch numbers equal to `rel` over the first 2 epochs (114 steps, the issue's yardstick: 1e-5
    after 100). Later the rounding of batched against single matmuls (~1e-7 a step) has been amplified by
    as many more steps of training (at lr 1e-2, up to 1e-3 by step 171), so there they agree to `late_rel`
    and an accuracy to 1%."""
    assert fused.keys() == solo.keys() and fused
    for job in solo:
        assert len(fused[job]) == len(solo[job]), job
        for f_row, s_row in zip(fused[job], solo[job]):
            for key in COLUMNS:
                a, b = float(f_row[key]), float(s_row[key])
                early = int(f_row["epoch"]) <= 2
                close = pytest.approx(b, rel=rel, abs=1e-7) if early else \
                    pytest.approx(b, abs=1e-2) if key.endswith("acc") else pytest.approx(b, rel=late_rel, abs=1e-7)
                assert a == close, (job, f_row["epoch"], key, a, b)


GRIDS = {
    "mlp": ["model=mlp", "model.hidden=[32,16]", "seed=0,1", "optim.lr=1e-3,3e-3", "model.dropout=0.0,0.2",
            "trainer.label_smoothing=0.0,0.1", "trainer.epochs=2"],
    "mlp_sgd_clip": ["model=mlp", "optim=sgd", "optim.momentum=0.0,0.9", "optim.weight_decay=0.0,1e-3",
                     "+optim.dampening=0.0,0.3", "trainer.grad_clip=null,0.5", "schedule=cosine", "trainer.epochs=2"],
    "mlp_sgd_nesterov": ["model=mlp", "optim=sgd", "optim.momentum=0.9", "optim.nesterov=false,true",
                         "optim.lr=0.01,0.05", "trainer.epochs=2"],
    "mlp_adam_betas_patience": ["model=mlp", "+optim.betas=[0.9,0.999],[0.8,0.99]", "+optim.eps=1e-8,1e-6",
                                "optim.lr=1e-2", "trainer.patience=1,2", "trainer.epochs=6"],
    "mlp_bn_adamw": ["model=mlp", "model.batch_norm=true", "optim=adamw", "optim.weight_decay=0.01,0.1",
                     "optim.lr=1e-3,3e-3", "trainer.epochs=2"],
    "cnn": ["model=cnn", "model.channels=[8,16]", "model.dropout=0.0,0.3", "seed=0,1", "trainer.epochs=2"],
    # too big to gain from stacking: the group's jobs train one after another, as alone
    "cnn_big": ["model=cnn", "model.channels=[128,64]", "model.kernel_size=7", "model.dropout=0.0,0.2",
                "trainer.epochs=1"],
    "linear": ["model=linear", "optim=sgd", "optim.lr=0.1,0.01", "seed=0,1", "trainer.epochs=2"],
}


# make test-all; the fast ones cover seed, lr, dropout, label smoothing, betas, eps, patience, mlp and cnn
SLOW_GRIDS = {"mlp_sgd_clip", "mlp_sgd_nesterov", "mlp_bn_adamw", "linear"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_GRIDS else n for n in GRIDS])
def test_fused_jobs_equal_their_solo_runs(tmp_path, name):
    log = _sweep(tmp_path / "fused", *GRIDS[name], fuse=True)
    assert "fused groups" in log and "0 alone" in log
    _sweep(tmp_path / "solo", *GRIDS[name], fuse=False)
    _assert_equal(_histories(tmp_path / "fused"), _histories(tmp_path / "solo"))
    for job in _histories(tmp_path / "fused"):
        fused_dir, solo_dir = tmp_path / "fused" / job, tmp_path / "solo" / job
        # the same job directory: config, metrics, checkpoints, TensorBoard events
        assert (fused_dir / ".hydra" / "config.yaml").read_text() == (solo_dir / ".hydra" / "config.yaml").read_text()
        for path in ("checkpoints/last.pt", "checkpoints/best.pt", "metrics.json", "job.json", "versions.json"):
            assert (fused_dir / path).is_file(), path
        assert list(fused_dir.glob("events.out.tfevents.*"))
        f, s = (json.loads((d / "metrics.json").read_text()) for d in (fused_dir, solo_dir))
        assert f["test/acc"] == pytest.approx(s["test/acc"], abs=1e-2) and f["best_epoch"] == s["best_epoch"]
    summary = list(csv.DictReader((tmp_path / "fused" / "summary.csv").open()))
    assert len(summary) == len(_histories(tmp_path / "solo")) and all(r["status"] == "COMPLETE" for r in summary)


def test_a_fused_group_resumes_from_its_checkpoints_as_solo_runs_do(tmp_path):
    """Two epochs, then the same sweep asked for four: every job resumes from its last.pt (fused), and
    ends where four epochs straight end; a job of the group also continues alone (unfused)."""
    grid = ["model=mlp", "seed=0,1", "optim.lr=1e-3,3e-3", "model.dropout=0.1"]
    _sweep(tmp_path / "straight", *grid, "trainer.epochs=4", fuse=True)
    _sweep(tmp_path / "resumed", *grid, "trainer.epochs=2", fuse=True)
    log = _sweep(tmp_path / "resumed", *grid, "trainer.epochs=4", fuse=True)
    assert "holds this sweep already" in log
    _assert_equal(_histories(tmp_path / "resumed"), _histories(tmp_path / "straight"), rel=1e-6)
    _sweep(tmp_path / "alone", *grid, "trainer.epochs=2", fuse=True)
    _sweep(tmp_path / "alone", *grid, "trainer.epochs=4", fuse=False)
    _assert_equal(_histories(tmp_path / "alone"), _histories(tmp_path / "straight"))


def test_a_killed_fused_group_resumes_to_the_uninterrupted_run(tmp_path):
    """SIGINT mid-run: every member checkpoints the step it is at; the same command continues them, as one
    group again, to the numbers an uninterrupted group gives."""
    grid = ["model=mlp", "seed=0,1", "optim.lr=1e-3,3e-3", "model.dropout=0.1", "trainer.epochs=40"]
    _sweep(tmp_path / "straight", *grid, fuse=True)
    command = [sys.executable, "-m", "logitlab.train", "-m", *SMALL, *grid, f"hydra.sweep.dir={tmp_path / 'killed'}",
               "hydra.sweeper.figures=false"]
    with open(tmp_path / "killed.log", "w") as out:
        run = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        history = tmp_path / "killed" / "0" / "history.csv"
        deadline = time.monotonic() + 120
        while not (history.exists() and len(history.read_text().splitlines()) > 3):
            assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "killed.log").read_text()
            time.sleep(0.02)
        run.send_signal(signal.SIGINT)
        assert run.wait(timeout=60) != 0
    log = (tmp_path / "killed.log").read_text()
    assert "resume with:" in log, log[-2000:]
    assert all((tmp_path / "killed" / str(n) / "checkpoints" / "last.pt").is_file() for n in range(4))
    _sweep(tmp_path / "killed", *grid, fuse=True)
    _assert_equal(_histories(tmp_path / "killed"), _histories(tmp_path / "straight"), rel=1e-6)


def test_a_diverging_job_fails_alone_and_the_group_goes_on(tmp_path):
    done = run_cli("-m", *SMALL, "model=mlp", "optim=sgd", "optim.lr=0.01,1e6", "trainer.epochs=2",
                   f"hydra.sweep.dir={tmp_path}", "hydra.sweeper.figures=false", timeout=300)
    assert done.returncode != 0
    rows = {r["number"]: r for r in csv.DictReader((tmp_path / "summary.csv").open())}
    assert rows["0"]["status"] == "COMPLETE" and rows["1"]["status"] == "FAIL"
    assert "training loss became" in json.loads((tmp_path / "1" / "job.json").read_text())["error"]
    assert (tmp_path / "1" / "checkpoints" / "last.pt").is_file()  # the weights before it diverged
    assert "Traceback" not in done.stderr


def test_a_random_study_fuses_its_trials_and_prunes_each_on_its_own(tmp_path):
    """A random search asks its trials ahead, trains those that stack together, reports every member's
    epochs to its own trial and prunes members one by one; each trial equals the same study unfused."""
    study = ["model=mlp", "hydra.sweeper.sampler=random", "hydra.sweeper.seed=0", "hydra.sweeper.n_trials=6",
             "optim.lr=tag(log, interval(1e-4, 3e-2))", "model.dropout=interval(0.0, 0.3)",
             "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.25}", "trainer.epochs=3"]
    log = _sweep(tmp_path / "fused", *study, fuse=True)
    assert "fused group of 6" in log
    _sweep(tmp_path / "solo", *study, fuse=False)
    rows = {r["number"]: r for r in csv.DictReader((tmp_path / "fused" / "summary.csv").open())}
    solo_rows = {r["number"]: r for r in csv.DictReader((tmp_path / "solo" / "summary.csv").open())}
    assert {n: r["status"] for n, r in rows.items()} == {n: r["status"] for n, r in solo_rows.items()}
    statuses = {r["status"] for r in rows.values()}
    assert "PRUNED" in statuses and "COMPLETE" in statuses, statuses  # some pruned, the others went on
    _assert_equal(_histories(tmp_path / "fused"), _histories(tmp_path / "solo"))


def test_threads_auto_is_one_for_small_models_and_a_bad_value_is_one_line(tmp_path):
    done = run_cli(*SMALL, "model=mlp", "trainer.epochs=1", "trainer.figures=false", f"hydra.run.dir={tmp_path / 'a'}")
    assert done.returncode == 0 and "1 torch threads" in done.stderr, done.stderr[-2000:]
    done = run_cli(*SMALL, "model=mlp", "trainer.epochs=1", "trainer.figures=false", "trainer.threads=2",
                   f"hydra.run.dir={tmp_path / 'b'}")
    assert done.returncode == 0 and "2 torch threads" in done.stderr, done.stderr[-2000:]
    done = run_cli(*SMALL, "trainer.threads=0", f"hydra.run.dir={tmp_path / 'c'}")
    assert done.returncode == 2 and done.stderr.strip() == \
        "error: trainer.threads=0 must be a positive integer or auto", done.stderr
