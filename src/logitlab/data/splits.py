"""What every data source returns: `SplitData`, the train / val / test tensors with their class names, and
its `Normalisation`, the training split's per-channel statistics, which travel with the data (and with a
run's checkpoint config) so that raw inputs are normalised the same way later. The trainer, predict,
evaluate and export know the data only through these."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from logitlab import ConfigError


@dataclass(frozen=True)
class Normalisation:
    """x = (raw - mean) / std per channel, with the statistics of the raw training split. Raw inputs are in
    the units the dataset came in: 0..16 pixel counts for the digits, 0..255 for 8-bit images, MNIST-1D's
    float signal. Predict and the exported models take raw inputs and apply this."""

    mean: Tensor  # (C,)
    std: Tensor  # (C,)
    pixel_max: float | None = None  # the raw value of a white pixel (255; 16 for the digits); None: not images

    @classmethod
    def of(cls, train_x: Tensor, pixel_max: float | None = None) -> Normalisation:
        if train_x.dtype == torch.uint8:
            return cls._of_pixels(train_x, pixel_max)
        dims = [0] + list(range(2, train_x.dim()))  # all but the channel axis
        return cls(train_x.mean(dim=dims), train_x.std(dim=dims).clamp_min(1e-8), pixel_max)

    @classmethod
    def _of_pixels(cls, pixels: Tensor, pixel_max: float | None, chunk: int = 4096) -> Normalisation:
        """The statistics of uint8 pixels (N, C, ...) from a histogram of each channel, counted a chunk of
        examples at a time: exact (float64 from integer counts), and never a float copy of the split, which
        for a memory-mapped folder may exceed memory."""
        channels = pixels.shape[1]
        counts = torch.zeros(channels, 256, dtype=torch.float64)
        for start in range(0, len(pixels), chunk):
            part = pixels[start:start + chunk].transpose(0, 1).reshape(channels, -1).long()
            part = part + 256 * torch.arange(channels)[:, None]
            counts += torch.bincount(part.flatten(), minlength=256 * channels).reshape(channels, 256)
        values = torch.arange(256, dtype=torch.float64)
        n = counts.sum(1)
        mean = (counts @ values) / n
        var = (counts @ values.square() - n * mean.square()) / (n - 1).clamp_min(1)  # unbiased, as Tensor.std
        return cls(mean.float(), var.clamp_min(0).sqrt().float().clamp_min(1e-8), pixel_max)

    def per_channel(self, rank: int) -> tuple[Tensor, Tensor]:
        """mean and std shaped to broadcast over examples of `rank` axes: (C, 1) or (C, 1, 1)."""
        shape = (-1,) + (1,) * (rank - 1)
        return self.mean.reshape(shape), self.std.reshape(shape)

    def __call__(self, raw: Tensor) -> Tensor:
        mean, std = self.per_channel(raw.dim() - 1)
        return (raw - mean) / std

    def invert(self, x: Tensor) -> Tensor:
        """Normalised inputs back in raw units (to rounding)."""
        mean, std = self.per_channel(x.dim() - 1)
        return x * std + mean

    def to(self, device: torch.device | str) -> Normalisation:
        return replace(self, mean=self.mean.to(device), std=self.std.to(device))


class RawReader(Protocol):
    """A data source's own reading of raw examples, for predict's input= (and what export writes beside the
    model): a table's rows by column name through its fitted encoders, images of any size resized as in
    training. It gives the model's raw inputs, in the units `Normalisation` then standardises."""

    def can_read(self, path: Path) -> bool:
        """Whether `path` (a file or a directory) is for this reader; else predict reads it as an array."""
        ...

    def read(self, path: Path) -> tuple[Tensor, list[str]]:
        """(raw inputs shaped (N, *input_shape), one name per example); bad input: ConfigError, one line."""
        ...

    def to_json(self) -> dict:
        """What a user of an exported model needs to turn raw examples into its inputs, as JSON values."""
        ...


