"""Datasets as whole tensors, split into train / val / test and normalised with train statistics (images
per batch, from the raw uint8 pixels they rest as), which
travel with the data (`SplitData.normalisation`) so that raw inputs can be normalised the same way later.

Every loader returns a `SplitData`; the trainer moves it to the device once and slices batches from it.
Splits are fixed by `split_seed` (default 0), independent of the training `seed`, so runs that differ
only in their seed are scored on the same examples. Inputs keep a channel axis: (N, C, L) for sequences,
(N, C, H, W) for images.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import torch

from logitlab import ConfigError
from logitlab.data.splits import Normalisation, SplitData, at_rest, check_fraction


def _make_splits(name, x, y, test, val_n, split_seed, class_names, pixel_max=None) -> SplitData:
    """Carve `val_n` examples from (x, y) for validation; `test` is the held-out split. Images (uint8) rest
    raw and are normalised per batch (SplitData.inputs); sequences are normalised here; both with the
    training split's per-channel statistics."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = perm[:val_n], perm[val_n:]
    train_x = x[train_idx]
    norm = Normalisation.of(train_x, pixel_max)
    return SplitData(name, (at_rest(train_x, norm), y[train_idx]), (at_rest(x[val_idx], norm), y[val_idx]),
                     (at_rest(test[0], norm), test[1]), class_names, norm)


def load_digits(val_fraction: float = 0.1, test_fraction: float = 0.2, split_seed: int = 0) -> SplitData:
    """scikit-learn's 8x8 digits (1797 images), as (N, 1, 8, 8)."""
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    # The file sklearn.datasets.load_digits reads, read directly: importing scikit-learn costs ~1 s.
    sklearn_dir = importlib.util.find_spec("sklearn").submodule_search_locations[0]
    raw = np.loadtxt(Path(sklearn_dir) / "datasets" / "data" / "digits.csv.gz", delimiter=",", dtype=np.float32)
    x = torch.from_numpy(raw[:, :-1].reshape(-1, 1, 8, 8).astype(np.uint8))  # pixel counts 0..16
    y = torch.from_numpy(raw[:, -1].astype(np.int64))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(split_seed))
    n_test = round(test_fraction * len(x))
    test_idx, rest = perm[:n_test], perm[n_test:]
    return _make_splits("digits", x[rest], y[rest], (x[test_idx], y[test_idx]),
                        round(val_fraction * len(x)), split_seed, [str(d) for d in range(10)], pixel_max=16)


def load_mnist1d(root: str = "~/.cache/logitlab", val_fraction: float = 0.1, split_seed: int = 0) -> SplitData:
    """MNIST-1D with the package's default arguments (4000 train / 1000 test), as (N, 1, 40).

    Generated once by the `mnist1d` package (a few seconds) and cached as `<root>/mnist1d/mnist1d.npz`.
    """
    check_fraction("val_fraction", val_fraction)
    path = Path(os.path.expanduser(root)) / "mnist1d" / "mnist1d.npz"
    if not path.exists():
        from mnist1d.data import get_dataset_args, make_dataset

        raw = make_dataset(get_dataset_args())
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=raw["x"], y=raw["y"], x_test=raw["x_test"], y_test=raw["y_test"])
        os.replace(tmp, path)  # atomic: a concurrent job never reads half a file
    try:
        with np.load(path) as f:
            x, y, x_test, y_test = (torch.from_numpy(f[k]) for k in ("x", "y", "x_test", "y_test"))
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{path} is not a readable MNIST-1D cache ({e}); delete it to regenerate") from None
    test = (x_test.unsqueeze(1).float(), y_test.long())
    return _make_splits("mnist1d", x.unsqueeze(1).float(), y.long(), test,
                        round(val_fraction * len(x)), split_seed, [str(d) for d in range(10)])


# torchvision class, the files its loader reads (for the no-network message)
_TORCHVISION = {
    "mnist": ("MNIST", "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/ (from cifar-10-python.tar.gz)"),
}


def _load_torchvision(name: str, root: str, val_size: int, split_seed: int) -> SplitData:
    import torchvision.datasets

    cls_name, files = _TORCHVISION[name]
    root = os.path.expanduser(root)
    try:
        cls = getattr(torchvision.datasets, cls_name)
        train, test = (cls(root, train=flag, download=True) for flag in (True, False))
    except Exception as e:  # torchvision raises RuntimeError, URLError, OSError ... when offline
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"could not load {cls_name} into data.root={root} ({reason}); "
                          f"without a network, put {files} under {root}") from None

    def tensors(ds):
        x = torch.as_tensor(np.asarray(ds.data))
        x = x.permute(0, 3, 1, 2) if x.dim() == 4 else x.unsqueeze(1)  # (N, C, H, W)
        return x, torch.as_tensor(np.asarray(ds.targets), dtype=torch.long)

    if not 0 < val_size < len(train):
        raise ConfigError(f"data.val_size={val_size} must be between 1 and {len(train) - 1}")
    x, y = tensors(train)
    return _make_splits(name, x, y, tensors(test), val_size, split_seed, list(train.classes), pixel_max=255)


def load_mnist(root: str = "~/.cache/logitlab", val_size: int = 5000, split_seed: int = 0) -> SplitData:
    return _load_torchvision("mnist", root, val_size, split_seed)


def load_fashion_mnist(root: str = "~/.cache/logitlab", val_size: int = 5000, split_seed: int = 0) -> SplitData:
    return _load_torchvision("fashion_mnist", root, val_size, split_seed)


def load_cifar10(root: str = "~/.cache/logitlab", val_size: int = 5000, split_seed: int = 0) -> SplitData:
    return _load_torchvision("cifar10", root, val_size, split_seed)
