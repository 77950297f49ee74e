"""The model zoo. Every model takes `input_shape` and `num_classes` (facts of the data, passed at the call
site) and returns raw logits of shape (B, num_classes). None ends in a softmax: the loss takes logits
(`CrossEntropyLoss`, the numerically stable log-sum-exp path) and probabilities are computed only where
they are reported. A config file in conf/model/ points at each class; that group is the registry.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

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
