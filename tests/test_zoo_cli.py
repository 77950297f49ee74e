"""The whole zoo through the real command line: every model in conf/model/ (a new model file is picked up by
itself) x the offline datasets (digits, MNIST-1D) x every way out of a run — train, stop with SIGTERM and
resume, predict, evaluate, export to TorchScript and to ONNX — each in its own process, at the defaults
(figures on, real TensorBoard files); only the epochs are shortened.

One test per cell, named model-data-way (`test_cell[mlp-digits-predict]`). The work is shared and run in
the background: each (model, data) is trained once, and its predict, evaluate and two exports run on that
run directory as soon as it is trained. The processes of all cells run on a small pool of workers (one per
CPU, every process with OMP_NUM_THREADS=1), highest priority to the cell pytest reaches first; a test waits
only for its own cell. Only the cells pytest selected are run (`-k mlp-digits` trains one run)."""
from __future__ import annotations

import csv
import itertools
import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import CONF, ROOT, figures_drawn, stop_after_epoch

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATASETS = {"digits": (1, 8, 8), "mnist1d": (1, 40)}  # offline datasets and the input shape each gives
EPOCHS = {"digits": 2, "mnist1d": 1}  # a run's epochs by dataset: MNIST-1D's 4,000 examples make an epoch 5x the digits'
# SIGTERM-and-resume is checked on digits only: each such cell costs two more process start-ups.
RESUME_DATASETS = ("digits",)
# The run sends itself SIGTERM as epoch 1 ends (conftest.stop_after_epoch: a signal from outside may come
# after a short run has ended, or before any epoch is on disk); the printed command then trains epoch 2.
RESUME_EPOCHS = 2
AFTER_TRAINING = ("predict", "evaluate", "torchscript", "onnx")  # ways that read the trained run
WAYS = ("train", "resume", *AFTER_TRAINING)
ATOL = 1e-4
SUBPROCESS_TIMEOUT = 600
# make test: every model trains on both datasets and exports to TorchScript (which loads the run as predict
# and evaluate do) on the digits. Predict, evaluate and resume, whose code is the same for every model, each
# for one: predict a convolutional one, evaluate a dense one, resume attention (whose dropout masks must
# resume too; the CNN resumes in test_augment, the default linear model in test_cli_edges, an MLP in
# test_reliability, and predict runs through the command line in the data tests too). ONNX for one (each
# export ~5 s of CPU; test_export converts every model but the GRU in-process). The rest, MNIST-1D's ways out
# included, are in make test-all.
MODEL_AGNOSTIC_WAYS = {"resume": ("attention",), "predict": ("cnn",), "evaluate": ("linear",), "onnx": ("linear",)}


def _slow(model: str, data: str, way: str) -> bool:
    return data == "mnist1d" and way in AFTER_TRAINING or model not in MODEL_AGNOSTIC_WAYS.get(way, (model,))


