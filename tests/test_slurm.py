"""hydra/launcher=slurm (conf/hydra/launcher/slurm.yaml) through the command line and the real
submitit code path, on a fake SLURM cluster that this file is: `sbatch`, `srun`, `sacct`, `scancel`
and `scontrol` on PATH run `python tests/test_slurm.py <command> ...`.

sbatch keeps a copy of the submission file (it knows one partition, `gpu`) and runs the job's or the
array's tasks on this machine, at most %<parallelism> at a time, each in the submit directory with the
SLURM_* variables a node sets and its output where #SBATCH --output/--error say; srun runs its command
after its options; sacct reports the states the tasks went through; scancel --signal signals a running
task, plain scancel kills it; scontrol requeue starts the task again when it exits, as SLURM does."""
from __future__ import annotations

import csv
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve()
FIRST_JOB_ID = 4242
PARTITIONS = {"gpu"}


# ---------------------------------------------------------------------------- the fake cluster
def _cluster() -> Path:
    return Path(os.environ["FAKE_SLURM"])


def _note(line: str) -> None:
    with open(_cluster() / "calls.log", "a") as f:
        f.write(line + "\n")


def _set_state(key: str, state: str) -> None:
    path = _cluster() / "state" / key
    path.with_suffix(".tmp").write_text(state)
    path.with_suffix(".tmp").replace(path)


def _flags(script: str) -> dict:
    """#SBATCH --key=value lines as {key: value}; a bare --flag as {flag: True}."""
    flags = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = shlex.split(line)[1][2:].partition("=")
            flags[key] = value or True
    return flags


def _tasks(flags: dict, job_id: int) -> tuple[list[dict], int]:
    """The tasks a submission runs ({key, env}) and how many may run at once (--array=0-N%P)."""
    if "array" not in flags:
        return [{"key": str(job_id), "env": {"SLURM_JOB_ID": str(job_id)}}], 1
    spec, _, at_once = flags["array"].partition("%")
    first, _, last = spec.partition("-")
    indices = range(int(first), int(last or first) + 1)
    tasks = [{"key": f"{job_id}_{i}",
              "env": {"SLURM_JOB_ID": str(job_id + i), "SLURM_ARRAY_JOB_ID": str(job_id),
                      "SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": str(len(indices)),
                      "SLURM_ARRAY_TASK_MIN": str(indices[0]), "SLURM_ARRAY_TASK_MAX": str(indices[-1])}}
             for i in indices]
    return tasks, int(at_once or len(tasks))


def _expand(pattern: str, env: dict) -> str:
    """sbatch/srun filename patterns: %A array job id, %a task index, %j job id, %t task rank."""
    return (pattern.replace("%A", env.get("SLURM_ARRAY_JOB_ID", env["SLURM_JOB_ID"]))
            .replace("%a", env.get("SLURM_ARRAY_TASK_ID", "4294967294"))
            .replace("%j", env["SLURM_JOB_ID"]).replace("%t", env.get("SLURM_PROCID", "0")))


def sbatch(args: list[str]) -> int:
    script = Path(args[-1]).read_text()
    flags = _flags(script)
    if flags.get("partition", "gpu") not in PARTITIONS:
        print("sbatch: error: Batch job submission failed: Invalid partition name specified", file=sys.stderr)
        return 1
    with open(_cluster() / "next_id", "a+") as counter:  # a study's trials are submitted from several threads
        fcntl.flock(counter, fcntl.LOCK_EX)
        counter.seek(0)
        job_id = int(counter.read() or FIRST_JOB_ID)
        tasks, _ = _tasks(flags, job_id)
        counter.truncate(0)
        counter.write(str(job_id + len(tasks)))  # an array's tasks have job ids of their own
    (_cluster() / "submitted" / f"{job_id}.sh").write_text(script)
    (_cluster() / "submitted" / f"{job_id}.cwd").write_text(os.getcwd())
    for task in tasks:
        _set_state(task["key"], "PENDING")
    _note("sbatch " + shlex.join(args))
    runner = subprocess.Popen([sys.executable, str(HERE), "_run", str(job_id)], start_new_session=True,
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (_cluster() / "runners" / str(runner.pid)).touch()
    print(f"Submitted batch job {job_id}")
    return 0


def _run(args: list[str]) -> int:
    """The submission's tasks, at most --array's %P at a time (sbatch starts this in the background)."""
    job_id = int(args[0])
    script = _cluster() / "submitted" / f"{job_id}.sh"
    flags = _flags(script.read_text())
    tasks, at_once = _tasks(flags, job_id)
    cwd = (_cluster() / "submitted" / f"{job_id}.cwd").read_text()
    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(lambda task: _run_task(script, flags, task, cwd), tasks))
    return 0


