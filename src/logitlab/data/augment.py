"""Augmentation of the training split, per batch, on the device, as batched tensor ops (no DataLoader, no
per-image Python): `augment=crop` (images: zero-pad, then a random crop back to size, i.e. a translation),
`augment=crop_flip` (the CIFAR recipe: padding 4 and a horizontal flip with p = 0.5) and `augment=shift`
(sequences: a random shift along the time axis, zero-filled).

An augmentation works on the inputs as they rest: raw uint8 pixels for images (a zero pad is black), the
normalised floats of a sequence (a zero pad is the training mean). Its random draws are made in two steps
so that every way of training draws the same: `draw(n, generator)` takes n examples' parameters from a
CPU generator (the run's own, saved in its checkpoint), `apply(x, params)` moves them to x's device and
transforms the batch. A data-parallel rank draws the whole global batch's parameters and applies its share;
a fused group draws each member's from the member's own generator; so every example of every step is
transformed as in the solo run on one process, whatever the number of processes or members.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from logitlab import ConfigError


@dataclass(frozen=True)
class Crop:
    """Zero-pad an image batch (N, C, H, W) by `padding` on every side, then crop a random H x W window
    from each example; with `flip`, also mirror each example left-right with probability 0.5."""

    padding: int = 2
    flip: bool = False

    def __post_init__(self):
        _check_count("augment.padding", self.padding)
        if not isinstance(self.flip, bool):
            raise ConfigError(f"augment.flip={self.flip!r} must be true or false")

    def check(self, input_shape: tuple[int, ...], data_name: str) -> None:
        if len(input_shape) != 3:
            raise ConfigError(f"augment={self.name} crops images (C, H, W); the data ({data_name}) has inputs of shape "
                              f"{tuple(input_shape)}" + ("; use augment=shift for sequences" if len(input_shape) == 2
                                                         else "; use augment=none"))

    @property
    def name(self) -> str:
        return "crop_flip" if self.flip else "crop"

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        """(n, 3) int64: row offset, column offset (0 .. 2 * padding) and whether to flip."""
        offsets = torch.randint(0, 2 * self.padding + 1, (n, 2), generator=generator)
        flips = torch.randint(0, 2, (n, 1), generator=generator) if self.flip else torch.zeros(n, 1, dtype=torch.long)
        return torch.cat([offsets, flips], 1)

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        params = params.to(x.device, non_blocking=True)
        n, _, height, width = x.shape
        p = self.padding
        padded = torch.nn.functional.pad(x, (p, p, p, p)) if p else x
        rows = params[:, :1] + torch.arange(height, device=x.device)  # (n, H): each example's window
        cols = params[:, 1:2] + torch.arange(width, device=x.device)  # (n, W)
        if self.flip:  # a mirrored window reads its columns right to left
            cols = torch.where(params[:, 2:3].bool(), cols.flip(1), cols)
        batch = torch.arange(n, device=x.device)[:, None, None]
        # (n, H, W, C) by advanced indexing over (example, row, column), back to (n, C, H, W)
        out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        return out.contiguous(memory_format=torch.channels_last if _is_channels_last(x) else torch.contiguous_format)


@dataclass(frozen=True)
class Shift:
    """Shift each sequence (N, C, L) by a random number of steps in [-max_shift, max_shift], filling the
    steps shifted in with zeros."""

    max_shift: int = 4
    name = "shift"

    def __post_init__(self):
        _check_count("augment.max_shift", self.max_shift)

    def check(self, input_shape: tuple[int, ...], data_name: str) -> None:
        if len(input_shape) != 2:
            raise ConfigError(f"augment=shift shifts sequences (C, L); the data ({data_name}) has inputs of shape "
                              f"{tuple(input_shape)}" + ("; use augment=crop for images" if len(input_shape) == 3
                                                         else "; use augment=none"))

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        """(n, 1) int64: the window's start in the padded sequence (0 .. 2 * max_shift)."""
        return torch.randint(0, 2 * self.max_shift + 1, (n, 1), generator=generator)

    def apply(self, x: Tensor, params: Tensor) -> Tensor:
        params = params.to(x.device, non_blocking=True)
        s = self.max_shift
        padded = torch.nn.functional.pad(x, (s, s)) if s else x
        steps = params + torch.arange(x.shape[-1], device=x.device)  # (n, L)
        index = steps[:, None, :].expand(-1, x.shape[1], -1)
        return padded.gather(2, index)


Augmentation = Crop | Shift


def _check_count(key: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key}={value!r} must be an integer >= 0")


def _is_channels_last(x: Tensor) -> bool:
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
