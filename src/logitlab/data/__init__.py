"""Datasets as whole tensors with their normalisation (images rest as uint8, normalised per batch); every
source returns a `SplitData`.

  splits.py    SplitData (train / val / test tensors and class names), its Normalisation and RawReader: all
               that the trainer, predict, evaluate and export know of the data; the seeded stratified split
  builtin.py   the built-in sources: scikit-learn's 8x8 digits, MNIST-1D, and torchvision's MNIST,
               Fashion-MNIST and CIFAR-10
  table.py     your own table (CSV, TSV, Parquet): columns encoded, fitted on the training split
  folder.py    your own folder of images, one subfolder per class, and the reader of new images for predict
  image_cache.py  a folder's images decoded once, in threads, and cached as uint8 under data.root
  arrays.py    your own arrays in an .npz file
  augment.py   augmentation of training batches on the device: crop, crop_flip (images), shift (sequences)

A config names a built-in source by its name here (conf/data/digits.yaml: `_target_: logitlab.data.load_digits`),
as the configs saved by earlier runs do; the sources of your own data by their module
(`logitlab.data.table.load_table`), so that a run on the built-ins never imports pandas.

May import (of logitlab): only ConfigError.
"""

from logitlab.data.builtin import load_cifar10, load_digits, load_fashion_mnist, load_mnist, load_mnist1d
from logitlab.data.splits import Normalisation, SplitData, stratified_split
