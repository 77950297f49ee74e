"""export: the exported model takes raw inputs, normalises them as training did, and gives PyTorch's logits
and probabilities within 1e-5 for any batch size; every model of the zoo exports both ways."""
from __future__ import annotations

import warnings

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from conftest import CONF, run_cli
from logitlab.data import Normalisation
from logitlab.export import main, write
from logitlab.reporting.scoring import probabilities
from logitlab.rundirs import load_run

MODEL_FILES = sorted((CONF / "model").glob("*.yaml"))
# raw units and statistics like the real datasets': digits pixel counts 0..16, MNIST-1D's signal
SHAPES = {"digits": ((1, 8, 8), Normalisation(torch.tensor([4.9]), torch.tensor([6.0]), 16)),
          "mnist1d": ((1, 40), Normalisation(torch.tensor([0.3]), torch.tensor([1.7])))}


def raw_test_inputs(data):
    """The run's test split back in raw digit pixel counts: whole numbers 0..16, as the dataset ships them."""
    raw = data.raw(data.test[0]).round()
    assert raw.min() >= 0 and raw.max() <= 16 and torch.equal(data.normalisation(raw), data.inputs(data.test[0]))
    return raw


def load_torchscript(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated
        return torch.jit.load(str(path))


def check_zoo_export(model_file, data_name, format, tmp_path):
    """A model with random weights behind its normalisation, written as `format` by export.write, gives the
    model's own logits on normalised raw inputs at batch sizes 1 and 37."""
    shape, norm = SHAPES[data_name]
    torch.manual_seed(0)
    model = instantiate(OmegaConf.load(model_file), input_shape=shape, num_classes=10).eval()
    run = write(model, norm, format, norm.invert(torch.randn(2, *shape)), tmp_path / f"model.{format}")
    for n in (1, 37):
        raw = norm.invert(torch.randn(n, *shape))  # raw units: normalised, they are standard normal
        logits, probs = run(raw)
        with torch.no_grad():
            expected = model(norm(raw))
        assert logits.shape == (n, 10)
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(probs, torch.softmax(expected, 1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("data_name", SHAPES)
@pytest.mark.parametrize("model_file", MODEL_FILES, ids=lambda p: p.stem)
def test_every_model_exports_to_torchscript(model_file, data_name, tmp_path):
    check_zoo_export(model_file, data_name, "torchscript", tmp_path)


@pytest.mark.parametrize("model_file, data_name", [
    pytest.param(p, data, marks=pytest.mark.slow, id=f"{p.stem}-{data}") if p.stem == "gru" or data != "digits"
    else pytest.param(p, data, id=f"{p.stem}-{data}") for p in MODEL_FILES for data in SHAPES])
def test_every_model_exports_to_onnx(model_file, data_name, tmp_path):
    """ONNX through onnxruntime, every model on the digits' (1, 8, 8) (the sequence models read it as 8 steps);
    on MNIST-1D's (1, 40) and the GRU (slow: ~6-12 s of export, unrolled over the sequence) in make test-all."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    check_zoo_export(model_file, data_name, "onnx", tmp_path)


def test_the_cli_exports_a_trained_run_that_takes_raw_inputs(trained_run, tmp_path):
    out = tmp_path / "model.torchscript.pt"
    done = run_cli(f"run={trained_run}", "format=torchscript", f"out={out}", module="logitlab.export")
    assert done.returncode == 0, done.stderr
    assert "max |probability difference| vs PyTorch" in done.stdout and "raw test examples" in done.stdout
    model, data, _ = load_run(trained_run)
    raw, x = raw_test_inputs(data), data.inputs(data.test[0])
    exported = load_torchscript(out)
    for n in (1, 37):
        with torch.no_grad():
            logits, probs = exported(raw[:n])
        torch.testing.assert_close(logits, model(x[:n]), atol=1e-5, rtol=0)
        torch.testing.assert_close(probs, probabilities(model, x[:n]), atol=1e-5, rtol=0)


def test_onnx_of_a_trained_run_in_onnxruntime(trained_run, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    main([f"run={trained_run}", "format=onnx"])  # default: next to the run
    assert "max |probability difference|" in capsys.readouterr().out
    assert not (trained_run / "model.onnx.data").exists()  # one self-contained file
    session = ort.InferenceSession(str(trained_run / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    model, data, _ = load_run(trained_run)
    raw = raw_test_inputs(data)
    for n in (1, 37):  # the batch size is dynamic
        probs = session.run(["probabilities"], {"input": raw[:n].numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(probs), probabilities(model, data.test[0][:n], prepare=data.inputs), atol=1e-5, rtol=0)


def test_an_unknown_format_is_a_usage_error(trained_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([f"run={trained_run}", "format=tflite"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: format='tflite' is not known; valid: onnx, torchscript\n"


@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_out_in_a_missing_folder_is_one_line(trained_run, tmp_path, capsys, format):
    out = tmp_path / "nowhere" / f"y.{format}"
    with pytest.raises(SystemExit) as exit_:
        main([f"run={trained_run}", f"format={format}", f"out={out}"])
    assert exit_.value.code == 1
    assert capsys.readouterr().err == f"error: out={out}: folder {out.parent} does not exist\n"
    assert not out.parent.exists()
