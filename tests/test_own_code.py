"""Code of the user's own, as a user meets it: a project folder holding `mymodels.py` (a model taking
input_shape and num_classes, returning raw logits), `mydata.py` (a loader returning SplitData) and a conf/
naming them, used through hydra.searchpath or -cd. Training, the command-line check, resume and `-m`
sweeps import that code from the current directory or the folder that holds the config directory;
predict, evaluate and export build it from a checkpoint only when told `trust=MODULE`, and refuse in one
line (status 2) naming the option to add."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_cli, stop_after_epoch
from logitlab.trainer import checkpoint

FAST = ["trainer.epochs=1", "trainer.progress=false", "trainer.figures=false"]
MYMODELS = '''import math

from torch import nn


class TwoLayer(nn.Module):
    def __init__(self, input_shape, num_classes, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)  # raw logits, (B, num_classes)
'''
MYDATA = '''from logitlab.data import load_digits


def load(val_fraction: float = 0.1):
    return load_digits(val_fraction=val_fraction)
'''


def cli(*args: str, cwd: Path, module: str = "logitlab.train", env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, module=module, cwd=cwd, env={"OMP_NUM_THREADS": "1", **(env or {})})


def refused(r: subprocess.CompletedProcess) -> str:
    """The one line of a refusal: status 2, no traceback."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A user's project: mymodels.py, mydata.py and conf/model/two.yaml, conf/data/mine.yaml naming them."""
    root = tmp_path_factory.mktemp("project")
    (root / "mymodels.py").write_text(MYMODELS)
    (root / "mydata.py").write_text(MYDATA)
    (root / "conf" / "model").mkdir(parents=True)
    (root / "conf" / "data").mkdir()
    (root / "conf" / "model" / "two.yaml").write_text("_target_: mymodels.TwoLayer\nhidden: 8\n")
    (root / "conf" / "data" / "mine.yaml").write_text("_target_: mydata.load\nval_fraction: 0.2\n")
    return root


@pytest.fixture(scope="module")
def own_model_run(project, tmp_path_factory) -> Path:
    """model=two trained for 2 epochs: stopped by SIGTERM after epoch 1, then resumed by the same command."""
    hooks = tmp_path_factory.mktemp("hooks")  # not the project: PYTHONPATH must not make mymodels importable
    run = project / "runs" / "two"
    command = [f"hydra.searchpath=[file://{project / 'conf'}]", "model=two", "trainer.epochs=2",
               "trainer.progress=false", "trainer.figures=false", f"hydra.run.dir={run}"]
    stopped = cli(*command, cwd=project, env=stop_after_epoch(hooks, 1))
    assert stopped.returncode != 0 and "resume with:" in stopped.stderr, stopped.stderr[-3000:]
    assert len((run / "history.csv").read_text().splitlines()) == 2  # the header and epoch 1
    resumed = cli(*command, cwd=project)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return run


def test_a_model_of_your_own_trains_and_resumes_through_the_searchpath(own_model_run):
    state = checkpoint.load(own_model_run / "checkpoints" / "last.pt")
    assert state["config"]["model"] == {"_target_": "mymodels.TwoLayer", "hidden": 8}
    assert [line.split(",")[0] for line in (own_model_run / "history.csv").read_text().splitlines()[1:]] == ["1", "2"]
    assert json.loads((own_model_run / "metrics.json").read_text())["epochs"] == 2


def test_predict_builds_it_when_trusted(own_model_run, project, tmp_path):
    """Predict, evaluate and export load a run through the same rundirs/load.py; each one's refusal
    without trust= is below, and evaluate and export with it in make test-all."""
    metrics = json.loads((own_model_run / "metrics.json").read_text())
    predicted = cli(f"run={own_model_run}", "trust=mymodels", f"out={tmp_path / 'p.csv'}",
                    module="logitlab.predict", cwd=project)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert f"test acc {metrics['test/acc']:.4f}" in predicted.stderr  # the run's own model and weights


@pytest.mark.slow
def test_evaluate_and_export_build_it_when_trusted(own_model_run, project, tmp_path):
    metrics = json.loads((own_model_run / "metrics.json").read_text())
    evaluated = cli(f"run={own_model_run}", "trust=othermodule,mymodels", f"out={tmp_path / 'e.json'}",
                    module="logitlab.evaluate", cwd=project)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.loads((tmp_path / "e.json").read_text())["test/acc"] == pytest.approx(metrics["test/acc"])
    exported = cli(f"run={own_model_run}", "trust=mymodels", "format=torchscript", f"out={tmp_path / 'm.pt'}",
                   module="logitlab.export", cwd=project)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert torch.jit.load(tmp_path / "m.pt")(torch.zeros(2, 1, 8, 8))[1].shape == (2, 10)


@pytest.mark.parametrize("command, trust, option", [
    ("logitlab.predict", [], "add trust=mymodels"),
    ("logitlab.evaluate", ["trust=othermodule"], "trust=othermodule does not cover it; give trust=othermodule,mymodels"),
    ("logitlab.export", ["trust=mymodels.sub"], "give trust=mymodels.sub,mymodels"),  # a submodule is not its parent
])
def test_without_trust_the_refusal_is_one_line_naming_the_option(own_model_run, project, command, trust, option):
    line = refused(cli(f"run={own_model_run}", *trust, module=command, cwd=project))
    assert "model._target_='mymodels.TwoLayer' is not a logitlab model" in line, line
    assert line.endswith(option), line


def test_trusted_code_that_is_not_here_says_where_it_is_imported_from(own_model_run, tmp_path):
    r = cli(f"run={own_model_run}", "trust=mymodels", module="logitlab.predict", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-3000:]
    assert "no module named 'mymodels'" in lines[0] and f"current directory ({tmp_path})" in lines[0], lines[0]


