"""data=table: a user's own CSV / TSV / Parquet table, through the command line, on real tables that ship
with scikit-learn (wine: 178 wines of 3 cultivars; breast cancer: 569 tumours, malignant or benign), written
as CSV files with named columns and string labels.

Softmax regression scores as scikit-learn's LogisticRegression on the same rows; predict reads a table's
columns by name in any order; categories and missing values (a wine table with text bands, integer grades,
booleans and blanked cells) train, and a category never seen in training still predicts; bad input is one
line before any run directory; export writes the encoder JSON, from which the rows can be encoded by hand;
every zoo model that takes (N, features) trains, fused in a sweep, and the others refuse in one line.

The subprocesses of a test run side by side (one more than the cores, OMP_NUM_THREADS=1 each)."""
from __future__ import annotations

import csv
import json
import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF, run_cli
from logitlab import ConfigError
from logitlab.data.splits import stratified_split
from logitlab.data.table import load_table

TRAIN, PREDICT, EXPORT = "logitlab.train", "logitlab.predict", "logitlab.export"
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
QUIET = ("trainer.progress=false", "trainer.figures=false")
SPLIT_SEEDS = range(5)  # test sets of 36 wines: one wine is 2.8 points, so scores are compared over 5 splits
# Softmax regression as logistic regression: picked by validation loss (18 validation wines tie on accuracy
# from the first epochs), trained long enough to converge; 200 epochs of wine take 0.1 s
LINEAR = ("model=linear", "trainer.epochs=200", "trainer.objective=val/loss")
WINE_CULTIVARS = ["barolo", "grignolino", "barbera"]  # sklearn's class_0, class_1, class_2
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
LABELS = {"wine": "cultivar", "breast_cancer": "diagnosis", "mixed": "cultivar"}
MIXED = {"mixed": ("data.categorical=[ash_grade]", "data.drop=[id]")}  # the integer grades are categories


def in_parallel(*commands: tuple[str, ...]):
    """Each command's CompletedProcess, run side by side; a command is (module, *args)."""
    with ThreadPoolExecutor(max_workers=(os.cpu_count() or 1) + 1) as pool:
        return list(pool.map(lambda command: run_cli(*command[1:], module=command[0], env=ENV), commands))


def one_line(done, status: int) -> str:
    """The one line a refused command prints: its exit status, no traceback, nothing else on stderr."""
    assert done.returncode == status, done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return lines[0]


# ---------------------------------------------------------------------------------------- the tables
def wine() -> pd.DataFrame:
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    return frame.drop(columns="target").assign(cultivar=[WINE_CULTIVARS[t] for t in frame.target])


def breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    return data.frame.drop(columns="target").assign(diagnosis=[data.target_names[t] for t in data.target])


def mixed_wine(seed: int = 0, blank: float = 0.1) -> pd.DataFrame:
    """Wine with categories and holes: colour intensity as text bands, ash as integer grades 1-4 (to be
    named in data.categorical), total phenols as a boolean, an id to drop; `blank` of the alcohol, magnesium
    and colour cells emptied at random, and 4 labels."""
    full = wine()
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"id": [f"w{i:03d}" for i in range(len(full))]})
    for name in ("alcohol", "malic_acid", "magnesium", "flavanoids", "hue", "proline"):
        table[name] = full[name]
    bands = pd.cut(full.color_intensity, [0, 3, 5, 8, 14], labels=["pale", "light", "deep", "dark"])
    table["colour"] = bands.astype(str)
    table["ash_grade"] = pd.qcut(full.ash, 4, labels=False) + 1
    table["rich_in_phenols"] = full.total_phenols > 2.3
    table = table.astype({"colour": object, "rich_in_phenols": object})
    for name in ("alcohol", "magnesium", "colour"):
        table.loc[rng.random(len(table)) < blank, name] = np.nan
    table["cultivar"] = full.cultivar.astype(object)
    table.loc[rng.choice(len(table), 4, replace=False), "cultivar"] = np.nan
    return table


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tables")
    paths = {name: folder / f"{name}.csv" for name in ("wine", "breast_cancer", "mixed")}
    for name, make in (("wine", wine), ("breast_cancer", breast_cancer), ("mixed", mixed_wine)):
        make().to_csv(paths[name], index=False)
    return paths