DATA_ROOT = Path(os.environ["LOGITLAB_DATA"])  # set by conftest: the session's own dataset cache
ENV = {**os.environ, "LOGITLAB_DATA": str(DATA_ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MNIST1D_CACHE = DATA_ROOT / "mnist1d" / "mnist1d.npz"


def _cells():
    for model in MODELS:
        for data in DATASETS:
            for way in WAYS:
                if way != "resume" or data in RESUME_DATASETS:
                    yield model, data, way


CELLS = list(_cells())
PRIORITY = {cell: i for i, cell in enumerate(CELLS)}  # the order pytest runs them in


@dataclass
class Done:
    """A finished process."""
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def error_line(self) -> str:
        """The exception of a traceback (its first line), else stderr's last line."""
        lines = self.stderr.splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
        if starts:
            after = [line for line in lines[starts[-1] + 1:] if line.strip() and not line[0].isspace()]
            if after:
                return after[0]
        return next((line for line in reversed(lines) if line.strip()), "")

    def explain(self) -> str:
        return f"{self.error_line()[:500]}\n$ {shlex.join(self.argv)}\nexit {self.returncode} after " \
               f"{self.seconds:.1f}s\n--- stdout (tail)\n{self.stdout[-2000:]}\n--- stderr (tail)\n{self.stderr[-3000:]}"


class Zoo:
    """Runs the selected cells' processes on `workers` threads, in PRIORITY order; `result(cell)` is what
    the cell's process(es) left (a Done, or for resume a dict of them)."""

    def __init__(self, base: Path, wanted: set[tuple[str, str, str]], workers: int):
        self.base, self.wanted = base, wanted
        trained = {(m, d) for m, d, w in wanted if w != "resume"}  # a cell that reads a run needs it trained
        self.futures: dict[tuple[str, str, str], Future] = {
            cell: Future() for cell in wanted | {(m, d, "train") for m, d in trained}}
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._procs: set[subprocess.Popen] = set()
        self._procs_lock, self._mnist1d_lock = threading.Lock(), threading.Lock()
        self._closing = False
        self._loaded: dict[tuple[str, str], tuple] = {}
        for model, data in sorted(trained, key=lambda md: PRIORITY[(*md, "train")]):
            self._submit((model, data, "train"), self._train, model, data)
        for model, data, way in sorted(wanted):
            if way == "resume":
                self._submit((model, data, way), self._resume, model, data)
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"zoo-{i}") for i in range(workers)]
        for t in self._threads:
            t.start()

    def run_dir(self, model: str, data: str, way: str = "train") -> Path:
        return self.base / f"{model}-{data}-{way}"

    def loaded(self, model: str, data: str):
        """The trained run's PyTorch model and data (load_run), loaded once for both exports."""
        if (model, data) not in self._loaded:  # the tests' thread only
            from logitlab.rundirs import load_run

            self._loaded[(model, data)] = load_run(self.run_dir(model, data))[:2]
        return self._loaded[(model, data)]

    def result(self, cell):
        return self.futures[cell].result(timeout=3 * SUBPROCESS_TIMEOUT)

    # --- the jobs

    def _train(self, model: str, data: str) -> Done:
        run = self.run_dir(model, data)
        args = [f"model={model}", f"data={data}", f"trainer.epochs={EPOCHS[data]}", f"hydra.run.dir={run}"]
        done, error = None, None
        try:
            if data == "mnist1d":  # the first MNIST-1D run generates the cache; the others wait for it, not redo it
                with self._mnist1d_lock:
                    generating = not MNIST1D_CACHE.exists()
                    if generating:
                        done = self._run("logitlab.train", args)
            if done is None:
                done = self._run("logitlab.train", args)
            return done
        except BaseException as e:
            error = e
            raise
        finally:  # whatever happened, the cells that read this run get an answer
            for way in AFTER_TRAINING:
                if (model, data, way) in self.wanted:
                    self._submit((model, data, way), self._after_training, done, error, way, run)

    def _after_training(self, trained: Done | None, error: BaseException | None, way: str, run: Path) -> Done:
        if trained is None:
            raise AssertionError(f"training failed, nothing to {way}: {error!r}")
        if trained.returncode != 0:
            raise AssertionError(f"training failed, nothing to {way}:\n{trained.explain()}")
        if way in ("predict", "evaluate"):
            return self._run(f"logitlab.{way}", [f"run={run}"])
        return self._run("logitlab.export", [f"run={run}", f"format={way}"])

    def _resume(self, model: str, data: str) -> dict:
        """Start a run that stops itself with SIGTERM after epoch 1, then run the command it printed."""
        run = self.run_dir(model, data, "resume")
        argv = [sys.executable, "-m", "logitlab.train", f"model={model}", f"data={data}",
                f"trainer.epochs={RESUME_EPOCHS}", f"hydra.run.dir={run}"]
        stop = stop_after_epoch(self.base / f"{run.name}-hook", 1, "SIGTERM", os.environ.get("PYTHONPATH"))
        stopped = self._run_argv(argv, extra_env=stop)
        result = {"run": run, "epochs": RESUME_EPOCHS, "stopped": stopped, "command": None, "resumed": None}
        lines = stopped.stderr.strip().splitlines()
        if stopped.returncode == 143 and lines and "resume with: " in lines[-1]:
            command = lines[-1].split("resume with: ", 1)[1].strip()
            result["command"] = command
            printed = shlex.split(command)
            if printed and printed[0] in ("python", sys.executable):  # as printed, with this interpreter
                result["resumed"] = self._run_argv([sys.executable, *printed[1:]])
        return result

    # --- processes

    def _run(self, module: str, args: list[str]) -> Done:
        return self._run_argv([sys.executable, "-m", module, *args])

    def _run_argv(self, argv: list[str], extra_env: dict | None = None) -> Done:
        started = time.monotonic()
        proc = self._popen(argv, extra_env)
        try:
            out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
        finally:
            self._reap(proc)
        return Done(argv, proc.returncode, out, err, time.monotonic() - started)

    def _popen(self, argv: list[str], extra_env: dict | None = None) -> subprocess.Popen:
        if self._closing:
            raise RuntimeError("the zoo is closing")
        proc = subprocess.Popen(argv, cwd=ROOT, env={**ENV, **(extra_env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        with self._procs_lock:
            self._procs.add(proc)
        return proc

    def _reap(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:  # a timeout or an error here: do not leave it running
            proc.kill()
            proc.communicate()  # (returns at once for a process writing to files)
        with self._procs_lock:
            self._procs.discard(proc)

    # --- the pool

    def _submit(self, cell, fn, *args) -> None:
        self._queue.put((PRIORITY[cell], next(self._seq), cell, fn, args))

    def _work(self) -> None:
        while True:
            _, _, cell, fn, args = self._queue.get()
            if fn is None:
                return
            future = self.futures[cell]
            if self._closing:
                future.cancel()
                continue
            future.set_running_or_notify_cancel()
            try:
                future.set_result(fn(*args))
            except BaseException as e:  # the cell's test re-raises it
                future.set_exception(e)

    def close(self) -> None:
        """Stop: queued jobs are dropped and the processes still running (ours, by object) are killed."""
        self._closing = True
        with self._procs_lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for _ in self._threads:
            self._queue.put((len(CELLS) + 1, next(self._seq), None, None, None))
        for t in self._threads:
            t.join(timeout=30)


@pytest.fixture(scope="module")
def zoo(request, tmp_path_factory):
    selected = {tuple(item.callspec.params[k] for k in ("model", "data", "way"))
                for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")}
    zoo = Zoo(tmp_path_factory.mktemp("zoo"), selected, workers=max(2, os.cpu_count() or 2))
    yield zoo
    zoo.close()


# --- what each way out must leave

def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def _no_warnings(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-4000:]
    # logitlab reports a figure or the graph it could not draw as a warning (its log's WARNING level) and goes on
    bad = [line for line in stderr.splitlines() if "warning:" in line or "[WARNING]" in line]
    assert not bad, "\n".join(bad)


def check_train(zoo: Zoo, model: str, data: str) -> None:
    done = zoo.result((model, data, "train"))
    assert done.returncode == 0, done.explain()
    _no_warnings(done.stderr)
    run = zoo.run_dir(model, data)
    metrics = _metrics(run)
    assert 0.0 <= metrics["test/acc"] <= 1.0, metrics
    assert metrics["epochs"] == EPOCHS[data], metrics
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert list(run.glob("events.out.tfevents.*")), sorted(p.name for p in run.iterdir())
    figures_drawn(run)
    events = EventAccumulator(str(run))
    events.Reload()
    tags = events.Tags()
    assert [e.step for e in events.Scalars("val/acc")] == list(range(1, EPOCHS[data] + 1))
    [test_acc] = events.Scalars("test/acc")
    assert test_acc.value == pytest.approx(metrics["test/acc"], abs=1e-6)
    missing = {"test/confusion_matrix", "test/reliability"} - set(tags["images"])
    assert not missing, f"images {sorted(missing)} not in TensorBoard; images there: {tags['images']}"
    assert tags["graph"], "no model graph in TensorBoard"


def check_resume(zoo: Zoo, model: str, data: str) -> None:
    result = zoo.result((model, data, "resume"))
    stopped, run, epochs = result["stopped"], result["run"], result["epochs"]
    assert stopped.returncode == 143, stopped.explain()
    assert "Traceback" not in stopped.stderr, stopped.explain()
    last_line = (stopped.stderr.strip().splitlines() or [""])[-1]
    assert "resume with: " in last_line, stopped.explain()
    command = result["command"]
    assert f"hydra.run.dir={run}" in command, command
    assert shlex.split(command)[0] in ("python", sys.executable), command
    assert shlex.split(command)[1:3] == ["-m", "logitlab.train"], command
    resumed = result["resumed"]
    assert resumed is not None and resumed.returncode == 0, resumed.explain() if resumed else command
    assert "resuming from epoch" in resumed.stderr, resumed.explain()
    _no_warnings(resumed.stderr)
    assert _metrics(run)["epochs"] == epochs


def check_predict(zoo: Zoo, model: str, data: str) -> None:
    done = zoo.result((model, data, "predict"))
    assert done.returncode == 0, done.explain()
    run = zoo.run_dir(model, data)
    with open(run / "predictions_test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows
    prob_columns = [c for c in rows[0] if c.startswith("prob_")]
    assert len(prob_columns) == 10, list(rows[0])
    for i, row in enumerate(rows):
        probs = [float(row[c]) for c in prob_columns]
        assert all(p > 0 for p in probs), (i, row)
        assert sum(probs) == pytest.approx(1.0, abs=1e-6), (i, row)
    acc = sum(row["predicted"] == row["label"] for row in rows) / len(rows)
    assert acc == pytest.approx(_metrics(run)["test/acc"], abs=1e-9)


def check_evaluate(zoo: Zoo, model: str, data: str) -> None:
    done = zoo.result((model, data, "evaluate"))
    assert done.returncode == 0, done.explain()
    run = zoo.run_dir(model, data)
    report = json.loads((run / "eval_test.json").read_text())
    assert report["test/acc"] == pytest.approx(_metrics(run)["test/acc"], abs=1e-9)


def _export_inputs(run: Path, x: torch.Tensor) -> torch.Tensor:
    """What the export takes for the normalised inputs `x`: raw ones if the run records a normalisation
    (x * std + mean per channel, axis 1), else `x` itself."""
    norm = _metrics(run).get("normalisation")
    if not norm:
        return x
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean = torch.tensor(norm["mean"], dtype=x.dtype).reshape(shape)
    std = torch.tensor(norm["std"], dtype=x.dtype).reshape(shape)
    return x * std + mean


def check_export(zoo: Zoo, model: str, data: str, format: str) -> None:
    done = zoo.result((model, data, format))
    assert done.returncode == 0, done.explain()
    assert "max |probability difference|" in done.stdout, done.explain()
    run = zoo.run_dir(model, data)

    pytorch, split = zoo.loaded(model, data)
    x_all = split.inputs(split.test[0])  # normalised, as the model takes them
    assert tuple(x_all.shape[1:]) == DATASETS[data]
    if format == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
            exported = torch.jit.load(str(run / "model.torchscript.pt"))

        def outputs(inputs):
            with torch.no_grad():
                return exported(inputs)
    else:
        ort = pytest.importorskip("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(run / "model.onnx"), options, providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
        input_name = session.get_inputs()[0].name

        def outputs(inputs):
            z, p = session.run(["logits", "probabilities"], {input_name: inputs.numpy()})
            return torch.from_numpy(z), torch.from_numpy(p)

    for n in (1, 37):
        x = x_all[:n].contiguous()
        with torch.no_grad():
            expected = pytorch(x)
        logits, probs = outputs(_export_inputs(run, x).contiguous())
        assert logits.shape == probs.shape == (n, 10), (n, logits.shape, probs.shape)
        torch.testing.assert_close(logits, expected, atol=ATOL, rtol=0, msg=lambda m: f"logits, batch {n}: {m}")
        torch.testing.assert_close(probs, torch.softmax(expected, dim=1), atol=ATOL, rtol=0,
                                   msg=lambda m: f"probabilities, batch {n}: {m}")


CHECKS = {"train": check_train, "resume": check_resume, "predict": check_predict, "evaluate": check_evaluate,
          "torchscript": lambda zoo, m, d: check_export(zoo, m, d, "torchscript"),
          "onnx": lambda zoo, m, d: check_export(zoo, m, d, "onnx")}


@pytest.mark.parametrize("model, data, way", [
    pytest.param(*cell, id="-".join(cell), marks=[pytest.mark.slow] if _slow(*cell) else [])
    for cell in CELLS])
def test_cell(zoo, model, data, way):
    CHECKS[way](zoo, model, data)
