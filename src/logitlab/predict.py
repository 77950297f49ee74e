"""Per-example softmax probabilities from a trained run.

  python -m logitlab.predict run=RUN [split=test] [input=FILE] [out=FILE] [top_k=3] [checkpoint=best] [trust=MODULE]
  (or logitlab-predict)

  run=         a run directory (its checkpoints/best.pt, or checkpoint=last) or a checkpoint file
  split=       train, val or test: the split of the run's own (already normalised) data to predict
               (default test)
  input=       your own examples instead of a split, raw: in the units the dataset came in (0..16 pixel
               counts for the digits, 0..255 for 8-bit images, MNIST-1D's own signal), normalised here
               with the training split's per-channel mean and std (the run's metrics.json lists them)
                 .npy / .csv  one example per row, shaped (N, *input_shape) or flattened
                              (N, prod(input_shape)); a CSV may have a header; values must be finite
                 .png / .jpg  8-bit images (or a directory of them) of the model's height x width,
                              converted to its channels; 255 is the dataset's white (16 for the digits)
               A run on data=table reads .csv / .tsv / .parquet rows by column name, in any order (the
               label column is ignored), encoded as in training; a run on data=folder reads images (or a
               directory of them) of any size, resized and converted as in training.
  out=         .csv (default RUN/predictions_<split or input name>.csv; - for stdout) or .npy (the
               probabilities alone, (N, num_classes) float64)
  top_k=       how many of the most probable classes to list (default 3)
  trust=       MODULE[,MODULE]: modules of your own whose code the run's config may name (its data or
               model `_target_`): trust=mymodels builds mymodels.TwoLayer, trust=mypkg mypkg.models.X.
               Imported from the current directory or PYTHONPATH. By default a checkpoint builds only
               logitlab's own data loaders and models

The CSV has one row per example: input (row number or file name), label (for a split), predicted, the
top-k classes with their probabilities, and prob_<class> for every class, named by the data's class names.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from logitlab import ConfigError
from logitlab.data.splits import SplitData
from logitlab.reporting.scoring import probabilities
from logitlab.rundirs.cli import UsageError, as_int, as_modules, cli
from logitlab.rundirs.load import checkpoint_path, load_run, run_dir_of

OPTIONS = {"run": None, "checkpoint": "best", "split": "test", "input": "", "out": "", "top_k": "3",
           "trust": ""}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def predict(run: str, checkpoint: str, split: str, input: str, out: str, top_k: str,
            trust: str = "") -> None:
    if out and out != "-" and Path(out).suffix not in (".csv", ".npy"):
        raise UsageError(f"out={out} must end in .csv or .npy (or be - for stdout)")
    path = checkpoint_path(run, checkpoint)
    model, data, _ = load_run(path, trust=as_modules("trust", trust))
    k = as_int("top_k", top_k, 1, data.num_classes)
    if input:
        x, names = read_inputs(Path(input), data)
        labels = None
    else:
        x, labels = data.split(split)
        names = [str(i) for i in range(len(x))]
    # float64 keeps probabilities below 1e-38; a split's raw pixels are normalised as in training
    probs = probabilities(model, x, dtype=torch.float64, prepare=data.inputs)

    default_name = f"predictions_{Path(input).stem if input else split}.csv"
    out_path = out or str(run_dir_of(path) / default_name)
    if out_path.endswith(".npy"):
        np.save(out_path, probs.numpy())
    else:
        write_csv(out_path, names, labels, probs, data.class_names, k)
    summary = f"{len(x)} predictions over {data.num_classes} classes"
    if labels is not None:
        summary += f", {split} acc {(probs.argmax(1) == labels).double().mean().item():.4f}"
    print(f"{summary} -> {'stdout' if out_path == '-' else out_path}", file=sys.stderr)


def write_csv(out: str, names: list[str], labels: Tensor | None, probs: Tensor, class_names: list[str],
              top_k: int) -> None:
    top_p, top_i = probs.topk(top_k, dim=1)
    header = ["input"] + (["label"] if labels is not None else []) + ["predicted"]
    header += [f"top{r}{suffix}" for r in range(1, top_k + 1) for suffix in ("", "_prob")]
    header += [f"prob_{name}" for name in class_names]
    f = sys.stdout if out == "-" else open(out, "w", newline="")
    try:
        writer = csv.writer(f)
        writer.writerow(header)
        for n, name in enumerate(names):
            row = [name] + ([class_names[labels[n]]] if labels is not None else []) + [class_names[top_i[n, 0]]]
            for i, p in zip(top_i[n].tolist(), top_p[n].tolist()):
                row += [class_names[i], f"{p:.10g}"]
            writer.writerow(row + [f"{p:.10g}" for p in probs[n].tolist()])
    finally:
        if f is not sys.stdout:
            f.close()


# ---------------------------------------------------------------------------------------- reading inputs
def read_inputs(path: Path, data: SplitData) -> tuple[Tensor, list[str]]:
    """(x, one name per example) from the data source's own reader (a table's rows, a folder's images),
    else from an array file, an image file or a directory of images."""
    if data.reader is not None and data.reader.can_read(path):
        raw, names = data.reader.read(path)
        return data.normalisation(raw), names
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"input={path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        return read_images(files, data), [p.name for p in files]
    if not path.is_file():
        raise ConfigError(f"input={path} does not exist")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_images([path], data), [path.name]
    if path.suffix.lower() not in (".npy", ".csv"):
        raise ConfigError(f"input={path} is not a .npy, .csv or image file ({', '.join(IMAGE_SUFFIXES)})")
    raw = fit_shape(read_array(path), data.input_shape, path)
    finite = torch.isfinite(raw).flatten(1)  # (N, prod(input_shape))
    if not finite.all():  # a NaN would come out as NaN probabilities, or as a confident wrong class
        row = int((~finite.all(1)).nonzero()[0])
        value = raw[row].flatten()[~finite[row]][0].item()
        raise ConfigError(f"input={path}: row {row} (counting from 0) holds {value}; inputs must be finite numbers")
    return data.normalisation(raw), [str(i) for i in range(len(raw))]


def read_array(path: Path) -> np.ndarray:
    try:
        if path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)  # an object array would unpickle: refuse it
        else:
            array = _read_csv(path)
    except (ValueError, OSError) as e:
        raise ConfigError(f"input={path} is not a numeric array ({str(e).splitlines()[0]})") from None
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise ConfigError(f"input={path} holds {array.dtype} values; it must hold real numbers")
    return array


def _read_csv(path: Path) -> np.ndarray:
    try:
        return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float32)
    except ValueError:  # perhaps a header line
        return np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float32, skiprows=1)


def fit_shape(array: np.ndarray, input_shape: tuple[int, ...], path: Path) -> Tensor:
    """(N, *input_shape) from (N, *input_shape), a single (*input_shape) example or flat (N, prod) rows."""
    size = int(np.prod(input_shape))
    if array.shape == input_shape or array.shape == (size,):
        array = array[None]
    if array.ndim >= 2 and array.shape[1:] in (input_shape, (size,)) and len(array):
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(-1, *input_shape)
    shape = "x".join(map(str, input_shape))
    raise ConfigError(f"input={path} has shape {array.shape}; the model takes (N, {', '.join(map(str, input_shape))}) "
                      f"or flat rows of {size} values (N, {size}) (one {shape} example per row)")


def read_images(files: list[Path], data: SplitData) -> Tensor:
    """Image files as (N, C, H, W) model inputs: 8-bit pixels in the dataset's units, then normalised."""
    from PIL import Image, UnidentifiedImageError

    shape = data.input_shape
    if len(shape) != 3 or shape[0] not in (1, 3) or data.normalisation.pixel_max is None:
        raise ConfigError(f"image inputs need a model over 1- or 3-channel images; this run's inputs have "
                          f"shape {shape}; give a .npy or .csv input")
    channels, height, width = shape
    pixels = []
    for path in files:
        try:
            with Image.open(path) as img:
                img = img.convert("L" if channels == 1 else "RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise ConfigError(f"input={path} is not a readable image ({type(e).__name__})") from None
        if img.size != (width, height):
            raise ConfigError(f"input={path} is {img.width}x{img.height} pixels; the model takes "
                              f"{width}x{height} (width x height); resize it first")
        pixels.append(np.asarray(img, dtype=np.float32).reshape(height, width, channels))
    pixels = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2)  # (N, C, H, W) in 0..255
    raw = pixels * (data.normalisation.pixel_max / 255)  # exactly the pixels for 8-bit data; 0..16 for the digits
    return data.normalisation(raw)


def main(argv: list[str] | None = None) -> None:
    cli(predict, OPTIONS, __doc__, argv)


if __name__ == "__main__":
    main()