def test_a_sweep_of_your_own_model_trains_each_job_alone(project):
    """Stacking rewrites a model's forward() layer by layer, which only logitlab's linear, mlp and cnn
    declare: the jobs of a model of the user's own train one by one, each as its solo run."""
    out = project / "sweeps" / "two"
    r = cli("-m", f"hydra.searchpath=[file://{project / 'conf'}]", "model=two", "optim.lr=0.01,0.02", *FAST,
            f"hydra.sweep.dir={out}", cwd=project)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (out / ".groups").exists()
    assert [json.loads((out / n / "job.json").read_text())["status"] for n in "01"] == ["COMPLETE", "COMPLETE"]


def test_a_sweep_over_your_own_data_fuses_and_its_jobs_are_read_when_trusted(project):
    out = project / "sweeps" / "mine"
    r = cli("-m", "-cd", "conf", "data=mine", "model=mlp", "optim.lr=0.01,0.02", *FAST, f"hydra.sweep.dir={out}",
            cwd=project)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((out / "1" / "job.json").read_text())["fused_with"] == 2
    line = refused(cli(f"run={out / '1'}", "out=-", module="logitlab.predict", cwd=project))
    assert "data._target_='mydata.load' is not a logitlab data loader" in line and line.endswith("add trust=mydata")
    predicted = cli(f"run={out / '1'}", "trust=mydata", "out=-", module="logitlab.predict", cwd=project)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    metrics = json.loads((out / "1" / "metrics.json").read_text())
    assert f"test acc {metrics['test/acc']:.4f}" in predicted.stderr


def test_a_config_dir_given_from_elsewhere_finds_the_code_beside_it(project, tmp_path):
    """-cd PROJECT/conf from another directory, by the console script (whose sys.path lacks the current
    directory): mymodels.py is imported from the folder that holds the config directory."""
    script = Path(sys.executable).with_name("logitlab-train")
    r = subprocess.run([str(script), "-cd", str(project / "conf"), "model=two", *FAST,
                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    elsewhere = tmp_path / "other"  # a config dir whose folder holds no mymodels.py
    (elsewhere / "conf" / "model").mkdir(parents=True)
    (elsewhere / "conf" / "model" / "two.yaml").write_text("_target_: mymodels.TwoLayer\n")
    line = refused(cli("-cd", str(elsewhere / "conf"), "model=two", *FAST, cwd=tmp_path))
    assert line == (f"error: model=two: no module named 'mymodels'; code of your own is imported from the current "
                    f"directory ({tmp_path}), the folder that holds your config directory ({elsewhere}) or "
                    f"PYTHONPATH"), line
    assert not (tmp_path / "outputs").exists()


# ---------------------------------------------------------------------------------------- the rule itself
def _config(data: str = "logitlab.data.load_digits", model: str = "logitlab.models.MLP") -> dict:
    return {"data": {"_target_": data}, "model": {"_target_": model, "hidden": [4]}}


@pytest.fixture
def mypkg(tmp_path, monkeypatch):
    """A package of the user's own, mypkg.models.Net, importable from the current directory (put on sys.path
    here: a pytest-xdist worker's path does not hold the directory it runs in, a command's does)."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text("import os\n\n\nclass Net:\n    pass\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [m for m in sys.modules if m == "mypkg" or m.startswith("mypkg.")]:
        del sys.modules[name]


def test_trust_covers_a_module_and_everything_under_it(mypkg):
    from logitlab.rundirs.load import UntrustedCode, check_targets

    check_targets(_config(model="mypkg.models.Net"), ("mypkg",), Path("ck.pt"))
    check_targets(_config(model="mypkg.models.Net"), ("mypkg.models",), Path("ck.pt"))
    with pytest.raises(UntrustedCode, match=r"give trust=mypkg.other,mypkg$"):
        check_targets(_config(model="mypkg.models.Net"), ("mypkg.other",), Path("ck.pt"))


@pytest.mark.parametrize("target, said", [
    ("mypkg.models.os.system", "is posix.system, code of neither logitlab's models nor a module you trust"),
    ("logitlab.models.zoo.torch.save", "is torch.serialization.save, code of neither logitlab's models"),
    ("logitlab.models.zoo", "is a module, not a class or function"),
])
def test_code_reached_through_a_trusted_module_is_still_refused(mypkg, target, said):
    """What a name reaches is judged by where it was defined: a trusted module's (or logitlab's) imports
    are not its code."""
    from logitlab.rundirs.load import UntrustedCode, check_targets

    with pytest.raises(UntrustedCode, match=said):
        check_targets(_config(model=target), ("mypkg",), Path("ck.pt"))


def test_a_data_config_may_name_only_logitlabs_data_loaders():
    from logitlab.rundirs.load import UntrustedCode, check_targets

    check_targets(_config(data="logitlab.data.load_mnist1d"), (), Path("ck.pt"))
    with pytest.raises(UntrustedCode, match=r"data._target_='logitlab.rundirs.job.write_json' is not a logitlab data"):
        check_targets(_config(data="logitlab.rundirs.job.write_json"), (), Path("ck.pt"))


@pytest.mark.parametrize("value", ["my-models", "mymodels,", ".mymodels", "my models"])
def test_trust_takes_module_names(value):
    from logitlab.rundirs.cli import UsageError, as_modules

    assert as_modules("trust", "mymodels, mypkg.sub") == ("mymodels", "mypkg.sub")
    with pytest.raises(UsageError, match="is not a module name"):
        as_modules("trust", value)
