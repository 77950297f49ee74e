"""Export a trained run's model for use without logitlab.

  python -m logitlab.export run=RUN [format=onnx] [out=FILE] [checkpoint=best] [trust=MODULE]
  (or logitlab-export)

  run=         a run directory (its checkpoints/best.pt, or checkpoint=last) or a checkpoint file
  format=      onnx (needs the extra: pip install 'logitlab[onnx]') or torchscript
  out=         the file to write (default RUN/model.onnx or RUN/model.torchscript.pt)
  trust=       MODULE[,MODULE]: modules of your own whose code the run's config may name (its data or
               model `_target_`): trust=mymodels builds mymodels.TwoLayer, trust=mypkg mypkg.models.X.
               Imported from the current directory or PYTHONPATH. By default a checkpoint builds only
               logitlab's own data loaders and models

The exported model takes a batch of raw inputs (any N, `input` of shape (N, *input_shape)) in the units
the dataset came in: 0..16 pixel counts for the digits, 0..255 for 8-bit images, MNIST-1D's own signal.
It normalises them with the training split's per-channel mean and std (carried inside the file, and listed
in the run's metrics.json), runs the model and returns two outputs: `logits` and `probabilities` (their
softmax). After writing it, the export is run on the raw test split (onnxruntime for ONNX) and its
probabilities must match PyTorch's on the run's own test split within 1e-5.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from logitlab import ConfigError
from logitlab.data.splits import Normalisation
from logitlab.reporting.scoring import probabilities, softmax
from logitlab.rundirs.cli import UsageError, as_modules, cli
from logitlab.rundirs.load import checkpoint_path, load_run, run_dir_of

OPTIONS = {"run": None, "checkpoint": "best", "format": "onnx", "out": "", "trust": ""}
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
TOLERANCE = 1e-5

# raw inputs -> (logits, probabilities), both (N, num_classes) float32, through the written file
Runner = Callable[[Tensor], tuple[Tensor, Tensor]]


class RawInputs(nn.Module):
    """What an export holds: raw inputs -> the training normalisation -> the model -> (logits, softmax)."""

    def __init__(self, model: nn.Module, normalisation: Normalisation, input_rank: int):
        super().__init__()
        self.model = model
        mean, std = normalisation.per_channel(input_rank)  # (C, 1) or (C, 1, 1)
        self.register_buffer("mean", mean.detach().clone())
        self.register_buffer("std", std.detach().clone())

    def forward(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        z = self.model((raw - self.mean) / self.std)  # (N, num_classes)
        return z, softmax(z)


def export(run: str, checkpoint: str, format: str, out: str, trust: str = "") -> None:
    if format not in SUFFIXES:
        raise UsageError(f"format={format!r} is not known; valid: {', '.join(SUFFIXES)}")
    if out and not Path(out).parent.is_dir():  # now, not after the model is loaded and traced
        raise ConfigError(f"out={out}: folder {Path(out).parent} does not exist")
    path = checkpoint_path(run, checkpoint)
    model, data, _ = load_run(path, trust=as_modules("trust", trust))
    out_path = Path(out) if out else run_dir_of(path) / f"model{SUFFIXES[format]}"
    x = data.test[0]
    raw = data.raw(x)  # the test split in the dataset's own units
    run_exported = write(model, data.normalisation, format, raw[:2], out_path)
    # against the model on the split it was scored on: a normalisation the export gets wrong shows here
    diff = (run_exported(raw)[1] - probabilities(model, x, prepare=data.inputs)).abs().max().item()
    if not diff <= TOLERANCE:
        raise ConfigError(f"{out_path} disagrees with PyTorch: max |probability difference| {diff:.2e} "
                          f"> {TOLERANCE:g} on the test split")
    print(f"wrote {out_path}: max |probability difference| vs PyTorch {diff:.1e} on {len(x)} raw test examples")
    if data.reader is not None:  # the model takes encoded features: how raw examples become them
        encoder = out_path.with_name(out_path.name.split(".")[0] + ".encoder.json")
        encoder.write_text(json.dumps(data.reader.to_json(), indent=1) + "\n")
        print(f"wrote {encoder}: the model takes inputs shaped (N, {', '.join(map(str, data.input_shape))}) "
              f"made from raw examples as this file says")


def write(model: nn.Module, normalisation: Normalisation, format: str, example: Tensor, out: Path) -> Runner:
    """Write `model` behind `normalisation` as `format` to `out`, traced or exported on the raw `example`
    batch; returns a function that runs the written file."""
    module = RawInputs(model, normalisation, example.dim() - 1).eval()
    return (to_onnx if format == "onnx" else to_torchscript)(module, example, out)


def to_onnx(module: nn.Module, example: Tensor, out: Path) -> Runner:
    """Write `out` with a dynamic batch size; runs it through onnxruntime."""
    try:
        import onnxruntime
        import onnxscript  # noqa: F401  (torch.onnx.export needs it)
    except ImportError as e:
        raise ConfigError(f"format=onnx needs {e.name}: pip install 'logitlab[onnx]'") from None
    with warnings.catch_warnings():
        # torch's deprecations inside its own exporter, and nn.GRU's weight list, which it re-assigns on
        # every forward: noise to a user, and the written file is checked against PyTorch by the caller
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", r"The tensor attributes .*_flat_weights", UserWarning)
        # external_data=False: one self-contained file (the weights would otherwise go to a second, OUT.data)
        torch.onnx.export(module, (example,), str(out), input_names=["input"], output_names=["logits", "probabilities"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                          verbose=False)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])

    def run(raw: Tensor) -> tuple[Tensor, Tensor]:
        z, p = session.run(["logits", "probabilities"], {"input": np.ascontiguousarray(raw.numpy(), np.float32)})
        return torch.from_numpy(z), torch.from_numpy(p)
    return run


def to_torchscript(module: nn.Module, example: Tensor, out: Path) -> Runner:
    """Write `out` traced on `example` (the trace checks itself on it); runs the reloaded file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, yet still what torchscript means
        # nn.GRU's own input checks compare sizes in Python; they do not shape the traced graph
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.modules\.rnn")
        torch.jit.save(torch.jit.trace(module, example), str(out))
        loaded = torch.jit.load(str(out))

    def run(raw: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return loaded(raw)
    return run


def main(argv: list[str] | None = None) -> None:
    cli(export, OPTIONS, __doc__, argv)


if __name__ == "__main__":
    main()
