"""A table of your own, with categories and holes: does it train through `data=table`, what do the holes cost,
and what does a category never seen in training do to a prediction?

The table is scikit-learn's wine (178 wines, 3 cultivars, 13 measurements) made untidy: colour intensity as
text bands (pale / light / deep / dark), ash as integer grades 1-4 (named in data.categorical), total phenols
as a boolean, an id column (data.drop), the rest as numbers; a fraction of the alcohol, magnesium and colour
cells blanked at random (seed 0) and 4 labels removed. For each fraction, softmax regression and an MLP train
through the command line over 5 splits (data.split_seed 0-4; one sweep per fraction), against scikit-learn's
LogisticRegression on the same rows with the textbook pipeline (median imputation with missing indicators,
standardisation, one-hot with unknown categories ignored). Then every test wine is predicted again with its
colour band replaced by one the model never saw.

    .venv/bin/python experiments/own_table/run.py      # ~1 min on 2 cores; writes results.md, accuracy.png, weights.png

Runs go to multirun/own_table/ (git-ignored).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from logitlab.data.splits import stratified_split  # noqa: E402
from logitlab.reporting.scoring import probabilities  # noqa: E402
from logitlab.rundirs import load_run  # noqa: E402

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
OUT = ROOT / "multirun" / "own_table"
BLANKS = (0.0, 0.2, 0.5)  # the fraction of alcohol, magnesium and colour cells left empty
SPLITS = range(5)
MODELS = ("linear", "mlp")
CULTIVARS = ["barolo", "grignolino", "barbera"]  # scikit-learn's class_0, class_1, class_2
NUMERIC = ["alcohol", "malic_acid", "magnesium", "flavanoids", "hue", "proline"]
CATEGORICAL = ["colour", "ash_grade", "rich_in_phenols"]
# Picked by validation loss: 18 validation wines tie on accuracy from the first epochs
# scikit-learn's default L2 penalty (C = 1), and next to none (C = 1e4): logitlab's softmax regression has none
SKLEARN = {"scikit-learn LR, C=1": 1.0, "scikit-learn LR, C=1e4": 1e-4}
COLUMNS = ["logitlab linear", "logitlab mlp", *SKLEARN]
TRAIN = ["trainer.epochs=200", "trainer.objective=val/loss", "data.categorical=[ash_grade]", "data.drop=[id]",
         "data.label=cultivar", "trainer.progress=false"]


def untidy_wine(blank: float, seed: int = 0) -> pd.DataFrame:
    from sklearn.datasets import load_wine

    full = load_wine(as_frame=True).frame
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"id": [f"w{i:03d}" for i in range(len(full))]})
    table[NUMERIC] = full[NUMERIC]
    bands = pd.cut(full.color_intensity, [0, 3, 5, 8, 14], labels=["pale", "light", "deep", "dark"])
    table["colour"] = bands.astype(str).astype(object)
    table["ash_grade"] = pd.qcut(full.ash, 4, labels=False) + 1
    table["rich_in_phenols"] = (full.total_phenols > 2.3).astype(object)
    for name in ("alcohol", "magnesium", "colour"):
        table.loc[rng.random(len(table)) < blank, name] = np.nan
    table["cultivar"] = [CULTIVARS[t] for t in full.target]
    table.loc[rng.choice(len(table), 4, replace=False), "cultivar"] = np.nan
    return table


def train(path: Path, sweep_dir: Path) -> None:
    command = [sys.executable, "-m", "logitlab.train", "-m", "data=table", f"data.path={path}", *TRAIN,
               f"model={','.join(MODELS)}", f"data.split_seed={','.join(map(str, SPLITS))}",
               f"hydra.sweep.dir={sweep_dir}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])


def sklearn_scores(table: pd.DataFrame, penalty: float) -> list[float]:
    """LogisticRegression (C = 1 / penalty) with the usual preprocessing, on logitlab's rows for each split."""
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    table = table[table.cultivar.notna()]
    y = np.array([sorted(CULTIVARS).index(c) for c in table.cultivar])
    x = table[NUMERIC + CATEGORICAL].astype({c: str for c in CATEGORICAL})  # a hole is the category "nan"
    scores = []
    for seed in SPLITS:
        rows, _, test = (i.numpy() for i in stratified_split(torch.tensor(y), 0.1, 0.2, seed))
        model = make_pipeline(
            make_column_transformer((make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                                   StandardScaler()), NUMERIC),
                                    (OneHotEncoder(handle_unknown="ignore"), CATEGORICAL)),
            LogisticRegression(C=1 / penalty, max_iter=20000))
        scores.append(model.fit(x.iloc[rows], y[rows]).score(x.iloc[test], y[test]))
    return scores


