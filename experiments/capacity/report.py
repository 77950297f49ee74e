"""Read the sweeps of experiments/capacity/run.sh (multirun/capacity/*/summary.csv) into results.md and
capacity.png: test accuracy against parameter count over depth x width x activation, and the mlp_nas search
against the grid in trials and seconds to the same validation accuracy."""
from __future__ import annotations

import csv
import json
import statistics
import subprocess
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
SWEEPS = ROOT / "multirun" / "capacity"
ACTIVATIONS = ("relu", "tanh", "gelu")
MARKERS = dict(zip(ACTIVATIONS, "o^s"))
COLORS = {0: "#999999", 1: "#1f77b4", 2: "#ff7f0e", 3: "#2ca02c", 4: "#d62728"}


def jobs(name: str, pruned: bool = False) -> list[dict]:
    """The sweep's finished (and, if `pruned`, pruned) jobs in launch order. `seconds` is the job's training
    time (metrics.json; a rerun that skips a finished job rewrites its wall_seconds), or for a pruned trial,
    which has no metrics.json, its wall seconds."""
    path = SWEEPS / name / "summary.csv"
    if not path.exists():
        return []
    rows = [r for r in csv.DictReader(path.open()) if r["status"] == "COMPLETE" or pruned and r["status"] == "PRUNED"]
    for r in rows:
        r["complete"] = r["status"] == "COMPLETE"
        r["seconds"] = float(r["train_seconds"] if r["complete"] else r["wall_seconds"])
        r["val/acc"] = float(r["val/acc"])
        if r["complete"]:
            r["test/acc"], r["params"] = float(r["test/acc"]), int(r["params"])
        r["number"] = int(r["number"])
    return sorted(rows, key=lambda r: r["number"])


def hidden_of(row: dict) -> list[int]:
    return json.loads(row.get("model.hidden") or "[]")


def grid_table(rows: list[dict]) -> tuple[list[str], dict]:
    """Rows: hidden widths; columns: activation; cells: test acc mean ± std over seeds. Returns the
    markdown lines and {(hidden, activation): (params, mean, std)}."""
    cells, params = defaultdict(list), {}
    for r in rows:  # model=linear has no hidden layers and no activation: its cell sits under the first one
        shape = str(hidden_of(r))
        cells[(shape, r.get("model.activation") or ACTIVATIONS[0])].append(100 * r["test/acc"])
        params[shape] = r["params"]
    stats = {k: (params[k[0]], *mean_std(v), len(v)) for k, v in cells.items()}
    best = max(stats, key=lambda k: stats[k][1])
    lines = ["| hidden | params | " + " | ".join(ACTIVATIONS) + " |", "|---|---:|" + "---:|" * len(ACTIVATIONS)]
    for shape in params:
        row = []
        for act in ACTIVATIONS:
            cell = "–" if (shape, act) not in stats else "{1:.1f} ± {2:.1f}".format(*stats[(shape, act)])
            row.append(f"**{cell}**" if (shape, act) == best else cell)
        lines.append(f"| {shape} | {params[shape]:,} | " + " | ".join(row) + " |")
    return lines, stats


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def best_so_far(rows: list[dict]) -> tuple[list[float], list[float]]:
    seconds, best, t, b = [], [], 0.0, 0.0
    for r in rows:  # a pruned trial costs its time; its last val/acc is not a result
        t += r["seconds"]
        b = max(b, r["val/acc"] if r["complete"] else 0.0)
        seconds.append(t)
        best.append(100 * b)
    return seconds, best


def reach(rows: list[dict], target: float) -> str:
    seconds, best = best_so_far(rows)
    for i, (s, b) in enumerate(zip(seconds, best)):
        if b >= target:
            return f"{i + 1} ({s:.0f} s)"
    return f"– ({len(rows)}, {seconds[-1]:.0f} s)"


SEARCHES = {"mnist1d_nas": "mlp_nas as is (median pruner from epoch 1)",
            "mnist1d_nas_warmup": "mlp_nas, pruner waits 10 epochs"}


