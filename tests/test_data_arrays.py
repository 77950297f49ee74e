"""data=arrays: a user's own arrays in an .npz file, through the command line, on scikit-learn's 8x8 digits
(the file it ships) saved in each shape data=arrays takes: (N, 64) features, (N, 8, 8) sequences (8 channels
of 8 steps) and (N, 1, 8, 8) 8-bit images.

Every zoo model that builds on a shape trains an epoch on it, and the others refuse in one line; a file with
its own validation and test splits and class names trains, predicts by those names and exports to
TorchScript; missing splits are carved per class; labels of any kind are mapped to classes; bad input is one
line before any run directory.

The subprocesses of a test run side by side (one more than the cores, OMP_NUM_THREADS=1 each)."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import CONF, SINGLE_THREADED, in_parallel, one_line, run_cli, split_sizes, succeeded
from logitlab import ConfigError
from logitlab.config import build
from logitlab.data import load_digits
from logitlab.data.arrays import load_arrays
from logitlab.data.splits import stratified_split

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
ENV = SINGLE_THREADED
QUIET = ("trainer.progress=false", "trainer.figures=false")
SHAPES = {  # how each file holds a digit: the 8x8 counts (0..16) as ...
    "features": lambda x: x.reshape(len(x), 64).astype(np.float32),  # (N, 64)
    "sequences": lambda x: x.astype(np.float32),  # (N, 8, 8): 8 channels of 8 steps
    "images": lambda x: (x[:, None] * 255 / 16).round().astype(np.uint8),  # (N, 1, 8, 8) 8-bit pixels
}


@pytest.fixture(scope="module")
def digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """data=digits' own splits in the file's units: {split: ((N, 8, 8) counts 0..16, (N,) labels)}."""
    data = load_digits()
    return {split: (data.raw(x).round().clamp(0, 16)[:, 0].numpy(), y.numpy())
            for split, (x, y) in ((s, data.split(s)) for s in ("train", "val", "test"))}


def refusal(model: str, input_shape: tuple[int, ...]) -> str | None:
    """What conf/model/<model>.yaml's model says of inputs of `input_shape` when it refuses them (None: it
    builds on them; ask the model itself)."""
    try:
        build.instantiate(OmegaConf.load(CONF / "model" / f"{model}.yaml"), "model", input_shape=input_shape,
                          num_classes=10)
        return None
    except ConfigError as e:
        return str(e)


def builds(model: str, input_shape: tuple[int, ...]) -> bool:
    return refusal(model, input_shape) is None


# ---------------------------------------------------------------------------------------- through the command line
@pytest.mark.parametrize("shapes", [("features", "images"), pytest.param(("sequences",), marks=pytest.mark.slow)],
                         ids=["features-images", "sequences"])
def test_every_zoo_model_that_takes_a_shape_trains_on_it_and_the_others_refuse_in_one_line(digits, tmp_path, shapes):
    """(N, 64) features, which only linear and mlp take, and 8-bit (N, 1, 8, 8) images, which rest as uint8;
    (N, 8, 8) sequences of 8 channels in make test-all."""
    x = np.concatenate([digits[s][0] for s in digits])
    y = np.concatenate([digits[s][1] for s in digits])
    commands, refusals = [], []
    for shape in shapes:
        make = SHAPES[shape]
        np.savez(tmp_path / f"{shape}.npz", x=make(x), y=y)
        data = ("data=arrays", f"data.path={tmp_path / shape}.npz", *QUIET, "trainer.epochs=1")
        input_shape = make(x[:1]).shape[1:]
        takes = [m for m in MODELS if builds(m, input_shape)]
        assert {"linear", "mlp"} <= set(takes) and (shape == "features" or takes == MODELS), (shape, takes)
        commands.append(("-m", f"model={','.join(takes)}", *data, f"hydra.sweep.dir={tmp_path / shape}"))
        refusals += [(model, (f"model={model}", *data, f"hydra.run.dir={tmp_path / model}"), input_shape)
                     for model in MODELS if model not in takes]
    # one refusal through the command line; the others say it in the same words where it is decided
    done = in_parallel(*commands, *(command for _, command, _ in refusals[:1]))
    for command, result in zip(commands, done):
        succeeded(result)
        sweep = Path(command[-1].split("=", 1)[1])
        jobs = list(csv.DictReader((sweep / "summary.csv").open()))
        assert len(jobs) == command[1].count(",") + 1 and {j["status"] for j in jobs} == {"COMPLETE"}, jobs
    for i, (model, command, input_shape) in enumerate(refusals):
        # the model's own words, e.g. "model=cnn needs (C, L) or (C, H, W) inputs, ..."
        line = one_line(done[len(commands)]) if i == 0 else f"error: {refusal(model, input_shape)}"
        assert line.startswith("error: ") and f"model={model}" in line and "(64,)" in line, line
        assert not (tmp_path / model).exists()


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_a_file_with_its_own_splits_and_class_names_trains_predicts_by_name_and_exports(digits, tmp_path):
    images = SHAPES["images"]
    np.savez(tmp_path / "digits.npz", x=images(digits["train"][0]), y=digits["train"][1],
             x_val=images(digits["val"][0]), y_val=digits["val"][1],
             x_test=images(digits["test"][0]), y_test=digits["test"][1], class_names=np.array(WORDS))
    run_dir = tmp_path / "run"
    succeeded(run_cli("data=arrays", f"data.path={tmp_path / 'digits.npz'}", "model=cnn", "trainer.epochs=3", *QUIET,
                      f"hydra.run.dir={run_dir}", env=ENV))
    assert split_sizes(run_dir) == (1258, 180, 359)  # the file's own, not carved
    assert json.loads((run_dir / "metrics.json").read_text())["test/acc"] > 0.9
    succeeded(run_cli(f"run={run_dir}", module="logitlab.predict", env=ENV))
    succeeded(run_cli(f"run={run_dir}", "format=torchscript", module="logitlab.export", env=ENV))
    rows = list(csv.DictReader((run_dir / "predictions_test.csv").open()))
    assert len(rows) == 359 and rows[0]["label"] in WORDS and f"prob_{WORDS[9]}" in rows[0]
    scripted = torch.jit.load(str(run_dir / "model.torchscript.pt"))
    logits, probs = scripted(torch.from_numpy(images(digits["test"][0])).float())  # raw 0..255 pixels
    assert (probs.argmax(1).numpy() == digits["test"][1]).mean() > 0.9


def _bad_files(tmp_path) -> dict[Path, str]:
    """data.path of a bad .npz -> a pattern the one line must match."""
    x, y = np.zeros((20, 3), np.float32), np.arange(20) % 2
    np.savez(tmp_path / "no_y.npz", x=x, labels=y)
    np.savez(tmp_path / "lengths.npz", x=x, y=y[:19])
    np.savez(tmp_path / "objects.npz", x=x, y=np.array([{"a": 1}] * 20, dtype=object))
    return {
        tmp_path / "nowhere.npz": r"data\.path=\S+nowhere\.npz does not exist",
        tmp_path / "no_y.npz": r"no_y\.npz has no y array; it holds x, labels; expected x, y, x_val",
        tmp_path / "lengths.npz": r"x has 20 examples and y 19 labels",
        tmp_path / "objects.npz": r"y is an array of Python objects, which is not loaded",
    }


def test_bad_input_is_one_line_before_any_run_directory(tmp_path):
    """Every bad file as load_arrays refuses it, in one line; one through the command line (exit 2, no run
    directory). Every case through the command line: make test-all."""
    cases = _bad_files(tmp_path)
    for path, pattern in cases.items():
        with pytest.raises(ConfigError) as refused:
            load_arrays(str(path))
        assert "\n" not in str(refused.value) and re.search(pattern, str(refused.value)), refused.value
    path = tmp_path / "objects.npz"
    line = one_line(run_cli("data=arrays", f"data.path={path}", f"hydra.run.dir={tmp_path / 'run'}"))
    assert re.search(cases[path], line), line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_every_bad_file_is_one_line_through_the_command_line(tmp_path):
    cases = _bad_files(tmp_path)
    done = in_parallel(*(("data=arrays", f"data.path={path}", f"hydra.run.dir={tmp_path / 'run'}") for path in cases))
    for pattern, result in zip(cases.values(), done):
        assert re.search(pattern, one_line(result)), result.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------- in-process
def test_missing_splits_are_carved_per_class(digits, tmp_path):
    x, y = digits["train"]
    flat, per_class = x.reshape(len(x), -1), np.bincount(y, minlength=10)
    np.savez(tmp_path / "none.npz", x=flat, y=y)
    np.savez(tmp_path / "with_test.npz", x=flat, y=y, x_test=flat[:30], y_test=y[:30])
    np.savez(tmp_path / "with_val.npz", x=flat, y=y, x_val=flat[:30], y_val=y[:30])

    data = load_arrays(str(tmp_path / "none.npz"), split_seed=3)  # as data=table and data=folder split
    expected = stratified_split(torch.from_numpy(y), 0.1, 0.2, 3)
    for (_, labels), chosen in zip((data.train, data.val, data.test), expected):
        assert torch.equal(labels, torch.from_numpy(y)[chosen])

    data = load_arrays(str(tmp_path / "with_test.npz"), val_fraction=0.1, test_fraction=0, split_seed=3)
    assert len(data.test[1]) == 30 and len(data.train[1]) + len(data.val[1]) == len(y)
    assert np.bincount(data.val[1], minlength=10).tolist() == [max(round(0.1 * n), 1) for n in per_class]
    again, other = (load_arrays(str(tmp_path / "with_test.npz"), split_seed=seed) for seed in (3, 4))
    assert torch.equal(again.val[0], data.val[0]) and not torch.equal(other.val[0], data.val[0])

    data = load_arrays(str(tmp_path / "with_val.npz"), test_fraction=0.2)
    assert len(data.val[1]) == 30
    assert np.bincount(data.test[1], minlength=10).tolist() == [max(round(0.2 * n), 1) for n in per_class]
    assert data.normalisation.mean.shape == (64,) and data.normalisation.pixel_max is None  # per feature
    with pytest.raises(ConfigError, match=r"data\.test_fraction=0 must be in \(0, 1\)"):
        load_arrays(str(tmp_path / "with_val.npz"), test_fraction=0)


def test_labels_of_any_kind_become_classes(tmp_path):
    x = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    np.savez(tmp_path / "words.npz", x=x, y=np.array(["dog", "cat", "emu"] * 20))
    assert load_arrays(str(tmp_path / "words.npz")).class_names == ["cat", "dog", "emu"]
    np.savez(tmp_path / "gaps.npz", x=x, y=np.array([0, 1, 5] * 20))
    data = load_arrays(str(tmp_path / "gaps.npz"))
    assert data.class_names == ["0", "1", "5"] and int(data.train[1].max()) == 2
    np.savez(tmp_path / "named.npz", x=x, y=np.array([0, 1, 5] * 20), class_names=np.array(["a", "b", "c"]))
    with pytest.raises(ConfigError, match=r"with class_names \(3 names\), y must hold integers 0\.\.2"):
        load_arrays(str(tmp_path / "named.npz"))


@pytest.mark.parametrize("arrays, pattern", [
    ({"x": np.zeros(10), "y": np.zeros(10, int)}, r"x has shape \(10,\); it must be \(N, features\)"),
    ({"x": np.full((10, 2), np.nan), "y": np.arange(10) % 2}, r"x\[0\] holds nan; inputs must be finite"),
    ({"x": np.zeros((10, 2)), "y": np.arange(10) / 2}, r"y holds float64 values; labels must be integers or strings"),
    ({"x": np.zeros((10, 2)), "y": np.eye(10)[:, :2]}, r"y has shape \(10, 2\).*one-hot rows\? y\.argmax\(1\)"),
    ({"x": np.zeros((10, 2)), "y": np.arange(10) % 2, "x_valid": np.zeros((3, 2))}, r"holds x_valid, which "),
    ({"x": np.zeros((10, 2)), "y": np.arange(10) % 2, "x_val": np.zeros((3, 2))}, r"has x_val but no y_val"),
    ({"x": np.zeros((10, 2)), "y": np.arange(10) % 2, "x_test": np.zeros((3, 5)), "y_test": np.zeros(3, int)},
     r"x_test has examples of shape \(5,\), x of shape \(2,\)"),
    ({"x": np.zeros((10, 2)), "y": np.zeros(10, int)}, r"y holds one class \(0\)"),
])
def test_bad_arrays_are_one_line(tmp_path, arrays, pattern):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ConfigError, match=pattern):
        load_arrays(str(tmp_path / "bad.npz"))


def test_files_that_are_not_an_npz_are_one_line(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros((3, 2)))
    (tmp_path / "text.npz").write_text("x,y\n1,2\n")
    for name, pattern in (("one.npy", r"holds one array, not an \.npz archive"), ("text.npz", r"not a readable \.npz"),
                          (".", r"is not a file; data=arrays reads an \.npz file")):
        with pytest.raises(ConfigError, match=pattern):
            load_arrays(str(tmp_path / name))
    with pytest.raises(ConfigError, match=r"data=arrays needs data\.path=FILE\.npz"):
        load_arrays()
