"""The table of a sweep's best jobs, read from <sweep dir>/summary.csv: the sweeper logs it at the end of
a multirun and `logitlab-summary` prints it again. When the sweep varies `seed`, jobs that differ only in
their seed form one group, shown as mean ± std over its n seeds (airbench's way of stating a result).

Plain Python (csv, math, statistics): no Hydra, no torch."""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from typing import Sequence

SEED = "seed"  # the swept key that repeats a configuration rather than changing it


def read(path: Path) -> tuple[str, list[dict]]:
    """summary.csv's objective (its third column) and its rows."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    if len(columns) < 3 or columns[:2] != ["number", "status"]:
        raise ValueError(f"{path} is not a sweep's summary (its columns: {', '.join(columns) or 'none'})")
    return columns[2], rows


def number(value) -> float | None:
    """A finite float from a csv cell (or a number), else None."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def overrides_of(row: dict) -> list[str]:
    return str(row.get("overrides") or "").split()


def key_of(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def completed(rows: Sequence[dict], objective: str) -> list[dict]:
    """Rows of completed jobs with a finite objective."""
    return [r for r in rows if r.get("status") == "COMPLETE" and number(r.get(objective)) is not None]


def varies_seed(rows: Sequence[dict]) -> bool:
    return any(key_of(o) == SEED for r in rows for o in overrides_of(r))


def groups(rows: Sequence[dict], objective: str, direction: str) -> list[dict]:
    """Completed jobs grouped by their overrides other than the seed, best mean first: each group is
    {overrides, numbers, n, <objective>: (mean, std), test/...: (mean, std), wall_seconds: mean}."""
    by_key: dict[tuple, list[dict]] = {}
    for r in completed(rows, objective):
        key = tuple(o for o in overrides_of(r) if key_of(o) != SEED)
        by_key.setdefault(key, []).append(r)
    tests = sorted({k for r in rows for k in r if k.startswith("test/") and number(r[k]) is not None} - {objective})
    found = []
    for key, members in by_key.items():
        group = {"overrides": " ".join(key), "numbers": [int(r["number"]) for r in members], "n": len(members)}
        for column in (objective, *tests):
            group[column] = mean_std([number(r.get(column)) for r in members])
        group["wall_seconds"] = mean_std([number(r.get("wall_seconds")) for r in members])[0]
        found.append(group)
    return sorted(found, key=lambda g: g[objective][0], reverse=direction == "maximize")


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation of the numbers among `values` (std None below two)."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None, None
    return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None


def table(rows: Sequence[dict], objective: str, direction: str, top: int = 5) -> str:
    """The best `top` jobs, or with a swept seed the best `top` groups over seeds, as aligned text."""
    if not completed(rows, objective):
        return "no job completed"
    return _grouped(rows, objective, direction, top) if varies_seed(rows) else _jobs(rows, objective, direction, top)


def _jobs(rows: Sequence[dict], objective: str, direction: str, top: int) -> str:
    best = sorted(completed(rows, objective), key=lambda r: number(r[objective]),
                  reverse=direction == "maximize")[:top]
    tests = sorted({k for r in best for k in r if k.startswith("test/") and number(r[k]) is not None} - {objective})
    head = ["#", objective, *tests, "wall_s", "overrides"]
    body = [[r["number"], _fmt(number(r[objective])), *(_fmt(number(r.get(k))) for k in tests),
             _fmt(number(r.get("wall_seconds")), ".1f"), r.get("overrides") or ""] for r in best]
    return f"best {len(best)} of {len(rows)} jobs by {objective} ({direction}):\n" + _aligned([head, *body])


def _grouped(rows: Sequence[dict], objective: str, direction: str, top: int) -> str:
    found = groups(rows, objective, direction)
    best = found[:top]
    tests = [k for k in best[0] if k.startswith("test/")]
    head = [objective, *tests, "n", "wall_s", "jobs", "overrides"]
    body = [[_pm(g[objective]), *(_pm(g[k]) for k in tests), str(g["n"]), _fmt(g["wall_seconds"], ".1f"),
             ",".join(f"#{n}" for n in g["numbers"]), g["overrides"] or "(none)"] for g in best]
    return (f"best {len(best)} of {len(found)} configurations by {objective} ({direction}), "
            f"mean ± std over seeds ({len(rows)} jobs):\n" + _aligned([head, *body]))


def _aligned(lines: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]) - 1)]
    return "  " + "\n  ".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths)), r[-1]]) for r in lines)


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _pm(stat: tuple[float | None, float | None]) -> str:
    mean, std = stat
    return _fmt(mean) if std is None else f"{mean:.4f} ± {std:.4f}"
