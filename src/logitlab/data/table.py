"""Your own table (CSV, TSV or Parquet, read by pandas) as a data source: `data=table data.path=FILE
data.label=COLUMN`. Each row is an example; its features are the other columns (less data.drop), each
column's kind decided from all its values, encoded with statistics of the training split alone:

  numeric column      the value; a missing one takes the training median, and a `<col>_missing` 0/1 feature
                      follows the column when the training split has missing values in it
  categorical column  one-hot over the values seen in training (a missing value is a category of its own
                      when training has one), then one slot for any other value; text and boolean columns,
                      and those named in data.categorical, are categorical (at most 1000 categories)
  any other           (dates, mixed types): refused in one line, naming data.drop and data.categorical

A CSV or TSV is read as text, so a category is the text in the file ("03" stays "03"), and a column whose
values are all numbers is numeric; a value is missing where its cell is empty or holds one of pandas'
spellings of missing (NA, N/A, n/a, null, NaN, ...). The features are standardised with the training
split's mean and std like every source's inputs (a feature constant there keeps std 1). `TableReader`
encodes the rows of another file the same way for predict, and its JSON (written by export beside the
model) says how, for users of an exported model.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from logitlab import ConfigError
from logitlab.data.splits import Normalisation, SplitData, stratified_split

# Info: the command-line check builds the data while Hydra's own logging prints it; a later rebuild (predict,
# export) stays quiet
log = logging.getLogger(__name__)

SEPARATORS = {".csv": ",", ".tsv": "\t", ".parquet": None}  # None: not a text format
SPLITS = ("train", "val", "test")
UNSEEN = "<unseen>"  # the feature name of a categorical column's slot for values not seen in training
MANY_CATEGORIES = 50  # past this, and more categories than half the training rows: probably an identifier
MAX_CATEGORIES = 1000  # past this a column's one-hot features are refused (the features are dense)


# ---------------------------------------------------------------------------------------- reading files
def read_frame(path: Path, key: str) -> pd.DataFrame:
    """The table at `path`; text formats as text (every column's kind is decided from its values, and a
    category is the text in the file). Unreadable input: ConfigError naming `key` (data.path, input)."""
    suffix = path.suffix.lower()
    if suffix not in SEPARATORS:
        raise ConfigError(f"{key}={path}: {suffix or 'a file without extension'} is not a table format "
                          f"logitlab reads; valid: {', '.join(SEPARATORS)}")
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        where = "" if path.is_absolute() else f" (relative to the current directory, {os.getcwd()})"
        raise ConfigError(f"{key}={path} {what}{where}; give a .csv, .tsv or .parquet file")
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path, engine="pyarrow")
        return pd.read_csv(path, sep=SEPARATORS[suffix], dtype=str)
    except (ValueError, OSError) as e:  # pandas' ParserError and pyarrow's ArrowInvalid are ValueErrors
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{key}={path} is not a readable {suffix[1:]} table ({reason})") from None


def category_keys(column: pd.Series) -> np.ndarray:
    """Each value as the text a category is named by (None where missing). Typed values (Parquet) as
    str(value), a whole float as an integer (3.0 -> "3", as a CSV of integers reads)."""
    def key(value):
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return None
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return str(int(value))
        return str(value)
    return np.array([key(v) for v in column.tolist()], dtype=object)


def as_numbers(column: pd.Series, where: str) -> np.ndarray:
    """(N,) float64, NaN where missing; text that is not a number, or an infinite value: ConfigError."""
    numbers = pd.to_numeric(column.astype(object), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    bad = (np.isnan(numbers) & column.notna().to_numpy()) | np.isinf(numbers)
    if bad.any():
        first = int(bad.nonzero()[0][0])
        raise ConfigError(f"{where}: column {column.name!r} holds {column.iloc[first]!r} in row "
                          f"{column.index[first]} (counting from 0, after the header); it must hold finite numbers, "
                          f"or be empty where missing")
    return numbers


# ---------------------------------------------------------------------------------------- encoding
@dataclass(frozen=True)
class NumericColumn:
    name: str
    median: float  # of the training split; fills a missing value
    missing_indicator: bool  # the training split has missing values here: a `<name>_missing` feature follows

    def feature_names(self) -> list[str]:
        return [self.name] + ([f"{self.name}_missing"] if self.missing_indicator else [])

    def encode(self, column: pd.Series, where: str) -> np.ndarray:
        numbers = as_numbers(column, where)
        missing = np.isnan(numbers)
        filled = np.where(missing, self.median, numbers)
        return np.stack([filled, missing] if self.missing_indicator else [filled], axis=1)  # (N, 1 or 2)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": "numeric", "median": self.median,
                "missing_indicator": self.missing_indicator}


@dataclass(frozen=True)
class CategoricalColumn:
    name: str
    categories: tuple[str | None, ...]  # seen in training, sorted; None: missing values (a category of their own)

    def feature_names(self) -> list[str]:
        return [f"{self.name}={'<missing>' if c is None else c}" for c in self.categories] + [f"{self.name}={UNSEEN}"]

    def encode(self, column: pd.Series, where: str) -> np.ndarray:
        slot = {c: i for i, c in enumerate(self.categories)}
        rows = [slot.get(k, len(self.categories)) for k in category_keys(column)]  # unseen: the last slot
        one_hot = np.zeros((len(rows), len(self.categories) + 1), np.float32)
        one_hot[np.arange(len(rows)), rows] = 1
        return one_hot  # (N, categories + 1)

    def to_json(self) -> dict:
        return {"name": self.name, "kind": "categorical", "categories": list(self.categories), "unseen_slot": True}


def column_kind(column: pd.Series, source: str) -> str:
    """'numeric' or 'categorical', from the column's type or (text) its values; any other: ConfigError."""
    if pd.api.types.is_bool_dtype(column) or isinstance(column.dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_complex_dtype(column):
        return "numeric"
    values = column.dropna()
    kinds = {type(v) for v in values.tolist()}
    if kinds <= {str}:
        if len(values) and pd.to_numeric(values.astype(object), errors="coerce").notna().all():
            return "numeric"
        if not len(values) or not values.str.fullmatch(r"\d{4}-\d{2}-\d{2}([ T].*)?").all():
            return "categorical"
        what = f"dates (e.g. {values.iloc[0]!r})"
    elif kinds <= {bool}:
        return "categorical"
    elif len(kinds) > 1:
        what = f"values of several types ({', '.join(sorted(k.__name__ for k in kinds))})"
    else:
        what = f"{column.dtype} values"
    raise ConfigError(f"column {column.name!r} of {source} holds {what}, which are neither numbers nor categories; "
                      f"leave it out with data.drop=[{column.name}], one-hot its values with "
                      f"data.categorical=[{column.name}], or turn it into numbers first (e.g. days since a date)")


@dataclass(frozen=True)
class TableEncoder:
    """The fitted encoding: columns in feature order, each with what it learned from the training split."""

    label: str
    columns: tuple[NumericColumn | CategoricalColumn, ...]

    @classmethod
    def fit(cls, features: pd.DataFrame, train_rows: np.ndarray, label: str, categorical: Sequence[str],
            source: str) -> TableEncoder:
        """Each column's kind from all its values; its median, missing indicator or categories from the
        training rows (positions in `features`) alone."""
        columns = []
        for name in features.columns:
            train = features[name].iloc[train_rows]
            if name in categorical or column_kind(features[name], source) == "categorical":
                seen = sorted(set(category_keys(train).tolist()), key=lambda c: (c is None, c or ""))
                if len(seen) > MAX_CATEGORIES:  # dense one-hot: N x categories floats
                    raise ConfigError(f"column {name!r} of {source} has {len(seen)} distinct values in the training "
                                      f"split, more than the {MAX_CATEGORIES} one-hot categories a column may have; "
                                      f"leave it out with data.drop=[{name}], or turn it into numbers first")
                if len(seen) > MANY_CATEGORIES and len(seen) > len(train) / 2:
                    log.info(f"column {name!r} of {source} has {len(seen)} categories in {len(train)} training "
                                f"rows; if it identifies rows, leave it out with data.drop=[{name}]")
                columns.append(CategoricalColumn(name, tuple(seen)))
                continue
            numbers = as_numbers(train, source)
            if np.isnan(numbers).all():
                raise ConfigError(f"column {name!r} of {source} has no values in the training split; leave it "
                                  f"out with data.drop=[{name}]")
            columns.append(NumericColumn(name, float(np.nanmedian(numbers)), bool(np.isnan(numbers).any())))
        return cls(label, tuple(columns))

    def feature_names(self) -> list[str]:
        return [f for c in self.columns for f in c.feature_names()]

    def encode(self, frame: pd.DataFrame, where: str) -> np.ndarray:
        """(N, features) float32 from the named columns of `frame`, in any order; others are ignored."""
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            raise ConfigError(f"{where} lacks the column{'s' * (len(missing) > 1)} {', '.join(missing)} the model's "
                              f"features are made from; it has: {', '.join(map(str, frame.columns))}")
        return np.concatenate([c.encode(frame[c.name], where) for c in self.columns], axis=1, dtype=np.float32)

    def to_json(self) -> dict:
        return {"label": self.label, "features": self.feature_names(),
                "columns": [c.to_json() for c in self.columns]}


@dataclass(frozen=True)
class TableReader:
    """predict's reading of a table's rows (RawReader): columns by name in any order, the label and other
    columns ignored, encoded as in training; the features before standardisation."""

    encoder: TableEncoder
    class_names: tuple[str, ...]
    table: str  # the absolute path and sha256 of the table it was fitted on: what a user can check
    sha256: str

    def can_read(self, path: Path) -> bool:
        return Path(path).suffix.lower() in SEPARATORS

    def read(self, path: Path) -> tuple[torch.Tensor, list[str]]:
        frame = read_frame(Path(path), "input")
        if not len(frame):
            raise ConfigError(f"input={path} holds no rows")
        x = self.encoder.encode(frame, f"input={path}")
        return torch.from_numpy(x), [str(i) for i in range(len(x))]

    def to_json(self) -> dict:
        how = ("The model's input is one row of `features`, in this order, made from a raw row's columns by name: "
               "a numeric column gives its value (its `median` where missing), then 1 if it was missing else 0 "
               "when `missing_indicator`; a categorical column gives a one-hot over `categories` (null: a missing "
               "value), then a slot that is 1 for any value not among them. The file standardises the features "
               "itself; its output classes are `classes`, in order.")
        return {"format": "logitlab table encoder", "how": how, **self.encoder.to_json(),
                "classes": list(self.class_names), "fitted_on": {"path": self.table, "sha256": self.sha256}}


# ---------------------------------------------------------------------------------------- the source
def load_table(path: str | None = None, label: str | None = None, categorical: Sequence[str] = (),
               drop: Sequence[str] = (), split_column: str | None = None, val_fraction: float = 0.1,
               test_fraction: float = 0.2, split_seed: int = 0) -> SplitData:
    """The table at `path`, `label` its class column: (N, features) splits, standardised with train statistics."""
    if path is None:
        raise ConfigError("data.path is not set; give data.path=FILE, a .csv, .tsv or .parquet table")
    if label is None:
        raise ConfigError(f"data.label is not set; give data.label=COLUMN, the column of {path} that holds the classes")
    source = f"data.path={path}"
    frame = read_frame(Path(path), "data.path")
    _check_columns(frame, label, categorical, drop, split_column, source)
    labels = category_keys(frame[label])
    unlabelled = np.array([k is None for k in labels.tolist()], dtype=bool)
    if unlabelled.any():
        log.info(f"{source}: {int(unlabelled.sum())} of {len(frame)} rows have no {label!r} and are left out")
        frame, labels = frame[~unlabelled], labels[~unlabelled]  # keeping the file's row numbers, for messages
    class_names = _class_names(labels, label, source)
    index = {name: i for i, name in enumerate(class_names)}
    y = torch.tensor([index[k] for k in labels.tolist()], dtype=torch.long)
    parts = _split(frame, y, split_column, val_fraction, test_fraction, split_seed, source)
    _check_not_empty(parts, split_column, len(y), source)

    features = frame.drop(columns=[label, *drop, *([split_column] if split_column else [])])
    encoder = TableEncoder.fit(features, parts[0].numpy(), label, categorical, source)
    x = torch.from_numpy(encoder.encode(features, source))  # (N, features), raw
    norm = _standardisation(x[parts[0]])
    train, val, test = ((norm(x[idx]), y[idx]) for idx in parts)
    sha256 = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return SplitData(Path(path).name, train, val, test, class_names, norm,
                     reader=TableReader(encoder, tuple(class_names), str(Path(path).absolute()), sha256))


def _check_columns(frame: pd.DataFrame, label: str, categorical: Sequence[str], drop: Sequence[str],
                   split_column: str | None, source: str) -> None:
    columns = ", ".join(map(str, frame.columns))
    named = [("data.label", [label]), ("data.categorical", categorical), ("data.drop", drop),
             ("data.split_column", [split_column] if split_column else [])]
    for key, names in named:
        unknown = [str(n) for n in names if n not in frame.columns]
        if unknown:
            given = f"{key}={unknown[0]} is" if key in ("data.label", "data.split_column") else \
                f"{key}: {', '.join(unknown)} {'are' if len(unknown) > 1 else 'is'}"
            raise ConfigError(f"{given} not {'columns' if len(unknown) > 1 else 'a column'} of {source}; "
                              f"its columns: {columns}")
    for key, names in named[1:]:
        if label in names:
            raise ConfigError(f"{key} names {label}, the label column (data.label); it is never a feature")
    both = sorted(set(categorical) & set(drop))
    if both:
        raise ConfigError(f"data.categorical and data.drop both name {', '.join(both)}; a column is a feature or "
                          f"left out")
    if frame.shape[1] - 1 - len(set(drop)) - bool(split_column) < 1:
        raise ConfigError(f"{source} has no feature columns left beside data.label={label} "
                          f"(data.drop and data.split_column take the others); its columns: {columns}")


def _class_names(labels: np.ndarray, label: str, source: str) -> list[str]:
    """The label values, sorted (as numbers when every one is a number: 2 before 10), kept as text."""
    names = sorted(set(labels.tolist()))
    if len(names) < 2:
        held = f"one class ({names[0]!r})" if names else "no labelled rows"
        raise ConfigError(f"data.label={label} of {source}: the table holds {held}; a classifier needs rows of at "
                          f"least two classes")
    try:
        numbers = [float(n) for n in names]
    except ValueError:  # not all numbers: as text
        return names
    return sorted(names, key=float) if all(map(math.isfinite, numbers)) else names


def _split(frame: pd.DataFrame, y: torch.Tensor, split_column: str | None, val_fraction: float,
           test_fraction: float, split_seed: int, source: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, val, test) row indices: the table's own split column, else the seeded stratified split."""
    if split_column is None:
        return stratified_split(y, val_fraction, test_fraction, split_seed)
    given = category_keys(frame[split_column])
    other = sorted({"empty cells" if v is None else v for v in given.tolist() if v not in SPLITS})
    if other:
        raise ConfigError(f"data.split_column={split_column} of {source} holds {', '.join(other)}; valid values: "
                          f"{', '.join(SPLITS)}")
    return tuple(torch.from_numpy((given == s).nonzero()[0]) for s in SPLITS)  # type: ignore[return-value]


def _check_not_empty(parts: tuple[torch.Tensor, ...], split_column: str | None, rows: int, source: str) -> None:
    """Every split needs rows: the model trains on train, val picks best.pt, test scores it."""
    for name, idx in zip(SPLITS, parts):
        if len(idx):
            continue
        if split_column:
            why = f"data.split_column={split_column} marks no row {name}"
        elif name == "train":
            why = "data.val_fraction and data.test_fraction leave no row of any class for training"
        else:
            why = f"data.{name}_fraction of each class rounds to 0 rows"
        raise ConfigError(f"{source}: the {name} split is empty ({why}; {rows} labelled rows); train, val and "
                          f"test each need rows: the model trains on train, val picks best.pt, test scores it")


def _standardisation(train_x: torch.Tensor) -> Normalisation:
    """Per-feature mean and std of the training split. A feature constant there (the unseen slot, a category
    every row shares) keeps std 1: another value later moves it by its difference, not by 1e8 times it."""
    norm = Normalisation.of(train_x)
    constant = (train_x == train_x[:1]).all(0)
    return Normalisation(torch.where(constant, train_x[0], norm.mean), torch.where(constant, 1.0, norm.std))
