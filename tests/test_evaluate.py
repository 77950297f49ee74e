"""evaluate: the report agrees with training's metrics.json, and its metrics with scikit-learn and hand counts."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix, precision_recall_fscore_support

from logitlab.evaluate import main
from logitlab.reporting.diagnostics import calibration, confusion_matrix, per_class


def test_evaluate_agrees_with_the_training_run(trained_run, tmp_path, capsys):
    out = tmp_path / "report.json"
    main([f"run={trained_run}", "split=test", f"out={out}"])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    n = report["examples"]
    assert round(report["test/acc"] * n) == round(metrics["test/acc"] * n)  # the same examples right
    assert report["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert report["test/loss"] == pytest.approx(metrics["test/loss"], rel=1e-5)
    assert sum(map(sum, report["confusion_matrix"])) == n
    assert set(report["per_class"]) == {str(d) for d in range(10)}
    assert 0 <= report["test/ece"] <= 1
    assert f"acc {report['test/acc']:.4f}" in printed and "precision" in printed and "confusion matrix" in printed
    for name in ("confusion_matrix", "reliability"):
        with Image.open(tmp_path / f"report_{name}.png") as img:
            assert img.width > 200 and img.height > 200


def test_evaluate_any_split_defaults_next_to_the_run(trained_run, capsys):
    main([f"run={trained_run}", "split=val", "bins=10"])
    report = json.loads((trained_run / "eval_val.json").read_text())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert report["val/acc"] == pytest.approx(metrics["val/acc"], abs=1e-6)  # best.pt is the best val/acc
    assert report["calibration"]["bins"] == 10 and (trained_run / "eval_val_reliability.png").exists()


def test_an_unknown_split_is_one_line(trained_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([f"run={trained_run}", "split=holdout"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err == "error: split='holdout' is not a split; valid: train, val, test\n"


def test_confusion_matrix_and_per_class_match_scikit_learn():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 5, (300,), generator=g)
    pred = torch.where(torch.rand(300, generator=g) < 0.6, y, torch.randint(0, 5, (300,), generator=g))
    pred[pred == 4] = 3  # class 4 is never predicted: precision 0 by convention
    cm = confusion_matrix(y, pred, 5)
    assert cm.tolist() == sk_confusion_matrix(y, pred, labels=range(5)).tolist()
    ours = per_class(cm)
    p, r, f1, support = precision_recall_fscore_support(y, pred, labels=range(5), zero_division=0)
    for key, theirs in (("precision", p), ("recall", r), ("f1", f1), ("support", support)):
        assert ours[key].tolist() == pytest.approx(theirs.tolist(), abs=1e-12)


def test_expected_calibration_error_by_hand():
    # four examples at confidence 0.85, three of them right; two at 0.55, both right
    probs = torch.tensor([[0.85, 0.15]] * 4 + [[0.45, 0.55]] * 2, dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    cal = calibration(probs, y, bins=10)
    # bin (0.8, 0.9]: |0.75 - 0.85| * 4/6; bin (0.5, 0.6]: |1.0 - 0.55| * 2/6
    assert cal["ece"] == pytest.approx(0.10 * 4 / 6 + 0.45 * 2 / 6)
    assert cal["count"][8] == 4 and cal["count"][5] == 2 and sum(cal["count"]) == 6
    assert cal["accuracy"][8] == pytest.approx(0.75) and cal["confidence"][5] == pytest.approx(0.55)
    assert cal["accuracy"][0] is None and cal["confidence"][0] is None
    calibrated = calibration(torch.tensor([[0.75, 0.25]] * 4), torch.tensor([0, 0, 0, 1]), bins=15)
    assert calibrated["ece"] == pytest.approx(0.0)
