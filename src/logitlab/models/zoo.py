"""The model zoo. Every model takes `input_shape` and `num_classes` (facts of the data, passed at the call
site) and returns raw logits of shape (B, num_classes). None ends in a softmax: the loss takes logits
(`CrossEntropyLoss`, the numerically stable log-sum-exp path) and probabilities are computed only where
they are reported. A config file in conf/model/ points at each class; that group is the registry.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from logitlab import ConfigError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"model.activation={name!r} is not known; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def _check_widths(key: str, widths: Sequence[int]) -> list[int]:
    widths = list(widths)
    if not widths or any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in widths):
        raise ConfigError(f"model.{key}={widths} must be a non-empty list of positive integers, e.g. [64, 32]")
    return widths


def _check_dropout(p: float) -> float:
    if not 0 <= p < 1:
        raise ConfigError(f"model.dropout={p} must be in [0, 1)")
    return p


class SoftmaxRegression(nn.Module):
    """z = W x + b with W of shape (num_classes, D); with two classes this is logistic regression."""

    def __init__(self, input_shape: Sequence[int], num_classes: int):
        super().__init__()
        self.linear = nn.Linear(math.prod(input_shape), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    """Dense layers of widths `hidden` (its length is the depth), each followed by
    [batch norm] -> activation -> [dropout], then a linear output layer."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (64, 32),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False):
        super().__init__()
        widths = [math.prod(input_shape)] + _check_widths("hidden", hidden)
        _check_dropout(dropout)
        layers: list[nn.Module] = [nn.Flatten()]
        for d_in, d_out in zip(widths[:-1], widths[1:]):
            layers.append(nn.Linear(d_in, d_out, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(d_out))
            layers.append(make_activation(activation))
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(widths[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CNN(nn.Module):
    """Conv blocks (conv -> [batch norm] -> activation -> pool) over (C, L) sequences with Conv1d or
    (C, H, W) images with Conv2d, then [dropout] and a linear head on the flattened features.
    Pooling halves the spatial size while it is at least 2, so deep stacks on small inputs still build."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, channels: Sequence[int] = (16, 32),
                 kernel_size: int = 3, activation: str = "relu", pool: str = "max",
                 batch_norm: bool = False, dropout: float = 0.0):
        super().__init__()
        if len(input_shape) not in (2, 3):
            raise ConfigError(f"model=cnn needs (C, L) or (C, H, W) inputs, got input shape {tuple(input_shape)}")
        if not isinstance(kernel_size, int) or kernel_size < 1:
            raise ConfigError(f"model.kernel_size={kernel_size} must be a positive integer")
        pools = {"max": (nn.MaxPool1d, nn.MaxPool2d), "avg": (nn.AvgPool1d, nn.AvgPool2d), "none": None}
        if pool not in pools:
            raise ConfigError(f"model.pool={pool!r} is not known; valid: {', '.join(pools)}")
        widths = [input_shape[0]] + _check_widths("channels", channels)
        two_d = len(input_shape) == 3
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if two_d else (nn.Conv1d, nn.BatchNorm1d)
        spatial = list(input_shape[1:])
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers.append(conv(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batch_norm))
            if batch_norm:
                layers.append(norm(c_out))
            layers.append(make_activation(activation))
            if pools[pool] and min(spatial) >= 2:
                layers.append(pools[pool][two_d](2))
                spatial = [s // 2 for s in spatial]
        layers.append(nn.Flatten())
        if _check_dropout(dropout):
            layers.append(nn.Dropout(dropout))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1] * math.prod(spatial), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def _check_positive(key: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"model.{key}={value!r} must be a positive integer")
    return value


def _as_sequence(x: Tensor) -> Tensor:
    """(B, C, L) -> (B, L, C): L steps of C features; (B, C, H, W) -> (B, H, C*W): H rows of pixels."""
    if x.dim() == 3:
        return x.transpose(1, 2)
    return x.permute(0, 2, 1, 3).flatten(2)


class GRU(nn.Module):
    """A (bidirectional) GRU over the input read as a sequence: (C, L) as L steps of C features, (C, H, W)
    as H rows of C*W pixels. The head reads every step's hidden state flattened (`readout: flatten`, the
    MNIST-1D paper's baseline: hidden 6, bidirectional) or their mean (`readout: mean`)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, hidden_size: int = 6, num_layers: int = 1,
                 bidirectional: bool = True, readout: str = "flatten"):
        super().__init__()
        if len(input_shape) not in (2, 3):
            raise ConfigError(f"model=gru needs (C, L) or (C, H, W) inputs, got input shape {tuple(input_shape)}")
        if readout not in ("flatten", "mean"):
            raise ConfigError(f"model.readout={readout!r} is not known; valid: flatten, mean")
        steps = input_shape[1]  # L, or H
        features = input_shape[0] * (input_shape[2] if len(input_shape) == 3 else 1)  # C, or C*W
        _check_positive("hidden_size", hidden_size)
        _check_positive("num_layers", num_layers)
        self.gru = nn.GRU(features, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)
        out = hidden_size * (2 if bidirectional else 1)
        self.readout = readout
        self.head = nn.Linear(out * steps if readout == "flatten" else out, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.gru(_as_sequence(x))  # (B, T, hidden * directions)
        return self.head(h.flatten(1) if self.readout == "flatten" else h.mean(1))


class Block(nn.Module):
    """One pre-norm Transformer encoder layer: x + attention(norm(x)), then x + mlp(norm(x)). Written out
    rather than nn.TransformerEncoderLayer, whose inference fast path takes another route under
    torch.jit.trace (the trace then fails its own check) and whose batch size ONNX export fixes."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp_ratio * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        # Heads are split with unflatten(-1, (heads, -1)), never with B or T read off x.shape: the traced
        # and exported graphs then hold no batch size.
        q, k, v = self.qkv(self.norm1(x)).unflatten(-1, (3, self.heads, -1)).unbind(2)  # each (B, T, heads, hd)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, heads, T, hd)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.proj(a.transpose(1, 2).flatten(2)))  # (B, T, dim)
        return x + self.drop(self.mlp(self.norm2(x)))  # (B, T, dim)


class Attention(nn.Module):
    """A small Transformer encoder (pre-norm). Tokens are non-overlapping patches, linearly embedded:
    `patch_size` x `patch_size` pixels of (C, H, W) images, `patch_size` positions of (C, L) sequences
    (1 = a token per position). A learned position embedding is added; the head reads a class token
    (`pool: cls`) or the mean of the tokens (`pool: mean`)."""

    def __init__(self, input_shape: Sequence[int], num_classes: int, dim: int = 32, depth: int = 2,
                 heads: int = 4, mlp_ratio: int = 2, patch_size: int = 4, pool: str = "cls", dropout: float = 0.0):
        super().__init__()
        if len(input_shape) not in (2, 3):
            raise ConfigError(f"model=attention needs (C, L) or (C, H, W) inputs, got input shape {tuple(input_shape)}")
        for key, value in (("dim", dim), ("depth", depth), ("heads", heads), ("mlp_ratio", mlp_ratio),
                           ("patch_size", patch_size)):
            _check_positive(key, value)
        if dim % heads:
            raise ConfigError(f"model.dim={dim} must be divisible by model.heads={heads}")
        if pool not in ("cls", "mean"):
            raise ConfigError(f"model.pool={pool!r} is not known; valid: cls, mean")
        _check_dropout(dropout)
        spatial = list(input_shape[1:])
        if any(s % patch_size for s in spatial):
            raise ConfigError(f"model.patch_size={patch_size} must divide the input size {tuple(spatial)}")
        conv = nn.Conv2d if len(spatial) == 2 else nn.Conv1d
        self.embed = conv(input_shape[0], dim, patch_size, stride=patch_size)  # (B, dim, L/p) or (B, dim, H/p, W/p)
        tokens = math.prod(s // patch_size for s in spatial)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if pool == "cls" else None
        self.pos = nn.Parameter(0.02 * torch.randn(1, tokens + (pool == "cls"), dim))
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp_ratio, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        t = self.embed(x).flatten(2).transpose(1, 2)  # (B, tokens, dim)
        if self.cls is not None:
            # expand_as, not expand(len(t), ...): the batch size stays symbolic in traces and exports
            t = torch.cat([self.cls.expand_as(t[:, :1]), t], dim=1)  # (B, 1 + tokens, dim)
        t = self.norm(self.blocks(t + self.pos))  # (B, T, dim)
        return self.head(t[:, 0] if self.cls is not None else t.mean(1))  # (B, num_classes)
