"""Export a trained run's model for use without logitlab.

  python -m logitlab.export run=RUN [format=onnx] [out=FILE] [checkpoint=best]
  (or logitlab-export)

  run=         a run directory (its checkpoints/best.pt, or checkpoint=last) or a checkpoint file
  format=      onnx (needs the extra: pip install 'logitlab[onnx]') or torchscript
  out=         the file to write (default RUN/model.onnx or RUN/model.torchscript.pt)

The exported model takes a batch of normalised inputs (any N, `input` of shape (N, *input_shape)) and
returns two outputs: `logits` and `probabilities` (their softmax). After writing it, the export is run on
the test split (onnxruntime for ONNX) and its probabilities must match PyTorch's within 1e-5.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from logitlab import ConfigError
from logitlab.cli import UsageError, cli
from logitlab.runs import checkpoint_path, load_run, run_dir_of
from logitlab.scoring import softmax

OPTIONS = {"run": None, "checkpoint": "best", "format": "onnx", "out": ""}
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
TOLERANCE = 1e-5


class WithProbabilities(nn.Module):
    """The model followed by its softmax: outputs (logits, probabilities)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.model(x)
        return z, softmax(z)


def export(run: str, checkpoint: str, format: str, out: str) -> None:
    if format not in SUFFIXES:
        raise UsageError(f"format={format!r} is not known; valid: {', '.join(SUFFIXES)}")
    path = checkpoint_path(run, checkpoint)
    model, data, _ = load_run(path)
    wrapped = WithProbabilities(model).eval()
    x = data.test[0]
    out_path = Path(out) if out else run_dir_of(path) / f"model{SUFFIXES[format]}"
    run_exported = to_onnx(wrapped, x[:2], out_path) if format == "onnx" else to_torchscript(wrapped, x[:2], out_path)
    with torch.no_grad():
        expected = wrapped(x)[1]
    diff = (torch.as_tensor(run_exported(x)) - expected).abs().max().item()
    if not diff <= TOLERANCE:
        raise ConfigError(f"{out_path} disagrees with PyTorch: max |probability difference| {diff:.2e} "
                          f"> {TOLERANCE:g} on the test split")
    print(f"wrote {out_path}: max |probability difference| vs PyTorch {diff:.1e} on {len(x)} test examples")


def to_onnx(model: nn.Module, example: Tensor, out: Path):
    """Write `out` with a dynamic batch size; returns x -> probabilities through onnxruntime."""
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx.export needs it)
    except ImportError as e:
        raise ConfigError(f"format=onnx needs {e.name}: pip install 'logitlab[onnx]'") from None
    torch.onnx.export(model, (example,), str(out), input_names=["input"], output_names=["logits", "probabilities"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, verbose=False)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return lambda x: session.run(["probabilities"], {"input": x.numpy()})[0]


def to_torchscript(model: nn.Module, example: Tensor, out: Path):
    """Write `out` traced on `example`; returns x -> probabilities through the reloaded file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, yet still what torchscript means
        torch.jit.save(torch.jit.trace(model, example), str(out))
        loaded = torch.jit.load(str(out))

    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return loaded(x)[1]
    return run


def main(argv: list[str] | None = None) -> None:
    cli(export, OPTIONS, __doc__, argv)


if __name__ == "__main__":
    main()
