"""Collect multirun/mnist1d_zoo/<model>/<seed>/ into results.md and zoo.png, mean ± std over seeds.

Two test accuracies per run: the trainer's (best-by-val weights, metrics.json) and the paper's protocol
(the final weights after all steps, checkpoints/last.pt, scored here on the same test split).
"""
from __future__ import annotations

import functools
import json
import math
import statistics
import subprocess
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from logitlab.config import build  # noqa: E402
from logitlab.reporting.scoring import loss_and_accuracy  # noqa: E402
from logitlab.trainer import checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
SWEEPS = ROOT / "multirun" / "mnist1d_zoo"
# sweep dir -> (label, the paper's test accuracy in %, or None)
MODELS = {
    "linear": ("logistic regression (linear)", 32),
    "mlp": ("MLP 100-100 ReLU", 68),
    "cnn": ("CNN 3 x 25 ch, kernel 5", 94),
    "gru": ("GRU bidir., hidden 6", 91),
    "attention": ("Transformer (attention)", None),
    "cnn_best": ("CNN, best of cnn_nas", None),
    "cnn_best_bn": ("CNN, best of cnn_nas + batch norm, cosine", None),
}
HUMAN = 96


@functools.cache
def load_data(data_cfg: str):
    return build.data(OmegaConf.create(data_cfg))  # as the run built it (data.max_resident_gb is the trainer's)


def final_weights(run: Path) -> tuple[float, int]:
    """Test accuracy % of the run's last weights, and its number of optimizer steps."""
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    data = load_data(OmegaConf.to_yaml(cfg.data))
    model = build.model(cfg.model, data)
    model.load_state_dict(checkpoint.load(run / "checkpoints" / "last.pt")["model"])
    steps = cfg.trainer.epochs * math.ceil(len(data.train[0]) / cfg.trainer.batch_size)
    return 100 * loss_and_accuracy(model, *data.test, prepare=data.inputs)[1], steps


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def collect(name: str) -> dict | None:
    runs = sorted(p.parent for p in (SWEEPS / name).glob("*/metrics.json"))
    if not runs:
        return None
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs]
    overrides = yaml.safe_load((runs[0] / ".hydra" / "overrides.yaml").read_text())
    final = [final_weights(r) for r in runs]
    return dict(best=[100 * m["test/acc"] for m in metrics], final=[acc for acc, _ in final],
                params=metrics[0]["params"], epochs=metrics[0]["epochs"], steps=final[0][1],
                seconds=statistics.mean(m["train_seconds"] for m in metrics),
                overrides=" ".join(o for o in overrides if not o.startswith("seed=")))


def main() -> None:
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=ROOT).stdout.strip()
    rows = {name: r for name in MODELS if (r := collect(name))}
    lines = [f"MNIST-1D test accuracy %, mean ± std over seeds (git {rev}). 'best-by-val': the trainer's "
             "metrics.json; 'final': the weights after the last step, as the paper reports.", "",
             "| model | params | seeds | epochs (steps) | test acc, best-by-val | test acc, final | paper "
             "| train s/run |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        label, paper = MODELS[name]
        (bm, bs), (fm, fs) = mean_std(r["best"]), mean_std(r["final"])
        lines.append(f"| {label} | {r['params']:,} | {len(r['best'])} | {r['epochs']} ({r['steps']}) "
                     f"| {bm:.1f} ± {bs:.1f} | {fm:.1f} ± {fs:.1f} | {paper if paper is not None else '–'} "
                     f"| {r['seconds']:.0f} |")
    lines += ["", f"Human: {HUMAN}% (the paper). Overrides (plus `seed=...`):", ""]
    lines += [f"- {name}: `{r['overrides']}`" for name, r in rows.items()]
    lines += ["", "Per seed (best-by-val / final):", ""]
    lines += [f"- {name}: " + ", ".join(f"{b:.1f}/{f:.1f}" for b, f in zip(r["best"], r["final"]))
              for name, r in rows.items()]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows)


def plot(rows: dict) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    names = list(rows)
    y = list(range(len(names)))
    for offset, key, color in ((-0.2, "best", "#4a7fa5"), (0.2, "final", "#9cc3de")):
        stats = [mean_std(rows[n][key]) for n in names]
        ax.barh([i + offset for i in y], [m for m, _ in stats], height=0.4, xerr=[s for _, s in stats],
                color=color, ecolor="#333333", capsize=2,
                label=f"logitlab, {'best-by-val' if key == 'best' else 'final weights'}")
    for i, n in enumerate(names):
        if (paper := MODELS[n][1]) is not None:
            ax.fill_betweenx([i - 0.45, i + 0.45], paper - 3, paper + 3, color="#f5b041", alpha=0.45, lw=0,
                             label="paper ± 3 points" if i == 0 else None, zorder=3)
            ax.plot([paper, paper], [i - 0.45, i + 0.45], color="#b9770e", lw=1.5, zorder=4)
    ax.axvline(HUMAN, ls="--", color="#c0392b", lw=1, label=f"human {HUMAN}%")
    ax.set_yticks(y, [f"{textwrap.fill(MODELS[n][0], 26)}\n{rows[n]['params']:,} params" for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("MNIST-1D test accuracy (%), mean ± std over seeds")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(HERE / "zoo.png", dpi=110)


if __name__ == "__main__":
    main()
