"""predict: softmax probabilities that are a distribution, keep the model's argmax, survive extreme logits,
and come from the run's own split or from the user's raw .npy / .csv / image files."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from logitlab.data import Normalisation, SplitData
from logitlab.models import SoftmaxRegression
from logitlab.predict import main, read_images
from logitlab.reporting.scoring import logits, probabilities, softmax
from logitlab.rundirs import load_run


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def raw_digits(data, x):
    """Normalised digits back in the dataset's own units: whole pixel counts 0..16."""
    raw = data.raw(x).round()
    assert raw.min() >= 0 and raw.max() <= 16
    return raw


def test_probabilities_are_a_distribution_with_the_models_argmax(trained_run):
    model, data, _ = load_run(trained_run)
    x = data.inputs(data.test[0])
    for dtype in (torch.float32, torch.float64):
        p = probabilities(model, x, dtype=dtype)
        assert p.dtype == dtype and p.shape == (len(x), data.num_classes)
        assert ((p >= 0) & (p <= 1)).all()
        assert torch.allclose(p.sum(1), torch.ones(len(x), dtype=dtype), atol=1e-6)
        assert torch.equal(p.argmax(1), model(x).argmax(1))


def test_hand_checked_softmax_of_a_linear_model_with_set_weights():
    model = SoftmaxRegression(input_shape=(3,), num_classes=3)
    with torch.no_grad():  # logits = x: W = I, b = 0
        model.linear.weight.copy_(torch.eye(3))
        model.linear.bias.zero_()
    x = torch.tensor([[3.0, -1.0, 4.0], [200.0, 10.0, -4.0]])
    assert torch.equal(model(x), x)
    p64 = probabilities(model, x, dtype=torch.float64)
    assert p64[0].tolist() == pytest.approx([0.268, 0.005, 0.727], abs=5e-4)
    assert p64[1, 0].item() == 1.0
    assert p64[1, 1].item() == pytest.approx(3.0e-83, rel=0.02)  # e^-190
    assert p64[1, 2].item() == pytest.approx(2.5e-89, rel=0.02)  # e^-204
    p32 = probabilities(model, x)
    assert torch.isfinite(p32).all() and p32[1].tolist() == [1.0, 0.0, 0.0]
    naive = x.exp() / x.exp().sum(1, keepdim=True)  # what the max-subtraction avoids: inf / inf
    assert naive[1].isnan().any()
    assert torch.allclose(softmax(x), torch.softmax(x, dim=1))


def test_predict_writes_a_csv_named_by_class(trained_run, tmp_path, capsys):
    out = tmp_path / "probs.csv"
    main([f"run={trained_run}", f"out={out}", "top_k=3"])
    assert "predictions" in capsys.readouterr().err
    header, rows = read_csv(out)
    model, data, _ = load_run(trained_run)
    x, y = data.test
    assert header[:9] == ["input", "label", "predicted", "top1", "top1_prob", "top2", "top2_prob", "top3", "top3_prob"]
    assert header[9:] == [f"prob_{c}" for c in data.class_names]
    assert len(rows) == len(x)
    p = np.array([[float(v) for v in r[9:]] for r in rows])
    assert ((p >= 0) & (p <= 1)).all() and np.abs(p.sum(1) - 1).max() < 1e-6
    predicted = model(data.inputs(x)).argmax(1)
    assert [r[2] for r in rows] == [data.class_names[i] for i in predicted]
    assert [r[1] for r in rows] == [data.class_names[i] for i in y]
    top = np.array([[float(r[4]), float(r[6]), float(r[8])] for r in rows])
    assert (np.diff(top, axis=1) <= 0).all() and np.allclose(top[:, 0], p.max(1))


def test_raw_npy_of_the_test_split_gives_the_probabilities_of_split_test(trained_run, tmp_path):
    _, data, _ = load_run(trained_run)
    np.save(tmp_path / "raw.npy", raw_digits(data, data.test[0]).numpy())  # (N, 1, 8, 8) pixel counts 0..16
    main([f"run={trained_run}", "split=test", f"out={tmp_path / 'split.npy'}"])
    main([f"run={trained_run}", f"input={tmp_path / 'raw.npy'}", f"out={tmp_path / 'raw_probs.npy'}"])
    # the same normalisation of the same numbers: the same probabilities to the bit
    assert np.array_equal(np.load(tmp_path / "raw_probs.npy"), np.load(tmp_path / "split.npy"))