def main() -> None:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=ROOT).stdout.strip()
    seeds = len({r["seed"] for r in jobs("mnist1d_grid")}) or len({r["seed"] for r in jobs("digits_grid")})
    lines = [f"MLP grid, Adam lr 1e-2, batch 100, 30 epochs, {seeds} seeds; test accuracy % (best-by-val weights), "
             f"mean ± std; bold = best cell. git {rev}.", ""]
    stats = {}
    for data in ("mnist1d", "digits"):
        grid, linear = jobs(f"{data}_grid"), jobs(f"{data}_linear")
        if not grid:
            continue
        table, stats[data] = grid_table(linear + grid)
        lines += [f"### {data}", "", *table, ""]
        by_depth = defaultdict(list)
        for (shape, act), (p, m, s, n) in stats[data].items():
            by_depth[len(json.loads(shape))].append((m, s, shape, act, p))
        lines += ["| depth | best config | params | test acc |", "|---:|---|---:|---:|"]
        lines += [f"| {d} | {shape + ' ' + act if d else 'linear'} | {p:,} | {m:.1f} ± {s:.1f} |"
                  for d, (m, s, shape, act, p) in sorted((d, max(v)) for d, v in by_depth.items())]
        lines.append("")

    grid0 = [r for r in jobs("mnist1d_grid") if r["seed"] == "0"]
    searches = {name: jobs(name, pruned=True) for name in SEARCHES}
    searches = {name: rows for name, rows in searches.items() if rows}
    if grid0 and searches:
        targets = [60.0, 65.0, 70.0, max(100 * r["val/acc"] for r in grid0)]
        lines += ["### mlp_nas search vs the grid (MNIST-1D, one seed per trial, same training budget)", "",
                  "Trials (and training seconds) until the best val/acc so far reaches each target; '–' = not "
                  "reached (trials, seconds spent). A pruned trial costs its time and gives no result. The last "
                  "target is the grid's best single-seed val/acc.", "",
                  "| search | trials (pruned) | " + " | ".join(f"val ≥ {t:.2f}%" for t in targets)
                  + f" | best trial (val/acc, test/acc) | its {seeds}-seed test acc |",
                  "|---|---:|" + "---:|" * len(targets) + "---|---:|"]
        for name, rows in [("mnist1d_grid", grid0), *searches.items()]:
            done = [r for r in rows if r["complete"]]
            winner = max(done, key=lambda r: r["val/acc"])
            label = SEARCHES.get(name, "grid, depth x width x activation (seed 0)")
            what = winner["overrides"].replace(" seed=0", "")
            rerun = jobs(f"{name}_best") if name != "mnist1d_grid" else \
                [r for r in jobs("mnist1d_grid") if r["overrides"].rsplit(" ", 1)[0] == what]
            acc = "{:.1f} ± {:.1f}".format(*mean_std([100 * r["test/acc"] for r in rerun])) if rerun else "–"
            lines.append(f"| {label} | {len(rows)} ({len(rows) - len(done)}) | "
                         + " | ".join(reach(rows, t) for t in targets)
                         + f" | `{what}`, {winner['params']:,} params ({100 * winner['val/acc']:.1f}, "
                           f"{100 * winner['test/acc']:.1f}) | {acc} |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(stats, grid0, searches)


def plot(stats: dict, grid0: list[dict], searches: dict) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, (data, cells) in zip(axes, stats.items()):
        for (shape, act), (p, m, s, _) in cells.items():
            depth = len(json.loads(shape))
            ax.errorbar(p, m, s, marker=MARKERS.get(act, "D"), color=COLORS[depth], capsize=2, ms=5)
        if data == "mnist1d" and searches:
            done = [r for rows in searches.values() for r in rows if r["complete"]]
            ax.scatter([r["params"] for r in done], [100 * r["test/acc"] for r in done], marker="x", s=14,
                       color="k", alpha=0.5, zorder=0, label="mlp_nas trials (1 seed)")
            ax.legend(fontsize=7, loc="lower right")
        ax.set(xscale="log", xlabel="parameters", ylabel="test accuracy %", title=f"{data}: MLP grid")
    handles = [plt.Line2D([], [], color=COLORS[d], marker="o", ls="", label=f"depth {d}") for d in range(4)]
    handles += [plt.Line2D([], [], color="k", marker=MARKERS[a], ls="", label=a) for a in ACTIVATIONS]
    axes[1].legend(handles=handles, fontsize=7, loc="lower right", ncol=2)
    if grid0 and searches:
        ax = axes[2]
        for rows, label in ((grid0, "grid (seed 0, launch order)"),
                            *((rows, SEARCHES[name]) for name, rows in searches.items())):
            ax.step(*best_so_far(rows), where="post", label=label)
        ax.set(xlabel="cumulative training seconds", ylabel="best val/acc so far %", title="MNIST-1D: search cost",
               ylim=(40, None))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "capacity.png", dpi=90)


if __name__ == "__main__":
    main()
