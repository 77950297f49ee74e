"""What a sweep shows while it runs and after: one progress line per finished job, the end table grouped
over seeds (mean ± std, n), `logitlab-summary DIR` (the table again, PNGs, TensorBoard images), and an
Optuna study that optuna-dashboard can read whole (the objective's name, every epoch of every trial).
All on tests/sweep_app's instant jobs."""
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from PIL import Image

from test_sweeps import study_of, sweep

SUMMARY = [sys.executable, "-m", "logitlab.summary"]
PNG = b"\x89PNG\r\n\x1a\n"


def output(r: subprocess.CompletedProcess) -> str:
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def seed_grid(tmp_path_factory) -> tuple[Path, str]:
    """x=0.1,0.2 seed=0,1,2: six jobs, two configurations; the app's score grows by 0.001 per seed."""
    cwd = tmp_path_factory.mktemp("grid")
    out = cwd / "sweep"
    r = sweep("x=0.1,0.2", "seed=0,1,2", f"hydra.sweep.dir={out}", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return out, output(r)


def test_each_job_logs_one_progress_line_and_the_launcher_stays_quiet(seed_grid):
    _, log = seed_grid
    lines = [line for line in log.splitlines() if " done: #" in line]
    assert [line.split("job ")[1].split(" done")[0] for line in lines] == [f"{k}/6" for k in range(1, 7)]
    first = lines[0].split("] ", 1)[1]
    assert first.startswith("job 1/6 done: #0 COMPLETE val/acc=0.7725 (elapsed ")
    assert ", ETA " in first and first.endswith("[x=0.1 seed=0]")
    assert "Launching 1 jobs locally" not in log and "\t#0 : " not in log


def test_a_seed_sweep_is_tabled_as_mean_and_std_over_seeds(seed_grid):
    _, log = seed_grid
    table = log.split("configurations by val/acc (maximize), mean ± std over seeds (6 jobs):\n")[1].splitlines()
    assert table[0].split() == ["val/acc", "test/acc", "n", "wall_s", "jobs", "overrides"]
    best, second = table[1].split(), table[2].split()
    # x=0.2 scores 0.8025 + 0.001 * seed: mean 0.8035, sample std 0.001 over n=3
    assert best[:7] == ["0.8035", "±", "0.0010", "0.7935", "±", "0.0010", "3"]
    assert best[-2:] == ["#3,#4,#5", "x=0.2"]
    assert second[:3] == ["0.7735", "±", "0.0010"] and second[-1] == "x=0.1"


def summarize(sweep_dir: Path, capsys) -> str:
    """logitlab-summary in this process (the command line itself: test_summary_of_a_directory_...)."""
    from logitlab import summary

    summary.main([str(sweep_dir)])
    return capsys.readouterr().out


def test_summary_prints_the_table_and_writes_figures_and_tensorboard_images(seed_grid, capsys):
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

    out, log = seed_grid
    printed = summarize(out, capsys)
    table = printed.split("\nnote:")[0].split("\nwrote")[0]
    assert table.strip() in log  # the same table the sweep printed
    names = ["objective_vs_params", "objective_vs_values"]
    for name in names:
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == PNG and Image.open(png).size[0] > 100
        assert f"wrote {png}" in printed
    board = EventAccumulator(str(out / "summary"), size_guidance={IMAGES: 0}).Reload()
    assert sorted(board.Tags()["images"]) == [f"sweep/{name}" for name in names]
    assert board.Images("sweep/objective_vs_values")[0].encoded_image_string[:8] == PNG
    summarize(out, capsys)  # again: the images are replaced, not piled up
    assert len(list((out / "summary").glob("events.out.tfevents.*"))) == 1


def test_summary_of_a_directory_that_is_no_sweep_is_one_line(tmp_path):
    r = subprocess.run([*SUMMARY, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == f"error: {tmp_path} has no summary.csv; is it a sweep directory?"


def test_a_sweep_without_seeds_keeps_the_table_of_jobs_and_joblib_stays_quiet(tmp_path):
    out = tmp_path / "sweep"
    r = sweep("x=0.1,0.2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={out}",
              cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    log = output(r)
    assert "best 2 of 2 jobs by val/acc (maximize):" in log
    assert "is launching" not in log and "Launching jobs" not in log  # joblib's own lines
    assert sorted(line.split("job ")[1][:3] for line in log.splitlines() if " done: #" in line) == ["1/2", "2/2"]


def test_a_study_names_its_objective_and_every_trial_reports_every_epoch(tmp_path):
    # No pruner: the trials report their epochs all the same, for optuna-dashboard.
    out = tmp_path / "sweep"
    r = sweep("hparams_search=nas", "epochs=3", "hydra.sweeper.n_trials=4", "hydra.sweeper.figures=true",
              f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    study = study_of(out)
    assert study.metric_names == ["val/acc"]
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 4
    for t in trials:
        assert sorted(t.intermediate_values) == [1, 2, 3]
        assert t.intermediate_values[3] == pytest.approx(t.value)
        assert Path(t.user_attrs["job_dir"]) == out / str(t.number) and t.user_attrs["overrides"]
    assert [line.split("job ")[1][:3] for line in output(r).splitlines() if " done: #" in line] == \
        ["1/4", "2/4", "3/4", "4/4"]
    for name in ("objective_vs_params", "objective_vs_values", "param_importance"):  # written by the sweep
        assert (out / f"{name}.png").read_bytes()[:8] == PNG


def test_importance_needs_two_completed_trials(tmp_path, capsys):
    out = tmp_path / "sweep"
    r = sweep("hparams_search=nas", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "note: 1 completed trial(s): param_importance needs 2 or more" in summarize(out, capsys)
    assert not (out / "param_importance.png").exists() and (out / "objective_vs_values.png").exists()


def test_groups_rank_by_the_objectives_direction_and_skip_unfinished_jobs():
    from logitlab.reporting import sweep_table

    rows = [{"number": str(n), "status": status, "val/loss": value, "overrides": f"lr={lr} seed={seed}"}
            for n, (status, value, lr, seed) in enumerate([
                ("COMPLETE", "0.5", 0.1, 0), ("COMPLETE", "0.7", 0.1, 1), ("FAIL", "", 0.1, 2),
                ("COMPLETE", "0.2", 0.01, 0), ("COMPLETE", "nan", 0.01, 1)])]
    found = sweep_table.groups(rows, "val/loss", "minimize")
    assert [(g["overrides"], g["n"], g["numbers"]) for g in found] == [("lr=0.01", 1, [3]), ("lr=0.1", 2, [0, 1])]
    assert found[1]["val/loss"] == (pytest.approx(0.6), pytest.approx(0.1414, abs=1e-4))
    lines = sweep_table.table(rows, "val/loss", "minimize").splitlines()
    assert lines[2].split()[:2] == ["0.2000", "1"] and lines[3].split()[:4] == ["0.6000", "±", "0.1414", "2"]
