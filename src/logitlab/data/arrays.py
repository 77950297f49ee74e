"""Your own arrays in an .npz file (`data=arrays data.path=FILE.npz`), and the step data=folder ends with
too: `split_data`, which carves the splits a source lacks and normalises all of them.

The file holds `x` and `y`, and may hold `x_val` / `y_val`, `x_test` / `y_test` and `class_names`:

  x            (N, features), (N, C, L) sequences or (N, C, H, W) images; any real numbers, finite
  y            one label per example, shaped (N,): integers or strings. Without class_names the classes
               are the sorted distinct labels of all the splits (their names: the labels as text); with
               class_names, y holds integers 0..K-1 indexing them
  x_val, ...   the file's own splits come first; a missing validation or test split is carved from x / y,
               per class and seeded by split_seed (`stratified_split`), by val_fraction and test_fraction

Inputs are normalised per channel with the training split's statistics (per feature for (N, features)).
8-bit images ((N, C, H, W) uint8) rest as uint8, are normalised per batch, and keep 255 as their white, so
predict also reads image files for them; other inputs rest normalised, as float32.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from logitlab import ConfigError
from logitlab.data.splits import Normalisation, RawReader, SplitData, at_rest, check_fraction, stratified_split

KEYS = ("x", "y", "x_val", "y_val", "x_test", "y_test", "class_names")
SPLITS = {"train": "", "val": "_val", "test": "_test"}  # each split and the suffix of its keys


def load_arrays(path: str | None = None, val_fraction: float = 0.1, test_fraction: float = 0.2,
                split_seed: int = 0) -> SplitData:
    if path is None:
        raise ConfigError("data=arrays needs data.path=FILE.npz, a file with arrays x and y (np.savez(FILE, x=x, y=y))")
    where = f"data.path={path}"
    arrays = _read_npz(Path(path).expanduser(), where)
    xs = {split: _inputs(where, arrays, f"x{suffix}") for split, suffix in SPLITS.items()}
    ys = {split: _labels(where, arrays, f"y{suffix}") for split, suffix in SPLITS.items()}
    _check_pairs(where, xs, ys)
    labels, class_names = _classes(where, arrays.get("class_names"), ys)
    # 8-bit images keep 255 as their white (predict then reads image files for them too) and rest as uint8
    images = xs["train"].ndim == 4 and all(x.dtype == np.uint8 for x in xs.values() if x is not None)
    as_stored = lambda x: torch.from_numpy(x if images else x.astype(np.float32))  # noqa: E731
    splits = {split: None if xs[split] is None else (as_stored(xs[split]), labels[split]) for split in SPLITS}
    pixel_max = 255 if images else None
    return split_data(Path(path).stem, splits["train"], splits["val"], splits["test"], class_names,
                      val_fraction, test_fraction, split_seed, pixel_max)


def _check_pairs(where: str, xs: dict, ys: dict) -> None:
    for split, suffix in SPLITS.items():
        x, y = xs[split], ys[split]
        if (x is None) != (y is None):
            have, lack = (f"x{suffix}", f"y{suffix}") if y is None else (f"y{suffix}", f"x{suffix}")
            raise ConfigError(f"{where} has {have} but no {lack}; give both or neither")
        if x is not None and len(x) != len(y):
            raise ConfigError(f"{where}: x{suffix} has {len(x)} examples and y{suffix} {len(y)} labels; "
                              f"they must match, one label per example")
        if x is not None and x.shape[1:] != xs["train"].shape[1:]:
            raise ConfigError(f"{where}: x{suffix} has examples of shape {x.shape[1:]}, x of shape "
                              f"{xs['train'].shape[1:]}; every split's examples must have the same shape")


def _read_npz(path: Path, where: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ConfigError(f"{where} does not exist" if not path.exists() else
                          f"{where} is not a file; data=arrays reads an .npz file")
    try:
        # allow_pickle=False: an object array would unpickle, which can run code; it is refused below
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ConfigError(f"{where} holds one array, not an .npz archive; save one with np.savez(path, x=x, y=y)")
        with loaded:
            return _arrays_of(loaded, where)
    except ConfigError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # not an archive, truncated ...
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{where} is not a readable .npz file ({reason})") from None


def _arrays_of(npz, where: str) -> dict[str, np.ndarray]:
    keys = list(npz.keys())
    if "x" not in keys or "y" not in keys:
        raise ConfigError(f"{where} has no {'x' if 'x' not in keys else 'y'} array; it holds "
                          f"{', '.join(keys) or 'no arrays'}; expected {', '.join(KEYS)} (x and y required)")
    unknown = [k for k in keys if k not in KEYS]
    if unknown:  # a misspelt split (x_valid) would otherwise be silently left out
        raise ConfigError(f"{where} holds {', '.join(unknown)}, which data=arrays does not read; "
                          f"valid keys: {', '.join(KEYS)}")
    arrays = {}
    for key in keys:
        try:
            arrays[key] = npz[key]
        except ValueError as e:
            if "allow_pickle" not in str(e):
                raise
            raise ConfigError(f"{where}: {key} is an array of Python objects, which is not loaded (unpickling "
                              f"can run code); save numbers or strings ({key}.astype(np.float32) or "
                              f".astype(str))") from None
    return arrays


def _inputs(where: str, arrays: dict, key: str) -> np.ndarray | None:
    x = arrays.get(key)
    if x is None:
        return None
    if x.dtype == bool:
        x = x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ConfigError(f"{where}: {key} holds {x.dtype} values; inputs must be real numbers")
    if x.ndim not in (2, 3, 4) or len(x) == 0:
        raise ConfigError(f"{where}: {key} has shape {x.shape}; it must be (N, features), (N, C, L) or "
                          f"(N, C, H, W) with N > 0")
    finite = np.isfinite(x.reshape(len(x), -1)).all(1)
    if not finite.all():  # a NaN would spread through the normalisation's mean to every example
        n = int((~finite).argmax())
        value = x[n][~np.isfinite(x[n])].flat[0]
        raise ConfigError(f"{where}: {key}[{n}] holds {value}; inputs must be finite numbers")
    return x


def _labels(where: str, arrays: dict, key: str) -> np.ndarray | None:
    y = arrays.get(key)
    if y is None:
        return None
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ConfigError(f"{where}: {key} has shape {y.shape}; labels are one per example, shaped (N,)"
                          + (f" (one-hot rows? {key}.argmax(1))" if y.ndim == 2 else ""))
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype.kind in "bUS"):
        raise ConfigError(f"{where}: {key} holds {y.dtype} values; labels must be integers or strings "
                          f"({key}.astype(int) for whole numbers stored as floats)")
    return y


def _classes(where: str, names: np.ndarray | None, ys: dict) -> tuple[dict[str, Tensor], list[str]]:
    """Labels as class indices, per split, and the class names."""
    if names is not None:
        if names.ndim != 1 or len(names) < 2:
            raise ConfigError(f"{where}: class_names has shape {names.shape}; it must list two or more names")
        class_names = [str(n) for n in names.tolist()]
        for split, y in ys.items():
            if y is not None and not (np.issubdtype(y.dtype, np.integer) and 0 <= y.min() and y.max() < len(names)):
                key = f"y{SPLITS[split]}"
                raise ConfigError(f"{where}: with class_names ({len(names)} names), {key} must hold integers 0.."
                                  f"{len(names) - 1}; it holds {y.dtype} values from {y.min()} to {y.max()}")
        return {s: None if y is None else torch.from_numpy(y.astype(np.int64)) for s, y in ys.items()}, class_names
    given = [y for y in ys.values() if y is not None]
    if len({y.dtype.kind in "US" for y in given}) > 1:  # numpy would compare them as text
        raise ConfigError(f"{where}: the splits' labels mix numbers and strings; give all of them as one or the other")
    values = np.unique(np.concatenate(given))
    if len(values) < 2:
        raise ConfigError(f"{where}: y holds one class ({values.tolist()[0]!r}); classification needs two or more")
    labels = {s: None if y is None else torch.from_numpy(np.searchsorted(values, y).astype(np.int64))
              for s, y in ys.items()}
    return labels, [str(v) for v in values.tolist()]


def split_data(name: str, train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor] | None,
               test: tuple[Tensor, Tensor] | None, class_names: list[str], val_fraction: float,
               test_fraction: float, split_seed: int, pixel_max: float | None = None,
               reader: RawReader | None = None) -> SplitData:
    """The SplitData of a source's own splits: a missing validation or test split (None) is carved from
    `train` per class by `split_seed`; every split is normalised with the training split's statistics.
    Inputs may be any dtype: 8-bit images (N, C, H, W) stay uint8, the rest become normalised float32."""
    x, y = train
    keep, carved_val, carved_test = carve(y, val is not None, test is not None, val_fraction, test_fraction,
                                          split_seed)
    if carved_val is not None:
        val = (x[carved_val], y[carved_val])
    if carved_test is not None:
        test = (x[carved_test], y[carved_test])
    if keep is not None:
        x, y = x[keep], y[keep]
    larger = {"validation": " or a larger data.val_fraction", "test": " or a larger data.test_fraction"}
    for split, inputs in (("training", x), ("validation", val[0]), ("test", test[0])):
        if len(inputs) == 0:
            raise ConfigError(f"data {name}: the {split} split is empty; give more examples{larger.get(split, '')}")
    norm = Normalisation.of(x if x.dtype == torch.uint8 else x.float(), pixel_max)
    return SplitData(name, (at_rest(x, norm), y), (at_rest(val[0], norm), val[1]),
                     (at_rest(test[0], norm), test[1]), list(class_names), norm, reader)


def carve(labels: Tensor, own_val: bool, own_test: bool, val_fraction: float, test_fraction: float,
          split_seed: int) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """Indices into the training split's `labels`: (kept for training, carved for validation, carved for
    test), None where nothing is carved (the source has that split of its own)."""
    check_fractions(val_fraction, test_fraction, own_val=own_val, own_test=own_test)
    if not own_val and not own_test:
        return stratified_split(labels, val_fraction, test_fraction, split_seed)
    if own_val and own_test:
        return None, None, None
    keep, cut = _cut(labels, test_fraction if own_val else val_fraction, split_seed)
    return (keep, None, cut) if own_val else (keep, cut, None)


def check_fractions(val_fraction: float, test_fraction: float, own_val: bool, own_test: bool) -> None:
    """The fraction of a split to carve must be in (0, 1); that of a split the source has of its own is
    not used, so 0 is allowed for it."""
    check_fraction("val_fraction", val_fraction, low_open=not own_val)
    check_fraction("test_fraction", test_fraction, low_open=not own_test)


def _cut(labels: Tensor, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(kept, cut) indices into `labels`: `fraction` of each class cut out, shuffled by `seed`, rounded and
    at least one of a class that has two or more. stratified_split's rule, for a source that lacks one
    split only (stratified_split always cuts two)."""
    generator = torch.Generator().manual_seed(seed)
    kept, cut = [], []
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n = max(round(fraction * len(members)), int(len(members) >= 2))
        kept.append(members[n:])
        cut.append(members[:n])
    return torch.cat(kept).sort().values, torch.cat(cut).sort().values
