"""export: the exported model gives PyTorch's probabilities within 1e-5, for any batch size."""
from __future__ import annotations

import warnings

import pytest
import torch

from logitlab.export import main
from logitlab.inference import load_run, probabilities


def test_torchscript_gives_the_same_probabilities(trained_run, tmp_path, capsys):
    out = tmp_path / "model.torchscript.pt"
    main([f"run={trained_run}", "format=torchscript", f"out={out}"])
    assert "max |probability difference|" in capsys.readouterr().out
    model, data, _ = load_run(trained_run)
    x = data.val[0][:37]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        logits, probs = torch.jit.load(str(out))(x)
    assert torch.allclose(probs, probabilities(model, x), atol=1e-5)
    assert torch.allclose(logits, model(x), atol=1e-5)


@pytest.mark.slow
def test_onnx_gives_the_same_probabilities_in_onnxruntime(trained_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    main([f"run={trained_run}", "format=onnx"])  # default: next to the run
    session = ort.InferenceSession(str(trained_run / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    model, data, _ = load_run(trained_run)
    for n in (1, 37):  # the batch size is dynamic
        x = data.val[0][:n]
        probs = session.run(["probabilities"], {"input": x.numpy()})[0]
        assert torch.allclose(torch.from_numpy(probs), probabilities(model, x), atol=1e-5)


def test_an_unknown_format_is_a_usage_error(trained_run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([f"run={trained_run}", "format=tflite"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: format='tflite' is not known; valid: onnx, torchscript\n"