def unseen_colour(run_dir: Path, table_path: Path) -> tuple[float, float]:
    """Test accuracy of a run on its own test wines, and with every test wine's colour band unseen."""
    model, data, config = load_run(run_dir)
    table = pd.read_csv(table_path, dtype=str)
    table = table[table.cultivar.notna()].reset_index(drop=True)
    test = stratified_split(torch.tensor([data.class_names.index(c) for c in table.cultivar]), 0.1, 0.2,
                            config["data"]["split_seed"])[2].numpy()
    rows = table.iloc[test].assign(colour="violet")
    rows.to_csv(run_dir / "unseen_colour.csv", index=False)
    raw, _ = data.reader.read(run_dir / "unseen_colour.csv")
    y = data.test[1]
    p_unseen = probabilities(model, data.normalisation(raw))
    return ((probabilities(model, data.test[0]).argmax(1) == y).double().mean().item(),
            (p_unseen.argmax(1) == y).double().mean().item())


def job_dirs(sweep_dir: Path) -> dict[tuple[str, int], Path]:
    summary = pd.read_csv(sweep_dir / "summary.csv")
    return {(row.model, int(row["data.split_seed"])): Path(row.job_dir) for _, row in summary.iterrows()}


def mean_std(values) -> str:
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def plot_accuracy(acc: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, marker in zip(COLUMNS, "os^v"):
        values = np.array([acc[(name, b)] for b in BLANKS]) * 100
        ax.errorbar(np.array(BLANKS) * 100, values.mean(1), values.std(1), marker=marker, capsize=3, label=name)
    ax.set(xlabel="% of alcohol, magnesium and colour cells blank", ylabel="test accuracy %",
           title="untidy wine: 5 splits, mean ± std")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_weights(run_dir: Path, path: Path) -> None:
    """The linear model's weights per encoded feature: what one-hot slots, medians and holes became."""
    model, data, _ = load_run(run_dir)
    weight = model.linear.weight.detach().numpy()  # (classes, features), on standardised features
    names = data.reader.encoder.feature_names()
    fig, ax = plt.subplots(figsize=(10, 3.4))
    limit = np.abs(weight).max()
    ax.imshow(weight, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(len(data.class_names)), data.class_names)
    ax.set_title("softmax regression weights on the encoded features (blank 20%, split 0); "
                 "the <unseen> slots are never trained: 0 in every training row", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    acc: dict[tuple[str, float], list[float]] = {}
    unseen: dict[tuple[str, float], list[tuple[float, float]]] = {}
    for blank in BLANKS:
        table = untidy_wine(blank)
        path = OUT / f"wine_blank{int(blank * 100)}.csv"
        table.to_csv(path, index=False)
        sweep_dir = OUT / f"blank{int(blank * 100)}"
        train(path, sweep_dir)
        jobs = job_dirs(sweep_dir)
        for model in MODELS:
            acc[(f"logitlab {model}", blank)] = [json.loads((jobs[(model, s)] / "metrics.json").read_text())["test/acc"]
                                                 for s in SPLITS]
            unseen[(model, blank)] = [unseen_colour(jobs[(model, s)], path) for s in SPLITS]
        for name, penalty in SKLEARN.items():
            acc[(name, blank)] = sklearn_scores(table, penalty)
    plot_accuracy(acc, HERE / "accuracy.png")
    plot_weights(job_dirs(OUT / "blank20")[("linear", 0)], HERE / "weights.png")

    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    lines = [f"Untidy wine (174 labelled of 178), 5 splits (data.split_seed 0-4) of 122 train / 18 val / 34 test, "
             f"git {rev}. Test accuracy %, mean ± std over the splits:", "",
             "| blank cells | " + " | ".join(COLUMNS) + " |", "|---:|" + "---:|" * len(COLUMNS)]
    for blank in BLANKS:
        lines.append(f"| {blank:.0%} | " + " | ".join(mean_std(acc[(name, blank)]) for name in COLUMNS) + " |")
    lines += ["", "Every test wine predicted again with its colour band 'violet', never seen in training "
              "(test accuracy %, mean ± std over the splits):", "",
              "| blank cells | model | as it is | colour unseen |", "|---:|---|---:|---:|"]
    for blank in BLANKS:
        for model in MODELS:
            pairs = np.array(unseen[(model, blank)])
            lines.append(f"| {blank:.0%} | {model} | {mean_std(pairs[:, 0])} | {mean_std(pairs[:, 1])} |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
