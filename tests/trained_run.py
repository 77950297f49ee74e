"""One real training run shared by the predict / evaluate / export / reports tests: an MLP on the digits for
3 epochs, composed from conf/ as the CLI composes it and trained in-process (a few seconds, once per session).
The run directory holds what the CLI leaves that these tests read: checkpoints/ and metrics.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from conftest import CONF

_RUNS: dict[Path, Path] = {}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    from logitlab.train import train

    base = tmp_path_factory.getbasetemp()
    if base not in _RUNS:  # a fixture imported into several modules is a new fixture in each: train once
        run_dir = base / "mlp_digits"
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("config", overrides=["model=mlp", "trainer.epochs=3", "trainer.progress=false",
                                               f"hydra.run.dir={run_dir}"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # as in the CLI, the job's config holds no hydra node (its job.num is unset here)
        try:
            metrics = train(cfg, run_dir)
        finally:
            GlobalHydra.instance().clear()
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        _RUNS[base] = run_dir
    return _RUNS[base]
