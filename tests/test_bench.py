"""`make bench` still runs to the end: each bench script on one tiny row, through its command line, so that a
change to the trainer cannot break the benchmark unseen (issue 18: the cold start waited for a step hook the
trainer no longer runs, and `make bench` died after minutes). The figures themselves are not checked: they
are timings, and mean nothing on a loaded machine or at these sizes; only that every one was measured."""
from __future__ import annotations

import importlib.util
import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
CONTENDERS = ["logitlab", "loop", "loop (default Adam)", "Lightning", "Lightning (lean)", "Keras"]
PEERS = {"Lightning": "lightning", "Lightning (lean)": "lightning", "Keras": "keras"}  # the `bench` extra
COLD_START = ['`python -c "import torch"`', "hand-written loop script", "`python -m logitlab.train trainer.epochs=1`"]

# ~15 s of CPU for the bench scripts' own plumbing: make test-all (make bench itself runs them in full)
pytestmark = pytest.mark.slow


def _installed(contender: str) -> bool:
    return contender not in PEERS or importlib.util.find_spec(PEERS[contender]) is not None


def _bench(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(BENCH / script), "--quick", *args], capture_output=True, text=True,
                          timeout=900, cwd=BENCH.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _table(report: str, heading: str) -> dict[str, dict[str, str]]:
    """The first markdown table from the line starting with `heading` on: {first cell: {column: cell}}."""
    lines = report[report.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = itertools.takewhile(lambda line: line.startswith("|"), lines[start:])
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in block]
    return {row[0]: dict(zip(rows[0], row)) for row in rows[2:]}


def _seconds(cell: str) -> float:
    match = re.match(r"[+-]?\d+(\.\d+)?", cell)
    assert match, f"not a number: {cell!r}"
    return float(match.group())


@pytest.fixture(scope="module")
def quick_run() -> tuple[str, str]:
    """`python bench/run.py --quick` with the contenders that are installed; (its report, results.md before)."""
    before = (BENCH / "results.md").read_text()
    report = _bench("run.py", "--contenders", ",".join(c for c in CONTENDERS if _installed(c)))
    return report, before


@pytest.mark.parametrize("contender", CONTENDERS)
def test_run_quick_times_every_contender(quick_run, contender):
    if not _installed(contender):
        pytest.skip(f"{contender}: the `{PEERS[contender]}` package is not installed; it comes with the bench "
                    f"extra (`pip install -e '.[bench]'`, which `make bench` runs)")
    report, _ = quick_run
    row = _table(report, "| row |")["digits linear (--quick)"]
    assert _seconds(row[f"{contender} (ms)"]) > 0


def test_run_quick_reaches_the_first_step_of_every_cold_start_command(quick_run):
    """The cold start's mark is written for every command, the trainer's included, however it steps."""
    report, _ = quick_run
    table = _table(report, "## Cold start")
    for command in COLD_START:
        label = next((label for label in table if label.startswith(command)), None)
        assert label is not None, f"no cold-start row for {command}:\n{report}"
        assert _seconds(table[label]["seconds"]) > 0
    assert re.search(r"Target: logitlab's default command within `import torch` \+ 1\.0 s: [+-]\d", report)


def test_run_quick_leaves_the_results_alone(quick_run):
    report, before = quick_run
    assert (BENCH / "results.md").read_text() == before


def test_a_missing_peer_is_one_line_naming_the_extra(monkeypatch):
    """Without the bench extra, run.py stops before measuring anything, saying what to install or leave out
    (checked here with the import lookup faked: the peers may well be installed)."""
    monkeypatch.syspath_prepend(str(BENCH))  # run.py imports its neighbours
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "keras" else real(name, *a))
    line = run._missing_peers(["logitlab", "loop", "Keras"])
    assert "\n" not in line
    assert "Keras" in line and "keras" in line and ".[bench]" in line and "--contenders 'logitlab,loop'" in line
    assert run._missing_peers(["logitlab", "loop"]) is None


@pytest.mark.slow
def test_overhead_quick_runs_every_section():
    """bench/overhead.py --quick: the sweep grid fused, unfused, from eadd62d's checkout and as optuna+loop;
    two runs at once; end to end (~1 min on 2 cores)."""
    report = _bench("overhead.py")
    sweep = _table(report, "## Sweep wall times")["MNIST-1D MLP 40-32-10"]
    for column in ("fused (s)", "unfused (s)", "eadd62d unfused (s)", "optuna+loop (s)"):
        assert _seconds(sweep[column]) > 0, column
    assert _seconds(_table(report, "## Two runs started together")["auto"]["alone (s)"]) > 0
    end_to_end = _table(report, "## End to end")
    assert all(_seconds(row["wall"]) > 0 for row in end_to_end.values()) and len(end_to_end) == 2


def test_resident_quick_measures_both_modes_and_both_dtypes():
    """bench/resident.py --quick: resident and streamed epoch times (whose histories the script compares),
    and the peak memory of uint8 and float32 inputs, on a folder of 300 PNGs."""
    report = _bench("resident.py")
    epochs = _table(report, "## Epoch time")
    assert set(epochs) == {"mlp", "cnn"}
    assert all(_seconds(row["resident s/epoch"]) > 0 and _seconds(row["streamed s/epoch"]) > 0 for row in epochs.values())
    memory = _table(report, "## Peak memory")
    assert set(memory) == {"uint8", "float32"} and all(_seconds(row["peak RSS of the command (MB)"]) > 0
                                                      for row in memory.values())
