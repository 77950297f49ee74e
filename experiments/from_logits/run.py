"""Why the output layer is linear and the loss takes logits.

The same MLP (MNIST-1D, 100-100 ReLU) is trained with two output heads on the same logits z = s * f(x):
  (a) probs  = softmax(z) as the output layer, then loss = NLL(log(probs))   (what Keras calls from_logits=False)
  (b) logits = z, loss = CrossEntropyLoss(z) = logsumexp(z) - z_y           (from_logits=True; logitlab's way)
with the head computed in float32 or bfloat16 (the body under bf16 autocast for bfloat16), for logit scales s
(s = 1 / temperature). (a) needs log(softmax(z)_y); softmax underflows to 0 once z_max - z_y exceeds ~104
(float32) or ~92 (bfloat16), log(0) = -inf, and the gradient through it is NaN. (b) never forms the probability.

    .venv/bin/python experiments/from_logits/run.py      # ~2 min on 1 CPU core; writes results.md, from_logits.png
"""
from __future__ import annotations

import csv
import math
import statistics
import subprocess
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from logitlab.data import load_mnist1d  # noqa: E402
from logitlab.models import MLP  # noqa: E402

HERE = Path(__file__).parent
SCALES = [1, 10, 100, 300, 1000]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SEEDS = [0, 1, 2]
EPOCHS, BATCH, LR = 20, 100, 1e-3


def softmax_then_log(z, y):  # (a): a softmax output layer, then log + NLL
    return F.nll_loss(torch.log(torch.softmax(z, dim=1)), y)


def from_logits(z, y):  # (b): raw logits into CrossEntropyLoss
    return F.cross_entropy(z, y)


HEADS = {"(a) softmax → log → NLL": softmax_then_log, "(b) logits → CrossEntropyLoss": from_logits}


def logits(model, x, scale, dtype):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        z = model(x)
    return (scale * z).to(dtype)


def run(data, head, scale, dtype, seed) -> dict:
    torch.manual_seed(seed)
    model = MLP(data.input_shape, data.num_classes, hidden=[100, 100])
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    (x, y), shuffle = data.train, torch.Generator().manual_seed(seed)
    steps = bad_steps = 0
    first_bad = None
    for _ in range(EPOCHS):
        perm = torch.randperm(len(x), generator=shuffle)
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            loss = head(logits(model, x[idx], scale, dtype), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if not torch.isfinite(loss):
                bad_steps += 1
                first_bad = first_bad or steps
    model.eval()
    with torch.no_grad():
        xt, yt = data.test
        z = logits(model, xt, scale, dtype)
        return dict(acc=100 * (z.argmax(1) == yt).float().mean().item(), loss=head(z, yt).float().item(),
                    bad_steps=bad_steps, first_bad=first_bad or "", steps=steps,
                    ce64=F.cross_entropy(z.double(), yt).item())


def loss_vs_gap():
    """Loss of one example whose true class trails the top logit by `gap` (exact value: ~gap)."""
    gaps = torch.logspace(0, 3, 200, dtype=torch.float64)
    curves = {}
    for dname, dtype in DTYPES.items():
        z = torch.stack([torch.zeros_like(gaps), gaps], 1).to(dtype)  # true class 0, rival at +gap
        y = torch.zeros(len(gaps), dtype=torch.long)
        for hname, head in HEADS.items():
            curves[f"{hname}, {dname}"] = [head(z[i:i + 1], y[i:i + 1]).float().item() for i in range(len(gaps))]
    return gaps, curves


def fmt(values, digits=3):
    bad = [v for v in values if not math.isfinite(v)]
    if bad:  # how many seeds ended non-finite, and how
        return f"{len(bad)}/{len(values)} {'nan' if any(map(math.isnan, bad)) else 'inf'}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    torch.set_num_threads(1)
    data = load_mnist1d()
    rows, started = [], time.perf_counter()
    for scale in SCALES:
        for dname, dtype in DTYPES.items():
            for hname, head in HEADS.items():
                for seed in SEEDS:
                    r = run(data, head, scale, dtype, seed)
                    rows.append(dict(scale=scale, dtype=dname, head=hname, seed=seed, **r))
                    print(rows[-1], flush=True)
    with open(HERE / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"MNIST-1D, MLP 100-100, Adam lr {LR}, batch {BATCH}, {EPOCHS} epochs ({rows[0]['steps']} steps), "
             f"seeds {SEEDS}, git {rev}, {time.perf_counter() - started:.0f} s in all. Test accuracy % and test loss "
             f"as each head computes it (mean ± std, or how many seeds gave inf/nan); 'non-finite steps' = "
             f"training steps whose loss was inf/nan (mean over seeds).", "",
             "| logit scale s | dtype | head | test acc % | test loss | non-finite steps |",
             "|---:|---|---|---:|---:|---:|"]
    summary = {}
    for scale in SCALES:
        for dname in DTYPES:
            for hname in HEADS:
                rs = [r for r in rows if (r["scale"], r["dtype"], r["head"]) == (scale, dname, hname)]
                acc = [r["acc"] for r in rs]
                summary[(scale, dname, hname)] = acc
                bad_steps = statistics.mean(r["bad_steps"] for r in rs)
                lines.append(f"| {scale} | {dname} | {hname} | {fmt(acc, 1)} | {fmt([r['loss'] for r in rs])} "
                             f"| {bad_steps:.0f} / {rs[0]['steps']} |")
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    gaps, curves = loss_vs_gap()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    styles = {"float32": "-", "bfloat16": "--"}
    colors = {hname: c for hname, c in zip(HEADS, ("#c0392b", "#2471a3"))}
    for key, values in curves.items():
        hname, dname = key.rsplit(", ", 1)
        v = torch.tensor(values)
        bad = ~torch.isfinite(v)
        v[bad] = float("nan")  # inf is not drawn: the line stops where the loss becomes inf
        ax1.plot(gaps, v, styles[dname], color=colors[hname], lw=3 if hname.startswith("(a)") else 1.2, label=key)
        if bad.any():
            gap = gaps[bad.nonzero()[0, 0]].item()
            ax1.axvline(gap, color=colors[hname], ls=styles[dname], lw=0.8)
            ax1.annotate(f"inf from {gap:.0f}", (gap, 2 if dname == "float32" else 5), fontsize=7,
                         color=colors[hname], ha="right")
    ax1.set(xscale="log", yscale="log", xlabel="logit gap z_max - z_true", ylabel="loss of the example",
            title="one wrong example: loss (a line ends = inf)")
    ax1.legend(fontsize=6)
    for hname in HEADS:
        for dname in DTYPES:
            acc = [summary[(s, dname, hname)] for s in SCALES]
            ax2.errorbar(SCALES, [statistics.mean(a) for a in acc], [statistics.stdev(a) for a in acc],
                         fmt="o" + styles[dname], color=colors[hname], capsize=3, label=f"{hname}, {dname}")
    ax2.set(xscale="log", xlabel="logit scale s (z = s f(x))", ylabel="test accuracy %", ylim=(0, 100),
            title="trained MLP on MNIST-1D")
    ax2.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(HERE / "from_logits.png", dpi=100)


if __name__ == "__main__":
    main()