def _run_task(script: Path, flags: dict, task: dict, cwd: str) -> None:
    key = task["key"]
    env = {**os.environ, **task["env"], "SLURM_JOBID": task["env"]["SLURM_JOB_ID"], "FAKE_SLURM_TASK": key,
           "SLURM_JOB_NAME": str(flags.get("job-name", "sbatch")), "SLURM_SUBMIT_DIR": cwd,
           "SLURM_JOB_PARTITION": str(flags.get("partition", "default")), "SLURM_NTASKS": "1",
           "SLURM_JOB_NUM_NODES": "1", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "localhost",
           "SLURM_CPUS_PER_TASK": str(flags.get("cpus-per-task", 1)), "SLURM_RESTART_COUNT": "0"}
    out = Path(_expand(str(flags["output"]), env))
    err = Path(_expand(str(flags.get("error", flags["output"])), env))
    deadline = time.monotonic() + 60  # pending until submitit has made the task's folder (its log's)
    while not out.parent.is_dir() and time.monotonic() < deadline:
        time.sleep(0.1)
    requeue, cancelled, code = _cluster() / "requeue" / key, _cluster() / "cancelled" / key, None
    while not cancelled.exists():  # scancel'ed before it started: never runs
        _set_state(key, "RUNNING")
        with open(out, "a") as stdout, open(err, "a") as stderr:
            code = subprocess.call(["bash", str(script)], cwd=cwd, env=env, stdout=stdout, stderr=stderr)
        if not requeue.exists():
            break
        requeue.unlink()
        _set_state(key, "REQUEUED")
        env["SLURM_RESTART_COUNT"] = str(int(env["SLURM_RESTART_COUNT"]) + 1)
    _set_state(key, "CANCELLED" if cancelled.exists() else "COMPLETED" if code == 0 else "FAILED")


