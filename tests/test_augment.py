"""Images at scale, through the command line: images rest as uint8 and are normalised per batch,
augmentation (augment=crop, crop_flip, shift) transforms the training batches on the device from the run's
own saved generator, and inputs over data.max_resident_gb stream from where they rest, to the same result.

Fused members with augmentation against their solo runs: tests/test_fused.py (the cnn_shift grid, and in
float64 over every epoch). Data-parallel ranks with augmentation against one process: tests/test_ddp.py."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import one_line, run_cli, stop_after_epoch, succeeded
from logitlab.reporting.scoring import probabilities
from logitlab.rundirs import load_run
from logitlab.trainer import checkpoint
from test_data_folder import digits_pixels, write_images

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def rows(run_dir: Path) -> list[dict]:
    """history.csv as written, but the seconds each epoch took."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader((run_dir / "history.csv").open())]


def test_crop_changes_training_and_an_interrupted_run_resumes_to_the_same_rows(tmp_path):
    """At the defaults (progress bar, figures, TensorBoard): a CNN on the digits with augment=crop, straight
    through, and stopped by SIGINT after epoch 1 then given the same command again; and one without crops."""
    crop = ("model=cnn", "augment=crop", "trainer.epochs=3")
    straight = tmp_path / "straight"
    log = succeeded(run_cli(*crop, f"hydra.run.dir={straight}"))
    assert "digits uint8: inputs 115.0 kB resident on cpu" in log  # 1797 images of 8x8 bytes
    stopped = tmp_path / "stopped"
    first = run_cli(*crop, f"hydra.run.dir={stopped}", env=stop_after_epoch(tmp_path / "hook", 1, "SIGINT"))
    assert first.returncode != 0 and "resume with:" in first.stderr, first.stderr[-2000:]
    assert checkpoint.load(stopped / "checkpoints" / "last.pt")["position"]["epoch"] == 1
    assert "augment" in checkpoint.load(stopped / "checkpoints" / "last.pt")["rng"]  # the crops' generator
    assert "resuming from epoch 1" in succeeded(run_cli(*crop, f"hydra.run.dir={stopped}"))
    assert rows(stopped) == rows(straight)  # every number as written: the same crops in the same order
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (straight, stopped)]
    assert metrics[0]["test/acc"] == metrics[1]["test/acc"] and metrics[0]["test/loss"] == metrics[1]["test/loss"]

    plain = tmp_path / "plain"
    succeeded(run_cli("model=cnn", "trainer.epochs=1", "trainer.figures=false", f"hydra.run.dir={plain}"))
    assert rows(plain)[0]["train/loss"] != rows(straight)[0]["train/loss"]  # same order and weights, cropped inputs


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The digits as 8-bit PNGs in DIR/{train,val,test}/<class>/, as data=digits splits them."""
    base = tmp_path_factory.mktemp("digits_png")
    for split, (x, y) in digits_pixels().items():
        write_images(base / split, x, y)
    return base


def test_a_streamed_folder_run_equals_the_resident_one_and_predicts_from_png_as_from_its_split(folder, tmp_path):
    """crop_flip on a folder: resident (read from the memory-mapped cache into memory) and streamed
    (data.max_resident_gb=0: gathered from the map a batch ahead) train to the same numbers, bit for bit
    on the CPU. Predict takes the test folder's PNG files to the probabilities of the uint8 test split."""
    args = ("data=folder", f"data.path={folder}", "model=cnn", "augment=crop_flip", "trainer.epochs=2",
            "trainer.progress=false", "trainer.figures=false")
    resident, streamed = tmp_path / "resident", tmp_path / "streamed"
    said = succeeded(run_cli(*args, f"hydra.run.dir={resident}"))
    assert "uint8: inputs 115.0 kB resident on cpu" in said
    said = succeeded(run_cli(*args, "data.max_resident_gb=0", f"hydra.run.dir={streamed}"))
    assert "streamed to cpu a batch at a time" in said and "(data.max_resident_gb=0)" in said
    assert rows(streamed) == rows(resident)
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (resident, streamed))
    assert (a["test/acc"], a["test/loss"]) == (b["test/acc"], b["test/loss"])

    out = tmp_path / "from_png.csv"
    succeeded(run_cli(f"run={streamed}", f"input={folder / 'test'}", f"out={out}", module="logitlab.predict"))
    from_png = list(csv.DictReader(out.open()))
    model, data, _ = load_run(streamed)  # best.pt and the uint8 test split, as predict split=test reads them
    x, y = data.test
    # the same images in the same order (class folders, then files, sorted), the same probabilities
    assert [row["input"].split("/")[0] for row in from_png] == [data.class_names[i] for i in y]
    got = torch.tensor([[float(row[f"prob_{c}"]) for c in data.class_names] for row in from_png])
    assert x.dtype == torch.uint8
    torch.testing.assert_close(got, probabilities(model, x, prepare=data.inputs), atol=1e-6, rtol=0)


@pytest.mark.parametrize("args, says", [
    (["data=mnist1d", "augment=crop"], "error: augment=crop crops images (C, H, W); the data (mnist1d) has inputs "
                                       "of shape (1, 40); use augment=shift for sequences"),
    pytest.param(["augment=shift"], "error: augment=shift shifts sequences (C, L); the data (digits) has inputs "
                                    "of shape (1, 8, 8); use augment=crop for images", marks=pytest.mark.slow),
    pytest.param(["augment=crop", "augment.padding=-1"], "error: augment.padding=-1 must be an integer >= 0",
                 marks=pytest.mark.slow),
    (["data.max_resident_gb=-1"], "error: data.max_resident_gb=-1 must be a number of GB >= 0"),
], ids=["crop of sequences", "shift of images", "padding", "cap"])
def test_a_bad_augmentation_or_cap_is_one_line_and_no_run_directory(tmp_path, args, says):
    """make test keeps one of each kind (an augmentation that does not fit the data, a bad cap)."""
    line = one_line(run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}"))
    assert line.startswith(says), line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # make test runs shift in tests/test_fused.py (cnn_shift), and crop's effect above
def test_shift_changes_training_on_mnist1d(tmp_path):
    """augment=shift on MNIST-1D's float sequences: the same order and initial weights, shifted inputs."""
    args = ("data=mnist1d", "model=cnn", "trainer.epochs=1", "trainer.progress=false", "trainer.figures=false")
    shifted, plain = tmp_path / "shifted", tmp_path / "plain"
    said = succeeded(run_cli(*args, "augment=shift", f"hydra.run.dir={shifted}"))
    assert "mnist1d float32: inputs" in said
    succeeded(run_cli(*args, f"hydra.run.dir={plain}"))
    assert rows(shifted)[0]["train/loss"] != rows(plain)[0]["train/loss"]
    assert "augment" in checkpoint.load(shifted / "checkpoints" / "last.pt")["rng"]
