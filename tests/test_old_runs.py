"""Old work keeps working: a run directory that logitlab wrote at revision 55b972c, before its modules moved
into subpackages, still predicts, evaluates, exports and resumes through the command line. Its config names
the classes by the paths of that time (logitlab.models.MLP, logitlab.data.load_digits,
logitlab.trainer.Trainer), in .hydra/config.yaml and inside its checkpoints.

tests/fixtures/run_55b972c was made at that revision by
  python -m logitlab.train model=mlp 'model.hidden=[16]' trainer.epochs=1 trainer.progress=false \\
      trainer.figures=false hydra.run.dir=run
keeping .hydra/config.yaml and overrides.yaml, checkpoints/, metrics.json, history.csv and versions.json."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

FIXTURE = Path(__file__).parent / "fixtures" / "run_55b972c"
OVERRIDES = ["model=mlp", "model.hidden=[16]", "trainer.progress=false", "trainer.figures=false"]


@pytest.fixture
def old_run(tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    return run


def test_the_fixture_names_the_old_paths():
    config = (FIXTURE / ".hydra" / "config.yaml").read_text()
    for target in ("logitlab.models.MLP", "logitlab.data.load_digits", "logitlab.trainer.Trainer"):
        assert f"_target_: {target}\n" in config
    assert json.loads((FIXTURE / "versions.json").read_text())["git_revision"].startswith("55b972c")


def test_an_old_run_predicts(old_run, tmp_path):
    metrics = json.loads((old_run / "metrics.json").read_text())
    predictions = tmp_path / "predictions.csv"
    done = run_cli(f"run={old_run}", "top_k=1", f"out={predictions}", module="logitlab.predict")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = predictions.read_text().splitlines()
    right = sum(row.split(",")[1] == row.split(",")[2] for row in rows[1:])  # label, predicted
    assert len(rows) - 1 == 359 and right == round(metrics["test/acc"] * 359)  # best.pt's own test score


@pytest.mark.slow
def test_an_old_run_evaluates_and_exports(old_run, tmp_path):
    metrics = json.loads((old_run / "metrics.json").read_text())
    report = tmp_path / "report.json"
    done = run_cli(f"run={old_run}", f"out={report}", module="logitlab.evaluate")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(report.read_text())["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)

    exported = tmp_path / "model.torchscript.pt"
    done = run_cli(f"run={old_run}", "format=torchscript", f"out={exported}", module="logitlab.export")
    assert done.returncode == 0, done.stderr[-3000:]  # export checks the file against PyTorch on the test split
    assert exported.stat().st_size > 0


def test_an_old_run_resumes(old_run):
    done = run_cli(*OVERRIDES, "trainer.epochs=2", f"hydra.run.dir={old_run}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming from epoch 1 of 2" in done.stderr
    assert [row.split(",")[0] for row in (old_run / "history.csv").read_text().splitlines()[1:]] == ["1", "2"]
    assert json.loads((old_run / "metrics.json").read_text())["epochs"] == 2


def test_code_written_against_the_flat_layout_still_imports():
    """logitlab/_moved.py answers each old module path with the module at its new one (the same object);
    the packages that took an old module's name offer its names; Hydra finds the targets that saved configs
    name. Run in a fresh interpreter, so that nothing was imported before."""
    script = r"""
import importlib
from hydra.utils import get_class, get_method
import logitlab
from logitlab._moved import MOVED

for old, new in MOVED.items():
    assert importlib.import_module(old) is importlib.import_module(new), old
exec("from logitlab import checkpoint, scoring")
exec("from logitlab.scoring import softmax")
assert checkpoint is importlib.import_module("logitlab.trainer.checkpoint")
assert softmax is importlib.import_module("logitlab.reporting.scoring").softmax
exec("from logitlab.trainer import Interrupted, Trainer, make_optimizer, epoch_line, pick_device")
assert Trainer is importlib.import_module("logitlab.trainer.loop").Trainer
exec("from logitlab.runs import load_run, checkpoint_path")
exec("from logitlab.fused import group_key, fit_group")
assert get_class("logitlab.trainer.Trainer") is Trainer
assert get_class("logitlab.models.MLP") is importlib.import_module("logitlab.models.zoo").MLP
assert get_method("logitlab.data.load_digits") is importlib.import_module("logitlab.data.builtin").load_digits
assert get_class("logitlab.data.SplitData") is importlib.import_module("logitlab.data.splits").SplitData
print("ok", len(MOVED))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-3000:]
