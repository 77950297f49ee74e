"""The wheel works on its own: built from the checkout, installed (not editable) into a fresh venv, its
console script trains and sweeps from a directory that is not the checkout, with the configs and the
sweeper plugin it carries. The fresh venv reuses this environment's dependencies through a .pth line,
which adds that site-packages to sys.path without processing its .pth files (so the editable install of
logitlab there is not seen)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
SCRIPTS = ("logitlab-train", "logitlab-predict", "logitlab-evaluate", "logitlab-export")
# What setuptools may read besides src/; only those that exist are copied.
PROJECT_FILES = ("pyproject.toml", "README.md", "setup.py", "setup.cfg", "MANIFEST.in", "LICENSE")
DEPENDENCIES_PTH = "_logitlab_test_dependencies.pth"


@dataclass
class Installed:
    wheel: Path
    venv: Path
    site_packages: Path
    work: Path  # an empty working directory outside the checkout
    env: dict

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=self.work,
                              env=self.env)

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _checked(proc: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _inside(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    tmp = tmp_path_factory.mktemp("packaging")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env.update(LOGITLAB_DATA=str(tmp / "data"), PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PYTHONNOUSERSITE="1")

    # A copy of the checkout's sources: setuptools builds in the source tree (build/, *.egg-info), and a
    # build/ left over from an earlier build could put deleted modules into the wheel.
    source = tmp / "source"
    source.mkdir()
    for name in PROJECT_FILES:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, source / name)
    shutil.copytree(SRC, source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
    dist = tmp / "dist"
    _checked(subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                             "--no-index", str(source), "-w", str(dist)], capture_output=True, text=True,
                            timeout=300, env=env), "pip wheel")
    (wheel,) = dist.glob("logitlab-*.whl")

    venv = tmp / "venv"
    _checked(subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True,
                            text=True, timeout=120, env=env), "python -m venv")
    site_packages = Path(_checked(subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, timeout=60, env=env), "the fresh venv's python").stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site_packages / DEPENDENCIES_PTH).write_text("".join(f"{p}\n" for p in ours))

    work = tmp / "work"
    work.mkdir()
    done = Installed(wheel, venv, site_packages, work, env)
    before = {p: sorted(os.listdir(p)) for p in ours}
    # pip itself comes from this environment through the .pth; --ignore-installed: never uninstall the
    # editable logitlab it can see there.
    _checked(done.run(done.bin("python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                      "--ignore-installed", str(wheel)), "pip install of the wheel")
    assert {p: sorted(os.listdir(p)) for p in ours} == before, "installing into the fresh venv changed this environment"
    return done


def test_the_wheel_holds_every_module_and_config(installed):
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "logitlab/conf/config.yaml" in names
    models = {n for n in names if n.startswith("logitlab/conf/model/") and n.endswith(".yaml")}
    assert models, "the wheel has no logitlab/conf/model/*.yaml"
    wanted = {str(p.relative_to(SRC)) for p in SRC.rglob("*") if p.suffix in (".py", ".yaml")
              and "__pycache__" not in p.parts and not any(part.endswith(".egg-info") for part in p.parts)}
    missing = sorted(wanted - names)
    assert not missing, f"the wheel lacks files of src/: {missing}"
    for script in SCRIPTS:
        assert f"{script} = " in entry_points, f"the wheel declares no console script {script}:\n{entry_points}"


def test_the_fresh_venv_imports_the_wheel_not_the_checkout(installed):
    probe = ("import json, sys, logitlab, hydra_plugins, hydra_plugins.logitlab_sweepers as sweepers\n"
             "print(json.dumps({'logitlab': logitlab.__file__, 'sweepers': sweepers.__file__,\n"
             "    'hydra_plugins': list(hydra_plugins.__path__), 'sys.path': sys.path,\n"
             "    'editable': [m for m in sys.modules if m.startswith('__editable__')]}))")
    seen = json.loads(_checked(installed.run(installed.bin("python"), "-c", probe), "import check").stdout)
    assert _inside(seen["logitlab"], installed.site_packages), f"logitlab imported from {seen['logitlab']}"
    assert _inside(seen["sweepers"], installed.site_packages), f"the sweeper plugin imported from {seen['sweepers']}"
    assert not seen["editable"], f"an editable finder was loaded: {seen['editable']}"
    # This environment's site-packages may lie inside the checkout (.venv); nothing else of it may be seen.
    dependencies = [Path(p) for p in (installed.site_packages / DEPENDENCIES_PTH).read_text().split()]
    from_checkout = [p for p in seen["sys.path"] + seen["hydra_plugins"] if p and _inside(p, ROOT)
                     and not any(_inside(p, d) for d in dependencies)]
    assert not from_checkout, f"the fresh venv sees the checkout (an editable .pth was processed?): {from_checkout}"


def test_logitlab_train_from_the_wheel(installed, tmp_path):
    run_dir = tmp_path / "run"
    _checked(installed.run(installed.bin("logitlab-train"), "trainer.epochs=1", f"hydra.run.dir={run_dir}"),
             "logitlab-train")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0 <= metrics["test/acc"] <= 1, metrics
    hydra = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]
    (conf,) = [s["path"] for s in hydra["runtime"]["config_sources"] if s["provider"] == "main"]
    assert _inside(conf, installed.site_packages / "logitlab" / "conf"), f"the run composed its config from {conf}"


def test_a_sweep_from_the_wheel_finds_the_sweeper_plugin(installed, tmp_path):
    sweep_dir = tmp_path / "sweep"
    # Figures off: they cost ~5 s of matplotlib per job here, and the train test above already draws them.
    _checked(installed.run(installed.bin("logitlab-train"), "-m", "model=linear,mlp", "trainer.epochs=1",
                           "trainer.figures=false", f"hydra.sweep.dir={sweep_dir}"), "logitlab-train -m")
    for job in ("0", "1"):
        assert (sweep_dir / job / "metrics.json").is_file(), f"sweep job {job} left no metrics.json"
    summary = sweep_dir / "summary.csv"  # written by logitlab's sweeper, not Hydra's basic one
    assert summary.is_file(), f"no {summary}: hydra/sweeper=logitlab was not found in the wheel"
    rows = summary.read_text().splitlines()[1:]
    assert len(rows) == 2 and all(",COMPLETE," in row for row in rows), summary.read_text()
