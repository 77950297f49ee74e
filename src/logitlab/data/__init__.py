"""Datasets as whole tensors with their normalisation; every source returns a `SplitData`.

  splits.py    SplitData (train / val / test tensors and class names) and its Normalisation: all that the
               trainer, predict, evaluate and export know of the data
  builtin.py   the built-in sources: scikit-learn's 8x8 digits, MNIST-1D, and torchvision's MNIST,
               Fashion-MNIST and CIFAR-10

A config names a source by its name here (conf/data/digits.yaml: `_target_: logitlab.data.load_digits`),
as the configs saved by earlier runs do.

May import (of logitlab): only ConfigError.
"""

from logitlab.data.builtin import load_cifar10, load_digits, load_fashion_mnist, load_mnist, load_mnist1d
from logitlab.data.splits import Normalisation, SplitData
