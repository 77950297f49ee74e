"""Datasets: shapes, fixed splits, normalisation, and torchvision's real loaders on real-format files."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from logitlab import ConfigError
from logitlab.data import Normalisation, load_digits, load_fashion_mnist, load_mnist, load_mnist1d


def test_digits_splits_are_disjoint_fixed_and_normalised():
    data = load_digits()
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    sizes = [len(s[0]) for s in (data.train, data.val, data.test)]
    assert sum(sizes) == 1797 and sizes[2] == round(0.2 * 1797)
    x = data.inputs(data.train[0])
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-3
    again, other = load_digits(), load_digits(split_seed=1)
    assert torch.equal(again.test[0], data.test[0])
    assert not torch.equal(other.test[0], data.test[0])
    rows = {tuple(r.tolist()) for r in torch.cat([data.train[0], data.val[0], data.test[0]]).flatten(1)}
    assert len(rows) >= 1790  # no example is in two splits (digits has a few exact duplicate images)


def test_mnist1d_is_the_standard_4000_1000_split(tmp_path):
    data = load_mnist1d(root=str(tmp_path))
    assert data.input_shape == (1, 40) and data.num_classes == 10
    assert len(data.train[0]) + len(data.val[0]) == 4000 and len(data.test[0]) == 1000
    assert (tmp_path / "mnist1d" / "mnist1d.npz").exists()
    assert data.normalisation.mean.shape == (1,) and data.normalisation.pixel_max is None  # a signal, not pixels
    cached = load_mnist1d(root=str(tmp_path))  # from the cache: identical
    assert torch.equal(cached.train[0], data.train[0])


def _write_idx(path, array: np.ndarray) -> None:
    """The IDX format MNIST ships in: magic (0x0800 | ndim, uint8 data), big-endian dims, then bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root, folder: str, n_train=300, n_test=100):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28)) + labels[:, None, None] * 19  # brightness encodes the label
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


@pytest.mark.parametrize("loader, folder", [(load_mnist, "MNIST"), (load_fashion_mnist, "FashionMNIST")])
def test_torchvision_loaders_read_real_idx_files(tmp_path, loader, folder):
    _fake_mnist(tmp_path, folder)
    data = loader(root=str(tmp_path), val_size=50)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    assert [len(s[0]) for s in (data.train, data.val, data.test)] == [250, 50, 100]
    assert data.train[0].dtype == torch.uint8  # 8-bit images rest as they are: a quarter of float32's bytes
    assert abs(data.inputs(data.train[0]).mean()) < 1e-4  # normalised per batch, as the model takes them
    assert data.normalisation.pixel_max == 255 and 0 < data.normalisation.mean.item() < 255  # raw 8-bit units
    if folder == "FashionMNIST":
        assert data.class_names[0] == "T-shirt/top"


def test_unreadable_dataset_files_fail_with_one_line_naming_the_place(tmp_path):
    raw = _fake_mnist(tmp_path, "MNIST")
    (raw / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(ConfigError) as err:
        load_mnist(root=str(tmp_path))
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_bad_split_values_are_refused():
    with pytest.raises(ConfigError, match="data.val_fraction"):
        load_digits(val_fraction=1.5)


def _raw_digits():
    """The digits as scikit-learn ships them: (1797, 1, 8, 8) pixel counts 0..16."""
    from sklearn.datasets import load_digits as sklearn_digits

    return torch.from_numpy(sklearn_digits().images.astype(np.float32)).unsqueeze(1)


def test_the_normalisation_travels_with_the_data_and_reproduces_every_split():
    data = load_digits()
    norm = data.normalisation
    assert norm.mean.shape == norm.std.shape == (1,) and norm.pixel_max == 16
    raw_train = data.raw(data.train[0]).round()  # raw digits are whole pixel counts
    assert raw_train.min() == 0 and raw_train.max() == 16
    assert torch.allclose(norm.mean, raw_train.mean(), atol=1e-5) and torch.allclose(norm.std, raw_train.std())
    raw = _raw_digits()
    for x, _ in (data.train, data.val, data.test):  # every split rests raw, and its inputs are norm(raw)
        restored = data.raw(x)
        assert x.dtype == torch.uint8 and torch.equal(norm(restored), data.inputs(x))
        assert {tuple(r) for r in restored.flatten(1).tolist()} <= {tuple(r) for r in raw.flatten(1).tolist()}
    assert data.to("meta").normalisation.std.device.type == "meta"  # it moves with the splits


def test_statistics_are_per_channel():
    scale, shift = torch.tensor([1.0, 10.0, 100.0]).reshape(3, 1, 1), torch.tensor([0.0, 5.0, -5.0]).reshape(3, 1, 1)
    x = torch.rand(50, 3, 4, 4) * scale + shift  # three channels of very different ranges
    norm = Normalisation.of(x, pixel_max=255)
    assert norm.mean.shape == (3,)
    assert torch.allclose(norm.mean, x.mean(dim=(0, 2, 3))) and torch.allclose(norm.std, x.std(dim=(0, 2, 3)))
    z = norm(x)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-5)
    assert torch.allclose(norm.invert(z), x, atol=1e-4)