def table_args(tables, name: str) -> tuple[str, ...]:
    """The command line's data=table for one of the tables."""
    return ("data=table", f"data.path={tables[name]}", f"data.label={LABELS[name]}", *MIXED.get(name, ()))


@pytest.fixture(scope="module")
def runs(tables, tmp_path_factory) -> dict[str, Path]:
    """Softmax regression on wine (split 0) and on the mixed table: the runs predict and export read."""
    folder = tmp_path_factory.mktemp("runs")
    done = in_parallel(*((TRAIN, *table_args(tables, name), *LINEAR, *QUIET, f"hydra.run.dir={folder / name}")
                         for name in ("wine", "mixed")))
    for d in done:
        assert d.returncode == 0, d.stderr[-3000:]
    (folder / "mixed" / "output.txt").write_text(done[-1].stdout + done[-1].stderr)
    return {name: folder / name for name in ("wine", "mixed")}


@pytest.fixture(scope="module")
def studies(tables, tmp_path_factory) -> dict[str, Path]:
    """Softmax regression over 5 splits of wine and of breast cancer (a sweep each)."""
    folder = tmp_path_factory.mktemp("studies")
    splits = f"data.split_seed={','.join(map(str, SPLIT_SEEDS))}"
    done = in_parallel(*((TRAIN, "-m", *table_args(tables, name), splits, *LINEAR, *QUIET,
                          f"hydra.sweep.dir={folder / name}") for name in ("wine", "breast_cancer")))
    for d in done:
        assert d.returncode == 0, d.stderr[-3000:]
    return {name: folder / name for name in ("wine", "breast_cancer")}


# ---------------------------------------------------------------------------------------- (a) scores
@pytest.mark.slow  # an accuracy study (5 splits x 200 epochs per table): make test-all
@pytest.mark.parametrize("name", ["wine", "breast_cancer"])
def test_softmax_regression_scores_as_scikit_learns_logistic_regression(name, tables, studies):
    from sklearn.linear_model import LogisticRegression

    frame = pd.read_csv(tables[name])
    label = LABELS[name]
    classes = sorted(frame[label].unique())
    y = frame[label].map({c: i for i, c in enumerate(classes)}).to_numpy()
    x = frame.drop(columns=label).to_numpy(dtype=np.float64)
    ours, theirs = [], []
    for seed in SPLIT_SEEDS:
        train, _, test = (idx.numpy() for idx in stratified_split(torch.tensor(y), 0.1, 0.2, seed))
        # the same rows, standardised the same way (training mean and std)
        data = load_table(str(tables[name]), label, split_seed=seed)
        assert data.class_names == classes and torch.equal(data.test[1], torch.from_numpy(y[test]))
        mean, std = x[train].mean(0), x[train].std(0, ddof=1)
        assert np.allclose(data.test[0].numpy(), (x[test] - mean) / std, atol=1e-4)
        fitted = LogisticRegression(max_iter=5000).fit((x[train] - mean) / std, y[train])
        theirs.append(fitted.score((x[test] - mean) / std, y[test]))
        ours.append(json.loads((studies[name] / str(seed) / "metrics.json").read_text())["test/acc"])
    print(f"{name}: logitlab {np.round(ours, 4)} mean {np.mean(ours):.4f}; "
          f"scikit-learn {np.round(theirs, 4)} mean {np.mean(theirs):.4f}")
    assert abs(np.mean(ours) - np.mean(theirs)) <= 0.02, (ours, theirs)


# ---------------------------------------------------------------------------------------- (b) predict
def read_probabilities(path: Path) -> tuple[list[str], np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c.startswith("prob_")]
    return [r["predicted"] for r in rows], np.array([[float(r[c]) for c in columns] for r in rows])


