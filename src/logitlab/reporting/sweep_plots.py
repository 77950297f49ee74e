"""Figures of a sweep, drawn from its summary.csv rows and written beside it as PNGs and as TensorBoard
images (<sweep dir>/summary/), so `tensorboard --logdir <sweep dir>` shows them with the jobs' own runs:
the objective against each job's parameter count, against each swept value, and for an Optuna study
(its journal file, or the database its multirun.yaml names) the parameters' importance.

Drawn on matplotlib's Figure with the Agg canvas as logitlab.reporting.diagnostics does (no pyplot, no
global backend)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from logitlab.reporting import diagnostics, sweep_table
from logitlab.reporting.sweep_table import SEED, key_of, number, overrides_of


def figures(sweep_dir: Path, rows: Sequence[dict], objective: str, direction: str) -> tuple[dict, list[str]]:
    """{name: figure} for what this sweep has, and a note for each figure it cannot have."""
    done = sweep_table.completed(rows, objective)
    drawn, notes = {}, []
    if not done:
        return drawn, ["no job completed: no figures"]
    sized = [(number(r.get("params")), number(r[objective])) for r in done if number(r.get("params")) is not None]
    if sized:
        drawn["objective_vs_params"] = _scatter_params(sized, objective, direction)
    else:
        notes.append("no job's metrics.json has `params`: no objective_vs_params")
    keys = list(dict.fromkeys(key_of(o) for r in done for o in overrides_of(r) if key_of(o) != SEED))
    if keys:
        drawn["objective_vs_values"] = _by_value(done, keys, objective, direction)
    study = _study_of(Path(sweep_dir))
    if study is not None:
        importance, note = _importance(*study)
        if importance:
            drawn["param_importance"] = _bars(importance, objective)
        else:
            notes.append(note)
    return drawn, notes


def write(sweep_dir: Path, rows: Sequence[dict], objective: str, direction: str) -> tuple[list[Path], list[str]]:
    """Write every figure as <sweep dir>/<name>.png and as the TensorBoard image sweep/<name> in
    <sweep dir>/summary/ (replacing the images a previous call wrote). Returns the PNGs and the notes."""
    sweep_dir = Path(sweep_dir)
    drawn, notes = figures(sweep_dir, rows, objective, direction)
    if not drawn:
        return [], notes
    from torch.utils.tensorboard import SummaryWriter

    board_dir = sweep_dir / "summary"
    for old in board_dir.glob("events.out.tfevents.*"):
        old.unlink()
    written = []
    with SummaryWriter(str(board_dir)) as writer:
        for name, fig in drawn.items():
            path = sweep_dir / f"{name}.png"
            fig.savefig(path)
            writer.add_image(f"sweep/{name}", diagnostics.to_image(fig), 0, dataformats="HWC")
            written.append(path)
    return written, notes


def _scatter_params(points: list[tuple[float, float]], objective: str, direction: str):
    fig = diagnostics._figure(5, 4)
    ax = fig.add_subplot()
    ax.scatter([p for p, _ in points], [v for _, v in points], alpha=0.7)
    if min(p for p, _ in points) > 0:
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide over a decade or two
    ax.set(xlabel="parameters", ylabel=objective, title=f"{objective} ({direction}) against model size")
    ax.grid(alpha=0.3)
    return fig


def _by_value(done: Sequence[dict], keys: list[str], objective: str, direction: str):
    """One panel per swept key: a numeric key on a numeric axis, any other as categories in sweep order."""
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig = diagnostics._figure(4.2 * cols, 3.4 * rows)
    for k, key in enumerate(keys):
        ax = fig.add_subplot(rows, cols, k + 1)
        points = [(v, y) for v, y in [(_value(r, key), number(r[objective])) for r in done] if v is not None]
        if all(number(v) is not None for v, _ in points):
            ax.scatter([number(v) for v, _ in points], [y for _, y in points], alpha=0.7)
        else:
            categories = list(dict.fromkeys(v for v, _ in points))
            ax.scatter([categories.index(v) for v, _ in points], [y for _, y in points], alpha=0.7)
            ax.set_xlim(-0.5, len(categories) - 0.5)
            ax.set_xticks(range(len(categories)), categories, rotation=30 if len(categories) > 3 else 0,
                          fontsize=8)
        ax.set(xlabel=key, ylabel=objective)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{objective} ({direction}) against each swept value", fontsize=10)
    return fig


def _value(row: dict, key: str) -> str | None:
    for o in overrides_of(row):
        if "=" in o and key_of(o) == key:
            return o.split("=", 1)[1]
    return None


def _study_of(sweep_dir: Path) -> tuple[str, str | None] | None:
    """(storage, study name) of the sweep's study: the database its multirun.yaml names (the study named
    there), else its journal file (its one study); None for a grid."""
    import re

    import yaml  # multirun.yaml is plain YAML; its study name may be one ${key} of the same file

    saved = sweep_dir / "multirun.yaml"
    try:
        doc = yaml.safe_load(saved.read_text()) if saved.is_file() else {}
        sweeper = doc["hydra"]["sweeper"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        sweeper = {}
    storage, name = str(sweeper.get("storage") or ""), str(sweeper.get("study_name") or "")
    if "://" in storage and name:
        ref = re.fullmatch(r"\$\{([\w.]+)\}", name)
        for key in ref.group(1).split(".") if ref else ():
            doc = doc.get(key) if isinstance(doc, dict) else None
        name = str(doc) if ref else name
        if doc is not None:
            return storage, name
    journal = sweep_dir / "optuna.journal"
    return (str(journal), None) if journal.exists() else None


def _importance(where: str, name: str | None) -> tuple[dict | None, str]:
    """Optuna's parameter importance (fANOVA, seeded) over the study's completed trials."""
    import optuna

    if name is None:  # a journal file: the sweep's one study
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(where))
        studies = storage.get_all_studies()
        if len(studies) != 1:
            return None, f"{where} holds {len(studies)} studies: no param_importance"
        name = studies[0].study_name
    else:
        storage = where
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except Exception as e:  # a database that is gone or unreachable from here
        return None, f"study {name!r} in {where} cannot be read ({type(e).__name__}): no param_importance"
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(trials) < 2:
        return None, f"{len(trials)} completed trial(s): param_importance needs 2 or more"
    try:
        importance = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError) as e:  # e.g. no parameter common to every completed trial
        return None, f"no param_importance: {e}"
    if not importance:
        return None, "no parameter common to every completed trial: no param_importance"
    return importance, ""


def _bars(importance: dict, objective: str):
    names = list(importance)[::-1]  # most important on top
    fig = diagnostics._figure(5.5, 1.2 + 0.35 * len(names))
    ax = fig.add_subplot()
    ax.barh(names, [importance[n] for n in names], color="tab:blue")
    ax.set(xlabel="importance (fANOVA)", title=f"what moved {objective}")
    ax.tick_params(axis="y", labelsize=8)
    return fig