def test_predict_raw_flat_csv_with_a_header(trained_run, tmp_path):
    model, data, _ = load_run(trained_run)
    x = data.test[0][:5]
    np.savetxt(tmp_path / "flat.csv", raw_digits(data, x).flatten(1).numpy(), delimiter=",", fmt="%g",
               header=",".join(f"px{i}" for i in range(64)), comments="")
    main([f"run={trained_run}", f"input={tmp_path / 'flat.csv'}", f"out={tmp_path / 'flat_probs.csv'}", "top_k=1"])
    header, rows = read_csv(tmp_path / "flat_probs.csv")
    assert header[:5] == ["input", "predicted", "top1", "top1_prob", "prob_0"]
    expected = probabilities(model, x, dtype=torch.float64, prepare=data.inputs).numpy()
    assert np.allclose([[float(v) for v in r[4:]] for r in rows], expected, atol=1e-9)


def test_predict_image_files_of_raw_8bit_pixels(trained_run, tmp_path):
    model, data, _ = load_run(trained_run)
    x = data.test[0][:4]
    folder = tmp_path / "images"
    folder.mkdir()
    for i, img in enumerate(raw_digits(data, x)):  # 0..16 as 8-bit pixels, as a user's scan of a digit would be
        pixels = (img[0] * 255 / 16).round().byte().numpy()
        Image.fromarray(pixels, mode="L").convert("RGB").save(folder / f"digit{i}.png")  # RGB: converted back
    main([f"run={trained_run}", f"input={folder}", f"out={tmp_path / 'images.csv'}"])
    header, rows = read_csv(tmp_path / "images.csv")
    assert [r[0] for r in rows] == [f"digit{i}.png" for i in range(4)]
    got = np.array([[float(v) for v in r[-10:]] for r in rows])
    assert np.allclose(got, probabilities(model, x, prepare=data.inputs).numpy(), atol=0.02)  # 8-bit rounding of 17 levels
    assert (got.argmax(1) == model(data.inputs(x)).argmax(1).numpy()).all()


def test_8bit_images_are_normalised_with_the_stored_statistics_exactly(tmp_path):
    norm = Normalisation(torch.tensor([33.3]), torch.tensor([78.9]), pixel_max=255)
    empty = (torch.zeros(0, 1, 2, 3), torch.zeros(0, dtype=torch.long))
    data = SplitData("eight_bit", empty, empty, empty, ["a", "b"], norm)
    pixels = np.array([[0, 1, 2], [128, 254, 255]], np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "img.png")
    x = read_images([tmp_path / "img.png"], data)
    assert torch.equal(x, (torch.from_numpy(pixels).float().reshape(1, 1, 2, 3) - 33.3) / 78.9)


@pytest.mark.parametrize("name, row, value", [("bad.npy", 3, "nan"), ("bad.csv", 1, "inf")])
def test_non_finite_inputs_are_refused_with_one_line(trained_run, tmp_path, capsys, name, row, value):
    x = np.ones((5, 1, 8, 8), np.float32)
    x[row, 0, 2, 5] = float(value)
    x[4, 0, 0, 0] = np.nan  # only the first bad row is named
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, x)
    else:
        np.savetxt(path, x.reshape(len(x), -1), delimiter=",")
    with pytest.raises(SystemExit) as exit_:
        main([f"run={trained_run}", f"input={path}", f"out={tmp_path / 'x.csv'}"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == (f"error: input={path}: row {row} (counting from 0) holds {value}; "
                                       f"inputs must be finite numbers\n")
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize("make, expected", [
    (lambda p: np.save(p / "bad.npy", np.zeros((5, 1, 7, 7), np.float32)) or p / "bad.npy",
     "has shape (5, 1, 7, 7); the model takes (N, 1, 8, 8)"),
    (lambda p: Image.new("L", (28, 28)).save(p / "big.png") or p / "big.png",
     "is 28x28 pixels; the model takes 8x8"),
    (lambda p: (p / "notes.txt").write_text("hi") and p / "notes.txt", "is not a .npy, .csv or image file"),
    (lambda p: (p / "words.csv").write_text("a,b\nc,d\n") and p / "words.csv", "is not a numeric array"),
])
def test_inputs_that_do_not_fit_fail_with_one_line(trained_run, tmp_path, capsys, make, expected):
    path = make(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([f"run={trained_run}", f"input={path}", f"out={tmp_path / 'x.csv'}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.count("\n") == 1 and expected in err and str(path) in err
    assert not (tmp_path / "x.csv").exists()


def test_predict_logits_match_the_checkpoint(trained_run):
    """load_run rebuilds exactly the trained model: its test accuracy is metrics.json's."""
    import json

    model, data, _ = load_run(trained_run)
    x, y = data.test
    acc = (logits(model, x, prepare=data.inputs).argmax(1) == y).double().mean().item()
    assert acc == pytest.approx(json.loads((trained_run / "metrics.json").read_text())["test/acc"], abs=1e-6)