def test_predict_reads_the_columns_by_name_in_any_order(tables, runs, tmp_path):
    from logitlab.reporting.scoring import probabilities
    from logitlab.rundirs import load_run

    run = runs["wine"]
    frame = pd.read_csv(tables["wine"])
    columns = list(np.random.default_rng(0).permutation([c for c in frame.columns if c != "cultivar"]))
    frame[columns].assign(note="not a feature").to_csv(tmp_path / "shuffled.csv", index=False)  # no label
    done = in_parallel(*((PREDICT, f"run={run}", f"input={table}", f"out={tmp_path / f'{name}.out.csv'}")
                         for name, table in (("as_trained", tables["wine"]), ("shuffled", tmp_path / "shuffled.csv"))))
    assert all(d.returncode == 0 for d in done), [d.stderr[-2000:] for d in done]
    predicted, p = read_probabilities(tmp_path / "as_trained.out.csv")
    predicted_shuffled, p_shuffled = read_probabilities(tmp_path / "shuffled.out.csv")
    assert predicted == predicted_shuffled and np.array_equal(p, p_shuffled)
    assert set(predicted) == set(WINE_CULTIVARS)  # the class names as the table spells them
    # the file's rows, encoded by the reader, are the run's own test split
    model, data, _ = load_run(run)
    test = stratified_split(torch.tensor([data.class_names.index(c) for c in frame.cultivar]), 0.1, 0.2, 0)[2]
    assert np.allclose(p[test.numpy()], probabilities(model, data.test[0], dtype=torch.float64).numpy(), atol=1e-6)


# ---------------------------------------------------------------------------------------- (c) categories, holes
def test_categories_and_missing_values_train_and_an_unseen_category_predicts(tables, runs, tmp_path):
    from logitlab.rundirs import load_run

    run = runs["mixed"]
    # logged while the command line is checked, by Hydra's own logging then: on stdout, not in train.log
    assert "4 of 178 rows have no 'cultivar' and are left out" in (run / "output.txt").read_text()
    assert json.loads((run / "metrics.json").read_text())["test/acc"] >= 0.85
    rows = pd.read_csv(tables["mixed"], dtype=str).head(4).drop(columns="cultivar")
    rows.loc[0, "colour"] = "ultraviolet"  # never in the table
    rows.loc[1, "ash_grade"] = "9"
    rows.loc[2, "rich_in_phenols"] = np.nan  # never missing in training
    rows.loc[3, ["alcohol", "magnesium"]] = np.nan
    rows[rows.columns[::-1]].to_csv(tmp_path / "new.csv", index=False)
    done = run_cli(f"run={run}", f"input={tmp_path / 'new.csv'}", f"out={tmp_path / 'out.csv'}", module=PREDICT,
                   env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    _, p = read_probabilities(tmp_path / "out.csv")
    assert p.shape == (4, 3) and np.isfinite(p).all() and np.allclose(p.sum(1), 1, atol=1e-8)
    # what the model saw: the unseen slots, the training median and a missing flag; bounded once standardised
    _, data, _ = load_run(run)
    raw, names = data.reader.read(tmp_path / "new.csv")
    features = data.reader.encoder.feature_names()
    at = lambda row, feature: raw[row, features.index(feature)].item()  # noqa: E731
    assert names == ["0", "1", "2", "3"]
    assert at(0, "colour=<unseen>") == 1 and at(1, "ash_grade=<unseen>") == 1
    assert at(2, "rich_in_phenols=<unseen>") == 1 and at(2, "rich_in_phenols=True") == 0
    median = next(c.median for c in data.reader.encoder.columns if c.name == "alcohol")
    assert at(3, "alcohol_missing") == 1 and at(3, "alcohol") == pytest.approx(median)
    assert data.normalisation(raw).abs().max() < 20


def test_the_encoding_is_fitted_on_the_training_split_alone(tables, caplog):
    with caplog.at_level(logging.INFO, logger="logitlab.data.table"):
        data = load_table(str(tables["mixed"]), "cultivar", categorical=["ash_grade"], drop=["id"])
    assert "4 of 178 rows have no 'cultivar'" in caplog.text
    frame = pd.read_csv(tables["mixed"])
    frame = frame[frame.cultivar.notna()]
    assert data.class_names == sorted(WINE_CULTIVARS)
    y = torch.tensor([data.class_names.index(c) for c in frame.cultivar])
    train = frame.iloc[stratified_split(y, 0.1, 0.2, 0)[0].numpy()]
    columns = {c.name: c for c in data.reader.encoder.columns}
    assert list(columns) == ["alcohol", "malic_acid", "magnesium", "flavanoids", "hue", "proline", "colour",
                             "ash_grade", "rich_in_phenols"]  # id dropped, the label apart
    for name in ("alcohol", "malic_acid", "magnesium", "proline"):
        assert columns[name].median == pytest.approx(train[name].median())  # of the training rows only
        assert columns[name].missing_indicator == bool(train[name].isna().any())
    assert columns["alcohol"].missing_indicator and not columns["malic_acid"].missing_indicator
    assert columns["colour"].categories == ("dark", "deep", "light", "pale", None)  # None: missing, seen in training
    assert columns["ash_grade"].categories == ("1", "2", "3", "4")
    assert columns["rich_in_phenols"].categories == ("False", "True")
    x = data.train[0]
    assert x.dtype == torch.float32 and x.shape[1] == len(data.reader.encoder.feature_names()) == data.input_shape[0]
    varying = x.std(0) > 0
    assert torch.allclose(x.mean(0), torch.zeros(x.shape[1]), atol=1e-5)
    assert torch.allclose(x.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-5)
    unseen = [i for i, f in enumerate(data.reader.encoder.feature_names()) if f.endswith("=<unseen>")]
    assert len(unseen) == 3 and (data.normalisation.std[unseen] == 1).all()  # not 1e-8: bounded when unseen
    encoder = json.loads(json.dumps(data.reader.to_json()))
    assert encoder["classes"] == data.class_names and encoder["features"] == data.reader.encoder.feature_names()


def test_tsv_and_parquet_give_the_same_data_as_csv(tables, tmp_path):
    frame = pd.read_csv(tables["mixed"])  # typed: numbers, text, booleans with holes
    frame.to_csv(tmp_path / "mixed.tsv", sep="\t", index=False)
    frame.to_parquet(tmp_path / "mixed.parquet")
    from_csv = load_table(str(tables["mixed"]), "cultivar", categorical=["ash_grade"], drop=["id"])
    for suffix in ("tsv", "parquet"):
        data = load_table(str(tmp_path / f"mixed.{suffix}"), "cultivar", categorical=["ash_grade"], drop=["id"])
        assert data.reader.encoder == from_csv.reader.encoder
        assert all(torch.allclose(a[0], b[0]) and torch.equal(a[1], b[1])
                   for a, b in zip((data.train, data.val, data.test), (from_csv.train, from_csv.val, from_csv.test)))


def test_a_split_column_chooses_the_rows(tmp_path):
    frame = wine().assign(fold=["train"] * 120 + ["val"] * 20 + ["test"] * 38)
    frame.to_csv(tmp_path / "folds.csv", index=False)
    data = load_table(str(tmp_path / "folds.csv"), "cultivar", split_column="fold")
    assert [len(s[1]) for s in (data.train, data.val, data.test)] == [120, 20, 38]
    assert "fold" not in data.reader.encoder.feature_names() and data.input_shape == (13,)
    frame.assign(fold=["train"] * 170 + ["holdout"] * 8).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ConfigError, match="holds holdout; valid values: train, val, test"):
        load_table(str(tmp_path / "bad.csv"), "cultivar", split_column="fold")