def srun(args: list[str]) -> int:
    """Run the command after srun's options, its output and error where --output/--error say."""
    files = {}
    while args and args[0].startswith("-"):
        option = args.pop(0)
        name, _, value = option.partition("=")
        if name in ("--output", "-o", "--error", "-e"):
            files[name.lstrip("-")[0]] = value or args.pop(0)
    env = {**os.environ, "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_STEP_ID": "0"}
    for name, fd in (("o", 1), ("e", 2)):
        if name in files:
            target = os.open(_expand(files[name], env), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            os.dup2(target, fd)
    (_cluster() / "pid" / env["FAKE_SLURM_TASK"]).write_text(str(os.getpid()))
    os.execvpe(args[0], args, env)  # the task's own process: scancel --signal reaches it


def sacct(args: list[str]) -> int:
    """`sacct -o JobID,State,NodeList --parsable2 -j ID ...`, as submitit asks."""
    wanted = {args[k + 1] for k, a in enumerate(args) if a == "-j"}
    print("JobID|State|NodeList")
    for path in sorted((_cluster() / "state").iterdir()):
        if path.name.split("_")[0] in wanted and path.suffix != ".tmp":
            print(f"{path.name}|{path.read_text()}|localhost")
    return 0


def _matching(target: str) -> list[str]:
    return [p.name for p in (_cluster() / "state").iterdir() if p.name == target or p.name.startswith(target + "_")]


def scancel(args: list[str]) -> int:
    _note("scancel " + shlex.join(args))
    name, targets = None, []  # no --signal: cancel (SIGTERM to a running task)
    while args:
        arg = args.pop(0)
        if arg.startswith("--signal"):
            name = arg.partition("=")[2] or args.pop(0)
        elif not arg.startswith("-"):
            targets.append(arg)
    for key in (k for t in targets for k in _matching(t)):
        pid = _cluster() / "pid" / key
        running = pid.exists() and (_cluster() / "state" / key).read_text() == "RUNNING"
        if name is not None:
            if running:
                os.kill(int(pid.read_text()), getattr(signal, "SIG" + name.removeprefix("SIG")))
            continue
        (_cluster() / "cancelled" / key).touch()
        if running:  # SIGTERM, then SIGKILL after SLURM's KillWait (1 s here)
            os.kill(int(pid.read_text()), signal.SIGTERM)
            time.sleep(1)
            try:
                os.kill(int(pid.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    return 0


def scontrol(args: list[str]) -> int:
    _note("scontrol " + shlex.join(args))
    if args[:1] != ["requeue"]:
        print(f"scontrol: {args[:1]} is not faked", file=sys.stderr)
        return 1
    for key in _matching(args[1]):
        (_cluster() / "requeue" / key).touch()
    return 0


COMMANDS = {"sbatch": sbatch, "_run": _run, "srun": srun, "sacct": sacct, "scancel": scancel, "scontrol": scontrol}

if __name__ == "__main__":
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))


# ---------------------------------------------------------------------------- tests
import pytest  # noqa: E402  (the fake cluster's commands above need none of it)

TRAIN = [sys.executable, "-m", "logitlab.train", "-m", "hydra/launcher=slurm", "trainer.progress=false",
         "hydra.sweeper.figures=false"]
GPU = "hydra.launcher.partition=gpu"


class Cluster:
    def __init__(self, root: Path):
        self.root, self.bin = root, root / "bin"
        for sub in ("bin", "state", "pid", "requeue", "cancelled", "submitted", "runners"):
            (root / sub).mkdir(parents=True)
        for name in ("sbatch", "srun", "sacct", "scancel", "scontrol"):
            path = self.bin / name
            path.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(HERE))} {name} \"$@\"\n")
            path.chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
        self.env = {**env, "FAKE_SLURM": str(root), "PATH": f"{self.bin}{os.pathsep}{env['PATH']}"}

    def sweep(self, *args: str, cwd: Path, env: dict | None = None, timeout: float = 120):
        return subprocess.run([*TRAIN, *args], cwd=cwd, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *args: str, cwd: Path) -> subprocess.Popen:
        return subprocess.Popen([*TRAIN, *args], cwd=cwd, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def submissions(self) -> dict[int, str]:
        return {int(p.stem): p.read_text() for p in (self.root / "submitted").glob("*.sh")}

    def states(self, timeout: float = 30) -> dict[str, str]:
        """Every task's state once none is pending or running (a task's result is written before it exits)."""
        deadline = time.monotonic() + timeout
        while True:
            states = {p.name: p.read_text() for p in (self.root / "state").iterdir() if p.suffix != ".tmp"}
            if time.monotonic() > deadline or not {"PENDING", "RUNNING", "REQUEUED"} & set(states.values()):
                return states
            time.sleep(0.1)

    def calls(self) -> list[str]:
        path = self.root / "calls.log"
        return path.read_text().splitlines() if path.exists() else []

    def command(self, name: str, *args: str) -> None:
        subprocess.run([str(self.bin / name), *args], env=self.env, check=True)

    def stop(self) -> None:
        """Kill what sbatch started and is still running (a failed test's tasks)."""
        for runner in (self.root / "runners").iterdir():
            try:
                os.killpg(int(runner.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path / "cluster")
    yield c
    c.stop()


def summary(sweep_dir: Path) -> list[dict]:
    with open(sweep_dir / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_a_sweep_is_one_job_array_with_a_gpu_per_task(cluster, tmp_path):
    out = tmp_path / "sweep"
    r = cluster.sweep(GPU, "optim.lr=0.01,0.02,0.03", "trainer.epochs=1", "hydra.sweeper.fuse=false",
                      "hydra.launcher.array_parallelism=2", f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (job_id, script), = cluster.submissions().items()
    assert job_id == FIRST_JOB_ID
    logs = f"{out}/.submitit/%A_%a/%A_%a"
    sbatch = {line for line in script.splitlines() if line.startswith("#SBATCH")}
    assert sbatch == {"#SBATCH --array=0-2%2", "#SBATCH --partition=gpu", "#SBATCH --nodes=1",
                      "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=4",
                      "#SBATCH --mem=16GB", "#SBATCH --time=240", "#SBATCH --signal=USR2@120",
                      "#SBATCH --requeue", "#SBATCH --job-name=train", "#SBATCH --wckey=submitit",
                      "#SBATCH --open-mode=append", f"#SBATCH --output={logs}_0_log.out",
                      f"#SBATCH --error={logs}_0_log.err"}
    srun = ["srun", "--unbuffered", "--output", f"{logs}_%t_log.out", "--error", f"{logs}_%t_log.err"]
    assert script.strip().splitlines()[-2:] == [  # the task's python runs submitit's _submit on the job's pickle
        "export SUBMITIT_EXECUTOR=slurm",
        shlex.join(srun) + f" {sys.executable} -u -m submitit.core._submit {out}/.submitit/%j"]

    assert cluster.states() == {f"{job_id}_{k}": "COMPLETED" for k in range(3)}
    assert [(row["optim.lr"], row["status"]) for row in summary(out)] == [
        ("0.01", "COMPLETE"), ("0.02", "COMPLETE"), ("0.03", "COMPLETE")]
    for k in range(3):
        assert (out / str(k) / "metrics.json").is_file() and (out / str(k) / "checkpoints" / "last.pt").is_file()
        task = out / ".submitit" / f"{job_id}_{k}" / f"{job_id}_{k}_0_log"  # submitit's on .out, the job's on .err
        assert f"JobEnvironment(job_id={job_id}_{k}," in Path(f"{task}.out").read_text()
        assert "Job completed successfully" in Path(f"{task}.out").read_text()
        assert "epoch 1/1  train/loss" in Path(f"{task}.err").read_text()
    assert (out / "best.yaml").is_file()
    assert not any(c.startswith(("scancel", "scontrol")) for c in cluster.calls())


@pytest.mark.slow  # ~20 s: two fused groups, each one task of its own
def test_fused_groups_are_one_array_task_each(cluster, tmp_path):
    out = tmp_path / "sweep"
    r = cluster.sweep(GPU, "seed=0,1,2,3", "trainer.epochs=1", "hydra.launcher.array_parallelism=2",
                      f"hydra.sweep.dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    (job_id, script), = cluster.submissions().items()
    assert "#SBATCH --array=0-1%2" in script.splitlines()  # 4 jobs in 2 groups: at least one per task at once
    assert cluster.states() == {f"{job_id}_0": "COMPLETED", f"{job_id}_1": "COMPLETED"}
    assert [(row["seed"], row["status"]) for row in summary(out)] == [(str(s), "COMPLETE") for s in range(4)]
    assert [json.loads((out / str(k) / "job.json").read_text())["fused_with"] for k in range(4)] == [2, 2, 2, 2]
    assert sorted(p.name for p in (out / ".groups").iterdir()) == ["0", "2"]


@pytest.mark.slow  # ~25 s: the requeued task starts a second time
def test_a_signalled_task_is_requeued_and_resumes_from_its_checkpoint(cluster, tmp_path):
    """USR2 (what SLURM sends signal_delay_s before the time limit): submitit's handler requeues the task
    (scontrol requeue), the task starts again and the job resumes from its own checkpoints/last.pt."""
    out = tmp_path / "sweep"
    epochs = 5
    sweep = cluster.start(GPU, "optim.lr=0.01,0.02", f"trainer.epochs={epochs}", "trainer.batch_size=2",
                          "hydra.sweeper.fuse=false", f"hydra.sweep.dir={out}", cwd=tmp_path)
    try:
        history = out / "0" / "history.csv"
        deadline = time.monotonic() + 60
        while not (history.exists() and len(history.read_text().splitlines()) >= 3):  # 2 epochs done
            assert sweep.poll() is None and time.monotonic() < deadline, "job 0 never finished 2 epochs"
            time.sleep(0.05)
        cluster.command("scancel", "--signal=USR2", f"{FIRST_JOB_ID}_0")
        _, stderr = sweep.communicate(timeout=90)
    finally:
        sweep.kill()
    assert sweep.returncode == 0, stderr[-3000:]
    assert f"scontrol requeue {FIRST_JOB_ID}_0" in cluster.calls()
    assert cluster.states() == {f"{FIRST_JOB_ID}_0": "COMPLETED", f"{FIRST_JOB_ID}_1": "COMPLETED"}
    task_log = (out / ".submitit" / f"{FIRST_JOB_ID}_0" / f"{FIRST_JOB_ID}_0_0_log.out").read_text()
    assert "Caught signal SIGUSR2" in task_log and f"Requeued job {FIRST_JOB_ID}_0" in task_log
    assert task_log.count("Starting with JobEnvironment") == 2
    train_log = (out / "0" / "train.log").read_text()
    resumed = [line for line in train_log.splitlines() if "resuming from epoch" in line]
    assert len(resumed) == 1 and int(resumed[0].split("resuming from epoch ")[1].split()[0]) >= 1, train_log
    with open(history) as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == list(range(1, epochs + 1))
    assert [row["status"] for row in summary(out)] == ["COMPLETE", "COMPLETE"]
    assert "resuming" not in (out / "1" / "train.log").read_text()


@pytest.mark.slow  # ~30 s: submitit gives a finished job 15 s to show its result
def test_a_job_lost_on_the_cluster_fails_alone_and_the_sweep_goes_on(cluster, tmp_path):
    """A task killed before it could return (scancel here; out of memory, a lost node) is a failed job:
    the other jobs' results are kept and the sweep ends with its one-line summary of failures."""
    out = tmp_path / "sweep"
    sweep = cluster.start(GPU, "optim.lr=0.01,0.02", "trainer.epochs=1", "hydra.sweeper.fuse=false",
                          f"hydra.sweep.dir={out}", cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not (cluster.root / "pid" / f"{FIRST_JOB_ID}_0").exists():
            assert sweep.poll() is None and time.monotonic() < deadline, "task 0 never started"
            time.sleep(0.05)
        cluster.command("scancel", f"{FIRST_JOB_ID}_0")
        _, stderr = sweep.communicate(timeout=90)
    finally:
        sweep.kill()
    assert sweep.returncode == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == f"error: 1 of 2 jobs failed (#0); see {out / 'summary.csv'}"
    assert cluster.states() == {f"{FIRST_JOB_ID}_0": "CANCELLED", f"{FIRST_JOB_ID}_1": "COMPLETED"}
    lost, done = summary(out)
    assert (lost["status"], done["status"]) == ("FAIL", "COMPLETE")
    log = out / ".submitit" / f"{FIRST_JOB_ID}_0" / f"{FIRST_JOB_ID}_0_0_log.err"
    assert lost["error"] == f"JobLost: SLURM job {FIRST_JOB_ID}_0 ended CANCELLED without a result; log: {log}"
    assert (lost["job_dir"], lost["log"]) == (str(out / "0"), str(log))


@pytest.mark.slow
def test_cluster_refusals_are_one_line(cluster, tmp_path):
    r = cluster.sweep("hydra.launcher.partition=cpu", "optim.lr=0.01,0.02", f"hydra.sweep.dir={tmp_path / 's'}",
                      cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == (
        "error: sbatch refused the jobs: sbatch: error: Batch job submission failed: Invalid partition name "
        "specified (see hydra.launcher: partition, account, timeout_min, gpus_per_node, ...)")
    assert not cluster.submissions()
    no_slurm = tmp_path / "no_slurm"  # a PATH without srun and sbatch
    no_slurm.mkdir()
    r = cluster.sweep(GPU, "optim.lr=0.01,0.02", f"hydra.sweep.dir={tmp_path / 's'}", env={"PATH": str(no_slurm)},
                      cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == (
        'error: hydra/launcher=slurm: Could not detect "srun", are you indeed on a slurm cluster? It submits with '
        "sbatch from a SLURM login node; hydra/launcher=submitit_local runs the same jobs on this machine")


@pytest.mark.parametrize("launcher, outlives", [("slurm", True), ("submitit_local", True), ("joblib", False),
                                                ("basic", False)])
def test_jobs_that_outlive_their_sweeper_are_not_released_when_it_stops(launcher, outlives):
    """On a stop the sweeper releases its trials to the next sweeper at once, unless its jobs go on running
    (then they hold their trials themselves): launchers as the presets compose them."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from conftest import CONF
    from hydra_plugins.logitlab_sweepers import _jobs

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert _jobs.jobs_outlive_sweeper(cfg) is outlives
    assert _jobs.on_cluster(cfg) is (launcher == "slurm")