@dataclass(frozen=True)
class SplitData:
    """The splits as they rest: images as raw uint8 pixels (N, C, H, W), normalised per batch on the device
    by `inputs` (a quarter of float32's memory, on the host and on the device); sequences and tables as
    float32 already normalised. A split may be memory-mapped (a large folder's cache)."""

    name: str
    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    class_names: list[str]
    # How raw inputs become the splits' inputs. None (tensors made by hand): they are used as given,
    # mean 0 and std 1 per channel.
    normalisation: Normalisation | None = None
    # How predict reads raw examples of this source (None: arrays shaped as the inputs, or image files of
    # the inputs' size); rebuilt with the data, so it travels with the run as the normalisation does.
    reader: RawReader | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.normalisation is None:
            channels = self.train[0].shape[1]
            object.__setattr__(self, "normalisation", Normalisation(torch.zeros(channels), torch.ones(channels)))

    def inputs(self, x: Tensor) -> Tensor:
        """A batch as it rests (raw uint8 pixels, or normalised floats) as the model takes it: float32,
        normalised. Elementwise, as the float path normalised the whole split, so the values are the same."""
        if x.dtype != torch.uint8:
            return x
        mean, std = self.normalisation.per_channel(x.dim() - 1)
        return x.float().sub_(mean).div_(std)  # in place on the new float copy: once per training step

    def raw(self, x: Tensor) -> Tensor:
        """A split's inputs in the dataset's own units, as float32 (what predict and an export take):
        raw pixels as they rest, normalised floats back through the normalisation (to rounding)."""
        return x.float() if x.dtype == torch.uint8 else self.normalisation.invert(x)

    @property
    def stored_bytes(self) -> int:
        """The bytes of the three splits' inputs as they rest."""
        return sum(x.nbytes for x, _ in (self.train, self.val, self.test))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        if name not in ("train", "val", "test"):
            raise ConfigError(f"split={name!r} is not a split; valid: train, val, test")
        return getattr(self, name)

    def to(self, device: torch.device | str, inputs: bool = True) -> SplitData:
        """The splits on `device`; with `inputs` False the inputs stay where they rest (streamed per batch)
        and only the labels and the normalisation move. A memory-mapped split made resident on the CPU is
        read into memory."""
        def place(x: Tensor) -> Tensor:
            if not inputs:
                return x
            moved = x.to(device)
            return moved.clone() if moved is x and _memory_mapped(x) else moved
        move = lambda xy: (place(xy[0]), xy[1].to(device))  # noqa: E731
        return replace(self, train=move(self.train), val=move(self.val), test=move(self.test),
                       normalisation=self.normalisation.to(device))


def at_rest(raw: Tensor, normalisation: Normalisation) -> Tensor:
    """A split's inputs as SplitData keeps them: 8-bit images (N, C, H, W) as they are, to be normalised per
    batch (`SplitData.inputs`); anything else normalised once, as float32."""
    if raw.dtype == torch.uint8 and raw.dim() == 4:
        return raw
    return normalisation(raw.float())


def _memory_mapped(x: Tensor) -> bool:
    return getattr(x.untyped_storage(), "filename", None) is not None


def check_fraction(key: str, value: float, low_open: bool = True) -> None:
    """A fraction of the examples, in (0, 1): the validation split picks best.pt and the objective, and
    the test split is what a finished run is scored on, so neither may be empty (`low_open=False` allows 0,
    for a source that has a split of its own besides)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (0 < value < 1 if low_open else 0 <= value < 1):
        why = {"val_fraction": ": best.pt and the objective are chosen on the validation split",
               "test_fraction": ": a finished run is scored on the test split"}.get(key, "") if low_open else ""
        raise ConfigError(f"data.{key}={value!r} must be in {'(0' if low_open else '[0'}, 1){why}")


def stratified_split(labels: Tensor, val_fraction: float, test_fraction: float,
                     seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """(train, val, test) indices for a source without splits of its own: each class is shuffled by `seed`
    and cut in the fractions asked for (rounded per class, at least one validation example per class that
    has two or more), so every split holds the classes in the proportions of the whole."""
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    generator = torch.Generator().manual_seed(seed)
    parts: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
    for label in labels.unique(sorted=True):
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = round(test_fraction * len(members))
        n_val = max(round(val_fraction * len(members)), int(len(members) - n_test >= 2))
        for part, chosen in zip(parts, (members[n_test + n_val:], members[n_test:n_test + n_val], members[:n_test])):
            part.append(chosen)
    return tuple(torch.cat(part).sort().values for part in parts)  # type: ignore[return-value]