def test_class_names_are_the_labels_as_written_sorted_as_numbers_when_they_are(tmp_path):
    for labels, names in ((["10", "2", "1"], ["1", "2", "10"]), (["b", "10", "a"], ["10", "a", "b"])):
        pd.DataFrame({"x": range(30), "y": labels * 10}).to_csv(tmp_path / "t.csv", index=False)
        assert load_table(str(tmp_path / "t.csv"), "y").class_names == names


# ---------------------------------------------------------------------------------------- (d) bad input
def _bad_tables(tables, tmp_path) -> dict[tuple, list[str]]:
    """Command-line arguments of bad tables -> what the one line must say."""
    wine_table = wine()
    wine_table[wine_table.cultivar == "barolo"].to_csv(tmp_path / "one_class.csv", index=False)
    wine_table.assign(harvested=pd.date_range("2020-09-01", periods=len(wine_table)).strftime("%Y-%m-%d")).to_csv(
        tmp_path / "dated.csv", index=False)
    (tmp_path / "wine.xlsx").write_bytes(b"PK")
    return {
        (): ["data.path is not set", "data.path=FILE"],
        (f"data.path={tmp_path / 'nope.csv'}", "data.label=cultivar"): ["nope.csv does not exist", ".parquet"],
        (f"data.path={tables['wine']}", "data.label=variety"):
            ["data.label=variety is not a column", "wine.csv", "its columns: alcohol, malic_acid", "cultivar"],
        (f"data.path={tmp_path / 'one_class.csv'}", "data.label=cultivar"):
            ["one_class.csv", "one class ('barolo')", "at least two classes"],
        (f"data.path={tmp_path / 'dated.csv'}", "data.label=cultivar"):
            ["column 'harvested'", "dated.csv", "dates (e.g. '2020-09-01')", "data.drop=[harvested]"],
        (f"data.path={tmp_path / 'wine.xlsx'}", "data.label=cultivar"):
            [".xlsx is not a table format", ".csv, .tsv, .parquet"],
    }


