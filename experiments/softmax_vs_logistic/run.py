"""Two-class softmax regression is logistic regression.

  sigmoid(z) = softmax([z, 0])[0],  and  BCE(z, y) = CE([z, 0], class 0 if y = 1 else 1)
so softmax regression with weights (W0, W1) is logistic regression with w = W1 - W0, b = b1 - b0. Trained on
digits 3 vs 8 (scikit-learn 8x8, class 1 = '8'), in float64:
  same trajectory  full-batch gradient descent from matching starts (w = W1 - W0); logistic needs the doubled
                   learning rate, since the gradients on W1 and W0 are equal and opposite;
  same optimum     independent random starts, L-BFGS to convergence with an L2 penalty (lam/2 |W|^2 for softmax,
                   lam/4 |w|^2 for logistic: at the optimum W0 = -W1, so |W0|^2 + |W1|^2 = |w|^2 / 2);
  2-D boundary     the same on the first two principal components, with both decision boundaries drawn.

    .venv/bin/python experiments/softmax_vs_logistic/run.py      # seconds; writes results.md, boundary.png
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from logitlab.data import load_digits  # noqa: E402
from logitlab.models import SoftmaxRegression  # noqa: E402

HERE = Path(__file__).parent
SEEDS = [0, 1, 2]
LAM = 1e-2
torch.set_default_dtype(torch.float64)


def three_vs_eight(split):
    x, y = split
    keep = (y == 3) | (y == 8)
    return x[keep].double().flatten(1), (y[keep] == 8).long()  # (N, 64), 1 = '8'


def models(dim, seed):
    torch.manual_seed(seed)
    softmax = SoftmaxRegression((dim,), 2)  # z = W x + b, W: (2, D)
    logistic = nn.Linear(dim, 1)  # its own random start
    return softmax, logistic


def p_softmax(model, x):
    return torch.softmax(model(x), 1)[:, 1]


def p_logistic(model, x):
    return torch.sigmoid(model(x)[:, 0])


def softmax_loss(model, x, y, lam=0.0):
    return F.cross_entropy(model(x), y) + lam / 2 * sum(p.square().sum() for p in model.parameters())


def logistic_loss(model, x, y, lam=0.0):
    return F.binary_cross_entropy_with_logits(model(x)[:, 0], y.double()) \
        + lam / 4 * sum(p.square().sum() for p in model.parameters())


def same_trajectory(x, y, seed, steps=500, lr=0.05):
    softmax, logistic = models(x.shape[1], seed)
    with torch.no_grad():  # the matching start
        W, b = softmax.linear.weight, softmax.linear.bias
        logistic.weight.copy_(W[1:] - W[:1])
        logistic.bias.copy_(b[1:] - b[:1])
    for model, loss, step in ((softmax, softmax_loss, lr), (logistic, logistic_loss, 2 * lr)):
        opt = torch.optim.SGD(model.parameters(), lr=step)
        for _ in range(steps):
            opt.zero_grad()
            loss(model, x, y).backward()
            opt.step()
    return softmax, logistic


def same_optimum(x, y, seed):
    softmax, logistic = models(x.shape[1], seed)
    for model, loss in ((softmax, softmax_loss), (logistic, logistic_loss)):
        opt = torch.optim.LBFGS(model.parameters(), max_iter=1000, tolerance_grad=1e-12,
                                tolerance_change=1e-14, history_size=50, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            value = loss(model, x, y, LAM)
            value.backward()
            return value

        opt.step(closure)
    return softmax, logistic


def compare(softmax, logistic, x, y) -> dict:
    with torch.no_grad():
        ps, pl = p_softmax(softmax, x), p_logistic(logistic, x)
        W, b = softmax.linear.weight, softmax.linear.bias
        w = torch.cat([W[1] - W[0], b[1:] - b[:1]])
        v = torch.cat([logistic.weight[0], logistic.bias])
        return {"max abs diff of P(8)": (ps - pl).abs().max().item(),
                "rel. diff of w vs W1 - W0": ((w - v).norm() / v.norm()).item(),
                "same predicted class %": 100 * ((ps > 0.5) == (pl > 0.5)).double().mean().item(),
                "test acc % softmax": 100 * ((ps > 0.5).long() == y).double().mean().item(),
                "test acc % logistic": 100 * ((pl > 0.5).long() == y).double().mean().item()}


def identities() -> dict:
    torch.manual_seed(0)
    z, y = 30 * torch.randn(10_000), torch.randint(0, 2, (10_000,))
    two = torch.stack([z, torch.zeros_like(z)], 1)
    bce = F.binary_cross_entropy_with_logits(z, y.double(), reduction="none")
    ce = F.cross_entropy(two, 1 - y, reduction="none")  # class 0 of [z, 0] is the positive class
    return {"sigmoid(z) vs softmax([z, 0])[0]": (torch.sigmoid(z) - torch.softmax(two, 1)[:, 0]).abs().max().item(),
            "BCE(z, y) vs CE([z, 0], 1 - y)": (bce - ce).abs().max().item()}


def plot(x, y, xt, yt, path):
    """Both models on the first two principal components; both decision boundaries drawn."""
    mean = x.mean(0)
    _, _, v = torch.pca_lowrank(x - mean, q=2, center=False)
    x2, xt2 = (x - mean) @ v, (xt - mean) @ v
    softmax, logistic = same_optimum(x2, y, SEEDS[0])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8.5, 3.6))
    for label, marker in ((0, "o"), (1, "^")):
        pts = xt2[yt == label]
        ax1.scatter(pts[:, 0], pts[:, 1], s=10, marker=marker, alpha=0.6, label=f"digit {3 if label == 0 else 8}")
    ylim = ax1.get_ylim()
    grid = torch.linspace(float(xt2[:, 0].min()), float(xt2[:, 0].max()), 50)
    with torch.no_grad():
        W, b = softmax.linear.weight, softmax.linear.bias
        for w, c, style, name in ((logistic.weight[0], logistic.bias[0], "-", "logistic: w x + b = 0"),
                                  (W[1] - W[0], b[1] - b[0], "--", "softmax: (W1 - W0) x + b1 - b0 = 0")):
            ax1.plot(grid, -(w[0] * grid + c) / w[1], style, lw=2, label=name)
    ax1.set(xlabel="PC 1", ylabel="PC 2", title="3 vs 8, two principal components", ylim=ylim)
    ax1.legend(fontsize=7)
    for seed in SEEDS:
        softmax, logistic = same_optimum(x, y, seed)
        with torch.no_grad():
            ax2.scatter(p_logistic(logistic, xt), p_softmax(softmax, xt), s=8, alpha=0.5, label=f"seed {seed}")
    ax2.plot([0, 1], [0, 1], "k-", lw=0.5)
    ax2.set(xlabel="sigmoid(w x + b)", ylabel="softmax(W x + b)[1]", title="all 64 pixels: P(8) on test")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    data = load_digits()
    (x, y), (xt, yt) = three_vs_eight(data.train), three_vs_eight(data.test)
    rows = {f"{name}, seed {seed}": compare(*fit(x, y, seed), xt, yt)
            for name, fit in (("same trajectory (GD)", same_trajectory), ("same optimum (L-BFGS + L2)", same_optimum))
            for seed in SEEDS}
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    keys = list(next(iter(rows.values())))
    lines = [f"Digits 3 vs 8: {len(x)} train / {len(xt)} test, float64, git {rev}.", "",
             "| identity (10,000 random z ~ N(0, 30²), float64) | max abs difference |", "|---|---:|"]
    lines += [f"| {k} | {v:.1e} |" for k, v in identities().items()]
    lines += ["", "| run | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:.1e}" if v < 1e-2 else f"{v:.1f}" for v in r.values()) + " |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(x, y, xt, yt, HERE / "boundary.png")


if __name__ == "__main__":
    main()
