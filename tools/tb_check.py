"""`make tb-check`: TensorBoard's HParams tab over a real sweep, read in headless Chromium.

Runs a 4-job grid (model=linear,mlp x seed=0,1, 2 epochs on digits) into a temporary folder, a second
sweep (model.hidden=[16],[16,8]) into its sub-folder deep/, adds one pruned trial (a run stopped after its first epoch, marked by tensorboard_log.record_status as the
sweeper marks one), starts TensorBoard on it, opens #hparams with Playwright driving the system Chromium
(no browser download), and checks the table view: each job's row shows its metrics.json values under
best/ (to the 5 significant digits TensorBoard prints), the two sweeps share one table whose columns
are the union of theirs (model.hidden.depth and model.hidden.1 filled in for deep/ only),
and the pruned trial shows status/pruned 1 and leaves the table when the Failure status is unticked.
Screenshots go to the temporary directory (printed at the end; kept with --keep)."""
from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]
BEST = ("val/acc", "val/loss", "test/acc", "test/loss")

# The table view's rows as the user sees them: vaadin-grid's header and body cells, by column.
READ_TABLE = """() => {
  const find = (root) => { for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'VAADIN-GRID') return el;
      if (el.shadowRoot) { const g = find(el.shadowRoot); if (g) return g; } } return null; };
  const grid = find(document);
  const text = (cell) => { const slot = cell.querySelector('slot');
      const nodes = slot ? slot.assignedNodes() : []; return nodes.length ? nodes[0].innerText.trim() : ''; };
  const visible = (cell) => !cell.hidden && cell.offsetParent !== null;
  const header = [...grid.shadowRoot.querySelectorAll('thead tr')][0];
  const names = [...header.querySelectorAll('th')].filter(visible).map(text);
  const rows = [...grid.shadowRoot.querySelectorAll('tbody tr')].filter(r => !r.hidden)
      .map(r => [...r.querySelectorAll('td')].filter(visible).map(text)).filter(r => r.some(v => v));
  return {names, rows};
}"""


def sweep(root: Path, *overrides: str) -> None:
    cmd = [sys.executable, "-m", "logitlab.train", "-m", *overrides, "trainer.epochs=2", "data=digits",
           "trainer.figures=false", "trainer.progress=false", f"hydra.sweep.dir={root}"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def pruned_trial(run_dir: Path) -> None:
    """A trial the pruner stopped after epoch 1: its start and one epoch, then the sweeper's mark."""
    from logitlab.reporting.tensorboard_log import RunBoard, record_status

    board = RunBoard(run_dir, {"data": "digits", "model": "mlp", "optim": "adam", "schedule": "none", "seed": 2})
    board.start(0)
    board.epoch(1, {"train/loss": 2.0, "train/acc": 0.3, "val/loss": 1.9, "val/acc": 0.35, "lr": 0.01})
    board.close()
    record_status(run_dir, "PRUNED", step=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def close_to(shown: str, value: float) -> bool:
    """TensorBoard prints a number with toPrecision(5): agree to its last digit."""
    if not shown:
        return False
    digits = 4 - math.floor(math.log10(abs(value))) if value else 4
    return abs(float(shown) - value) <= 0.5 * 10 ** -digits + 1e-12


def check(page, root: Path, shots: Path) -> list[str]:
    from playwright.sync_api import expect  # noqa: F401  (import fails early if Playwright is broken)

    page.goto(page.url_base + "/#hparams")
    page.wait_for_selector("vaadin-grid-cell-content", timeout=60_000)
    for column in ("status/pruned", "model.hidden.depth", "model.hidden.1"):  # in case not shown by default
        page.get_by_role("checkbox", name=column, exact=True).check()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "hparams_table.png"), full_page=True)
    table = page.evaluate(READ_TABLE)
    names, rows = table["names"], {row[0]: dict(zip(table["names"], row)) for row in table["rows"]}
    print("columns:", names)
    for trial, row in sorted(rows.items()):
        print(f"  {trial}: " + "  ".join(f"{k}={v}" for k, v in row.items() if k not in ("Trial ID", "Show Metrics")))
    problems = []
    jobs = {p.parent.relative_to(root).as_posix(): p.parent for p in sorted(root.rglob("metrics.json"))}
    for name, job in jobs.items():
        metrics, row = json.loads((job / "metrics.json").read_text()), rows.get(name)
        if row is None:
            problems.append(f"job {name} has no row")
            continue
        for tag in BEST:
            if not close_to(row.get(f"best/{tag}", ""), metrics[tag]):
                problems.append(f"job {name}: best/{tag} shows {row.get(f'best/{tag}')!r}, "
                                f"metrics.json {metrics[tag]:.5f}")
        if row.get("model") not in ("linear", "mlp") or not row.get("seed"):
            problems.append(f"job {name}: hyperparameter columns missing: {row}")
    deep = {name: (rows.get(name, {}).get("model.hidden.depth"), rows.get(name, {}).get("model.hidden.1"))
            for name in ("deep/0", "deep/1", "0")}
    if deep != {"deep/0": ("1.0000", ""), "deep/1": ("2.0000", "8.0000"), "0": ("", "")}:
        problems.append(f"depth and width columns: {deep}")
    pruned = rows.get("pruned")
    if pruned is None or pruned.get("status/pruned") != "1.0000":
        problems.append(f"the pruned trial shows {pruned}")

    page.get_by_role("checkbox", name="Failure").uncheck()  # the status filter: PRUNED is FAILURE there
    page.wait_for_timeout(1500)
    page.screenshot(path=str(shots / "hparams_without_failure.png"), full_page=True)
    left = {row[0] for row in page.evaluate(READ_TABLE)["rows"]}
    print("with Failure unticked:", sorted(left))
    if "pruned" in left or left != set(jobs):
        problems.append(f"unticking Failure left {sorted(left)}")
    return problems


def main() -> int:
    from playwright.sync_api import sync_playwright

    keep = "--keep" in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="tb_check_"))
    root, shots = tmp / "sweep", tmp / "screenshots"
    shots.mkdir(parents=True)
    t0 = time.time()
    sweep(root, "model=linear,mlp", "seed=0,1")
    sweep(root / "deep", "model=mlp", "model.hidden=[16],[16,8]")
    pruned_trial(root / "pruned")
    print(f"sweeps of 4 and 2 jobs and a pruned trial in {time.time() - t0:.0f}s: {root}")
    port = free_port()
    tb = subprocess.Popen([str(Path(sys.executable).with_name("tensorboard")), "--logdir", str(root),
                           "--host", "127.0.0.1", "--port", str(port)],
                          stdout=subprocess.DEVNULL, stderr=(tmp / "tensorboard.log").open("w"))
    try:
        wait_for(f"http://127.0.0.1:{port}/data/plugins_listing")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 2400, "height": 1200})
            page.url_base = f"http://127.0.0.1:{port}"
            try:
                problems = check(page, root, shots)
            finally:
                browser.close()
    finally:
        tb.terminate()
        tb.wait(timeout=10)
    print(f"screenshots: {shots}")
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print(f"tb-check passed in {time.time() - t0:.0f}s")
    if not keep and not problems:
        import shutil

        shutil.rmtree(root)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
