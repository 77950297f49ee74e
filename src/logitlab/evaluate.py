"""A metrics report for a trained run on any split of its data.

  python -m logitlab.evaluate run=RUN [split=test] [bins=15] [out=FILE] [checkpoint=best] [trust=MODULE]
  (or logitlab-evaluate)

  run=         a run directory (its checkpoints/best.pt, or checkpoint=last) or a checkpoint file
  split=       train, val or test (default test)
  bins=        equal-width confidence bins for the expected calibration error (default 15)
  out=         the JSON report (default RUN/eval_<split>.json); the confusion matrix and reliability
               diagram are written next to it as <name>_confusion_matrix.png and <name>_reliability.png
  trust=       MODULE[,MODULE]: modules of your own whose code the run's config may name (its data or
               model `_target_`): trust=mymodels builds mymodels.TwoLayer, trust=mypkg mypkg.models.X.
               Imported from the current directory or PYTHONPATH. By default a checkpoint builds only
               logitlab's own data loaders and models

Reports accuracy, NLL (mean cross-entropy; `<split>/loss` in metrics.json), expected calibration error,
per-class precision / recall / F1 and the confusion matrix, and prints them as a table. With the default
checkpoint, test/acc equals the training run's test/acc in metrics.json (both score best.pt).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from logitlab.reporting import diagnostics
from logitlab.reporting.scoring import logits, softmax
from logitlab.rundirs.cli import as_int, as_modules, cli
from logitlab.rundirs.load import checkpoint_path, load_run, run_dir_of

OPTIONS = {"run": None, "checkpoint": "best", "split": "test", "bins": "15", "out": "", "trust": ""}


def evaluate(run: str, checkpoint: str, split: str, bins: str, out: str, trust: str = "") -> None:
    n_bins = as_int("bins", bins, 1, 1000)
    path = checkpoint_path(run, checkpoint)
    model, data, _ = load_run(path, trust=as_modules("trust", trust))
    x, y = data.split(split)
    report = {"run": str(run_dir_of(path)), "checkpoint": str(path), "split": split, "examples": len(y)}
    report.update(compute(logits(model, x, prepare=data.inputs), y, data.class_names, split, n_bins))

    out_path = Path(out) if out else run_dir_of(path) / f"eval_{split}.json"
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    cm = torch.tensor(report["confusion_matrix"])
    figures = {"confusion_matrix": diagnostics.plot_confusion_matrix(cm, data.class_names),
               "reliability": diagnostics.plot_reliability(report["calibration"])}
    written = [out_path]
    for name, fig in figures.items():
        written.append(out_path.with_name(f"{out_path.stem}_{name}.png"))
        fig.savefig(written[-1])
    print(table(report, data.class_names))
    print("wrote " + ", ".join(map(str, written)))


def compute(z: torch.Tensor, y: torch.Tensor, class_names: list[str], split: str, bins: int) -> dict:
    """Every number of the report from the logits `z` (N, C) and labels `y`."""
    probs = softmax(z.double())
    pred = probs.argmax(1)
    cm = diagnostics.confusion_matrix(y, pred, len(class_names))
    classes = diagnostics.per_class(cm)
    cal = diagnostics.calibration(probs, y, bins)
    return {
        f"{split}/acc": (pred == y).double().mean().item(),
        f"{split}/loss": F.cross_entropy(z.double(), y).item(),  # the NLL of the true class
        f"{split}/ece": cal["ece"],
        "macro": {k: v.mean().item() for k, v in classes.items() if k != "support"},
        "per_class": {name: {k: v[i].item() for k, v in classes.items()} for i, name in enumerate(class_names)},
        "confusion_matrix": cm.tolist(),
        "calibration": cal,
    }


def table(report: dict, class_names: list[str]) -> str:
    split = report["split"]
    width = max(8, *(len(c) for c in class_names))
    lines = [f"{report['checkpoint']}  {split} split, {report['examples']} examples",
             f"acc {report[f'{split}/acc']:.4f}   NLL {report[f'{split}/loss']:.4f}   "
             f"ECE {report[f'{split}/ece']:.4f} ({report['calibration']['bins']} bins)", "",
             f"{'class':<{width}}  precision  recall     f1  support"]
    rows = [(name, report["per_class"][name]) for name in class_names] + [("macro", report["macro"])]
    for name, m in rows:
        support = m.get("support", report["examples"])
        lines.append(f"{name:<{width}}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:.4f}  {support:7d}")
    if len(class_names) <= 20:
        cell = max(4, *(len(str(v)) for row in report["confusion_matrix"] for v in row)) + 1
        lines += ["", "confusion matrix (rows: true, columns: predicted)",
                  " " * width + "".join(f"{c[:cell - 1]:>{cell}}" for c in class_names)]
        for name, row in zip(class_names, report["confusion_matrix"]):
            lines.append(f"{name:<{width}}" + "".join(f"{v:>{cell}}" for v in row))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    cli(evaluate, OPTIONS, __doc__, argv)


if __name__ == "__main__":
    main()