def test_bad_input_is_one_line_before_any_run_directory(tables, runs, tmp_path):
    """Every bad table as load_table refuses it, in one line; one of them through the command line (exit 2,
    no run directory), and predict's refusal of rows that lack columns. Every case through the command
    line: test_every_bad_table_is_one_line_through_the_command_line (make test-all)."""
    cases = _bad_tables(tables, tmp_path)
    for args, said in cases.items():
        with pytest.raises(ConfigError) as refused:
            load_table(**dict(a.removeprefix("data.").split("=", 1) for a in args))
        assert "\n" not in str(refused.value) and all(s in str(refused.value) for s in said), (args, refused.value)
    wine_table = wine()
    wine_table.drop(columns=["alcohol", "hue"]).to_csv(tmp_path / "rows.csv", index=False)
    args, said = list(cases.items())[2]
    trained, predicted = in_parallel((TRAIN, "data=table", *args, *QUIET, f"hydra.run.dir={tmp_path / 'run'}"),
                                     (PREDICT, f"run={runs['wine']}", f"input={tmp_path / 'rows.csv'}"))
    line = one_line(trained, 2)
    assert all(s in line for s in said), line
    assert not (tmp_path / "run").exists()
    line = one_line(predicted, 1)  # predict's status for bad input
    assert all(s in line for s in ("input=", "rows.csv", "lacks the columns alcohol, hue", "it has: malic_acid")), line


@pytest.mark.slow
def test_every_bad_table_is_one_line_through_the_command_line(tables, tmp_path):
    cases = _bad_tables(tables, tmp_path)
    commands = [(TRAIN, "data=table", *args, *QUIET, f"hydra.run.dir={tmp_path / f'run{i}'}")
                for i, args in enumerate(cases)]
    for i, (d, said) in enumerate(zip(in_parallel(*commands), cases.values())):
        line = one_line(d, 2)
        assert all(s in line for s in said), (commands[i], line)
        assert not (tmp_path / f"run{i}").exists()


def test_other_bad_tables_are_one_line(tmp_path):
    from logitlab.data.table import column_kind

    frame = wine().assign(harvested=pd.date_range("2020-09-01", periods=178))
    frame.to_parquet(tmp_path / "dated.parquet")
    with pytest.raises(ConfigError, match=r"column 'harvested' of data.path=.*dated.parquet holds datetime64"):
        load_table(str(tmp_path / "dated.parquet"), "cultivar")
    data = load_table(str(tmp_path / "dated.parquet"), "cultivar", categorical=["harvested"])  # or as categories
    assert data.input_shape[0] > 13
    with pytest.raises(ConfigError, match=r"column 'mixed' of here holds values of several types \(int, str\)"):
        column_kind(pd.Series([1, "a", None], name="mixed"), "here")
    wine().head(0).to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(ConfigError, match=r"data.label=cultivar of data.path=.*empty.csv: the table holds no labelled"):
        load_table(str(tmp_path / "empty.csv"), "cultivar")
    pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"]}).to_csv(tmp_path / "tiny.csv", index=False)
    with pytest.raises(ConfigError, match=r"tiny.csv: the val split is empty \(data.val_fraction of each class rounds"):
        load_table(str(tmp_path / "tiny.csv"), "y")
    wine().assign(magnesium="unknown").to_csv(tmp_path / "text.csv", index=False)  # text: categories, not an error
    reader = load_table(str(tmp_path / "text.csv"), "cultivar").reader
    wine().assign(hue=["unknown"] + [1.0] * 177).to_csv(tmp_path / "rows.csv", index=False)  # a number is due here
    with pytest.raises(ConfigError, match=r"input=.*rows.csv: column 'hue' holds 'unknown' in row 0 \(counting from"):
        reader.read(tmp_path / "rows.csv")
    assert load_table(str(tmp_path / "text.csv"), "cultivar").input_shape == (12 + 2,)
    for args, said in (({"categorical": ["cultivar"]}, "data.categorical names cultivar, the label column"),
                       ({"drop": ["id", "hue"]}, "data.drop: id is not a column"),
                       ({"val_fraction": 0}, "data.val_fraction=0 must be in (0, 1)")):
        with pytest.raises(ConfigError, match=said.replace("(", r"\(").replace(")", r"\)")):
            load_table(str(tmp_path / "text.csv"), "cultivar", **args)


