"""Where a classifier is wrong and whether its confidence can be trusted: the confusion matrix, per-class
precision / recall / F1, the expected calibration error (ECE) with its reliability diagram, and a grid of
misclassified images. `logitlab.evaluate` writes them to files; tensorboard_log puts them in TensorBoard.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so drawing one
changes no global backend; matplotlib is imported only when a figure is drawn.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


# ---------------------------------------------------------------------------------------- metrics
def confusion_matrix(y: Tensor, pred: Tensor, num_classes: int) -> Tensor:
    """(C, C) counts: row = true class, column = predicted class."""
    flat = y.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def per_class(cm: Tensor) -> dict[str, Tensor]:
    """Precision, recall, F1 and support per class from a confusion matrix. Precision of a class that is
    never predicted (and so F1) is 0, as scikit-learn's zero_division=0."""
    cm = cm.double()
    tp, predicted, support = cm.diag(), cm.sum(0), cm.sum(1)
    precision = tp / predicted.clamp_min(1)
    recall = tp / support.clamp_min(1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp_min(1e-300), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.long()}


def calibration(probs: Tensor, y: Tensor, bins: int = 15) -> dict:
    """ECE over `bins` equal-width confidence bins (lo, hi] (Guo et al., 2017): confidence is the max
    probability; ECE = sum_b (n_b / N) |acc_b - conf_b|, the mean gap between how often the model is
    right and how sure it says it is. Empty bins have None for confidence and accuracy."""
    conf, pred = probs.double().max(dim=1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    idx = torch.bucketize(conf, edges[1:-1])  # inner edges: conf in (edges[i], edges[i+1]] -> i
    count = torch.bincount(idx, minlength=bins)
    conf_sum = torch.bincount(idx, weights=conf, minlength=bins)
    acc_sum = torch.bincount(idx, weights=correct, minlength=bins)
    # (n_b / N) |acc_b - conf_b| == |sum of correct - sum of conf in b| / N
    ece = (acc_sum - conf_sum).abs().sum().item() / max(len(y), 1)
    mean = lambda s: [v / n if n else None for v, n in zip(s.tolist(), count.tolist())]  # noqa: E731
    return {"ece": ece, "bins": bins, "edges": edges.tolist(), "count": count.tolist(),
            "confidence": mean(conf_sum), "accuracy": mean(acc_sum)}


# ---------------------------------------------------------------------------------------- figures
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_image(fig) -> np.ndarray:
    """The figure rendered as an (H, W, 3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def plot_confusion_matrix(cm: Tensor, class_names: list[str]):
    """Counts in each cell, coloured by the fraction of the true class (row) so rare classes show too."""
    n = len(class_names)
    size = min(max(4.0, 0.45 * n + 2.0), 14.0)
    fig = _figure(size, size)
    ax = fig.add_subplot()
    rows = cm.double() / cm.sum(1, keepdim=True).clamp_min(1)
    ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for (i, j), count in np.ndenumerate(cm.numpy()):
            if count:
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                        color="white" if rows[i, j] > 0.5 else "black")
    ticks = range(n) if n <= 30 else []
    ax.set_xticks(ticks, [class_names[i] for i in ticks], rotation=90 if n > 10 else 0)
    ax.set_yticks(ticks, [class_names[i] for i in ticks])
    acc = cm.diag().sum().item() / max(cm.sum().item(), 1)
    ax.set(xlabel="predicted", ylabel="true", title=f"confusion matrix (acc {acc:.3f})")
    return fig


def plot_reliability(cal: dict):
    """Accuracy per confidence bin against the diagonal of perfect calibration (bars below it: the
    model is overconfident there), above a histogram of how many examples fall in each bin."""
    fig = _figure(4.5, 5.5)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    edges = np.array(cal["edges"])
    width, centres = np.diff(edges), (edges[:-1] + edges[1:]) / 2
    acc = np.array([np.nan if a is None else a for a in cal["accuracy"]])
    conf = np.array([np.nan if c is None else c for c in cal["confidence"]])
    top.bar(centres, acc, width, edgecolor="black", color="tab:blue", alpha=0.8, label="accuracy")
    top.bar(centres, conf - acc, width, bottom=acc, fill=False, hatch="///", edgecolor="tab:red", lw=0,
            label="gap to mean confidence")
    top.hlines(conf, edges[:-1], edges[1:], colors="tab:red", lw=2)
    top.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    top.set(ylim=(0, 1), ylabel="accuracy", title=f"reliability: ECE {cal['ece']:.4f} ({cal['bins']} bins)")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, cal["count"], width, edgecolor="black", color="tab:gray")
    bottom.set(xlim=(0, 1), yscale="log", xlabel="confidence (max softmax probability)", ylabel="examples")
    return fig


def plot_misclassified(x: Tensor, y: Tensor, probs: Tensor, class_names: list[str], limit: int = 25):
    """The most confident mistakes, each titled `true -> predicted (probability)`; None if there are none.
    `x` is (N, C, H, W) normalised data, shown per image rescaled to [0, 1]. One mosaic on one axes:
    25 axes of their own cost matplotlib a second."""
    conf, pred = probs.max(dim=1)
    wrong = (pred != y).nonzero().flatten()
    if not len(wrong):
        return None
    wrong = wrong[conf[wrong].argsort(descending=True)][:limit]
    imgs = x[wrong].float()[:, :3]
    lo = imgs.flatten(1).min(1).values.view(-1, 1, 1, 1)
    hi = imgs.flatten(1).max(1).values.view(-1, 1, 1, 1)
    imgs = ((imgs - lo) / (hi - lo).clamp_min(1e-8)).permute(0, 2, 3, 1).numpy()  # (k, H, W, C)
    k, h, w, c = imgs.shape
    cols = min(5, k)
    rows = -(-k // cols)
    gap_x, gap_y = max(1, w // 8), max(2, h // 2)  # room between tiles, and above each for its title
    mosaic = np.ones((rows * (h + gap_y), cols * (w + gap_x), c), dtype=np.float32)
    fig = _figure(1.6 * cols, 1.8 * rows)
    ax = fig.add_subplot()
    for n, i in enumerate(wrong.tolist()):
        top, left = (n // cols) * (h + gap_y) + gap_y, (n % cols) * (w + gap_x)
        mosaic[top:top + h, left:left + w] = imgs[n]
        ax.text(left + w / 2, top - 0.5, f"{class_names[y[i]]} -> {class_names[pred[i]]} ({conf[i]:.2f})",
                ha="center", va="bottom", fontsize=8)
    ax.imshow(mosaic[..., 0] if c == 1 else mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    fig.suptitle("most confident mistakes: true -> predicted (probability)", fontsize=9)
    return fig
