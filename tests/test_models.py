"""The zoo tests itself: every conf/model/*.yaml on every offline input shape."""
from __future__ import annotations

import warnings

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from conftest import CONF
from logitlab import ConfigError
from logitlab.models import CNN, GRU, MLP, Attention, Block, SoftmaxRegression

MODEL_FILES = sorted((CONF / "model").glob("*.yaml"))
SHAPES = {"digits": (1, 8, 8), "mnist1d": (1, 40), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def test_the_zoo_has_the_required_models():
    assert {"linear", "mlp", "cnn"} <= {p.stem for p in MODEL_FILES}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("model_file", MODEL_FILES, ids=lambda p: p.stem)
def test_every_model_builds_and_returns_finite_logits(model_file, shape):
    torch.manual_seed(0)
    model = instantiate(OmegaConf.load(model_file), input_shape=shape, num_classes=7)
    for mode in (model.train, model.eval):
        mode()
        logits = model(torch.randn(5, *shape))
        assert logits.shape == (5, 7)
        assert torch.isfinite(logits).all()
    model.train()
    model(torch.randn(5, *shape)).logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert not any(isinstance(m, (nn.Softmax, nn.LogSoftmax, nn.Softmax2d)) for m in model.modules())


def test_models_return_raw_logits_not_probabilities():
    torch.manual_seed(0)
    for model in (SoftmaxRegression((1, 40), 10), MLP((1, 40), 10), CNN((1, 40), 10)):
        logits = model(torch.randn(64, 1, 40) * 5)
        assert (logits < 0).any()  # probabilities would never be negative
        assert not torch.allclose(logits.sum(1), torch.ones(64))


def test_softmax_regression_is_wx_plus_b():
    model = SoftmaxRegression((1, 8, 8), 10)
    assert model.linear.weight.shape == (10, 64)  # W: (K, D)
    x = torch.randn(3, 1, 8, 8)
    expected = x.flatten(1) @ model.linear.weight.T + model.linear.bias
    torch.testing.assert_close(model(x), expected)


def test_depth_and_widths_follow_the_config():
    mlp = MLP((1, 40), 10, hidden=[25, 15], activation="gelu")
    linears = [m for m in mlp.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(40, 25), (25, 15), (15, 10)]
    assert sum(isinstance(m, nn.GELU) for m in mlp.modules()) == 2
    cnn1d, cnn2d = CNN((1, 40), 10, channels=[8, 16, 32]), CNN((1, 8, 8), 10, channels=[8, 16])
    assert [m.out_channels for m in cnn1d.modules() if isinstance(m, nn.Conv1d)] == [8, 16, 32]
    assert sum(isinstance(m, nn.Conv2d) for m in cnn2d.modules()) == 2


@pytest.mark.parametrize("kwargs, key", [
    (dict(hidden=[0]), "model.hidden"),
    (dict(hidden=[]), "model.hidden"),
    (dict(hidden=[32, -1]), "model.hidden"),
    (dict(activation="swishy"), "model.activation"),
    (dict(dropout=1.5), "model.dropout"),
])
def test_invalid_mlp_values_fail_with_one_line(kwargs, key):
    with pytest.raises(ConfigError) as err:
        MLP((1, 40), 10, **kwargs)
    assert key in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs", [dict(channels=[0]), dict(pool="median"), dict(kernel_size=0)])
def test_invalid_cnn_values_fail_with_one_line(kwargs):
    with pytest.raises(ConfigError) as err:
        CNN((1, 40), 10, **kwargs)
    assert "model." in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("cls, kwargs", [
    (GRU, dict(hidden_size=0)),
    (GRU, dict(readout="last")),
    (Attention, dict(dim=30)),  # not divisible by 4 heads
    (Attention, dict(patch_size=3)),  # does not divide 40
    (Attention, dict(pool="max")),
])
def test_invalid_sequence_model_values_fail_with_one_line(cls, kwargs):
    with pytest.raises(ConfigError) as err:
        cls((1, 40), 10, **kwargs)
    assert "model." in str(err.value) and "\n" not in str(err.value)


TRACE_SHAPES = {k: SHAPES[k] for k in ("digits", "mnist1d")}


@pytest.mark.parametrize("shape", TRACE_SHAPES.values(), ids=TRACE_SHAPES.keys())
@pytest.mark.parametrize("model_file", MODEL_FILES, ids=lambda p: p.stem)
def test_every_model_traces_for_any_batch_size(model_file, shape):
    """torch.jit.trace (TorchScript export, the TensorBoard graph) passes its own check and holds no batch size."""
    torch.manual_seed(0)
    model = instantiate(OmegaConf.load(model_file), input_shape=shape, num_classes=7).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        # nn.GRU's own argument checks compare sizes in Python; they do not shape the graph (checked below)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.modules\.rnn")
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit itself is deprecated
        traced = torch.jit.trace(model, torch.randn(2, *shape), check_trace=True)
    with torch.no_grad():
        for n in (1, 37):
            x = torch.randn(n, *shape)
            torch.testing.assert_close(traced(x), model(x), atol=1e-6, rtol=0)


def test_an_attention_block_computes_what_torchs_transformer_layer_computes():
    """The hand-written block is nn.TransformerEncoderLayer(norm_first=True, gelu): same weights, same output."""
    torch.manual_seed(0)
    block = Block(dim=16, heads=4, mlp_ratio=2, dropout=0.0).eval()
    reference = nn.TransformerEncoderLayer(16, 4, 32, 0.0, activation="gelu", batch_first=True,
                                           norm_first=True).eval()
    with torch.no_grad():
        reference.self_attn.in_proj_weight.copy_(block.qkv.weight)  # q, k, v as one (3 dim, dim) matrix
        reference.self_attn.in_proj_bias.copy_(block.qkv.bias)
        for ours, theirs in ((block.proj, reference.self_attn.out_proj), (block.mlp[0], reference.linear1),
                             (block.mlp[3], reference.linear2), (block.norm1, reference.norm1),
                             (block.norm2, reference.norm2)):
            theirs.load_state_dict(ours.state_dict())
        t = torch.randn(5, 11, 16)  # (B, T, dim)
        torch.testing.assert_close(block(t), reference(t), atol=1e-5, rtol=1e-5)