# ---------------------------------------------------------------------------------------- (e) export
def test_export_writes_the_encoder_that_turns_rows_into_the_models_inputs(tables, runs, tmp_path):
    from logitlab.reporting.scoring import probabilities
    from logitlab.rundirs import load_run

    run = runs["mixed"]
    done = run_cli(f"run={run}", "format=torchscript", module=EXPORT, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    spec = json.loads((run / "model.encoder.json").read_text())
    assert (run / "model.torchscript.pt").is_file() and spec["label"] == "cultivar"
    assert spec["classes"] == sorted(WINE_CULTIVARS) and spec["fitted_on"]["path"] == str(tables["mixed"])
    # a user of the exported file, with the JSON and no logitlab: encode rows by hand, run the model
    rows = pd.read_csv(tables["mixed"], dtype=str).sample(frac=1, axis=1, random_state=0)
    blocks = []
    for column in spec["columns"]:
        values = rows[column["name"]]
        if column["kind"] == "numeric":
            x = pd.to_numeric(values).to_numpy(dtype=float)
            blocks.append(np.where(np.isnan(x), column["median"], x))
            if column["missing_indicator"]:
                blocks.append(np.isnan(x))
        else:
            keys = [None if pd.isna(v) else v for v in values]
            blocks += [np.array([k == c for k in keys]) for c in column["categories"]]
            blocks.append(np.array([k not in column["categories"] for k in keys]))
    encoded = torch.from_numpy(np.stack(blocks, 1).astype(np.float32))
    assert encoded.shape[1] == len(spec["features"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, yet what torchscript means
        exported = torch.jit.load(str(run / "model.torchscript.pt"))
    with torch.no_grad():
        p_exported = exported(encoded)[1]
    model, data, _ = load_run(run)
    p_logitlab = probabilities(model, data.normalisation(data.reader.read(tables["mixed"])[0]))
    assert torch.allclose(p_exported, p_logitlab, atol=1e-5)


# ---------------------------------------------------------------------------------------- (f) the zoo, a sweep
def refusal(model: str, data) -> str | None:
    """What conf/model/<model>.yaml's model says of `data`'s inputs when it refuses them (None: it takes them)."""
    from logitlab.config import build

    try:
        build.model(OmegaConf.load(CONF / "model" / f"{model}.yaml"), data)
    except ConfigError as e:
        return str(e)
    return None


def takes_rows(model: str, data) -> bool:
    return refusal(model, data) is None


def test_the_zoo_models_that_take_rows_train_fused_in_a_sweep_and_the_others_refuse(tables, tmp_path):
    data = load_table(str(tables["mixed"]), "cultivar", categorical=["ash_grade"], drop=["id"])
    features = data.input_shape[0]
    taking = [m for m in MODELS if takes_rows(m, data)]
    refusing = [m for m in MODELS if m not in taking]
    assert {"linear", "mlp"} <= set(taking)
    sweep = (TRAIN, "-m", *table_args(tables, "mixed"), f"model={','.join(taking)}", "optim.lr=1e-3,1e-2",
             "trainer.epochs=1", *QUIET, f"hydra.sweep.dir={tmp_path / 'sweep'}")
    # one refusal through the command line; the others say it in the same words where it is decided
    done = in_parallel(sweep, (TRAIN, *table_args(tables, "mixed"), f"model={refusing[0]}", *QUIET,
                               f"hydra.run.dir={tmp_path / refusing[0]}"))
    assert done[0].returncode == 0, done[0].stderr[-3000:]
    jobs = [json.loads((tmp_path / "sweep" / str(i) / "job.json").read_text()) for i in range(2 * len(taking))]
    assert all(j["status"] == "COMPLETE" and j["fused_with"] == 2 for j in jobs), jobs  # each model's 2 lrs, stacked
    line = one_line(done[1], 2)
    assert not (tmp_path / refusing[0]).exists()
    for model in refusing:
        said = line if model == refusing[0] else f"error: {refusal(model, data)}"
        assert f"model={model} needs" in said and f"got input shape ({features},)" in said, said
